//! Which server block a request belongs to, and the plain-HTTP → HTTPS redirect.

use http::header::{CONTENT_LENGTH, HOST, LOCATION};
use http::{Method, Request, Response, StatusCode};

use super::ConnInfo;
use crate::config::names::host_without_port;
use crate::config::{find_server, ServerConfig};
use crate::http_util::{Body, Reply};
use crate::registry::error::{ApiError, Code};

/// The request's host name without port: the `Host` header (HTTP/1.1) or the URI's
/// authority (HTTP/2).
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.headers().get(HOST).and_then(|v| v.to_str().ok()) {
        Some(h) => h,
        None => req.uri().authority()?.as_str(),
    };
    Some(host_without_port(raw)).filter(|h| !h.is_empty())
}

/// The server for this request. On TLS connections whose client sent SNI, the `Host` must
/// lead to the same server as the SNI did (421 otherwise): a certificate for one vhost must
/// not open the door to another.
pub fn select(
    servers: &[ServerConfig],
    host: Option<&str>,
    conn: &ConnInfo,
) -> Result<usize, ApiError> {
    let by_host = match host {
        Some(h) => find_server(servers, h),
        None => conn
            .tls
            .as_ref()
            .map(|t| t.server)
            .or_else(|| servers.iter().position(|s| s.default)),
    };
    let server = by_host.ok_or_else(|| {
        ApiError::new(
            Code::Misdirected,
            format!("no server answers to {:?}", host.unwrap_or("")),
        )
    })?;
    if let Some(tls) = conn.tls.as_ref().filter(|t| t.sni.is_some()) {
        if tls.server != server {
            return Err(ApiError::new(
                Code::Misdirected,
                "the Host header names another server than the TLS connection (SNI) was made for",
            ));
        }
    }
    Ok(server)
}

/// Sends a plain-HTTP request to the same host over HTTPS. GET and HEAD get 301 (what
/// browsers expect); other methods get 308 so clients repeat them with their body.
pub fn https_redirect<B>(req: &Request<B>, host: Option<&str>, port: u16) -> Response<Body> {
    let host = host.unwrap_or("localhost");
    let host = match host.contains(':') {
        true => format!("[{host}]"), // an IPv6 literal
        false => host.to_owned(),
    };
    let port = match port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let status = match *req.method() {
        Method::GET | Method::HEAD => StatusCode::MOVED_PERMANENTLY,
        _ => StatusCode::PERMANENT_REDIRECT,
    };
    Reply::new(status)
        .header(LOCATION, format!("https://{host}{port}{path}"))
        .header(CONTENT_LENGTH, 0)
        .empty()
}
