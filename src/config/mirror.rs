//! `mirror = "https://..."` routes: a pull-through cache of another registry, and the
//! `ca_file` key that https upstreams (plain `upstream` routes too) are trusted with.
//!
//! ```toml
//! [[server.route]]
//! path = "/v2/dockerhub/"         # or "/" (then containerd's ?ns= picks among mirrors)
//! mirror = "https://registry-1.docker.io"
//! ns = "docker.io"                # what containerd sends as ?ns=; default: the URL's host
//! username = "me"                 # with password_file; both unset = anonymous
//! password_file = "/etc/wharf/dockerhub-token"
//! tag_ttl = "5m"                  # a tag is revalidated (HEAD) when older than this
//! upstream_timeout = "30s"
//! push_to_local = "team/"         # pushes under this namespace stay local; others refused
//! root = "./data"                 # the storage root of the cache (default: storage.root)
//! cache_max_age = "30d"           # evict images not pulled for this long (default: never)
//! cache_max_size = "50GiB"        # above this, least recently pulled go first (default: no cap)
//! ```
//!
//! The cache policy is carried out by `wharf gc` before its mark (`gc/mirror_roots.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawRoute;
use super::{Check, ConfigError};

/// A validated `mirror` route target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorConfig {
    /// The upstream registry's base URL (`https://registry-1.docker.io`).
    pub url: http::Uri,
    /// The registry's name as containerd sends it in `?ns=` (`docker.io`). Cached
    /// repositories are stored under it: `docker.io/library/alpine`.
    pub ns: String,
    /// Names after `/v2/` the route's path adds, stripped before going upstream
    /// (`dockerhub/` for `path = "/v2/dockerhub/"`; empty for `/` and `/v2/`).
    pub strip: String,
    /// The storage root the cache lives on (shared with registry routes on the same root).
    pub root: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// Upstream login; `None` is anonymous.
    pub login: Option<MirrorLogin>,
    /// How long a tag is served without asking the upstream again.
    pub tag_ttl: Duration,
    /// The longest wait for an upstream answer (headers, then each piece of a body).
    pub timeout: Duration,
    /// Repositories under this namespace (`team/`) are ordinary local ones: pushed to and
    /// pulled from this registry only. Everything else is mirrored, and pushes are refused.
    pub push_to_local: Option<String>,
    /// What the cache keeps; nothing is evicted when both limits are unset.
    pub cache: CachePolicy,
}

/// A mirror route's cache policy (`cache_max_age`, `cache_max_size`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachePolicy {
    /// Images not pulled for this long are evicted.
    pub max_age: Option<Duration>,
    /// Above this many bytes (of the distinct blobs the cached images name), the least
    /// recently pulled images are evicted until the rest fit.
    pub max_size: Option<u64>,
}

/// Upstream credentials: the user in the config, the password in a file of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorLogin {
    pub username: String,
    pub password_file: PathBuf,
}

/// Docker Hub's registry host, which clients name `docker.io`.
const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

pub(super) fn validate(
    check: &Check<'_>,
    key: &dyn Fn(&str) -> String,
    r: &RawRoute,
    url: &str,
    default_root: &Path,
) -> Result<MirrorConfig, ConfigError> {
    let example = "write it like \"https://registry-1.docker.io\"";
    let uri: http::Uri = url
        .parse()
        .map_err(|_| check.invalid(key("mirror"), format!("{url:?} is not a URL"), example))?;
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    if !matches!(uri.scheme_str(), Some("http" | "https")) || host.is_empty() {
        return Err(check.invalid(
            key("mirror"),
            format!("{url:?} is not an http:// or https:// URL"),
            example,
        ));
    }
    if uri.path() != "/" || uri.query().is_some() {
        return Err(check.invalid(
            key("mirror"),
            format!("{url:?} has a path; a registry's API is always at /v2/"),
            example,
        ));
    }
    let strip = strip_of(&r.path).ok_or_else(|| {
        check.invalid(
            key("path"),
            format!("is {:?}, which a mirror cannot serve", r.path),
            "use \"/\", \"/v2/\", or a namespace under /v2/ like \"/v2/dockerhub/\"",
        )
    })?;
    let ns = ns(check, key, r.ns.as_deref(), &uri, host)?;
    let login = login(check, key, r)?;
    let ca_file = ca_file(check, key, r.ca_file.as_deref())?;
    let push_to_local = match r.push_to_local.as_deref() {
        None => None,
        Some(p) => Some(namespace(p).ok_or_else(|| {
            check.invalid(
                key("push_to_local"),
                format!("is {p:?}, not a repository namespace"),
                "name a namespace like \"team/\" (lower case, ending in /)",
            )
        })?),
    };
    Ok(MirrorConfig {
        url: uri,
        ns,
        strip,
        root: r
            .root
            .as_deref()
            .map(PathBuf::from)
            .unwrap_or_else(|| default_root.to_owned()),
        ca_file,
        login,
        tag_ttl: check.duration(
            &key("tag_ttl"),
            r.tag_ttl.as_deref(),
            Duration::from_secs(300),
        )?,
        timeout: check.duration(
            &key("upstream_timeout"),
            r.upstream_timeout.as_deref(),
            Duration::from_secs(30),
        )?,
        push_to_local,
        cache: cache_policy(check, key, r)?,
    })
}

fn cache_policy(
    check: &Check<'_>,
    key: &dyn Fn(&str) -> String,
    r: &RawRoute,
) -> Result<CachePolicy, ConfigError> {
    let max_age = match r.cache_max_age.as_deref() {
        None => None,
        Some(v) => {
            let age = check.duration(&key("cache_max_age"), Some(v), Duration::ZERO)?;
            if age.is_zero() {
                return Err(check.invalid(
                    key("cache_max_age"),
                    "is zero, which would evict every image at every collection",
                    "write how long an unpulled image stays, like \"30d\"; leave it out to keep images",
                ));
            }
            Some(age)
        }
    };
    let max_size = match r.cache_max_size.as_deref() {
        None => None,
        Some(v) => Some(byte_size(v).ok_or_else(|| {
            check.invalid(
                key("cache_max_size"),
                format!("is {v:?}, not a size"),
                "write a size like \"50GiB\", \"500MB\" or a number of bytes",
            )
        })?),
    };
    Ok(CachePolicy { max_age, max_size })
}

/// `"50GiB"`, `"500 MB"`, `"1024"`: bytes (binary and decimal units, `B` optional).
fn byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// `ns`, or the name clients pull the URL's registry by: its host (and port), with Docker
/// Hub's registry host as `docker.io`.
fn ns(
    check: &Check<'_>,
    key: &dyn Fn(&str) -> String,
    ns: Option<&str>,
    uri: &http::Uri,
    host: String,
) -> Result<String, ConfigError> {
    match ns {
        Some(ns) if valid_ns(ns) => Ok(ns.to_owned()),
        Some(ns) => Err(check.invalid(
            key("ns"),
            format!("is {ns:?}, not a registry host name"),
            "use the name clients pull by, like \"docker.io\" or \"ghcr.io\"",
        )),
        None if host == DOCKER_HUB_HOST => Ok("docker.io".to_owned()),
        None => Ok(match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }),
    }
}

/// The names a mirror route's path puts after `/v2/`: `""` for `/` and `/v2/`,
/// `"dockerhub/"` for `/v2/dockerhub/`; `None` for paths that are not whole names.
fn strip_of(path: &str) -> Option<String> {
    if path == "/" || path == "/v2/" {
        return Some(String::new());
    }
    let names = path.strip_prefix("/v2/")?;
    let ok = names.ends_with('/') && names.trim_end_matches('/').split('/').all(name_component);
    ok.then(|| names.to_owned())
}

/// A `?ns=` value: a host name with an optional port, in lower case.
fn valid_ns(ns: &str) -> bool {
    let (host, port) = ns.split_once(':').unwrap_or((ns, "0"));
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && port.parse::<u16>().is_ok()
}

/// `team/` (or `team`, made `team/`) when it is a valid repository name.
fn namespace(p: &str) -> Option<String> {
    let name = p.trim_end_matches('/');
    (!name.is_empty() && name.split('/').all(name_component)).then(|| format!("{name}/"))
}

/// One component of a repository name, as the distribution spec has them (`[a-z0-9]` runs
/// joined by `.`, `_`, `__` or dashes; the strict grammar is checked again per request).
fn name_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(a), Some(z)) if alnum(*a) && alnum(*z))
        && bytes
            .iter()
            .all(|b| alnum(*b) || matches!(b, b'.' | b'_' | b'-'))
}

fn login(
    check: &Check<'_>,
    key: &dyn Fn(&str) -> String,
    r: &RawRoute,
) -> Result<Option<MirrorLogin>, ConfigError> {
    match (&r.username, &r.password_file) {
        (None, None) => Ok(None),
        (Some(username), Some(file)) => {
            if !Path::new(file).is_file() {
                return Err(check.invalid(
                    key("password_file"),
                    format!("names {file:?}, which does not exist"),
                    "write the upstream password or access token into that file",
                ));
            }
            Ok(Some(MirrorLogin {
                username: username.clone(),
                password_file: file.into(),
            }))
        }
        (Some(_), None) => Err(check.invalid(
            key("password_file"),
            "is missing, but username is set",
            "name a file holding the upstream password or token, or remove username",
        )),
        (None, Some(_)) => Err(check.invalid(
            key("username"),
            "is missing, but password_file is set",
            "set the upstream user name, or remove password_file",
        )),
    }
}

/// `ca_file`: a PEM file that must exist (its certificates are read when the route starts).
pub(super) fn ca_file(
    check: &Check<'_>,
    key: &dyn Fn(&str) -> String,
    file: Option<&str>,
) -> Result<Option<PathBuf>, ConfigError> {
    match file {
        None => Ok(None),
        Some(f) if Path::new(f).is_file() => Ok(Some(f.into())),
        Some(f) => Err(check.invalid(
            key("ca_file"),
            format!("names {f:?}, which does not exist"),
            "point it at the PEM file of the CA that signed the upstream's certificate",
        )),
    }
}

/// The keys only a mirror route has; set on another route, they are mistakes.
pub(super) fn mirror_only_keys(r: &RawRoute) -> Option<&'static str> {
    [
        ("username", r.username.is_some()),
        ("password_file", r.password_file.is_some()),
        ("tag_ttl", r.tag_ttl.is_some()),
        ("ns", r.ns.is_some()),
        ("push_to_local", r.push_to_local.is_some()),
        ("root", r.root.is_some()),
        ("cache_max_age", r.cache_max_age.is_some()),
        ("cache_max_size", r.cache_max_size.is_some()),
    ]
    .into_iter()
    .find(|(_, set)| *set)
    .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, RouteTarget};

    fn route(keys: &str) -> String {
        format!("[[server]]\ndefault = true\n[[server.route]]\npath = \"/v2/hub/\"\n{keys}")
    }

    fn mirror(text: &str) -> crate::config::MirrorConfig {
        let c = Config::from_toml(text, "test").unwrap();
        match &c.servers[0].routes[0].target {
            RouteTarget::Mirror(m) => (**m).clone(),
            other => panic!("{other:?}"),
        }
    }

    fn err(text: &str) -> String {
        Config::from_toml(text, "test").unwrap_err().to_string()
    }

    #[test]
    fn docker_hub_is_docker_io_and_the_path_is_stripped() {
        let m = mirror(&route("mirror = \"https://registry-1.docker.io\"\n"));
        assert_eq!(m.ns, "docker.io");
        assert_eq!(m.strip, "hub/");
        assert_eq!(m.tag_ttl.as_secs(), 300);
        assert!(m.login.is_none() && m.push_to_local.is_none());
        let m = mirror(&route(
            "mirror = \"https://r.example:5000\"\npush_to_local = \"team\"\n",
        ));
        assert_eq!(m.ns, "r.example:5000");
        assert_eq!(m.push_to_local.as_deref(), Some("team/"));
    }

    #[test]
    fn mirror_urls_are_checked_with_the_line() {
        let e = err(&route("mirror = \"ftp://x\"\n"));
        assert!(e.contains("test:5") && e.contains("route[0].mirror"), "{e}");
        let e = err(&route("mirror = \"https://x/v2/\"\n"));
        assert!(e.contains("has a path"), "{e}");
    }

    #[test]
    fn mirror_paths_are_whole_names() {
        let e = err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/hub/\"\nmirror = \"https://x\"\n");
        assert!(e.contains("route[0].path"), "{e}");
        let e = err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/v2/Hub/\"\nmirror = \"https://x\"\n");
        assert!(e.contains("route[0].path"), "{e}");
    }

    #[test]
    fn logins_need_both_halves_and_the_file() {
        let e = err(&route("mirror = \"https://x\"\nusername = \"me\"\n"));
        assert!(e.contains("route[0].password_file"), "{e}");
        let e = err(&route(
            "mirror = \"https://x\"\nusername = \"me\"\npassword_file = \"/no/such\"\n",
        ));
        assert!(e.contains("does not exist"), "{e}");
        let e = err(&route("mirror = \"https://x\"\npassword_file = \"/no\"\n"));
        assert!(e.contains("route[0].username"), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (keys, named) in [
            ("tag_ttl = \"soon\"", "tag_ttl"),
            ("ns = \"Docker.IO\"", "route[0].ns"),
            ("push_to_local = \"Team/\"", "push_to_local"),
            ("ca_file = \"/no/such.pem\"", "ca_file"),
        ] {
            let e = err(&route(&format!("mirror = \"https://x\"\n{keys}\n")));
            assert!(e.contains(named), "{keys}: {e}");
        }
    }

    #[test]
    fn the_cache_policy_is_read_and_checked_with_the_line() {
        let m = mirror(&route("mirror = \"https://x\"\n"));
        assert_eq!(m.cache, crate::config::CachePolicy::default());
        let m = mirror(&route(
            "mirror = \"https://x\"\ncache_max_age = \"30d\"\ncache_max_size = \"50GiB\"\n",
        ));
        assert_eq!(
            m.cache.max_age,
            Some(std::time::Duration::from_secs(30 * 86400))
        );
        assert_eq!(m.cache.max_size, Some(50 << 30));
        for (size, bytes) in [("1", 1), ("2 MB", 2_000_000), ("3kib", 3072)] {
            let text = format!("mirror = \"https://x\"\ncache_max_size = \"{size}\"\n");
            assert_eq!(mirror(&route(&text)).cache.max_size, Some(bytes), "{size}");
        }
        for (keys, named) in [
            ("cache_max_age = \"soon\"", "route[0].cache_max_age"),
            ("cache_max_age = \"0s\"", "route[0].cache_max_age"),
            ("cache_max_size = \"lots\"", "route[0].cache_max_size"),
            ("cache_max_size = \"5 parsecs\"", "route[0].cache_max_size"),
        ] {
            let e = err(&route(&format!("mirror = \"https://x\"\n{keys}\n")));
            assert!(e.contains(named) && e.contains("test:6"), "{keys}: {e}");
        }
        let e = err(&route("registry = {}\ncache_max_age = \"1d\"\n"));
        assert!(e.contains("route[0].cache_max_age"), "{e}");
    }

    #[test]
    fn mirror_keys_on_other_routes_are_errors() {
        let e = err(&route("upstream = \"http://x\"\ntag_ttl = \"1m\"\n"));
        assert!(
            e.contains("route[0].tag_ttl") && e.contains("mirror"),
            "{e}"
        );
    }

    #[test]
    fn mirrors_share_a_path_only_with_other_namespaces() {
        let two = "[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nmirror = \"https://registry-1.docker.io\"\n[[server.route]]\npath = \"/\"\nmirror = \"https://ghcr.io\"\n";
        let c = Config::from_toml(two, "test").unwrap();
        assert_eq!(c.servers[0].routes.len(), 2);
        let e = err(&format!(
            "{two}[[server.route]]\npath = \"/\"\nmirror = \"https://ghcr.io\"\n"
        ));
        assert!(e.contains("route[2].path") && e.contains("repeats"), "{e}");
        let e = err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nmirror = \"https://ghcr.io\"\n[[server.route]]\npath = \"/\"\nregistry = {}\n");
        assert!(e.contains("repeats"), "{e}");
    }
}
