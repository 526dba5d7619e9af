//! Storing what the pull-through cache (`crate::mirror`) fetched from an upstream registry:
//! a manifest exactly as the upstream sent it, linked and (by tag) tagged in the cache's
//! repository. Unlike a push, the blobs it names need not be here yet: the cache fetches
//! each when a client first asks for it. Blobs go through [`Service::put_fetched_blob`],
//! verified like any monolithic upload. Each is announced as [`Action::Fetch`], not as a
//! push by the client whose pull caused it.

use bytes::Bytes;

use super::{target, Action, Caller, Service, TargetKind};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::manifest::Manifest;
use crate::registry::reference::{Digest, RepoName, Tag};
use crate::registry::storage::LinkKind;

impl Service {
    /// Stores `bytes` (the upstream's `content_type`) as a manifest of `repo` and, with a
    /// `tag`, points it there. `digest` is what the bytes must hash to (the reference
    /// asked for, or what the upstream said); anything else is refused and nothing stored.
    pub async fn store_fetched_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        tag: Option<&Tag>,
        digest: &Digest,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> ApiResult<()> {
        if bytes.len() as u64 > self.max_manifest_bytes {
            return Err(ApiError::new(
                Code::ManifestTooLarge,
                format!(
                    "the upstream's manifest is larger than the {}-byte limit",
                    self.max_manifest_bytes
                ),
            ));
        }
        let actual = Digest::of(digest.algorithm(), &bytes);
        if actual != *digest {
            return Err(ApiError::new(
                Code::DigestInvalid,
                format!("the upstream sent a manifest with digest {actual}, not {digest}"),
            ));
        }
        let manifest = Manifest::parse(&bytes, content_type)?;
        self.storage.put_small_blob(digest, bytes.clone()).await?;
        self.storage.link(repo, LinkKind::Manifest, digest).await?;
        if let Some(subject) = &manifest.subject {
            let descriptor = manifest.referrer_descriptor(digest, bytes.len());
            let descriptor = serde_json::to_vec(&descriptor).unwrap_or_default();
            self.storage
                .add_referrer(repo, subject, digest, &descriptor)
                .await?;
        }
        if let Some(tag) = tag {
            self.storage.write_tag(repo, tag, digest).await?;
            self.cache.forget(repo, tag.as_str());
        }
        let mut t = target(TargetKind::Manifest, repo);
        t.digest = Some(digest.clone());
        t.media_type = Some(manifest.media_type);
        t.size = Some(bytes.len() as u64);
        t.tag = tag.cloned();
        self.emit(caller, Action::Fetch, t).await
    }
}

impl Service {
    /// [`Service::put_blob`] for bytes the cache fetched: announced as a fetch.
    pub async fn put_fetched_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        body: crate::registry::storage::ByteStream,
    ) -> ApiResult<super::Finished> {
        let owner = caller.owner(repo);
        let outcome = self.storage.put_blob(&owner, digest, body).await?;
        self.finished_as(caller, repo, digest, outcome, Action::Fetch)
            .await
    }

    /// Whether the blob's bytes are stored at all (for any repository).
    pub async fn blob_stored(&self, digest: &Digest) -> ApiResult<bool> {
        Ok(self.storage.blob_size(digest).await?.is_some())
    }

    /// Links a stored blob into the cache's `repo`, once the upstream confirmed that its
    /// repository has it (the bytes are the same: they are addressed by their digest).
    /// `false` when the bytes are not (or no longer) stored.
    pub async fn link_fetched_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> ApiResult<bool> {
        // Touched before the check the link rests on, as a mount is: bytes stored long ago
        // stay through a collection running now (`gc` module docs).
        self.touches.touch(&*self.storage, digest).await?;
        let Some(size) = self.storage.blob_size(digest).await? else {
            return Ok(false);
        };
        self.storage.link(repo, LinkKind::Layer, digest).await?;
        let mut t = target(TargetKind::Blob, repo);
        t.digest = Some(digest.clone());
        t.size = Some(size);
        self.emit(caller, Action::Fetch, t).await?;
        Ok(true)
    }
}
