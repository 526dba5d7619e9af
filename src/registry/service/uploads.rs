//! Blob uploads: sessions (start, append, finish, cancel), monolithic puts, and mounts from
//! another repository. Sessions belong to the caller's repository and user.

use std::io;

use super::{target, Action, Caller, Service, TargetKind};
use crate::registry::error::ApiResult;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{
    Append, ByteStream, ChunkRange, Finish, LinkKind, SessionKind, UploadId,
};

/// How finishing an upload (or a monolithic put) ended.
#[derive(Debug)]
pub enum Finished {
    /// The blob is in the repository: stored now, or by an earlier try of the same finish
    /// whose answer the client never got.
    Stored,
    /// No such session, and the repository does not have the blob.
    UnknownUpload,
    /// The bytes hash to `actual`; the session was discarded and no blob became visible.
    DigestMismatch { actual: Digest },
    /// A monolithic body broke off; nothing was kept.
    BodyFailed { error: io::Error },
}

impl Service {
    /// Opens an empty, resumable session in `repo` for the caller.
    pub async fn start_upload(&self, caller: &Caller, repo: &RepoName) -> ApiResult<UploadId> {
        Ok(self
            .storage
            .create_upload(&caller.owner(repo), SessionKind::Resumable)
            .await?)
    }

    /// Links `digest` from `from` into `repo`; `false` (and nothing done) when `from` does
    /// not have it.
    pub async fn mount(
        &self,
        caller: &Caller,
        repo: &RepoName,
        from: &RepoName,
        digest: &Digest,
    ) -> ApiResult<bool> {
        self.touch_in(from, digest).await?;
        let linked = self
            .storage
            .is_linked(from, LinkKind::Layer, digest)
            .await?;
        let size = match linked {
            true => self.storage.blob_size_fresh(digest).await?,
            false => None,
        };
        let Some(size) = size else {
            return Ok(false);
        };
        self.storage.link(repo, LinkKind::Layer, digest).await?;
        let mut t = target(TargetKind::Blob, repo);
        t.digest = Some(digest.clone());
        t.size = Some(size);
        t.from_repository = Some(from.clone());
        self.emit(caller, Action::Mount, t).await?;
        Ok(true)
    }

    /// Stores a whole blob whose digest the client gave up front.
    pub async fn put_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        body: ByteStream,
    ) -> ApiResult<Finished> {
        let owner = caller.owner(repo);
        let outcome = self.storage.put_blob(&owner, digest, body).await?;
        self.finished(caller, repo, digest, outcome).await
    }

    /// The bytes a session holds, or `None` when the caller has no such session in `repo`.
    pub async fn upload_size(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
    ) -> ApiResult<Option<u64>> {
        Ok(self.storage.upload_size(&caller.owner(repo), id).await?)
    }

    /// Appends a body to a session; with a `range`, only where the range says.
    pub async fn append_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
        range: Option<ChunkRange>,
        body: ByteStream,
    ) -> ApiResult<Append> {
        let owner = caller.owner(repo);
        Ok(self.storage.append_upload(&owner, id, range, body).await?)
    }

    /// Makes a session's bytes the blob `digest` in `repo`.
    pub async fn finish_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
        digest: &Digest,
    ) -> ApiResult<Finished> {
        let owner = caller.owner(repo);
        let outcome = self.storage.finish_upload(&owner, id, digest).await?;
        self.finished(caller, repo, digest, outcome).await
    }

    /// Discards a session; `false` when the caller has no such session in `repo`.
    pub async fn cancel_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
    ) -> ApiResult<bool> {
        Ok(self.storage.cancel_upload(&caller.owner(repo), id).await?)
    }

    /// What a finish from storage means, announcing the blob once it is in the repository.
    async fn finished(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        outcome: Finish,
    ) -> ApiResult<Finished> {
        self.finished_as(caller, repo, digest, outcome, Action::Push)
            .await
    }

    /// [`Service::finished`], announced as `action` (a push, or the mirror's fetch).
    pub(super) async fn finished_as(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        outcome: Finish,
        action: Action,
    ) -> ApiResult<Finished> {
        let size = match outcome {
            Finish::Done { size } => {
                // Just written: the write time protects it (`touch.rs`).
                self.touches.written(digest);
                Some(size)
            }
            Finish::UnknownUpload => {
                // A retry of a finish whose answer was lost: the session is gone because it
                // was finished, and the repository has the blob. (Only a repository that
                // has it already gets this answer, so it reveals nothing.) Announced again:
                // the first try may have failed to record its event.
                let linked = self
                    .storage
                    .is_linked(repo, LinkKind::Layer, digest)
                    .await?;
                if !linked {
                    return Ok(Finished::UnknownUpload);
                }
                self.storage.blob_size(digest).await?
            }
            Finish::DigestMismatch { actual } => return Ok(Finished::DigestMismatch { actual }),
            Finish::BodyFailed { error } => return Ok(Finished::BodyFailed { error }),
        };
        let mut t = target(TargetKind::Blob, repo);
        t.digest = Some(digest.clone());
        t.size = size;
        self.emit(caller, action, t).await?;
        Ok(Finished::Stored)
    }
}
