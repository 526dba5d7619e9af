//! The sweep: unlinks what the mark condemned (untagged revisions), then deletes each
//! blob outside the live set that was written before the cut-off, re-checking its touches
//! and write time right before the delete (module docs). The blobs were listed while the
//! mark ran.

use std::collections::HashSet;
use std::time::SystemTime;

use futures_util::{StreamExt, TryStreamExt};

use super::mark::Marked;
use super::phase_log::Phase;
use super::CONCURRENT;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::service::touch;
use crate::registry::storage::{BlobEntry, LinkKind, RecordKey, Storage, StorageResult};

/// What a run deleted (or, dry, would delete).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub manifests_unlinked: Vec<(RepoName, Digest)>,
    pub blobs: Vec<BlobEntry>,
    pub bytes: u64,
    /// Candidates a re-check kept (touched or written again since the mark).
    pub spared: usize,
    /// Touch records older than the cut-off, deleted (they protect nothing any more).
    pub touches_cleared: usize,
}

/// `blobs` is every blob, listed after `T0` (a blob written later is missing from it, and
/// so safe; one rewritten later is caught by the re-check).
pub async fn sweep(
    storage: &dyn Storage,
    marked: &Marked,
    blobs: Vec<BlobEntry>,
    cutoff: SystemTime,
    dry_run: bool,
    deletes_at_once: usize,
) -> StorageResult<Swept> {
    let mut swept = Swept::default();
    // Links before bytes: a crash in between leaves garbage, never a link to nothing.
    // Owned items and plain async fns in the streams: closures borrowing their items make
    // the future `Send` only for some lifetimes, and the server spawns collections.
    let phase = Phase::start("unlink");
    let condemned = marked.untagged.iter().cloned();
    let unlinked: Vec<_> = futures_util::stream::iter(condemned)
        .map(|(repo, digest)| unlink_entry(storage, repo, digest, cutoff, dry_run))
        .buffer_unordered(CONCURRENT)
        .try_collect()
        .await?;
    let mut kept_linked = HashSet::new();
    for (repo, digest, gone) in unlinked {
        match gone {
            false => {
                swept.spared += 1;
                kept_linked.insert(digest);
            }
            true => swept.manifests_unlinked.push((repo, digest)),
        }
    }
    swept.manifests_unlinked.sort();
    if !dry_run {
        // The removals were not made durable one by one: all at once now, before any blob
        // goes, so a crash from here on cannot bring back a link to deleted bytes.
        storage.sync_unlinks().await?;
    }
    phase.done(swept.manifests_unlinked.len());

    let candidates: Vec<BlobEntry> = blobs
        .into_iter()
        .filter(|b| !marked.live.contains(&b.digest) && b.modified < cutoff)
        .filter(|b| !kept_linked.contains(&b.digest))
        .collect();
    let phase = Phase::start("delete blobs");
    let deleted: Vec<Option<BlobEntry>> = futures_util::stream::iter(candidates)
        .map(|blob| delete_unless_touched(storage, blob, cutoff, dry_run))
        .buffer_unordered(deletes_at_once)
        .try_collect()
        .await?;
    let before = deleted.len();
    swept.blobs = deleted.into_iter().flatten().collect();
    swept.spared += before - swept.blobs.len();
    swept.blobs.sort_by(|a, b| a.digest.cmp(&b.digest));
    swept.bytes = swept.blobs.iter().map(|b| b.size).sum();
    phase.done(swept.blobs.len());
    if !dry_run {
        let phase = Phase::start("clear touches");
        swept.touches_cleared = clear_touches(storage, cutoff).await?;
        phase.done(swept.touches_cleared);
    }
    Ok(swept)
}

/// [`unlink_unless_touched`] with its item handed back: `(repo, digest, gone)`.
async fn unlink_entry(
    storage: &dyn Storage,
    repo: RepoName,
    digest: Digest,
    cutoff: SystemTime,
    dry_run: bool,
) -> StorageResult<(RepoName, Digest, bool)> {
    let gone = unlink_unless_touched(storage, &repo, &digest, cutoff, dry_run).await?;
    Ok((repo, digest, gone))
}

/// Removes a condemned revision link unless its digest was touched since the cut-off;
/// after removing it, looks at the touches again and puts the link back if one arrived
/// meanwhile (a push that checked the link before it went). `false` when the link stays.
/// The removal is durable only after [`Storage::sync_unlinks`], which [`sweep`] calls once
/// for all.
async fn unlink_unless_touched(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
    cutoff: SystemTime,
    dry_run: bool,
) -> StorageResult<bool> {
    let touched = |at: Option<SystemTime>| at.is_some_and(|t| t >= cutoff);
    if touched(touch::latest(storage, digest).await?) {
        return Ok(false);
    }
    if dry_run {
        return Ok(true);
    }
    let kind = LinkKind::Manifest;
    if !storage.unlink_unsynced(repo, kind, digest).await? {
        return Ok(true);
    }
    if touched(touch::latest(storage, digest).await?) {
        storage.link(repo, kind, digest).await?;
        return Ok(false);
    }
    Ok(true)
}

/// Deletes a candidate blob unless, read again now, it was touched or rewritten since the
/// cut-off. `None` when it stays (or was gone already).
async fn delete_unless_touched(
    storage: &dyn Storage,
    blob: BlobEntry,
    cutoff: SystemTime,
    dry_run: bool,
) -> StorageResult<Option<BlobEntry>> {
    if touch::latest(storage, &blob.digest)
        .await?
        .is_some_and(|t| t >= cutoff)
    {
        return Ok(None);
    }
    let gone = match dry_run {
        true => (storage.blob_modified(&blob.digest).await?).is_some_and(|w| w < cutoff),
        false => {
            storage
                .delete_blob_written_before(&blob.digest, cutoff)
                .await?
        }
    };
    Ok(gone.then_some(blob))
}

async fn delete_record(storage: &dyn Storage, key: RecordKey) -> StorageResult<bool> {
    storage.delete_record(&key).await
}

/// Deletes the touch records older than the cut-off; returns how many.
pub(super) async fn clear_touches(
    storage: &dyn Storage,
    cutoff: SystemTime,
) -> StorageResult<usize> {
    let old: Vec<_> = touch::list_all(storage)
        .await?
        .into_iter()
        .filter(|t| t.at < cutoff)
        .collect();
    let count = old.len();
    futures_util::stream::iter(old)
        .map(|t| delete_record(storage, t.key))
        .buffer_unordered(CONCURRENT)
        .try_collect::<Vec<bool>>()
        .await?;
    Ok(count)
}
