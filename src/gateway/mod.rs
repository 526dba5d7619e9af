//! The request pipeline: decide what a request is for, dispatch it, turn errors into
//! responses (in [`respond`]), add the common headers and write the access log.

pub mod proxy;
pub mod respond;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::CONTENT_LENGTH;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use crate::http_util::{self, Body};
use crate::registry::Registry;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// What the server knows about the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

pub struct Gateway {
    registry: Arc<Registry>,
    access_log: bool,
}

impl Gateway {
    pub fn new(registry: Arc<Registry>, access_log: bool) -> Self {
        Self {
            registry,
            access_log,
        }
    }

    pub async fn handle<B>(&self, req: Request<B>, conn: ConnInfo) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let is_api = path == "/v2" || path.starts_with("/v2/");
        let mut response = match path.as_str() {
            _ if is_api => {
                let req = req.map(http_util::body_stream);
                match self.registry.handle(req).await {
                    Ok(r) => r,
                    Err(e) => respond::api_error(&e),
                }
            }
            "/" => respond::text(
                StatusCode::OK,
                "wharf container registry: the API is at /v2/\n",
            ),
            "/healthz" => match self.registry.health().await {
                Ok(()) => respond::text(StatusCode::OK, "ok\n"),
                Err(_) => {
                    respond::text(StatusCode::SERVICE_UNAVAILABLE, "storage is not writable\n")
                }
            },
            p if p.starts_with("/v1/") => {
                match self.registry.handle_v1(&req.into_parts().0).await {
                    Ok(r) => r,
                    Err(e) => respond::api_error(&e),
                }
            }
            _ => respond::text(StatusCode::NOT_FOUND, "not found\n"),
        };
        if is_api {
            response
                .headers_mut()
                .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
        }
        if self.access_log {
            log_access(&conn, &method, &path, &response, started);
        }
        response
    }
}

fn log_access(
    conn: &ConnInfo,
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
        %method,
        path,
        status = response.status().as_u16(),
        bytes,
        ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
    );
}
