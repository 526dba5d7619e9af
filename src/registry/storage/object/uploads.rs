//! Upload sessions in the bucket, so that any node can continue or finish any session.
//!
//! A session is `wharf/uploads/<uuid>/state` (JSON, [`State`]) plus the bytes it describes:
//!
//! - full parts of an S3 multipart upload whose target is `wharf/uploads/<uuid>/data`. Part `n`
//!   always holds bytes `[n × part_size, (n+1) × part_size)`, so part numbers follow from
//!   offsets and never depend on which node wrote them;
//! - the bytes after the last full part (S3 needs parts of at least 5 MiB), as "tail
//!   pieces" `wharf/uploads/<uuid>/tail/<nonce>`, one per append, under keys no other append uses.
//!
//! An append reads the state, streams the body into parts as they fill (one part in flight
//! while the next fills, so memory stays near two parts), writes what is left as a tail
//! piece, and then replaces the state with `If-Match` on the version it read. When another
//! node appended meanwhile, that put fails and the client is told the session's current
//! size, as for any chunk that does not start where the session ends.
//!
//! The multipart upload's id is recorded in the state as soon as it is created (before
//! its first part), so a session a crash cut off can always be aborted by the purge.
//! Finishing is in `finish.rs`; monolithic uploads in `monolithic.rs`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{GetResult, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::hasher::Hasher;
use super::monolithic::Writer;
use super::{unavailable, ObjectStorage};
use crate::registry::storage::{
    self, Append, ByteStream, ChunkRange, StorageError, StorageResult, UploadId, UploadOwner,
};

/// A session as stored in `wharf/uploads/<uuid>/state`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct State {
    /// [`UploadOwner::record`] of whoever opened it.
    owner: String,
    /// Bytes received: `parts.len() × part_size` plus the tail pieces' lengths.
    pub size: u64,
    /// Fixed when the session opens, so nodes configured differently agree on part offsets.
    part_size: u64,
    /// The multipart upload behind `data`, recorded before its first part is written.
    pub multipart: Option<String>,
    /// E-tags of the full parts, in order.
    pub parts: Vec<String>,
    pub tail: Vec<Piece>,
    /// sha256 of all `size` bytes so far ([`Hasher::save`]).
    pub sha256: String,
    /// The process streaming a monolithic upload into this session; `None` for sessions a
    /// client can resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<Writer>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Piece {
    nonce: String,
    len: u64,
}

/// A state as read, with the version to make the next write conditional on.
pub(super) struct Loaded {
    pub state: State,
    version: UpdateVersion,
}

impl ObjectStorage {
    /// A session's state, whoever owns it; `None` when there is none (or it is unreadable:
    /// the purge then goes by age alone).
    pub(super) async fn read_state(&self, id: UploadId) -> StorageResult<Option<State>> {
        Ok(self
            .read_optional("read upload state", &self.keys.upload_state(id))
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// The session's state when it exists and belongs to `owner`.
    pub(super) async fn load(
        &self,
        id: UploadId,
        owner: &UploadOwner,
    ) -> StorageResult<Option<Loaded>> {
        let result: GetResult = match self.store.get(&self.keys.upload_state(id)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(unavailable("read upload state")(e)),
        };
        let version = UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        };
        let bytes = result
            .bytes()
            .await
            .map_err(unavailable("read upload state"))?;
        let state: State = serde_json::from_slice(&bytes).map_err(|e| StorageError::Corrupt {
            what: format!("upload {id} state: {e}"),
        })?;
        Ok((state.owner == owner.record()).then_some(Loaded { state, version }))
    }

    /// Writes a session's state; with `previous`, only if nobody replaced that version.
    /// Returns the new version, or `None` when somebody did replace it.
    async fn store_state(
        &self,
        id: UploadId,
        state: &State,
        previous: Option<UpdateVersion>,
    ) -> StorageResult<Option<UpdateVersion>> {
        let json = serde_json::to_vec(state).map_err(|e| StorageError::Io {
            op: "write upload state",
            source: e.into(),
        })?;
        let mode = match previous {
            Some(v) if self.conditional_writes => PutMode::Update(v),
            _ => PutMode::Overwrite,
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.keys.upload_state(id), json.into(), options)
            .await
        {
            Ok(put) => Ok(Some(UpdateVersion {
                e_tag: put.e_tag,
                version: put.version,
            })),
            Err(object_store::Error::Precondition { .. }) => Ok(None),
            Err(e) => Err(unavailable("write upload state")(e)),
        }
    }

    /// The tail pieces' bytes, in order.
    pub(super) async fn read_tail(
        &self,
        id: UploadId,
        tail: &[Piece],
    ) -> StorageResult<Vec<Bytes>> {
        let mut out = Vec::with_capacity(tail.len());
        for piece in tail {
            let key = self.keys.upload_tail(id, &piece.nonce);
            let bytes = self
                .read_optional("read upload tail", &key)
                .await?
                .filter(|b| b.len() as u64 == piece.len)
                .ok_or_else(|| StorageError::Corrupt {
                    what: format!(
                        "upload {id}: tail piece {} is missing or short",
                        piece.nonce
                    ),
                })?;
            out.push(bytes);
        }
        Ok(out)
    }

    /// Deletes the objects a finished session's state names, the state with them, in one
    /// request where the store can (S3's DeleteObjects, Azure's batch). What else a crash
    /// may have left in the session's folder goes with the purge.
    pub(super) async fn discard_finished(&self, id: UploadId, state: &State) -> StorageResult<()> {
        let mut keys: Vec<Path> = (state.tail.iter())
            .map(|p| self.keys.upload_tail(id, &p.nonce))
            .collect();
        if state.multipart.is_some() {
            keys.push(self.keys.upload_data(id));
        }
        keys.push(self.keys.upload_state(id));
        self.delete_all("delete upload", keys).await
    }

    /// Deletes every object of a session (best effort for leftovers: the purge retries).
    pub(super) async fn delete_session(
        &self,
        id: UploadId,
        multipart: Option<&String>,
    ) -> StorageResult<()> {
        if let Some(mp) = multipart {
            if let Err(error) = self
                .store
                .abort_multipart(&self.keys.upload_data(id), mp)
                .await
            {
                // Already completed or aborted; either way nothing is left to abort.
                tracing::debug!(upload = %id, %error, "aborting the multipart upload failed");
            }
        }
        // The state goes first: a session without one is unknown, whatever is left.
        match self.store.delete(&self.keys.upload_state(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(unavailable("delete upload")(e)),
        }
        for key in self
            .list_keys("delete upload", &self.keys.upload_dir(id))
            .await?
        {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(unavailable("delete upload")(e)),
            }
        }
        Ok(())
    }
}

/// Opens a session; `writer` for a monolithic one (see `monolithic.rs`).
pub async fn create(
    s: &ObjectStorage,
    owner: &UploadOwner,
    writer: Option<Writer>,
) -> StorageResult<UploadId> {
    let id = UploadId::new();
    let state = State {
        writer,
        owner: owner.record(),
        size: 0,
        part_size: s.part_size,
        multipart: None,
        parts: Vec::new(),
        tail: Vec::new(),
        sha256: Hasher::default().save(),
    };
    s.store_state(id, &state, None).await?;
    Ok(id)
}

pub async fn size(
    s: &ObjectStorage,
    owner: &UploadOwner,
    id: UploadId,
) -> StorageResult<Option<u64>> {
    Ok(s.load(id, owner).await?.map(|l| l.state.size))
}

/// Bytes waiting to become a part: the tail pieces (read only when a part fills, since
/// most appends never need them) and what this append received.
struct PartBuffer {
    /// Tail pieces of earlier appends not yet read, by length.
    old_tail: u64,
    chunks: Vec<Bytes>,
    len: u64,
    /// Whether a part was written during this append (so the old tail pieces are used up).
    flushed: bool,
}

pub async fn append(
    s: &ObjectStorage,
    owner: &UploadOwner,
    id: UploadId,
    range: Option<ChunkRange>,
    body: ByteStream,
) -> StorageResult<Append> {
    let Some(Loaded {
        mut state,
        mut version,
    }) = s.load(id, owner).await?
    else {
        return Ok(Append::UnknownUpload);
    };
    if range.is_some_and(|r| r.offset != state.size) {
        return Ok(Append::OffsetMismatch { size: state.size });
    }
    let mut body = match range {
        Some(r) => storage::at_most(body, r.len.saturating_add(1)),
        None => body,
    };
    let mut hasher = Hasher::load(&state.sha256).ok_or_else(|| StorageError::Corrupt {
        what: format!("upload {id}: unreadable hash state"),
    })?;
    let part_size = state.part_size;
    let mut buf = PartBuffer {
        old_tail: state.tail.iter().map(|p| p.len).sum(),
        chunks: Vec::new(),
        len: 0,
        flushed: false,
    };
    let mut in_flight: Option<JoinHandle<object_store::Result<PartId>>> = None;
    let mut received = 0u64;
    let mut body_error = None;
    loop {
        let chunk = match body.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                body_error = Some(e);
                break;
            }
            None => break,
        };
        hasher.update(&chunk);
        received += chunk.len() as u64;
        buf.len += chunk.len() as u64;
        buf.chunks.push(chunk);
        while buf.old_tail + buf.len >= part_size {
            if state.multipart.is_none()
                && !start_multipart(s, id, &mut state, &mut version).await?
            {
                // Another node appended meanwhile; its state stands.
                let size = s.load(id, owner).await?.map_or(0, |l| l.state.size);
                return Ok(Append::OffsetMismatch { size });
            }
            let part = take_part(s, id, &mut state, &mut buf).await?;
            // One part uploads while the next fills: waiting here bounds memory to ~2 parts.
            if let Some(previous) = in_flight.take() {
                state.parts.push(joined(previous).await?);
            }
            in_flight = Some(start_part(s, id, &mut state, part).await?);
        }
    }
    if let Some(previous) = in_flight.take() {
        state.parts.push(joined(previous).await?);
    }
    if let (Some(r), None) = (range, &body_error) {
        if received != r.len {
            // The chunk lied about its length. The state is not replaced, so the session
            // stays as it was: parts written past it are overwritten by the next append's
            // (same numbers) and never completed unless the state records them. (A
            // multipart upload this append started stays: the state already records it.)
            let size = state.size;
            return Ok(Append::LengthMismatch { size });
        }
    }
    // What did not fill a part becomes one new tail piece.
    let mut obsolete = Vec::new();
    if buf.flushed {
        obsolete = std::mem::take(&mut state.tail);
    }
    let mut new_piece = None;
    if buf.len > 0 {
        let nonce = UploadId::new().to_string();
        let key = s.keys.upload_tail(id, &nonce);
        let payload = PutPayload::from_iter(std::mem::take(&mut buf.chunks));
        s.store
            .put(&key, payload)
            .await
            .map_err(unavailable("write upload tail"))?;
        state.tail.push(Piece {
            nonce: nonce.clone(),
            len: buf.len,
        });
        new_piece = Some(key);
    }
    state.size += received;
    state.sha256 = hasher.save();
    if received == 0 && body_error.is_none() {
        // Nothing arrived (a `PUT ?digest=` without a body): nothing to record.
        return Ok(Append::Written { size: state.size });
    }
    if s.store_state(id, &state, Some(version)).await?.is_none() {
        // Another node appended to this session meanwhile; its state stands.
        if let Some(key) = new_piece {
            let _ = s.store.delete(&key).await;
        }
        let size = s.load(id, owner).await?.map_or(0, |l| l.state.size);
        return Ok(Append::OffsetMismatch { size });
    }
    for piece in obsolete {
        let _ = s.store.delete(&s.keys.upload_tail(id, &piece.nonce)).await;
    }
    Ok(match body_error {
        None => Append::Written { size: state.size },
        Some(error) => Append::BodyFailed {
            size: state.size,
            error,
        },
    })
}

/// Takes exactly one part's bytes off the front of the buffer, reading the old tail
/// pieces in front of them first if they are still unread.
async fn take_part(
    s: &ObjectStorage,
    id: UploadId,
    state: &mut State,
    buf: &mut PartBuffer,
) -> StorageResult<Vec<Bytes>> {
    if buf.old_tail > 0 {
        let mut old = s.read_tail(id, &state.tail).await?;
        old.append(&mut buf.chunks);
        buf.chunks = old;
        buf.len += buf.old_tail;
        buf.old_tail = 0;
    }
    buf.flushed = true;
    let mut part = Vec::new();
    let mut need = state.part_size;
    while need > 0 {
        let Some(mut chunk) = (!buf.chunks.is_empty()).then(|| buf.chunks.remove(0)) else {
            break;
        };
        if chunk.len() as u64 > need {
            // Bytes::split_to shares the allocation: no copy.
            buf.chunks.insert(0, chunk.split_off(need as usize));
        }
        need -= chunk.len() as u64;
        buf.len -= chunk.len() as u64;
        part.push(chunk);
    }
    Ok(part)
}

/// Creates the session's multipart upload and records it in the state at once, so that a
/// crash from here on leaves an upload the purge can abort. `false` (and nothing left) when
/// another append replaced the state meanwhile.
async fn start_multipart(
    s: &ObjectStorage,
    id: UploadId,
    state: &mut State,
    version: &mut UpdateVersion,
) -> StorageResult<bool> {
    let data = s.keys.upload_data(id);
    let multipart = s
        .store
        .create_multipart(&data)
        .await
        .map_err(unavailable("start multipart upload"))?;
    state.multipart = Some(multipart.clone());
    match s.store_state(id, state, Some(version.clone())).await? {
        Some(new) => {
            *version = new;
            Ok(true)
        }
        None => {
            let _ = s.store.abort_multipart(&data, &multipart).await;
            Ok(false)
        }
    }
}

/// Starts uploading the next full part in the background.
async fn start_part(
    s: &ObjectStorage,
    id: UploadId,
    state: &mut State,
    part: Vec<Bytes>,
) -> StorageResult<JoinHandle<object_store::Result<PartId>>> {
    let data = s.keys.upload_data(id);
    let multipart = state
        .multipart
        .clone()
        .ok_or_else(|| StorageError::Corrupt {
            what: format!("upload {id}: a part without a multipart upload"),
        })?;
    // Part numbers follow from offsets: the caller recorded every earlier part already.
    let index = state.parts.len();
    let store = s.store.clone();
    let payload = PutPayload::from_iter(part);
    Ok(tokio::spawn(async move {
        store.put_part(&data, &multipart, index, payload).await
    }))
}

async fn joined(handle: JoinHandle<object_store::Result<PartId>>) -> StorageResult<String> {
    match handle.await {
        Ok(Ok(part)) => Ok(part.content_id),
        Ok(Err(e)) => Err(unavailable("upload part")(e)),
        Err(e) => Err(StorageError::Io {
            op: "upload part",
            source: std::io::Error::other(e),
        }),
    }
}

pub async fn cancel(s: &ObjectStorage, owner: &UploadOwner, id: UploadId) -> StorageResult<bool> {
    let Some(Loaded { state, .. }) = s.load(id, owner).await? else {
        return Ok(false);
    };
    s.delete_session(id, state.multipart.as_ref()).await?;
    Ok(true)
}

/// Removes sessions whose newest object is older than `max_age`. (A multipart upload whose
/// id never reached a state, because its node died first, is invisible here: give the
/// bucket a lifecycle rule that aborts incomplete multipart uploads, as the README says.)
pub async fn purge(s: &ObjectStorage, max_age: Duration) -> StorageResult<usize> {
    let now = SystemTime::now();
    let mut purged = 0;
    for (id, touched) in s.sessions().await? {
        if now.duration_since(touched).unwrap_or_default() <= max_age {
            continue;
        }
        let multipart = s
            .read_state(id)
            .await
            .ok()
            .flatten()
            .and_then(|st| st.multipart);
        s.delete_session(id, multipart.as_ref()).await?;
        purged += 1;
    }
    Ok(purged)
}

impl ObjectStorage {
    /// Every session in the bucket, with the time its newest object was written.
    pub(super) async fn sessions(
        &self,
    ) -> StorageResult<std::collections::HashMap<UploadId, SystemTime>> {
        let mut newest: std::collections::HashMap<UploadId, SystemTime> = Default::default();
        let uploads = self.keys.uploads();
        let mut listing = self.store.list(Some(&uploads));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(unavailable("list uploads"))?;
            let Some(id) = meta
                .location
                .prefix_match(&uploads)
                .and_then(|mut rest| rest.next())
                .and_then(|seg| UploadId::parse(seg.as_ref()))
            else {
                continue;
            };
            let modified = SystemTime::from(meta.last_modified);
            let entry = newest.entry(id).or_insert(modified);
            *entry = (*entry).max(modified);
        }
        Ok(newest)
    }
}
