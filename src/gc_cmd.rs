//! `wharf gc [--dry-run]`: on each storage root, the mirror routes' cache policy
//! (`gc::mirror_roots`: idle or over-size cached images deleted through the repository
//! service, announced as deletes), then one mark and sweep, printing what goes (or, dry,
//! what would) and how many bytes. It runs beside servers on the same storage: it holds
//! the GC lease (the one the servers' schedules take, `gc::leased`) for the run, so it
//! never sweeps at the same time as a scheduled collection, and on the filesystem it opens
//! the root without its lock (`FsStorage::open_beside_server`). With no server holding
//! that lock when it starts, it deletes at full speed (`gc::Pace`). A dry run deletes
//! nothing and takes no lease.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use wharf::config::{Config, StorageBackend};
use wharf::gc::leased::{self, Leased};
use wharf::gc::mirror_roots::{self, Eviction, NsPolicy, Why};
use wharf::gc::retention::Outcome;
use wharf::gc::sweep::Swept;
use wharf::gc::Pace;
use wharf::registry::service::gc_status::{LastRun, RunResult};
use wharf::registry::service::Service;
use wharf::registry::storage::fs::FsStorage;
use wharf::registry::storage::Storage;
use wharf::server::{describe_root, open_storage};

pub async fn run(path: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    let (config, _) = Config::load(path.as_deref())?;
    // The collection logs each phase's duration (`[log] level`, `RUST_LOG`) on stderr.
    crate::cli::init_logging(&config);
    yield_cpu_to_servers();
    for root in crate::repo_cmd::storage_roots(&config) {
        let name = describe_root(&config.storage.backend, &root);
        println!("storage {name}");
        let fs = match &config.storage.backend {
            StorageBackend::Filesystem => Some(Arc::new(FsStorage::open_beside_server(&root)?)),
            _ => None,
        };
        let storage: Arc<dyn Storage> = match &fs {
            Some(fs) => fs.clone(),
            None => open_storage(&config.storage.backend, &root).await?,
        };
        // Full speed only when no server answers from this root now; an object store may
        // have servers anywhere.
        let pace = match &fs {
            Some(fs) if !fs.root_held_elsewhere()? => Pace::Alone,
            _ => Pace::BesideServers,
        };
        let service = crate::repo_cmd::service_on(&config, storage.clone())?;
        let policies = mirror_roots::policies(&config, &root);
        if dry_run {
            let evicted = evict(&service, &policies, &name, true).await?;
            print_evictions(&evicted);
            if !evicted.is_empty() {
                println!("(a dry run does not count the blobs the evictions would free)");
            }
            print(
                &wharf::gc::collect(&*storage, &config.gc, true, pace).await?,
                true,
            );
            continue;
        }
        let mut lease = leased::lease(storage.clone(), wharf::events::lease::holder_name());
        let started = SystemTime::now();
        let work = async {
            if let Some(fs) = &fs {
                // Only this collector uses its staging directory now.
                fs.clear_staging().await?;
            }
            let evicted = evict(&service, &policies, &name, false).await?;
            let swept = wharf::gc::collect(&*storage, &config.gc, false, pace).await?;
            anyhow::Ok((evicted, swept))
        };
        let (evicted, swept) = match leased::with_lease(&mut lease, work).await? {
            Leased::Ran(done) => done?,
            Leased::Busy(holder) => {
                let by = holder.map_or("another collector".to_owned(), |(h, until_ms)| {
                    let until = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(until_ms);
                    format!(
                        "{h} (lease until {})",
                        humantime::format_rfc3339_seconds(until)
                    )
                });
                anyhow::bail!(
                    "{name}: a collection is running already, by {by}; try again once it ends"
                );
            }
            Leased::Lost => anyhow::bail!(
                "{name}: the GC lease was lost mid-run; the run stopped (run it again)"
            ),
        };
        print_evictions(&evicted);
        print(&swept, false);
        let run = LastRun {
            started,
            ended: SystemTime::now(),
            result: RunResult::Success,
            error: None,
            tags_deleted: 0,
            objects_freed: swept.blobs.len(),
            bytes_freed: swept.bytes,
            links_removed: swept.manifests_unlinked.len(),
        };
        leased::write_last(&*storage, &run).await;
    }
    Ok(())
}

/// The mirror routes' cache policy on this root (`gc::mirror_roots`), before the mark, so
/// the collection frees the blobs only the evicted images named.
async fn evict(
    service: &Service,
    policies: &[NsPolicy],
    name: &str,
    dry_run: bool,
) -> anyhow::Result<Vec<Eviction>> {
    mirror_roots::evict(service, policies, SystemTime::now(), dry_run)
        .await
        .map_err(|e| anyhow::anyhow!("{name}: {}", e.message))
}

fn print_evictions(evicted: &[Eviction]) {
    for e in evicted {
        let why = match e.why {
            Why::Age => "not pulled for cache_max_age",
            Why::Size => "least recently pulled over cache_max_size",
        };
        let image = format!("cached image {}@{}", e.repo, e.digest);
        match &e.outcome {
            Outcome::Planned => println!("would evict {image} ({why})"),
            Outcome::Deleted => println!("evicted {image} ({why})"),
            Outcome::Skipped(reason) => println!("kept {image}: {reason}"),
        }
    }
}

fn print(swept: &Swept, dry_run: bool) {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for (repo, digest) in &swept.manifests_unlinked {
        println!("{verb} untagged manifest {repo}@{digest}");
    }
    for blob in &swept.blobs {
        println!("{verb} blob {} ({} bytes)", blob.digest, blob.size);
    }
    println!(
        "{verb} {} blobs, {} bytes; {} kept because linked or touched since the mark",
        swept.blobs.len(),
        swept.bytes,
        swept.spared
    );
}

/// How much lower than a server's the collector's CPU priority is (`nice`): a collection
/// can wait, a client's request cannot. `scripts/bench --gc-only` measured p99 manifest
/// HEAD of a wharf serving on the same two cores at 10x idle while an unniced `wharf gc`
/// walked and deleted on all its threads.
const NICENESS: libc::c_int = 10;

/// Lowers the CPU priority of every thread of this process to [`NICENESS`]; threads
/// started later inherit it from the thread that starts them (on Linux `nice` belongs to a
/// thread, not to the process). Best effort: a failure leaves the priority as it was.
fn yield_cpu_to_servers() {
    #[cfg(target_os = "linux")]
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // Never raises it: a `wharf gc` started under `nice -n 19` stays there.
            // SAFETY: getpriority and setpriority only read their integer arguments.
            unsafe {
                if libc::getpriority(libc::PRIO_PROCESS, tid) < NICENESS {
                    libc::setpriority(libc::PRIO_PROCESS, tid, NICENESS);
                }
            }
        }
    }
}
