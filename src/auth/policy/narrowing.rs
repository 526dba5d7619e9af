//! Warnings about access rules that are valid but probably not meant: a more specific
//! pattern that overrides a broader one and, in doing so, takes rights away from principals
//! it still grants something (see [`Policy::narrowing_warnings`]).

use super::{Action, Entry, Grant, Pattern, Policy, Who};

impl Policy {
    /// Where a more specific pattern still grants a principal something, but less than the
    /// broader pattern it overrides: allowed, but usually a surprise (e.g. `public/*` for
    /// `anonymous` to pull, under `*` for `authenticated` to push, takes push on `public/*`
    /// from every user, who still pull there as anyone). A narrower pattern that grants a
    /// principal nothing at all (`team-a/*` for its team only) is taken as a deliberate
    /// lock-out and not reported. One message per principal and rule, naming both rules
    /// and what is lost.
    pub fn narrowing_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, narrow) in self.entries.iter().enumerate() {
            // The entry that would decide for these names if `narrow` were not there.
            let Some(broad) = self.entries[i + 1..]
                .iter()
                .find(|b| b.pattern.covers(&narrow.pattern))
            else {
                continue;
            };
            for grant in &broad.grants {
                for who in &grant.who {
                    let kept = narrow.actions_for(who);
                    let lost = grant.actions & !kept;
                    if kept != 0 && lost != 0 {
                        warnings.push(narrowing_message(narrow, broad, grant, who, lost));
                    }
                }
            }
        }
        warnings
    }
}

impl Entry {
    /// What this entry's rules give everyone who is `who` (`anonymous` rules give
    /// everyone, `authenticated` rules every user and group).
    fn actions_for(&self, who: &Who) -> u8 {
        self.grants
            .iter()
            .filter(|g| g.who.iter().any(|w| w.includes(who)))
            .fold(0, |acc, g| acc | g.actions)
    }
}

impl Who {
    /// Is everyone who is `other` also `self`?
    fn includes(&self, other: &Who) -> bool {
        match (self, other) {
            (Who::Anyone, _) => true,
            (Who::Authenticated, Who::Authenticated | Who::User(_) | Who::Group(_)) => true,
            (Who::User(a), Who::User(b)) | (Who::Group(a), Who::Group(b)) => a == b,
            (Who::Authenticated | Who::User(_) | Who::Group(_), _) => false,
        }
    }

    fn text(&self) -> String {
        match self {
            Who::Anyone => "anonymous".into(),
            Who::Authenticated => "authenticated".into(),
            Who::User(name) => name.clone(),
            Who::Group(group) => format!("group:{group}"),
        }
    }
}

fn narrowing_message(narrow: &Entry, broad: &Entry, grant: &Grant, who: &Who, lost: u8) -> String {
    let lost: Vec<&str> = Action::ALL
        .into_iter()
        .filter(|a| lost & a.bit() != 0)
        .map(Action::as_str)
        .collect();
    let (n, b) = (narrow.pattern.text(), broad.pattern.text());
    let first = narrow.grants.first().map_or(0, |g| g.index);
    format!(
        "access[{first}] (repos = {n:?}) takes {listed} away from {who} on repositories matching \
         {n:?}, which access[{index}] (repos = {b:?}) grants: only the rules with the most \
         specific matching pattern count. If that is not meant, add a rule with repos = {n:?}, \
         who = [{who:?}], actions = {lost:?}",
        listed = lost.join(", "),
        who = who.text(),
        index = grant.index,
    )
}

impl Pattern {
    /// Does every name `other` matches also match `self`, `other` being the narrower one?
    fn covers(&self, other: &Pattern) -> bool {
        match (self, other) {
            (Pattern::Prefix(p), Pattern::Exact(o) | Pattern::Prefix(o)) => {
                self != other && o.starts_with(p.as_str())
            }
            (Pattern::Exact(_), _) => false,
        }
    }

    /// The pattern as written.
    fn text(&self) -> String {
        match self {
            Pattern::Exact(name) => name.clone(),
            Pattern::Prefix(prefix) => format!("{prefix}*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::RuleSpec;
    use super::*;

    fn rule(repos: &str, who: &[&str], actions: &[&str]) -> RuleSpec {
        RuleSpec {
            repos: repos.into(),
            who: who.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_narrower_pattern_granting_less_is_warned_about() {
        let rules = |extra: &[RuleSpec]| {
            let mut all = vec![
                rule("*", &["authenticated"], &["pull", "push"]),
                rule("public/*", &["anonymous"], &["pull"]),
            ];
            all.extend_from_slice(extra);
            Policy::new(all, HashMap::new())
                .unwrap()
                .narrowing_warnings()
        };
        let warnings = rules(&[]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        for part in [
            "access[1]",
            "\"public/*\"",
            "takes push away from authenticated",
            "access[0]",
            "\"*\"",
        ] {
            assert!(w.contains(part), "{part}: {w}");
        }
        assert!(rules(&[rule("public/*", &["authenticated"], &["push"])]).is_empty());
        // Per principal: alice keeps pull but loses push; group:devs gets nothing at all on
        // team-a/*, a deliberate lock-out, not reported.
        let p = Policy::new(
            vec![
                rule("team-*", &["alice", "group:devs"], &["pull", "push"]),
                rule("team-a/*", &["alice"], &["pull"]),
                rule("other/x", &["anonymous"], &["pull"]),
            ],
            HashMap::new(),
        )
        .unwrap();
        let w = p.narrowing_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("takes push away from alice"), "{w:?}");
    }
}
