//! The delivery loop of one endpoint on one node. While it holds the endpoint's lease, a
//! pass lists the pending records in time order and sends them, per repository in order:
//! an event waiting for its retry holds back the later events of its repository, not
//! those of others. A delivered event moves to `done/` (the most recent `history` are
//! kept), one given up to `failed/` (kept until removed). Between passes the worker sleeps
//! until this node emits, the next retry is due, or `poll` has passed (for events other
//! nodes wrote), whichever is first.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::endpoint::Endpoint;
use super::format::Source;
use super::lease::Lease;
use super::metrics::EventMetrics;
use super::record::{now_ms, Finished, Pending};
use crate::registry::storage::{RecordKey, Storage, StorageError, StorageResult};

pub struct Worker {
    pub endpoint: Arc<Endpoint>,
    pub storage: Arc<dyn Storage>,
    pub lease: Lease,
    pub source: Source,
    pub metrics: EventMetrics,
    pub poll: Duration,
    pub history: usize,
}

impl Worker {
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.endpoint.config.name.clone();
        loop {
            let wait = match self.lease.hold().await {
                Ok(true) => match self.pass().await {
                    Ok(next) => next.map_or(self.poll, |n| n.min(self.poll)),
                    Err(error) => {
                        tracing::warn!(endpoint = %name, %error, "notification outbox unreadable");
                        self.poll
                    }
                },
                Ok(false) => self.poll,
                Err(error) => {
                    tracing::warn!(endpoint = %name, %error, "notification lease unavailable");
                    self.poll
                }
            };
            tokio::select! {
                () = self.endpoint.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => break,
            }
        }
        self.lease.release().await;
    }

    /// One pass over the queue. Returns how soon a retry is due, if one is waiting.
    async fn pass(&mut self) -> StorageResult<Option<Duration>> {
        let keys = self
            .storage
            .list_records(&self.endpoint.folders.pending)
            .await?;
        self.observe_queue(&keys);
        let mut held_back: HashSet<String> = HashSet::new();
        let mut next_due: Option<Duration> = None;
        let mut finished_any = false;
        for key in keys {
            // Renews as it goes; a node that lost the lease stops at once.
            if !self.lease.hold().await? {
                break;
            }
            let Some((bytes, _)) = self.storage.read_record(&key).await? else {
                continue; // finished meanwhile
            };
            let mut pending: Pending = match serde_json::from_slice(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(record = %key, error = %e, "unreadable pending event; skipped");
                    continue;
                }
            };
            let repo = pending.event.repository.clone();
            if held_back.contains(&repo) {
                continue;
            }
            let now = now_ms();
            if pending.next_attempt_ms > now {
                held_back.insert(repo);
                let due = Duration::from_millis(pending.next_attempt_ms - now);
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
                continue;
            }
            match self.endpoint.send(&pending.event, &self.source).await {
                Ok(()) => {
                    self.finish(&key, &pending, "delivered").await?;
                    self.count(&self.metrics.sent);
                    finished_any = true;
                }
                Err(error) => {
                    pending.attempts += 1;
                    pending.last_error = Some(error.clone());
                    let age = pending.event.time().elapsed().unwrap_or_default();
                    if self.endpoint.gives_up(pending.attempts, age) {
                        tracing::warn!(endpoint = %self.endpoint.config.name, event = %pending.event.id,
                            attempts = pending.attempts, %error, "notification given up");
                        self.finish(&key, &pending, "failed").await?;
                        self.count(&self.metrics.failed);
                        continue;
                    }
                    let delay = self.endpoint.backoff(pending.attempts);
                    tracing::info!(endpoint = %self.endpoint.config.name, event = %pending.event.id,
                        attempts = pending.attempts, %error, retry_in = ?delay, "notification not delivered");
                    pending.next_attempt_ms = now_ms() + delay.as_millis() as u64;
                    self.storage.put_record(&key, encode(&pending)?).await?;
                    self.count(&self.metrics.retries);
                    held_back.insert(repo);
                    next_due = Some(next_due.map_or(delay, |d| d.min(delay)));
                }
            }
        }
        if finished_any {
            self.prune_history().await?;
        }
        Ok(next_due)
    }

    /// Moves a pending event to `done/` or `failed/`. The history record is written first:
    /// a crash in between leaves the event pending, so it is sent again (at least once).
    async fn finish(&self, key: &RecordKey, pending: &Pending, status: &str) -> StorageResult<()> {
        let folder = match status {
            "delivered" => &self.endpoint.folders.done,
            _ => &self.endpoint.folders.failed,
        };
        let finished = Finished {
            event: pending.event.clone(),
            status: status.to_owned(),
            attempts: pending.attempts + u32::from(status == "delivered"),
            finished_ms: now_ms(),
            last_error: pending.last_error.clone(),
        };
        if let Some(history) = folder.join(key.name()) {
            let bytes = serde_json::to_vec(&finished).map_err(encode_error)?;
            self.storage
                .put_record(&history, Bytes::from(bytes))
                .await?;
        }
        self.storage.delete_record(key).await.map(drop)
    }

    /// Keeps the most recent `history` delivered events.
    async fn prune_history(&self) -> StorageResult<()> {
        let done = self
            .storage
            .list_records(&self.endpoint.folders.done)
            .await?;
        let excess = done.len().saturating_sub(self.history);
        for key in &done[..excess] {
            self.storage.delete_record(key).await?;
        }
        Ok(())
    }

    fn observe_queue(&self, keys: &[RecordKey]) {
        let label = EventMetrics::label(&self.endpoint.config.name);
        self.metrics
            .queue_depth
            .get_or_create(&label)
            .set(keys.len() as i64);
        // Names start with the event's time in microseconds (see `record`).
        let oldest = keys
            .first()
            .and_then(|k| k.name().split('-').next()?.parse::<u64>().ok())
            .map_or(0, |micros| now_ms().saturating_sub(micros / 1000) / 1000);
        self.metrics
            .oldest_age_seconds
            .get_or_create(&label)
            .set(oldest as i64);
    }

    fn count(
        &self,
        family: &prometheus_client::metrics::family::Family<
            super::metrics::EndpointLabel,
            prometheus_client::metrics::counter::Counter,
        >,
    ) {
        family
            .get_or_create(&EventMetrics::label(&self.endpoint.config.name))
            .inc();
    }
}

fn encode(pending: &Pending) -> StorageResult<Bytes> {
    serde_json::to_vec(pending)
        .map(Bytes::from)
        .map_err(encode_error)
}

fn encode_error(e: serde_json::Error) -> StorageError {
    StorageError::Io {
        op: "encode event",
        source: e.into(),
    }
}
