//! The retention planner: pure logic from `[[retention]]` policies and one repository's
//! tags and manifests to the tags and untagged manifests that go. No storage, no clock:
//! [`run`] (`retention_run.rs`) reads each repository, passes `now`, and carries out (or,
//! in a dry run, only returns) the plan through the repository service.
//!
//! Rules, for the policies whose `repos` match the repository:
//! - A tag is **kept** when any policy's keep rule keeps it (among its `keep_last` most
//!   recently pushed tags, or matching its `keep_tags`), or an `[[immutable]]` rule covers
//!   it. A kept tag is never deleted, whatever another policy says.
//! - Otherwise a tag goes when some policy deletes it: its delete conditions (`delete_tags`,
//!   `delete_older_than`) combined by its `match` (any or all); in a policy with keep rules
//!   only, every tag its keep rules do not keep.
//! - A manifest goes when, after the plan's tag deletions, nothing keeps it and some policy's
//!   `delete_untagged_older_than` has passed since its push. Kept are: manifests a remaining
//!   tag names, the children of a kept index, referrers of a kept manifest, and the subject
//!   of a kept referrer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::config::{Combine, ImmutableRule, RetentionPolicy};
use crate::registry::reference::Digest;

/// One tag as the planner sees it.
#[derive(Clone, Debug)]
pub struct TagInfo {
    pub name: String,
    pub digest: Digest,
    /// When the tag was last pushed (moved to this digest).
    pub pushed: SystemTime,
}

/// One manifest linked in the repository.
#[derive(Clone, Debug)]
pub struct ManifestInfo {
    pub digest: Digest,
    pub pushed: SystemTime,
    /// The manifests an index names.
    pub children: Vec<Digest>,
    /// The manifest this one refers to (a signature's image).
    pub subject: Option<Digest>,
}

/// What retention would delete in one repository, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub tags: Vec<String>,
    pub manifests: Vec<Digest>,
    /// Why each goes: the position in `policies` (the config's `[[retention]]` order) of the
    /// first policy that deletes it, by tag name or manifest digest.
    pub rules: BTreeMap<String, usize>,
}

pub fn plan(
    policies: &[RetentionPolicy],
    immutable: &[ImmutableRule],
    repo: &str,
    tags: &[TagInfo],
    manifests: &[ManifestInfo],
    now: SystemTime,
) -> Plan {
    let applicable: Vec<(usize, &RetentionPolicy)> = policies
        .iter()
        .enumerate()
        .filter(|(_, p)| p.repos.matches(repo))
        .collect();
    if applicable.is_empty() {
        return Plan::default();
    }
    let kept: HashSet<&str> = tags
        .iter()
        .filter(|t| {
            immutable.iter().any(|r| r.covers(repo, &t.name))
                || applicable.iter().any(|(_, p)| keeps(p, tags, t))
        })
        .map(|t| t.name.as_str())
        .collect();
    let mut rules = BTreeMap::new();
    for t in tags.iter().filter(|t| !kept.contains(t.name.as_str())) {
        if let Some((i, _)) = applicable.iter().find(|(_, p)| deletes(p, tags, t, now)) {
            rules.insert(t.name.clone(), *i);
        }
    }
    let deleted: BTreeSet<String> = rules.keys().cloned().collect();
    let remaining = tags.iter().filter(|t| !deleted.contains(t.name.as_str()));
    let live = reachable(remaining.map(|t| &t.digest), manifests);
    let mut gone: Vec<Digest> = Vec::new();
    for m in manifests.iter().filter(|m| !live.contains(&m.digest)) {
        let expired = applicable.iter().find(|(_, p)| {
            p.delete_untagged_older_than
                .is_some_and(|age| older_than(m.pushed, age, now))
        });
        if let Some((i, _)) = expired {
            rules.insert(m.digest.to_string(), *i);
            gone.push(m.digest.clone());
        }
    }
    gone.sort_by_key(|d| d.to_string());
    Plan {
        tags: deleted.into_iter().collect(),
        manifests: gone,
        rules,
    }
}

/// Whether a keep rule of `p` keeps `tag`.
fn keeps(p: &RetentionPolicy, all: &[TagInfo], tag: &TagInfo) -> bool {
    if p.keep_tags.iter().any(|k| k.matches(&tag.name)) {
        return true;
    }
    let Some(n) = p.keep_last else {
        return false;
    };
    // Newer first; ties by name, so the plan does not depend on listing order.
    let newer = all
        .iter()
        .filter(|o| (o.pushed, &o.name) > (tag.pushed, &tag.name))
        .count();
    newer < n
}

/// Whether `p` wants `tag` gone (before any policy's keep rules have their say).
fn deletes(p: &RetentionPolicy, all: &[TagInfo], tag: &TagInfo, now: SystemTime) -> bool {
    let mut conditions = Vec::with_capacity(2);
    if !p.delete_tags.is_empty() {
        conditions.push(p.delete_tags.iter().any(|d| d.matches(&tag.name)));
    }
    if let Some(age) = p.delete_older_than {
        conditions.push(older_than(tag.pushed, age, now));
    }
    if conditions.is_empty() {
        // Keep rules only: what they do not keep goes.
        let has_keeps = p.keep_last.is_some() || !p.keep_tags.is_empty();
        return has_keeps && !keeps(p, all, tag);
    }
    match p.combine {
        Combine::Any => conditions.iter().any(|c| *c),
        Combine::All => conditions.iter().all(|c| *c),
    }
}

fn older_than(pushed: SystemTime, age: Duration, now: SystemTime) -> bool {
    now.duration_since(pushed)
        .is_ok_and(|elapsed| elapsed > age)
}

/// The manifests that `roots` keep: themselves, an index's children, a manifest's
/// referrers, and a referrer's subject, transitively.
fn reachable<'a>(
    roots: impl Iterator<Item = &'a Digest>,
    manifests: &[ManifestInfo],
) -> HashSet<Digest> {
    let by_digest: HashMap<&Digest, &ManifestInfo> =
        manifests.iter().map(|m| (&m.digest, m)).collect();
    let mut referrers: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for m in manifests {
        if let Some(subject) = &m.subject {
            referrers.entry(subject).or_default().push(&m.digest);
        }
    }
    let mut live = HashSet::new();
    let mut work: Vec<Digest> = roots.cloned().collect();
    while let Some(d) = work.pop() {
        if !live.insert(d.clone()) {
            continue;
        }
        if let Some(m) = by_digest.get(&d) {
            work.extend(m.children.iter().cloned());
            work.extend(m.subject.iter().cloned());
        }
        work.extend(
            referrers
                .get(&d)
                .into_iter()
                .flatten()
                .map(|r| (*r).clone()),
        );
    }
    live
}

#[path = "retention_run.rs"]
mod run;
pub use self::run::{run, Entry, Outcome, RepoRetention};

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
