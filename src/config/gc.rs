//! `[gc]` (online garbage collection: how often, the grace period, untagged manifests),
//! `[[retention]]` (which tags and untagged manifests a repository sheds) and
//! `[[immutable]]` (tags that can never be moved to another manifest).

use std::time::Duration;

use super::raw::{RawGc, RawImmutable, RawRetention};
use super::repo_pattern::{RepoPattern, TagPattern};
use super::{Check, ConfigError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcConfig {
    /// How long after a scheduled run ends the next one starts (retention first, then mark
    /// and sweep); a day by default; `None` when `interval = "off"`, leaving only `wharf gc`.
    pub interval: Option<Duration>,
    /// How old an unreferenced blob or manifest must be before it is deleted. It covers the
    /// time between a client uploading a layer and pushing the manifest that names it, so
    /// it is hours by default, never seconds.
    pub grace: Duration,
    pub untagged: Untagged,
}

/// What a collection does with manifests no tag reaches (directly or through an index or
/// as a referrer of a reached manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untagged {
    /// They and their blobs stay (registry:2's default): a digest someone pinned keeps working.
    Keep,
    /// They go with the blobs only they use (`garbage-collect --delete-untagged`).
    Delete,
}

/// One `[[retention]]` policy: which tags of the matching repositories go.
///
/// A tag goes when the policy's delete conditions say so (combined by `combine`), or, in a
/// policy with keep rules only, when those do not keep it; and never when a keep rule of
/// any policy matching the repository keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub repos: RepoPattern,
    /// Keep rule: the N most recently pushed tags stay.
    pub keep_last: Option<usize>,
    /// Keep rule: tags matching any of these stay.
    pub keep_tags: Vec<TagPattern>,
    /// Delete condition: the tag matches one of these.
    pub delete_tags: Vec<TagPattern>,
    /// Delete condition: the tag was pushed longer ago than this.
    pub delete_older_than: Option<Duration>,
    /// How the delete conditions combine; required when there are two.
    pub combine: Combine,
    /// Untagged manifests pushed longer ago than this go (unless an index or a kept
    /// manifest's referrers need them).
    pub delete_untagged_older_than: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// A tag meeting any delete condition goes.
    Any,
    /// A tag goes only when it meets every delete condition.
    All,
}

/// One `[[immutable]]` rule: in the matching repositories, a tag matching `tags` may be
/// pushed once; pushing it again with other content is refused (409 `DENIED`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImmutableRule {
    pub repos: RepoPattern,
    pub tags: Vec<TagPattern>,
}

impl ImmutableRule {
    pub fn covers(&self, repo: &str, tag: &str) -> bool {
        self.repos.matches(repo) && self.tags.iter().any(|t| t.matches(tag))
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl GcConfig {
    /// `gc.grace` when the file does not say.
    pub const DEFAULT_GRACE: Duration = DAY;
}

pub(super) fn gc(check: &Check, raw: &RawGc) -> Result<GcConfig, ConfigError> {
    // On by default: a registry that only grows is what this replaces. With the default
    // grace and `untagged = "keep"` a run deletes only what registry:2's `garbage-collect`
    // would (nothing any manifest names).
    let interval = match raw.interval.as_deref() {
        Some("off") => None,
        other => Some(check.duration("gc.interval", other, DAY)?),
    };
    // Counted from the end of a run, so runs never overlap; under a second is a typo.
    if interval.is_some_and(|i| i < Duration::from_secs(1)) {
        return Err(check.invalid(
            "gc.interval",
            "is under a second",
            "use a duration like \"24h\", or \"off\" to run only with `wharf gc`",
        ));
    }
    let grace = check.duration("gc.grace", raw.grace.as_deref(), GcConfig::DEFAULT_GRACE)?;
    if grace.is_zero() {
        return Err(check.invalid(
            "gc.grace",
            "is 0, so a layer uploaded just before its manifest could be deleted under the push",
            "use a duration longer than your slowest push, like \"24h\" (the default)",
        ));
    }
    let untagged = match raw.untagged.as_deref() {
        None | Some("keep") => Untagged::Keep,
        Some("delete") => Untagged::Delete,
        Some(other) => {
            return Err(check.invalid(
                "gc.untagged",
                format!("is {other:?}"),
                "use \"keep\" (the default) or \"delete\"",
            ))
        }
    };
    Ok(GcConfig {
        interval,
        grace,
        untagged,
    })
}

fn repos(check: &Check, key: String, text: &str) -> Result<RepoPattern, ConfigError> {
    RepoPattern::parse(text).map_err(|problem| {
        check.invalid(
            key,
            format!("{text:?} {problem}"),
            "use an exact name like \"team-a/app\", a prefix ending in * like \"team-a/*\", or \"*\"",
        )
    })
}

fn tags(check: &Check, key: String, list: &[String]) -> Result<Vec<TagPattern>, ConfigError> {
    list.iter()
        .map(|text| {
            TagPattern::parse(text).map_err(|problem| {
                check.invalid(
                    key.clone(),
                    format!("has {text:?}, which {problem}"),
                    "list tags or globs like \"latest\", \"v*\" or \"*-rc*\"",
                )
            })
        })
        .collect()
}

pub(super) fn immutable(
    check: &Check,
    raw: &[RawImmutable],
) -> Result<Vec<ImmutableRule>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let all = ["*".to_owned()];
            let list = r.tags.as_deref().unwrap_or(&all);
            if list.is_empty() {
                return Err(check.invalid(
                    format!("immutable[{i}].tags"),
                    "is empty, so the rule protects no tag",
                    "list tag globs like [\"v*\"], or leave it out for every tag",
                ));
            }
            Ok(ImmutableRule {
                repos: repos(check, format!("immutable[{i}].repos"), &r.repos)?,
                tags: tags(check, format!("immutable[{i}].tags"), list)?,
            })
        })
        .collect()
}

pub(super) fn retention(
    check: &Check,
    raw: &[RawRetention],
) -> Result<Vec<RetentionPolicy>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| retention_policy(check, i, r))
        .collect()
}

fn retention_policy(
    check: &Check,
    i: usize,
    r: &RawRetention,
) -> Result<RetentionPolicy, ConfigError> {
    let key = |k: &str| format!("retention[{i}].{k}");
    let older = |k: &str, v: &Option<String>| match v {
        None => Ok(None),
        Some(_) => check.duration(&key(k), v.as_deref(), DAY).map(Some),
    };
    if r.keep_last == Some(0) {
        return Err(check.invalid(
            key("keep_last"),
            "is 0, which keeps nothing",
            "keep at least 1 tag, or leave keep_last out",
        ));
    }
    let policy = RetentionPolicy {
        repos: repos(check, key("repos"), &r.repos)?,
        keep_last: r.keep_last,
        keep_tags: tags(check, key("keep_tags"), &r.keep_tags)?,
        delete_tags: tags(check, key("delete_tags"), &r.delete_tags)?,
        delete_older_than: older("delete_older_than", &r.delete_older_than)?,
        combine: Combine::Any,
        delete_untagged_older_than: older(
            "delete_untagged_older_than",
            &r.delete_untagged_older_than,
        )?,
    };
    let conditions = usize::from(!policy.delete_tags.is_empty())
        + usize::from(policy.delete_older_than.is_some());
    let keeps = policy.keep_last.is_some() || !policy.keep_tags.is_empty();
    if conditions == 0 && !keeps && policy.delete_untagged_older_than.is_none() {
        return Err(check.invalid(
            format!("retention[{i}]"),
            "has no rule, so it does nothing",
            "add keep_last, keep_tags, delete_tags, delete_older_than or delete_untagged_older_than",
        ));
    }
    let combine =
        match (r.combine.as_deref(), conditions) {
            (Some("any"), _) => Combine::Any,
            (Some("all"), _) => Combine::All,
            (Some(other), _) => {
                return Err(check.invalid(
                    key("match"),
                    format!("is {other:?}"),
                    "use \"any\" or \"all\"",
                ))
            }
            // Two conditions read either way ("pr-* tags, or old ones" against "old pr-* tags"):
            // a guess could delete what the user meant to keep.
            (None, 2) => return Err(check.invalid(
                key("match"),
                "is missing, but delete_tags and delete_older_than can combine two ways",
                "say match = \"all\" (a tag must meet both) or match = \"any\" (either suffices)",
            )),
            (None, _) => Combine::Any,
        };
    Ok(RetentionPolicy { combine, ..policy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::from_toml(text, "test").unwrap_err().to_string()
    }

    fn ok(text: &str) -> Config {
        Config::from_toml(text, "test").unwrap()
    }

    #[test]
    fn gc_defaults_are_daily_with_a_day_of_grace_keeping_untagged() {
        let c = Config::builtin();
        assert_eq!(c.gc.interval, Some(DAY));
        assert_eq!(c.gc.grace, DAY);
        assert_eq!(c.gc.untagged, Untagged::Keep);
        assert!(c.retention.is_empty() && c.immutable.is_empty());
    }

    #[test]
    fn gc_interval_off_leaves_only_the_command() {
        assert_eq!(ok("[gc]\ninterval = \"off\"").gc.interval, None);
        assert_eq!(ok("[gc]\ngrace = \"2h\"").gc.interval, Some(DAY));
        assert_eq!(ok("[gc]\ninterval = \"12h\"").gc.interval, Some(DAY / 2));
    }

    #[test]
    fn gc_interval_under_a_second_is_an_error() {
        assert!(err("[gc]\ninterval = \"0s\"").contains("gc.interval"));
        assert!(err("[gc]\ninterval = \"soon\"").contains("gc.interval"));
    }

    #[test]
    fn gc_grace_of_zero_is_an_error() {
        let e = err("[gc]\ngrace = \"0s\"");
        assert!(e.contains("config test:2: `gc.grace`"), "{e}");
        assert_eq!(ok("[gc]\ngrace = \"2s\"").gc.grace, Duration::from_secs(2));
    }

    #[test]
    fn gc_untagged_is_keep_or_delete() {
        assert_eq!(
            ok("[gc]\nuntagged = \"delete\"").gc.untagged,
            Untagged::Delete
        );
        assert!(err("[gc]\nuntagged = \"purge\"").contains("gc.untagged"));
    }

    #[test]
    fn retention_parses_every_rule() {
        let c = ok(
            "[[retention]]\nrepos = \"team-a/*\"\nkeep_last = 5\nkeep_tags = [\"v*\"]\n\
                    delete_tags = [\"pr-*\"]\ndelete_older_than = \"30d\"\nmatch = \"all\"\n\
                    delete_untagged_older_than = \"7d\"",
        );
        let p = &c.retention[0];
        assert!(p.repos.matches("team-a/app"));
        assert_eq!(p.keep_last, Some(5));
        assert!(p.keep_tags[0].matches("v1") && p.delete_tags[0].matches("pr-7"));
        assert_eq!(p.delete_older_than, Some(30 * DAY));
        assert_eq!(p.combine, Combine::All);
        assert_eq!(p.delete_untagged_older_than, Some(7 * DAY));
    }

    #[test]
    fn retention_repos_must_be_a_pattern() {
        let e = err("[[retention]]\nrepos = \"a*b\"\nkeep_last = 1");
        assert!(e.contains("retention[0].repos"), "{e}");
    }

    #[test]
    fn retention_without_a_rule_is_an_error() {
        assert!(err("[[retention]]\nrepos = \"*\"").contains("has no rule"));
    }

    #[test]
    fn retention_keep_last_of_zero_is_an_error() {
        assert!(
            err("[[retention]]\nrepos = \"*\"\nkeep_last = 0").contains("retention[0].keep_last")
        );
    }

    #[test]
    fn retention_tag_patterns_are_checked() {
        let e = err("[[retention]]\nrepos = \"*\"\nkeep_tags = [\"a/b\"]");
        assert!(e.contains("retention[0].keep_tags"), "{e}");
    }

    #[test]
    fn retention_durations_are_checked() {
        let e = err("[[retention]]\nrepos = \"*\"\ndelete_older_than = \"old\"");
        assert!(e.contains("retention[0].delete_older_than"), "{e}");
    }

    #[test]
    fn retention_with_two_conditions_must_say_any_or_all() {
        let two =
            "[[retention]]\nrepos = \"*\"\ndelete_tags = [\"pr-*\"]\ndelete_older_than = \"1d\"";
        assert!(err(two).contains("retention[0].match"));
        assert!(err(&format!("{two}\nmatch = \"some\"")).contains("retention[0].match"));
        assert_eq!(
            ok(&format!("{two}\nmatch = \"any\"")).retention[0].combine,
            Combine::Any
        );
    }

    #[test]
    fn immutable_rules_cover_matching_tags() {
        let c = ok(
            "[[immutable]]\nrepos = \"prod/*\"\ntags = [\"v*\"]\n[[immutable]]\nrepos = \"base\"",
        );
        assert!(c.immutable[0].covers("prod/app", "v1"));
        assert!(!c.immutable[0].covers("prod/app", "latest"));
        assert!(!c.immutable[0].covers("dev/app", "v1"));
        assert!(c.immutable[1].covers("base", "anything"));
    }

    #[test]
    fn immutable_patterns_are_checked() {
        assert!(err("[[immutable]]\nrepos = \"\"").contains("immutable[0].repos"));
        assert!(err("[[immutable]]\nrepos = \"*\"\ntags = []").contains("immutable[0].tags"));
        assert!(err("[[immutable]]\nrepos = \"*\"\ntags = [\"a b\"]").contains("immutable[0].tags"));
    }
}
