//! The server's collections. Each storage root gets one scheduler: every `[gc] interval`
//! (counted from the end of the storage's latest run by any node, read from `gc/last`, or
//! before the first from `gc/since`, so several nodes and restarts share one schedule) it
//! takes the GC lease and runs the `[[retention]]` policies, the mirror routes' cache policy
//! (`mirror_roots`), then a collection. Without an
//! interval it only prunes touch records (see [`prune_touches`]). A reload sends a new
//! [`Plan`]: the next run uses it.
//!
//! Time is read through [`Clock`], tokio's clock anchored to the wall clock once, so the
//! tests run days of schedule with tokio's time paused.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::leased::{self, Leased};
use super::metrics::GcMetrics;
use super::mirror_roots::NsPolicy;
use crate::config::{GcConfig, RetentionPolicy};
use crate::events::lease::Lease;
use crate::registry::service::gc_status::{LastRun, RunResult};
use crate::registry::service::Service;
use crate::registry::storage::Storage;

/// What the scheduler of one root runs with: the engine (retention deletes through its
/// service, so every deletion is an event and immutable tags hold) and the settings.
#[derive(Clone)]
pub struct Plan {
    pub engine: Arc<dyn AsRef<Service> + Send + Sync>,
    pub gc: GcConfig,
    pub retention: Arc<[RetentionPolicy]>,
    /// The cache policy of the mirror routes caching on this root.
    pub mirror: Arc<[NsPolicy]>,
}

impl Plan {
    fn service(&self) -> &Service {
        (*self.engine).as_ref()
    }
}

/// The wall clock as the scheduler sees it: the time at its start plus tokio's elapsed
/// time (so a paused test runtime moves it; over a server's life the two differ by the
/// host's clock corrections, which only shift a run by as much).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall: SystemTime,
    mono: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            wall: SystemTime::now(),
            mono: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }
}

/// When the next run is due: `interval` after the latest run's end, or after `since` (the
/// storage's schedule epoch) when the storage has seen none.
pub fn next_due(last: Option<&LastRun>, since: SystemTime, interval: Duration) -> SystemTime {
    last.map_or(since, |l| l.ended) + interval
}

/// How long a node waits before looking again when another one holds the lease.
fn busy_retry(interval: Duration) -> Duration {
    interval.min(Duration::from_secs(30))
}

/// Runs the root's schedule until `plans` closes (the server stopping drops its sender).
pub async fn run_forever(plans: watch::Receiver<Plan>, holder: String, metrics: GcMetrics) {
    run_on_clock(plans, holder, metrics, Clock::start()).await;
}

/// [`run_forever`] reading time from `clock` (tests share one across a restart).
async fn run_on_clock(
    mut plans: watch::Receiver<Plan>,
    holder: String,
    metrics: GcMetrics,
    clock: Clock,
) {
    let storage = plans.borrow().service().storage().clone();
    let mut lease = leased::lease(storage.clone(), holder);
    let since = leased::schedule_epoch(&*storage, clock.now()).await;
    let mut not_before = since;
    loop {
        let plan = plans.borrow_and_update().clone();
        let status = plan.service().gc_status().clone();
        let wait = match plan.gc.interval {
            Some(interval) => {
                let last = leased::read_last(&*storage).await.ok().flatten();
                if let Some(last) = &last {
                    status.seen(last.clone());
                }
                let due = next_due(last.as_ref(), since, interval).max(not_before);
                status.scheduled(Some(interval), Some(due));
                due.duration_since(clock.now()).unwrap_or_default()
            }
            None => {
                status.scheduled(None, None);
                plan.gc.grace
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            changed = plans.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        }
        let Some(interval) = plan.gc.interval else {
            prune_touches(&*storage, plan.gc.grace).await;
            continue;
        };
        // Another node may have run while this one slept.
        let last = leased::read_last(&*storage).await.ok().flatten();
        if next_due(last.as_ref(), since, interval) > clock.now() {
            continue;
        }
        if !run_once(&plan, &mut lease, &metrics, clock).await {
            not_before = clock.now() + busy_retry(interval);
        }
    }
}

/// One scheduled run under the lease: retention, mirror cache eviction, then a collection. Returns false when
/// another node held the lease (nothing done).
pub async fn run_once(plan: &Plan, lease: &mut Lease, metrics: &GcMetrics, clock: Clock) -> bool {
    let service = plan.service();
    let storage = service.storage();
    let status = service.gc_status();
    let started = clock.now();
    let work = async {
        let retained = super::retention::run(service, &plan.retention, false).await;
        let tags_deleted = match &retained {
            Ok(repos) => repos
                .iter()
                .flat_map(|r| &r.entries)
                .filter(|e| e.outcome == super::retention::Outcome::Deleted)
                .count(),
            Err(error) => {
                // The collection still runs: it needs nothing retention does.
                tracing::warn!(%error, "retention failed; collecting anyway");
                0
            }
        };
        // Evictions delete through the service like retention; the mark then frees the
        // blobs only the evicted images named. A failure here, too, spares the collection.
        let evicted = super::mirror_roots::evict(service, &plan.mirror, clock.now(), false).await;
        if let Err(error) = &evicted {
            tracing::warn!(%error, "mirror cache eviction failed; collecting anyway");
        }
        (
            tags_deleted,
            super::collect(&**storage, &plan.gc, false, super::Pace::BesideServers).await,
        )
    };
    status.started(started);
    let outcome = leased::with_lease(lease, work).await;
    let mut run = LastRun {
        started,
        ended: clock.now(),
        result: RunResult::Failure,
        error: None,
        tags_deleted: 0,
        objects_freed: 0,
        bytes_freed: 0,
        links_removed: 0,
    };
    match outcome {
        Ok(Leased::Ran((tags, Ok(swept)))) => {
            run.result = RunResult::Success;
            run.tags_deleted = tags;
            run.objects_freed = swept.blobs.len();
            run.bytes_freed = swept.bytes;
            run.links_removed = swept.manifests_unlinked.len();
            tracing::info!(
                tags_deleted = tags,
                blobs = run.objects_freed,
                bytes = run.bytes_freed,
                links = run.links_removed,
                spared = swept.spared,
                "garbage collection done"
            );
        }
        Ok(Leased::Ran((tags, Err(error)))) => {
            tracing::error!(%error, "garbage collection failed");
            run.tags_deleted = tags;
            run.error = Some("storage failed during the run (see the server's log)".into());
        }
        Ok(Leased::Lost) => run.error = Some("the GC lease was lost mid-run".into()),
        Ok(Leased::Busy(holder)) => {
            tracing::info!(
                ?holder,
                "garbage collection skipped: another node holds the GC lease"
            );
            status.finished_elsewhere();
            metrics.skipped();
            return false;
        }
        Err(error) => {
            tracing::error!(%error, "garbage collection could not take the GC lease");
            run.error = Some("storage failed taking the GC lease (see the server's log)".into());
        }
    }
    metrics.finished(&run);
    leased::write_last(&**storage, &run).await;
    status.finished(run);
    true
}

/// Deletes touch records older than `grace`. They protect nothing any more for a
/// collection with this grace (it counts only touches after its cut-off), and without
/// a schedule nothing else would delete them: a node still writes them, because a
/// `wharf gc` (or another node's schedule) may run at any time, so the choice is to
/// prune rather than not write. Failures are logged; the next round tries again.
pub async fn prune_touches(storage: &dyn Storage, grace: Duration) {
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    match super::sweep::clear_touches(storage, cutoff).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "pruned old GC touch records"),
        Err(error) => tracing::warn!(%error, "pruning GC touch records failed"),
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
