//! The config file exactly as written: serde structs that refuse unknown keys. Nothing here
//! is trusted yet; `validate` turns it into a [`super::Config`].

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listener: Vec<RawListener>,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub registry: RawRegistry,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub server: Vec<RawServer>,
    #[serde(default)]
    pub tls: RawTls,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub admin: RawAdmin,
    /// Named request-rate limits, attached to servers and routes by name.
    #[serde(default)]
    pub rate_limit: std::collections::BTreeMap<String, RawRateLimit>,
    #[serde(default)]
    pub failed_logins: RawFailedLogins,
    #[serde(default)]
    pub notifications: super::notifications::RawNotifications,
    #[serde(default)]
    pub gc: RawGc,
    #[serde(default)]
    pub retention: Vec<RawRetention>,
    #[serde(default)]
    pub immutable: Vec<RawImmutable>,
}

/// `[gc]`: scheduled online garbage collection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGc {
    /// A duration, or "off".
    pub interval: Option<String>,
    pub grace: Option<String>,
    /// "keep" or "delete".
    pub untagged: Option<String>,
}

/// `[[retention]]`: a retention policy for the repositories matching `repos`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    pub repos: String,
    pub keep_last: Option<usize>,
    #[serde(default)]
    pub keep_tags: Vec<String>,
    #[serde(default)]
    pub delete_tags: Vec<String>,
    pub delete_older_than: Option<String>,
    /// "any" or "all".
    #[serde(rename = "match")]
    pub combine: Option<String>,
    pub delete_untagged_older_than: Option<String>,
}

/// `[[immutable]]`: tags that may be pushed once.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImmutable {
    pub repos: String,
    pub tags: Option<Vec<String>>,
}

/// `[rate_limit.NAME]`: a rate, a burst and what the requests are counted by.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// "ip", "user" or "vhost".
    pub key: Option<String>,
    /// Which requests count: "all", "manifests" or "blobs".
    pub requests: Option<String>,
    /// Like "30/s", "600/m" or "1000/h".
    pub rate: Option<String>,
    pub burst: Option<u32>,
    pub exempt_ips: Option<Vec<String>>,
    pub exempt_users: Option<Vec<String>>,
    #[serde(rename = "override")]
    pub overrides: Option<Vec<RawRateOverride>>,
}

/// `[[rate_limit.NAME.override]]`: another rate and burst for some clients.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateOverride {
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub users: Vec<String>,
    pub rate: String,
    pub burst: Option<u32>,
}

/// `[failed_logins]`: how many wrong passwords a client IP and a user name may send.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailedLogins {
    pub rate: Option<String>,
    pub burst: Option<u32>,
    pub per_user: Option<bool>,
}

/// The admin listener, for `/metrics`; separate so it can stay on a private address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: String,
    /// "off" (plain HTTP), "on" (TLS only) or "auto" (either, told apart by the first byte).
    pub tls: Option<String>,
    /// What plain-HTTP requests get: "serve" or "redirect" (to https).
    pub plain: Option<String>,
    /// The port the https redirect points at (default 443).
    /// Wider than a port, so that 99999 is told to be out of range rather than not a u16.
    pub redirect_port: Option<i64>,
}

/// A `[[server]]` block: a virtual host, like an nginx `server { }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default)]
    pub names: Vec<String>,
    pub default: Option<bool>,
    pub tls: Option<RawServerTls>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
    pub auth: Option<RawAuth>,
    /// The web UI under `/ui/`; unset means on where `/v2/` reaches a registry.
    pub ui: Option<bool>,
    /// Names of `[rate_limit.NAME]` tables; unset means the built-in defaults.
    pub rate_limits: Option<Vec<String>>,
}

/// `[server.auth]`: logins and access rules for one server block.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub realm: Option<String>,
    /// Login providers, asked in this order.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    pub cache_ttl: Option<String>,
    #[serde(default)]
    pub access: Vec<RawAccessRule>,
    /// Group name → user names, for `group:NAME` in access rules.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub htpasswd: Option<String>,
    pub ldap: Option<RawLdap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLdap {
    pub url: Option<String>,
    pub starttls: Option<bool>,
    pub ca_file: Option<String>,
    pub bind_dn: Option<String>,
    /// The service password lives outside the config: a file or an environment variable.
    pub bind_password_file: Option<String>,
    pub bind_password_env: Option<String>,
    pub base_dn: Option<String>,
    pub user_filter: Option<String>,
    pub group_attribute: Option<String>,
    pub group_search: Option<RawGroupSearch>,
    pub connect_timeout: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroupSearch {
    pub base_dn: Option<String>,
    pub filter: Option<String>,
    pub name_attribute: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessRule {
    pub repos: String,
    pub who: Vec<String>,
    pub actions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub self_signed: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: String,
    pub registry: Option<RawRouteRegistry>,
    pub upstream: Option<String>,
    pub upstream_timeout: Option<String>,
    pub redirect: Option<String>,
    pub redirect_status: Option<u16>,
    pub max_body_bytes: Option<u64>,
    /// More rate limits for this route, on top of the server's.
    #[serde(default)]
    pub rate_limits: Vec<String>,
    /// On a server with logins: this route is outside them (no login asked or checked).
    pub public: Option<bool>,
    /// Send the logged-in user's name upstream as `X-Forwarded-User`.
    pub forward_user: Option<bool>,
    /// A pull-through cache of this registry URL (`config/mirror.rs` has the keys below).
    pub mirror: Option<String>,
    /// Extra CA certificates (PEM) an https `upstream` or `mirror` is trusted with.
    pub ca_file: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub tag_ttl: Option<String>,
    pub ns: Option<String>,
    pub push_to_local: Option<String>,
    pub root: Option<String>,
    /// The cache policy: images not pulled for this long are evicted (`"30d"`).
    pub cache_max_age: Option<String>,
    /// The cache policy: above this size (`"50GiB"`), least recently pulled images go first.
    pub cache_max_size: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouteRegistry {
    pub root: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub tls_handshake_timeout: Option<String>,
    pub header_read_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub max_header_bytes: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_connections: Option<usize>,
    /// Peers (addresses or CIDRs) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// How many clients each rate limit remembers at most.
    pub rate_limit_keys: Option<u64>,
    /// HTTP/2 receive windows in bytes (see `config/http2.rs`).
    pub http2_stream_window: Option<u64>,
    pub http2_connection_window: Option<u64>,
    pub http2_window_budget: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// "filesystem" (the default), "s3" or "azure".
    pub backend: Option<String>,
    pub root: Option<String>,
    pub upload_max_age: Option<String>,
    pub s3: Option<RawS3>,
    pub azure: Option<RawAzure>,
}

/// `[storage.azure]`: a container of an Azure Blob Storage account (or Azurite).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAzure {
    pub account: Option<String>,
    pub container: Option<String>,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
    pub access_key: Option<String>,
    pub access_key_file: Option<String>,
    pub access_key_env: Option<String>,
    pub sas_token: Option<String>,
    pub sas_token_file: Option<String>,
    pub sas_token_env: Option<String>,
    pub ca_file: Option<String>,
    pub part_size: Option<u64>,
    pub timeout: Option<String>,
}

/// `[storage.s3]`: an S3-compatible bucket (AWS, MinIO, Ceph RGW, Garage).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    pub bucket: Option<String>,
    pub prefix: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub secret_access_key_file: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub credentials_file: Option<String>,
    pub profile: Option<String>,
    pub ca_file: Option<String>,
    pub part_size: Option<u64>,
    pub copy_part_size: Option<u64>,
    pub conditional_writes: Option<bool>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    pub max_manifest_bytes: Option<u64>,
    pub manifest_cache_bytes: Option<u64>,
    /// Whether deletes are allowed at all (see `RegistryConfig::delete`).
    pub delete: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
    /// The older spelling of `access = "off"` (false) and the default (true).
    pub access_log: Option<bool>,
    pub access: Option<String>,
    pub access_format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub grace: Option<String>,
}
