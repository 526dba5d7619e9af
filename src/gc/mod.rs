//! Reclaiming space while serving: retention, and online mark and sweep.
//!
//! What exists: [`retention`], the pure planner that turns `[[retention]]` policies and a
//! repository's tags and manifests into what to delete; [`mark`] and [`sweep`] with
//! [`collect`], which `wharf gc [--dry-run]` and the server's [`schedule`] run, on every
//! backend (the filesystem walks its directories, the object stores list their keys:
//! `storage` module docs); the touch records (`registry::service::touch`); the GC lease
//! and the record of the last run ([`leased`]); and [`metrics`]. The design is written
//! here, because its safety is the point.
//!
//! # Why an online collection cannot delete a blob a push still needs
//!
//! A run takes a **start time** `T0` before it reads anything; the **cut-off** is
//! `T0 - gc.grace`. Something is *recent* when it was written or touched after the
//! cut-off. Then:
//!
//! 1. **Mark.** One enumeration of every repository's manifest revision links (with their
//!    write times), the touch records, and each repository's tags and referrers give the
//!    live set: manifests reachable from a tag (directly, as an index's child, as a
//!    referrer of a reached manifest, and a reached referrer's subject), from every
//!    revision unless `gc.untagged = "delete"`, and from every recent revision regardless
//!    (a child pushed by digest before its index); their config and layer blobs. Layer
//!    links are not read: as in registry:2's `garbage-collect`, a layer link no kept
//!    manifest names keeps nothing, and once its blob is gone it answers `BLOB_UNKNOWN`
//!    (a mount or a manifest push checks the blob itself, not only the link). Removing
//!    such links cost a run two block frees each, as much disk work as the blob deletions
//!    themselves. Meanwhile (concurrently) the blobs are listed, with sizes and write
//!    times.
//! 2. **Unlink.** With `untagged = "delete"`, each condemned revision goes unless its
//!    digest was touched since the cut-off (read again now); right after removing it, the
//!    touches are read once more, and if one arrived meanwhile the link is put back. The
//!    removals are made durable together (`Storage::sync_unlinks`: on disk, one fsync per
//!    directory that lost an entry) once they are all done, before the sweep.
//! 3. **Sweep.** A listed blob outside the live set and written before the cut-off is a
//!    candidate. Right before deleting each, its touches and its write time are read
//!    again; a recent one is spared. A run costs a constant number of listings plus a few
//!    requests per repository, manifest and deletion, never a question per blob and
//!    repository; each manifest is read once per run, however many repositories share
//!    it; repositories are marked 16 at a time, deletions made 16 at a time beside
//!    servers and 64 alone ([`Pace`]). Finally touch
//!    records older than the cut-off are deleted.
//!
//! The push path's part (`registry::service`): every operation through which a client
//! learns or asserts that a blob is in a repository (HEAD or GET of a blob, a mount, a
//! manifest push's reference check, the mirror linking a blob it had already stored)
//! **touches** it (a small record, at most once per node per quarter of the grace period)
//! before the check its answer rests on. An upload writes the blob (a new write time: the
//! filesystem sets it at the finish, an object store's PUT or copy is new) before it links
//! it, and a manifest push stores its bytes (renewing the write time of bytes already
//! there) before it links them.
//!
//! The argument: a blob a push relies on was written by its upload since the cut-off, or
//! touched since then by the HEAD, mount or reference check the push's next step rests on,
//! so it is recent when the sweep re-checks it, and spared; a manifest the push stored is
//! recent the same way, and its revision link (written after its bytes) makes it a root
//! once the run's enumeration sees it. A revision link the unlink step removes while a push
//! relies on it: the push touched the digest before its check found the link, so before
//! the removal, so the second look sees the touch and restores the link. A push that
//! relies on a blob for longer than three quarters of the grace period between its touch
//! and its manifest is not covered: that is why the grace period is hours by default.
//!
//! What is left is the window between a blob's re-check and its delete (one storage
//! round trip): an operation that touches the blob inside it is not seen. Its
//! consequences stay clean: a manifest push's reference check reads sizes from the store
//! (a size this node remembers counts only for a blob it wrote or touched within the
//! quarter grace, which no collection deletes), so a push after the delete gets
//! `MANIFEST_BLOB_UNKNOWN` and uploads again; only a push whose check lands exactly
//! inside the window could store a manifest naming the deleted blob. Closing that for
//! good needs the store to make "delete unless touched" one step, which S3 and Azure do
//! not offer; the window is narrowed by keeping it one request long.
//!
//! **Caches.** The object stores' blob-size cache forgets a blob the node deletes, and is
//! not trusted for a blob another node may have deleted: a blob HEAD that touches the
//! blob, and a manifest push's check, then ask the store itself (a layer link left to a
//! deleted blob must answer `BLOB_UNKNOWN`, not a remembered size). On shared storage every cached manifest is re-checked against its link, so a
//! swept manifest is not served from a cache.
//!
//! **Crashes.** A sweep deletes a manifest's bytes only after every revision link to it is
//! gone, durably (the batch sync of step 2 returns before the first delete), and a blob
//! only when no kept manifest names it, so a SIGKILL or a power cut at any point leaves
//! garbage (collected by the next run), never a kept manifest naming something missing. A
//! blob's own deletion need not be durable: undone by a crash, it is garbage again.
//!
//! **Several nodes.** One sweeper at a time per storage: a lease object under `wharf/`
//! (the records the notifications outbox uses), renewed while the run lasts and expiring
//! if its holder dies. Other nodes keep serving.
//!
//! The pull-through cache's policy (`mirror_roots.rs`) runs before the mark too: cached
//! images it no longer keeps are deleted through the service, so they stop being roots.
//!
//! Retention runs before the mark: it deletes tags (through the repository service, so
//! every deletion is an event and immutable tags are refused), and the mark then sees what
//! they no longer reach.

pub mod leased;
pub mod mark;
pub mod metrics;
pub mod mirror_roots;
mod phase_log;
pub mod retention;
pub mod schedule;
pub mod sweep;

use std::collections::HashMap;
use std::time::SystemTime;

use self::phase_log::Phase;
use crate::config::GcConfig;
use crate::registry::service::touch;
use crate::registry::storage::{Storage, StorageResult};

/// How many repositories the mark reads, or revisions the sweep unlinks, at once: on an
/// object store each is a round trip or two, on a cold disk a read, and a run must not
/// crowd out the requests the registry serves.
const CONCURRENT: usize = 16;

/// How hard a run may press the storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// Servers may be answering from the same storage (and CPUs): deletions 16 at a time,
    /// so their requests are not kept waiting (`scripts/bench --gc-only` measures a serving
    /// wharf's p99 manifest HEAD while `wharf gc` runs beside it).
    BesideServers,
    /// Nothing serves from it (`wharf gc` found no server holding its filesystem root):
    /// deletions 64 at a time. On disk each is an unlink and a rmdir that wait for the
    /// device (with `discard`, for its trim): 10,000 took 1.2 s 16 at a time on the
    /// benchmark's cold disk, 0.7 s 64 at a time.
    Alone,
}

impl Pace {
    fn deletes_at_once(self) -> usize {
        match self {
            Pace::BesideServers => CONCURRENT,
            Pace::Alone => 64,
        }
    }
}

/// One collection: `T0` taken before anything is read, then the mark, then the sweep.
pub async fn collect(
    storage: &dyn Storage,
    config: &GcConfig,
    dry_run: bool,
    pace: Pace,
) -> StorageResult<sweep::Swept> {
    collect_at(storage, config, SystemTime::now(), dry_run, pace).await
}

/// [`collect`] with `T0` given (tests move it forward instead of waiting).
pub async fn collect_at(
    storage: &dyn Storage,
    config: &GcConfig,
    t0: SystemTime,
    dry_run: bool,
    pace: Pace,
) -> StorageResult<sweep::Swept> {
    let cutoff = t0
        .checked_sub(config.grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let phase = Phase::start("touches");
    let mut touched: HashMap<_, SystemTime> = HashMap::new();
    for t in touch::list_all(storage).await? {
        let latest = touched.entry(t.digest).or_insert(t.at);
        *latest = (*latest).max(t.at);
    }
    phase.done(touched.len());
    // The blob walk goes on beside the revision walk and the mark's reads: on a cold disk
    // each is mostly waiting for the device, and on an object store for round trips.
    let marking = async {
        let phase = Phase::start("list revisions");
        let revisions = storage.list_all_revisions().await?;
        phase.done(revisions.len());
        let inputs = mark::Inputs {
            revisions: &revisions,
            touched: &touched,
            cutoff,
        };
        let phase = Phase::start("mark");
        let marked = mark::mark(storage, config.untagged, &inputs).await?;
        phase.done(marked.live.len());
        Ok(marked)
    };
    let listing = async {
        let phase = Phase::start("list blobs");
        let blobs = storage.list_blobs().await?;
        phase.done(blobs.len());
        Ok(blobs)
    };
    let (marked, blobs) = futures_util::try_join!(marking, listing)?;
    sweep::sweep(
        storage,
        &marked,
        blobs,
        cutoff,
        dry_run,
        pace.deletes_at_once(),
    )
    .await
}

#[cfg(test)]
mod collect_tests;
