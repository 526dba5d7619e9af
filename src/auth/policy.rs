//! Access rules: who may pull, push or delete which repositories.
//!
//! A rule names repositories by a pattern (an exact name, a prefix ending in `*`, or `*`),
//! a list of principals, and a list of actions. For a given repository, only the rules
//! with the most specific matching pattern count (an exact name beats `team-a/*`, which
//! beats `team-*`, which beats `*`), so a narrow rule can take rights away that a broad one
//! gives; rules with that same pattern add up. A repository no rule matches is denied to
//! everyone.
//!
//! Principals: a user name, `group:NAME` (from the provider, e.g. LDAP, or the config's
//! groups table), `authenticated` (any logged-in user) and `anonymous` (everyone, logged in
//! or not: logging in never takes a right away, since clients send credentials whenever
//! they have them).

use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::Identity;
// The same patterns retention and immutable tags use.
use crate::config::RepoPattern as Pattern;

mod narrowing;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Pull, Action::Push, Action::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }
}

/// A set of actions as bits, so that a rule check is one AND.
const ALL_ACTIONS: u8 = 1 | 2 | 4;

/// One access rule as written in the config, e.g.
/// `{ repos = "team-a/*", who = ["alice", "group:devs"], actions = ["pull", "push"] }`.
/// Checked and compiled by [`Policy::new`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub repos: String,
    pub who: Vec<String>,
    pub actions: Vec<String>,
}

/// A rule that cannot be compiled. `index` counts rules from 0, in config order, and the
/// message names it like the config key (`access[2]`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "access[{index}].repos = {pattern:?} {problem}; use an exact name like \"team-a/app\", \
         a prefix ending in * like \"team-a/*\", or \"*\" for every repository"
    )]
    Pattern {
        index: usize,
        pattern: String,
        problem: &'static str,
    },
    #[error(
        "access[{index}].who {problem}; list user names, \"group:NAME\", \"authenticated\" \
         (any logged-in user) or \"anonymous\" (everyone)"
    )]
    Who { index: usize, problem: String },
    #[error("access[{index}].actions {problem}; use some of \"pull\", \"push\", \"delete\"")]
    Actions { index: usize, problem: String },
}

/// Compiled access rules. Cheap to query; build once per config.
#[derive(Debug)]
pub struct Policy {
    /// One entry per distinct pattern, most specific first, so the first match decides.
    entries: Vec<Entry>,
    /// The config's groups table: group → members.
    groups: HashMap<String, HashSet<String>>,
}

#[derive(Debug)]
struct Entry {
    pattern: Pattern,
    /// The rules written with this pattern; each keeps its own who × actions pairing.
    grants: Vec<Grant>,
}

#[derive(Debug)]
struct Grant {
    /// The rule's position in the config, for messages.
    index: usize,
    who: Vec<Who>,
    actions: u8,
}

#[derive(Debug, PartialEq, Eq, Clone)]
enum Who {
    /// Written `anonymous`: everyone.
    Anyone,
    Authenticated,
    User(String),
    Group(String),
}

impl Policy {
    pub fn new(
        rules: Vec<RuleSpec>,
        groups: HashMap<String, Vec<String>>,
    ) -> Result<Self, PolicyError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (index, rule) in rules.into_iter().enumerate() {
            let pattern = Pattern::parse(&rule.repos).map_err(|problem| PolicyError::Pattern {
                index,
                pattern: rule.repos.clone(),
                problem,
            })?;
            let grant = Grant {
                index,
                who: parse_who(index, &rule.who)?,
                actions: parse_actions(index, &rule.actions)?,
            };
            match entries.iter_mut().find(|e| e.pattern == pattern) {
                Some(entry) => entry.grants.push(grant),
                None => entries.push(Entry {
                    pattern,
                    grants: vec![grant],
                }),
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.pattern.rank()));
        let groups = groups
            .into_iter()
            .map(|(group, members)| (group, members.into_iter().collect()))
            .collect();
        Ok(Self { entries, groups })
    }

    /// The default when a server has logins but no rules: any logged-in user may do
    /// anything, anonymous requests nothing.
    pub fn allow_all_authenticated() -> Policy {
        Policy {
            entries: vec![Entry {
                pattern: Pattern::Prefix(String::new()),
                grants: vec![Grant {
                    index: 0,
                    who: vec![Who::Authenticated],
                    actions: ALL_ACTIONS,
                }],
            }],
            groups: HashMap::new(),
        }
    }

    /// May `who` (None: not logged in) do `action` on the repository `repo`?
    pub fn allows(&self, who: Option<&Identity>, repo: &str, action: Action) -> bool {
        let Some(entry) = self.entries.iter().find(|e| e.pattern.matches(repo)) else {
            return false;
        };
        entry
            .grants
            .iter()
            .any(|g| g.actions & action.bit() != 0 && g.who.iter().any(|w| self.is(who, w)))
    }

    /// True when some action on some repository is not granted to anonymous requests. The
    /// gateway then answers an anonymous `GET /v2/` with a login challenge, which is what
    /// makes `docker login` ask for (and send) credentials.
    pub fn any_needs_login(&self) -> bool {
        // Without `*`, some names match no rule and are denied to everyone. Every other
        // entry decides for some name (one longer than all more specific patterns), so
        // each must give anonymous every action.
        let covers_all = self
            .entries
            .iter()
            .any(|e| e.pattern == Pattern::Prefix(String::new()));
        !covers_all
            || self
                .entries
                .iter()
                .any(|e| e.anonymous_actions() != ALL_ACTIONS)
    }

    /// Every group `id` is in: the provider's (LDAP) and the config's groups table, sorted.
    pub fn groups_of(&self, id: &Identity) -> Vec<String> {
        let mut groups = id.groups.clone();
        let table = self.groups.iter().filter(|(_, m)| m.contains(&id.user));
        groups.extend(table.map(|(g, _)| g.clone()));
        groups.sort();
        groups.dedup();
        groups
    }

    fn is(&self, who: Option<&Identity>, principal: &Who) -> bool {
        match (principal, who) {
            (Who::Anyone, _) => true,
            (Who::Authenticated | Who::User(_) | Who::Group(_), None) => false,
            (Who::Authenticated, Some(_)) => true,
            (Who::User(name), Some(id)) => id.user == *name,
            (Who::Group(group), Some(id)) => {
                id.groups.iter().any(|g| g == group)
                    || self.groups.get(group).is_some_and(|m| m.contains(&id.user))
            }
        }
    }
}

impl Entry {
    fn anonymous_actions(&self) -> u8 {
        self.grants
            .iter()
            .filter(|g| g.who.contains(&Who::Anyone))
            .fold(0, |acc, g| acc | g.actions)
    }
}

fn parse_who(index: usize, list: &[String]) -> Result<Vec<Who>, PolicyError> {
    let bad = |problem: String| PolicyError::Who { index, problem };
    if list.is_empty() {
        return Err(bad("is empty, so the rule grants nothing".into()));
    }
    list.iter()
        .map(|entry| match entry.as_str() {
            "anonymous" => Ok(Who::Anyone),
            "authenticated" => Ok(Who::Authenticated),
            // A likely mistake for "everyone": say which word to use instead.
            "*" => Err(bad("contains \"*\", which is not a user name".into())),
            other => match other.strip_prefix("group:") {
                Some(group) if valid_name(group) => Ok(Who::Group(group.to_owned())),
                Some(_) => Err(bad(format!("contains {other:?}, which names no group"))),
                // Basic credentials cannot carry a ':' in the user name.
                None if valid_name(other) && !other.contains(':') => {
                    Ok(Who::User(other.to_owned()))
                }
                None => Err(bad(format!("contains {other:?}, which is not a user name"))),
            },
        })
        .collect()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn parse_actions(index: usize, list: &[String]) -> Result<u8, PolicyError> {
    let bad = |problem: String| PolicyError::Actions { index, problem };
    if list.is_empty() {
        return Err(bad("is empty, so the rule grants nothing".into()));
    }
    list.iter().try_fold(0, |acc, a| match Action::parse(a) {
        Some(action) => Ok(acc | action.bit()),
        None => Err(bad(format!("contains {a:?}, which is not an action"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(repos: &str, who: &[&str], actions: &[&str]) -> RuleSpec {
        RuleSpec {
            repos: repos.into(),
            who: who.iter().map(|s| s.to_string()).collect(),
            actions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn user(name: &str, groups: &[&str]) -> Identity {
        Identity {
            user: name.into(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The actions `who` may do on `repo`, as a string like "pull push".
    fn rights(policy: &Policy, who: Option<&Identity>, repo: &str) -> String {
        Action::ALL
            .into_iter()
            .filter(|a| policy.allows(who, repo, *a))
            .map(Action::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn matrix_policy() -> Policy {
        let rules = vec![
            rule("*", &["authenticated"], &["pull"]),
            rule("team-a/*", &["group:devs", "alice"], &["pull", "push"]),
            // Same pattern as above: added to it.
            rule("team-a/*", &["alice"], &["delete"]),
            // More specific: replaces the team-a/* rules for this one repository.
            rule("team-a/secret", &["alice"], &["pull"]),
            rule("public/*", &["anonymous"], &["pull"]),
        ];
        let groups = HashMap::from([("devs".to_string(), vec!["bob".to_string()])]);
        Policy::new(rules, groups).unwrap()
    }

    #[test]
    fn permission_matrix() {
        let p = matrix_policy();
        let alice = user("alice", &[]);
        let bob = user("bob", &[]); // in devs through the config's groups table
        assert_eq!(p.groups_of(&bob), ["devs"]);
        assert_eq!(p.groups_of(&user("eve", &["ldap"])), ["ldap"]);
        let carol = user("carol", &["devs"]); // in devs through her provider (LDAP)
        let dave = user("dave", &["ops"]);
        let who: [(&str, Option<&Identity>); 5] = [
            ("anonymous", None),
            ("alice", Some(&alice)),
            ("bob", Some(&bob)),
            ("carol", Some(&carol)),
            ("dave", Some(&dave)),
        ];
        // repo, then the rights of anonymous, alice, bob, carol, dave.
        let expected: [(&str, [&str; 5]); 6] = [
            (
                "team-a/app",
                ["", "pull push delete", "pull push", "pull push", ""],
            ),
            (
                "team-a/x/y",
                ["", "pull push delete", "pull push", "pull push", ""],
            ),
            ("team-a/secret", ["", "pull", "", "", ""]),
            ("team-a", ["", "pull", "pull", "pull", "pull"]),
            ("other/app", ["", "pull", "pull", "pull", "pull"]),
            ("public/img", ["pull", "pull", "pull", "pull", "pull"]),
        ];
        for (repo, row) in expected {
            for ((name, identity), want) in who.iter().zip(row) {
                assert_eq!(rights(&p, *identity, repo), want, "{name} on {repo}");
            }
        }
    }

    #[test]
    fn unmatched_repositories_are_denied() {
        let p = Policy::new(
            vec![rule(
                "team-a/*",
                &["anonymous"],
                &["pull", "push", "delete"],
            )],
            HashMap::new(),
        )
        .unwrap();
        let alice = user("alice", &[]);
        assert_eq!(rights(&p, Some(&alice), "team-b/app"), "");
        assert_eq!(rights(&p, None, "team-b/app"), "");
        assert_eq!(rights(&p, None, "team-a/app"), "pull push delete");
        let empty = Policy::new(vec![], HashMap::new()).unwrap();
        assert_eq!(rights(&empty, Some(&alice), "anything"), "");
    }

    #[test]
    fn the_most_specific_pattern_wins() {
        let rules = vec![
            rule("*", &["anonymous"], &["pull"]),
            rule("team-*", &["alice"], &["push"]),
            rule("team-a*", &["bob"], &["push"]),
            rule("team-a", &["carol"], &["push"]),
        ];
        let p = Policy::new(rules, HashMap::new()).unwrap();
        let (alice, bob, carol) = (user("alice", &[]), user("bob", &[]), user("carol", &[]));
        assert_eq!(rights(&p, Some(&alice), "team-b/x"), "push");
        assert_eq!(
            rights(&p, Some(&alice), "team-a/x"),
            "",
            "team-a* beats team-*"
        );
        assert_eq!(rights(&p, Some(&bob), "team-a/x"), "push");
        // "team-a" and "team-a*" both match "team-a"; the exact name wins the tie.
        assert_eq!(rights(&p, Some(&bob), "team-a"), "");
        assert_eq!(rights(&p, Some(&carol), "team-a"), "push");
        assert_eq!(rights(&p, None, "elsewhere"), "pull");
    }

    #[test]
    fn the_default_lets_any_logged_in_user_do_anything() {
        let p = Policy::allow_all_authenticated();
        let alice = user("alice", &[]);
        assert_eq!(rights(&p, Some(&alice), "any/repo"), "pull push delete");
        assert_eq!(rights(&p, None, "any/repo"), "");
        assert!(p.any_needs_login());
    }

    #[test]
    fn login_is_needed_unless_anonymous_may_do_everything_everywhere() {
        let all = ["pull", "push", "delete"];
        let open = |extra: Vec<RuleSpec>| {
            let mut rules = vec![rule("*", &["anonymous"], &all)];
            rules.extend(extra);
            Policy::new(rules, HashMap::new())
                .unwrap()
                .any_needs_login()
        };
        assert!(!open(vec![]));
        assert!(!open(vec![
            rule("a/*", &["anonymous"], &["pull", "push"]),
            rule("a/*", &["anonymous"], &["delete"])
        ]));
        assert!(
            open(vec![rule("a/*", &["alice"], &all)]),
            "a/* is closed to anonymous"
        );
        assert!(
            open(vec![rule("a/b", &["anonymous"], &["pull"])]),
            "no push on a/b"
        );
        assert!(matrix_policy().any_needs_login());
        let no_star =
            Policy::new(vec![rule("public/*", &["anonymous"], &all)], HashMap::new()).unwrap();
        assert!(no_star.any_needs_login(), "other names are denied");
    }

    #[test]
    fn invalid_rules_are_rejected_with_their_index() {
        let ok = rule("*", &["authenticated"], &["pull"]);
        let err = |bad: RuleSpec| Policy::new(vec![ok.clone(), bad], HashMap::new()).unwrap_err();
        for pattern in ["", "a*b", "**", "Team-A/*", "/x", "a//b", "a/", "team a"] {
            let e = err(rule(pattern, &["alice"], &["pull"]));
            assert!(
                matches!(e, PolicyError::Pattern { index: 1, .. }),
                "{pattern:?}: {e}"
            );
            assert!(e.to_string().starts_with("access[1].repos"), "{e}");
            assert!(e.to_string().contains("\"team-a/*\""), "names the fix: {e}");
        }
        for who in [&[][..], &["*"], &["group:"], &["a b"], &["x:y"], &[""]] {
            let e = err(rule("*", who, &["pull"]));
            assert!(
                matches!(e, PolicyError::Who { index: 1, .. }),
                "{who:?}: {e}"
            );
            assert!(
                e.to_string().contains("\"authenticated\""),
                "names the fix: {e}"
            );
        }
        for actions in [&[][..], &["read"], &["Pull"], &["pull", "*"]] {
            let e = err(rule("*", &["alice"], actions));
            assert!(
                matches!(e, PolicyError::Actions { index: 1, .. }),
                "{actions:?}: {e}"
            );
            assert!(e.to_string().starts_with("access[1].actions"), "{e}");
        }
    }

    #[test]
    fn valid_patterns_and_principals_are_accepted() {
        let rules = vec![
            rule("*", &["anonymous", "authenticated"], &["pull"]),
            rule("team-*", &["group:dev-ops"], &["push"]),
            rule(
                "team-a/*",
                &["alice", "bob.smith@example.com"],
                &["pull", "push", "delete"],
            ),
            rule("library/ubuntu", &["group:admins"], &["delete"]),
            rule("a.b_c-d/e", &["alice"], &["pull", "pull"]),
        ];
        assert!(Policy::new(rules, HashMap::new()).is_ok());
    }

    #[test]
    fn rule_specs_deserialize_from_toml() {
        #[derive(Deserialize)]
        struct Config {
            access: Vec<RuleSpec>,
        }
        let text = r#"access = [{ repos = "team-a/*", who = ["alice", "group:devs", "authenticated"], actions = ["pull", "push"] }]"#;
        let c: Config = toml::from_str(text).unwrap();
        assert_eq!(
            c.access,
            [rule(
                "team-a/*",
                &["alice", "group:devs", "authenticated"],
                &["pull", "push"]
            )]
        );
        let typo = r#"access = [{ repo = "x", who = ["alice"], actions = ["pull"] }]"#;
        assert!(
            toml::from_str::<Config>(typo).is_err(),
            "unknown keys are refused"
        );
    }
}
