//! Notifications (webhooks) that are never lost.
//!
//! The repository service emits each event into the [`outbox::Outbox`], which writes one
//! pending record per interested endpoint to storage (`record` has the layout) before the
//! client gets its answer. Per endpoint, a [`worker::Worker`] on each node competes for the
//! endpoint's [`lease::Lease`]; the holder sends the pending events (`format`, signed by
//! `sign`, over `crate::http_client`) in order per repository, retries with backoff, and
//! moves them to a bounded history. A crash loses nothing: what was pending stays pending,
//! and the lease of a dead node expires. Delivery is at least once; receivers de-duplicate
//! on the event id.
//!
//! A new consumer of repository events implements `registry::service::event::EventSink`
//! the same way.

pub mod endpoint;
pub mod format;
pub mod lease;
pub mod listing;
pub mod metrics;
pub mod outbox;
pub mod record;
pub mod sign;
pub mod worker;

use std::io;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::endpoint::Endpoint;
use self::format::Source;
use self::lease::Lease;
use self::metrics::EventMetrics;
use self::outbox::Outbox;
use self::worker::Worker;
use crate::config::NotificationsConfig;
use crate::registry::service::event::EventSink;
use crate::registry::storage::Storage;

/// How long shutdown waits for a worker's delivery in flight.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The outbox of one storage and its delivery workers.
pub struct Notifications {
    outbox: Arc<Outbox>,
    stop: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
}

impl Notifications {
    /// Reads every endpoint's secrets and CA (an error names the endpoint) and starts its
    /// worker. With no endpoints, the sink writes nothing and no task runs.
    pub fn start(
        config: &NotificationsConfig,
        storage: Arc<dyn Storage>,
        metrics: EventMetrics,
    ) -> io::Result<Self> {
        let endpoints = config
            .endpoints
            .iter()
            .map(|c| Endpoint::new(c.clone()).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let source = Source {
            addr: host_name(),
            instance_id: uuid::Uuid::new_v4().to_string(),
        };
        let holder = format!(
            "{}/{}/{}",
            source.addr,
            std::process::id(),
            source.instance_id
        );
        let (stop, stop_rx) = watch::channel(false);
        let workers = endpoints
            .iter()
            .map(|endpoint| {
                let worker = Worker {
                    endpoint: endpoint.clone(),
                    storage: storage.clone(),
                    lease: Lease::new(
                        storage.clone(),
                        endpoint.folders.lease.clone(),
                        holder.clone(),
                        config.lease,
                    ),
                    source: source.clone(),
                    metrics: metrics.clone(),
                    poll: config.poll,
                    history: config.history,
                    known: Default::default(),
                };
                tokio::spawn(worker.run(stop_rx.clone()))
            })
            .collect();
        Ok(Self {
            outbox: Arc::new(Outbox { storage, endpoints }),
            stop,
            workers,
        })
    }

    /// Only the outbox, with no delivery workers: for a command run beside (or instead of)
    /// the server, whose events the server's workers deliver when it runs.
    pub fn outbox_only(
        config: &NotificationsConfig,
        storage: Arc<dyn Storage>,
    ) -> io::Result<Arc<dyn EventSink>> {
        let endpoints = config
            .endpoints
            .iter()
            .map(|c| Endpoint::new(c.clone()).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Arc::new(Outbox { storage, endpoints }))
    }

    /// The sink the repository service emits into.
    pub fn sink(&self) -> Arc<dyn EventSink> {
        self.outbox.clone()
    }

    /// Stops the workers after their current delivery and gives up their leases, so
    /// another node takes over at once.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for mut worker in self.workers {
            // A delivery in flight may wait for its endpoint's whole timeout; shutdown
            // does not. An event cut off stays pending (its lease just runs out).
            if tokio::time::timeout(SHUTDOWN_WAIT, &mut worker)
                .await
                .is_err()
            {
                worker.abort();
            }
        }
    }

    /// Stops the workers where they are, leases held, as a crash would (for tests of
    /// another node taking over).
    pub fn abort(self) {
        for worker in &self.workers {
            worker.abort();
        }
    }
}

/// This node's name for `source.addr`: the host name, as registry:2 gives it.
fn host_name() -> String {
    let name = crate::registry::storage::object::host_name();
    match name.is_empty() {
        true => "wharf".to_owned(),
        false => name,
    }
}
