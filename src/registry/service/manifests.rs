//! Manifests: get (through the cache), push (with its tag, after checking every reference),
//! and delete (a tag, or a revision with its tags and referrer entry).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::cache::CachedManifest;
use super::{target, Action, Caller, Service, TargetKind};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::manifest::{media_type_of, Manifest};
use crate::registry::reference::{Algorithm, Digest, Reference, RepoName, Tag};
use crate::registry::storage::{ByteStream, LinkKind, StorageError};

/// How many of a manifest's references are checked at once: a 30-layer manifest on an
/// object store waits for four rounds of round trips, not 31, and no manifest floods the
/// store.
const CONCURRENT_CHECKS: usize = 8;

/// A stored manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestPushed {
    pub digest: Digest,
    /// The manifest's `subject`, when it refers to another one (the referrers API).
    pub subject: Option<Digest>,
}

impl Service {
    /// A manifest by tag or digest. `pull` says the client is fetching it (GET), not only
    /// checking it (HEAD): a pull event goes to a sink that wants them.
    pub async fn get_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        pull: bool,
    ) -> ApiResult<Arc<CachedManifest>> {
        let m = self.manifest(repo, reference).await?;
        if pull && self.wants_pulls() {
            let mut t = target(TargetKind::Manifest, repo);
            t.digest = Some(m.digest.clone());
            t.media_type = Some(m.media_type.clone());
            t.size = Some(m.bytes.len() as u64);
            t.tag = tag_of(reference).cloned();
            self.emit(caller, Action::Pull, t).await?;
        }
        Ok(m)
    }

    /// A manifest by tag or digest, from the cache when that cannot be stale.
    ///
    /// On storage only this process writes, every write invalidates what it changes, so
    /// whole lookups by tag are cached. On shared storage another node may retag or delete at
    /// any moment: the tag and the repository's link are read every time, and only the
    /// bytes, which the digest fixes, come from the cache. A lookup by digest reads the link
    /// on every backend: a garbage collection (this server's, or `wharf gc` beside it on
    /// the same root) removes untagged manifests' links without going through this cache,
    /// while tags, which it never removes, stay cached.
    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> ApiResult<Arc<CachedManifest>> {
        let shared = self.storage.shared() || matches!(reference, Reference::Digest(_));
        let key = reference.to_string();
        let ticket = self.cache.ticket();
        if !shared {
            if let Some(m) = self.cache.get(repo, &key) {
                return Ok(m);
            }
        }
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => self
                .storage
                .read_tag(repo, t)
                .await?
                .ok_or_else(|| manifest_unknown(reference))?,
        };
        if !self
            .storage
            .is_linked(repo, LinkKind::Manifest, &digest)
            .await?
        {
            return Err(manifest_unknown(reference));
        }
        let by_digest = digest.to_string();
        let m = match self.cache.get(repo, &by_digest) {
            Some(m) => m,
            None => {
                let bytes = self
                    .storage
                    .read_small_blob(&digest)
                    .await?
                    .ok_or_else(|| {
                        tracing::error!(%repo, %digest, "manifest is linked but its bytes are missing");
                        manifest_unknown(reference)
                    })?;
                // Nothing records the type a manifest was pushed with (registry:2 has no
                // place for it): the bytes say it, as registry:2 reads them.
                let media_type = media_type_of(&bytes).map_err(|why| StorageError::Corrupt {
                    what: format!("manifest {digest} in {repo}: {why}"),
                })?;
                let m = Arc::new(CachedManifest {
                    digest,
                    media_type: media_type.to_owned(),
                    bytes,
                });
                self.cache.insert(repo, &by_digest, m.clone(), ticket);
                m
            }
        };
        if !shared {
            self.cache.insert(repo, &key, m.clone(), ticket);
        }
        Ok(m)
    }

    /// Stores a manifest read from `body` (`content_type` is the request's), tagging it
    /// when pushed by tag. Everything it names must already be in the repository.
    pub async fn put_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: ByteStream,
    ) -> ApiResult<ManifestPushed> {
        let bytes = read_limited(body, self.max_manifest_bytes).await?;
        let algorithm = match reference {
            Reference::Digest(d) => d.algorithm(),
            Reference::Tag(_) => Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &bytes);
        if let Reference::Digest(claimed) = reference {
            if *claimed != digest {
                return Err(ApiError::new(
                    Code::DigestInvalid,
                    format!("manifest content has digest {digest}, not {claimed}"),
                ));
            }
        }
        let manifest = Manifest::parse(&bytes, content_type)?;
        if let Reference::Tag(tag) = reference {
            self.check_tag_push(repo, tag, &digest).await?;
        }
        self.check_references(repo, &manifest).await?;

        self.storage.put_small_blob(&digest, bytes.clone()).await?;
        self.storage.link(repo, LinkKind::Manifest, &digest).await?;
        if let Some(subject) = &manifest.subject {
            let descriptor = manifest.referrer_descriptor(&digest, bytes.len());
            let descriptor = serde_json::to_vec(&descriptor).unwrap_or_default();
            self.storage
                .add_referrer(repo, subject, &digest, &descriptor)
                .await?;
        }
        if let Reference::Tag(tag) = reference {
            self.storage.write_tag(repo, tag, &digest).await?;
            self.cache.forget(repo, tag.as_str());
        }
        let mut t = target(TargetKind::Manifest, repo);
        t.digest = Some(digest.clone());
        t.media_type = Some(manifest.media_type);
        t.size = Some(bytes.len() as u64);
        t.tag = tag_of(reference).cloned();
        self.emit(caller, Action::Push, t).await?;
        Ok(ManifestPushed {
            digest,
            subject: manifest.subject,
        })
    }

    /// Every blob and child manifest a manifest names must already be in the repository,
    /// with the size its descriptor claims: clients size downloads and verify by it. Each
    /// is touched first, so a concurrent collection keeps it (`gc` module docs).
    /// Checked [`CONCURRENT_CHECKS`] at a time: on an object store each is a round trip.
    async fn check_references(&self, repo: &RepoName, m: &Manifest) -> ApiResult<()> {
        let wanted = m
            .blobs
            .iter()
            .map(|d| (LinkKind::Layer, d))
            .chain(m.children.iter().map(|d| (LinkKind::Manifest, d)));
        // Boxed one by one: a closure making the futures trips up the `Send` proof.
        type Check<'a> = futures_util::future::BoxFuture<'a, ApiResult<Option<u64>>>;
        let mut checks: Vec<Check<'_>> = Vec::new();
        for (kind, (digest, _)) in wanted.clone() {
            checks.push(Box::pin(async move {
                // A size this node remembers is trusted only for a blob it wrote or
                // touched lately, which no collection deletes; otherwise another node's
                // collection may have deleted it, so the store is asked.
                let trusted = self.touches.is_recent(digest);
                // Touched before the check the push relies on (`touch.rs`).
                self.touch_in(repo, digest).await?;
                let linked = self.storage.is_linked(repo, kind, digest).await?;
                Ok(match (linked, trusted) {
                    (true, true) => self.storage.blob_size(digest).await?,
                    (true, false) => self.storage.blob_size_fresh(digest).await?,
                    (false, _) => None,
                })
            }));
        }
        let mut sizes = futures_util::stream::iter(checks).buffered(CONCURRENT_CHECKS);
        for (kind, (digest, claimed)) in wanted {
            let what = match kind {
                LinkKind::Layer => "blob",
                LinkKind::Manifest => "manifest",
            };
            let size = sizes.next().await.transpose()?.flatten();
            let Some(size) = size else {
                return Err(ApiError::new(
                    Code::ManifestBlobUnknown,
                    format!("the manifest refers to {what} {digest}, which is not in {repo}"),
                ));
            };
            if size != *claimed {
                return Err(ApiError::new(
                    Code::ManifestInvalid,
                    format!("the manifest says {what} {digest} has {claimed} bytes; it has {size}"),
                ));
            }
        }
        Ok(())
    }

    /// Deletes a tag (the manifest stays), or a manifest revision with every tag pointing
    /// at it. Each thing removed is announced: the tags, then the manifest.
    pub async fn delete_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
    ) -> ApiResult<()> {
        match reference {
            Reference::Tag(tag) => {
                self.check_tag_removal(repo, tag).await?;
                if !self.storage.delete_tag(repo, tag).await? {
                    return Err(manifest_unknown(reference));
                }
                self.cache.forget(repo, tag.as_str());
                self.emit(caller, Action::Delete, tag_target(repo, tag, None))
                    .await
            }
            Reference::Digest(digest) => self
                .delete_revision(caller, repo, digest, false)
                .await
                .map(drop),
        }
    }

    /// Deletes a manifest revision only while no tag names it (retention's untagged
    /// manifests: a tag pushed since the plan keeps it). `false` when a tag now does.
    pub async fn delete_untagged_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> ApiResult<bool> {
        self.delete_revision(caller, repo, digest, true).await
    }

    /// Removes a manifest from a repository, with the tags pointing at it and its entry in
    /// its subject's referrers; with `untagged_only`, nothing when a tag points at it
    /// (`false`). The bytes stay: other repositories may share them.
    async fn delete_revision(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        untagged_only: bool,
    ) -> ApiResult<bool> {
        if !self
            .storage
            .is_linked(repo, LinkKind::Manifest, digest)
            .await?
        {
            return Err(manifest_unknown(&Reference::Digest(digest.clone())));
        }
        let mut pointing = Vec::new();
        for tag in self.storage.list_tags(repo).await?.unwrap_or_default() {
            if self.storage.read_tag(repo, &tag).await?.as_ref() == Some(digest) {
                // Checked before anything is removed, so a refusal leaves the manifest whole.
                self.check_tag_removal(repo, &tag).await?;
                pointing.push(tag);
            }
        }
        if untagged_only && !pointing.is_empty() {
            return Ok(false);
        }
        let bytes = self.storage.read_small_blob(digest).await?;
        // For the event: the type the bytes say, as on every read.
        let media_type = bytes.as_deref().and_then(|b| media_type_of(b).ok());
        if let Some(bytes) = &bytes {
            if let Ok(Manifest {
                subject: Some(subject),
                ..
            }) = Manifest::parse(bytes, None)
            {
                self.storage.remove_referrer(repo, &subject, digest).await?;
            }
        }
        let mut untagged = Vec::new();
        for tag in pointing {
            if self.storage.delete_tag(repo, &tag).await? {
                untagged.push(tag);
            }
        }
        self.storage
            .unlink(repo, LinkKind::Manifest, digest)
            .await?;
        self.cache.forget_repo(repo);
        for tag in &untagged {
            let t = tag_target(repo, tag, Some(digest));
            self.emit(caller, Action::Delete, t).await?;
        }
        let mut t = target(TargetKind::Manifest, repo);
        t.digest = Some(digest.clone());
        t.media_type = media_type.map(str::to_owned);
        self.emit(caller, Action::Delete, t).await.map(|()| true)
    }
}

fn tag_of(reference: &Reference) -> Option<&Tag> {
    match reference {
        Reference::Tag(t) => Some(t),
        Reference::Digest(_) => None,
    }
}

/// A removed tag, with the manifest it pointed at when that is known.
fn tag_target(repo: &RepoName, tag: &Tag, digest: Option<&Digest>) -> super::Target {
    let mut t = target(TargetKind::Tag, repo);
    t.tag = Some(tag.clone());
    t.digest = digest.cloned();
    t
}

pub(crate) fn manifest_unknown(reference: &Reference) -> ApiError {
    ApiError::new(
        Code::ManifestUnknown,
        format!("manifest {reference} is unknown"),
    )
}

/// Reads a whole (small) body, refusing with 413 once it passes `limit` bytes.
async fn read_limited(mut body: ByteStream, limit: u64) -> ApiResult<Bytes> {
    let too_large = || {
        ApiError::new(
            Code::ManifestTooLarge,
            format!("manifest is larger than the {limit}-byte limit"),
        )
    };
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                Code::ManifestInvalid,
                format!("the request body broke off: {e}"),
            )
        })?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    if buf.is_empty() {
        return Err(ApiError::new(
            Code::ManifestInvalid,
            "the manifest body is empty",
        ));
    }
    Ok(buf.freeze())
}
