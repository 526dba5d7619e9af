//! Blobs through the cache. A hit is served by the engine. On a miss, one task per blob
//! (single flight) streams the upstream's body into storage through the service (verified
//! against the digest while it streams) and, chunk by chunk, to the client that started it;
//! clients asking meanwhile wait for the blob to be stored and read it from there. A HEAD
//! on a miss asks the upstream and fetches nothing.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use super::flight::{self, FailKind, Failure, Joined, Leader, State};
use super::names::Names;
use super::upstream::UpstreamError;
use super::{fail_kind, failed, Mirror, MirrorMetrics};
use crate::http_util::{self, Body, Reply};
use crate::registry::api::blobs::DOCKER_CONTENT_DIGEST;
use crate::registry::error::{ApiResult, Code};
use crate::registry::reference::{Digest, RepoName};
use crate::registry::route::Route;
use crate::registry::service::{Caller, Finished};
use crate::registry::Registry;

/// Chunks in flight between the transfer and its first client: a slow client slows the
/// transfer (and so the followers) rather than making it buffer.
const CLIENT_QUEUE: usize = 16;

impl Mirror {
    pub(super) async fn blob(
        &self,
        caller: &Caller,
        names: &Names,
        digest: &Digest,
        parts: &Parts,
        with_body: bool,
    ) -> ApiResult<Response<Body>> {
        let route = Route::Blob(names.local.clone(), digest.clone());
        if self.cached(names, digest).await? {
            self.metrics.hit(&self.config.ns);
            return self.local(parts, route, caller).await;
        }
        let path = format!("/v2/{}/blobs/{digest}", names.remote);
        if !with_body {
            return self.head_upstream(names, digest, &path).await;
        }
        if self.shared_layer(caller, names, digest, &path).await? {
            self.metrics.hit(&self.config.ns);
            return self.local(parts, route, caller).await;
        }
        let key = format!("blob {} {digest}", names.local);
        let leader = match self.flights.join(&key) {
            Joined::Leader(leader) => leader,
            Joined::Follower(rx) => {
                let state = flight::outcome(rx).await;
                return self.after(state, parts, route, caller).await;
            }
        };
        // Stored between the first look and the join: nothing to fetch.
        if self.cached(names, digest).await? {
            leader.end(State::Done);
            return self.local(parts, route, caller).await;
        }
        self.fetch(caller, names, digest, parts, leader).await
    }

    /// The leader's part: GET the blob upstream and hand it to a [`Transfer`] task; the
    /// client gets the bytes as they arrive (a ranged request waits for the whole blob,
    /// then gets its range from storage).
    async fn fetch(
        &self,
        caller: &Caller,
        names: &Names,
        digest: &Digest,
        parts: &Parts,
        leader: Leader,
    ) -> ApiResult<Response<Body>> {
        self.metrics.miss(&self.config.ns);
        let path = format!("/v2/{}/blobs/{digest}", names.remote);
        let response = self
            .upstream
            .request(Method::GET, &path, &[], names.remote.as_str())
            .await
            .and_then(|r| match r.status() {
                StatusCode::OK => Ok(r),
                other => Err(UpstreamError::Status(other)),
            });
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                self.upstream_failed("blob GET", &e);
                let why = Failure::new(fail_kind(&e), e.to_string());
                leader.end(State::Failed(why.clone()));
                return Err(failed(&why, "blob"));
            }
        };
        let length = content_length(response.headers());
        let (tx, rx) = match parts.headers.contains_key(RANGE) {
            false => {
                let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
                (Some(tx), Some(rx))
            }
            true => (None, None),
        };
        let done = leader.subscribe();
        let transfer = Transfer {
            registry: self.registry.clone(),
            caller: caller.clone(),
            repo: names.local.clone(),
            digest: digest.clone(),
            ns: self.config.ns.clone(),
            metrics: self.metrics.clone(),
            timeout: self.config.timeout,
        };
        tokio::spawn(transfer.run(response.into_body(), tx, leader));
        let Some(rx) = rx else {
            let route = Route::Blob(names.local.clone(), digest.clone());
            let state = flight::outcome(done).await;
            return self.after(state, parts, route, caller).await;
        };
        let mut reply = Reply::new(StatusCode::OK)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(DOCKER_CONTENT_DIGEST, digest);
        if let Some(length) = length {
            reply = reply.header(CONTENT_LENGTH, length);
        }
        Ok(reply.body(http_util::stream(Box::pin(receiver_stream(rx)))))
    }

    async fn cached(&self, names: &Names, digest: &Digest) -> ApiResult<bool> {
        match self
            .registry
            .service()
            .blob_size(&names.local, digest)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code == Code::BlobUnknown => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A layer stored for another repository (base layers are shared by many images) is
    /// linked into this one when the upstream confirms, with a HEAD, that its repository
    /// has it: no bytes move. Any failure just means fetching it.
    async fn shared_layer(
        &self,
        caller: &Caller,
        names: &Names,
        digest: &Digest,
        path: &str,
    ) -> ApiResult<bool> {
        let service = self.registry.service();
        if !service.blob_stored(digest).await? {
            return Ok(false);
        }
        let head = self
            .upstream
            .request(Method::HEAD, path, &[], names.remote.as_str())
            .await;
        match head {
            Ok(r) if r.status() == StatusCode::OK => {
                service
                    .link_fetched_blob(caller, &names.local, digest)
                    .await
            }
            Ok(_) => Ok(false),
            Err(e) => {
                self.upstream_failed("blob HEAD", &e);
                Ok(false)
            }
        }
    }

    async fn head_upstream(
        &self,
        names: &Names,
        digest: &Digest,
        path: &str,
    ) -> ApiResult<Response<Body>> {
        let head = self
            .upstream
            .request(Method::HEAD, path, &[], names.remote.as_str())
            .await;
        let head = match head {
            Ok(r) if r.status() == StatusCode::OK => r,
            Ok(r) => Err(UpstreamError::Status(r.status()))
                .map_err(|e| failed(&Failure::new(fail_kind(&e), e.to_string()), "blob"))?,
            Err(e) => {
                self.upstream_failed("blob HEAD", &e);
                return Err(failed(&Failure::new(fail_kind(&e), e.to_string()), "blob"));
            }
        };
        let mut reply = Reply::new(StatusCode::OK)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(DOCKER_CONTENT_DIGEST, digest);
        if let Some(length) = content_length(head.headers()) {
            reply = reply.header(CONTENT_LENGTH, length);
        }
        Ok(reply.empty())
    }

    /// A follower's answer once the transfer it waited for ended.
    async fn after(
        &self,
        state: State,
        parts: &Parts,
        route: Route,
        caller: &Caller,
    ) -> ApiResult<Response<Body>> {
        match state {
            State::Done | State::Running => self.local(parts, route, caller).await,
            State::Failed(why) => Err(failed(&why, "blob")),
        }
    }
}

/// One blob's way from the upstream into storage (and to its first client).
struct Transfer {
    registry: Arc<Registry>,
    caller: Caller,
    repo: RepoName,
    digest: Digest,
    ns: String,
    metrics: Arc<MirrorMetrics>,
    timeout: Duration,
}

type ClientTx = mpsc::Sender<io::Result<Bytes>>;

impl Transfer {
    async fn run(self, body: Incoming, client: Option<ClientTx>, leader: Leader) {
        let (metrics, ns, tee_to) = (self.metrics.clone(), self.ns.clone(), client.clone());
        let tee = frames(body, self.timeout).then(move |item| {
            let (metrics, ns, to) = (metrics.clone(), ns.clone(), tee_to.clone());
            async move {
                if let Ok(bytes) = &item {
                    metrics.upstream_bytes(&ns, bytes.len() as u64);
                    if let Some(to) = &to {
                        // A client gone is no reason to stop: others wait for this blob.
                        let _ = to.send(Ok(bytes.clone())).await;
                    }
                }
                item
            }
        });
        let service = self.registry.service();
        let stored = service
            .put_fetched_blob(&self.caller, &self.repo, &self.digest, Box::pin(tee))
            .await;
        let state = match stored {
            Ok(Finished::Stored) => State::Done,
            Ok(Finished::BodyFailed { error }) => {
                self.failed(FailKind::Upstream, error.to_string())
            }
            Ok(Finished::DigestMismatch { actual }) => self.failed(
                FailKind::Upstream,
                format!("the upstream's bytes have digest {actual}"),
            ),
            Ok(Finished::UnknownUpload) => self.failed(FailKind::Storage, "upload lost".into()),
            Err(e) => self.failed(FailKind::Storage, e.to_string()),
        };
        if let (Some(client), State::Failed(why)) = (&client, &state) {
            // Ends the first client's download with an error instead of a clean end.
            let _ = client
                .send(Err(io::Error::other(why.message.clone())))
                .await;
        }
        leader.end(state);
    }

    fn failed(&self, kind: FailKind, message: String) -> State {
        if kind == FailKind::Upstream {
            self.metrics.upstream_error(&self.ns);
        }
        tracing::warn!(repository = %self.repo, digest = %self.digest, why = message, "mirror transfer failed; nothing was cached");
        State::Failed(Failure::new(kind, message))
    }
}

/// The upstream body as byte chunks, failing when nothing arrives for `idle`.
fn frames(
    body: Incoming,
    idle: Duration,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        loop {
            match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => {
                    let stalled = io::Error::new(io::ErrorKind::TimedOut, "the upstream stalled");
                    return Some((Err(stalled), None));
                }
                Ok(None) => return None,
                Ok(Some(Err(e))) => return Some((Err(io::Error::other(e)), None)),
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        return Some((Ok(data), Some(body)));
                    }
                }
            }
        }
    })
}

fn receiver_stream(
    rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
