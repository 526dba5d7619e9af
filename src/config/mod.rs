//! Configuration: the TOML file (see `conf/wharf.toml`) parsed strictly and validated into
//! typed values. Every error names the key and says how to fix it.

mod auth;
mod azure;
mod gc;
mod http2;
mod limits;
mod location;
mod log;
mod mirror;
pub mod names;
mod notifications;
mod rate_limits;
pub mod raw;
pub mod registry_env;
mod repo_pattern;
mod servers;
mod storage;
mod ui;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::auth::{
    AccessRule, AuthConfig, GroupSource, LdapConfig, PasswordSource, ProviderConfig,
};
pub use self::gc::{Combine, GcConfig, ImmutableRule, RetentionPolicy, Untagged};
pub use self::limits::Limits;
pub use self::log::{AccessFormat, AccessTarget, LogConfig, LogFormat};
pub use self::mirror::{CachePolicy, MirrorConfig, MirrorLogin};
pub use self::notifications::{EndpointConfig, EventFormat, GiveUp, NotificationsConfig};
pub use self::rate_limits::{
    Clients, FailedLoginsConfig, LimitKey, Rate, RateLimitConfig, RequestClass, DEFAULT_LIMITS,
};
use self::raw::RawConfig;
pub use self::repo_pattern::{RepoPattern, TagPattern};
pub use self::servers::{find_server, RouteConfig, RouteTarget, ServerConfig, ServerTls};
pub use self::storage::{
    default_credentials_file, AzureConfig, AzureCredentials, S3Config, S3Credentials, SecretSource,
    StorageBackend, StorageConfig,
};

/// Where `wharf serve` looks when no file is named.
pub const DEFAULT_PATH: &str = "conf/wharf.toml";

#[derive(Clone, Debug)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    /// Virtual hosts, in config order. Without `[[server]]` blocks there is one implicit
    /// default server routing everything to the registry under `storage.root`.
    pub servers: Vec<ServerConfig>,
    /// Where wharf's own CA (and the leaves it issues for self-signed servers) live.
    pub ca_dir: PathBuf,
    pub limits: Limits,
    /// Every named rate limit (the built-in ones included), whether attached or not.
    pub rate_limits: Vec<RateLimitConfig>,
    pub failed_logins: FailedLoginsConfig,
    /// Where `/metrics` is served, if anywhere.
    pub admin_address: Option<SocketAddr>,
    pub storage: StorageConfig,
    pub registry: RegistryConfig,
    pub log: LogConfig,
    /// How long in-flight requests may run after SIGTERM before wharf exits anyway.
    pub shutdown_grace: Duration,
    /// What became of each registry:2 setting (`REGISTRY_*` variable) applied over the file.
    pub registry_env: Vec<registry_env::Applied>,
    /// Webhook endpoints fed from the durable outbox (`[notifications]`).
    pub notifications: NotificationsConfig,
    pub gc: GcConfig,
    /// `[[retention]]` policies, in config order.
    pub retention: Vec<RetentionPolicy>,
    /// `[[immutable]]` rules: a tag any of them covers can never move.
    pub immutable: Vec<ImmutableRule>,
}

#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub tls: TlsMode,
    pub plain: PlainMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain HTTP only.
    Off,
    /// TLS only.
    On,
    /// TLS and plain HTTP on one port, told apart by the first byte (a TLS handshake starts
    /// with 0x16), so clients that try HTTPS and clients told the registry is insecure both work.
    Auto,
}

/// What plain-HTTP requests on a listener get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlainMode {
    Serve,
    /// A redirect to `https://<host>:<port>` (the port is left out when it is 443).
    Redirect {
        port: u16,
    },
}

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub max_manifest_bytes: u64,
    pub manifest_cache_bytes: u64,
    /// `registry.delete`. Deletes are off unless granted, as on registry:2: `Some(true)`
    /// allows them (on servers with logins, still only to whom the access rules give
    /// `delete`); `Some(false)` refuses them everywhere; unset, a server with logins leaves
    /// it to its access rules (a rule must name `delete`) and a server without refuses.
    pub delete: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is part of the message, so it is not also the error's `source()`: a chain
    // printer (`{:#}`, anyhow) would say it twice.
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    /// Several errors at once (every registry:2 setting wharf cannot carry over), one a line.
    #[error("{}", several(.0))]
    Several(Vec<ConfigError>),
    #[error("config {origin}: `{key}` {problem}; fix: {fix}")]
    Invalid {
        origin: String,
        key: String,
        problem: String,
        fix: String,
    },
}

impl Config {
    /// The configuration used when no file exists: a registry on `0.0.0.0:5000` storing
    /// under `./data`.
    pub fn builtin() -> Self {
        validate(RawConfig::default(), "built-in default")
            .unwrap_or_else(|e| unreachable!("the built-in default config is valid: {e}"))
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors, with the line.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::from_toml_with(text, origin, Vec::new())
    }

    /// [`Config::from_toml`] with registry:2's settings (a config.yml's keys, then
    /// `REGISTRY_*` variables) applied over the file's keys. An error about a key a setting
    /// set names the setting; settings wharf cannot carry over are refused, all named.
    pub fn from_toml_with(
        text: &str,
        origin: &str,
        settings: Vec<registry_env::Setting>,
    ) -> Result<Self, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(text, origin, &e))?;
        let applied = registry_env::apply(&mut raw, settings, registry_env::Unsupported::Refuse)?;
        let mut config = validate(raw, origin).map_err(|e| {
            match registry_env::setter_of(&applied, e.key().unwrap_or_default()) {
                Some(label) => e.set_by(label),
                None => e.placed(text),
            }
        })?;
        config.registry_env = applied;
        Ok(config)
    }

    /// `file:line` of `key` in the config file at `path` (just `file` when the key is not
    /// in it), for errors found after loading, such as `check-config`'s.
    pub fn origin_of(path: &Path, key: &str) -> String {
        let line = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| location::line_of(&text, key));
        match line {
            Some(line) => format!("{}:{line}", path.display()),
            None => path.display().to_string(),
        }
    }

    /// `--config`/`WHARF_CONFIG` when given, else `conf/wharf.toml` when it exists, else
    /// the built-in default; then registry:2's config.yml named by
    /// `REGISTRY_CONFIGURATION_PATH`, if set; then the `REGISTRY_*` variables of the
    /// environment over it. Returns where the config came from, for the log.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, String), ConfigError> {
        Self::load_with(explicit, None)
    }

    /// [`Config::load`] with registry:2's config.yml given as `wharf serve <config.yml>`
    /// (as `registry serve <config.yml>`), which wins over `REGISTRY_CONFIGURATION_PATH`.
    pub fn load_with(
        explicit: Option<&Path>,
        registry_yml: Option<&Path>,
    ) -> Result<(Self, String), ConfigError> {
        let mut env = registry_env::from_environment()?;
        // Not a setting but where registry:2's settings are: read, never applied.
        let named = env
            .iter()
            .position(|s| s.name == registry_env::CONFIGURATION_PATH)
            .map(|at| PathBuf::from(env.remove(at).value));
        let yml = registry_yml.map(Path::to_path_buf).or(named);
        let path = match explicit {
            Some(p) => Some(p),
            None if Path::new(DEFAULT_PATH).exists() => Some(Path::new(DEFAULT_PATH)),
            None => None,
        };
        let (text, mut origin) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|cause| ConfigError::Read {
                    path: p.to_owned(),
                    cause,
                })?;
                (text, p.display().to_string())
            }
            None => (String::new(), "built-in default".to_owned()),
        };
        let mut settings = Vec::new();
        if let Some(yml) = &yml {
            settings = registry_yml_settings(yml)?;
            origin = format!("{origin} with registry:2's {}", yml.display());
        }
        settings.extend(env);
        Ok((Self::from_toml_with(&text, &origin, settings)?, origin))
    }
}

/// The settings of registry:2's config.yml at `path`.
fn registry_yml_settings(path: &Path) -> Result<Vec<registry_env::Setting>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_owned(),
        cause,
    })?;
    registry_env::yml::settings(&text).map_err(|message| ConfigError::Parse {
        path: path.display().to_string(),
        message,
    })
}

/// [`ConfigError::Several`]'s message: a count, then one error a line.
fn several(errors: &[ConfigError]) -> String {
    let mut text = format!("{} problems:", errors.len());
    for e in errors {
        text.push_str(&format!("\n  - {e}"));
    }
    text
}

impl ConfigError {
    /// The key a validation error is about.
    fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Says which registry:2 setting set the key a validation error is about.
    fn set_by(self, label: &str) -> Self {
        match self {
            ConfigError::Invalid {
                origin,
                key,
                problem,
                fix,
            } => ConfigError::Invalid {
                origin: format!("{origin} with {label}"),
                key,
                problem,
                fix,
            },
            other => other,
        }
    }

    /// Adds the line of the key to a validation error's origin.
    fn placed(self, text: &str) -> Self {
        match self {
            ConfigError::Invalid {
                origin,
                key,
                problem,
                fix,
            } => ConfigError::Invalid {
                origin: match location::line_of(text, &key) {
                    Some(line) => format!("{origin}:{line}"),
                    None => origin,
                },
                key,
                problem,
                fix,
            },
            other => other,
        }
    }
}

/// A TOML or serde error, with `file:line:column`, the key when there is one, and plain
/// words for the mistakes serde words obscurely.
fn parse_error(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let Some(span) = e.span() else {
        return ConfigError::Parse {
            path: origin.to_owned(),
            message: e.message().to_owned(),
        };
    };
    let (line, col) = location::line_col(text, span.start);
    let message = match location::key_at(text, span.start) {
        // `[server.auth]` with no `[[server]]` above it makes `server` a table, where an
        // array of tables belongs.
        Some(key)
            if e.message()
                .starts_with("invalid type: map, expected a sequence") =>
        {
            let header = key
                .split('.')
                .map(|k| k.split('[').next().unwrap_or(k))
                .collect::<Vec<_>>()
                .join(".");
            format!(
                "`{key}` is a single table, but it must be a list of blocks: start each block \
                 with `[[{header}]]` (double brackets), and put tables such as \
                 `[{header}.auth]` below the `[[{header}]]` they belong to"
            )
        }
        Some(key) => format!("`{key}`: {}", e.message()),
        None => e.message().to_owned(),
    };
    ConfigError::Parse {
        path: format!("{origin}:{line}:{col}"),
        message,
    }
}

/// Builds errors that name the config's origin, the key and the fix.
pub(crate) struct Check<'a> {
    origin: &'a str,
}

impl Check<'_> {
    pub(crate) fn invalid(
        &self,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_owned(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// An `IP:port` address, telling a port out of range from other mistakes.
    pub(crate) fn socket_addr(
        &self,
        key: &str,
        text: &str,
        example: &str,
    ) -> Result<SocketAddr, ConfigError> {
        text.parse().map_err(|_| {
            let problem = match text.rsplit_once(':') {
                Some((_, port))
                    if !port.is_empty()
                        && port.bytes().all(|b| b.is_ascii_digit())
                        && port.parse::<u16>().is_err() =>
                {
                    format!("is {text:?}: port out of range (0 to 65535)")
                }
                _ => format!("is {text:?}, not an IP address with a port"),
            };
            self.invalid(key, problem, format!("write it like {example}"))
        })
    }

    pub(crate) fn duration(
        &self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v).map_err(|e| {
                self.invalid(
                    key,
                    format!("is {v:?}, not a duration ({e})"),
                    "write a duration like \"30s\", \"15m\" or \"24h\"",
                )
            }),
        }
    }
}

fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let check = Check { origin };
    let storage = storage::validate(&check, &raw.storage)?;
    let shutdown_grace = check.duration(
        "shutdown.grace",
        raw.shutdown.grace.as_deref(),
        Duration::from_secs(30),
    )?;
    let limits = limits::validate(&check, &raw.limits)?;
    let rate_limits = rate_limits::validate(&check, &raw.rate_limit)?;
    let failed_logins = rate_limits::failed_logins(&check, &raw.failed_logins)?;

    let max_manifest_bytes = raw.registry.max_manifest_bytes.unwrap_or(4 << 20);
    if max_manifest_bytes < 1024 {
        return Err(check.invalid(
            "registry.max_manifest_bytes",
            format!("is {max_manifest_bytes}, too small for real manifests"),
            "use at least 1024; the default is 4194304 (4 MiB)",
        ));
    }
    let manifest_cache_bytes = raw.registry.manifest_cache_bytes.unwrap_or(16 << 20);

    let log = log::validate(&check, &raw.log)?;
    let notifications = notifications::validate(&check, &raw.notifications)?;
    let admin_address = match raw.admin.address.as_deref() {
        None => None,
        Some(a) => Some(check.socket_addr("admin.address", a, "\"127.0.0.1:9091\"")?),
    };
    if let Some(a) = admin_address.filter(|a| a.port() != 0) {
        if raw
            .listener
            .iter()
            .any(|l| l.address.parse::<SocketAddr>().ok() == Some(a))
        {
            return Err(check.invalid(
                "admin.address",
                format!("{a} is also a [[listener]]"),
                "give the admin listener its own port",
            ));
        }
    }
    let ca_dir = PathBuf::from(raw.tls.ca_dir.clone().unwrap_or_else(|| "certs".to_owned()));
    let servers = servers::validate(&check, &raw.server, &storage.root, &rate_limits)?;
    storage::check_route_roots(&check, &storage, &servers)?;
    let listeners = servers::listeners(&check, &raw.listener, &servers)?;
    let gc = gc::gc(&check, &raw.gc)?;
    let retention = gc::retention(&check, &raw.retention)?;
    let immutable = gc::immutable(&check, &raw.immutable)?;
    Ok(Config {
        listeners,
        servers,
        ca_dir,
        limits,
        rate_limits,
        failed_logins,
        admin_address,
        storage,
        registry: RegistryConfig {
            max_manifest_bytes,
            manifest_cache_bytes,
            delete: raw.registry.delete,
        },
        log,
        shutdown_grace,
        registry_env: Vec::new(),
        notifications,
        gc,
        retention,
        immutable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::from_toml(text, "test").unwrap_err().to_string()
    }

    #[test]
    fn builtin_default_is_a_registry_on_5000_under_data() {
        let c = Config::builtin();
        assert_eq!(c.listeners[0].address.to_string(), "0.0.0.0:5000");
        assert_eq!(c.storage.root, PathBuf::from("./data"));
        assert_eq!(c.registry.max_manifest_bytes, 4 << 20);
    }

    #[test]
    fn the_shipped_config_is_valid() {
        let text = include_str!("../../conf/wharf.toml");
        Config::from_toml(text, "conf/wharf.toml").unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(err("[storage]\nrot = \"x\"").contains("unknown field `rot`"));
        assert!(err("colour = 1").contains("unknown field `colour`"));
    }

    #[test]
    fn validation_errors_name_the_line() {
        let e = err("[storage]\n\n[[listener]]\naddress = \"nowhere\"");
        assert!(e.starts_with("config test:4: `listener[0].address`"), "{e}");
        let e = err("[log]\n# the format\nformat = \"xml\"");
        assert!(e.starts_with("config test:3: `log.format`"), "{e}");
    }

    #[test]
    fn serde_errors_name_the_line_and_the_key() {
        let e = err("[storage]\nrot = \"x\"");
        assert!(
            e.contains("test:2:1: `storage.rot`: unknown field `rot`"),
            "{e}"
        );
        let e = err("[[server]]\nnames = [\"a\"]\n[[server.route]]\npath = 5");
        assert!(e.contains("test:4:8: `server[0].route[0].path`"), "{e}");
    }

    #[test]
    fn a_port_out_of_range_is_called_that() {
        for text in [
            "[[listener]]\naddress = \"0.0.0.0:99999\"",
            "[admin]\naddress = \"127.0.0.1:70000\"",
            "[[listener]]\naddress = \"0.0.0.0:80\"\nredirect_port = 99999",
        ] {
            let e = err(text);
            assert!(e.contains("port out of range"), "{text}: {e}");
        }
    }

    #[test]
    fn a_server_table_without_a_server_block_says_so() {
        let e = err("[storage]\nroot = \"d\"\n\n[server.auth]\nrealm = \"x\"\n");
        assert!(
            e.contains("test:4:") && e.contains("`[[server]]`") && !e.contains("sequence"),
            "{e}"
        );
    }

    #[test]
    fn bad_listener_address_names_the_key() {
        let e = err("[[listener]]\naddress = \"localhost\"");
        assert!(
            e.contains("listener[0].address") && e.contains("fix:"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_listener_is_an_error() {
        let e =
            err("[[listener]]\naddress = \"127.0.0.1:1\"\n[[listener]]\naddress = \"127.0.0.1:1\"");
        assert!(e.contains("listener[1].address"), "{e}");
    }

    #[test]
    fn empty_storage_root_is_an_error() {
        assert!(err("[storage]\nroot = \"\"").contains("storage.root"));
    }

    #[test]
    fn bad_durations_name_the_key() {
        assert!(err("[storage]\nupload_max_age = \"soon\"").contains("storage.upload_max_age"));
        assert!(err("[storage]\nupload_max_age = \"1s\"").contains("under a minute"));
        assert!(err("[shutdown]\ngrace = \"x\"").contains("shutdown.grace"));
    }

    #[test]
    fn tiny_manifest_limit_is_an_error() {
        assert!(err("[registry]\nmax_manifest_bytes = 10").contains("registry.max_manifest_bytes"));
    }

    #[test]
    fn admin_listener_is_checked() {
        assert!(err("[admin]\naddress = \"nope\"").contains("admin.address"));
        let e = err(
            "[[listener]]\naddress = \"127.0.0.1:7000\"\n[admin]\naddress = \"127.0.0.1:7000\"",
        );
        assert!(e.contains("also a [[listener]]"), "{e}");
    }
}

#[cfg(test)]
mod properties {
    use crate::invariants;
    use proptest::prelude::*;

    /// The configs that ship, each of which a user starts from and edits.
    const SHIPPED: [&str; 8] = [
        include_str!("../../conf/wharf.toml"),
        include_str!("../../conf/container.toml"),
        include_str!("../../examples/ldap.toml"),
        include_str!("../../examples/logins.toml"),
        include_str!("../../examples/rate-limits.toml"),
        include_str!("../../examples/real-certificate.toml"),
        include_str!("../../examples/self-signed.toml"),
        include_str!("../../examples/vhosts.toml"),
    ];

    /// `text` with the files it names (password files, certificates, CAs) replaced by one
    /// that exists, since loading checks that they do.
    fn with_existing_files(text: &str, existing: &std::path::Path) -> String {
        let named = regex::Regex::new(r#""(conf|/etc/letsencrypt)/[^"]*""#).unwrap();
        named
            .replace_all(text, format!("{:?}", existing.display().to_string()))
            .into_owned()
    }

    proptest! {
        #[test]
        fn an_accepted_config_means_the_same_after_a_round_trip(
            file in 0..SHIPPED.len(),
            drop_line in any::<prop::sample::Index>(),
            repeat_line in any::<prop::sample::Index>(),
        ) {
            let existing = tempfile::NamedTempFile::new().unwrap();
            let shipped = with_existing_files(SHIPPED[file], existing.path());
            // An edit: one line removed, another repeated below itself.
            let lines: Vec<&str> = shipped.lines().collect();
            let (drop, repeat) = (drop_line.index(lines.len()), repeat_line.index(lines.len()));
            let mut edited = String::new();
            for (i, line) in lines.iter().enumerate().filter(|(i, _)| *i != drop) {
                edited.push_str(line);
                edited.push('\n');
                if i == repeat {
                    edited.push_str(line);
                    edited.push('\n');
                }
            }
            // The shipped ones load, so the round trip is checked on them, not skipped.
            let loaded = super::Config::from_toml(&shipped, "shipped");
            prop_assert!(loaded.is_ok(), "{}", loaded.unwrap_err());
            invariants::config(&shipped);
            invariants::config(&edited);
        }
    }
}
