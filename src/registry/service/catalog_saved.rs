//! The repository index as the last run left it, saved in storage so that the first view
//! after a restart lists at once instead of waiting for a walk of every repository (seconds
//! for 10,000 on a cold disk, minutes of listings in a bucket).
//!
//! One record, `wharf/records/ui/repository-index` (`records.rs`): every name, and the
//! figures known when it was saved. registry:2 never reads under `wharf/` (its data is all
//! under `docker/registry/v2/`), so the file is invisible to it. What the record says is
//! only ever served as stale: the view that loads it also starts a walk, whose result
//! replaces it, so a repository created or deleted while wharf was down (by registry:2, or
//! another node) is right within one walk. A record that cannot be read is a warning and a
//! walk, never an error.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::catalog::RepoStats;
use crate::registry::reference::RepoName;
use crate::registry::storage::{RecordKey, Storage, StorageResult};

/// Where the index is saved, under `wharf/records/`.
const KEY: &str = "ui/repository-index";
/// Bumped when the format changes; a record of another version is ignored.
const VERSION: u32 = 1;

/// What a saved index holds.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Saved {
    /// Sorted, without duplicates.
    pub names: Vec<RepoName>,
    pub figures: Vec<(RepoName, RepoStats)>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    repositories: Vec<Entry>,
}

/// One repository; figures only when they were known. Short keys: 10,000 repositories
/// make a record of about 600 KB.
#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "n")]
    name: String,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    tags: Option<usize>,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    /// The last push, in seconds since the epoch.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pushed: Option<u64>,
}

fn key() -> RecordKey {
    RecordKey::new(KEY).unwrap_or_else(|| unreachable!("{KEY} is a valid record key"))
}

/// The record's bytes for `names` (sorted) with the figures `figures_of` knows.
pub(super) fn encode<'a>(
    names: &'a [RepoName],
    figures_of: impl Fn(&RepoName) -> Option<&'a RepoStats>,
) -> Bytes {
    let repositories = names
        .iter()
        .map(|name| {
            let figures = figures_of(name);
            Entry {
                name: name.as_str().to_owned(),
                tags: figures.map(|f| f.tags),
                size: figures.map(|f| f.size),
                pushed: figures
                    .and_then(|f| f.last_push)
                    .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
            }
        })
        .collect();
    let record = Record {
        version: VERSION,
        repositories,
    };
    // Plain data: serialising it cannot fail.
    Bytes::from(serde_json::to_vec(&record).unwrap_or_default())
}

/// What `bytes` hold, or `None` for a record of another version or shape.
pub(super) fn decode(bytes: &[u8]) -> Option<Saved> {
    let record: Record = serde_json::from_slice(bytes).ok()?;
    if record.version != VERSION {
        return None;
    }
    let mut saved = Saved::default();
    for entry in record.repositories {
        // A name that is no repository name (edited by hand, say) is left out.
        let Ok(name) = RepoName::parse(&entry.name) else {
            continue;
        };
        if let (Some(tags), Some(size)) = (entry.tags, entry.size) {
            let last_push = entry.pushed.map(|s| UNIX_EPOCH + Duration::from_secs(s));
            let stats = RepoStats {
                tags,
                size,
                last_push,
            };
            saved.figures.push((name.clone(), stats));
        }
        saved.names.push(name);
    }
    saved.names.sort();
    saved.names.dedup();
    Some(saved)
}

/// A fingerprint of a record's bytes, so an unchanged index is not written again.
pub(super) fn fingerprint(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// The saved index and its fingerprint; `None` when there is none or it cannot be used.
pub(super) async fn load(storage: &dyn Storage) -> Option<(Saved, u64)> {
    match storage.read_record(&key()).await {
        Ok(Some((bytes, _))) => match decode(&bytes) {
            Some(saved) => Some((saved, fingerprint(&bytes))),
            None => {
                tracing::warn!("the saved repository index is not in a known format; reading the repositories instead");
                None
            }
        },
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(%error, "reading the saved repository index failed; reading the repositories instead");
            None
        }
    }
}

/// Saves the index's bytes (made by [`encode`]).
pub(super) async fn save(storage: &dyn Storage, bytes: Bytes) -> StorageResult<()> {
    storage.put_record(&key(), bytes).await
}

/// When something was pushed, as the record keeps it (whole seconds).
#[cfg(test)]
pub(super) fn in_seconds(at: std::time::SystemTime) -> std::time::SystemTime {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(name: &str) -> RepoName {
        RepoName::parse(name).unwrap()
    }

    #[test]
    fn names_and_known_figures_survive_a_round_trip() {
        let names = vec![repo("a/one"), repo("b"), repo("c/two")];
        let pushed = in_seconds(std::time::SystemTime::now());
        let b = RepoStats {
            tags: 2,
            size: 1234,
            last_push: Some(pushed),
        };
        let bytes = encode(&names, |n| (n.as_str() == "b").then_some(&b));
        let saved = decode(&bytes).unwrap();
        assert_eq!(saved.names, names);
        assert_eq!(saved.figures, vec![(repo("b"), b)]);
    }

    #[test]
    fn other_versions_and_bad_names_are_not_taken() {
        assert!(decode(br#"{"version":2,"repositories":[{"n":"a"}]}"#).is_none());
        assert!(decode(b"not json").is_none());
        let saved = decode(
            br#"{"version":1,"repositories":[{"n":"b"},{"n":"Bad Name"},{"n":"a"},{"n":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(saved.names, vec![repo("a"), repo("b")]);
    }
}
