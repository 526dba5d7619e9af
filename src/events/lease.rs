//! Which node delivers an endpoint's events: the one holding its lease record. A lease is
//! taken by creating the record (create-if-absent) or by replacing an expired one at the
//! version read (compare-and-swap), so of racing nodes one wins; the holder renews it well
//! before it expires. A node that dies stops renewing, and after `lease` another takes
//! over and delivers what the dead one left, so nothing is dropped (an event the dead node
//! sent but had not yet marked is sent again: at least once).
//!
//! A holder is named `<host>/<pid>/<random>`. A lease held by a process of this host that
//! is gone (SIGKILL, a crash) counts as expired at once, so a restarted `wharf serve` or
//! `wharf gc` need not wait out a dead run's lease; another host's holder cannot be
//! checked, and its lease runs its course.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::record::now_ms;
use crate::registry::storage::records::LeaseRecord;
use crate::registry::storage::{RecordKey, Storage, StorageResult};

pub struct Lease {
    storage: Arc<dyn Storage>,
    key: RecordKey,
    /// This process's run (host, pid and a random part): unique per node and run.
    holder: String,
    duration: Duration,
    /// When this node last took or renewed the lease (Unix ms); 0 when it does not hold it.
    renewed_ms: u64,
}

impl Lease {
    pub fn new(
        storage: Arc<dyn Storage>,
        key: RecordKey,
        holder: String,
        duration: Duration,
    ) -> Self {
        Self {
            storage,
            key,
            holder,
            duration,
            renewed_ms: 0,
        }
    }

    /// Whether this node holds the lease now: renews it when a third of it has passed,
    /// takes it when it is free or expired. Cheap while recently renewed.
    pub async fn hold(&mut self) -> StorageResult<bool> {
        let now = now_ms();
        let third = self.renewal().as_millis() as u64;
        if self.renewed_ms != 0 && now < self.renewed_ms + third {
            return Ok(true);
        }
        let held = self.take(now).await?;
        self.renewed_ms = if held { now } else { 0 };
        Ok(held)
    }

    async fn take(&self, now: u64) -> StorageResult<bool> {
        let mine = LeaseRecord {
            holder: self.holder.clone(),
            expires_ms: now + self.duration.as_millis() as u64,
        };
        let bytes = Bytes::from(serde_json::to_vec(&mine).unwrap_or_default());
        let Some((current, version)) = self.storage.read_record(&self.key).await? else {
            return self.storage.create_record(&self.key, bytes).await;
        };
        match serde_json::from_slice::<LeaseRecord>(&current) {
            Ok(l) if l.holder != self.holder && l.expires_ms > now && !gone(&l.holder) => Ok(false),
            // Ours to renew, expired, or unreadable: replace exactly what was read.
            _ => {
                self.storage
                    .replace_record(&self.key, bytes, &version)
                    .await
            }
        }
    }

    /// Who holds the lease now and until when (Unix ms), as the record says.
    pub async fn holder(&self) -> StorageResult<Option<(String, u64)>> {
        let record = self.storage.read_record(&self.key).await?;
        Ok(record
            .and_then(|(bytes, _)| serde_json::from_slice::<LeaseRecord>(&bytes).ok())
            .map(|l| (l.holder, l.expires_ms)))
    }

    /// How often a holder renews: a third of the lease, so two renewals can fail before
    /// it runs out.
    pub fn renewal(&self) -> Duration {
        self.duration / 3
    }

    /// Gives the lease up (at shutdown), so another node need not wait for it to expire.
    pub async fn release(&mut self) {
        if self.renewed_ms == 0 {
            return;
        }
        self.renewed_ms = 0;
        let Ok(Some((current, version))) = self.storage.read_record(&self.key).await else {
            return;
        };
        let ours =
            serde_json::from_slice::<LeaseRecord>(&current).is_ok_and(|l| l.holder == self.holder);
        if ours {
            let expired = LeaseRecord {
                holder: self.holder.clone(),
                expires_ms: 0,
            };
            let bytes = Bytes::from(serde_json::to_vec(&expired).unwrap_or_default());
            let _ = self
                .storage
                .replace_record(&self.key, bytes, &version)
                .await;
        }
    }
}

/// Whether `holder` (`<host>/<pid>/<random>`) was a process of this host whose pid is
/// gone. (This process's own pid under another name is not taken for an earlier run:
/// several engines of one process, or test nodes, hold leases side by side.)
fn gone(holder: &str) -> bool {
    let mut parts = holder.split('/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse().ok())) else {
        return false;
    };
    let here = crate::registry::storage::object::host_name();
    !here.is_empty() && host == here && !crate::registry::storage::object::process_alive(pid)
}

/// A holder name for this process: `<host>/<pid>/<random>`, unique per run.
pub fn holder_name() -> String {
    let host = crate::registry::storage::object::host_name();
    let host = match host.is_empty() {
        true => "wharf".to_owned(),
        false => host,
    };
    format!("{host}/{}/{}", std::process::id(), uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::storage::fs::FsStorage;

    fn lease(storage: &Arc<dyn Storage>, holder: &str, duration: Duration) -> Lease {
        let key = RecordKey::new("events/ci/lease").unwrap();
        Lease::new(storage.clone(), key, holder.into(), duration)
    }

    #[tokio::test]
    async fn one_holder_at_a_time_until_it_expires_or_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        let mut a = lease(&storage, "a", Duration::from_secs(60));
        let mut b = lease(&storage, "b", Duration::from_secs(60));
        assert!(a.hold().await.unwrap());
        assert!(!b.hold().await.unwrap());
        assert!(a.hold().await.unwrap(), "the holder keeps it");
        a.release().await;
        assert!(b.hold().await.unwrap(), "released, another takes it");
        assert!(!a.hold().await.unwrap());
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        // A holder that died: its lease expired a second ago.
        let dead = LeaseRecord {
            holder: "dead".into(),
            expires_ms: now_ms() - 1000,
        };
        let key = RecordKey::new("events/ci/lease").unwrap();
        let bytes = Bytes::from(serde_json::to_vec(&dead).unwrap());
        storage.put_record(&key, bytes).await.unwrap();
        let mut b = lease(&storage, "b", Duration::from_secs(60));
        assert!(b.hold().await.unwrap());
    }

    /// A killed `wharf gc` on this host leaves its lease behind; its restart takes it at
    /// once. A live holder of this host, or one of another host, keeps it.
    #[tokio::test]
    async fn a_lease_of_a_dead_process_of_this_host_is_taken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        let host = crate::registry::storage::object::host_name();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let parent = std::os::unix::process::parent_id();
        for (holder, taken) in [
            (format!("{host}/{parent}/x"), false),
            (format!("elsewhere-{host}/{dead_pid}/x"), false),
            (
                format!("{host}/{}/another-engine", std::process::id()),
                false,
            ),
            (format!("{host}/{dead_pid}/x"), true),
        ] {
            let record = LeaseRecord {
                holder: holder.clone(),
                expires_ms: now_ms() + 60_000,
            };
            let key = RecordKey::new("events/ci/lease").unwrap();
            let bytes = Bytes::from(serde_json::to_vec(&record).unwrap());
            storage.put_record(&key, bytes).await.unwrap();
            let mut b = lease(&storage, &holder_name(), Duration::from_secs(60));
            assert_eq!(b.hold().await.unwrap(), taken, "{holder}");
        }
    }
}
