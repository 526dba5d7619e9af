//! `wharf gc [--dry-run]`: on each storage root, the mirror routes' cache policy
//! (`gc::mirror_roots`: idle or over-size cached images deleted through the repository
//! service, announced as deletes), then one mark and sweep, printing what goes (or, dry,
//! what would) and how many bytes.

use std::path::PathBuf;
use std::time::SystemTime;

use wharf::config::Config;
use wharf::gc::mirror_roots::{self, Why};
use wharf::gc::retention::Outcome;

pub async fn run(path: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    let (config, _) = Config::load(path.as_deref())?;
    let verb = if dry_run { "would delete" } else { "deleted" };
    // On the filesystem this takes the root's lock: until the collector runs inside the
    // server (with its lease), it runs with the server stopped, and says so rather than
    // racing it.
    for engine in crate::repo_cmd::services(&config).await? {
        println!("storage {}", engine.place);
        let policies = mirror_roots::policies(&config, &engine.root);
        let evicted = mirror_roots::evict(&engine.service, &policies, SystemTime::now(), dry_run)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", engine.place, e.message))?;
        for e in &evicted {
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
        if dry_run && !evicted.is_empty() {
            println!("(a dry run does not count the blobs the evictions would free)");
        }
        let swept = wharf::gc::collect(&**engine.service.storage(), &config.gc, dry_run).await?;
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
