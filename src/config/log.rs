//! `[log]`: wharf's own log (level, text or JSON, on stderr) and the access log (one line
//! per request, nginx's combined format or JSON, to stderr, a file, or nowhere).

use std::path::PathBuf;

use super::raw::RawLog;
use super::{Check, ConfigError};

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `wharf=debug`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
    /// Where access lines go.
    pub access: AccessTarget,
    pub access_format: AccessFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where access lines are written: bare lines, as nginx writes them, with no log-event
/// prefix, so combined-log parsers read them as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessTarget {
    Off,
    Stderr,
    /// Appended to this file (opened again on SIGHUP, so logrotate can move it away).
    File(PathBuf),
}

/// The access log's line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessFormat {
    /// nginx's `combined`, followed by `vhost=`, `route=` and `rt=` (seconds).
    Combined,
    /// One JSON object per request.
    Json,
}

pub(super) fn validate(check: &Check, raw: &RawLog) -> Result<LogConfig, ConfigError> {
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(check.invalid(
                "log.format",
                format!("is {other:?}"),
                "use \"text\" or \"json\"",
            ))
        }
    };
    let level = raw.level.clone().unwrap_or_else(|| "info".to_owned());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(check.invalid(
            "log.level",
            format!("is {level:?}, not a log filter"),
            "use error, warn, info, debug or trace (or a filter like \"wharf=debug\")",
        ));
    }
    let access = match (raw.access.as_deref(), raw.access_log) {
        (Some(_), Some(_)) => {
            return Err(check.invalid(
                "log.access_log",
                "is set next to log.access",
                "remove access_log; access = \"off\" turns the access log off",
            ))
        }
        (None, Some(false)) | (Some("off"), None) => AccessTarget::Off,
        (None, _) | (Some("stderr"), None) => AccessTarget::Stderr,
        (Some(""), None) => {
            return Err(check.invalid(
                "log.access",
                "is empty",
                "use \"stderr\", \"off\" or a file path like \"/var/log/wharf/access.log\"",
            ))
        }
        (Some(path), None) => AccessTarget::File(PathBuf::from(path)),
    };
    let access_format = match raw.access_format.as_deref() {
        // Next to a JSON log on stderr, JSON keeps every line parseable.
        None if format == LogFormat::Json => AccessFormat::Json,
        None | Some("combined") => AccessFormat::Combined,
        Some("json") => AccessFormat::Json,
        Some(other) => {
            return Err(check.invalid(
                "log.access_format",
                format!("is {other:?}"),
                "use \"combined\" or \"json\"",
            ))
        }
    };
    Ok(LogConfig {
        level,
        format,
        access,
        access_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn log(text: &str) -> Result<LogConfig, String> {
        Config::from_toml(&format!("[log]\n{text}"), "test")
            .map(|c| c.log)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn log_settings_are_checked() {
        assert!(log("format = \"xml\"").unwrap_err().contains("log.format"));
        assert!(log("level = \"=[\"").unwrap_err().contains("log.level"));
        assert!(log("access_format = \"apache\"")
            .unwrap_err()
            .contains("log.access_format"));
        assert!(log("access = \"\"").unwrap_err().contains("log.access"));
    }

    #[test]
    fn access_lines_go_to_stderr_a_file_or_nowhere() {
        assert_eq!(log("").unwrap().access, AccessTarget::Stderr);
        assert_eq!(log("access = \"off\"").unwrap().access, AccessTarget::Off);
        assert_eq!(log("access_log = false").unwrap().access, AccessTarget::Off);
        assert_eq!(
            log("access = \"/var/log/wharf/access.log\"")
                .unwrap()
                .access,
            AccessTarget::File("/var/log/wharf/access.log".into())
        );
        let e = log("access = \"stderr\"\naccess_log = true").unwrap_err();
        assert!(e.contains("log.access_log"), "{e}");
    }

    #[test]
    fn access_lines_follow_a_json_log_unless_told() {
        assert_eq!(log("").unwrap().access_format, AccessFormat::Combined);
        let json = log("format = \"json\"").unwrap();
        assert_eq!(json.access_format, AccessFormat::Json);
        let told = log("format = \"json\"\naccess_format = \"combined\"").unwrap();
        assert_eq!(told.access_format, AccessFormat::Combined);
    }
}
