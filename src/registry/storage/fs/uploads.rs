//! Upload sessions on disk: `wharf/uploads/<uuid>/data` holds the bytes received so far and
//! `wharf/uploads/<uuid>/owner` who opened it (the repository, and the user when logins are on).
//! A monolithic session also has an empty `wharf/uploads/<uuid>/monolithic`: only the request
//! that opened it can use it, so after a restart it is garbage ([`purge_orphans`]).
//!
//! The bytes on disk are the truth, so a session survives a restart. What lives only in
//! memory is an optimisation: the sha256 state after the last append, so finishing a
//! session that streamed through this process does not read the blob back. When that
//! state is missing (after a restart) the file is hashed from disk instead.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use super::append::{self, Sink};
use super::atomic;
use super::layout::Layout;
use super::{blocking, stream};
use crate::registry::reference::{Algorithm, Digest};
use crate::registry::storage::{
    self, Append, ByteStream, ChunkRange, Finish, SessionKind, StorageError, StorageResult,
    UploadId, UploadOwner,
};

/// The marker file of a monolithic session.
const MONOLITHIC: &str = "monolithic";

/// sha256 state of a session after exactly `offset` bytes.
type HashState = Option<(u64, Sha256)>;

/// Per-session locks, so two requests on one session never interleave their writes, each
/// holding the session's streamed hash state.
#[derive(Default)]
pub struct Sessions {
    locks: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<HashState>>>>,
}

impl Sessions {
    fn lock_of(&self, id: UploadId) -> Arc<tokio::sync::Mutex<HashState>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_default().clone()
    }

    fn forget(&self, id: UploadId) {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&id);
    }

    /// Drops the lock of an id that named no session, unless another request holds it
    /// too, so ids a client invents leave nothing behind. `lock` is the caller's handle.
    fn release_unknown(&self, id: UploadId, lock: Arc<tokio::sync::Mutex<HashState>>) {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Two handles: the map's and the caller's. More means another request waits on it.
        if Arc::strong_count(&lock) <= 2 {
            map.remove(&id);
        }
    }
}

/// Whether the session exists and belongs to `repo`.
fn owned_by(layout: &Layout, id: UploadId, owner: &UploadOwner) -> io::Result<bool> {
    let stored = atomic::read_optional(&layout.upload_dir(id).join("owner"))?;
    Ok(stored.as_deref() == Some(owner.record().as_bytes()))
}

pub async fn create(
    layout: &Layout,
    owner: &UploadOwner,
    kind: SessionKind,
) -> StorageResult<UploadId> {
    let id = UploadId::new();
    let dir = layout.upload_dir(id);
    let tmp = layout.tmp();
    let owner = owner.record();
    blocking("create upload", move || {
        atomic::create_dirs(&dir)?;
        File::create(dir.join("data"))?;
        if kind == SessionKind::Monolithic {
            File::create(dir.join(MONOLITHIC))?;
        }
        // The owner file is written last and atomically: a session without one is unknown.
        atomic::write_file(&tmp, &dir.join("owner"), owner.as_bytes())
    })
    .await?;
    Ok(id)
}

pub async fn size(
    layout: &Layout,
    owner: &UploadOwner,
    id: UploadId,
) -> StorageResult<Option<u64>> {
    let (layout, owner) = (layout.clone(), owner.clone());
    blocking("upload status", move || {
        if !owned_by(&layout, id, &owner)? {
            return Ok(None);
        }
        Ok(Some(
            fs::metadata(layout.upload_dir(id).join("data"))?.len(),
        ))
    })
    .await
}

pub async fn append(
    layout: &Layout,
    sessions: &Sessions,
    owner: &UploadOwner,
    id: UploadId,
    range: Option<ChunkRange>,
    body: ByteStream,
) -> StorageResult<Append> {
    let lock = sessions.lock_of(id);
    let mut hash_state = lock.lock().await;
    let (l, r) = (layout.clone(), owner.clone());
    let opened = blocking("open upload", move || {
        if !owned_by(&l, id, &r)? {
            return Ok(None);
        }
        let sink = Sink::open(&l.upload_dir(id).join("data"))?;
        let size = sink.len();
        Ok(Some((sink, size)))
    })
    .await?;
    let Some((sink, size)) = opened else {
        drop(hash_state);
        sessions.release_unknown(id, lock);
        return Ok(Append::UnknownUpload);
    };
    if range.is_some_and(|r| r.offset != size) {
        return Ok(Append::OffsetMismatch { size });
    }
    let hasher = match hash_state.take() {
        Some((offset, h)) if offset == size => Some(h),
        _ if size == 0 => Some(Sha256::new()),
        _ => None,
    };
    let before = hasher.clone();
    let body = match range {
        Some(r) => storage::at_most(body, r.len.saturating_add(1)),
        None => body,
    };
    let done = append::append(sink, hasher, body)
        .await
        .map_err(StorageError::io("append upload"))?;
    if let (Some(r), None) = (range, &done.body_error) {
        if done.written != r.len {
            // The chunk lied about its length: put the session back as it was.
            let data = layout.upload_dir(id).join("data");
            blocking("roll back upload", move || {
                OpenOptions::new().write(true).open(data)?.set_len(size)
            })
            .await?;
            *hash_state = before.map(|h| (size, h));
            return Ok(Append::LengthMismatch { size });
        }
    }
    let new_size = size + done.written;
    *hash_state = done.hasher.map(|h| (new_size, h));
    Ok(match done.body_error {
        None => Append::Written { size: new_size },
        Some(error) => Append::BodyFailed {
            size: new_size,
            error,
        },
    })
}

pub async fn finish(
    layout: &Layout,
    sessions: &Sessions,
    owner: &UploadOwner,
    id: UploadId,
    digest: &Digest,
) -> StorageResult<Finish> {
    let lock = sessions.lock_of(id);
    let mut hash_state = lock.lock().await;
    let streamed = hash_state.take();
    let (l, r, d) = (layout.clone(), owner.clone(), digest.clone());
    let outcome = blocking("finish upload", move || {
        if !owned_by(&l, id, &r)? {
            return Ok(Finish::UnknownUpload);
        }
        let dir = l.upload_dir(id);
        let data = dir.join("data");
        let mut file = File::open(&data)?;
        let size = file.metadata()?.len();
        let actual = match streamed {
            Some((offset, h)) if offset == size && d.algorithm() == Algorithm::Sha256 => {
                Digest::from_hash(Algorithm::Sha256, &h.finalize())
            }
            _ => stream::hash_file(&mut file, d.algorithm())?,
        };
        if actual != d {
            atomic::remove_dir_all(&dir)?;
            return Ok(Finish::DigestMismatch { actual });
        }
        // The blob's write time is when it became visible, not the session's last append:
        // garbage collection's grace period counts from it (`gc` module docs).
        file.set_modified(std::time::SystemTime::now())?;
        // Durable before visible: the rename publishes only fsynced bytes. A concurrent
        // finish of the same digest renames identical bytes over it, which is harmless.
        file.sync_all()?;
        atomic::place(&data, &l.blob(&d))?;
        atomic::remove_dir_all(&dir)?;
        Ok(Finish::Done { size })
    })
    .await?;
    drop(hash_state);
    match outcome {
        Finish::UnknownUpload => sessions.release_unknown(id, lock),
        _ => sessions.forget(id),
    }
    Ok(outcome)
}

pub async fn cancel(
    layout: &Layout,
    sessions: &Sessions,
    owner: &UploadOwner,
    id: UploadId,
) -> StorageResult<bool> {
    let lock = sessions.lock_of(id);
    let _held = lock.lock().await;
    let (l, r) = (layout.clone(), owner.clone());
    let removed = blocking("cancel upload", move || {
        if !owned_by(&l, id, &r)? {
            return Ok(false);
        }
        atomic::remove_dir_all(&l.upload_dir(id))?;
        Ok(true)
    })
    .await?;
    sessions.forget(id);
    Ok(removed)
}

/// Removes every monolithic session. One process owns a storage root, so at start-up no
/// request is writing to one: each is what a crash left, and no client can resume it.
pub async fn purge_orphans(layout: &Layout) -> StorageResult<usize> {
    let dir = layout.uploads();
    blocking("purge orphaned uploads", move || {
        let mut purged = 0;
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.join(MONOLITHIC).exists() {
                fs::remove_dir_all(&path)?;
                purged += 1;
            }
        }
        Ok(purged)
    })
    .await
}

/// Removes sessions whose data was last written more than `max_age` ago.
pub async fn purge(
    layout: &Layout,
    sessions: &Sessions,
    max_age: Duration,
) -> StorageResult<usize> {
    let dir = layout.uploads();
    let stale = blocking("purge uploads", move || {
        let mut stale = Vec::new();
        let now = SystemTime::now();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().and_then(UploadId::parse) else {
                continue;
            };
            let touched = match fs::metadata(entry.path().join("data")) {
                Ok(m) => m.modified()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => entry.metadata()?.modified()?,
                Err(e) => return Err(e),
            };
            if now.duration_since(touched).unwrap_or_default() > max_age {
                atomic::remove_dir_all(&entry.path())?;
                stale.push(id);
            }
        }
        Ok(stale)
    })
    .await?;
    for id in &stale {
        sessions.forget(*id);
    }
    Ok(stale.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::reference::RepoName;

    fn sessions_held(s: &Sessions) -> usize {
        s.locks.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// A client inventing session ids (an attacker, or a client retrying after a purge)
    /// must not make the per-session lock map grow.
    #[tokio::test]
    async fn unknown_upload_ids_leave_nothing_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().to_path_buf());
        fs::create_dir_all(layout.uploads()).unwrap();
        fs::create_dir_all(layout.tmp()).unwrap();
        let sessions = Sessions::default();
        let owner = UploadOwner {
            repo: RepoName::parse("team/app").unwrap(),
            user: None,
        };
        let digest = Digest::of(Algorithm::Sha256, b"");
        for _ in 0..100 {
            let id = UploadId::new();
            let body: ByteStream = Box::pin(futures_util::stream::empty());
            let a = append(&layout, &sessions, &owner, id, None, body).await;
            assert!(matches!(a, Ok(Append::UnknownUpload)));
            let f = finish(&layout, &sessions, &owner, id, &digest).await;
            assert!(matches!(f, Ok(Finish::UnknownUpload)));
            assert_eq!(sessions_held(&sessions), 0);
            assert!(!cancel(&layout, &sessions, &owner, id).await.unwrap());
            assert_eq!(sessions_held(&sessions), 0);
        }
        // A real session is held while it is in use, and forgotten when it ends.
        let id = create(&layout, &owner, SessionKind::Resumable)
            .await
            .unwrap();
        let body: ByteStream = Box::pin(futures_util::stream::empty());
        append(&layout, &sessions, &owner, id, None, body)
            .await
            .unwrap();
        assert_eq!(sessions_held(&sessions), 1);
        assert!(matches!(
            finish(&layout, &sessions, &owner, id, &digest)
                .await
                .unwrap(),
            Finish::Done { size: 0 }
        ));
        assert_eq!(sessions_held(&sessions), 0);
    }
}
