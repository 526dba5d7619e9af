//! Background housekeeping while the server runs.

use std::sync::Arc;
use std::time::Duration;

use crate::registry::Registry;

/// Deletes upload sessions not written to for `max_age`. Failures are logged: a purge that
/// fails now is retried at the next round.
pub async fn purge_uploads_once(registry: &Registry, max_age: Duration) {
    match registry.storage().purge_uploads(max_age).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sessions = n, ?max_age, "purged stale upload sessions"),
        Err(error) => tracing::warn!(%error, "purging stale upload sessions failed"),
    }
}

/// The start-up purge, before serving: first the monolithic sessions a crash left (nobody
/// can resume them, so they go at once; on an object store, with their multipart
/// uploads), then every session older than `max_age`.
pub async fn purge_uploads_at_start(registry: &Registry, max_age: Duration) {
    match registry.storage().purge_orphans().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(sessions = n, "discarded monolithic uploads a crash cut off"),
        Err(error) => tracing::warn!(%error, "discarding orphaned upload sessions failed"),
    }
    purge_uploads_once(registry, max_age).await;
}

/// Purges periodically after the start-up purge: every quarter of the maximum age, at most
/// hourly, so a session is removed within 1.25× its maximum age.
pub async fn purge_uploads_forever(registry: Arc<Registry>, max_age: Duration) {
    let every = (max_age / 4).min(Duration::from_secs(3600));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        purge_uploads_once(&registry, max_age).await;
    }
}
