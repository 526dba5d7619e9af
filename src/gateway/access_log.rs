//! One access-log event per request, with the server block it went to. Never credentials:
//! only the path (no query string), status and sizes are logged.

use std::time::Instant;

use http::header::CONTENT_LENGTH;
use http::{Method, Response};

use super::ConnInfo;
use crate::http_util::Body;

pub fn write(
    conn: &ConnInfo,
    server: &str,
    method: &Method,
    path: &str,
    response: &Response<Body>,
    started: Instant,
) {
    let bytes = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info!(
        target: "wharf::access",
        client = %conn.peer.ip(),
        server,
        tls = conn.tls.is_some(),
        %method,
        path,
        status = response.status().as_u16(),
        bytes,
        ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
    );
}
