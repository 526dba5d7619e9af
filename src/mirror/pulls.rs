//! When each cached image was last pulled: what the cache policy (`cache_max_age`,
//! `cache_max_size`, carried out by `gc/mirror_roots.rs`) ranks images by.
//!
//! A pull (a manifest GET the cache answers) writes an empty small record named
//! `mirror/pulls/<repository>/_/<alg>-<hex>/<unix ms>`, so one listing gives every image
//! with every pull time, from every node sharing the storage, and it survives restarts.
//! A node writes at most one per image per [`EVERY`]: one small write a minute for an
//! image pulled all day, next to the manifest, tag and blob reads each pull makes anyway.
//! An image with no record counts as pulled when it was fetched (its manifest link's
//! write time). Each eviction pass keeps only the latest record of each image, so the
//! listing stays about one key per cached image and node.
//!
//! Touch records (`registry::service::touch`) were not enough: they name a digest, not a
//! repository, and the collector deletes them after the grace period (hours), while a
//! cache keeps images for days.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{RecordKey, Storage, StorageResult};

const PULLS: &str = "mirror/pulls";

/// The most often one node records a pull of one image.
pub const EVERY: Duration = Duration::from_secs(60);

/// How many images a node remembers having recorded (about 150 bytes each).
const REMEMBERED: u64 = 100_000;

/// One node's pull recorder: at most one record per image per [`EVERY`].
pub struct Pulls {
    recent: moka::sync::Cache<(RepoName, Digest), ()>,
}

impl Default for Pulls {
    fn default() -> Self {
        Self {
            recent: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(EVERY)
                .build(),
        }
    }
}

impl Pulls {
    /// Records that `digest` was pulled from the cache's `repo` now (unless lately).
    pub async fn pulled(
        &self,
        storage: &dyn Storage,
        repo: &RepoName,
        digest: &Digest,
    ) -> StorageResult<()> {
        let id = (repo.clone(), digest.clone());
        if self.recent.contains_key(&id) {
            return Ok(());
        }
        pulled_at(storage, repo, digest, SystemTime::now()).await?;
        self.recent.insert(id, ());
        Ok(())
    }
}

/// Writes the record of a pull at `at` (tests move the clock instead of waiting).
pub async fn pulled_at(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
    at: SystemTime,
) -> StorageResult<()> {
    match key(repo, digest, at) {
        Some(key) => storage.put_record(&key, Bytes::new()).await,
        None => Ok(()),
    }
}

fn key(repo: &RepoName, digest: &Digest, at: SystemTime) -> Option<RecordKey> {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    RecordKey::new(format!("{}/{ms:013}", image_prefix(repo, digest)))
}

fn image_prefix(repo: &RepoName, digest: &Digest) -> String {
    // `_` cannot begin a repository name's component, so it ends the name unambiguously.
    let alg = digest.algorithm().as_str();
    format!("{PULLS}/{repo}/_/{alg}-{}", digest.hex())
}

/// One pull record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pull {
    pub repo: RepoName,
    pub digest: Digest,
    pub at: SystemTime,
    pub key: RecordKey,
}

fn parse(key: RecordKey) -> Option<Pull> {
    let rest = key.as_str().strip_prefix(PULLS)?.strip_prefix('/')?;
    let (rest, ms) = rest.rsplit_once('/')?;
    let (repo, digest) = rest.rsplit_once("/_/")?;
    let (alg, hex) = digest.split_once('-')?;
    Some(Pull {
        repo: RepoName::parse(repo).ok()?,
        digest: Digest::parse(&format!("{alg}:{hex}")).ok()?,
        at: UNIX_EPOCH + Duration::from_millis(ms.parse().ok()?),
        key,
    })
}

/// Every pull record (one listing), in key order: per image, oldest first.
pub async fn list_all(storage: &dyn Storage) -> StorageResult<Vec<Pull>> {
    let Some(prefix) = RecordKey::new(PULLS) else {
        return Ok(Vec::new());
    };
    let keys = storage.list_records(&prefix).await?;
    Ok(keys.into_iter().filter_map(parse).collect())
}

/// The latest pull of one image, read from storage now (one listing).
pub async fn latest(
    storage: &dyn Storage,
    repo: &RepoName,
    digest: &Digest,
) -> StorageResult<Option<SystemTime>> {
    let Some(prefix) = RecordKey::new(image_prefix(repo, digest)) else {
        return Ok(None);
    };
    let keys = storage.list_records(&prefix).await?;
    Ok(keys.into_iter().filter_map(parse).map(|p| p.at).max())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::reference::Algorithm;
    use crate::registry::storage::fs::FsStorage;

    #[tokio::test]
    async fn a_pull_is_listed_with_its_image_and_time_and_written_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::open(dir.path()).unwrap();
        let repo = RepoName::parse("docker.io/library/alpine").unwrap();
        let d = Digest::of(Algorithm::Sha256, b"manifest");
        assert_eq!(latest(&s, &repo, &d).await.unwrap(), None);
        let before = SystemTime::now() - Duration::from_millis(1);
        let pulls = Pulls::default();
        pulls.pulled(&s, &repo, &d).await.unwrap();
        pulls.pulled(&s, &repo, &d).await.unwrap();
        let other = RepoName::parse("docker.io/library/alpine/x").unwrap();
        pulls.pulled(&s, &other, &d).await.unwrap();
        let at = latest(&s, &repo, &d).await.unwrap().unwrap();
        assert!(at >= before && at <= SystemTime::now());
        let all = list_all(&s).await.unwrap();
        assert_eq!(
            all.len(),
            2,
            "the second pull within the minute wrote nothing"
        );
        assert!(all.iter().any(|p| p.repo == repo && p.digest == d));
        assert!(all.iter().any(|p| p.repo == other && p.digest == d));
    }
}
