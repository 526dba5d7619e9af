//! `wharf gc [--dry-run]`: one mark and sweep of each storage root, printing what goes (or,
//! dry, what would) and how many bytes. It runs beside servers on the same storage: it
//! holds the GC lease (the one the servers' schedules take, `gc::leased`) for the run, so
//! it never sweeps at the same time as a scheduled collection, and on the filesystem it
//! opens the root without its lock (`FsStorage::open_beside_server`). A dry run deletes
//! nothing and takes no lease.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use wharf::config::{Config, StorageBackend};
use wharf::gc::leased::{self, Leased};
use wharf::gc::sweep::Swept;
use wharf::registry::service::gc_status::{LastRun, RunResult};
use wharf::registry::storage::fs::FsStorage;
use wharf::registry::storage::Storage;
use wharf::server::{describe_root, open_storage};

pub async fn run(path: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    let (config, _) = Config::load(path.as_deref())?;
    let mut roots: Vec<PathBuf> = Vec::new();
    for route in config.servers.iter().flat_map(|s| &s.routes) {
        if let Some(root) = route.target.root() {
            if !roots.iter().any(|r| r == root) {
                roots.push(root.to_owned());
            }
        }
    }
    for root in roots {
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
        if dry_run {
            print(
                &wharf::gc::collect(&*storage, &config.gc, true).await?,
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
            wharf::gc::collect(&*storage, &config.gc, false).await
        };
        let swept = match leased::with_lease(&mut lease, work).await? {
            Leased::Ran(swept) => swept?,
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
        print(&swept, false);
        let run = LastRun {
            started,
            ended: SystemTime::now(),
            result: RunResult::Success,
            error: None,
            tags_deleted: 0,
            objects_freed: swept.blobs.len(),
            bytes_freed: swept.bytes,
            links_removed: swept.manifests_unlinked.len() + swept.layers_unlinked.len(),
        };
        leased::write_last(&*storage, &run).await;
    }
    Ok(())
}

fn print(swept: &Swept, dry_run: bool) {
    let verb = if dry_run { "would delete" } else { "deleted" };
    for (repo, digest) in &swept.manifests_unlinked {
        println!("{verb} untagged manifest {repo}@{digest}");
    }
    for (repo, digest) in &swept.layers_unlinked {
        println!("{verb} layer link {repo}@{digest} (no manifest of {repo} names it)");
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
