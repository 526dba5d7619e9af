//! The notifications of each storage root: started with the root's registry engine, so the
//! engine's events go to that storage's outbox, and stopped when the server stops (giving
//! up their leases, so another node takes over at once). Endpoints are those of the
//! config the server started with; changing them needs a restart.

use std::sync::{Arc, Mutex};

use crate::config::NotificationsConfig;
use crate::events::metrics::EventMetrics;
use crate::events::Notifications;
use crate::registry::service::event::EventSink;
use crate::registry::storage::Storage;

use super::ServerError;

pub(super) struct Outboxes {
    config: NotificationsConfig,
    metrics: EventMetrics,
    running: Mutex<Vec<Notifications>>,
}

impl Outboxes {
    pub(super) fn new(config: NotificationsConfig, metrics: EventMetrics) -> Self {
        Self {
            config,
            metrics,
            running: Mutex::new(Vec::new()),
        }
    }

    /// Starts the outbox and delivery workers of `storage`; returns its sink.
    pub(super) fn start(
        &self,
        storage: &Arc<dyn Storage>,
    ) -> Result<Arc<dyn EventSink>, ServerError> {
        let n = Notifications::start(&self.config, storage.clone(), self.metrics.clone())
            .map_err(|cause| ServerError::Notifications { cause })?;
        let sink = n.sink();
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(n);
        Ok(sink)
    }

    /// Stops every root's workers after their current delivery.
    pub(super) async fn shutdown(&self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        for n in running {
            n.shutdown().await;
        }
    }
}
