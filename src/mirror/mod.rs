//! The pull-through cache: a `mirror = "https://..."` route serves another registry's
//! images through the local engine, fetching on a miss and keeping what it fetched.
//!
//! - **Names** (`names.rs`). The route's path names are dropped (`/v2/dockerhub/alpine` asks
//!   upstream for `alpine`), Docker Hub's official images get `library/` as docker adds it,
//!   and the cache keeps each repository under the registry's namespace
//!   (`docker.io/library/alpine`), so several mirrors can share one storage root and routes
//!   by prefix and by containerd's `?ns=` reach the same cache. Names under `push_to_local`
//!   are ordinary local repositories; everything else is read-only (pushes get `DENIED`).
//! - **Storage.** What is fetched goes through the repository service like a push: blobs
//!   through [`Service::put_fetched_blob`](crate::registry::service::Service::put_fetched_blob) (digest
//!   verified while streaming, published atomically; a transfer cut mid-blob leaves
//!   nothing), manifests byte-exact through `store_fetched_manifest` (digest checked).
//!   Each is announced as a `fetch` event (not a push: nobody pushed) with the request of
//!   the client whose pull caused it; endpoints get those only when they ask for
//!   `fetch` by name, as registry:2's proxy announces none. Afterwards the
//!   engine serves them like anything pushed (ranges, HEAD, the manifest cache).
//! - **Tags** (`manifests.rs`) are served from the cache for `tag_ttl` after they were last
//!   checked, then revalidated with a HEAD (which Docker Hub does not count as a pull) and
//!   fetched again only when the digest moved. Digests never need revalidation. When the
//!   upstream fails or times out, a cached tag is served anyway with a `Warning` header and
//!   a log line. When each tag was checked is kept in memory: after a restart every tag is
//!   checked once more. A client's **HEAD** the cache cannot answer is answered with an
//!   upstream HEAD, never a GET (`manifest_head.rs`): containerd resolves every tag with a
//!   HEAD, and Docker Hub counts a GET as a pull.
//! - **Single flight** (`flight.rs`): one upstream fetch per blob or manifest however many
//!   clients ask at once. For a blob (`blobs.rs`), the fetch runs in its own task, streaming
//!   into storage and, chunk by chunk, to the client who started it; the others wait for it
//!   to be stored and then read it from storage. No blob is held in memory. The task
//!   carries on if its client goes away, so the followers still get the blob. A layer
//!   already stored for another repository is linked once the upstream confirms (HEAD) that
//!   this repository has it: shared base layers cross the network once.
//! - **Upstream** (`upstream.rs`, `token.rs`, `challenge.rs`): https with the system's
//!   roots plus `ca_file`; anonymous, Basic, or the Docker token flow, each as the
//!   registry's `WWW-Authenticate` challenge asks; tokens cached per scope until they
//!   expire and renewed on a 401; redirects (a CDN, a presigned store URL) followed without
//!   the credentials.
//! - **Cache policy** (`pulls.rs`; carried out by `gc/mirror_roots.rs` before the mark):
//!   each manifest GET served records when the image was last pulled (a small record in
//!   storage, at most once a minute per node and image: it survives restarts and counts
//!   every node's pulls). `cache_max_age` and `cache_max_size` decide which images stay GC
//!   roots; the others are deleted through the service, and GC frees what only they named.
//! - **Reload** (`reload.rs`): SIGHUP keeps a mirror route whose config and files did not
//!   change, with its tokens, transfers in flight, tag revalidation times and pull recorder.
//! - **Metrics** (`metrics.rs`): hits, misses, upstream bytes, upstream errors, stale serves.

mod blobs;
pub mod challenge;
mod flight;
mod manifest_head;
mod manifests;
mod metrics;
mod names;
pub mod pulls;
mod reload;
mod token;
mod upstream;

pub use self::metrics::MirrorMetrics;
pub use self::names::cache_namespace;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use http::request::Parts;
use http::{Method, Request, Response};
use tokio::time::Instant;

use self::flight::{FailKind, Failure, Flights};
use self::names::{Mapped, Names};
use self::upstream::{UpstreamError, UpstreamRegistry};
use crate::config::MirrorConfig;
use crate::http_util::{self, Body};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::Digest;
use crate::registry::route::{self, Route};
use crate::registry::service::Caller;
use crate::registry::Registry;

/// One mirror route: its upstream, the engine its cache lives in, and what is in flight.
pub struct Mirror {
    config: MirrorConfig,
    registry: Arc<Registry>,
    upstream: UpstreamRegistry,
    flights: Arc<Flights>,
    /// When each cached tag (`repo:tag`) was last found current upstream.
    checked: Mutex<HashMap<String, Instant>>,
    /// Records when each cached image was last pulled (the cache policy's ranking).
    pulls: pulls::Pulls,
    metrics: Arc<MirrorMetrics>,
    /// What it was built from; a reload keeps the mirror while they are the same.
    sources: reload::Sources,
}

impl Mirror {
    /// Reads the route's CA and password files (`sources` holds what they said).
    fn with_sources(
        config: &MirrorConfig,
        registry: Arc<Registry>,
        metrics: Arc<MirrorMetrics>,
        sources: reload::Sources,
    ) -> io::Result<Self> {
        Ok(Self {
            upstream: UpstreamRegistry::new(config)?,
            config: config.clone(),
            registry,
            flights: Arc::new(Flights::default()),
            checked: Mutex::new(HashMap::new()),
            pulls: pulls::Pulls::default(),
            metrics,
            sources,
        })
    }

    /// The engine the cache lives in (it also serves `/`, `/healthz` on the route).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The registry's name as containerd sends it in `?ns=`.
    pub fn ns(&self) -> &str {
        &self.config.ns
    }

    /// Serves a `/v2/...` request (the gateway has authorized it and left the parsed
    /// route and the caller in its extensions).
    pub async fn serve(&self, req: Request<Body>) -> ApiResult<Response<Body>> {
        let (mut parts, body) = req.into_parts();
        let route = match parts.extensions.remove::<Route>() {
            Some(route) => route,
            None => route::parse(parts.uri.path())?,
        };
        let mapped = route.repo().map(|name| names::map(&self.config, name));
        let names = match mapped {
            // `/v2/`, the catalog and the local namespace: the engine as it is.
            None | Some(Mapped::Local) => {
                parts.extensions.insert(route);
                let req = Request::from_parts(parts, http_util::body_stream(body));
                return self.registry.handle(req).await;
            }
            Some(Mapped::Invalid(why)) => return Err(ApiError::new(Code::NameInvalid, why)),
            Some(Mapped::Mirrored(names)) => names,
        };
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or_default();
        let read = matches!(parts.method, Method::GET | Method::HEAD);
        let with_body = parts.method == Method::GET;
        match route {
            Route::Manifest(_, reference) if read => {
                let response = self.manifest(&caller, &names, &reference, &parts).await?;
                if with_body && response.status() == http::StatusCode::OK {
                    let digest = served_digest(&response);
                    self.record_pull(&names, digest).await;
                }
                Ok(response)
            }
            Route::Blob(_, digest) if read => {
                self.blob(&caller, &names, &digest, &parts, with_body).await
            }
            // What the cache holds of the repository.
            Route::Tags(_) if read => self.local(&parts, Route::Tags(names.local), &caller).await,
            Route::Referrers(_, d) if read => {
                self.local(&parts, Route::Referrers(names.local, d), &caller)
                    .await
            }
            Route::ImpossibleManifest(_, r) if read => Err(ApiError::new(
                Code::ManifestUnknown,
                format!("manifest {r:?} is unknown"),
            )),
            _ => Err(self.read_only(&names)),
        }
    }

    /// Notes a pull of the image served (its digest from the response) for the cache
    /// policy. A failure to record costs the image some ranking, not the client its pull.
    async fn record_pull(&self, names: &Names, digest: Option<Digest>) {
        let Some(digest) = digest else {
            return;
        };
        let storage = self.registry.service().storage();
        if let Err(error) = self.pulls.pulled(&**storage, &names.local, &digest).await {
            tracing::warn!(repository = %names.local, %digest, %error, "mirror: recording a pull failed");
        }
    }

    fn read_only(&self, names: &Names) -> ApiError {
        let local = match &self.config.push_to_local {
            Some(ns) => format!("; push to {ns}... instead"),
            None => String::new(),
        };
        ApiError::new(
            Code::Denied,
            format!(
                "{} mirrors {} and is read-only{local}",
                names.remote,
                self.upstream.base()
            ),
        )
    }

    /// Serves `route` from the cache's engine, with the client's headers (`Range`, `Accept`).
    async fn local(
        &self,
        parts: &Parts,
        route: Route,
        caller: &Caller,
    ) -> ApiResult<Response<Body>> {
        let mut req = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .body(http_util::body_stream(http_util::empty()))
            .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
        *req.headers_mut() = parts.headers.clone();
        req.extensions_mut().insert(route);
        req.extensions_mut().insert(caller.clone());
        self.registry.handle(req).await
    }

    /// Logs an upstream failure and counts it. A 404 is an answer, not a failure.
    fn upstream_failed(&self, what: &str, error: &UpstreamError) {
        if fail_kind(error) == FailKind::NotFound {
            tracing::debug!(mirror = %self.upstream.base(), what, "not found upstream");
            return;
        }
        self.metrics.upstream_error(&self.config.ns);
        tracing::warn!(mirror = %self.upstream.base(), what, %error, "upstream request failed");
    }
}

/// The digest a manifest response names.
fn served_digest(response: &Response<Body>) -> Option<Digest> {
    let value = response.headers().get("docker-content-digest")?;
    Digest::parse(value.to_str().ok()?).ok()
}

/// How an upstream error ends a transfer.
fn fail_kind(error: &UpstreamError) -> FailKind {
    match error {
        UpstreamError::Status(s) if *s == http::StatusCode::NOT_FOUND => FailKind::NotFound,
        UpstreamError::Timeout => FailKind::Timeout,
        UpstreamError::Unreachable(_)
        | UpstreamError::Auth(_)
        | UpstreamError::Status(_)
        | UpstreamError::Body(_) => FailKind::Upstream,
    }
}

/// What a client learns when a transfer failed and nothing is cached (the cause is logged).
fn failed(why: &Failure, what: &str) -> ApiError {
    match why.kind {
        FailKind::NotFound => {
            let code = match what {
                "blob" => Code::BlobUnknown,
                _ => Code::ManifestUnknown,
            };
            ApiError::new(code, format!("{what} unknown to the mirrored registry"))
        }
        FailKind::Timeout => ApiError::new(
            Code::GatewayTimeout,
            "the mirrored registry did not answer in time",
        ),
        FailKind::Upstream => ApiError::new(
            Code::BadGateway,
            "the mirrored registry could not be reached",
        ),
        FailKind::Storage => ApiError::new(
            Code::Unavailable,
            "storing what the mirrored registry sent failed; retry later",
        ),
    }
}
