//! `wharf gc [--dry-run]`: one mark and sweep of each storage root, printing what goes (or,
//! dry, what would) and how many bytes.

use std::path::PathBuf;
use std::sync::Arc;

use wharf::config::{Config, StorageBackend};
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
    let verb = if dry_run { "would delete" } else { "deleted" };
    for root in roots {
        let storage: Arc<dyn Storage> = match &config.storage.backend {
            // Takes the root's lock: until the collector runs inside the server (with its
            // lease), it runs with the server stopped, and says so rather than racing it.
            StorageBackend::Filesystem => Arc::new(FsStorage::open(&root).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (stop the server on {} to run `wharf gc`)",
                    root.display()
                )
            })?),
            backend => open_storage(backend, &root).await?,
        };
        println!("storage {}", describe_root(&config.storage.backend, &root));
        let swept = wharf::gc::collect(&*storage, &config.gc, dry_run).await?;
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
    Ok(())
}
