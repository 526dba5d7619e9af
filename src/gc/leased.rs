//! One collection at a time per storage: a run holds the GC lease (`events::lease`, the
//! record `gc/lease`, the same on every backend) from before its start time is taken until
//! it ends, renewing it every third of [`LEASE`]. A run that loses the lease (storage gone
//! for longer than two renewals, or a clock far off) stops where it is, which the crash
//! argument in the module docs makes safe: the next holder finishes the job.
//!
//! Every run that held the lease writes what it did to the record `gc/last`, so every node
//! (and a restarted one) schedules from the latest run of any node, and the status API
//! shows it. Before the first run, the schedule counts from `gc/since`, written once by
//! the first scheduler on the storage: servers restarted more often than the interval
//! still collect.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::events::lease::Lease;
use crate::registry::service::gc_status::{LastRun, RunResult};
use crate::registry::storage::{RecordKey, Storage, StorageResult};

/// How long the lease lasts without renewal: a dead holder on another host delays the
/// next run by at most this (one of this host is noticed at once, see `events::lease`).
pub const LEASE: Duration = Duration::from_secs(60);

fn lease_key() -> RecordKey {
    key(crate::registry::service::gc_status::LEASE_KEY)
}

fn last_key() -> RecordKey {
    key("gc/last")
}

fn since_key() -> RecordKey {
    key("gc/since")
}

fn key(name: &'static str) -> RecordKey {
    // Both names are constants made of valid segments.
    RecordKey::new(name).unwrap_or_else(|| unreachable!("{name} is a valid record key"))
}

/// The lease of `storage`'s collections, held under `holder` (`events::lease::holder_name`).
pub fn lease(storage: Arc<dyn Storage>, holder: String) -> Lease {
    Lease::new(storage, lease_key(), holder, LEASE)
}

/// What [`with_lease`] found.
#[derive(Debug)]
pub enum Leased<T> {
    /// The work ran to its end while the lease was held.
    Ran(T),
    /// Someone else holds the lease (holder, until Unix ms): nothing was done.
    Busy(Option<(String, u64)>),
    /// The lease was lost mid-run; the work was stopped there.
    Lost,
}

/// Runs `work` while holding the lease, renewing it; gives the lease up at the end.
pub async fn with_lease<T>(
    lease: &mut Lease,
    work: impl Future<Output = T>,
) -> StorageResult<Leased<T>> {
    if !lease.hold().await? {
        return Ok(Leased::Busy(lease.holder().await.ok().flatten()));
    }
    let every = lease.renewal();
    let outcome = {
        let keep = async {
            loop {
                tokio::time::sleep(every).await;
                match lease.hold().await {
                    Ok(true) => {}
                    Ok(false) => {
                        return tracing::error!("GC lease taken by another node; stopping this run")
                    }
                    Err(error) => {
                        return tracing::error!(%error, "GC lease could not be renewed; stopping this run")
                    }
                }
            }
        };
        tokio::select! {
            done = work => Leased::Ran(done),
            () = keep => Leased::Lost,
        }
    };
    lease.release().await;
    Ok(outcome)
}

/// When the storage's schedule began: `gc/since`, created with `now` by the first
/// scheduler to ask (of racing nodes, one creates it and all read the same). When the
/// storage fails, `now` (this process's start then counts, as if the storage were new).
pub async fn schedule_epoch(storage: &dyn Storage, now: SystemTime) -> SystemTime {
    let read = async {
        let mine = Bytes::from(ms(now).to_string());
        storage.create_record(&since_key(), mine).await?;
        let stored = storage.read_record(&since_key()).await?;
        StorageResult::Ok(stored.and_then(|(b, _)| std::str::from_utf8(&b).ok()?.parse().ok()))
    };
    match read.await {
        Ok(Some(since_ms)) => time(since_ms),
        Ok(None) => now,
        Err(error) => {
            tracing::warn!(%error, "could not read when the GC schedule began");
            now
        }
    }
}

/// `gc/last` as stored: a [`LastRun`] in Unix ms.
#[derive(Debug, Serialize, Deserialize)]
struct LastRecord {
    started_ms: u64,
    ended_ms: u64,
    result: String,
    error: Option<String>,
    tags_deleted: usize,
    objects_freed: usize,
    bytes_freed: u64,
    links_removed: usize,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Records `run` as the storage's latest (a failure to write is logged: the next run
/// only starts a little early).
pub async fn write_last(storage: &dyn Storage, run: &LastRun) {
    let record = LastRecord {
        started_ms: ms(run.started),
        ended_ms: ms(run.ended),
        result: run.result.as_str().to_owned(),
        error: run.error.clone(),
        tags_deleted: run.tags_deleted,
        objects_freed: run.objects_freed,
        bytes_freed: run.bytes_freed,
        links_removed: run.links_removed,
    };
    let bytes = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
    if let Err(error) = storage.put_record(&last_key(), bytes).await {
        tracing::warn!(%error, "could not record the GC run");
    }
}

/// The storage's latest run, by any node (`None` before the first, or unreadable).
pub async fn read_last(storage: &dyn Storage) -> StorageResult<Option<LastRun>> {
    let Some((bytes, _)) = storage.read_record(&last_key()).await? else {
        return Ok(None);
    };
    let Ok(r) = serde_json::from_slice::<LastRecord>(&bytes) else {
        return Ok(None);
    };
    let result = match r.result.as_str() {
        "success" => RunResult::Success,
        "skipped" => RunResult::Skipped,
        _ => RunResult::Failure,
    };
    Ok(Some(LastRun {
        started: time(r.started_ms),
        ended: time(r.ended_ms),
        result,
        error: r.error,
        tags_deleted: r.tags_deleted,
        objects_freed: r.objects_freed,
        bytes_freed: r.bytes_freed,
        links_removed: r.links_removed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::storage::fs::FsStorage;

    #[tokio::test]
    async fn a_second_collector_finds_the_lease_busy_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        let mut a = lease(storage.clone(), "host/1/a".into());
        let mut b = lease(storage.clone(), "host/1/b".into());
        let (inside_tx, inside_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let first = async {
            with_lease(&mut a, async {
                inside_tx.send(()).unwrap();
                go_rx.await.unwrap();
                7
            })
            .await
            .unwrap()
        };
        let second = async {
            inside_rx.await.unwrap();
            let busy = with_lease(&mut b, async { 8 }).await.unwrap();
            go_tx.send(()).unwrap();
            busy
        };
        let (first, second) = tokio::join!(first, second);
        assert!(matches!(first, Leased::Ran(7)));
        match second {
            Leased::Busy(Some((holder, _))) => assert_eq!(holder, "host/1/a"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            with_lease(&mut b, async { 9 }).await.unwrap(),
            Leased::Ran(9)
        ));
    }

    /// A lease of `duration` (short, so renewals happen within a test).
    fn short(storage: &Arc<dyn Storage>, holder: &str, duration: Duration) -> Lease {
        Lease::new(storage.clone(), lease_key(), holder.into(), duration)
    }

    #[tokio::test]
    async fn a_run_longer_than_its_lease_keeps_it_by_renewing() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        let lease_for = Duration::from_millis(1500);
        let (mut a, mut b) = (
            short(&storage, "host/1/a", lease_for),
            short(&storage, "host/1/b", lease_for),
        );
        // Four checks 0.6 s apart: the run outlasts its lease, which renewals keep alive.
        let work = async {
            let mut taken = Vec::new();
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(600)).await;
                taken.push(b.hold().await.unwrap());
            }
            taken
        };
        match with_lease(&mut a, work).await.unwrap() {
            Leased::Ran(taken) => assert_eq!(taken, [false; 4], "another collector got in"),
            other => panic!("{other:?}"),
        }
        // Released at the end: the other one takes it at once.
        assert!(b.hold().await.unwrap());
    }

    #[tokio::test]
    async fn a_run_whose_lease_is_taken_stops_at_its_next_renewal() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
        let lease_for = Duration::from_millis(300);
        let mut a = short(&storage, "host/1/a", lease_for);
        let mut b = short(&storage, "host/1/b", lease_for);
        // As if the record were lost and another node took it: the run must not go on.
        let work = async {
            storage.delete_record(&lease_key()).await.unwrap();
            assert!(b.hold().await.unwrap());
            std::future::pending::<()>().await
        };
        let outcome = tokio::time::timeout(Duration::from_secs(10), with_lease(&mut a, work))
            .await
            .expect("the run stopped");
        assert!(matches!(outcome.unwrap(), Leased::Lost));
        // Its release left the other holder's record alone.
        let (holder, _) = a.holder().await.unwrap().unwrap();
        assert_eq!(holder, "host/1/b");
    }

    #[tokio::test]
    async fn the_last_run_round_trips_through_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FsStorage::open(dir.path()).unwrap();
        assert_eq!(read_last(&storage).await.unwrap(), None);
        let run = LastRun {
            started: time(1_000),
            ended: time(3_000),
            result: RunResult::Failure,
            error: Some("storage unavailable".into()),
            tags_deleted: 1,
            objects_freed: 2,
            bytes_freed: 3,
            links_removed: 4,
        };
        write_last(&storage, &run).await;
        assert_eq!(read_last(&storage).await.unwrap(), Some(run));
    }
}
