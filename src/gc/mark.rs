//! The mark: from every repository's tags (and, unless `gc.untagged = "delete"`, every
//! manifest revision) to the manifests they reach (index children, referrers and subjects)
//! and those manifests' blobs. Layer links count as references, as the module docs argue.

use std::collections::{HashSet, VecDeque};

use crate::config::Untagged;
use crate::registry::manifest::Manifest;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{LinkKind, Storage, StorageError, StorageResult};

/// What the mark found.
#[derive(Debug, Default)]
pub struct Marked {
    /// Every blob (manifests included) something still reaches.
    pub live: HashSet<Digest>,
    /// Manifest revisions no tag reaches, with `untagged = "delete"`: the sweep unlinks them.
    pub untagged: Vec<(RepoName, Digest)>,
}

pub async fn mark(storage: &dyn Storage, untagged: Untagged) -> StorageResult<Marked> {
    let mut marked = Marked::default();
    for repo in storage.list_repositories().await? {
        mark_repo(storage, &repo, untagged, &mut marked).await?;
    }
    Ok(marked)
}

async fn mark_repo(
    storage: &dyn Storage,
    repo: &RepoName,
    untagged: Untagged,
    marked: &mut Marked,
) -> StorageResult<()> {
    // Layer links first: a blob linked before the mark began stays (the safety argument).
    marked
        .live
        .extend(storage.list_links(repo, LinkKind::Layer).await?);
    let revisions = storage.list_links(repo, LinkKind::Manifest).await?;
    let mut roots = Vec::new();
    for tag in storage.list_tags(repo).await?.unwrap_or_default() {
        if let Some(d) = storage.read_tag(repo, &tag).await? {
            roots.push(d);
        }
    }
    if untagged == Untagged::Keep {
        roots.extend(revisions.iter().cloned());
    }
    let reached = reach(storage, repo, roots, &mut marked.live).await?;
    if untagged == Untagged::Delete {
        let dead = revisions.into_iter().filter(|d| !reached.contains(d));
        marked.untagged.extend(dead.map(|d| (repo.clone(), d)));
    }
    Ok(())
}

/// Walks the manifests reachable from `roots` in `repo`, adding each and its blobs to
/// `live`; returns the manifests reached.
async fn reach(
    storage: &dyn Storage,
    repo: &RepoName,
    roots: Vec<Digest>,
    live: &mut HashSet<Digest>,
) -> StorageResult<HashSet<Digest>> {
    let mut reached = HashSet::new();
    let mut queue: VecDeque<Digest> = roots.into();
    while let Some(digest) = queue.pop_front() {
        if !reached.insert(digest.clone()) {
            continue;
        }
        live.insert(digest.clone());
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
        live.extend(m.blobs.into_iter().map(|(d, _)| d));
        queue.extend(m.children.into_iter().map(|(d, _)| d));
        queue.extend(m.subject);
    }
    Ok(reached)
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
