//! Repository operations from the command line (`wharf repo delete`, `wharf retention`,
//! `wharf usage`),
//! run through the same
//! repository service as the HTTP API, so they are checked the same way (`[[immutable]]`)
//! and announced the same way: events go to the notifications outbox, which the server's
//! workers deliver.
//!
//! On the filesystem the command takes the root's lock, so it runs with the server stopped
//! (or use the HTTP API); on S3 and Azure it runs beside the servers, which read tags and
//! links from the bucket on every request.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use wharf::config::{Config, StorageBackend};
use wharf::events::Notifications;
use wharf::gc::retention::Outcome;
use wharf::registry::reference::RepoName;
use wharf::registry::service::{Caller, Service};
use wharf::registry::storage::fs::FsStorage;
use wharf::registry::storage::Storage;
use wharf::server::{describe_root, open_storage};

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Delete a whole repository: its tags, manifests and links (blobs are left to `wharf
    /// gc`). On the filesystem, stop the server first or use the HTTP API
    /// (`DELETE /wharf/api/v1/repositories/<name>`).
    Delete {
        /// The repository, like team/app.
        name: String,
        /// Config file (default: what `serve` would use).
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// `wharf retention [--dry-run]`: the plan per repository (tag, digest, push time, which
/// policy), then, unless dry, the deletions through the service.
pub async fn retention(path: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    let (config, _) = Config::load(path.as_deref())?;
    if config.retention.is_empty() {
        println!("no [[retention]] policies in the config: nothing to do");
        return Ok(());
    }
    for engine in services(&config).await? {
        println!("storage {}", engine.place);
        let done = wharf::gc::retention::run(&engine.service, &config.retention, dry_run)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", engine.place, e.message))?;
        let (mut deleted, mut skipped) = (0, 0);
        for repo in &done {
            for e in &repo.entries {
                let what = match &e.tag {
                    Some(tag) => format!("tag {tag} ({})", e.digest),
                    None => format!("untagged manifest {}", e.digest),
                };
                let why = format!(
                    "pushed {}, [[retention]] #{}",
                    rfc3339(e.pushed),
                    e.rule + 1
                );
                match &e.outcome {
                    Outcome::Planned => println!("{}: would delete {what}, {why}", repo.repo),
                    Outcome::Deleted => {
                        deleted += 1;
                        println!("{}: deleted {what}, {why}", repo.repo)
                    }
                    Outcome::Skipped(reason) => {
                        skipped += 1;
                        println!("{}: kept {what}: {reason}", repo.repo)
                    }
                }
            }
        }
        let planned: usize = done.iter().map(|r| r.entries.len()).sum();
        match dry_run {
            true => println!("would delete {planned}; nothing changed (dry run)"),
            false => {
                println!("deleted {deleted}, kept {skipped}; run `wharf gc` to free their blobs")
            }
        }
    }
    Ok(())
}

fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `wharf usage [--json]`: per repository, tags, manifests, bytes and unique bytes.
pub async fn usage(path: Option<PathBuf>, json: bool) -> anyhow::Result<()> {
    let (config, _) = Config::load(path.as_deref())?;
    for engine in services(&config).await? {
        let started = std::time::Instant::now();
        let usage = engine
            .service
            .usage(None)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", engine.place, e.message))?;
        if json {
            let value = serde_json::json!({ "storage": engine.place, "repositories": usage });
            println!("{value}");
            continue;
        }
        println!("storage {} ({:.2?})", engine.place, started.elapsed());
        println!(
            "{:<40} {:>6} {:>9} {:>15} {:>15}",
            "REPOSITORY", "TAGS", "MANIFESTS", "BYTES", "UNIQUE BYTES"
        );
        for u in usage {
            println!(
                "{:<40} {:>6} {:>9} {:>15} {:>15}",
                u.repository, u.tags, u.manifests, u.bytes, u.unique_bytes
            );
        }
    }
    Ok(())
}

pub async fn run(command: RepoCommand) -> anyhow::Result<()> {
    match command {
        RepoCommand::Delete { name, config } => delete(&name, config).await,
    }
}

async fn delete(name: &str, path: Option<PathBuf>) -> anyhow::Result<()> {
    let repo = RepoName::parse(name).map_err(|why| anyhow::anyhow!("{name:?}: {why}"))?;
    let (config, _) = Config::load(path.as_deref())?;
    let caller = Caller::job("wharf repo delete");
    let mut found = false;
    for engine in services(&config).await? {
        match engine.service.delete_repository(&caller, &repo).await {
            Ok(gone) => {
                found = true;
                println!(
                    "{}: deleted repository {repo} ({} tags); run `wharf gc` to free its blobs",
                    engine.place,
                    gone.tags.len()
                );
            }
            Err(e) if e.code == wharf::registry::error::Code::NameUnknown => {
                println!("{}: no repository {repo}", engine.place);
            }
            Err(e) => anyhow::bail!("{}: {}", engine.place, e.message),
        }
    }
    anyhow::ensure!(found, "no storage root holds a repository {repo}");
    Ok(())
}

/// The repository service of one storage root, as a command gets it.
pub struct Engine {
    /// The root as people name it (a directory, `s3://bucket/prefix`).
    pub place: String,
    pub service: Service,
}

/// One service per storage root the config's registry and mirror routes name, with the config's immutable
/// rules and the root's notifications outbox.
pub async fn services(config: &Config) -> anyhow::Result<Vec<Engine>> {
    let mut out = Vec::new();
    for root in storage_roots(config) {
        let place = describe_root(&config.storage.backend, &root);
        let storage: Arc<dyn Storage> = match &config.storage.backend {
            StorageBackend::Filesystem => Arc::new(FsStorage::open(&root).map_err(|e| {
                anyhow::anyhow!("{e} (stop the server on {place}, or use the HTTP API)")
            })?),
            backend => open_storage(backend, &root).await?,
        };
        out.push(Engine {
            place,
            service: service_on(config, storage)?,
        });
    }
    Ok(out)
}

/// Every storage root the config's registry and mirror routes name, once each in the order
/// they first appear. Mirror routes' caches are repositories too (retention, usage, gc's
/// cache policy).
pub fn storage_roots(config: &Config) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    for route in config.servers.iter().flat_map(|s| &s.routes) {
        if let Some(root) = route.target.root() {
            if !roots.iter().any(|r| r == root) {
                roots.push(root.to_owned());
            }
        }
    }
    roots
}

/// The repository service a command runs on `storage`: the config's limits and immutable
/// tags, and its notifications written to the outbox (the servers deliver them).
pub fn service_on(config: &Config, storage: Arc<dyn Storage>) -> anyhow::Result<Service> {
    let events = Notifications::outbox_only(&config.notifications, storage.clone())?;
    Ok(Service::new(
        storage,
        config.registry.max_manifest_bytes,
        config.registry.manifest_cache_bytes,
    )
    .with_immutable(&config.immutable)
    .with_events(events))
}
