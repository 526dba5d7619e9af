//! Reclaiming space while serving: retention, and online mark and sweep.
//!
//! What exists today: [`retention`], the pure planner that turns `[[retention]]` policies
//! and a repository's tags and manifests into what to delete; [`mark`] and [`sweep`] with
//! [`collect`], which `wharf gc [--dry-run]` runs, on every backend (the filesystem walks
//! its directories, the object stores list their keys: `storage` module docs). What does not exist yet: the touch records
//! (so the sweep's re-check reads links, not touches, and a blob's age is its write time),
//! the lease, the scheduler, and metrics. The design they are to follow is written here,
//! because its safety is the point of it.
//!
//! # Why an online collection cannot delete a blob a push still needs
//!
//! A run takes a **start time** `T0` before it reads anything, then:
//!
//! 1. **Mark.** It lists every repository's tags, manifests, layer links and referrers and
//!    computes the live set: manifests reachable from a tag (directly, as an index's child,
//!    or as a referrer of a reached manifest, and a reached referrer's subject), their
//!    config and layer blobs, and, unless `gc.untagged = "delete"`, every linked manifest
//!    with its blobs. Layer links of a repository count as references too (registry:2's
//!    `garbage-collect` does not count them: it marks from manifests only): a blob a client
//!    uploaded stays while any repository links it. Until manifest deletes unlink the layers
//!    only they used (or touch records replace this rule), a deleted image's layers stay
//!    where registry:2 would collect them.
//! 2. **Sweep.** A blob or manifest outside the live set is a candidate only if its last
//!    touch (the newest of its write time and the touch record below) is older than both
//!    `T0 - gc.grace` and `T0`. Right before deleting, the sweeper reads the touch time
//!    again and re-checks that no repository links the digest; either failing skips it.
//!
//! The push path's part: every operation through which a client learns or asserts that a
//! blob exists (HEAD of a blob, a cross-repository mount, a finished or monolithic upload,
//! a manifest PUT's reference check) records a touch of that blob **before** it answers,
//! and the manifest PUT links the blob into the repository before it stores the manifest.
//!
//! The argument: take a manifest PUT that passed its reference check at time `t`. Each
//! blob it names was touched at some `t' <= t`, and linked before that. If `t' >= T0`, the
//! sweep's re-check sees the touch and skips the blob. If `t' < T0`, the blob was linked
//! before the mark began, so the mark sees the link (links are written before they are
//! relied on, and the mark reads every repository after `T0`) and the blob is live. A
//! client that HEADs a blob and pushes its manifest later than `gc.grace` after the
//! upload, with no link, is the one case left: it is why the grace period is hours by
//! default and why HEAD records a touch. So the only race the sweep has is "deleted between
//! the re-check and the delete": that window is one storage round trip, and the next
//! manifest PUT's reference check fails cleanly (`MANIFEST_BLOB_UNKNOWN`, which the client
//! retries by uploading again) rather than storing a manifest that points nowhere, provided
//! the check reads the blob's presence from storage. Today `check_references` takes sizes
//! from the object stores' blob-size cache: the sweep must come with a check that bypasses
//! it (or with the cache forgetting swept digests on every node), or a node could accept a
//! manifest naming a blob another node just swept.
//!
//! **Crashes.** A sweep deletes a manifest's bytes only after its links are gone, and a
//! blob only after every manifest naming it is gone, so a SIGKILL at any point leaves
//! garbage (collected by the next run), never a live reference to something missing.
//!
//! **Several nodes.** One sweeper at a time per storage: a lease object under `wharf/`
//! (the records the notifications outbox uses), renewed while the run lasts and expiring
//! if its holder dies. Other nodes keep serving; on shared storage every cached manifest
//! is re-checked against its link, so a swept manifest is not served from a cache.
//!
//! Retention runs before the mark: it deletes tags (through the repository service, so
//! every deletion is an event and immutable tags are refused), and the mark then sees what
//! they no longer reach.

pub mod mark;
pub mod retention;
pub mod sweep;

use std::time::SystemTime;

use crate::config::GcConfig;
use crate::registry::storage::{Storage, StorageResult};

/// One collection: `T0` taken before anything is read, then the mark, then the sweep.
pub async fn collect(
    storage: &dyn Storage,
    config: &GcConfig,
    dry_run: bool,
) -> StorageResult<sweep::Swept> {
    let t0 = SystemTime::now();
    let marked = mark::mark(storage, config.untagged).await?;
    sweep::sweep(storage, &marked, t0, config.grace, dry_run).await
}

#[cfg(test)]
mod collect_tests;
