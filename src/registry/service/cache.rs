//! A bounded in-memory cache of manifests by `(repository, reference)`.
//!
//! Manifest reads dominate registry traffic (every pull resolves a tag, often several times),
//! and a manifest is small, so answering them from memory is what lets `HEAD` of a manifest
//! run at memory speed. Digest entries never go stale (content-addressed); tag entries are
//! invalidated by every write this process makes to that repository's tags or manifests,
//! which is why, on storage shared by several nodes, `service/manifests.rs` caches no tags
//! at all.
//!
//! A reader fills the cache after reading storage, and a writer invalidates after writing
//! it, so a reader that read the old tag (or a link about to be deleted) could otherwise put
//! it back after the writer's invalidation, where it would stay until evicted. Every
//! invalidation therefore bumps a generation first; a reader takes a [`Ticket`] before it
//! reads storage, and an entry it inserts is dropped again if any invalidation happened
//! since. Either the insert came before the writer's invalidation (which removes it), or
//! the reader sees the new generation after inserting (and removes it itself).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use moka::sync::Cache;

use crate::registry::reference::{Digest, RepoName};

pub struct CachedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

pub struct ManifestCache {
    inner: Cache<(RepoName, String), Arc<CachedManifest>>,
    /// Bumped by every invalidation, before it takes effect.
    generation: AtomicU64,
}

/// The cache's generation when a reader began reading storage.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl ManifestCache {
    pub fn new(max_bytes: u64) -> Self {
        let inner = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k, v: &Arc<CachedManifest>| {
                u32::try_from(v.bytes.len() + 256).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        Self {
            inner,
            generation: AtomicU64::new(0),
        }
    }

    /// Take before reading what will be inserted; see the module docs.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::SeqCst))
    }

    pub fn get(&self, repo: &RepoName, reference: &str) -> Option<Arc<CachedManifest>> {
        self.inner.get(&(repo.clone(), reference.to_owned()))
    }

    /// Caches what was read from storage under `ticket`, unless something was invalidated
    /// since (then what was read may be stale).
    pub fn insert(&self, repo: &RepoName, reference: &str, m: Arc<CachedManifest>, ticket: Ticket) {
        let key = (repo.clone(), reference.to_owned());
        self.inner.insert(key.clone(), m);
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            self.inner.invalidate(&key);
        }
    }

    /// Call after the write to storage has completed.
    pub fn forget(&self, repo: &RepoName, reference: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.inner.invalidate(&(repo.clone(), reference.to_owned()));
    }

    /// Drops every entry of a repository (after deletes, which can remove several tags).
    pub fn forget_repo(&self, repo: &RepoName) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let repo = repo.clone();
        // Only fails when closures are not enabled, which `new` does.
        let _ = self.inner.invalidate_entries_if(move |k, _| k.0 == repo);
    }
}
