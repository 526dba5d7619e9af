//! An event as the outbox stores it, with its delivery state, and where its records live:
//!
//! ```text
//! events/<endpoint>/pending/<micros>-<id>   waiting for delivery (JSON `Pending`)
//! events/<endpoint>/done/<micros>-<id>      delivered, the most recent few (JSON `Finished`)
//! events/<endpoint>/failed/<micros>-<id>    given up after the retry policy (JSON `Finished`)
//! events/<endpoint>/lease                   which node delivers the endpoint's events
//! ```
//!
//! Names start with the event's time in microseconds, zero-padded, so listing a folder
//! lists its events in the order they happened.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::registry::service::event::{Event, TargetKind};
use crate::registry::storage::RecordKey;

/// The event, in plain strings: what the formats need and nothing that must parse again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    /// Microseconds since the Unix epoch.
    pub micros: u64,
    pub action: String,
    /// "manifest", "blob", "tag" or "repository".
    pub kind: String,
    pub repository: String,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    pub tag: Option<String>,
    pub from_repository: Option<String>,
    pub actor: Option<String>,
    pub request_id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub user_agent: String,
}

impl StoredEvent {
    pub fn from_event(e: &Event) -> Self {
        let micros = e
            .timestamp
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let t = &e.target;
        Self {
            id: e.id.clone(),
            micros,
            action: e.action.as_str().to_owned(),
            kind: match t.kind {
                TargetKind::Manifest => "manifest",
                TargetKind::Blob => "blob",
                TargetKind::Tag => "tag",
                TargetKind::Repository => "repository",
            }
            .to_owned(),
            repository: t.repository.to_string(),
            digest: t.digest.as_ref().map(ToString::to_string),
            media_type: t.media_type.clone(),
            size: t.size,
            tag: t.tag.as_ref().map(ToString::to_string),
            from_repository: t.from_repository.as_ref().map(ToString::to_string),
            actor: e.actor.name.clone(),
            request_id: e.request.id.clone(),
            addr: e.request.addr.clone(),
            host: e.request.host.clone(),
            method: e.request.method.clone(),
            user_agent: e.request.user_agent.clone(),
        }
    }

    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.micros)
    }

    /// The record name: time first (so folders list in order), then the id (unique).
    pub fn record_name(&self) -> String {
        let id: String = self
            .id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        format!("{:020}-{id}", self.micros)
    }
}

/// An event waiting for delivery, with what its attempts so far left.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub event: StoredEvent,
    pub attempts: u32,
    /// Unix milliseconds before which no further attempt is made.
    pub next_attempt_ms: u64,
    pub last_error: Option<String>,
}

/// How an event's delivery ended, for `wharf events`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Finished {
    pub event: StoredEvent,
    /// "delivered" or "failed".
    pub status: String,
    pub attempts: u32,
    pub finished_ms: u64,
    pub last_error: Option<String>,
}

/// The folders of one endpoint's records.
#[derive(Clone, Debug)]
pub struct Folders {
    pub pending: RecordKey,
    pub done: RecordKey,
    pub failed: RecordKey,
    pub lease: RecordKey,
}

impl Folders {
    /// `None` only for a name the config would have refused.
    pub fn of(endpoint: &str) -> Option<Self> {
        let base = RecordKey::new(format!("events/{endpoint}"))?;
        Some(Self {
            pending: base.join("pending")?,
            done: base.join("done")?,
            failed: base.join("failed")?,
            lease: base.join("lease")?,
        })
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn record_names_sort_in_time_order() {
        let mut a = sample();
        a.micros = 9;
        let mut b = sample();
        b.micros = 10;
        assert!(a.record_name() < b.record_name());
        assert!(RecordKey::new(a.record_name()).is_some());
    }

    #[test]
    fn a_hostile_id_cannot_leave_its_folder() {
        let mut a = sample();
        a.id = "../../etc/x y".into();
        let key = Folders::of("ci").unwrap().pending.join(&a.record_name());
        assert_eq!(key.unwrap().name(), "00000000000000000001-etcxy");
    }

    pub(crate) fn sample() -> StoredEvent {
        StoredEvent {
            id: "e1".into(),
            micros: 1,
            action: "push".into(),
            kind: "manifest".into(),
            repository: "team/app".into(),
            digest: Some(format!("sha256:{}", "a".repeat(64))),
            media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
            size: Some(512),
            tag: Some("v1".into()),
            from_repository: None,
            actor: Some("alice".into()),
            request_id: "r1".into(),
            addr: "10.0.0.1:5555".into(),
            host: "registry.example.com".into(),
            method: "PUT".into(),
            user_agent: "podman/5".into(),
        }
    }
}
