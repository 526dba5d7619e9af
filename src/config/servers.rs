//! Validation of `[[listener]]` and `[[server]]` blocks: virtual hosts, their certificates
//! and their routes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::names::ServerName;
use super::rate_limits::attached;
use super::raw::{RawListener, RawRoute, RawServer};
use super::{
    Check, ConfigError, ListenerConfig, PlainMode, RateLimitConfig, TlsMode, DEFAULT_LIMITS,
};

/// A virtual host.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// How the server is named in logs and metrics: its first name, or "default".
    pub label: String,
    pub names: Vec<ServerName>,
    /// Requests for names no server claims go to the default server.
    pub default: bool,
    pub tls: Option<ServerTls>,
    /// Sorted longest prefix first, so the first match is the most specific.
    pub routes: Vec<RouteConfig>,
    /// Logins and access rules; `None` means everyone may do everything.
    pub auth: Option<super::AuthConfig>,
    /// The web UI under `/ui/`, showing the registry that `/v2/` reaches.
    pub ui: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerTls {
    /// A certificate chain and its key, as PEM files.
    Files { cert: PathBuf, key: PathBuf },
    /// A leaf issued at start-up by wharf's CA (created once if missing) for the server's
    /// names; restarts reuse it.
    SelfSigned,
}

#[derive(Clone, Debug)]
pub struct RouteConfig {
    /// A path prefix such as `/` or `/mirror/`.
    pub prefix: String,
    pub target: RouteTarget,
    /// Larger request bodies get 413. `None` (the default) means no limit, so big layers
    /// never hit an nginx-style 413.
    pub max_body_bytes: Option<u64>,
    /// Names of the rate limits that apply: the server's, then the route's own.
    pub rate_limits: Vec<String>,
    /// `public = true`: on a server with logins, this route is outside them; no login is
    /// asked for or checked, and the `Authorization` header is the upstream's business.
    /// Only upstream and redirect routes may be public (a registry's own openness is said
    /// by access rules naming `anonymous`).
    pub public: bool,
    /// `forward_user = true` (upstream routes of servers with logins): the verified user's
    /// name goes upstream as `X-Forwarded-User`.
    pub forward_user: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// The embedded registry engine on a storage root. Routes naming the same root share
    /// one engine.
    Registry { root: PathBuf },
    /// Another HTTP(S) server, like nginx `proxy_pass`; https trusts the system's roots
    /// plus `ca_file`.
    Upstream {
        url: http::Uri,
        timeout: Duration,
        ca_file: Option<PathBuf>,
    },
    /// A pull-through cache of another registry, on a storage root (`mirror` module).
    Mirror(Box<super::MirrorConfig>),
    /// An HTTP redirect to this URL prefix (the rest of the path is appended).
    Redirect { to: String, status: u16 },
}

impl RouteTarget {
    /// The storage root an engine must be opened on for this route, if any.
    pub fn root(&self) -> Option<&Path> {
        match self {
            RouteTarget::Registry { root } => Some(root),
            RouteTarget::Mirror(m) => Some(&m.root),
            RouteTarget::Upstream { .. } | RouteTarget::Redirect { .. } => None,
        }
    }
}

/// The server for a host name (no port): the best name match, else the default server,
/// else none. The TLS handshake (by SNI) and request routing (by `Host`) both use this.
pub fn find_server(servers: &[ServerConfig], host: &str) -> Option<usize> {
    super::names::best_match(
        host,
        servers.iter().enumerate().map(|(i, s)| (i, &s.names[..])),
    )
    .or_else(|| servers.iter().position(|s| s.default))
}

pub fn validate(
    check: &Check<'_>,
    raw: &[RawServer],
    default_root: &Path,
    limits: &[RateLimitConfig],
) -> Result<Vec<ServerConfig>, ConfigError> {
    let defaults: Vec<String> = DEFAULT_LIMITS.map(String::from).to_vec();
    if raw.is_empty() {
        return Ok(vec![ServerConfig {
            label: "default".into(),
            names: Vec::new(),
            default: true,
            tls: None,
            routes: vec![RouteConfig {
                prefix: "/".into(),
                target: RouteTarget::Registry {
                    root: default_root.to_owned(),
                },
                max_body_bytes: None,
                rate_limits: defaults,
                public: false,
                forward_user: false,
            }],
            auth: None,
            ui: true,
        }]);
    }
    let mut servers: Vec<ServerConfig> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let key = |k: &str| format!("server[{i}].{k}");
        let mut names = Vec::new();
        for n in &s.names {
            let name = ServerName::parse(n).map_err(|why| {
                check.invalid(
                    key("names"),
                    why,
                    "use names like \"registry.example.com\", \"*.example.com\" or \"10.0.0.5\"",
                )
            })?;
            if let Some(j) = servers.iter().position(|o| o.names.contains(&name)) {
                return Err(check.invalid(
                    key("names"),
                    format!("{n:?} is already a name of server[{j}]"),
                    "give each name to one server block only",
                ));
            }
            names.push(name);
        }
        let default = s.default.unwrap_or(false);
        if default {
            if let Some(j) = servers.iter().position(|o| o.default) {
                return Err(check.invalid(
                    key("default"),
                    format!("server[{j}] is already the default server"),
                    "mark one server block as default = true",
                ));
            }
        }
        if names.is_empty() && !default {
            return Err(check.invalid(
                key("names"),
                "is empty, so no request can reach this server",
                "list its names, or set default = true",
            ));
        }
        let tls = match &s.tls {
            None => None,
            Some(t) => Some(server_tls(
                check,
                i,
                t.cert.as_deref(),
                t.key.as_deref(),
                t.self_signed.unwrap_or(false),
            )?),
        };
        if matches!(tls, Some(ServerTls::SelfSigned)) && names.is_empty() {
            return Err(check.invalid(
                key("tls.self_signed"),
                "needs names to put in the certificate",
                "list the server's host names and IPs in names",
            ));
        }
        let server_limits = attached(
            check,
            &key("rate_limits"),
            s.rate_limits.as_deref().unwrap_or(&defaults),
            limits,
        )?;
        let routes = routes(check, i, &s.route, default_root, &server_limits, limits)?;
        let auth = s
            .auth
            .as_ref()
            .map(|a| super::auth::validate(check, i, a))
            .transpose()?;
        if let (None, Some(j)) = (
            &auth,
            s.route.iter().position(|r| r.forward_user == Some(true)),
        ) {
            return Err(check.invalid(
                format!("server[{i}].route[{j}].forward_user"),
                "is set on a server without logins, so there is no user to forward",
                "add [server.auth] to the server, or remove forward_user",
            ));
        }
        let ui = super::ui::enabled(check, i, s.ui, &routes)?;
        let label = names
            .first()
            .map(ToString::to_string)
            .unwrap_or_else(|| "default".into());
        servers.push(ServerConfig {
            label,
            names,
            default,
            tls,
            routes,
            auth,
            ui,
        });
    }
    Ok(servers)
}

fn server_tls(
    check: &Check<'_>,
    i: usize,
    cert: Option<&str>,
    key: Option<&str>,
    self_signed: bool,
) -> Result<ServerTls, ConfigError> {
    let k = |f: &str| format!("server[{i}].tls.{f}");
    match (cert, key, self_signed) {
        (None, None, true) => Ok(ServerTls::SelfSigned),
        (Some(_), _, true) | (_, Some(_), true) => Err(check.invalid(
            k("self_signed"),
            "is set together with cert/key",
            "use either cert and key files, or self_signed = true",
        )),
        (Some(cert), Some(key), false) => {
            for (field, path) in [("cert", cert), ("key", key)] {
                if !Path::new(path).is_file() {
                    return Err(check.invalid(
                        k(field),
                        format!("names {path:?}, which does not exist"),
                        "point it at a PEM file, or make one with `wharf cert issue NAME`",
                    ));
                }
            }
            Ok(ServerTls::Files {
                cert: cert.into(),
                key: key.into(),
            })
        }
        (None, None, false) => Err(check.invalid(
            format!("server[{i}].tls"),
            "has neither cert/key nor self_signed",
            "set cert and key, or self_signed = true",
        )),
        (Some(_), None, false) => Err(check.invalid(
            k("key"),
            "is missing",
            "set key to the certificate's private key file",
        )),
        (None, Some(_), false) => Err(check.invalid(
            k("cert"),
            "is missing",
            "set cert to the certificate chain file",
        )),
    }
}

fn routes(
    check: &Check<'_>,
    i: usize,
    raw: &[RawRoute],
    default_root: &Path,
    server_limits: &[String],
    limits: &[RateLimitConfig],
) -> Result<Vec<RouteConfig>, ConfigError> {
    if raw.is_empty() {
        return Ok(vec![RouteConfig {
            prefix: "/".into(),
            target: RouteTarget::Registry {
                root: default_root.to_owned(),
            },
            max_body_bytes: None,
            rate_limits: server_limits.to_vec(),
            public: false,
            forward_user: false,
        }]);
    }
    let mut routes: Vec<RouteConfig> = Vec::new();
    for (j, r) in raw.iter().enumerate() {
        let key = |k: &str| format!("server[{i}].route[{j}].{k}");
        if !r.path.starts_with('/') {
            return Err(check.invalid(
                key("path"),
                format!("is {:?}", r.path),
                "start it with \"/\"",
            ));
        }
        let targets = [
            r.registry.is_some(),
            r.upstream.is_some(),
            r.redirect.is_some(),
            r.mirror.is_some(),
        ];
        if targets.iter().filter(|t| **t).count() != 1 {
            return Err(check.invalid(
                format!("server[{i}].route[{j}]"),
                "must have exactly one of registry, upstream, mirror or redirect",
                "keep one target per route",
            ));
        }
        if let (None, Some(k)) = (&r.mirror, super::mirror::mirror_only_keys(r)) {
            return Err(check.invalid(
                key(k),
                "is set on a route that is not a mirror",
                "remove it, or use it on a route with mirror = \"https://...\"",
            ));
        }
        let target = if let Some(url) = &r.mirror {
            let m = super::mirror::validate(check, &key, r, url, default_root)?;
            // Mirrors of different registries may share a path: containerd's `?ns=` picks.
            let clash = routes.iter().any(|o| match &o.target {
                _ if o.prefix != r.path => false,
                RouteTarget::Mirror(other) => other.ns == m.ns,
                _ => true,
            });
            if clash {
                return Err(repeats(check, &key, &r.path));
            }
            RouteTarget::Mirror(Box::new(m))
        } else if routes.iter().any(|o| o.prefix == r.path) {
            return Err(repeats(check, &key, &r.path));
        } else if let Some(reg) = &r.registry {
            RouteTarget::Registry {
                root: reg
                    .root
                    .as_deref()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| default_root.to_owned()),
            }
        } else if let Some(url) = &r.upstream {
            let uri: http::Uri = url.parse().map_err(|_| {
                check.invalid(
                    key("upstream"),
                    format!("{url:?} is not a URL"),
                    "write it like \"http://10.0.0.5:5000\"",
                )
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
                return Err(check.invalid(
                    key("upstream"),
                    format!("{url:?} is not an http:// or https:// URL"),
                    "write it like \"http://10.0.0.5:5000\" or \"https://app.internal\"",
                ));
            }
            let timeout = check.duration(
                &key("upstream_timeout"),
                r.upstream_timeout.as_deref(),
                Duration::from_secs(60),
            )?;
            let ca_file = super::mirror::ca_file(check, &key, r.ca_file.as_deref())?;
            RouteTarget::Upstream {
                url: uri,
                timeout,
                ca_file,
            }
        } else {
            if r.ca_file.is_some() {
                return Err(check.invalid(
                    key("ca_file"),
                    "is set on a route that does not connect anywhere",
                    "remove it; ca_file is for upstream and mirror routes",
                ));
            }
            let to = r.redirect.clone().unwrap_or_default();
            let status = r.redirect_status.unwrap_or(308);
            if ![301, 302, 303, 307, 308].contains(&status) {
                return Err(check.invalid(
                    key("redirect_status"),
                    format!("is {status}"),
                    "use 301, 302, 303, 307 or 308",
                ));
            }
            RouteTarget::Redirect { to, status }
        };
        let mut rate_limits = server_limits.to_vec();
        for name in attached(check, &key("rate_limits"), &r.rate_limits, limits)? {
            if !rate_limits.contains(&name) {
                rate_limits.push(name);
            }
        }
        let (public, forward_user) = (r.public.unwrap_or(false), r.forward_user.unwrap_or(false));
        route_access(check, &key, &target, public, forward_user)?;
        routes.push(RouteConfig {
            prefix: r.path.clone(),
            target,
            max_body_bytes: r.max_body_bytes,
            rate_limits,
            public,
            forward_user,
        });
    }
    // Stable: mirrors sharing a path keep their order, and the first one serves requests
    // without `?ns=`.
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(routes)
}

fn repeats(check: &Check<'_>, key: &dyn Fn(&str) -> String, path: &str) -> ConfigError {
    check.invalid(
        key("path"),
        format!("{path:?} repeats an earlier route"),
        "give each route its own path (mirrors of different registries may share one)",
    )
}

/// Checks `public` and `forward_user` against the route's target.
fn route_access(
    check: &Check<'_>,
    key: &dyn Fn(&str) -> String,
    target: &RouteTarget,
    public: bool,
    forward_user: bool,
) -> Result<(), ConfigError> {
    let upstream = matches!(target, RouteTarget::Upstream { .. });
    if public
        && matches!(
            target,
            RouteTarget::Registry { .. } | RouteTarget::Mirror(_)
        )
    {
        return Err(check.invalid(
            key("public"),
            "is set on a registry or mirror route, whose openness the access rules decide",
            "remove it and open repositories with a rule like { repos = \"public/*\", who = [\"anonymous\"], actions = [\"pull\"] }",
        ));
    }
    if forward_user && !upstream {
        return Err(check.invalid(
            key("forward_user"),
            "is set on a route that is not an upstream",
            "remove it, or use it on an upstream route",
        ));
    }
    if forward_user && public {
        return Err(check.invalid(
            key("forward_user"),
            "is set on a public route, where nobody logs in",
            "remove public = true or forward_user",
        ));
    }
    Ok(())
}

pub fn listeners(
    check: &Check<'_>,
    raw: &[RawListener],
    servers: &[ServerConfig],
) -> Result<Vec<ListenerConfig>, ConfigError> {
    let mut out: Vec<ListenerConfig> = Vec::new();
    let any_tls = raw
        .iter()
        .any(|l| matches!(l.tls.as_deref(), Some("on" | "auto")));
    for (i, l) in raw.iter().enumerate() {
        let key = |k: &str| format!("listener[{i}].{k}");
        let address = check.socket_addr(
            &key("address"),
            &l.address,
            "\"0.0.0.0:5000\" or \"[::]:5000\"",
        )?;
        // Port 0 asks the OS for a free port each time, so it may repeat.
        if address.port() != 0 && out.iter().any(|x| x.address == address) {
            return Err(check.invalid(
                key("address"),
                format!("repeats {address}"),
                "give each listener its own address",
            ));
        }
        let tls = match l.tls.as_deref() {
            None | Some("off") => TlsMode::Off,
            Some("on") => TlsMode::On,
            Some("auto") => TlsMode::Auto,
            Some(other) => {
                return Err(check.invalid(
                    key("tls"),
                    format!("is {other:?}"),
                    "use \"off\", \"on\" or \"auto\"",
                ))
            }
        };
        if tls != TlsMode::Off && !servers.iter().any(|s| s.tls.is_some()) {
            return Err(check.invalid(
                key("tls"),
                "is on, but no server block has a certificate",
                "add tls = { cert = ..., key = ... } or tls = { self_signed = true } to a [[server]]",
            ));
        }
        let port = match l.redirect_port {
            None => 443,
            Some(p) => u16::try_from(p).ok().filter(|p| *p != 0).ok_or_else(|| {
                check.invalid(
                    key("redirect_port"),
                    format!("is {p}: port out of range (1 to 65535)"),
                    "name the port clients reach the TLS listener on, like 443 or 8443",
                )
            })?,
        };
        // Port 80 next to a TLS listener is the browser entrance: redirect by default.
        let plain = match l.plain.as_deref() {
            None if address.port() == 80 && any_tls && tls == TlsMode::Off => {
                PlainMode::Redirect { port }
            }
            None | Some("serve") => PlainMode::Serve,
            Some("redirect") => PlainMode::Redirect { port },
            Some(other) => {
                return Err(check.invalid(
                    key("plain"),
                    format!("is {other:?}"),
                    "use \"serve\" or \"redirect\"",
                ))
            }
        };
        out.push(ListenerConfig {
            address,
            tls,
            plain,
        });
    }
    if out.is_empty() {
        out.push(ListenerConfig {
            address: SocketAddr::from(([0, 0, 0, 0], 5000)),
            tls: TlsMode::Off,
            plain: PlainMode::Serve,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, PlainMode, RouteTarget, ServerTls, TlsMode};

    fn err(text: &str) -> String {
        Config::from_toml(text, "test").unwrap_err().to_string()
    }

    fn ok(text: &str) -> Config {
        Config::from_toml(text, "test").unwrap()
    }

    #[test]
    fn without_servers_there_is_one_default_registry_server() {
        let c = ok("");
        assert_eq!(c.servers.len(), 1);
        assert!(c.servers[0].default);
        assert!(
            matches!(&c.servers[0].routes[0].target, RouteTarget::Registry { root } if root.to_str() == Some("./data"))
        );
    }

    #[test]
    fn routes_are_sorted_longest_prefix_first() {
        let c = ok("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nregistry = {}\n[[server.route]]\npath = \"/v2/mirror/\"\nupstream = \"http://127.0.0.1:9\"\n");
        assert_eq!(c.servers[0].routes[0].prefix, "/v2/mirror/");
        assert_eq!(c.servers[0].routes[1].prefix, "/");
    }

    #[test]
    fn duplicate_server_names_are_errors() {
        let e = err("[[server]]\nnames = [\"a.example\"]\n[[server]]\nnames = [\"A.example\"]\n");
        assert!(
            e.contains("server[1].names") && e.contains("server[0]"),
            "{e}"
        );
    }

    #[test]
    fn two_default_servers_are_an_error() {
        let e = err("[[server]]\ndefault = true\n[[server]]\ndefault = true\n");
        assert!(e.contains("server[1].default"), "{e}");
    }

    #[test]
    fn unreachable_server_is_an_error() {
        assert!(err("[[server]]\n").contains("server[0].names"));
    }

    #[test]
    fn bad_server_names_are_errors() {
        assert!(err("[[server]]\nnames = [\"bad_name\"]\n").contains("server[0].names"));
    }

    #[test]
    fn missing_cert_files_are_errors() {
        let e = err("[[server]]\nnames = [\"a.example\"]\ntls = { cert = \"/no/such.crt\", key = \"/no/such.key\" }\n");
        assert!(
            e.contains("server[0].tls.cert") && e.contains("does not exist"),
            "{e}"
        );
        assert!(
            err("[[server]]\nnames = [\"a.example\"]\ntls = { cert = \"x\" }\n")
                .contains("server[0].tls.key")
        );
        assert!(err("[[server]]\nnames = [\"a.example\"]\ntls = {}\n").contains("server[0].tls"));
    }

    #[test]
    fn self_signed_needs_names_and_excludes_files() {
        assert!(
            err("[[server]]\ndefault = true\ntls = { self_signed = true }\n")
                .contains("tls.self_signed")
        );
        let e = err("[[server]]\nnames = [\"a\"]\ntls = { self_signed = true, cert = \"x\" }\n");
        assert!(e.contains("tls.self_signed"), "{e}");
        let c = ok("[[server]]\nnames = [\"a.example\"]\ntls = { self_signed = true }\n");
        assert_eq!(c.servers[0].tls, Some(ServerTls::SelfSigned));
    }

    #[test]
    fn tls_listener_needs_a_certificate() {
        let e = err("[[listener]]\naddress = \"0.0.0.0:443\"\ntls = \"on\"\n");
        assert!(
            e.contains("listener[0].tls") && e.contains("no server block has a certificate"),
            "{e}"
        );
        assert!(
            err("[[listener]]\naddress = \"0.0.0.0:443\"\ntls = \"maybe\"\n")
                .contains("listener[0].tls")
        );
    }

    #[test]
    fn port_80_next_to_tls_redirects_by_default() {
        let c = ok("[[listener]]\naddress = \"0.0.0.0:443\"\ntls = \"on\"\n[[listener]]\naddress = \"0.0.0.0:80\"\n[[listener]]\naddress = \"0.0.0.0:5000\"\n[[server]]\nnames = [\"a.example\"]\ntls = { self_signed = true }\n");
        assert_eq!(c.listeners[0].tls, TlsMode::On);
        assert_eq!(c.listeners[1].plain, PlainMode::Redirect { port: 443 });
        assert_eq!(c.listeners[2].plain, PlainMode::Serve);
        assert!(
            err("[[listener]]\naddress = \"0.0.0.0:80\"\nplain = \"bounce\"\n")
                .contains("listener[0].plain")
        );
    }

    #[test]
    fn routes_need_one_target_and_a_slash() {
        assert!(
            err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\n")
                .contains("exactly one of")
        );
        assert!(err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nregistry = {}\nredirect = \"https://x\"\n").contains("exactly one of"));
        assert!(err(
            "[[server]]\ndefault = true\n[[server.route]]\npath = \"v2\"\nregistry = {}\n"
        )
        .contains("route[0].path"));
        assert!(err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nregistry = {}\n[[server.route]]\npath = \"/\"\nregistry = {}\n").contains("repeats"));
    }

    #[test]
    fn upstreams_may_be_https_with_a_ca_file() {
        let c = ok("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nupstream = \"https://x\"\n");
        assert!(
            matches!(&c.servers[0].routes[0].target, RouteTarget::Upstream { url, ca_file: None, .. } if url.scheme_str() == Some("https"))
        );
        assert!(err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nredirect = \"https://x\"\nca_file = \"x\"\n").contains("route[0].ca_file"));
    }

    #[test]
    fn upstreams_must_be_http_urls() {
        assert!(err(
            "[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nupstream = \"ftp://x\"\n"
        )
        .contains("route[0].upstream"));
        assert!(err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nupstream = \"http://x\"\nupstream_timeout = \"never\"\n").contains("upstream_timeout"));
    }

    #[test]
    fn public_and_forward_user_fit_the_route() {
        let server = "[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\n";
        let c = ok(&format!("{server}upstream = \"http://x\"\npublic = true\n"));
        assert!(c.servers[0].routes[0].public && !c.servers[0].routes[0].forward_user);
        let e = err(&format!("{server}registry = {{}}\npublic = true\n"));
        assert!(
            e.contains("route[0].public") && e.contains("anonymous"),
            "{e}"
        );
        let e = err(&format!(
            "{server}redirect = \"https://x\"\nforward_user = true\n"
        ));
        assert!(e.contains("route[0].forward_user"), "{e}");
        let e = err(&format!(
            "{server}upstream = \"http://x\"\nforward_user = true\n"
        ));
        assert!(e.contains("without logins"), "{e}");
        let e = err(&format!(
            "{server}upstream = \"http://x\"\nforward_user = true\npublic = true\n"
        ));
        assert!(e.contains("public route"), "{e}");
    }

    #[test]
    fn redirect_status_is_checked() {
        assert!(err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nredirect = \"https://x\"\nredirect_status = 200\n").contains("redirect_status"));
    }
}
