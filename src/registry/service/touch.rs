//! Touch records: what protects a blob a client is relying on from a garbage collection
//! running at the same time (the argument is in the `gc` module docs).
//!
//! Every operation through which a client learns or asserts that a blob is in a repository
//! (HEAD or GET of its size, a mount, a finished or monolithic upload, a manifest push's
//! reference check, and the manifest itself) records a touch **before** it looks at
//! storage and answers. A touch is an empty small record named by the digest and the time,
//! `gc/touches/<alg>-<hex>/<unix ms>`, so one listing gives the collector every touch with
//! its time, and one listing per digest re-checks a single blob right before it goes.
//!
//! A node writes at most one touch per digest per [`Touches::every`] (a quarter of
//! `gc.grace`): a touch at time `t` leaves a record no older than `t - every`, which the
//! collector counts as recent for a whole grace period. Each collection deletes the
//! records older than its grace cut-off, so they stay few.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::registry::reference::Digest;
use crate::registry::storage::{RecordKey, Storage, StorageResult};

/// Where touch records live, under the records' root.
const TOUCHES: &str = "gc/touches";

/// How many digests a node remembers having touched (about 100 bytes each).
const REMEMBERED: u64 = 100_000;

pub struct Touches {
    every: Duration,
    /// Digests this node touched less than `every` ago: no record needed again.
    recent: moka::sync::Cache<Digest, ()>,
}

impl Touches {
    /// Touches written at most once per `every` per digest.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            recent: moka::sync::Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_live(every)
                .build(),
        }
    }

    /// For a collection grace period: a quarter of it (at least a second).
    pub fn for_grace(grace: Duration) -> Self {
        Self::new((grace / 4).max(Duration::from_secs(1)))
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    /// Whether this node touched `digest` (or stored it) less than [`Touches::every`] ago.
    pub fn is_recent(&self, digest: &Digest) -> bool {
        self.recent.contains_key(digest)
    }

    /// The blob's bytes were just written: their write time protects it like a touch.
    pub fn written(&self, digest: &Digest) {
        self.recent.insert(digest.clone(), ());
    }

    /// Records that a client relies on `digest` now (unless this node did lately).
    pub async fn touch(&self, storage: &dyn Storage, digest: &Digest) -> StorageResult<()> {
        if self.recent.contains_key(digest) {
            return Ok(());
        }
        if let Some(key) = key(digest, SystemTime::now()) {
            storage.put_record(&key, Bytes::new()).await?;
        }
        self.recent.insert(digest.clone(), ());
        Ok(())
    }
}

fn digest_segment(digest: &Digest) -> String {
    format!("{}-{}", digest.algorithm().as_str(), digest.hex())
}

fn key(digest: &Digest, at: SystemTime) -> Option<RecordKey> {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    RecordKey::new(format!("{TOUCHES}/{}/{ms:013}", digest_segment(digest)))
}

/// One touch record, as the collector reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Touch {
    pub digest: Digest,
    pub at: SystemTime,
    pub key: RecordKey,
}

fn parse(key: RecordKey) -> Option<Touch> {
    let rest = key.as_str().strip_prefix(TOUCHES)?.strip_prefix('/')?;
    let (digest, ms) = rest.split_once('/')?;
    let (alg, hex) = digest.split_once('-')?;
    let digest = Digest::parse(&format!("{alg}:{hex}")).ok()?;
    let at = UNIX_EPOCH + Duration::from_millis(ms.parse().ok()?);
    Some(Touch { digest, at, key })
}

/// Every touch record (one listing).
pub async fn list_all(storage: &dyn Storage) -> StorageResult<Vec<Touch>> {
    let Some(prefix) = RecordKey::new(TOUCHES) else {
        return Ok(Vec::new());
    };
    let keys = storage.list_records(&prefix).await?;
    Ok(keys.into_iter().filter_map(parse).collect())
}

/// The latest touch of `digest`, read from storage now (one listing).
pub async fn latest(storage: &dyn Storage, digest: &Digest) -> StorageResult<Option<SystemTime>> {
    let Some(prefix) = RecordKey::new(format!("{TOUCHES}/{}", digest_segment(digest))) else {
        return Ok(None);
    };
    let keys = storage.list_records(&prefix).await?;
    Ok(keys.into_iter().filter_map(parse).map(|t| t.at).max())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::reference::Algorithm;
    use crate::registry::storage::fs::FsStorage;

    #[tokio::test]
    async fn a_touch_is_listed_with_its_time_and_written_once_per_period() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStorage::open(dir.path()).unwrap();
        let d = Digest::of(Algorithm::Sha256, b"layer");
        let other = Digest::of(Algorithm::Sha256, b"other");
        assert_eq!(latest(&s, &d).await.unwrap(), None);
        let before = SystemTime::now() - Duration::from_millis(1);
        let touches = Touches::new(Duration::from_secs(3600));
        touches.touch(&s, &d).await.unwrap();
        touches.touch(&s, &d).await.unwrap();
        touches.touch(&s, &other).await.unwrap();
        let at = latest(&s, &d).await.unwrap().unwrap();
        assert!(at >= before && at <= SystemTime::now());
        let all = list_all(&s).await.unwrap();
        assert_eq!(
            all.len(),
            2,
            "the second touch within the period wrote nothing"
        );
        assert!(all.iter().any(|t| t.digest == d) && all.iter().any(|t| t.digest == other));
    }
}
