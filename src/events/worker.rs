//! The delivery loop of one endpoint on one node. While it holds the endpoint's lease, a
//! pass lists the pending records in time order and sends them, per repository in order:
//! an event waiting for its retry holds back the later events of its repository, not
//! those of others. A delivered event moves to `done/` (the most recent `history` are
//! kept), one given up to `failed/` (kept until removed). Between passes the worker sleeps
//! until this node emits, the next retry is due, or `poll` has passed (for events other
//! nodes wrote), whichever is first.

use std::collections::{HashMap, HashSet};
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
    /// The pending records read while holding the lease, so a pass over a long queue (an
    /// endpoint down for hours) is one listing, not a read per event. Only the holder
    /// changes a pending record, so the copy stays true until the lease is lost.
    pub known: HashMap<RecordKey, Pending>,
}

impl Worker {
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.endpoint.config.name.clone();
        loop {
            let wait = match self.lease.hold().await {
                Ok(true) => match self.pass(&stop).await {
                    Ok(next) => next.map_or(self.poll, |n| n.min(self.poll)),
                    Err(error) => {
                        tracing::warn!(endpoint = %name, %error, "notification outbox unreadable");
                        self.poll
                    }
                },
                Ok(false) => {
                    self.known.clear();
                    self.poll
                }
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
    async fn pass(&mut self, stop: &watch::Receiver<bool>) -> StorageResult<Option<Duration>> {
        let keys = self
            .storage
            .list_records(&self.endpoint.folders.pending)
            .await?;
        self.observe_queue(&keys);
        let mut held_back: HashSet<String> = HashSet::new();
        let mut next_due: Option<Duration> = None;
        let mut finished_any = false;
        let listed: HashSet<&RecordKey> = keys.iter().collect();
        self.known.retain(|k, _| listed.contains(k));
        for key in &keys {
            if *stop.borrow() {
                break; // shutting down: the rest stays pending for the next holder
            }
            // Renews as it goes; a node that lost the lease stops at once.
            if !self.lease.hold().await? {
                self.known.clear();
                break;
            }
            let Some(mut pending) = self.pending(key).await? else {
                continue;
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
            let Some(sent) = self.send_holding_lease(&pending).await? else {
                self.known.clear();
                break; // another node has the queue now
            };
            match sent {
                Ok(()) => {
                    self.finish(key, &pending, "delivered").await?;
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
                        self.finish(key, &pending, "failed").await?;
                        self.count(&self.metrics.failed);
                        continue;
                    }
                    let delay = self.endpoint.backoff(pending.attempts);
                    tracing::info!(endpoint = %self.endpoint.config.name, event = %pending.event.id,
                        attempts = pending.attempts, %error, retry_in = ?delay, "notification not delivered");
                    pending.next_attempt_ms = now_ms() + delay.as_millis() as u64;
                    self.storage.put_record(key, encode(&pending)?).await?;
                    self.known.insert(key.clone(), pending);
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

    /// Sends an event, renewing the lease while the endpoint takes its time (a delivery may
    /// take longer than the lease), so no other node sends the same event meanwhile.
    /// `None` when the lease was lost all the same.
    async fn send_holding_lease(
        &mut self,
        pending: &Pending,
    ) -> StorageResult<Option<Result<(), String>>> {
        let endpoint = self.endpoint.clone();
        let send = endpoint.send(&pending.event, &self.source);
        tokio::pin!(send);
        loop {
            tokio::select! {
                sent = &mut send => return Ok(Some(sent)),
                () = tokio::time::sleep(self.lease.renewal()) => {
                    if !self.lease.hold().await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// A pending record, from the copy read earlier or from storage; `None` when it is
    /// gone (finished meanwhile) or unreadable.
    async fn pending(&mut self, key: &RecordKey) -> StorageResult<Option<Pending>> {
        if let Some(p) = self.known.get(key) {
            return Ok(Some(p.clone()));
        }
        let Some((bytes, _)) = self.storage.read_record(key).await? else {
            return Ok(None);
        };
        match serde_json::from_slice::<Pending>(&bytes) {
            Ok(p) => {
                self.known.insert(key.clone(), p.clone());
                Ok(Some(p))
            }
            Err(e) => {
                tracing::warn!(record = %key, error = %e, "unreadable pending event; skipped");
                Ok(None)
            }
        }
    }

    /// Moves a pending event to `done/` or `failed/`. The history record is written first:
    /// a crash in between leaves the event pending, so it is sent again (at least once).
    async fn finish(
        &mut self,
        key: &RecordKey,
        pending: &Pending,
        status: &str,
    ) -> StorageResult<()> {
        self.known.remove(key);
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
