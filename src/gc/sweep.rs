//! The sweep: unlinks the untagged manifests the mark condemned, then deletes each blob
//! outside the live set that was written before `T0 - grace`, re-checking right before
//! the delete that no repository links it (module docs).

use std::time::{Duration, SystemTime};

use super::mark::Marked;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{BlobEntry, LinkKind, Storage, StorageResult};

/// What a run deleted (or, dry, would delete).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub manifests_unlinked: Vec<(RepoName, Digest)>,
    pub blobs: Vec<BlobEntry>,
    pub bytes: u64,
    /// Candidates the re-check kept (linked again since the mark).
    pub spared: usize,
}

pub async fn sweep(
    storage: &dyn Storage,
    marked: &Marked,
    t0: SystemTime,
    grace: Duration,
    dry_run: bool,
) -> StorageResult<Swept> {
    let mut swept = Swept::default();
    // Links before bytes: a crash in between leaves garbage, never a link to nothing.
    for (repo, digest) in &marked.untagged {
        if dry_run || storage.unlink(repo, LinkKind::Manifest, digest).await? {
            swept
                .manifests_unlinked
                .push((repo.clone(), digest.clone()));
        }
    }
    let cutoff = t0.checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
    for blob in storage.list_blobs().await? {
        if marked.live.contains(&blob.digest) || blob.modified >= cutoff {
            continue;
        }
        if linked_anywhere(storage, &blob.digest, dry_run).await? {
            swept.spared += 1;
            continue;
        }
        if dry_run || storage.delete_blob(&blob.digest).await? {
            swept.bytes += blob.size;
            swept.blobs.push(blob);
        }
    }
    Ok(swept)
}

/// Whether some repository links `digest` now. A dry run unlinked nothing, so it cannot
/// ask the manifest links the mark already judged: only a real run re-reads them.
/// Repositories are listed afresh, so one created since the mark counts too.
async fn linked_anywhere(
    storage: &dyn Storage,
    digest: &Digest,
    dry_run: bool,
) -> StorageResult<bool> {
    for repo in storage.list_repositories().await? {
        if storage.is_linked(&repo, LinkKind::Layer, digest).await? {
            return Ok(true);
        }
        if !dry_run && storage.is_linked(&repo, LinkKind::Manifest, digest).await? {
            return Ok(true);
        }
    }
    Ok(false)
}
