//! Manifests through the cache: by digest, fetched once and kept; by tag, served from the
//! cache while `tag_ttl` has not passed since the tag was last found current, then checked
//! with a HEAD (fetched again only if the digest moved), and served stale with a `Warning`
//! when the upstream fails.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, WARNING};
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::flight::{self, FailKind, Failure, Joined, State};
use super::names::Names;
use super::upstream::UpstreamError;
use super::{fail_kind, failed, Mirror};
use crate::http_util::Body;
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::manifest::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use crate::registry::reference::{Digest, Reference, Tag};
use crate::registry::route::Route;
use crate::registry::service::Caller;

/// Every manifest type the engine stores, as the upstream is asked for them.
pub(super) const ACCEPT: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// RFC 9111's "response is stale" warning.
const STALE: &str = "110 wharf \"Response is Stale: the mirrored registry could not be reached\"";

impl Mirror {
    pub(super) async fn manifest(
        &self,
        caller: &Caller,
        names: &Names,
        reference: &Reference,
        parts: &Parts,
    ) -> ApiResult<Response<Body>> {
        let route = Route::Manifest(names.local.clone(), reference.clone());
        let cached = self.cached_digest(caller, names, reference).await?;
        let fresh = match reference {
            Reference::Digest(_) => true,
            Reference::Tag(tag) => self.checked_recently(names, tag),
        };
        if cached.is_some() && fresh {
            self.metrics.hit(&self.config.ns);
            return self.local(parts, route, caller).await;
        }
        if parts.method == Method::HEAD {
            return self
                .head_manifest(caller, names, reference, cached, parts)
                .await;
        }
        let key = format!("manifest {}:{reference}", names.local);
        let state = match self.flights.join(&key) {
            Joined::Follower(rx) => flight::outcome(rx).await,
            Joined::Leader(leader) => {
                let state = match self
                    .refresh(caller, names, reference, cached.as_ref())
                    .await
                {
                    Ok(()) => State::Done,
                    Err(error) => State::Failed(error.failure()),
                };
                leader.end(state.clone());
                state
            }
        };
        match (state, cached) {
            (State::Done, _) => self.local(parts, route, caller).await,
            (State::Failed(why), Some(_)) => {
                self.serve_stale(caller, names, reference, parts, &why.message)
                    .await
            }
            (State::Failed(why), None) => Err(failed(&why, "manifest")),
            // A watch never ends in `Running`; the cache is the best answer if it did.
            (State::Running, _) => self.local(parts, route, caller).await,
        }
    }

    /// The cached copy of a manifest the upstream could not confirm, with a `Warning`.
    pub(super) async fn serve_stale(
        &self,
        caller: &Caller,
        names: &Names,
        reference: &Reference,
        parts: &Parts,
        why: &str,
    ) -> ApiResult<Response<Body>> {
        self.metrics.stale(&self.config.ns);
        tracing::warn!(repository = %names.local, %reference, why, "serving a cached manifest the upstream could not confirm");
        let route = Route::Manifest(names.local.clone(), reference.clone());
        let mut response = self.local(parts, route, caller).await?;
        response
            .headers_mut()
            .insert(WARNING, HeaderValue::from_static(STALE));
        Ok(response)
    }

    /// The digest the cache holds for `reference`, if it holds it.
    pub(super) async fn cached_digest(
        &self,
        caller: &Caller,
        names: &Names,
        reference: &Reference,
    ) -> ApiResult<Option<Digest>> {
        let service = self.registry.service();
        match service
            .get_manifest(caller, &names.local, reference, false)
            .await
        {
            Ok(m) => Ok(Some(m.digest.clone())),
            Err(e) if e.code == Code::ManifestUnknown => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn checked_recently(&self, names: &Names, tag: &Tag) -> bool {
        let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked
            .get(&format!("{}:{tag}", names.local))
            .is_some_and(|at| at.elapsed() < self.config.tag_ttl)
    }

    pub(super) fn mark_checked(&self, names: &Names, tag: &Tag) {
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        // Entries past their TTL are worth nothing: dropped as the map grows.
        if checked.len() >= 10_000 {
            let ttl = self.config.tag_ttl;
            checked.retain(|_, at| at.elapsed() < ttl);
        }
        checked.insert(format!("{}:{tag}", names.local), Instant::now());
    }

    /// Brings the cache's copy of `reference` up to date with the upstream (the leader's
    /// part of a single flight).
    async fn refresh(
        &self,
        caller: &Caller,
        names: &Names,
        reference: &Reference,
        cached: Option<&Digest>,
    ) -> Result<(), Refresh> {
        let path = format!("/v2/{}/manifests/{reference}", names.remote);
        let remote = names.remote.as_str();
        if let (Some(cached), Reference::Tag(tag)) = (cached, reference) {
            // A HEAD first: Docker Hub does not count it against the pull limit.
            let head = self
                .upstream
                .request(Method::HEAD, &path, &ACCEPT, remote)
                .await
                .and_then(ok_status);
            let head = head.inspect_err(|e| self.upstream_failed("manifest HEAD", e))?;
            if digest_header(head.headers()).as_ref() == Some(cached) {
                self.metrics.hit(&self.config.ns);
                self.mark_checked(names, tag);
                return Ok(());
            }
        }
        self.metrics.miss(&self.config.ns);
        let fetched = self
            .upstream
            .request(Method::GET, &path, &ACCEPT, remote)
            .await
            .and_then(ok_status)
            .inspect_err(|e| self.upstream_failed("manifest GET", e))?;
        let said = digest_header(fetched.headers());
        let content_type = fetched
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = self.read_manifest(fetched).await?;
        self.metrics
            .upstream_bytes(&self.config.ns, bytes.len() as u64);
        let (tag, digest) = match reference {
            Reference::Digest(d) => (None, d.clone()),
            Reference::Tag(t) => {
                let digest = said.unwrap_or_else(|| {
                    Digest::of(crate::registry::reference::Algorithm::Sha256, &bytes)
                });
                (Some(t), digest)
            }
        };
        let service = self.registry.service();
        service
            .store_fetched_manifest(
                caller,
                &names.local,
                tag,
                &digest,
                content_type.as_deref(),
                bytes,
            )
            .await
            .map_err(Refresh::Store)?;
        if let Some(tag) = tag {
            self.mark_checked(names, tag);
        }
        Ok(())
    }

    async fn read_manifest(
        &self,
        response: Response<hyper::body::Incoming>,
    ) -> Result<Bytes, Refresh> {
        let limit =
            usize::try_from(self.registry.options().max_manifest_bytes).unwrap_or(usize::MAX);
        let body = http_body_util::Limited::new(response.into_body(), limit).collect();
        let bytes = tokio::time::timeout(self.config.timeout, body)
            .await
            .map_err(|_| UpstreamError::Timeout)
            .and_then(|r| r.map_err(|e| UpstreamError::Body(format!("manifest body: {e}"))))
            .inspect_err(|e| self.upstream_failed("manifest body", e))?;
        Ok(bytes.to_bytes())
    }
}

/// Why a refresh failed: the upstream, or storing what it sent.
#[derive(Debug, thiserror::Error)]
enum Refresh {
    #[error("upstream: {0}")]
    Upstream(#[from] UpstreamError),
    #[error("storing: {0}")]
    Store(ApiError),
}

impl Refresh {
    fn failure(&self) -> Failure {
        let kind = match self {
            Refresh::Upstream(e) => fail_kind(e),
            // The upstream's bytes did not match their digest, or are no manifest.
            Refresh::Store(e) if e.code == Code::Unavailable || e.code == Code::Internal => {
                FailKind::Storage
            }
            Refresh::Store(_) => FailKind::Upstream,
        };
        Failure::new(kind, self.to_string())
    }
}

/// Only a 200 is content; anything else is an error (404 included).
pub(super) fn ok_status(
    r: Response<hyper::body::Incoming>,
) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
    match r.status() {
        StatusCode::OK => Ok(r),
        other => Err(UpstreamError::Status(other)),
    }
}

pub(super) fn digest_header(headers: &http::HeaderMap) -> Option<Digest> {
    let value = headers.get(DOCKER_CONTENT_DIGEST)?.to_str().ok()?;
    Digest::parse(value).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{Config, RouteTarget};
    use crate::mirror::MirrorMetrics;
    use crate::registry::reference::RepoName;
    use crate::registry::storage::fs::FsStorage;
    use crate::registry::{Registry, RegistryOptions};

    #[tokio::test(start_paused = true)]
    async fn a_tag_is_served_for_its_ttl_then_checked_again() {
        let text = "[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nmirror = \"https://registry-1.docker.io\"\ntag_ttl = \"5m\"\n";
        let config = match &Config::from_toml(text, "t").unwrap().servers[0].routes[0].target {
            RouteTarget::Mirror(m) => (**m).clone(),
            other => panic!("{other:?}"),
        };
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(FsStorage::open(dir.path()).unwrap());
        let options = RegistryOptions {
            max_manifest_bytes: 1 << 20,
            manifest_cache_bytes: 1 << 20,
            immutable: Vec::new(),
        };
        let registry = Arc::new(Registry::new(storage, options));
        let metrics = Arc::new(MirrorMetrics::default());
        let mirror = Mirror::reuse_or_new(&config, registry, metrics, &[]).unwrap();
        let names = Names {
            remote: RepoName::parse("library/alpine").unwrap(),
            local: RepoName::parse("docker.io/library/alpine").unwrap(),
        };
        let tag = Tag::parse("3").unwrap();
        assert!(!mirror.checked_recently(&names, &tag), "never checked");
        mirror.mark_checked(&names, &tag);
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(mirror.checked_recently(&names, &tag), "within the TTL");
        let other = Tag::parse("edge").unwrap();
        assert!(!mirror.checked_recently(&names, &other), "per tag");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!mirror.checked_recently(&names, &tag), "past the TTL");
    }
}
