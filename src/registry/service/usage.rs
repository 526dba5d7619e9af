//! What each repository uses: tags, manifests, bytes, and bytes only it links (what
//! deleting it would let the collector free). From one enumeration of blobs and one of
//! links (`Storage::list_blobs`, `Storage::list_all_links`), plus one tag listing per
//! repository: never a rescan per repository, so 10,000 blobs take well under a second on
//! disk.
//!
//! A blob counts for a repository when the repository links it (layer links and manifest
//! revisions), as registry:2's layout records membership; its bytes count once per
//! repository however many of its manifests name it.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Service;
use crate::registry::access::Visibility;
use crate::registry::error::ApiResult;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::LinkKind;

/// One repository's usage.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepoUsage {
    pub repository: String,
    pub tags: usize,
    pub manifests: usize,
    /// Every blob it links (manifests, configs, layers), each counted once.
    pub bytes: u64,
    /// The blobs no other repository links: what deleting it (and a collection) frees.
    pub unique_bytes: u64,
}

impl Service {
    /// Usage of every repository `visibility` lets the caller see (all, with `None`:
    /// commands and metrics), sorted by name. Sharing is judged over every repository,
    /// seen or not, so a hidden repository's links still make a blob shared.
    pub async fn usage(&self, visibility: Option<&Visibility>) -> ApiResult<Vec<RepoUsage>> {
        let sizes: HashMap<Digest, u64> = self
            .storage
            .list_blobs()
            .await?
            .into_iter()
            .map(|b| (b.digest, b.size))
            .collect();
        let mut linked: BTreeMap<RepoName, (HashSet<Digest>, usize)> = BTreeMap::new();
        let mut holders: HashMap<Digest, usize> = HashMap::new();
        for link in self.storage.list_all_links().await? {
            let (digests, manifests) = linked.entry(link.repo).or_default();
            if link.kind == LinkKind::Manifest {
                *manifests += 1;
            }
            if digests.insert(link.digest.clone()) {
                *holders.entry(link.digest).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for (repo, (digests, manifests)) in linked {
            if visibility.is_some_and(|v| !v.allows(repo.as_str())) {
                continue;
            }
            let tags = self.storage.list_tags(&repo).await?.map_or(0, |t| t.len());
            let size = |d: &Digest| sizes.get(d).copied().unwrap_or(0);
            let bytes = digests.iter().map(size).sum();
            let unique_bytes = digests
                .iter()
                .filter(|d| holders.get(*d) == Some(&1))
                .map(size)
                .sum();
            out.push(RepoUsage {
                repository: repo.as_str().to_owned(),
                tags,
                manifests,
                bytes,
                unique_bytes,
            });
        }
        Ok(out)
    }
}
