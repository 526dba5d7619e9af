//! The outgoing HTTP(S) client: hyper-util's pooled client over rustls (ring), trusting the
//! system's roots plus, when given, a CA file of the peer's own. Notifications and the
//! pull-through cache use it; the reverse proxy uses its connector ([`https_connector`]).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// Which HTTP versions a connector offers in TLS (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// The reverse proxy: one HTTP/1.1 connection per request, as nginx does.
    Http1,
    Http1And2,
}

/// The one TLS client set-up: rustls on ring, the system's roots plus the certificates in
/// `ca_file`, and plain `http://` allowed too. Reads files: call it at start-up.
pub fn https_connector(
    ca_file: Option<&Path>,
    connect_timeout: Duration,
    alpn: Alpn,
) -> io::Result<HttpsConnector<HttpConnector>> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system bundle may hold certificates rustls rejects; skip those, as curl does.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let bad = |e: &dyn std::fmt::Display| {
            io::Error::other(format!("ca_file {}: {e}", path.display()))
        };
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad(&"it holds no certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    // Small writes (headers, registry JSON) should not wait for Nagle.
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Ok(match alpn {
        Alpn::Http1 => builder.enable_http1().wrap_connector(http),
        Alpn::Http1And2 => builder.enable_http1().enable_http2().wrap_connector(http),
    })
}

/// A client for small request and response bodies (webhooks, token exchanges), which can
/// also hand back a streaming response ([`HttpClient::open`], the pull-through cache).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// The answer to a request: its status and, read up to a bound, its body (for the log).
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub body: Bytes,
}

/// At most this much of an answer's body is kept; the rest is read and dropped.
const ANSWER_LIMIT: usize = 4096;

impl HttpClient {
    /// A client trusting the system's roots and the certificates in `ca_file`. Reads
    /// files: call it at start-up, not on the reactor's hot path.
    pub fn new(ca_file: Option<&Path>) -> io::Result<Self> {
        let connector = https_connector(ca_file, Duration::from_secs(10), Alpn::Http1And2)?;
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { inner })
    }

    /// Sends `request` and returns the response once its headers are in (within
    /// `timeout`); the body streams, for the caller to read under its own deadlines.
    pub async fn open(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> io::Result<http::Response<hyper::body::Incoming>> {
        tokio::time::timeout(timeout, self.inner.request(request))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer within the timeout"))?
            .map_err(io::Error::other)
    }

    /// Sends `request`, waiting at most `timeout` for the whole answer.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> io::Result<Answer> {
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(io::Error::other)?;
            let status = response.status();
            let mut body = response.into_body();
            let mut kept = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(io::Error::other)?;
                if let Some(data) = frame.data_ref() {
                    let room = ANSWER_LIMIT.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Ok(Answer {
                status,
                body: Bytes::from(kept),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer within the timeout"))?
    }
}
