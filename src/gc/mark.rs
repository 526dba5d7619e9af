//! The mark: from every repository's tags (and, unless `gc.untagged = "delete"`, every
//! manifest revision) to the manifests they reach (index children, referrers and subjects)
//! and those manifests' blobs; then which links stay. A layer link stays while a manifest
//! the repository keeps names it, or while it is recent (written or touched within the
//! grace period: an upload whose manifest is still coming); an untagged revision stays
//! while it is recent (a child pushed by digest before its index). What stays is live.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::SystemTime;

use crate::config::Untagged;
use crate::registry::manifest::Manifest;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{LinkEntry, LinkKind, Storage, StorageError, StorageResult};

/// What the mark found.
#[derive(Debug, Default)]
pub struct Marked {
    /// Every blob (manifests included) something still reaches.
    pub live: HashSet<Digest>,
    /// Manifest revisions no tag reaches, with `untagged = "delete"`: the sweep unlinks them.
    pub untagged: Vec<(RepoName, Digest)>,
    /// Layer links no kept manifest of their repository names, older than the grace
    /// period and untouched: the sweep unlinks them (registry:2 would collect their blobs).
    pub stale_layers: Vec<(RepoName, Digest)>,
}

/// What the mark reads besides the repositories: every link (one enumeration), when each
/// digest was last touched, and the grace cut-off (`T0 - gc.grace`).
pub struct Inputs<'a> {
    pub links: &'a [LinkEntry],
    pub touched: &'a HashMap<Digest, SystemTime>,
    pub cutoff: SystemTime,
}

impl Inputs<'_> {
    /// Whether a link (or the digest it names) was written or touched since the cut-off.
    fn recent(&self, link: &LinkEntry) -> bool {
        link.modified >= self.cutoff || self.touched_since_cutoff(&link.digest)
    }

    pub fn touched_since_cutoff(&self, digest: &Digest) -> bool {
        self.touched.get(digest).is_some_and(|t| *t >= self.cutoff)
    }
}

pub async fn mark(
    storage: &dyn Storage,
    untagged: Untagged,
    inputs: &Inputs<'_>,
) -> StorageResult<Marked> {
    let mut by_repo: HashMap<&RepoName, Vec<&LinkEntry>> = HashMap::new();
    for link in inputs.links {
        by_repo.entry(&link.repo).or_default().push(link);
    }
    let mut marked = Marked::default();
    for repo in storage.list_repositories().await? {
        let links = by_repo.remove(&repo).unwrap_or_default();
        mark_repo(storage, &repo, &links, untagged, inputs, &mut marked).await?;
    }
    // Links of a repository that vanished since the enumeration: judged on their own.
    for (repo, links) in by_repo {
        let repo = repo.clone();
        mark_repo(storage, &repo, &links, untagged, inputs, &mut marked).await?;
    }
    Ok(marked)
}

async fn mark_repo(
    storage: &dyn Storage,
    repo: &RepoName,
    links: &[&LinkEntry],
    untagged: Untagged,
    inputs: &Inputs<'_>,
    marked: &mut Marked,
) -> StorageResult<()> {
    // Lists, not iterator closures, across the awaits below: a closure held over an await
    // makes the future `Send` only for some lifetimes, and the server spawns this.
    let revisions: Vec<&LinkEntry> = links
        .iter()
        .copied()
        .filter(|l| l.kind == LinkKind::Manifest)
        .collect();
    let layers: Vec<&LinkEntry> = links
        .iter()
        .copied()
        .filter(|l| l.kind == LinkKind::Layer)
        .collect();
    let mut roots = Vec::new();
    for tag in storage.list_tags(repo).await?.unwrap_or_default() {
        if let Some(d) = storage.read_tag(repo, &tag).await? {
            roots.push(d);
        }
    }
    for revision in &revisions {
        if untagged == Untagged::Keep || inputs.recent(revision) {
            roots.push(revision.digest.clone());
        }
    }
    let reached = reach(storage, repo, roots, &mut marked.live).await?;
    if untagged == Untagged::Delete {
        for l in &revisions {
            if !reached.named.contains(&l.digest) {
                marked.untagged.push((repo.clone(), l.digest.clone()));
            }
        }
    }
    for layer in layers {
        if reached.named.contains(&layer.digest) || inputs.recent(layer) {
            marked.live.insert(layer.digest.clone());
        } else {
            marked
                .stale_layers
                .push((repo.clone(), layer.digest.clone()));
        }
    }
    Ok(())
}

/// What one repository's kept manifests reach.
struct Reached {
    /// The manifests reached and every blob they name.
    named: HashSet<Digest>,
}

/// Walks the manifests reachable from `roots` in `repo`, adding each and its blobs to
/// `live`.
async fn reach(
    storage: &dyn Storage,
    repo: &RepoName,
    roots: Vec<Digest>,
    live: &mut HashSet<Digest>,
) -> StorageResult<Reached> {
    let mut reached = HashSet::new();
    let mut named = HashSet::new();
    let mut queue: VecDeque<Digest> = roots.into();
    while let Some(digest) = queue.pop_front() {
        if !reached.insert(digest.clone()) {
            continue;
        }
        named.insert(digest.clone());
        for referrer in referrers(storage, repo, &digest).await? {
            queue.push_back(referrer);
        }
        // A link whose bytes are gone reaches nothing more.
        let Some(bytes) = storage.read_small_blob(&digest).await? else {
            continue;
        };
        // A manifest we cannot read could name anything: stop rather than guess.
        let m = Manifest::parse(&bytes, None).map_err(|e| StorageError::Corrupt {
            what: format!("manifest {digest} in {repo} cannot be read for collection: {e:?}"),
        })?;
        named.extend(m.blobs.into_iter().map(|(d, _)| d));
        queue.extend(m.children.into_iter().map(|(d, _)| d));
        queue.extend(m.subject);
    }
    live.extend(named.iter().cloned());
    Ok(Reached { named })
}

/// The digests of `subject`'s referrers in `repo`, from their stored descriptors.
async fn referrers(
    storage: &dyn Storage,
    repo: &RepoName,
    subject: &Digest,
) -> StorageResult<Vec<Digest>> {
    let mut out = Vec::new();
    for bytes in storage.list_referrers(repo, subject).await? {
        let digest = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| Digest::parse(v.get("digest")?.as_str()?).ok())
            .ok_or_else(|| StorageError::Corrupt {
                what: format!("a referrer descriptor of {subject} in {repo} names no digest"),
            })?;
        out.push(digest);
    }
    Ok(out)
}
