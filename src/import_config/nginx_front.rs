//! The nginx site in front of registry:2, as wharf's listeners and server blocks: `listen`,
//! `server_name`, `ssl_certificate`, `auth_basic`, `client_max_body_size`, `location`s
//! with `proxy_pass` (to the registry: a registry route; elsewhere: an upstream) or
//! `return 30x`, and servers that only redirect to https.

use super::nginx_parse::Directive;
use super::write::{Anchor, Note};
use crate::config::raw::{
    RawAuth, RawListener, RawProvider, RawRoute, RawRouteRegistry, RawServer, RawServerTls,
};

/// What the registry behind nginx contributes.
pub struct Registry {
    /// The port registry:2 listened on (`http.addr`), to recognise `proxy_pass` to it.
    pub port: Option<u16>,
    /// registry:2's own logins, for servers that route to it without nginx's.
    pub auth: Option<RawAuth>,
    /// Whether deletes are enabled: logins then grant them too, as on registry:2.
    pub delete: bool,
}

#[derive(Default)]
pub struct Front {
    pub listeners: Vec<RawListener>,
    pub servers: Vec<RawServer>,
    pub notes: Vec<Note>,
}

/// Directives wharf needs nothing for, and why.
const NOT_NEEDED: &[(&str, &str)] = &[
    (
        "proxy_set_header",
        "wharf sets X-Forwarded-* for upstreams, and its own registry needs no header fix-ups",
    ),
    ("proxy_http_version", "wharf speaks HTTP/1.1 to upstreams"),
    ("proxy_request_buffering", "wharf streams request bodies"),
    ("proxy_buffering", "wharf streams responses"),
    (
        "chunked_transfer_encoding",
        "wharf streams request bodies, chunked or not",
    ),
    ("client_body_buffer_size", "wharf streams request bodies"),
    (
        "proxy_read_timeout",
        "the built-in registry needs no proxy timeouts",
    ),
    (
        "proxy_send_timeout",
        "the built-in registry needs no proxy timeouts",
    ),
    (
        "proxy_connect_timeout",
        "the built-in registry needs no proxy timeouts",
    ),
    ("proxy_redirect", "wharf's Location headers are relative"),
    (
        "add_header",
        "wharf sends Docker-Distribution-Api-Version on every /v2/ response",
    ),
    (
        "more_set_headers",
        "wharf sends Docker-Distribution-Api-Version on every /v2/ response",
    ),
    ("ssl_protocols", "wharf allows TLS 1.2 and 1.3 only"),
    ("ssl_ciphers", "wharf uses rustls' safe cipher suites"),
    (
        "ssl_prefer_server_ciphers",
        "wharf uses rustls' safe cipher suites",
    ),
    ("ssl_ecdh_curve", "wharf uses rustls' safe key exchanges"),
    ("ssl_dhparam", "wharf uses rustls' safe key exchanges"),
    ("ssl_session_cache", "wharf resumes TLS sessions by itself"),
    (
        "ssl_session_timeout",
        "wharf resumes TLS sessions by itself",
    ),
    (
        "ssl_session_tickets",
        "wharf resumes TLS sessions by itself",
    ),
    ("ssl", "the listener's tls = \"on\" says it"),
    ("http2", "wharf speaks HTTP/2 over TLS by itself (ALPN)"),
    (
        "access_log",
        "wharf writes one access line per request to stderr (log.access names a file)",
    ),
    ("error_log", "wharf logs to stderr"),
    (
        "if",
        "the user-agent check for docker clients before 1.6 (none exist any more)",
    ),
    (
        "keepalive_timeout",
        "wharf's limits.keepalive_timeout (75s) does this",
    ),
    ("server_tokens", "wharf sends no Server header"),
];

fn note(notes: &mut Vec<Note>, at: Anchor, text: String) {
    notes.push(Note { at, text });
}

/// A `listen` directive: the address wharf binds, TLS, and `default_server`.
struct Listen {
    address: String,
    ssl: bool,
    default: bool,
}

fn listen(d: &Directive) -> Result<Listen, String> {
    let first = d
        .args
        .first()
        .ok_or_else(|| format!("line {}: `listen` without an address", d.line))?;
    let address = if first.bytes().all(|b| b.is_ascii_digit()) {
        format!("0.0.0.0:{first}")
    } else if let Some(port) = first.strip_prefix("*:") {
        format!("0.0.0.0:{port}")
    } else if let Some(port) = first.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        first.clone()
    };
    if address.parse::<std::net::SocketAddr>().is_err() {
        return Err(format!("line {}: `listen {first}` is not an address wharf can listen on (use an IP address and port)", d.line));
    }
    let flag = |f: &str| d.args[1..].iter().any(|a| a == f);
    Ok(Listen {
        address,
        ssl: flag("ssl"),
        default: flag("default_server") || flag("default"),
    })
}

/// nginx sizes: `0` (no limit), `1024`, `16k`, `100m`, `1g`.
fn size(s: &str) -> Option<u64> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().ok()?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    Some(n * mult)
}

/// A `return 30x URL` as a redirect target (without `$request_uri`, which wharf appends).
fn redirect(d: &Directive) -> Option<(u16, String)> {
    let code: u16 = d.args.first()?.parse().ok()?;
    let url = d.args.get(1)?;
    let url = url
        .strip_suffix("$request_uri")
        .or_else(|| url.strip_suffix("$uri"))
        .unwrap_or(url);
    ([301, 302, 303, 307, 308].contains(&code)).then(|| (code, url.to_owned()))
}

pub fn convert(top: &[Directive], registry: &Registry) -> Result<Front, String> {
    let mut front = Front::default();
    let mut upstreams: Vec<(String, Vec<String>)> = Vec::new();
    let mut servers: Vec<&Directive> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    collect(top, &mut upstreams, &mut servers, &mut skipped);
    if !skipped.is_empty() {
        note(&mut front.notes, Anchor::Top, format!("nginx's global settings are not carried over (wharf has its own process model and limits): {}", skipped.join(", ")));
    }
    let mut tls_ports: Vec<u16> = Vec::new();
    let mut redirect_listens: Vec<Listen> = Vec::new();
    for s in &servers {
        let listens = s
            .children()
            .iter()
            .filter(|d| d.name == "listen")
            .map(listen)
            .collect::<Result<Vec<_>, _>>()?;
        if is_redirect_only(s) {
            redirect_listens.extend(listens);
            note(&mut front.notes, Anchor::Listeners, format!("nginx's server at line {} only redirected to https: wharf redirects plain HTTP on port 80 by itself when a TLS listener exists", s.line));
            continue;
        }
        for l in &listens {
            add_listener(&mut front, l, &mut tls_ports);
        }
        let i = front.servers.len();
        let server = server_block(s, &listens, i, &upstreams, registry, &mut front)?;
        front.servers.push(server);
    }
    for l in redirect_listens {
        add_listener(&mut front, &l, &mut tls_ports);
        let port: u16 = l
            .address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(80);
        if let Some(last) = front.listeners.iter_mut().find(|x| x.address == l.address) {
            if port != 80 || tls_ports.first().is_some_and(|p| *p != 443) {
                last.plain = Some("redirect".into());
                last.redirect_port = tls_ports.first().map(|p| i64::from(*p));
            }
        }
    }
    if !front.servers.iter().any(|s| s.default == Some(true)) {
        if let Some(first) = front.servers.first_mut() {
            first.default = Some(true);
        }
    }
    ipv6_pairs(&mut front);
    Ok(front)
}

fn collect<'a>(
    ds: &'a [Directive],
    upstreams: &mut Vec<(String, Vec<String>)>,
    servers: &mut Vec<&'a Directive>,
    skipped: &mut Vec<String>,
) {
    for d in ds {
        match d.name.as_str() {
            "http" => collect(d.children(), upstreams, servers, skipped),
            "server" if d.block.is_some() => servers.push(d),
            "upstream" => {
                let targets = d
                    .children()
                    .iter()
                    .filter(|s| s.name == "server")
                    .filter_map(|s| s.args.first().cloned())
                    .collect();
                upstreams.push((d.args.first().cloned().unwrap_or_default(), targets));
            }
            _ => skipped.push(format!("`{}` (line {})", d.name, d.line)),
        }
    }
}

fn is_redirect_only(s: &Directive) -> bool {
    let to_https = |d: &Directive| {
        d.name == "return" && redirect(d).is_some_and(|(_, url)| url.starts_with("https://"))
    };
    let direct = s.children().iter().any(to_https);
    let in_root = s.children().iter().any(|d| {
        d.name == "location"
            && d.args.last().is_some_and(|p| p == "/")
            && d.children().iter().any(to_https)
    });
    let proxies = s
        .children()
        .iter()
        .any(|d| d.name == "location" && d.children().iter().any(|c| c.name == "proxy_pass"));
    (direct || in_root) && !proxies
}

fn add_listener(front: &mut Front, l: &Listen, tls_ports: &mut Vec<u16>) {
    if l.ssl {
        if let Some(port) = l.address.rsplit(':').next().and_then(|p| p.parse().ok()) {
            if !tls_ports.contains(&port) {
                tls_ports.push(port);
            }
        }
    }
    match front.listeners.iter_mut().find(|x| x.address == l.address) {
        Some(x) if l.ssl => x.tls = Some("on".into()),
        Some(_) => {}
        None => front.listeners.push(RawListener {
            address: l.address.clone(),
            tls: l.ssl.then(|| "on".to_owned()),
            plain: None,
            redirect_port: None,
        }),
    }
}

/// `listen 443` and `listen [::]:443` side by side: on Linux wharf's `[::]:443` already
/// takes IPv4 too, so binding both would fail. Keep the IPv4 one and say so.
fn ipv6_pairs(front: &mut Front) {
    let v4: Vec<String> = front
        .listeners
        .iter()
        .filter_map(|l| l.address.strip_prefix("0.0.0.0:").map(str::to_owned))
        .collect();
    let mut dropped = Vec::new();
    front
        .listeners
        .retain(|l| match l.address.strip_prefix("[::]:") {
            Some(port) if v4.iter().any(|p| p == port) => {
                dropped.push((l.address.clone(), port.to_owned()));
                false
            }
            _ => true,
        });
    for (a, port) in dropped {
        note(&mut front.notes, Anchor::Listeners, format!("nginx also listened on {a}: wharf binds 0.0.0.0:{port} for IPv4; to serve IPv6 as well, change that address to \"{a}\", which takes both on Linux"));
    }
}

/// One nginx `server` as a wharf server block.
fn server_block(
    s: &Directive,
    listens: &[Listen],
    i: usize,
    upstreams: &[(String, Vec<String>)],
    registry: &Registry,
    front: &mut Front,
) -> Result<RawServer, String> {
    let at = Anchor::Server(i);
    let mut server = RawServer::default();
    let (mut cert, mut key, mut max_body, mut realm, mut users) = (None, None, None, None, None);
    let mut not_needed: Vec<String> = Vec::new();
    for d in s.children() {
        match d.name.as_str() {
            "listen" | "location" => {}
            "server_name" => {
                for n in &d.args {
                    match n.as_str() {
                        "_" | "" => {}
                        n if n.starts_with('~') => note(&mut front.notes, at.clone(), format!("server_name {n} (line {}): regular expressions are not supported; list the names", d.line)),
                        n => match n.strip_prefix('.') {
                            // nginx's `.example.com` is example.com and *.example.com.
                            Some(base) => server.names.extend([base.to_owned(), format!("*.{base}")]),
                            None => server.names.push(n.to_owned()),
                        },
                    }
                }
            }
            "ssl_certificate" => cert = d.args.first().cloned(),
            "ssl_certificate_key" => key = d.args.first().cloned(),
            "client_max_body_size" => max_body = d.args.first().and_then(|a| size(a)),
            "auth_basic" => realm = d.args.first().cloned(),
            "auth_basic_user_file" => users = d.args.first().cloned(),
            other => match NOT_NEEDED.iter().find(|(n, _)| *n == other) {
                Some((n, why)) => not_needed.push(format!("{n} ({why})")),
                None => note(
                    &mut front.notes,
                    at.clone(),
                    format!(
                        "NOT CARRIED OVER: `{}` (line {}): wharf has no equivalent",
                        d.text(),
                        d.line
                    ),
                ),
            },
        }
    }
    let taken_names: Vec<&String> = front.servers.iter().flat_map(|o| &o.names).collect();
    server.names.retain(|n| !taken_names.contains(&n));
    let default_taken = front.servers.iter().any(|o| o.default == Some(true));
    // nginx's first server of an address is its default too; `convert` makes the first
    // server the default when none says so.
    if (listens.iter().any(|l| l.default) || server.names.is_empty()) && !default_taken {
        server.default = Some(true);
    }
    if server.names.is_empty() && server.default.is_none() {
        return Err(format!("line {}: this server has no names of its own left and another server is the default; give it a server_name", s.line));
    }
    if let (Some(cert), Some(key)) = (cert, key) {
        server.tls = Some(RawServerTls {
            cert: Some(cert),
            key: Some(key),
            self_signed: None,
        });
    }
    // Which routes nginx asked logins for: all of them with auth_basic on the server.
    let server_logins = realm.as_deref().is_some_and(|r| r != "off") && users.is_some();
    let mut covered = Vec::new();
    for d in s.children().iter().filter(|d| d.name == "location") {
        if let Some((route, own)) = location(
            d,
            upstreams,
            registry,
            &at,
            &mut not_needed,
            &mut front.notes,
        ) {
            if let Some(Some((r, u))) = &own {
                realm = realm.or(Some(r.clone()));
                users = users.or(Some(u.clone()));
            }
            covered.push(matches!(own, Some(Some(_))) || (server_logins && own.is_none()));
            server.route.push(route);
        }
    }
    for r in &mut server.route {
        r.max_body_bytes = r.max_body_bytes.or(max_body).filter(|b| *b > 0);
    }
    server.auth = auth(realm, users, registry, &server, &at, &mut front.notes);
    if server.auth.is_some() {
        // wharf's logins cover the whole server: what nginx did not protect (registry:2
        // checked its own logins) stays open as a public route.
        for (r, covered) in server.route.iter_mut().zip(covered) {
            if !covered && r.registry.is_none() && r.public.is_none() {
                r.public = Some(true);
            }
        }
    }
    if !not_needed.is_empty() {
        not_needed.sort();
        not_needed.dedup();
        note(
            &mut front.notes,
            at,
            format!("Not needed from nginx:\n{}", not_needed.join("\n")),
        );
    }
    Ok(server)
}

/// The server's logins: nginx's `auth_basic`, else registry:2's htpasswd when the server
/// routes to the registry.
fn auth(
    realm: Option<String>,
    users: Option<String>,
    registry: &Registry,
    server: &RawServer,
    at: &Anchor,
    notes: &mut Vec<Note>,
) -> Option<RawAuth> {
    let mut actions = vec!["pull".to_owned(), "push".to_owned()];
    if registry.delete {
        actions.push("delete".into());
    }
    match (realm.filter(|r| r != "off"), users) {
        (Some(realm), Some(users)) => {
            note(notes, at.clone(), "Logins from nginx's auth_basic. wharf reads bcrypt entries only (`htpasswd -B`, as registry:2 requires);\nit names any other (MD5 `$apr1$`, crypt) at start-up: re-create those with `wharf htpasswd FILE USER`.".into());
            Some(RawAuth {
                realm: Some(realm),
                providers: vec![RawProvider {
                    htpasswd: Some(users),
                    ldap: None,
                }],
                access: vec![crate::config::raw::RawAccessRule {
                    repos: "*".into(),
                    who: vec!["authenticated".into()],
                    actions,
                }],
                ..RawAuth::default()
            })
        }
        _ if server.route.iter().any(|r| r.registry.is_some()) => {
            registry.auth.as_ref().map(super::clone_auth)
        }
        _ => None,
    }
}

/// A `location` as a route, with its own `auth_basic` when it has one (`Some(None)`: off).
#[allow(clippy::type_complexity)]
fn location(
    d: &Directive,
    upstreams: &[(String, Vec<String>)],
    registry: &Registry,
    at: &Anchor,
    not_needed: &mut Vec<String>,
    notes: &mut Vec<Note>,
) -> Option<(RawRoute, Option<Option<(String, String)>>)> {
    let path = match d.args.as_slice() {
        [p] => p.clone(),
        [m, p] if m == "^~" || m == "=" => p.clone(),
        _ => {
            note(notes, at.clone(), format!("NOT CARRIED OVER: `location {}` (line {}): regular-expression locations are not supported; use path prefixes", d.args.join(" "), d.line));
            return None;
        }
    };
    let mut route = RawRoute {
        path: path.clone(),
        registry: None,
        upstream: None,
        upstream_timeout: None,
        redirect: None,
        redirect_status: None,
        max_body_bytes: None,
        rate_limits: Vec::new(),
        public: None,
        forward_user: None,
        mirror: None,
        ca_file: None,
        username: None,
        password_file: None,
        tag_ttl: None,
        ns: None,
        push_to_local: None,
        root: None,
        cache_max_age: None,
        cache_max_size: None,
    };
    let (mut realm, mut users, mut auth_off) = (None, None, false);
    for c in d.children() {
        match c.name.as_str() {
            "proxy_pass" => {
                let url = c.args.first().cloned().unwrap_or_default();
                match upstream_target(&url, &path, upstreams, registry) {
                    Target::Registry => route.registry = Some(RawRouteRegistry::default()),
                    Target::Upstream(u) => route.upstream = Some(u),
                    Target::Unsupported(why) => {
                        note(notes, at.clone(), format!("NOT CARRIED OVER: `location {path}` (line {}): {why}", d.line));
                        return None;
                    }
                }
            }
            "return" => match redirect(c) {
                Some((code, url)) if !url.contains('$') => {
                    route.redirect = Some(url);
                    route.redirect_status = Some(code);
                }
                _ => {
                    note(notes, at.clone(), format!("NOT CARRIED OVER: `location {path}` (line {}): `{}` (wharf routes redirect to fixed URLs)", d.line, c.text()));
                    return None;
                }
            },
            "client_max_body_size" => route.max_body_bytes = c.args.first().and_then(|a| size(a)),
            "proxy_read_timeout" if route.registry.is_none() => route.upstream_timeout = c.args.first().map(|t| if t.bytes().all(|b| b.is_ascii_digit()) { format!("{t}s") } else { t.clone() }),
            "auth_basic" if c.args.first().is_some_and(|a| a == "off") => auth_off = true,
            "auth_basic" => realm = c.args.first().cloned(),
            "auth_basic_user_file" => users = c.args.first().cloned(),
            other => match NOT_NEEDED.iter().find(|(n, _)| *n == other) {
                Some((n, why)) => not_needed.push(format!("{n} ({why})")),
                None => note(notes, at.clone(), format!("NOT CARRIED OVER: `{}` in location {path} (line {}): wharf has no equivalent", c.text(), c.line)),
            },
        }
    }
    if route.registry.is_some() {
        route.upstream_timeout = None;
    }
    if route.registry.is_none() && route.upstream.is_none() && route.redirect.is_none() {
        note(
            notes,
            at.clone(),
            format!(
                "NOT CARRIED OVER: `location {path}` (line {}): it neither proxies nor redirects",
                d.line
            ),
        );
        return None;
    }
    if auth_off {
        if route.registry.is_some() {
            note(notes, at.clone(), format!("`auth_basic off` on location {path} (line {}): the registry's openness is set by access rules (who = [\"anonymous\"])", d.line));
        } else {
            route.public = Some(true);
        }
    }
    let auth = match (auth_off, realm, users) {
        (true, _, _) => Some(None),
        (false, Some(r), Some(u)) => Some(Some((r, u))),
        _ => None,
    };
    Some((route, auth))
}

enum Target {
    Registry,
    Upstream(String),
    Unsupported(String),
}

/// Where a `proxy_pass` goes: the registry (an upstream of registry:2's port, or the
/// location of the API itself), or another HTTP server.
fn upstream_target(
    url: &str,
    path: &str,
    upstreams: &[(String, Vec<String>)],
    registry: &Registry,
) -> Target {
    let Some(rest) = url.strip_prefix("http://") else {
        return Target::Unsupported(format!(
            "proxy_pass {url}: wharf's upstreams are http:// URLs"
        ));
    };
    let (host, url_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let servers: Vec<String> = match upstreams.iter().find(|(n, _)| n == host) {
        Some((_, s)) => s.clone(),
        None => vec![host.to_owned()],
    };
    let port_of = |s: &str| s.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
    let to_registry = servers
        .iter()
        .any(|s| port_of(s).is_some_and(|p| Some(p) == registry.port))
        || path.trim_end_matches('/') == "/v2";
    if to_registry {
        return Target::Registry;
    }
    let Some(first) = servers.first() else {
        return Target::Unsupported(format!("proxy_pass {url}: the upstream has no servers"));
    };
    if upstreams.iter().any(|(n, s)| n == host && s.len() > 1) {
        return Target::Unsupported(format!(
            "proxy_pass {url}: upstream {host} has several servers; wharf proxies to one"
        ));
    }
    // nginx keeps the location's path when proxy_pass has none; wharf replaces the route's
    // prefix by the upstream URL's path.
    let upstream_path = if url_path.is_empty() { path } else { url_path };
    Target::Upstream(format!("http://{first}{upstream_path}"))
}
