//! Blobs of a repository: their size, their bytes, and removing one from a repository.

use super::{target, Action, Caller, Service, TargetKind};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{ByteStream, LinkKind};

/// What a blob read returns: the bytes asked for, streamed from storage.
pub struct BlobRead {
    pub body: ByteStream,
}

impl Service {
    /// Whether `repo` may serve `digest` as a blob: it was pushed or mounted there, or it is
    /// one of the repository's manifests (some clients fetch manifests through `/blobs/`).
    async fn repo_has_blob(&self, repo: &RepoName, digest: &Digest) -> ApiResult<bool> {
        for kind in [LinkKind::Layer, LinkKind::Manifest] {
            if self.storage.is_linked(repo, kind, digest).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Touches `digest` before the check that `repo` has it, on which the caller answers
    /// (`touch.rs`): nothing when this node touched it lately, nor when `repo` does not
    /// have it (no record for a digest nobody has).
    pub(super) async fn touch_in(&self, repo: &RepoName, digest: &Digest) -> ApiResult<()> {
        if !self.touches.is_recent(digest) && self.repo_has_blob(repo, digest).await? {
            self.touches.touch(&*self.storage, digest).await?;
        }
        Ok(())
    }

    /// The size of a blob `repo` may serve (`BLOB_UNKNOWN` otherwise). A client that
    /// finds it here may push a manifest naming it without uploading it, so a blob found
    /// is touched and then looked up again (`touch.rs`): the answer rests on a check made
    /// after the touch, in the store itself, not in a size cache: another node's collection
    /// may have deleted the bytes while the repository's layer link stays (`gc` module
    /// docs). Once touched, the cached size is trusted until the touch is a quarter grace
    /// old, and no collection deletes the blob before then. An absent blob costs nothing
    /// more.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> ApiResult<u64> {
        let recent = self.touches.is_recent(digest);
        let size = self.size_in(repo, digest, false).await?;
        if size.is_none() || recent {
            return size.ok_or_else(|| blob_unknown(digest));
        }
        self.touches.touch(&*self.storage, digest).await?;
        self.size_in(repo, digest, true)
            .await?
            .ok_or_else(|| blob_unknown(digest))
    }

    /// The blob's size when `repo` links it; `fresh` asks the store, past any size cache.
    async fn size_in(
        &self,
        repo: &RepoName,
        digest: &Digest,
        fresh: bool,
    ) -> ApiResult<Option<u64>> {
        if !self.repo_has_blob(repo, digest).await? {
            return Ok(None);
        }
        Ok(match fresh {
            true => self.storage.blob_size_fresh(digest).await?,
            false => self.storage.blob_size(digest).await?,
        })
    }

    /// Streams `len` bytes from `start` of a blob of `size` bytes (as [`Service::blob_size`]
    /// found) to the caller: a pull.
    pub async fn read_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        start: u64,
        len: u64,
    ) -> ApiResult<BlobRead> {
        let body = self
            .storage
            .read_blob(digest, start, len)
            .await?
            .ok_or_else(|| blob_unknown(digest))?;
        if self.wants_pulls() {
            let mut t = target(TargetKind::Blob, repo);
            t.digest = Some(digest.clone());
            t.size = Some(size);
            self.emit(caller, Action::Pull, t).await?;
        }
        Ok(BlobRead { body })
    }

    /// Removes a blob from a repository. Only the repository's link goes; the bytes may be
    /// shared with other repositories.
    pub async fn delete_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> ApiResult<()> {
        if !self.storage.unlink(repo, LinkKind::Layer, digest).await? {
            return Err(blob_unknown(digest));
        }
        let mut t = target(TargetKind::Blob, repo);
        t.digest = Some(digest.clone());
        self.emit(caller, Action::Delete, t).await
    }
}

pub fn blob_unknown(digest: &Digest) -> ApiError {
    ApiError::new(
        Code::BlobUnknown,
        format!("blob {digest} is unknown to this repository"),
    )
}
