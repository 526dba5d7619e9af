//! Configuration: the TOML file (see `conf/wharf.toml`) parsed strictly and validated into
//! typed values. Every error names the key and says how to fix it.

mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::raw::RawConfig;

/// Where `wharf serve` looks when no file is named.
pub const DEFAULT_PATH: &str = "conf/wharf.toml";

#[derive(Clone, Debug)]
pub struct Config {
    pub listeners: Vec<ListenerConfig>,
    pub storage: StorageConfig,
    pub registry: RegistryConfig,
    pub log: LogConfig,
    /// How long in-flight requests may run after SIGTERM before wharf exits anyway.
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub address: SocketAddr,
}

#[derive(Clone, Debug)]
pub struct StorageConfig {
    pub root: PathBuf,
    /// Upload sessions untouched this long are deleted.
    pub upload_max_age: Duration,
}

#[derive(Clone, Debug)]
pub struct RegistryConfig {
    pub max_manifest_bytes: u64,
    pub manifest_cache_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `wharf=debug`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        validate(raw, origin)
    }

    /// `--config`/`WHARF_CONFIG` when given, else `conf/wharf.toml` when it exists, else
    /// the built-in default. Returns where the config came from, for the log.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, String), ConfigError> {
        match explicit {
            Some(p) => Ok((Self::from_file(p)?, p.display().to_string())),
            None if Path::new(DEFAULT_PATH).exists() => Ok((
                Self::from_file(Path::new(DEFAULT_PATH))?,
                DEFAULT_PATH.to_owned(),
            )),
            None => Ok((Self::builtin(), "built-in default".to_owned())),
        }
    }
}

fn validate(raw: RawConfig, origin: &str) -> Result<Config, ConfigError> {
    let invalid = |key: String, problem: String, fix: &str| ConfigError::Invalid {
        origin: origin.to_owned(),
        key,
        problem,
        fix: fix.to_owned(),
    };
    let mut listeners = Vec::new();
    for (i, l) in raw.listener.iter().enumerate() {
        let address = l.address.parse().map_err(|_| {
            invalid(
                format!("listener[{i}].address"),
                format!("is {:?}, not an IP address with a port", l.address),
                "write it like \"0.0.0.0:5000\" or \"[::]:5000\"",
            )
        })?;
        if listeners
            .iter()
            .any(|x: &ListenerConfig| x.address == address)
        {
            return Err(invalid(
                format!("listener[{i}].address"),
                format!("repeats {address}"),
                "give each listener its own address",
            ));
        }
        listeners.push(ListenerConfig { address });
    }
    if listeners.is_empty() {
        listeners.push(ListenerConfig {
            address: SocketAddr::from(([0, 0, 0, 0], 5000)),
        });
    }

    let root = raw.storage.root.unwrap_or_else(|| "./data".to_owned());
    if root.trim().is_empty() {
        return Err(invalid(
            "storage.root".into(),
            "is empty".into(),
            "name a directory, for example \"./data\" or \"/var/lib/wharf\"",
        ));
    }
    let duration = |key: &str, value: Option<String>, default: Duration| match value {
        None => Ok(default),
        Some(v) => humantime::parse_duration(&v).map_err(|e| {
            invalid(
                key.to_owned(),
                format!("is {v:?}, not a duration ({e})"),
                "write a duration like \"30s\", \"15m\" or \"24h\"",
            )
        }),
    };
    let upload_max_age = duration(
        "storage.upload_max_age",
        raw.storage.upload_max_age,
        Duration::from_secs(24 * 3600),
    )?;
    if upload_max_age < Duration::from_secs(60) {
        return Err(invalid(
            "storage.upload_max_age".into(),
            "is under a minute, which would delete uploads in progress".into(),
            "use at least \"1m\"; the default is \"24h\"",
        ));
    }
    let shutdown_grace = duration(
        "shutdown.grace",
        raw.shutdown.grace,
        Duration::from_secs(30),
    )?;

    let max_manifest_bytes = raw.registry.max_manifest_bytes.unwrap_or(4 << 20);
    if max_manifest_bytes < 1024 {
        return Err(invalid(
            "registry.max_manifest_bytes".into(),
            format!("is {max_manifest_bytes}, too small for real manifests"),
            "use at least 1024; the default is 4194304 (4 MiB)",
        ));
    }
    let manifest_cache_bytes = raw.registry.manifest_cache_bytes.unwrap_or(16 << 20);

    let format = match raw.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(invalid(
                "log.format".into(),
                format!("is {other:?}"),
                "use \"text\" or \"json\"",
            ))
        }
    };
    let level = raw.log.level.unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(invalid(
            "log.level".into(),
            format!("is {level:?}, not a log filter"),
            "use error, warn, info, debug or trace (or a filter like \"wharf=debug\")",
        ));
    }

    Ok(Config {
        listeners,
        storage: StorageConfig {
            root: PathBuf::from(root),
            upload_max_age,
        },
        registry: RegistryConfig {
            max_manifest_bytes,
            manifest_cache_bytes,
        },
        log: LogConfig {
            level,
            format,
            access_log: raw.log.access_log.unwrap_or(true),
        },
        shutdown_grace,
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
    fn log_settings_are_checked() {
        assert!(err("[log]\nformat = \"xml\"").contains("log.format"));
        assert!(err("[log]\nlevel = \"=[\"").contains("log.level"));
    }
}
