//! Small records on disk, under `<root>/wharf/records/<key>` (see `storage::records` for the
//! contract). Writes go through `atomic` (temp file, fsync, rename, fsync of the
//! directory). A create is a hard link of the staged file: `link(2)` fails when the name
//! exists, atomically. A replace compares the record's content hash while holding an
//! exclusive `flock` on `wharf/records.lock`: the server owning the root and a `wharf gc`
//! beside it (which takes the GC lease through these records) both write records, so the
//! compare-and-replace must exclude other processes, not only other threads. A `flock`
//! belongs to an open file, so each replace opens the file: threads of one process
//! exclude each other the same way, and the kernel drops the lock of a killed process.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::{atomic, blocking, FsStorage};
use crate::registry::storage::{RecordKey, RecordVersion, StorageResult};

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
        let lock = self.layout.wharf().join("records.lock");
        blocking("replace record", move || {
            let _held = exclusive(&lock)?;
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

/// Waits for the exclusive `flock` on `path` (created if missing); held until the file is
/// dropped. Replaces are a few per lease renewal, so the wait is short and on the blocking
/// pool.
fn exclusive(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    loop {
        use std::os::fd::AsRawFd;
        // SAFETY: flock only uses the descriptor, which `file` keeps open for the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::storage::Storage;

    /// `wharf gc` beside the server replaces records too (the GC lease): a replace must
    /// wait while another process holds the records' lock. Another open file description
    /// of the lock file stands for that process, as `flock` sees it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replace_waits_while_another_process_holds_the_records_lock() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(FsStorage::open(dir.path()).unwrap());
        let key = RecordKey::new("gc/lease").unwrap();
        s.put_record(&key, Bytes::from_static(b"a")).await.unwrap();
        let (_, version) = s.read_record(&key).await.unwrap().unwrap();
        let other = exclusive(&dir.path().join("wharf/records.lock")).unwrap();
        let replace = tokio::spawn({
            let (s, key) = (s.clone(), key.clone());
            async move {
                s.replace_record(&key, Bytes::from_static(b"b"), &version)
                    .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !replace.is_finished(),
            "replaced under another process's lock"
        );
        drop(other);
        assert!(replace.await.unwrap().unwrap());
        assert_eq!(&s.read_record(&key).await.unwrap().unwrap().0[..], b"b");
    }
}
