//! registry:2's setting names, each sorted into what wharf does with it: a value wharf
//! takes ([`Registry2`]), nothing needed (wharf already behaves that way), or unsupported,
//! with what to do instead.

use super::{Origin, Setting};

/// The registry:2 settings wharf takes, as written (checked when applied).
#[derive(Debug, Default)]
pub(super) struct Registry2 {
    pub addr: Option<Setting>,
    pub host: Option<Setting>,
    pub tls_certificate: Option<Setting>,
    pub tls_key: Option<Setting>,
    pub drain_timeout: Option<Setting>,
    pub debug_addr: Option<Setting>,
    /// `auth` itself: only `htpasswd` is taken.
    pub auth: Option<Setting>,
    pub htpasswd_realm: Option<Setting>,
    pub htpasswd_path: Option<Setting>,
    /// `storage` itself: `filesystem` or `s3`.
    pub storage: Option<Setting>,
    pub fs_root: Option<Setting>,
    pub s3: S3Settings,
    pub delete_enabled: Option<Setting>,
    pub upload_max_age: Option<Setting>,
    pub log_level: Option<Setting>,
    pub log_formatter: Option<Setting>,
    pub access_log_disabled: Option<Setting>,
    pub endpoints: super::notifications::Endpoints,
}

#[derive(Debug, Default)]
pub(super) struct S3Settings {
    pub bucket: Option<Setting>,
    pub region: Option<Setting>,
    pub region_endpoint: Option<Setting>,
    pub access_key: Option<Setting>,
    pub secret_key: Option<Setting>,
    pub root_directory: Option<Setting>,
    pub force_path_style: Option<Setting>,
    pub secure: Option<Setting>,
    pub chunk_size: Option<Setting>,
}

impl S3Settings {
    pub fn any(&self) -> bool {
        [
            &self.bucket,
            &self.region,
            &self.region_endpoint,
            &self.access_key,
            &self.secret_key,
            &self.root_directory,
            &self.force_path_style,
            &self.secure,
            &self.chunk_size,
        ]
        .iter()
        .any(|s| s.is_some())
    }
}

/// What one setting is to wharf.
pub(super) enum Kind {
    /// Taken: stored in [`Registry2`] to be applied.
    Taken,
    /// Accepted without effect, with the reason wharf needs nothing for it.
    NotNeeded(&'static str),
    /// Not supported: the problem and the fix.
    Unsupported(String, String),
}

/// Settings whose value decides whether wharf needs anything for them: `(name, values
/// that need nothing, why)`. Any other value is unsupported.
const FINE_VALUES: &[(&str, &[&str], &str)] = &[
    ("VERSION", &["0.1"], "the only version of registry:2's configuration"),
    ("HTTP_NET", &["tcp"], "wharf listens on TCP"),
    ("HTTP_DEBUG_PROMETHEUS_ENABLED", &["true", "false"], "wharf serves /metrics on the admin address (REGISTRY_HTTP_DEBUG_ADDR)"),
    ("HTTP_DEBUG_PROMETHEUS_PATH", &["/metrics"], "wharf serves /metrics on the admin address"),
    ("STORAGE_CACHE_BLOBDESCRIPTOR", &["inmemory", "redis"], "wharf caches blob sizes and manifests in memory by itself"),
    ("STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED", &["true"], "wharf always purges stale upload sessions (age: REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE)"),
    ("STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN", &["false"], "wharf purges for real"),
    ("STORAGE_S3_V4AUTH", &["true"], "wharf always signs with AWS Signature Version 4"),
    ("STORAGE_S3_ENCRYPT", &["false"], "wharf sets no server-side encryption of its own"),
    ("STORAGE_REDIRECT_DISABLE", &["true", "false"], "wharf always serves blobs itself; it never redirects clients to the store"),
    ("HTTP_RELATIVEURLS", &["true", "false"], "wharf's Location headers are always relative, so any host name clients use works"),
    ("NOTIFICATIONS_EVENTS_INCLUDEREFERENCES", &["false"], "wharf's events do not list a manifest's references"),
    // registry:2's stock config.yml has it.
    ("HTTP_HEADERS_X-CONTENT-TYPE-OPTIONS", &["nosniff"], "wharf sends X-Content-Type-Options: nosniff on every /v2/ response"),
];

/// Prefixes wharf needs nothing for, whatever they hold.
const NOT_NEEDED: &[(&str, &str)] = &[
    (
        "HTTP_SECRET",
        "wharf keeps upload sessions in storage, so nothing is signed with a shared secret",
    ),
    (
        "STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL",
        "wharf checks for stale upload sessions periodically by itself",
    ),
    (
        "HEALTH_",
        "wharf's /healthz checks the storage when asked (a few seconds' result is shared)",
    ),
    (
        "REDIS_",
        "wharf keeps its caches in memory; nothing uses Redis",
    ),
    ("LOG_FIELDS", "wharf's log events carry their own fields"),
];

/// Known registry:2 settings wharf does not have, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("AUTH_TOKEN", "token authentication (an external token server) is not supported: use htpasswd or LDAP logins ([server.auth] in wharf.toml)"),
    ("AUTH_SILLY", "the `silly` test authenticator is not supported: use htpasswd logins (REGISTRY_AUTH_HTPASSWD_PATH)"),
    ("HTTP_TLS_LETSENCRYPT", "Let's Encrypt is not built in: give certificate files (REGISTRY_HTTP_TLS_CERTIFICATE/_KEY, e.g. from certbot) or use wharf's own CA (`tls = { self_signed = true }`)"),
    ("HTTP_TLS_CLIENTCAS", "client certificates are not supported: use logins ([server.auth])"),
    ("HTTP_TLS_MINIMUMTLS", "wharf always allows TLS 1.2 and 1.3 only"),
    ("HTTP_TLS_CIPHERSUITES", "wharf uses rustls' safe cipher suites; they cannot be listed"),
    ("HTTP_HEADERS", "extra response headers are not supported"),
    ("HTTP_HTTP2", "wharf speaks HTTP/2 by itself (ALPN over TLS, prior knowledge on plain HTTP)"),
    ("HTTP_H2C", "wharf speaks HTTP/2 by itself (ALPN over TLS, prior knowledge on plain HTTP)"),
    ("HTTP_PREFIX", "a path prefix is a route in wharf.toml: [[server.route]] path = \"/prefix/\""),
    ("PROXY", "pull-through cache mode is not supported yet"),
    ("MIDDLEWARE", "storage and registry middleware (CloudFront, redirects) is not supported"),
    ("REPORTING", "bug reporting services are not supported"),
    ("VALIDATION", "manifest URL validation rules are not supported"),
    ("COMPATIBILITY", "schema1 manifests are not supported"),
    ("CATALOG", "the catalog's page size is not configurable"),
    ("LOG_HOOKS", "log hooks (mail) are not supported: ship wharf's JSON log instead"),
    ("STORAGE_MAINTENANCE_READONLY", "read-only mode is not supported: refuse pushes with access rules"),
    ("STORAGE_TAG", "the tag concurrency setting is not needed and not supported"),
    ("STORAGE_AZURE", "registry:2's azure keys are not read from the environment: use [storage.azure] in wharf.toml"),
    ("STORAGE_GCS", "Google Cloud Storage is not supported (its S3-compatible XML API works through [storage.s3])"),
    ("STORAGE_SWIFT", "OpenStack Swift is not supported"),
    ("STORAGE_OSS", "Alibaba OSS is not supported (its S3-compatible API works through [storage.s3])"),
    ("STORAGE_INMEMORY", "the in-memory storage driver is not supported: use a directory"),
    ("STORAGE_FILESYSTEM_MAXTHREADS", "wharf's filesystem I/O needs no thread limit"),
];

impl Registry2 {
    /// Sorts one setting (its name without the `REGISTRY_` prefix in `rest`).
    pub fn take(&mut self, rest: &str, setting: Setting) -> Kind {
        let value = setting.value.trim().to_ascii_lowercase();
        if let Some((_, fine, why)) = FINE_VALUES.iter().find(|(n, _, _)| *n == rest) {
            return if fine.contains(&value.as_str()) {
                Kind::NotNeeded(why)
            } else {
                Kind::Unsupported(
                    format!("is {:?}, which wharf does not support", setting.value),
                    format!("remove it ({why})"),
                )
            };
        }
        if let Some(endpoint) = rest.strip_prefix("NOTIFICATIONS_ENDPOINTS_") {
            return match self.endpoints.take(endpoint, setting) {
                Ok(()) => Kind::Taken,
                Err(problem) => Kind::Unsupported(problem, "remove it".into()),
            };
        }
        if let Some(slot) = self.slot(rest) {
            *slot = Some(setting);
            return Kind::Taken;
        }
        if let Some((_, why)) = NOT_NEEDED.iter().find(|(p, _)| rest.starts_with(p)) {
            return Kind::NotNeeded(why);
        }
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(p, _)| rest.starts_with(p)) {
            return Kind::Unsupported(format!("is not supported: {why}"), "remove it".into());
        }
        Kind::Unsupported(
            "is not a registry:2 setting wharf knows".into(),
            "remove it, or set the equivalent key in wharf.toml (README: \"Switching from registry:2\" lists the settings wharf takes)".into(),
        )
    }

    fn slot(&mut self, rest: &str) -> Option<&mut Option<Setting>> {
        let s3 = &mut self.s3;
        Some(match rest {
            "HTTP_ADDR" => &mut self.addr,
            "HTTP_HOST" => &mut self.host,
            "HTTP_TLS_CERTIFICATE" => &mut self.tls_certificate,
            "HTTP_TLS_KEY" => &mut self.tls_key,
            "HTTP_DRAINTIMEOUT" => &mut self.drain_timeout,
            "HTTP_DEBUG_ADDR" => &mut self.debug_addr,
            "AUTH" => &mut self.auth,
            "AUTH_HTPASSWD_REALM" => &mut self.htpasswd_realm,
            "AUTH_HTPASSWD_PATH" => &mut self.htpasswd_path,
            "STORAGE" => &mut self.storage,
            "STORAGE_FILESYSTEM_ROOTDIRECTORY" => &mut self.fs_root,
            "STORAGE_S3_BUCKET" => &mut s3.bucket,
            "STORAGE_S3_REGION" => &mut s3.region,
            "STORAGE_S3_REGIONENDPOINT" => &mut s3.region_endpoint,
            "STORAGE_S3_ACCESSKEY" => &mut s3.access_key,
            "STORAGE_S3_SECRETKEY" => &mut s3.secret_key,
            "STORAGE_S3_ROOTDIRECTORY" => &mut s3.root_directory,
            "STORAGE_S3_FORCEPATHSTYLE" => &mut s3.force_path_style,
            "STORAGE_S3_SECURE" => &mut s3.secure,
            "STORAGE_S3_CHUNKSIZE" => &mut s3.chunk_size,
            "STORAGE_DELETE_ENABLED" => &mut self.delete_enabled,
            "STORAGE_MAINTENANCE_UPLOADPURGING_AGE" => &mut self.upload_max_age,
            // `loglevel` is registry:2's older top-level spelling of `log.level`.
            "LOG_LEVEL" | "LOGLEVEL" => &mut self.log_level,
            "LOG_FORMATTER" => &mut self.log_formatter,
            "LOG_ACCESSLOG_DISABLED" => &mut self.access_log_disabled,
            _ => return None,
        })
    }
}

/// Kubernetes puts `<SERVICE>_SERVICE_HOST`, `<SERVICE>_PORT_5000_TCP` and the like into
/// every pod of a namespace with a Service; one named `registry` makes `REGISTRY_*`
/// variables that are not settings (registry:2 ignores them too).
pub(super) fn kubernetes_service_link(name: &str, origin: Origin) -> bool {
    if origin != Origin::Environment {
        return false;
    }
    if name.ends_with("_SERVICE_HOST")
        || name.ends_with("_SERVICE_PORT")
        || name.contains("_SERVICE_PORT_")
        || name.ends_with("_PORT")
    {
        return true;
    }
    // <SERVICE>_PORT_<number>_<protocol>[_PROTO|_PORT|_ADDR]
    name.match_indices("_PORT_").any(|(at, _)| {
        let rest = &name[at + "_PORT_".len()..];
        let (number, rest) = rest.split_once('_').unwrap_or((rest, ""));
        let protocol = rest.split('_').next().unwrap_or("");
        !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
            && matches!(protocol, "TCP" | "UDP" | "SCTP")
    })
}
