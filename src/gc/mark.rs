//! The mark: from every repository's tags (and, unless `gc.untagged = "delete"`, every
//! manifest revision) to the manifests they reach (index children, referrers and subjects)
//! and those manifests' blobs. An untagged revision stays while it is recent (written or
//! touched within the grace period: a child pushed by digest before its index). Layer
//! links are not read: like registry:2's `garbage-collect`, only manifests keep blobs (an
//! upload whose manifest is still coming is kept by its blob's write time or its touch:
//! `gc` module docs). Repositories are marked a few at a time, and a manifest is read once
//! per run however many repositories share it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures_util::{StreamExt, TryStreamExt};

use crate::config::Untagged;
use crate::registry::manifest::Manifest;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{LinkEntry, Storage, StorageError, StorageResult};

/// What the mark found.
#[derive(Debug, Default)]
pub struct Marked {
    /// Every blob (manifests included) something still reaches.
    pub live: HashSet<Digest>,
    /// Manifest revisions no tag reaches, with `untagged = "delete"`: the sweep unlinks them.
    pub untagged: Vec<(RepoName, Digest)>,
}

/// What the mark reads besides the repositories: every manifest revision link (one
/// enumeration), when each digest was last touched, and the grace cut-off (`T0 - gc.grace`).
pub struct Inputs<'a> {
    pub revisions: &'a [LinkEntry],
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
    let mut by_repo: HashMap<&RepoName, Vec<LinkEntry>> = HashMap::new();
    for link in inputs.revisions {
        by_repo.entry(&link.repo).or_default().push(link.clone());
    }
    let mut jobs = Vec::new();
    for repo in storage.list_repositories().await? {
        let links = by_repo.remove(&repo).unwrap_or_default();
        jobs.push((repo, links));
    }
    // Revisions of a repository that vanished since the enumeration: judged on their own.
    jobs.extend(
        by_repo
            .into_iter()
            .map(|(repo, links)| (repo.clone(), links)),
    );
    // Repositories a few at a time: each is a handful of small reads, and one at a time
    // leaves a cold disk (or an object store's round trips) mostly waiting. Owned items and
    // a plain async fn in the stream: closures borrowing their items make the future `Send`
    // only for some lifetimes, and the server spawns collections.
    let manifests = Manifests::default();
    let mut repos = futures_util::stream::iter(jobs)
        .map(|(repo, revisions)| mark_repo(storage, repo, revisions, untagged, inputs, &manifests))
        .buffered(super::CONCURRENT);
    let mut marked = Marked::default();
    while let Some(one) = repos.try_next().await? {
        marked.live.extend(one.live);
        marked.untagged.extend(one.untagged);
    }
    Ok(marked)
}

/// What one repository's mark found (merged into [`Marked`]).
#[derive(Default)]
struct RepoMarked {
    live: HashSet<Digest>,
    untagged: Vec<(RepoName, Digest)>,
}

async fn mark_repo(
    storage: &dyn Storage,
    repo: RepoName,
    revisions: Vec<LinkEntry>,
    untagged: Untagged,
    inputs: &Inputs<'_>,
    manifests: &Manifests,
) -> StorageResult<RepoMarked> {
    // Dated, though the dates go unused: it reads every tag in one go (on disk, one
    // blocking call for them all instead of one per tag).
    let mut roots: Vec<Digest> = storage
        .list_tags_dated(&repo)
        .await?
        .into_iter()
        .map(|t| t.digest)
        .collect();
    for revision in &revisions {
        if untagged == Untagged::Keep || inputs.recent(revision) {
            roots.push(revision.digest.clone());
        }
    }
    let live = reach(storage, &repo, roots, manifests).await?;
    let mut marked = RepoMarked::default();
    if untagged == Untagged::Delete {
        for l in &revisions {
            if !live.contains(&l.digest) {
                marked.untagged.push((repo.clone(), l.digest.clone()));
            }
        }
    }
    marked.live = live;
    Ok(marked)
}

/// What a manifest names, as the mark needs it.
struct Names {
    blobs: Vec<Digest>,
    children: Vec<Digest>,
    subject: Option<Digest>,
}

/// Every manifest the run has read, by digest (`None`: its bytes are gone). Manifests are
/// content-addressed, so one read serves every repository that shares it (a base image's
/// index in many repositories).
#[derive(Default)]
struct Manifests(Mutex<HashMap<Digest, Option<Arc<Names>>>>);

impl Manifests {
    async fn names(
        &self,
        storage: &dyn Storage,
        repo: &RepoName,
        digest: &Digest,
    ) -> StorageResult<Option<Arc<Names>>> {
        if let Some(known) = self.lock().get(digest) {
            return Ok(known.clone());
        }
        // Two repositories may read the same manifest at once: harmless, same bytes.
        let names = match storage.read_small_blob(digest).await? {
            None => None,
            Some(bytes) => {
                // A manifest we cannot read could name anything: stop rather than guess.
                let m = Manifest::parse(&bytes, None).map_err(|e| StorageError::Corrupt {
                    what: format!(
                        "manifest {digest} in {repo} cannot be read for collection: {e:?}"
                    ),
                })?;
                Some(Arc::new(Names {
                    blobs: m.blobs.into_iter().map(|(d, _)| d).collect(),
                    children: m.children.into_iter().map(|(d, _)| d).collect(),
                    subject: m.subject,
                }))
            }
        };
        self.lock().insert(digest.clone(), names.clone());
        Ok(names)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Option<Arc<Names>>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The manifests reachable from `roots` in `repo` and every blob they name.
async fn reach(
    storage: &dyn Storage,
    repo: &RepoName,
    roots: Vec<Digest>,
    manifests: &Manifests,
) -> StorageResult<HashSet<Digest>> {
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
        let Some(m) = manifests.names(storage, repo, &digest).await? else {
            continue;
        };
        named.extend(m.blobs.iter().cloned());
        queue.extend(m.children.iter().cloned());
        queue.extend(m.subject.clone());
    }
    Ok(named)
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
