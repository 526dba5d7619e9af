//! The scheduler over days of paused tokio time: when runs start, how another node's run
//! and a busy lease move them, and that a restart keeps the storage's schedule.

use super::*;
use crate::config::Untagged;
use crate::registry::storage::fs::FsStorage;
use crate::registry::{Registry, RegistryOptions};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn run_ended(at: SystemTime) -> LastRun {
    LastRun {
        started: at,
        ended: at,
        result: RunResult::Success,
        error: None,
        tags_deleted: 0,
        objects_freed: 0,
        bytes_freed: 0,
        links_removed: 0,
    }
}

#[test]
fn the_next_run_is_an_interval_after_the_latest_one_by_any_node() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    assert_eq!(
        next_due(None, t, HOUR),
        t + HOUR,
        "none yet: from the epoch"
    );
    let earlier = run_ended(t - 10 * MINUTE);
    assert_eq!(next_due(Some(&earlier), t, HOUR), t + 50 * MINUTE);
    let later = run_ended(t + HOUR);
    assert_eq!(next_due(Some(&later), t, HOUR), t + 2 * HOUR);
}

/// A scheduler on a fresh fs root, hourly; returns its engine, the plans' sender (dropping
/// it stops the scheduler) and the storage.
fn start(
    dir: &std::path::Path,
    clock: Clock,
) -> (Arc<Registry>, watch::Sender<Plan>, Arc<dyn Storage>) {
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir).unwrap());
    let options = RegistryOptions {
        max_manifest_bytes: 1 << 20,
        manifest_cache_bytes: 1 << 20,
        immutable: Vec::new(),
    };
    let engine = Arc::new(Registry::new(storage.clone(), options));
    let plan = Plan {
        engine: engine.clone(),
        gc: GcConfig {
            interval: Some(HOUR),
            grace: HOUR,
            untagged: Untagged::Keep,
        },
        retention: Arc::new([]),
        mirror: Arc::new([]),
    };
    let (plans, rx) = watch::channel(plan);
    let metrics = GcMetrics::default();
    tokio::spawn(run_on_clock(rx, "host/1/a".into(), metrics, clock));
    (engine, plans, storage)
}

fn last(engine: &Registry) -> Option<LastRun> {
    engine.service().gc_status().last()
}

/// Seconds between `a` and `b`, rounded (paused time still moves by the odd millisecond,
/// and `gc/last` keeps milliseconds).
fn secs(a: SystemTime, b: SystemTime) -> u64 {
    let d = b.duration_since(a).unwrap_or_else(|e| e.duration());
    d.as_secs_f64().round() as u64
}

#[tokio::test(start_paused = true)]
async fn runs_start_an_interval_after_the_epoch_then_after_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _plans, storage) = start(dir.path(), Clock::start());
    tokio::time::sleep(59 * MINUTE).await;
    assert_eq!(last(&engine), None, "not before the interval");
    let since = leased::schedule_epoch(&*storage, SystemTime::now()).await;
    tokio::time::sleep(2 * MINUTE).await;
    let first = last(&engine).expect("a run after an hour");
    assert_eq!(first.result, RunResult::Success);
    assert_eq!(secs(since, first.started), 3600);
    let recorded = leased::read_last(&*storage).await.unwrap().unwrap();
    assert_eq!(recorded.result, first.result);
    assert_eq!(secs(recorded.ended, first.ended), 0, "recorded in ms");
    tokio::time::sleep(3 * HOUR).await;
    let fourth = last(&engine).unwrap();
    assert_eq!(secs(first.ended, fourth.started), 3 * 3600, "hourly");
}

/// Another node's run (its `gc/last`) pushes this node's next run an interval past it;
/// a restarted scheduler keeps the storage's schedule instead of starting over.
#[tokio::test(start_paused = true)]
async fn another_nodes_run_and_a_restart_keep_one_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start();
    let (engine, plans, storage) = start(dir.path(), clock);
    tokio::time::sleep(30 * MINUTE).await;
    let mut elsewhere = run_ended(clock.now());
    elsewhere.objects_freed = 42;
    leased::write_last(&*storage, &elsewhere).await;
    tokio::time::sleep(55 * MINUTE).await;
    let seen = last(&engine).unwrap();
    assert_eq!(seen.objects_freed, 42, "only the other node's run so far");
    tokio::time::sleep(10 * MINUTE).await;
    let own = last(&engine).unwrap();
    assert_eq!(own.objects_freed, 0);
    assert_eq!(secs(elsewhere.ended, own.started), 3600);

    drop(plans);
    tokio::time::sleep(MINUTE).await;
    let (engine, _plans, _) = start(dir.path(), clock);
    tokio::time::sleep(52 * MINUTE).await;
    let seen = last(&engine).unwrap();
    assert_eq!(
        secs(seen.ended, own.ended),
        0,
        "restarted: no run of its own yet"
    );
    tokio::time::sleep(3 * MINUTE).await;
    let next = last(&engine).unwrap();
    assert_eq!(
        secs(own.ended, next.started),
        3600,
        "from the storage's last run"
    );
}

/// While another collector holds the lease, the due run is retried every 30 s, and runs
/// once the lease is free.
#[tokio::test(start_paused = true)]
async fn a_busy_lease_postpones_the_run_until_it_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::start();
    let (engine, _plans, storage) = start(dir.path(), clock);
    let mut other = leased::lease(storage.clone(), "host/1/wharf-gc".into());
    assert!(other.hold().await.unwrap());
    tokio::time::sleep(65 * MINUTE).await;
    assert_eq!(last(&engine), None, "busy: nothing ran");
    assert_eq!(
        engine.service().gc_status().to_json()["running_since"],
        serde_json::Value::Null
    );
    other.release().await;
    let freed = clock.now();
    tokio::time::sleep(MINUTE).await;
    let run = last(&engine).expect("ran once the lease was free");
    assert!(secs(freed, run.started) <= 30, "retried within 30 s");
}
