//! Background housekeeping while the server runs.

use std::sync::Arc;
use std::time::Duration;

use crate::registry::Registry;

/// Deletes stale upload sessions at start-up and then periodically: every quarter of the
/// maximum age, at most hourly, so a session is removed within 1.25× its maximum age.
pub async fn purge_uploads(registry: Arc<Registry>, max_age: Duration) {
    let every = (max_age / 4).min(Duration::from_secs(3600));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match registry.storage().purge_uploads(max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, ?max_age, "purged stale upload sessions"),
            Err(error) => tracing::warn!(%error, "purging stale upload sessions failed"),
        }
    }
}
