//! `wharf events`: the notifications each storage root has pending, and its recent
//! deliveries and failures, read from the outbox (safe beside a running server).

use std::path::PathBuf;
use std::sync::Arc;

use wharf::config::{Config, StorageBackend};
use wharf::registry::storage::fs::FsStorage;
use wharf::registry::storage::Storage;
use wharf::server::{describe_root, open_storage};

pub async fn run(path: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, _) = Config::load(path.as_deref())?;
    for root in crate::repo_cmd::storage_roots(&config) {
        let storage: Arc<dyn Storage> = match &config.storage.backend {
            // The server holds the root's lock; reading records needs none.
            StorageBackend::Filesystem => Arc::new(FsStorage::open_records_reader(&root)?),
            backend => open_storage(backend, &root).await?,
        };
        println!("storage {}", describe_root(&config.storage.backend, &root));
        let report = wharf::events::listing::report(&config.notifications, &*storage).await?;
        print!("{report}");
    }
    Ok(())
}
