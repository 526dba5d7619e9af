//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderName, Response, StatusCode};

use super::blobs::DOCKER_CONTENT_DIGEST;
use super::cache::CachedManifest;
use super::error::{ApiError, ApiResult, Code};
use super::manifest::{media_type_of, Manifest};
use super::reference::{Algorithm, Digest, Reference, RepoName};
use super::storage::{ByteStream, LinkKind, StorageError};
use super::Registry;
use crate::http_util::{self, Body, Reply};

const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");

/// How many of a manifest's references are checked at once: a 30-layer manifest on an
/// object store waits for four rounds of round trips, not 31, and no manifest floods the
/// store.
const CONCURRENT_CHECKS: usize = 8;

impl Registry {
    pub(super) async fn get_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        with_body: bool,
    ) -> ApiResult<Response<Body>> {
        let m = self.manifest(repo, reference).await?;
        let reply = Reply::new(StatusCode::OK)
            .header(CONTENT_TYPE, &m.media_type)
            .header(CONTENT_LENGTH, m.bytes.len())
            .header(DOCKER_CONTENT_DIGEST, &m.digest);
        Ok(match with_body {
            true => reply.body(http_util::full(m.bytes.clone())),
            false => reply.empty(),
        })
    }

    /// A manifest by tag or digest, from the cache when that cannot be stale.
    ///
    /// On storage only this process writes, every write invalidates what it changes, so
    /// whole lookups are cached. On shared storage another node may retag or delete at any
    /// moment: the tag and the repository's link are read every time, and only the bytes,
    /// which the digest fixes, come from the cache.
    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> ApiResult<Arc<CachedManifest>> {
        let shared = self.storage.shared();
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

    pub(super) async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        req: &Parts,
        body: ByteStream,
    ) -> ApiResult<Response<Body>> {
        let content_type = req
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(body, self.options.max_manifest_bytes).await?;
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
        let manifest = Manifest::parse(&bytes, content_type.as_deref())?;
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
        let mut reply = Reply::new(StatusCode::CREATED)
            .header(LOCATION, format!("/v2/{repo}/manifests/{digest}"))
            .header(DOCKER_CONTENT_DIGEST, &digest)
            .header(CONTENT_LENGTH, 0);
        if let Some(subject) = &manifest.subject {
            reply = reply.header(OCI_SUBJECT, subject);
        }
        Ok(reply.empty())
    }

    /// Every blob and child manifest a manifest names must already be in the repository,
    /// with the size its descriptor claims: clients size downloads and verify by it.
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
                let linked = self.storage.is_linked(repo, kind, digest).await?;
                Ok(match linked {
                    true => self.storage.blob_size(digest).await?,
                    false => None,
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

    pub(super) async fn delete_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> ApiResult<Response<Body>> {
        match reference {
            Reference::Tag(tag) => {
                if !self.storage.delete_tag(repo, tag).await? {
                    return Err(manifest_unknown(reference));
                }
                self.cache.forget(repo, tag.as_str());
            }
            Reference::Digest(digest) => self.delete_revision(repo, digest).await?,
        }
        Ok(Reply::new(StatusCode::ACCEPTED)
            .header(CONTENT_LENGTH, 0)
            .empty())
    }

    /// Removes a manifest from a repository, with the tags pointing at it and its entry in
    /// its subject's referrers. The bytes stay: other repositories may share them.
    async fn delete_revision(&self, repo: &RepoName, digest: &Digest) -> ApiResult<()> {
        if !self
            .storage
            .is_linked(repo, LinkKind::Manifest, digest)
            .await?
        {
            return Err(manifest_unknown(&Reference::Digest(digest.clone())));
        }
        if let Some(bytes) = self.storage.read_small_blob(digest).await? {
            if let Ok(Manifest {
                subject: Some(subject),
                ..
            }) = Manifest::parse(&bytes, None)
            {
                self.storage.remove_referrer(repo, &subject, digest).await?;
            }
        }
        for tag in self.storage.list_tags(repo).await?.unwrap_or_default() {
            if self.storage.read_tag(repo, &tag).await?.as_ref() == Some(digest) {
                self.storage.delete_tag(repo, &tag).await?;
            }
        }
        self.storage
            .unlink(repo, LinkKind::Manifest, digest)
            .await?;
        self.cache.forget_repo(repo);
        Ok(())
    }
}

fn manifest_unknown(reference: &Reference) -> ApiError {
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
