//! Small records: wharf's own state beside the registry (the notifications outbox, its
//! leases and history), under `wharf/records/` in the storage root or bucket prefix.
//!
//! # Contract
//!
//! - A record is small (a few KiB; the largest, the UI's saved repository index, about
//!   60 bytes a repository): it is written and read whole.
//! - Writes are atomic and durable before they return: readers, other nodes and a crash
//!   see the old record or the new one, never a part.
//! - [`Storage::create_record`](super::Storage::create_record) creates only when the key is
//!   free, and [`Storage::replace_record`](super::Storage::replace_record) replaces only the
//!   version that was read; of several racing writers, exactly one wins (where the store
//!   has conditional writes: the filesystem, Azure, and S3 unless
//!   `storage.s3.conditional_writes = false`). This is what leases are built on.
//! - Listing returns every key under a prefix, at any depth, sorted by key, so records
//!   named by time list in time order.

/// A lease as its record holds it: `events::lease` takes and renews them (the
/// notifications' and the GC's); the GC status reads who holds the GC's.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LeaseRecord {
    pub holder: String,
    /// Unix ms; 0 once released.
    pub expires_ms: u64,
}

/// Where a record lives: `/`-separated segments of ASCII letters, digits, `.`, `_`, `-`,
/// none empty or starting with `.`, so a key can name a file or an object directly.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey(String);

impl RecordKey {
    pub fn new(key: impl Into<String>) -> Option<Self> {
        let key = key.into();
        key.split('/').all(valid_segment).then_some(Self(key))
    }

    /// This key with `segment` appended.
    pub fn join(&self, segment: &str) -> Option<Self> {
        valid_segment(segment).then(|| Self(format!("{}/{segment}", self.0)))
    }

    /// This key with the relative key `rel` (one or more segments) appended.
    pub fn join_path(&self, rel: &str) -> Option<Self> {
        Self::new(format!("{}/{rel}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The version of a record as it was read, for [`Storage::replace_record`](super::Storage::replace_record).
/// Opaque: an e-tag and object version on object stores, a content hash on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordVersion {
    pub(super) tag: Option<String>,
    pub(super) version: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_segments() {
        assert!(RecordKey::new("events/ci/pending/0001-a").is_some());
        for bad in ["", "a//b", "../x", "a/.hidden", "a b", "a/b/", "/a"] {
            assert!(RecordKey::new(bad).is_none(), "{bad:?}");
        }
        let k = RecordKey::new("a/b").unwrap();
        assert_eq!(k.join("c").unwrap().as_str(), "a/b/c");
        assert!(k.join("c/d").is_none());
        assert_eq!(k.name(), "b");
    }
}
