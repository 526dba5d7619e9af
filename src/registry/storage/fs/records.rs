//! Small records on disk, under `<root>/wharf/records/<key>` (see `storage::records` for the
//! contract). Writes go through `atomic` (temp file, fsync, rename, fsync of the
//! directory). A create is a hard link of the staged file: `link(2)` fails when the name
//! exists, atomically. A replace compares the record's content hash under a process-wide
//! lock; one process owns a root (`root_lock`), so no other writer can slip in.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::{atomic, blocking, FsStorage};
use crate::registry::storage::{RecordKey, RecordVersion, StorageResult};

/// Serialises compare-and-replace within the process (the only writer of its root).
static REPLACE: Mutex<()> = Mutex::new(());

impl FsStorage {
    fn records_dir(&self) -> PathBuf {
        self.root().join("wharf").join("records")
    }

    fn record_path(&self, key: &RecordKey) -> PathBuf {
        // Keys are validated segments, so the path stays under the records directory.
        self.records_dir().join(key.as_str())
    }

    fn staging(&self) -> PathBuf {
        self.layout.tmp()
    }

    pub(super) async fn put_record_file(&self, key: &RecordKey, bytes: Bytes) -> StorageResult<()> {
        let (tmp, path) = (self.staging(), self.record_path(key));
        blocking("write record", move || {
            atomic::write_file(&tmp, &path, &bytes)
        })
        .await
    }

    pub(super) async fn create_record_file(
        &self,
        key: &RecordKey,
        bytes: Bytes,
    ) -> StorageResult<bool> {
        let (tmp, path) = (self.staging(), self.record_path(key));
        blocking("create record", move || create(&tmp, &path, &bytes)).await
    }

    pub(super) async fn replace_record_file(
        &self,
        key: &RecordKey,
        bytes: Bytes,
        expected: &RecordVersion,
    ) -> StorageResult<bool> {
        let (tmp, path, expected) = (self.staging(), self.record_path(key), expected.clone());
        blocking("replace record", move || {
            let _held = REPLACE.lock().unwrap_or_else(|p| p.into_inner());
            match atomic::read_optional(&path)? {
                Some(now) if version_of(&now) == expected => {
                    atomic::write_file(&tmp, &path, &bytes).map(|()| true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    pub(super) async fn read_record_file(
        &self,
        key: &RecordKey,
    ) -> StorageResult<Option<(Bytes, RecordVersion)>> {
        let path = self.record_path(key);
        blocking("read record", move || {
            Ok(atomic::read_optional(&path)?.map(|b| {
                let version = version_of(&b);
                (Bytes::from(b), version)
            }))
        })
        .await
    }

    pub(super) async fn list_record_files(
        &self,
        prefix: &RecordKey,
    ) -> StorageResult<Vec<RecordKey>> {
        let (dir, prefix) = (self.record_path(prefix), prefix.clone());
        blocking("list records", move || {
            let mut out = Vec::new();
            walk(&dir, &prefix, &mut out)?;
            out.sort();
            Ok(out)
        })
        .await
    }

    pub(super) async fn delete_record_file(&self, key: &RecordKey) -> StorageResult<bool> {
        let path = self.record_path(key);
        blocking("delete record", move || atomic::remove_file(&path)).await
    }
}

/// Stages the bytes, then links them in under `path` only if that name is free.
fn create(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let staged = tmp_dir.join(uuid::Uuid::new_v4().to_string());
    atomic::write_file(tmp_dir, &staged, bytes)?;
    let linked = match path.parent() {
        Some(parent) => atomic::create_dirs(parent).and_then(|()| fs::hard_link(&staged, path)),
        None => Err(io::Error::other("record path has no parent")),
    };
    let _ = fs::remove_file(&staged);
    match linked {
        Ok(()) => {
            if let Some(parent) = path.parent() {
                atomic::sync_dir(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn version_of(bytes: &[u8]) -> RecordVersion {
    RecordVersion {
        tag: Some(hex::encode(Sha256::digest(bytes))),
        version: None,
    }
}

/// Every file under `dir`, as keys under `prefix`; nothing when `dir` does not exist.
fn walk(dir: &Path, prefix: &RecordKey, out: &mut Vec<RecordKey>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(key) = entry.file_name().to_str().and_then(|n| prefix.join(n)) else {
            continue; // anything not made by records
        };
        if entry.file_type()?.is_dir() {
            walk(&entry.path(), &key, out)?;
        } else {
            out.push(key);
        }
    }
    Ok(())
}
