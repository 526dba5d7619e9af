//! A webhook receiver for the notification tests: a real hyper server on 127.0.0.1:0,
//! over plain HTTP or TLS (a certificate from the test CA), that records every delivery
//! and can answer 200, answer 500, hang, or be down (not listening) for a while.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Accept,
    Fail,
    /// Reads the request, never answers.
    Hang,
    /// Answers 200 after this long.
    Slow(Duration),
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The event in a Distribution envelope (the first and only one wharf sends).
    pub fn event(&self) -> Value {
        self.json()["events"][0].clone()
    }
}

struct Inner {
    mode: Mutex<Mode>,
    got: Mutex<Vec<Delivery>>,
    arrived: Notify,
}

pub struct Receiver {
    pub addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    inner: Arc<Inner>,
    tasks: JoinSet<()>,
}

impl Receiver {
    pub async fn http() -> Self {
        Self::bind("127.0.0.1:0".parse().unwrap(), None).await
    }

    /// Over TLS with a certificate for 127.0.0.1 and `localhost` from `pki`'s CA.
    pub async fn https(pki: &crate::pki::Pki) -> Self {
        let leaf = pki.leaf("receiver", &["127.0.0.1", "localhost"]);
        let certs = wharf::tls::pem::load_certs(&leaf.cert).unwrap();
        let key = wharf::tls::pem::load_key(&leaf.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::bind("127.0.0.1:0".parse().unwrap(), Some(acceptor)).await
    }

    async fn bind(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let inner = Arc::new(Inner {
            mode: Mutex::new(Mode::Accept),
            got: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let mut r = Self {
            addr,
            tls,
            inner,
            tasks: JoinSet::new(),
        };
        r.listen().await;
        r
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/hook", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock().unwrap() = mode;
    }

    /// Stops listening and drops every connection: the endpoint is down.
    pub async fn down(&mut self) {
        self.tasks.abort_all();
        // Until the tasks are gone the listener is still bound.
        while self.tasks.join_next().await.is_some() {}
    }

    /// Listens again on the same address.
    pub async fn up(&mut self) {
        self.listen().await;
    }

    async fn listen(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (inner, tls) = (self.inner.clone(), self.tls.clone());
        self.tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (inner, tls) = (inner.clone(), tls.clone());
                conns.spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(TokioIo::new(stream), inner).await;
                            }
                        }
                        None => serve(TokioIo::new(tcp), inner).await,
                    }
                });
            }
        });
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` deliveries arrived (each one answered or not), or panics
    /// after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.inner.arrived.notified();
            let got = self.deliveries();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("{} of {n} deliveries within {within:?}", got.len());
            }
        }
    }
}

async fn serve<IO>(io: TokioIo<IO>, inner: Arc<Inner>)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let inner = inner.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            inner.got.lock().unwrap().push(Delivery {
                headers: parts.headers,
                body,
            });
            inner.arrived.notify_waiters();
            let mode = *inner.mode.lock().unwrap();
            let status = match mode {
                Mode::Accept => 200,
                Mode::Fail => 500,
                Mode::Hang => {
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                Mode::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    200
                }
            };
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(status)
                    .body(Full::new(Bytes::from_static(b"ok")))
                    .unwrap(),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}
