//! A plain HTTP request sent to a `tls = "on"` port. A TLS alert in answer is what curl
//! calls "Received HTTP/0.9", which helps nobody; like nginx ("The plain HTTP request was
//! sent to HTTPS port"), wharf answers 400 saying to use https, and closes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::gateway::respond;
use crate::http_util::Body;
use crate::registry::error::{ApiError, Code};

/// Reads the one request (within `deadline`) and answers it. Generic over the stream so the
/// fuzz target can feed it bytes in memory.
pub async fn answer<S>(stream: S, peer: SocketAddr, deadline: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| async move { Ok::<_, Infallible>(use_https(&req, peer)) });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(deadline)
        .keep_alive(false);
    let serving = builder.serve_connection(TokioIo::new(stream), service);
    // Twice the deadline: reading the head, then writing a short answer.
    match tokio::time::timeout(deadline * 2, serving).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%peer, %error, "plain HTTP on a TLS port"),
        Err(_) => tracing::debug!(%peer, "plain HTTP on a TLS port: no request in time"),
    }
}

fn use_https(req: &Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("this-server");
    tracing::info!(client = %peer, path, "plain HTTP request on a TLS port; answered 400");
    let message =
        format!("The plain HTTP request was sent to an HTTPS port: use https://{host}{path}");
    let is_api = path == "/v2" || path.starts_with("/v2/");
    let mut response = respond::error(&ApiError::new(Code::Unsupported, message), is_api);
    if is_api {
        response.headers_mut().insert(
            "docker-distribution-api-version",
            HeaderValue::from_static("registry/2.0"),
        );
    }
    response
}

#[cfg(test)]
mod properties {
    use crate::invariants;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn plain_http_on_a_tls_port_gets_a_client_error_or_nothing(
            method in "(GET|HEAD|POST|PRI|get|\u{16}|)",
            path in "(/v2|/)[ -~]{0,12}",
            version in "(HTTP/1\\.[01]|HTTP/2\\.0|)",
            host in proptest::option::of("[ -~\u{80}-\u{ff}]{0,16}"),
            end in "(\r\n|\n|)",
            garbage in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
            let mut data = format!("{method} {path} {version}\r\n{host}{end}").into_bytes();
            data.extend(garbage);
            invariants::plain_http(&data);
        }
    }
}
