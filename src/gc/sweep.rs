//! The sweep: unlinks what the mark condemned (untagged revisions, stale layer links), then
//! deletes each blob outside the live set that was written before the cut-off and that no
//! repository links (one enumeration of every link, after the candidates are known),
//! re-checking its touches and write time right before the delete (module docs).

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
    /// Layer links removed: no kept manifest of the repository names them.
    pub layers_unlinked: Vec<(RepoName, Digest)>,
    pub blobs: Vec<BlobEntry>,
    pub bytes: u64,
    /// Candidates a re-check kept (linked or touched again since the mark).
    pub spared: usize,
    /// Touch records older than the cut-off, deleted (they protect nothing any more).
    pub touches_cleared: usize,
}

pub async fn sweep(
    storage: &dyn Storage,
    marked: &Marked,
    cutoff: SystemTime,
    dry_run: bool,
) -> StorageResult<Swept> {
    let mut swept = Swept::default();
    // Links before bytes: a crash in between leaves garbage, never a link to nothing.
    // Owned items and plain async fns in the streams: closures borrowing their items make
    // the future `Send` only for some lifetimes, and the server spawns collections.
    let phase = Phase::start("unlink");
    let unlinked: Vec<_> = futures_util::stream::iter(condemned(marked))
        .map(|(kind, repo, digest)| unlink_entry(storage, kind, repo, digest, cutoff, dry_run))
        .buffer_unordered(CONCURRENT)
        .try_collect()
        .await?;
    let mut kept_linked = HashSet::new();
    for (kind, repo, digest, gone) in unlinked {
        let entry = (repo, digest.clone());
        match (gone, kind) {
            (false, _) => {
                swept.spared += 1;
                kept_linked.insert(digest.clone());
            }
            (true, LinkKind::Manifest) => swept.manifests_unlinked.push(entry),
            (true, LinkKind::Layer) => swept.layers_unlinked.push(entry),
        }
    }
    swept.manifests_unlinked.sort();
    swept.layers_unlinked.sort();
    if !dry_run {
        // The removals were not made durable one by one: all at once now, before any blob
        // goes, so a crash from here on cannot bring back a link to deleted bytes.
        storage.sync_unlinks().await?;
    }
    phase.done(swept.manifests_unlinked.len() + swept.layers_unlinked.len());

    let phase = Phase::start("list blobs");
    let candidates: Vec<BlobEntry> = storage
        .list_blobs()
        .await?
        .into_iter()
        .filter(|b| !marked.live.contains(&b.digest) && b.modified < cutoff)
        .filter(|b| !kept_linked.contains(&b.digest))
        .collect();
    phase.done(candidates.len());
    let phase = Phase::start("list links again");
    let linked = linked_now(storage, marked, dry_run).await?;
    phase.done(linked.len());
    // A candidate some repository links now is spared.
    let (spared, candidates): (Vec<_>, Vec<_>) = candidates
        .into_iter()
        .partition(|b| linked.contains(&b.digest));
    swept.spared += spared.len();
    let phase = Phase::start("delete blobs");
    let deleted: Vec<Option<BlobEntry>> = futures_util::stream::iter(candidates)
        .map(|blob| delete_unless_touched(storage, blob, cutoff, dry_run))
        .buffer_unordered(CONCURRENT)
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

/// What the mark condemned: untagged revisions, then stale layer links.
fn condemned(marked: &Marked) -> Vec<(LinkKind, RepoName, Digest)> {
    let manifests = marked
        .untagged
        .iter()
        .map(|(r, d)| (LinkKind::Manifest, r, d));
    let layers = marked
        .stale_layers
        .iter()
        .map(|(r, d)| (LinkKind::Layer, r, d));
    manifests
        .chain(layers)
        .map(|(kind, r, d)| (kind, r.clone(), d.clone()))
        .collect()
}

/// [`unlink_unless_touched`] with its item handed back: `(kind, repo, digest, gone)`.
async fn unlink_entry(
    storage: &dyn Storage,
    kind: LinkKind,
    repo: RepoName,
    digest: Digest,
    cutoff: SystemTime,
    dry_run: bool,
) -> StorageResult<(LinkKind, RepoName, Digest, bool)> {
    let gone = unlink_unless_touched(storage, kind, &repo, &digest, cutoff, dry_run).await?;
    Ok((kind, repo, digest, gone))
}

/// Every digest some repository links now (one enumeration). A dry run unlinked nothing,
/// so the links it would have removed do not count.
async fn linked_now(
    storage: &dyn Storage,
    marked: &Marked,
    dry_run: bool,
) -> StorageResult<HashSet<Digest>> {
    let condemned: HashSet<(LinkKind, &RepoName, &Digest)> = match dry_run {
        false => HashSet::new(),
        true => marked
            .untagged
            .iter()
            .map(|(r, d)| (LinkKind::Manifest, r, d))
            .chain(
                marked
                    .stale_layers
                    .iter()
                    .map(|(r, d)| (LinkKind::Layer, r, d)),
            )
            .collect(),
    };
    let links = storage.list_all_links().await?;
    Ok(links
        .into_iter()
        .filter(|l| !condemned.contains(&(l.kind, &l.repo, &l.digest)))
        .map(|l| l.digest)
        .collect())
}

/// Removes a condemned link unless its digest was touched since the cut-off; after
/// removing it, looks at the touches again and puts the link back if one arrived meanwhile
/// (a push that checked the link before it went). `false` when the link stays. The removal
/// is durable only after [`Storage::sync_unlinks`], which [`sweep`] calls once for all.
async fn unlink_unless_touched(
    storage: &dyn Storage,
    kind: LinkKind,
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
