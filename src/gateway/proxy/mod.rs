//! Proxying a route to an upstream URL: what nginx `proxy_pass` does for a `location`,
//! streaming both ways.
//!
//! - **Paths.** The request path after the route prefix is appended to the upstream's base
//!   path, byte for byte (never decoded and re-encoded), and the query string is kept:
//!   route `/mirror/` with base `http://up/base/` sends `/mirror/v2/x?n=1` to
//!   `/base/v2/x?n=1`. Unlike nginx's plain string replacement, the join is on a segment
//!   boundary, so trailing slashes on either side do not matter (`/base` and `/base/` behave
//!   the same; nginx would send `/basev2/x` for the first), and a base without a path is
//!   the same as `/` (nginx would then pass the original path unchanged). Paths with `.` or
//!   `..` segments are refused, because the upstream could resolve them outside the base.
//! - **Headers.** Hop-by-hop headers are removed both ways (the fixed list and every header
//!   `Connection` names); `Host` becomes the upstream's authority; `X-Forwarded-For` gets
//!   the client appended (nginx's `$proxy_add_x_forwarded_for`); `X-Forwarded-Proto`,
//!   `X-Forwarded-Host` and `X-Real-IP` are set from what the gateway saw. `Content-Length`
//!   is kept, so an upload with a known size is not re-framed as chunked. Credentials the
//!   gateway checked are removed, and the user is sent as `X-Forwarded-User` only where the
//!   route asks ([`pass_identity`]).
//! - **Redirects.** `Location` and `Content-Location` that point into the upstream's base
//!   (absolute with its authority, or an absolute path) are mapped back under the route
//!   prefix, like nginx's `proxy_redirect default`; anything else is passed unchanged.
//! - **Connections.** One pooled HTTP/1.1 client per upstream keeps idle connections for
//!   [`DEFAULT_POOL_IDLE_TIMEOUT`]. `https://` upstreams are verified against the system's
//!   roots plus the route's `ca_file` (the connector of [`crate::http_client`]).
//! - **Timeouts.** Connecting is bounded by the connect timeout. The response timeout bounds
//!   the time with nothing happening before the response headers arrive: it restarts each
//!   time the upstream takes a chunk of the request body, so a long upload is not cut off
//!   while it progresses (nginx's `proxy_send_timeout` and `proxy_read_timeout` together).
//!   A client that stalls its upload for that long also ends in [`ProxyError::Timeout`].
//!   Once headers are in, the response body streams for as long as it takes.
//! - **Errors** are returned as [`ProxyError`] and logged here with their cause chain; the
//!   gateway turns them into responses, so nothing about the upstream reaches the client.

mod headers;
mod paths;
mod relay;

pub use headers::pass_identity;

use std::error::Error as StdError;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Extensions, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::http_client::Alpn;
use crate::http_util::Body;

use self::headers::*;
use self::paths::*;
use self::relay::*;

/// How long an idle upstream connection is kept for reuse. Shorter than common server
/// keep-alive timeouts (nginx 75 s, Go without one), so wharf usually closes first instead
/// of picking a connection the upstream is just closing.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// One upstream, e.g. `http://10.0.0.5:5000/prefix` or `https://app.internal`. A cheap handle:
/// clones share the connection pool.
#[derive(Clone)]
pub struct Upstream(Arc<Inner>);

struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    base: Uri,
    scheme: Scheme,
    /// The base path without its trailing slash (`""` for `/`): request tails are joined to it.
    base_path: String,
    authority: Authority,
    /// The value sent as `Host`.
    host_header: HeaderValue,
    /// The port a `Location` URL must name (or imply, as 80 or 443) to count as this upstream.
    port: u16,
    /// Shared with response bodies, which log their own failures after `forward` returned.
    name: Arc<str>,
    response_timeout: Duration,
}

/// What the gateway knows about the original request, for X-Forwarded-* and Location rewriting.
#[derive(Clone, Debug)]
pub struct Forwarded {
    pub client_ip: IpAddr,
    /// How the client reached wharf: `"http"` or `"https"`.
    pub scheme: &'static str,
    /// The client's Host header value (may include a port).
    pub host: String,
    /// The route's path prefix, e.g. `/` or `/mirror/`.
    pub route_prefix: String,
}

/// Why a request could not be proxied. Each variant names the status the gateway should
/// answer with; the cause is already logged by [`Upstream::forward`].
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Could not connect, or the upstream broke the connection or sent an invalid response
    /// before its headers were complete → 502.
    #[error("upstream {upstream} is unreachable")]
    Unreachable {
        upstream: String,
        #[source]
        source: ClientError,
    },
    /// Nothing happened for the response timeout before response headers arrived → 504.
    #[error("upstream {upstream} sent no response within {after:?}")]
    Timeout { upstream: String, after: Duration },
    /// The request path cannot be mapped to the upstream: it has dot segments, is not in
    /// origin form (`*`, `CONNECT host:port`), or is outside the route prefix. The client's
    /// fault (the router only passes paths under the prefix) → 400.
    #[error("request path {path:?} cannot be proxied: {reason}")]
    BadPath { path: String, reason: &'static str },
    /// The client's request body failed (usually: the client went away) while it was being
    /// sent upstream → 400 if anyone is still listening; nginx logs this as 499.
    #[error("the request body failed while it was sent to upstream {upstream}")]
    ClientBody {
        upstream: String,
        #[source]
        source: ClientError,
    },
}

/// An upstream URL that cannot be used; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamUrlError {
    #[error("upstream URL {url:?} must start with http:// or https://")]
    Scheme { url: String },
    #[error("upstream {url:?}: {source}")]
    Tls {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream URL {url:?} has no host")]
    NoHost { url: String },
    #[error("upstream URL {url:?} contains credentials, which are not supported")]
    Credentials { url: String },
    #[error("upstream URL {url:?} has a query string; only a base path is allowed")]
    Query { url: String },
}

impl Upstream {
    /// An upstream at `base`, connecting within `connect_timeout` and waiting at most
    /// `response_timeout` without progress for response headers.
    pub fn new(
        base: Uri,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, UpstreamUrlError> {
        Self::with_ca(base, None, connect_timeout, response_timeout)
    }

    /// [`Upstream::new`], trusting the certificates in `ca_file` besides the system's roots
    /// for an `https://` upstream. Reads files: call it at start-up.
    pub fn with_ca(
        base: Uri,
        ca_file: Option<&std::path::Path>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Result<Self, UpstreamUrlError> {
        let url = base.to_string();
        let (scheme, default_port) = match base.scheme() {
            Some(s) if *s == Scheme::HTTP => (Scheme::HTTP, 80),
            Some(s) if *s == Scheme::HTTPS => (Scheme::HTTPS, 443),
            _ => return Err(UpstreamUrlError::Scheme { url }),
        };
        let Some(authority) = base.authority().cloned() else {
            return Err(UpstreamUrlError::NoHost { url });
        };
        if authority.as_str().contains('@') {
            return Err(UpstreamUrlError::Credentials { url });
        }
        if base.query().is_some() {
            return Err(UpstreamUrlError::Query { url });
        }
        // An authority is always a valid header value; this only avoids an `expect`.
        let Ok(host_header) = HeaderValue::from_str(authority.as_str()) else {
            return Err(UpstreamUrlError::NoHost { url });
        };
        let path = base.path();
        let base_path = path.strip_suffix('/').unwrap_or(path).to_owned();

        let connector = crate::http_client::https_connector(ca_file, connect_timeout, Alpn::Http1)
            .map_err(|source| UpstreamUrlError::Tls {
                url: url.clone(),
                source,
            })?;
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(DEFAULT_POOL_IDLE_TIMEOUT)
            // Without a timer the pool never expires idle connections.
            .pool_timer(TokioTimer::new())
            .build(connector);

        Ok(Self(Arc::new(Inner {
            client,
            port: authority.port_u16().unwrap_or(default_port),
            name: Arc::from(url.as_str()),
            base,
            scheme,
            base_path,
            authority,
            host_header,
            response_timeout,
        })))
    }

    pub fn base(&self) -> &Uri {
        &self.0.base
    }

    /// Forwards a request, streaming its body up and the response body back.
    pub async fn forward<B>(
        &self,
        req: Request<B>,
        fwd: &Forwarded,
    ) -> Result<Response<Body>, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: StdError + Send + Sync + 'static,
    {
        let result = self.0.try_forward(req, fwd).await;
        if let Err(e) = &result {
            match e {
                ProxyError::Unreachable { .. } | ProxyError::Timeout { .. } => {
                    tracing::warn!(upstream = %self.0.name, error = %Chain(e), "proxying failed")
                }
                ProxyError::BadPath { .. } | ProxyError::ClientBody { .. } => {
                    tracing::info!(upstream = %self.0.name, error = %Chain(e), "request not proxied")
                }
            }
        }
        result
    }
}

impl Inner {
    async fn try_forward<B>(
        &self,
        req: Request<B>,
        fwd: &Forwarded,
    ) -> Result<Response<Body>, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: StdError + Send + Sync + 'static,
    {
        let (mut parts, body) = req.into_parts();
        parts.uri = self.target(&parts.uri, &fwd.route_prefix)?;
        // The upstream connection is HTTP/1.1 whatever the client spoke (h2, HTTP/1.0).
        parts.version = Version::HTTP_11;
        // Extensions belong to the client's connection (upgrades, connection info).
        parts.extensions = Extensions::new();
        request_headers(&mut parts.headers, fwd, &self.host_header);

        let progress = Arc::new(Progress::new());
        let body = Relay {
            inner: Box::pin(body),
            side: Side::Request(progress.clone()),
        };
        let pending = self
            .client
            .request(Request::from_parts(parts, body.boxed_unsync()));
        let response = self.wait_for_headers(pending, &progress).await?;

        let (mut parts, body) = response.into_parts();
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(value) = parts.headers.get(&name) {
                if let Some(mapped) = self.map_location(value, fwd) {
                    parts.headers.insert(name, mapped);
                }
            }
        }
        let body = Relay {
            inner: Box::pin(body),
            side: Side::Response(self.name.clone()),
        };
        Ok(Response::from_parts(parts, body.boxed_unsync()))
    }

    /// Waits for the response headers while there is progress (see the module docs).
    async fn wait_for_headers<F>(
        &self,
        pending: F,
        progress: &Progress,
    ) -> Result<Response<Incoming>, ProxyError>
    where
        F: Future<Output = Result<Response<Incoming>, ClientError>>,
    {
        let mut pending = std::pin::pin!(pending);
        loop {
            let deadline = progress.last() + self.response_timeout;
            let upstream = || self.name.to_string();
            match tokio::time::timeout_at(deadline, pending.as_mut()).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(source)) if progress.client_failed() => {
                    let upstream = upstream();
                    return Err(ProxyError::ClientBody { upstream, source });
                }
                Ok(Err(source)) => {
                    let upstream = upstream();
                    return Err(ProxyError::Unreachable { upstream, source });
                }
                // The body moved on since the deadline was set: wait from its last chunk.
                Err(_) if progress.last() + self.response_timeout > Instant::now() => {}
                Err(_) => {
                    let upstream = upstream();
                    let after = self.response_timeout;
                    return Err(ProxyError::Timeout { upstream, after });
                }
            }
        }
    }

    /// The upstream URL for a request URI: base path + the path after the route prefix + query.
    fn target(&self, uri: &Uri, route_prefix: &str) -> Result<Uri, ProxyError> {
        let bad = |reason| ProxyError::BadPath {
            path: uri.path().to_owned(),
            reason,
        };
        let mut path = upstream_path(uri.path(), route_prefix, &self.base_path).map_err(bad)?;
        if let Some(query) = uri.query() {
            path.push('?');
            path.push_str(query);
        }
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| bad("it is not a valid URL path"))
    }

    /// The client-facing value for a `Location` the upstream sent, or `None` to keep it.
    fn map_location(&self, value: &HeaderValue, fwd: &Forwarded) -> Option<HeaderValue> {
        let location = value.to_str().ok()?;
        let own = match self.scheme == Scheme::HTTPS {
            true => "https://",
            false => "http://",
        };
        let (absolute, rest) = match strip_prefix_ignore_case(location, own) {
            Some(after) => {
                let end = after.find(['/', '?', '#']).unwrap_or(after.len());
                let (authority, rest) = after.split_at(end);
                if !self.is_own_authority(authority) {
                    return None;
                }
                (true, rest)
            }
            // `//host/...` is scheme-relative, i.e. names an authority.
            None if location.starts_with('/') && !location.starts_with("//") => (false, location),
            None => return None,
        };
        let (path, suffix) = rest.split_at(rest.find(['?', '#']).unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let mapped = client_path(path, &self.base_path, &fwd.route_prefix)?;
        let mapped = match absolute {
            true => format!("{}://{}{mapped}{suffix}", fwd.scheme, fwd.host),
            false => format!("{mapped}{suffix}"),
        };
        HeaderValue::from_str(&mapped).ok()
    }

    fn is_own_authority(&self, authority: &str) -> bool {
        if authority.contains('@') {
            return false;
        }
        let Ok(authority) = authority.parse::<Authority>() else {
            return false;
        };
        authority.host().eq_ignore_ascii_case(self.authority.host())
            && authority
                .port_u16()
                .unwrap_or(match self.scheme == Scheme::HTTPS {
                    true => 443,
                    false => 80,
                })
                == self.port
    }
}

pub(super) use crate::http_util::Chain;

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderMap;

    const SECOND: Duration = Duration::from_secs(1);

    fn upstream(base: &'static str) -> Result<Upstream, UpstreamUrlError> {
        Upstream::new(Uri::from_static(base), SECOND, SECOND)
    }

    fn fwd(prefix: &str) -> Forwarded {
        Forwarded {
            client_ip: IpAddr::from([192, 0, 2, 7]),
            scheme: "https",
            host: "registry.example:8443".to_owned(),
            route_prefix: prefix.to_owned(),
        }
    }

    #[test]
    fn upstream_urls_are_checked() {
        use UpstreamUrlError as E;
        assert!(matches!(upstream("ftp://up/"), Err(E::Scheme { .. })));
        assert_eq!(upstream("https://up/").expect("valid").0.port, 443);
        assert!(matches!(upstream("up:5000"), Err(E::Scheme { .. })));
        assert!(matches!(upstream("/just/a/path"), Err(E::Scheme { .. })));
        assert!(matches!(
            upstream("http://u:p@up/"),
            Err(E::Credentials { .. })
        ));
        assert!(matches!(upstream("http://up/?a=1"), Err(E::Query { .. })));
        let up = upstream("http://up:5000/base/").expect("valid").0;
        assert_eq!((up.base_path.as_str(), up.port), ("/base", 5000));
        assert_eq!(upstream("http://up").expect("valid").0.base_path, "");
    }

    #[test]
    fn paths_join_on_segment_boundaries() {
        let map = |path, prefix, base| upstream_path(path, prefix, base);
        assert_eq!(
            map("/mirror/v2/x", "/mirror/", "/base"),
            Ok("/base/v2/x".into())
        );
        assert_eq!(
            map("/mirror/v2/x", "/mirror", "/base"),
            Ok("/base/v2/x".into())
        );
        assert_eq!(map("/mirror/", "/mirror/", "/base"), Ok("/base/".into()));
        assert_eq!(map("/mirror", "/mirror/", "/base"), Ok("/base".into()));
        assert_eq!(map("/mirror", "/mirror/", ""), Ok("/".into()));
        assert_eq!(map("/v2/", "/", "/prefix"), Ok("/prefix/v2/".into()));
        assert_eq!(map("/v2/", "/", ""), Ok("/v2/".into()));
        assert_eq!(map("/m//a%2Fb%20c", "/m/", ""), Ok("//a%2Fb%20c".into()));
        assert!(map("/mirrorx", "/mirror/", "/base").is_err());
        assert!(map("/other/x", "/mirror/", "/base").is_err());
        assert!(map("*", "/", "").is_err());
        assert!(map("", "/", "").is_err());
    }

    #[test]
    fn dot_segments_are_refused() {
        for path in [
            "/m/../x",
            "/m/./x",
            "/m/%2e%2E/x",
            "/m/.%2e",
            "/m/a%2f..%2fb",
            "/m/a\\..\\b",
            "/m/..",
        ] {
            assert!(upstream_path(path, "/m/", "/b").is_err(), "{path}");
        }
        assert!(upstream_path("/m/a..b/.well-known/...", "/m/", "/b").is_ok());
    }

    #[test]
    fn redirect_paths_map_back_under_the_prefix() {
        let map = client_path;
        assert_eq!(
            map("/base/v2/x", "/base", "/mirror/"),
            Some("/mirror/v2/x".into())
        );
        assert_eq!(map("/base", "/base", "/mirror/"), Some("/mirror".into()));
        assert_eq!(map("/base", "/base", "/"), Some("/".into()));
        assert_eq!(map("/v2/x", "", "/mirror/"), Some("/mirror/v2/x".into()));
        assert_eq!(map("/basement", "/base", "/mirror/"), None);
        assert_eq!(map("/other", "/base", "/mirror/"), None);
    }

    #[test]
    fn locations_are_rewritten_only_when_they_point_into_the_upstream() {
        let up = upstream("http://Up.Internal:5000/base/").expect("valid").0;
        let map = |loc: &'static str| {
            let mapped = up.map_location(&HeaderValue::from_static(loc), &fwd("/mirror/"));
            mapped.map(|v| v.to_str().expect("ascii").to_owned())
        };
        let to = |s: &str| Some(s.to_owned());
        assert_eq!(
            map("http://up.internal:5000/base/v2/u/1?_state=a#f"),
            to("https://registry.example:8443/mirror/v2/u/1?_state=a#f")
        );
        assert_eq!(
            map("HTTP://UP.internal:5000/base"),
            to("https://registry.example:8443/mirror")
        );
        assert_eq!(map("/base/v2/x?y"), to("/mirror/v2/x?y"));
        assert_eq!(
            map("http://up.internal:5000"),
            None,
            "the root is outside /base"
        );
        assert_eq!(
            map("http://up.internal/base/x"),
            None,
            "port 80 is another authority"
        );
        assert_eq!(map("http://elsewhere:5000/base/x"), None);
        assert_eq!(map("http://me@up.internal:5000/base/x"), None);
        assert_eq!(map("https://up.internal:5000/base/x"), None);
        assert_eq!(map("//up.internal:5000/base/x"), None);
        assert_eq!(map("relative/x"), None);
        assert_eq!(map("/other"), None);

        let up80 = upstream("http://up").expect("valid").0;
        let value = HeaderValue::from_static("http://up:80/v2/");
        assert_eq!(
            up80.map_location(&value, &fwd("/")),
            Some(HeaderValue::from_static(
                "https://registry.example:8443/v2/"
            ))
        );
    }

    #[test]
    fn request_headers_are_rewritten() {
        let mut h = HeaderMap::new();
        let hv = HeaderValue::from_static;
        h.insert(header::CONNECTION, hv("keep-alive, X-Hop, content-length"));
        h.insert("x-hop", hv("1"));
        h.insert(header::CONTENT_LENGTH, hv("5"));
        h.insert(header::TE, hv("trailers"));
        h.insert(header::EXPECT, hv("100-continue"));
        h.insert(header::HOST, hv("registry.example:8443"));
        h.append(X_FORWARDED_FOR, hv("198.51.100.1"));
        h.append(X_FORWARDED_FOR, hv("198.51.100.2"));
        h.insert(X_FORWARDED_PROTO, hv("gopher"));
        let mut f = fwd("/");
        f.client_ip = "::ffff:192.0.2.7".parse().expect("an IP");
        request_headers(&mut h, &f, &hv("up:5000"));

        let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(get("host"), Some("up:5000"));
        assert_eq!(
            get("x-forwarded-for"),
            Some("198.51.100.1, 198.51.100.2, 192.0.2.7")
        );
        assert_eq!(get("x-real-ip"), Some("192.0.2.7"));
        assert_eq!(get("x-forwarded-proto"), Some("https"));
        assert_eq!(get("x-forwarded-host"), Some("registry.example:8443"));
        assert_eq!(get("content-length"), Some("5"));
        for gone in ["connection", "x-hop", "te", "expect"] {
            assert_eq!(get(gone), None, "{gone}");
        }
    }
}
