//! One endpoint ready to deliver: its config, client, secrets read once at start-up, and
//! what decides whether an event is for it and when to try again.

use std::io;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::Notify;

use super::format::{self, Source};
use super::record::{Folders, StoredEvent};
use super::sign;
use crate::config::{EndpointConfig, GiveUp};
use crate::http_client::HttpClient;
use crate::registry::service::event::{Action, Event, TargetKind};
use crate::registry::storage::object::read_secret;

pub struct Endpoint {
    pub config: EndpointConfig,
    pub folders: Folders,
    client: HttpClient,
    /// The signing key, read from its source at start-up; never logged.
    secret: Option<Vec<u8>>,
    /// The configured headers with their values read; never logged.
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Woken when this node writes an event, so delivery starts at once.
    pub wake: Notify,
}

impl Endpoint {
    /// Reads the endpoint's secrets and CA; an error names the config key.
    pub fn new(config: EndpointConfig) -> io::Result<Self> {
        let key = |k: &str| format!("notifications.endpoint {:?} {k}", config.name);
        let folders = Folders::of(&config.name)
            .ok_or_else(|| io::Error::other(format!("{}: not a valid name", key("name"))))?;
        let client = HttpClient::new(config.ca_file.as_deref())
            .map_err(|e| io::Error::other(format!("{}: {e}", key("ca_file"))))?;
        let secret = match &config.secret {
            Some(source) => Some(read_secret(&key("secret"), source)?.into_bytes()),
            None => None,
        };
        let mut headers = Vec::new();
        for (name, source) in &config.headers {
            let value = read_secret(&key(&format!("header {name} value")), source)?;
            let mut value = http::HeaderValue::from_str(&value).map_err(|_| {
                io::Error::other(format!("{}: not a valid header value", key("header")))
            })?;
            value.set_sensitive(true);
            headers.push((name.clone(), value));
        }
        Ok(Self {
            config,
            folders,
            client,
            secret,
            headers,
            wake: Notify::new(),
        })
    }

    /// Whether the endpoint's filters let `event` through.
    pub fn wants(&self, event: &Event) -> bool {
        let c = &self.config;
        let action = event.action.as_str();
        let asked = c.actions.iter().any(|a| a == action);
        // Pulls are many: only with `pulls`. Cache fills are no registry:2 action: only
        // when named in `actions`, so consumers of registry:2's events see nothing new.
        let by_kind = match event.action {
            Action::Pull => c.pulls,
            Action::Fetch => asked,
            Action::Push | Action::Mount | Action::Delete => true,
        };
        by_kind
            && (c.actions.is_empty() || asked)
            && c.wants_repository(event.target.repository.as_str())
            && match &event.target.media_type {
                Some(m) => c.media_types.is_empty() || c.media_types.contains(m),
                None => true,
            }
            && !c
                .ignore_media_types
                .iter()
                .any(|m| Some(m.as_str()) == announced_media_type(event))
    }

    /// Delivers one event: `Ok` when the endpoint answered 2xx, else what went wrong (for
    /// the record and the log; it never holds a header value or the secret).
    pub async fn send(&self, event: &StoredEvent, source: &Source) -> Result<(), String> {
        let (body, media_type) = format::body(self.config.format, event, source);
        let mut request = http::Request::post(self.config.url.clone())
            .header(http::header::CONTENT_TYPE, media_type)
            .header(
                http::header::USER_AGENT,
                concat!("wharf/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(secret) = &self.secret {
            let now = UNIX_EPOCH.elapsed().unwrap_or_default().as_secs();
            request = request.header(sign::HEADER, sign::signature(secret, now, &body));
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("building the request: {e}"))?;
        match self.client.send(request, self.config.timeout).await {
            Ok(answer) if answer.status.is_success() => Ok(()),
            Ok(answer) => Err(format!(
                "HTTP {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The delay before attempt `attempts + 1`: `backoff`, doubling, up to `max_backoff`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        backoff(self.config.backoff, self.config.max_backoff, attempts)
    }

    /// Whether an event that has failed `attempts` times, and happened `age` ago, is given up.
    pub fn gives_up(&self, attempts: u32, age: Duration) -> bool {
        match self.config.give_up {
            GiveUp::Attempts(n) => attempts >= n,
            GiveUp::Age(max) => age >= max,
        }
    }
}

fn backoff(first: Duration, max: Duration, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(31);
    first.saturating_mul(1u32 << doublings).min(max)
}

/// The media type an event is announced with: a blob's is registry:2's
/// `application/octet-stream`, as the envelope says.
fn announced_media_type(event: &Event) -> Option<&str> {
    match (&event.target.media_type, event.target.kind) {
        (Some(m), _) => Some(m),
        (None, TargetKind::Blob) => Some(format::BLOB_MEDIA_TYPE),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let (first, max) = (Duration::from_secs(1), Duration::from_secs(10));
        let delays: Vec<u64> = (1..=6).map(|n| backoff(first, max, n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff(first, max, 1000), max);
    }
}
