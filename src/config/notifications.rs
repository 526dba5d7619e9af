//! `[notifications]`: webhook endpoints that receive repository events (push, pull, mount,
//! delete) from a durable outbox, with their format, signing secret, headers, retries and
//! filters.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::storage::{secret_source, SecretSource};
use super::{Check, ConfigError};

/// `[notifications]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    /// How long a node's claim on an endpoint's queue lasts without renewal.
    pub lease: Option<String>,
    /// How often the queue is looked at for events other nodes wrote.
    pub poll: Option<String>,
    /// How many delivered (or failed) events each endpoint keeps for `wharf events`.
    pub history: Option<usize>,
    #[serde(default)]
    pub endpoint: Vec<RawEndpoint>,
}

/// `[[notifications.endpoint]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub name: Option<String>,
    pub url: Option<String>,
    pub ca_file: Option<String>,
    pub format: Option<String>,
    pub timeout: Option<String>,
    pub pulls: Option<bool>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub secret_env: Option<String>,
    pub max_attempts: Option<u32>,
    pub max_age: Option<String>,
    pub backoff: Option<String>,
    pub max_backoff: Option<String>,
    pub repositories: Option<Vec<String>>,
    pub actions: Option<Vec<String>>,
    pub media_types: Option<Vec<String>>,
    /// registry:2's `ignoredmediatypes`: events of these media types are not sent.
    pub ignore_media_types: Option<Vec<String>>,
    #[serde(default)]
    pub header: Vec<RawHeader>,
}

/// `[[notifications.endpoint.header]]`: a header sent with every delivery.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: Option<String>,
    pub value: Option<String>,
    pub value_file: Option<String>,
    pub value_env: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NotificationsConfig {
    pub lease: Duration,
    pub poll: Duration,
    pub history: usize,
    pub endpoints: Vec<EndpointConfig>,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        Self {
            lease: DEFAULT_LEASE,
            poll: DEFAULT_POLL,
            history: DEFAULT_HISTORY,
            endpoints: Vec::new(),
        }
    }
}

/// The body format an endpoint receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFormat {
    /// registry:2's envelope, `application/vnd.docker.distribution.events.v1+json`.
    Distribution,
    /// CloudEvents 1.0, structured mode, `application/cloudevents+json`.
    CloudEvents,
}

/// When an event that keeps failing is given up (marked failed and kept visible).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GiveUp {
    Attempts(u32),
    Age(Duration),
}

#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Names the endpoint's queue in storage, its metrics and `wharf events`.
    pub name: String,
    pub url: http::Uri,
    /// Trusted besides the system's roots, for an https endpoint with a private CA.
    pub ca_file: Option<PathBuf>,
    pub format: EventFormat,
    pub timeout: Duration,
    pub pulls: bool,
    /// Signs every body (HMAC-SHA256) when set.
    pub secret: Option<SecretSource>,
    /// Header name and where its value comes from (values are never logged).
    pub headers: Vec<(http::HeaderName, SecretSource)>,
    pub give_up: GiveUp,
    /// The first retry's delay; each later one doubles, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Repository patterns (exact, `prefix*` or `*`); empty is every repository.
    pub repositories: Vec<String>,
    /// `push`, `pull`, `mount`, `delete`; empty is all of them.
    pub actions: Vec<String>,
    /// Empty is every media type (events without one, such as tag deletes, always pass).
    pub media_types: Vec<String>,
    /// Media types whose events are not sent (a blob's is `application/octet-stream`, as
    /// registry:2 says), as registry:2's `ignoredmediatypes`.
    pub ignore_media_types: Vec<String>,
}

impl EndpointConfig {
    /// Whether `repo` matches one of the endpoint's repository patterns.
    pub fn wants_repository(&self, repo: &str) -> bool {
        self.repositories.is_empty()
            || self.repositories.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => repo.starts_with(prefix),
                None => p == repo,
            })
    }
}

const DEFAULT_LEASE: Duration = Duration::from_secs(30);
const DEFAULT_POLL: Duration = Duration::from_secs(2);
const DEFAULT_HISTORY: usize = 100;
/// registry:2's actions, and `fetch` (a mirror route's cache fill, asked for by name).
const ACTIONS: [&str; 5] = ["push", "pull", "mount", "delete", "fetch"];

pub(super) fn validate(
    check: &Check,
    raw: &RawNotifications,
) -> Result<NotificationsConfig, ConfigError> {
    let lease = check.duration("notifications.lease", raw.lease.as_deref(), DEFAULT_LEASE)?;
    if lease < Duration::from_secs(1) {
        return Err(check.invalid(
            "notifications.lease",
            format!("is {lease:?}, shorter than a delivery round trip"),
            "use at least \"1s\"; the default is \"30s\"",
        ));
    }
    let poll = check.duration("notifications.poll", raw.poll.as_deref(), DEFAULT_POLL)?;
    if poll.is_zero() {
        return Err(check.invalid(
            "notifications.poll",
            "is zero",
            "use a duration like \"2s\"",
        ));
    }
    let mut endpoints: Vec<EndpointConfig> = Vec::new();
    for (i, e) in raw.endpoint.iter().enumerate() {
        let endpoint = endpoint(check, i, e)?;
        if endpoints.iter().any(|o| o.name == endpoint.name) {
            return Err(check.invalid(
                format!("notifications.endpoint[{i}].name"),
                format!("{:?} is used twice", endpoint.name),
                "give every endpoint its own name (it names its queue)",
            ));
        }
        endpoints.push(endpoint);
    }
    Ok(NotificationsConfig {
        lease,
        poll,
        history: raw.history.unwrap_or(DEFAULT_HISTORY),
        endpoints,
    })
}

fn endpoint(check: &Check, i: usize, raw: &RawEndpoint) -> Result<EndpointConfig, ConfigError> {
    let key = |k: &str| format!("notifications.endpoint[{i}].{k}");
    let name = match raw.name.as_deref() {
        None => return Err(check.invalid(key("name"), "is missing", "add name = \"ci\"")),
        Some(n) if valid_name(n) => n.to_owned(),
        Some(n) => {
            return Err(check.invalid(
                key("name"),
                format!("is {n:?}"),
                "use 1 to 64 of a-z, 0-9, '-' and '_'",
            ))
        }
    };
    let url = url(check, &key("url"), raw.url.as_deref())?;
    let ca_file = match raw.ca_file.as_deref() {
        None => None,
        Some(f) if Path::new(f).is_file() => Some(PathBuf::from(f)),
        Some(f) => {
            return Err(check.invalid(
                key("ca_file"),
                format!("names {f:?}, which does not exist"),
                "give the PEM file of the CA that signed the endpoint's certificate",
            ))
        }
    };
    let format = match raw.format.as_deref() {
        None | Some("distribution") => EventFormat::Distribution,
        Some("cloudevents") => EventFormat::CloudEvents,
        Some(other) => {
            return Err(check.invalid(
                key("format"),
                format!("is {other:?}"),
                "use \"distribution\" (registry:2's envelope) or \"cloudevents\"",
            ))
        }
    };
    let timeout = check.duration(
        &key("timeout"),
        raw.timeout.as_deref(),
        Duration::from_secs(10),
    )?;
    let secret = secret_source(
        check,
        &key("secret"),
        "the signing secret",
        [&raw.secret, &raw.secret_file, &raw.secret_env],
    )?;
    let give_up = give_up(check, i, raw)?;
    let backoff = check.duration(
        &key("backoff"),
        raw.backoff.as_deref(),
        Duration::from_secs(1),
    )?;
    let max_backoff = check.duration(
        &key("max_backoff"),
        raw.max_backoff.as_deref(),
        Duration::from_secs(600),
    )?;
    if backoff.is_zero() || max_backoff < backoff {
        return Err(check.invalid(
            key("max_backoff"),
            format!("is {max_backoff:?}, with backoff {backoff:?}"),
            "backoff must be above zero and max_backoff at least backoff",
        ));
    }
    Ok(EndpointConfig {
        name,
        url,
        ca_file,
        format,
        timeout,
        pulls: raw.pulls.unwrap_or(false),
        secret,
        headers: headers(check, i, &raw.header)?,
        give_up,
        backoff,
        max_backoff,
        repositories: repositories(check, &key("repositories"), &raw.repositories)?,
        actions: actions(check, &key("actions"), &raw.actions)?,
        media_types: raw.media_types.clone().unwrap_or_default(),
        ignore_media_types: raw.ignore_media_types.clone().unwrap_or_default(),
    })
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn url(check: &Check, key: &str, raw: Option<&str>) -> Result<http::Uri, ConfigError> {
    let fix = "write it like \"https://hooks.example.com/wharf\"";
    let Some(text) = raw else {
        return Err(check.invalid(key, "is missing", fix));
    };
    match text.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Ok(u),
        _ => Err(check.invalid(key, format!("is {text:?}, not an http or https URL"), fix)),
    }
}

fn give_up(check: &Check, i: usize, raw: &RawEndpoint) -> Result<GiveUp, ConfigError> {
    let key = |k: &str| format!("notifications.endpoint[{i}].{k}");
    match (raw.max_attempts, raw.max_age.as_deref()) {
        (Some(_), Some(_)) => Err(check.invalid(
            key("max_age"),
            "is set next to max_attempts",
            "keep one of them: how many tries, or how long, before an event is given up",
        )),
        (Some(0), None) => Err(check.invalid(key("max_attempts"), "is 0", "use at least 1")),
        (Some(n), None) => Ok(GiveUp::Attempts(n)),
        (None, age) => Ok(GiveUp::Age(check.duration(
            &key("max_age"),
            age,
            Duration::from_secs(24 * 3600),
        )?)),
    }
}

fn headers(
    check: &Check,
    i: usize,
    raw: &[RawHeader],
) -> Result<Vec<(http::HeaderName, SecretSource)>, ConfigError> {
    let mut out = Vec::new();
    for (j, h) in raw.iter().enumerate() {
        let key = format!("notifications.endpoint[{i}].header[{j}]");
        let name = h
            .name
            .as_deref()
            .and_then(|n| http::HeaderName::from_bytes(n.as_bytes()).ok())
            .ok_or_else(|| {
                check.invalid(
                    format!("{key}.name"),
                    "is missing or not a header name",
                    "write it like name = \"Authorization\"",
                )
            })?;
        let value = secret_source(
            check,
            &format!("{key}.value"),
            "the header's value",
            [&h.value, &h.value_file, &h.value_env],
        )?
        .ok_or_else(|| {
            check.invalid(
                format!("{key}.value"),
                "is missing",
                "give value, value_file or value_env",
            )
        })?;
        out.push((name, value));
    }
    Ok(out)
}

fn repositories(
    check: &Check,
    key: &str,
    raw: &Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    let patterns = raw.clone().unwrap_or_default();
    for p in &patterns {
        let body = p.strip_suffix('*').unwrap_or(p);
        if body.contains('*') || (body.is_empty() && p.is_empty()) {
            return Err(check.invalid(
                key,
                format!("has {p:?}"),
                "use an exact name like \"team/app\", a prefix like \"team/*\", or \"*\"",
            ));
        }
    }
    Ok(patterns)
}

fn actions(
    check: &Check,
    key: &str,
    raw: &Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    let actions = raw.clone().unwrap_or_default();
    if let Some(bad) = actions.iter().find(|a| !ACTIONS.contains(&a.as_str())) {
        return Err(check.invalid(
            key,
            format!("has {bad:?}"),
            "use \"push\", \"pull\", \"mount\" and \"delete\"",
        ));
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn parse(endpoint: &str) -> Result<Config, ConfigError> {
        let text = format!("[[notifications.endpoint]]\nname = \"ci\"\n{endpoint}");
        Config::from_toml(&text, "test")
    }

    fn err(endpoint: &str) -> String {
        parse(endpoint).unwrap_err().to_string()
    }

    fn ok(endpoint: &str) -> EndpointConfig {
        parse(endpoint).unwrap().notifications.endpoints.remove(0)
    }

    #[test]
    fn an_endpoint_has_safe_defaults() {
        let e = ok("url = \"http://127.0.0.1:9/hook\"");
        assert_eq!(e.format, EventFormat::Distribution);
        assert!(!e.pulls);
        assert!(e.secret.is_none());
        assert_eq!(e.timeout, Duration::from_secs(10));
        assert_eq!(e.give_up, GiveUp::Age(Duration::from_secs(86400)));
        assert!(e.wants_repository("any/thing"));
    }

    #[test]
    fn no_endpoints_by_default() {
        let c = Config::from_toml("", "test").unwrap();
        assert!(c.notifications.endpoints.is_empty());
    }

    #[test]
    fn the_url_must_be_http_or_https() {
        let e = err("url = \"ftp://example.com/x\"");
        assert!(e.contains("notifications.endpoint[0].url"), "{e}");
        assert!(e.contains("test:3"), "names the line: {e}");
        assert!(err("").contains("`notifications.endpoint[0].url` is missing"));
    }

    #[test]
    fn the_name_is_required_and_plain() {
        let e = Config::from_toml("[[notifications.endpoint]]\nurl = \"http://a/\"", "t");
        assert!(e.unwrap_err().to_string().contains("name` is missing"));
        let e = Config::from_toml(
            "[[notifications.endpoint]]\nname = \"A B\"\nurl = \"http://a/\"",
            "t",
        );
        assert!(e.unwrap_err().to_string().contains("a-z, 0-9"));
    }

    #[test]
    fn names_are_unique() {
        let one = "[[notifications.endpoint]]\nname = \"ci\"\nurl = \"http://a/\"\n";
        let e = Config::from_toml(&format!("{one}{one}"), "t").unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
    }

    #[test]
    fn the_format_is_one_of_two() {
        let e = ok("url = \"http://a/\"\nformat = \"cloudevents\"");
        assert_eq!(e.format, EventFormat::CloudEvents);
        assert!(err("url = \"http://a/\"\nformat = \"xml\"").contains("cloudevents"));
    }

    #[test]
    fn a_missing_ca_file_is_an_error() {
        let e = err("url = \"https://a/\"\nca_file = \"/nonexistent/ca.pem\"");
        assert!(e.contains("ca_file"), "{e}");
    }

    #[test]
    fn max_attempts_and_max_age_exclude_each_other() {
        let e = err("url = \"http://a/\"\nmax_attempts = 3\nmax_age = \"1h\"");
        assert!(e.contains("max_attempts"), "{e}");
        assert!(err("url = \"http://a/\"\nmax_attempts = 0").contains("at least 1"));
        let e = ok("url = \"http://a/\"\nmax_attempts = 5");
        assert_eq!(e.give_up, GiveUp::Attempts(5));
    }

    #[test]
    fn backoff_must_not_exceed_its_cap() {
        let e = err("url = \"http://a/\"\nbackoff = \"10s\"\nmax_backoff = \"1s\"");
        assert!(e.contains("max_backoff"), "{e}");
    }

    #[test]
    fn actions_are_known_ones() {
        let e = err("url = \"http://a/\"\nactions = [\"push\", \"tag\"]");
        assert!(e.contains("\"tag\""), "{e}");
    }

    #[test]
    fn repository_patterns_are_exact_or_prefix() {
        let e = ok("url = \"http://a/\"\nrepositories = [\"team/*\", \"solo\"]");
        assert!(e.wants_repository("team/app"));
        assert!(e.wants_repository("solo"));
        assert!(!e.wants_repository("solo/x"));
        assert!(!e.wants_repository("other"));
        assert!(err("url = \"http://a/\"\nrepositories = [\"a*b\"]").contains("prefix"));
    }

    #[test]
    fn header_values_come_from_one_source_and_never_show_in_debug() {
        let e = ok("url = \"http://a/\"\n[[notifications.endpoint.header]]\n\
                    name = \"Authorization\"\nvalue = \"Bearer s3cr3t\"");
        assert_eq!(e.headers[0].0, "authorization");
        assert!(!format!("{e:?}").contains("s3cr3t"));
        let e = err("url = \"http://a/\"\n[[notifications.endpoint.header]]\nname = \"X\"");
        assert!(e.contains("header[0].value` is missing"), "{e}");
        let e = err("url = \"http://a/\"\n[[notifications.endpoint.header]]\n\
                     name = \"X\"\nvalue_env = \"WHARF_TEST_UNSET_VARIABLE\"");
        assert!(e.contains("value_env"), "{e}");
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let e = ok("url = \"http://a/\"\nsecret = \"hunter2\"");
        assert!(e.secret.is_some());
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn lease_and_poll_are_checked() {
        let e = Config::from_toml("[notifications]\nlease = \"10ms\"", "t").unwrap_err();
        assert!(e.to_string().contains("notifications.lease"), "{e}");
        let e = Config::from_toml("[notifications]\npoll = \"0s\"", "t").unwrap_err();
        assert!(e.to_string().contains("notifications.poll"), "{e}");
    }

    #[test]
    fn unknown_endpoint_keys_are_errors() {
        assert!(err("url = \"http://a/\"\nretries = 3").contains("unknown field `retries`"));
    }
}
