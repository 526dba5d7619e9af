//! The request pipeline: find the virtual host (and check it against the TLS SNI), match the
//! route, dispatch to the registry engine, an upstream or a redirect, turn errors into
//! responses (in [`respond`]), add the common headers and write the access log.

mod access_log;
pub mod authz;
mod client_ip;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod respond;
mod ui_site;
mod vhost;

#[cfg(test)]
mod caller_tests;
#[cfg(test)]
mod ui_site_tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::LOCATION;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};

use crate::config::{Config, PlainMode, RequestClass, RouteTarget, ServerConfig};
use crate::http_util::{self, Body, Reply};
use crate::registry::access::{self, Need};
use crate::registry::api::wharf_api;
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::route::Route as ApiRoute;
use crate::registry::service::{Caller, RequestId};
use crate::registry::Registry;
use crate::tls::acceptor::TlsInfo;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
/// How long connecting to an upstream may take.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the gateway could not be built from a config.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Upstream(#[from] proxy::UpstreamUrlError),
    #[error(transparent)]
    Auth(#[from] authz::AuthSetupError),
    #[error(transparent)]
    AccessLog(#[from] access_log::AccessLogError),
    #[error("mirror route {prefix:?}: {source}")]
    Mirror {
        prefix: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the server knows about the connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Set on TLS connections.
    pub tls: Option<TlsInfo>,
    /// What plain-HTTP requests on this listener get.
    pub plain: PlainMode,
}

pub struct Gateway {
    servers: Vec<ServerConfig>,
    /// Indexed like `servers`: each server's routes, longest prefix first.
    routes: Vec<Vec<Route>>,
    /// Indexed like `servers`: logins and rules, for servers that have them.
    auth: Vec<Option<authz::ServerAuth>>,
    limits: ratelimit::RateLimits,
    /// Peers whose `X-Forwarded-For` names the client.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// `limits.max_header_bytes`; hyper's own limit is set higher, so that over-long heads
    /// get wharf's 431, with the OCI envelope on `/v2/` paths.
    max_header_bytes: usize,
    /// `registry.delete`: whether the engine's deletes are granted (see `RegistryConfig`).
    delete: Option<bool>,
    /// Indexed like `servers`: the web UI, on servers that have it on.
    ui: Vec<Option<ui_site::UiSite>>,
    recorder: Arc<access_log::Recorder>,
}

struct Route {
    prefix: String,
    target: Target,
    max_body_bytes: Option<u64>,
    /// Positions in `limits` of the rate limits that apply here.
    limits: Vec<usize>,
    /// Outside the server's logins: nothing is asked for or checked, nothing consumed.
    public: bool,
    /// Send the verified user upstream as `X-Forwarded-User`.
    forward_user: bool,
}

enum Target {
    Registry(Arc<Registry>),
    Upstream(proxy::Upstream),
    Mirror(Arc<crate::mirror::Mirror>),
    Redirect { to: String, status: StatusCode },
}

impl Gateway {
    /// Builds the routing tables; `registries` holds one engine per storage root, `kept`
    /// the mirrors of the gateway a reload replaces (those unchanged live on, with their
    /// state; see `mirror/reload.rs`).
    pub fn new(
        config: &Config,
        registries: &HashMap<PathBuf, Arc<Registry>>,
        metrics: Arc<metrics::Metrics>,
        kept: &[Arc<crate::mirror::Mirror>],
    ) -> Result<Self, GatewayError> {
        let limits = ratelimit::RateLimits::new(config, metrics.clone());
        let mut routes = Vec::new();
        for server in &config.servers {
            let mut table = Vec::new();
            for r in &server.routes {
                let target = match &r.target {
                    RouteTarget::Registry { root } => match registries.get(root) {
                        Some(reg) => Target::Registry(reg.clone()),
                        None => continue, // bind opens one per root; cannot happen
                    },
                    RouteTarget::Upstream {
                        url,
                        timeout,
                        ca_file,
                    } => Target::Upstream(proxy::Upstream::with_ca(
                        url.clone(),
                        ca_file.as_deref(),
                        UPSTREAM_CONNECT_TIMEOUT,
                        *timeout,
                    )?),
                    RouteTarget::Mirror(m) => match registries.get(&m.root) {
                        Some(reg) => Target::Mirror(
                            crate::mirror::Mirror::reuse_or_new(
                                m,
                                reg.clone(),
                                metrics.mirror.clone(),
                                kept,
                            )
                            .map_err(|source| {
                                GatewayError::Mirror {
                                    prefix: r.prefix.clone(),
                                    source,
                                }
                            })?,
                        ),
                        None => continue, // bind opens one per root; cannot happen
                    },
                    RouteTarget::Redirect { to, status } => Target::Redirect {
                        to: to.clone(),
                        status: StatusCode::from_u16(*status)
                            .unwrap_or(StatusCode::PERMANENT_REDIRECT),
                    },
                };
                table.push(Route {
                    prefix: r.prefix.clone(),
                    target,
                    max_body_bytes: r.max_body_bytes,
                    limits: limits.positions(&r.rate_limits),
                    public: r.public,
                    forward_user: r.forward_user,
                });
            }
            routes.push(table);
        }
        let ui = config
            .servers
            .iter()
            .zip(&routes)
            .map(|(server, table)| server.ui.then(|| ui_site::UiSite::new(table)).flatten())
            .collect();
        let auth = config
            .servers
            .iter()
            .map(|s| {
                s.auth
                    .as_ref()
                    .map(|a| authz::ServerAuth::new(a, &metrics, limits.failed_logins().clone()))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            servers: config.servers.clone(),
            routes,
            auth,
            limits,
            trusted_proxies: config.limits.trusted_proxies.clone(),
            max_header_bytes: config.limits.max_header_bytes,
            delete: config.registry.delete,
            ui,
            recorder: Arc::new(access_log::Recorder::new(&config.log, metrics)?),
        })
    }

    /// The mirror routes' mirrors, for the next reload to keep.
    pub fn mirrors(&self) -> Vec<Arc<crate::mirror::Mirror>> {
        let targets = self.routes.iter().flatten().map(|r| &r.target);
        targets
            .filter_map(|t| match t {
                Target::Mirror(m) => Some(m.clone()),
                Target::Registry(_) | Target::Upstream(_) | Target::Redirect { .. } => None,
            })
            .collect()
    }

    pub async fn handle<B>(&self, req: Request<B>, conn: &ConnInfo) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let client = client_ip::client_ip(conn.peer.ip(), req.headers(), &self.trusted_proxies);
        let entry = self.entry_for(&req, client);
        let is_v2 = entry.path == "/v2" || entry.path.starts_with("/v2/");
        // wharf's own API answers errors in the registry's JSON envelope too.
        let is_api = is_v2 || wharf_api::is_api_path(&entry.path);
        let host = vhost::request_host(&req).map(str::to_owned);
        let mut at = Where {
            client,
            server: None,
            route: None,
            user: None,
        };
        let mut response = match self.dispatch(req, conn, host.as_deref(), &mut at).await {
            Ok(r) => r,
            Err(e) => respond::error(&e, is_api),
        };
        if is_api {
            let headers = response.headers_mut();
            if is_v2 {
                headers.insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
            }
            // What registry:2's stock config.yml adds (`http.headers`), so a browser never
            // runs a blob or an error served here as something else.
            headers.insert(
                http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
        }
        // A HEAD answer has headers only. hyper drops the body on HTTP/1.1 but not on h2,
        // where sending one is a protocol error; every handler's headers (Content-Length
        // included) stay as they would be for GET.
        if entry.method == http::Method::HEAD {
            *response.body_mut() = http_util::empty();
        }
        let entry = access_log::Entry {
            status: response.status().as_u16(),
            vhost: at
                .server
                .map(|i| self.servers[i].label.clone())
                .unwrap_or_else(|| "-".into()),
            route: at
                .server
                .zip(at.route)
                .map(|(s, r)| self.routes[s][r].prefix.clone())
                .unwrap_or_else(|| "-".into()),
            user: at.user,
            ..entry
        };
        response.map(|body| self.recorder.wrap(body, entry))
    }

    /// What is known of a request before it runs, for the access log and metrics.
    fn entry_for<B>(&self, req: &Request<B>, client: IpAddr) -> access_log::Entry {
        let header = |name: http::HeaderName| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .replace('"', "'")
        };
        access_log::Entry {
            client,
            user: None,
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            version: req.version(),
            status: 0,
            vhost: String::new(),
            route: String::new(),
            referer: header(http::header::REFERER),
            user_agent: header(http::header::USER_AGENT),
            request_bytes: req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            started: Instant::now(),
            time: time::OffsetDateTime::now_utc(),
        }
    }

    /// Finds the server and route (noting them in `at`) and runs the request.
    async fn dispatch<B>(
        &self,
        req: Request<B>,
        conn: &ConnInfo,
        host: Option<&str>,
        at: &mut Where,
    ) -> ApiResult<Response<Body>>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let head = head_bytes(&req);
        if head > self.max_header_bytes {
            return Err(ApiError::new(
                Code::HeadersTooLarge,
                format!(
                    "the request line and headers are {head} bytes, over this server's {}-byte limit",
                    self.max_header_bytes
                ),
            ));
        }
        let server = vhost::select(&self.servers, host, conn)?;
        at.server = Some(server);
        if conn.tls.is_none() {
            if let PlainMode::Redirect { port } = conn.plain {
                return Ok(vhost::https_redirect(&req, host, port));
            }
        }
        if let Some(site) = self.ui[server]
            .as_ref()
            .filter(|_| ui_site::is_ui_path(req.uri().path()))
        {
            let shown = ui_site::display_host(&req, conn);
            let req = req.map(http_util::boxed);
            let tls = conn.tls.is_some();
            return self.serve_ui(req, server, site, &shown, tls, at).await;
        }
        let path = req.uri().path();
        let ns = containerd_ns(&req);
        let Some(index) = self.routes[server]
            .iter()
            .position(|r| path.starts_with(&r.prefix) && r.takes_ns(ns.as_deref()))
        else {
            return Err(ApiError::new(
                Code::NotFound,
                format!("no route for {path:?}"),
            ));
        };
        at.route = Some(index);
        let route = &self.routes[server][index];
        if path == "/"
            && self.ui[server].is_some()
            && matches!(route.target, Target::Registry(_))
            && ui_site::wants_html(&req)
        {
            return Ok(redirect(&req, "/", "/ui/", StatusCode::SEE_OTHER));
        }
        let mut req = limit_body(req, route.max_body_bytes)?;
        let logins = self.admit(&mut req, server, route, at).await?;
        match &route.target {
            Target::Registry(registry) => serve_registry(registry, req).await,
            Target::Mirror(mirror) => match is_api_path(req.uri().path()) {
                true => mirror.serve(req).await,
                false => serve_registry(mirror.registry(), req).await,
            },
            Target::Redirect { to, status } => Ok(redirect(&req, &route.prefix, to, *status)),
            Target::Upstream(upstream) => {
                // Credentials checked here were wharf's: they never go upstream. Only a
                // public route (or a server without logins) passes them on untouched.
                let user = at.user.as_deref().filter(|_| route.forward_user);
                proxy::pass_identity(req.headers_mut(), logins, user);
                // The chain gets the peer appended, like nginx's
                // $proxy_add_x_forwarded_for; the resolved client is already in it.
                let fwd = proxy::Forwarded {
                    client_ip: conn.peer.ip(),
                    scheme: if conn.tls.is_some() { "https" } else { "http" },
                    host: host
                        .map(str::to_owned)
                        .unwrap_or_else(|| conn.local.to_string()),
                    route_prefix: route.prefix.clone(),
                };
                upstream
                    .forward(req, &fwd)
                    .await
                    .map_err(|e| respond::proxy_error(&e))
            }
        }
    }
}

impl Gateway {
    /// Authenticates, rate-limits and authorizes a request on `route` of `server`, noting
    /// the user in `at` and leaving in the request what the engine needs. Returns whether
    /// the server's logins applied, so that any credentials were wharf's.
    async fn admit(
        &self,
        req: &mut Request<Body>,
        server: usize,
        route: &Route,
        at: &mut Where,
    ) -> ApiResult<bool> {
        // A public route is outside the server's logins.
        let auth = self.auth[server].as_ref().filter(|_| !route.public);
        let registry = matches!(route.target, Target::Registry(_) | Target::Mirror(_));
        // Parsed once, and only when limits, access rules or the engine need it.
        let endpoint = match auth.is_some() || registry || !route.limits.is_empty() {
            true => endpoint_of(req, &route.target),
            false => Endpoint::default(),
        };
        let identity = match auth {
            Some(auth) => auth.authenticate(req.headers(), at.client).await?,
            None => None,
        };
        at.user = identity.as_ref().map(|i| i.user.clone());
        let facts = ratelimit::Facts {
            client: at.client,
            user: at.user.as_deref(),
            server,
            class: endpoint.class,
        };
        self.limits.check(&route.limits, &facts)?;
        if let Some(parsed) = endpoint.route {
            // The engine would parse the same path again.
            req.extensions_mut().insert(parsed);
        }
        if let (Some(auth), Some(guard)) = (auth, &endpoint.guard) {
            if auth.authorize(identity.as_ref(), guard)? == authz::MountDecision::Refused {
                drop_mount(req);
            }
        }
        if registry {
            let groups = match (auth, &identity) {
                (Some(auth), Some(identity)) => auth.groups_of(identity),
                _ => Vec::new(),
            };
            let caller = caller_of(req, at, groups);
            req.extensions_mut().insert(caller);
            self.check_delete(endpoint.guard.as_ref(), auth.is_some())?;
            // The engine lists nothing without a filter (it fails closed), so say what the
            // caller may see: the pullable repositories, or everything without logins.
            let visible = match auth {
                Some(auth) => auth.visibility(identity),
                None => access::Visibility(Arc::new(|_| true)),
            };
            req.extensions_mut().insert(visible);
        }
        Ok(auth.is_some())
    }

    /// Deletes are off unless granted, as on registry:2 (405 `UNSUPPORTED`): explicitly with
    /// `registry.delete = true`, or on a server with logins by access rules naming `delete`
    /// (already checked); `registry.delete = false` refuses them everywhere.
    fn check_delete(&self, guard: Option<&authz::Guard>, logins: bool) -> ApiResult<()> {
        let deleting = matches!(
            guard,
            Some(authz::Guard::Rules(Need::Repo {
                action: access::Action::Delete,
                ..
            }))
        );
        match (deleting, self.delete.unwrap_or(logins)) {
            (false, _) | (true, true) => Ok(()),
            (true, false) => Err(ApiError::new(
                Code::MethodNotAllowed,
                "deletes are disabled on this registry; set [registry] delete = true to allow them",
            )),
        }
    }
}

/// Who is asking, as the registry's operations (and their events) see it. Only cheap
/// clones: this runs for every registry request, manifest HEADs included. The host keeps
/// its port, as registry:2's events report it (`vhost::request_host` drops it to match
/// server names).
fn caller_of<B>(req: &Request<B>, at: &Where, groups: Vec<String>) -> Caller {
    let host = req.headers().get(http::header::HOST).cloned().or_else(|| {
        let authority = req.uri().authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    });
    Caller {
        user: at.user.clone(),
        groups,
        addr: Some(at.client),
        host,
        method: req.method().clone(),
        user_agent: req.headers().get(http::header::USER_AGENT).cloned(),
        request_id: RequestId::next(),
    }
}

impl Route {
    /// Whether this route serves a request with containerd's `?ns=` (`None`: without one).
    /// Mirrors answer for their own registry only, so an unknown `ns` falls through to the
    /// next route, or to 404, and containerd goes to the registry itself.
    fn takes_ns(&self, ns: Option<&str>) -> bool {
        match (&self.target, ns) {
            (Target::Mirror(m), Some(ns)) => m.ns() == ns,
            _ => true,
        }
    }
}

/// containerd's `?ns=docker.io` on requests to a `hosts.toml` mirror: the registry meant.
fn containerd_ns<B>(req: &Request<B>) -> Option<String> {
    let query = req.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "ns")
        .map(|(_, v)| v.into_owned())
}

fn is_api_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// Who asked, and which server and route the request reached (indexes into the gateway's
/// tables).
struct Where {
    client: IpAddr,
    server: Option<usize>,
    route: Option<usize>,
    user: Option<String>,
}

/// What the access rules and rate limits need to know of a request's endpoint.
#[derive(Default)]
struct Endpoint {
    guard: Option<authz::Guard>,
    class: Option<RequestClass>,
    route: Option<ApiRoute>,
}

/// Registry API paths (on any route kind) are guarded by the access rules and classed for
/// the rate limits; unparseable API paths count as the base endpoint, so probing them still
/// requires a login where one is needed, and they count as manifest requests. Docker's
/// search is a listing. Listings answered by an upstream cannot be filtered, so they are
/// refused. Other paths need a login, except the few the engine serves to anyone.
fn endpoint_of<B>(req: &Request<B>, target: &Target) -> Endpoint {
    let path = req.uri().path();
    let engine = matches!(target, Target::Registry(_) | Target::Mirror(_));
    let rules = |need: Need| match (need, engine) {
        (Need::Listing, false) => authz::Guard::Unfilterable,
        (need, _) => authz::Guard::Rules(need),
    };
    if path == "/v1/search" {
        return Endpoint {
            guard: Some(rules(Need::Listing)),
            class: Some(RequestClass::Manifests),
            route: None,
        };
    }
    if engine && wharf_api::is_api_path(path) {
        // Guarded like the registry API: a path that does not parse needs what `/v2/` does.
        let need =
            wharf_api::parse(path).map_or(Need::Base, |r| wharf_api::needed(&r, req.method()));
        return Endpoint {
            guard: Some(authz::Guard::Rules(need)),
            class: Some(RequestClass::Manifests),
            route: None,
        };
    }
    if path != "/v2" && !path.starts_with("/v2/") {
        let open = engine && matches!(path, "/" | "/healthz" | "/v1/_ping");
        return Endpoint {
            guard: Some(match open {
                true => authz::Guard::Open,
                false => authz::Guard::Login,
            }),
            class: None,
            route: None,
        };
    }
    let Ok(route) = crate::registry::route::parse(path) else {
        return Endpoint {
            guard: Some(rules(Need::Base)),
            class: Some(RequestClass::Manifests),
            route: None,
        };
    };
    let class = match route {
        ApiRoute::Blob(..) | ApiRoute::UploadStart(_) | ApiRoute::Upload(..) => RequestClass::Blobs,
        _ => RequestClass::Manifests,
    };
    Endpoint {
        guard: Some(rules(access::needed(
            &route,
            req.method(),
            req.uri().query(),
        ))),
        class: Some(class),
        // Only the engine uses the parsed route.
        route: engine.then_some(route),
    }
}

/// The size of a request's head as HTTP/1.1 writes it: request line, headers, blank line.
fn head_bytes<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len() + req.uri().to_string().len() + " HTTP/1.1\r\n ".len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len())
        .sum();
    line + headers + "\r\n".len()
}

/// Removes `mount` and `from` from an upload request, turning it into an ordinary upload.
fn drop_mount<B>(req: &mut Request<B>) {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .filter(|(k, _)| k != "mount" && k != "from"),
        )
        .finish();
    let path = req.uri().path();
    let pq = match query.is_empty() {
        true => path.to_owned(),
        false => format!("{path}?{query}"),
    };
    if let Ok(uri) = pq.parse() {
        *req.uri_mut() = uri;
    }
}

/// Applies a route's body limit: an announced length over it is refused at once (413); an
/// unannounced (chunked) body fails as soon as it passes the limit.
fn limit_body<B>(req: Request<B>, max: Option<u64>) -> ApiResult<Request<Body>>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let Some(max) = max else {
        return Ok(req.map(http_util::boxed));
    };
    let announced = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max) {
        return Err(ApiError::new(
            Code::BodyTooLarge,
            format!("the request body is over this route's {max}-byte limit"),
        ));
    }
    Ok(req.map(|b| http_util::limited(http_util::boxed(b), max)))
}

/// The embedded engine: the API under `/v2/`, plus the banner, `/healthz`, docker's `/v1/`
/// and wharf's own API under `/wharf/api/`.
async fn serve_registry<B>(registry: &Registry, req: Request<B>) -> ApiResult<Response<Body>>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let path = req.uri().path();
    if path == "/v2" || path.starts_with("/v2/") {
        return registry.handle(req.map(http_util::body_stream)).await;
    }
    if path.starts_with("/v1/") {
        return registry.handle_v1(&req.into_parts().0).await;
    }
    if wharf_api::is_api_path(path) {
        return registry.handle_wharf_api(req).await;
    }
    match path {
        "/" => Ok(respond::text(
            StatusCode::OK,
            "wharf container registry: the API is at /v2/\n",
        )),
        "/healthz" => match registry.healthy().await {
            true => Ok(respond::text(StatusCode::OK, "ok\n")),
            false => Err(ApiError::new(Code::Unavailable, "storage is not writable")),
        },
        _ => Err(ApiError::new(Code::NotFound, "not found")),
    }
}

/// A route's redirect: the target URL plus the rest of the path after the route prefix.
fn redirect<B>(req: &Request<B>, prefix: &str, to: &str, status: StatusCode) -> Response<Body> {
    let rest = req.uri().path().strip_prefix(prefix).unwrap_or("");
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let sep = if to.ends_with('/') || rest.is_empty() {
        ""
    } else {
        "/"
    };
    Reply::new(status)
        .header(LOCATION, format!("{to}{sep}{rest}{query}"))
        .header(http::header::CONTENT_LENGTH, 0)
        .empty()
}
