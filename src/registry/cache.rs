//! A bounded in-memory cache of manifests by `(repository, reference)`.
//!
//! Manifest reads dominate registry traffic (every pull resolves a tag, often several times),
//! and a manifest is small, so answering them from memory is what lets `HEAD` of a manifest
//! run at memory speed. Digest entries never go stale (content-addressed); tag entries are
//! invalidated by every write this process makes to that repository's tags or manifests,
//! which is why, on storage shared by several nodes, `manifests.rs` caches no tags at all.

use std::sync::Arc;

use bytes::Bytes;
use moka::sync::Cache;

use super::reference::{Digest, RepoName};

pub struct CachedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

pub struct ManifestCache {
    inner: Cache<(RepoName, String), Arc<CachedManifest>>,
}

impl ManifestCache {
    pub fn new(max_bytes: u64) -> Self {
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k, v: &Arc<CachedManifest>| {
                u32::try_from(v.bytes.len() + 256).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        Self { inner }
    }

    pub fn get(&self, repo: &RepoName, reference: &str) -> Option<Arc<CachedManifest>> {
        self.inner.get(&(repo.clone(), reference.to_owned()))
    }

    pub fn insert(&self, repo: &RepoName, reference: &str, m: Arc<CachedManifest>) {
        self.inner.insert((repo.clone(), reference.to_owned()), m);
    }

    pub fn forget(&self, repo: &RepoName, reference: &str) {
        self.inner.invalidate(&(repo.clone(), reference.to_owned()));
    }

    /// Drops every entry of a repository (after deletes, which can remove several tags).
    pub fn forget_repo(&self, repo: &RepoName) {
        let repo = repo.clone();
        // Only fails when closures are not enabled, which `new` does.
        let _ = self.inner.invalidate_entries_if(move |k, _| k.0 == repo);
    }
}
