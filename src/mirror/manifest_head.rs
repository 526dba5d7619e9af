//! A client's manifest HEAD the cache cannot answer (nothing cached, or a tag past its
//! TTL): answered with an upstream HEAD, never a GET. Docker Hub counts a manifest GET as
//! a pull and a HEAD not, and containerd (so docker) resolves every tag with a HEAD before
//! it pulls by digest: fetching here would spend a pull on a question, and then the pull
//! itself. registry:2's proxy answers `Exists` the same way (a remote HEAD).
//!
//! Nothing is stored from a HEAD, with one exception that costs no upstream bytes: when
//! the tag names a digest the cache already holds (containerd pulled it by digest after
//! its last HEAD), the tag is written, so later pulls by tag are served locally within the
//! TTL and stay servable while the upstream is down.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::{Method, Response, StatusCode};

use super::flight::Failure;
use super::manifests::{digest_header, ok_status, ACCEPT};
use super::names::Names;
use super::{fail_kind, failed, Mirror};
use crate::http_util::{Body, Reply};
use crate::registry::api::blobs::DOCKER_CONTENT_DIGEST;
use crate::registry::error::{ApiResult, Code};
use crate::registry::reference::{Digest, Reference, Tag};
use crate::registry::route::Route;
use crate::registry::service::Caller;

impl Mirror {
    pub(super) async fn head_manifest(
        &self,
        caller: &Caller,
        names: &Names,
        reference: &Reference,
        cached: Option<Digest>,
        parts: &Parts,
    ) -> ApiResult<Response<Body>> {
        let path = format!("/v2/{}/manifests/{reference}", names.remote);
        let head = self
            .upstream
            .request(Method::HEAD, &path, &ACCEPT, names.remote.as_str())
            .await
            .and_then(ok_status);
        let head = match head {
            Ok(head) => head,
            Err(e) => {
                self.upstream_failed("manifest HEAD", &e);
                if cached.is_some() {
                    let why = e.to_string();
                    return self
                        .serve_stale(caller, names, reference, parts, &why)
                        .await;
                }
                return Err(failed(
                    &Failure::new(fail_kind(&e), e.to_string()),
                    "manifest",
                ));
            }
        };
        let said = digest_header(head.headers());
        if let (Reference::Tag(tag), Some(digest)) = (reference, &said) {
            let current =
                cached.as_ref() == Some(digest) || self.keep_tag(caller, names, tag, digest).await;
            if current {
                self.metrics.hit(&self.config.ns);
                self.mark_checked(names, tag);
                let route = Route::Manifest(names.local.clone(), reference.clone());
                return self.local(parts, route, caller).await;
            }
        }
        self.metrics.miss(&self.config.ns);
        let mut reply = Reply::new(StatusCode::OK);
        for name in [CONTENT_TYPE, CONTENT_LENGTH] {
            if let Some(value) = head.headers().get(&name).and_then(|v| v.to_str().ok()) {
                reply = reply.header(name, value);
            }
        }
        if let Some(digest) = said {
            reply = reply.header(DOCKER_CONTENT_DIGEST, digest);
        }
        Ok(reply.empty())
    }

    /// Points the cache's `tag` at `digest` when the cache holds that manifest already;
    /// `false` when it does not (or writing the tag failed: the HEAD is answered anyway).
    async fn keep_tag(&self, caller: &Caller, names: &Names, tag: &Tag, digest: &Digest) -> bool {
        let service = self.registry.service();
        let by_digest = Reference::Digest(digest.clone());
        let m = match service
            .get_manifest(caller, &names.local, &by_digest, false)
            .await
        {
            Ok(m) => m,
            Err(e) if e.code == Code::ManifestUnknown => return false,
            Err(e) => {
                tracing::warn!(repository = %names.local, %digest, error = %e.message, "mirror: reading a cached manifest failed");
                return false;
            }
        };
        let stored = service
            .store_fetched_manifest(
                caller,
                &names.local,
                Some(tag),
                digest,
                Some(&m.media_type),
                m.bytes.clone(),
            )
            .await;
        match stored {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(repository = %names.local, %tag, error = %e.message, "mirror: keeping a tag failed");
                false
            }
        }
    }
}
