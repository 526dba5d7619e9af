//! What the last garbage collection of a storage root did, for `GET /wharf/api/v1/gc` and
//! the web UI. The collector (`gc::schedule`) writes it; the engine only holds and shows it,
//! so the registry layers never import the collector. One per storage root, shared by the
//! engines of a reload (like the catalog).

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::registry::storage::records::LeaseRecord;
use crate::registry::storage::{RecordKey, Storage, StorageResult};

/// The GC lease's record (`gc::leased` takes it).
pub const LEASE_KEY: &str = "gc/lease";

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    Success,
    Failure,
    /// Another node (or `wharf gc`) held the GC lease: this node did nothing.
    Skipped,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Skipped => "skipped",
        }
    }
}

/// One finished run on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub started: SystemTime,
    pub ended: SystemTime,
    pub result: RunResult,
    /// Why it failed (storage's message; nothing secret is in it).
    pub error: Option<String>,
    /// Tags retention deleted.
    pub tags_deleted: usize,
    /// Blobs (layers, configs, manifests) deleted, and their bytes.
    pub objects_freed: usize,
    pub bytes_freed: u64,
    /// Links removed (untagged manifests, with `untagged = "delete"`).
    pub links_removed: usize,
}

#[derive(Clone, Debug, Default)]
struct State {
    last: Option<LastRun>,
    running_since: Option<SystemTime>,
    next: Option<SystemTime>,
    /// The schedule, in seconds between runs (`None`: only `wharf gc`).
    interval_secs: Option<u64>,
}

/// What [`GcStatus`] holds at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Time between scheduled runs; `None`: only `wharf gc`.
    pub interval: Option<Duration>,
    pub running_since: Option<SystemTime>,
    pub next_run: Option<SystemTime>,
    pub last_run: Option<LastRun>,
}

#[derive(Debug, Default)]
pub struct GcStatus {
    state: Mutex<State>,
}

impl GcStatus {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn scheduled(&self, interval: Option<std::time::Duration>, next: Option<SystemTime>) {
        self.with(|s| {
            s.interval_secs = interval.map(|i| i.as_secs());
            s.next = next;
        });
    }

    pub fn started(&self, at: SystemTime) {
        self.with(|s| {
            s.running_since = Some(at);
            s.next = None;
        });
    }

    pub fn finished(&self, run: LastRun) {
        self.with(|s| {
            s.running_since = None;
            s.last = Some(run);
        });
    }

    /// The storage's latest run as recorded (perhaps by another node), if newer than the
    /// one shown.
    pub fn seen(&self, run: LastRun) {
        self.with(|s| {
            if s.last.as_ref().is_none_or(|l| l.ended < run.ended) {
                s.last = Some(run);
            }
        });
    }

    /// This node's attempt found another collector running: nothing of its own to show.
    pub fn finished_elsewhere(&self) {
        self.with(|s| s.running_since = None);
    }

    /// A copy of what it holds now (the web UI's storage page shows it).
    pub fn snapshot(&self) -> Snapshot {
        self.with(|s| Snapshot {
            interval: s.interval_secs.map(Duration::from_secs),
            running_since: s.running_since,
            next_run: s.next,
            last_run: s.last.clone(),
        })
    }

    pub fn last(&self) -> Option<LastRun> {
        self.with(|s| s.last.clone())
    }

    /// [`GcStatus::to_json`] with who holds the GC lease now, by its record (any node's
    /// scheduled run or a `wharf gc`; `null` when free or expired).
    pub async fn report(&self, storage: &dyn Storage) -> StorageResult<serde_json::Value> {
        let mut report = self.to_json();
        let key = RecordKey::new(LEASE_KEY)
            .unwrap_or_else(|| unreachable!("{LEASE_KEY} is a valid record key"));
        let now = SystemTime::now();
        let held = storage
            .read_record(&key)
            .await?
            .and_then(|(bytes, _)| serde_json::from_slice::<LeaseRecord>(&bytes).ok())
            .map(|l| (l.holder, UNIX_EPOCH + Duration::from_millis(l.expires_ms)))
            .filter(|(_, until)| *until > now);
        report["lease"] = held.map_or(serde_json::Value::Null, |(holder, until)| {
            let until = humantime::format_rfc3339_seconds(until).to_string();
            serde_json::json!({ "holder": holder, "expires": until })
        });
        Ok(report)
    }

    /// The JSON `GET /wharf/api/v1/gc` answers (times in RFC 3339, UTC), without the lease.
    pub fn to_json(&self) -> serde_json::Value {
        let s = self.with(|s| s.clone());
        let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
        let last = s.last.map(|r| {
            serde_json::json!({
                "started": time(r.started),
                "ended": time(r.ended),
                "result": r.result,
                "error": r.error,
                "tags_deleted": r.tags_deleted,
                "objects_freed": r.objects_freed,
                "bytes_freed": r.bytes_freed,
                "links_removed": r.links_removed,
            })
        });
        serde_json::json!({
            "interval_seconds": s.interval_secs,
            "running_since": s.running_since.map(time),
            "next_run": s.next.map(time),
            "last_run": last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_json_shows_the_last_run_and_the_next() {
        let status = GcStatus::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        status.scheduled(Some(Duration::from_secs(3600)), Some(t0));
        assert_eq!(status.to_json()["last_run"], serde_json::Value::Null);
        status.started(t0);
        assert_eq!(status.to_json()["running_since"], "2023-11-14T22:13:20Z");
        status.finished(LastRun {
            started: t0,
            ended: t0 + Duration::from_secs(2),
            result: RunResult::Success,
            error: None,
            tags_deleted: 1,
            objects_freed: 3,
            bytes_freed: 300,
            links_removed: 2,
        });
        let j = status.to_json();
        assert_eq!(j["last_run"]["result"], "success");
        assert_eq!(j["last_run"]["bytes_freed"], 300);
        assert_eq!(j["last_run"]["ended"], "2023-11-14T22:13:22Z");
        assert_eq!(j["interval_seconds"], 3600);
        assert_eq!(j["running_since"], serde_json::Value::Null);
    }
}
