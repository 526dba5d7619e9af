//! Finishing an upload session into a blob.
//!
//! Finishing never makes unverified bytes visible: the sha256 state travels in the session
//! ([`super::hasher`]), so the digest is checked before anything is assembled. Blobs of up
//! to one part are then written to the blob's key with one PUT. Larger ones: the last part
//! is uploaded, the multipart upload completed (S3 checks every part's e-tag against the
//! ones the state recorded, so a part overwritten by a losing concurrent append cannot slip
//! in), and the result published to the blob's key (`publish.rs`). Then the blob is linked
//! into the repository and the session deleted, its state last (in the same request).
//!
//! Every step can be cut off (a crash, a lost answer) after the store did it, and the
//! client then retries. The state stays until the very end, so a retry finds it and starts
//! over; a step that cannot be done twice (a part of an upload already completed) fails,
//! and the finish then looks how far the earlier one got ([`resume`]): a blob already
//! published, or a completed upload to publish. A retry after the state was deleted finds
//! no session, and the registry answers it from the repository's link.

use futures_util::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use sha2::{Digest as _, Sha512};

use super::hasher::Hasher;
use super::uploads::{Loaded, State};
use super::{unavailable, ObjectStorage};
use crate::registry::reference::{Algorithm, Digest};
use crate::registry::storage::{
    Finish, LinkKind, Storage, StorageError, StorageResult, UploadId, UploadOwner,
};

pub async fn finish(
    s: &ObjectStorage,
    owner: &UploadOwner,
    id: UploadId,
    digest: &Digest,
) -> StorageResult<Finish> {
    let Some(Loaded { state, .. }) = s.load(id, owner).await? else {
        return Ok(Finish::UnknownUpload);
    };
    // sha256 is known from the stored state before a byte moves.
    if digest.algorithm() == Algorithm::Sha256 {
        let actual = Hasher::load(&state.sha256)
            .ok_or_else(|| StorageError::Corrupt {
                what: format!("upload {id}: unreadable hash state"),
            })?
            .digest();
        if actual != *digest {
            s.delete_session(id, state.multipart.as_ref()).await?;
            return Ok(Finish::DigestMismatch { actual });
        }
    }
    match assemble(s, id, &state, digest).await {
        Ok(None) => {}
        Ok(Some(actual)) => {
            s.delete_session(id, state.multipart.as_ref()).await?;
            return Ok(Finish::DigestMismatch { actual });
        }
        Err(error) => {
            if !resume(s, id, &state, digest).await? {
                return Err(error);
            }
            tracing::info!(upload = %id, %digest, "carried on with a finish that was cut off");
        }
    }
    s.remember_size(digest, state.size);
    s.link(&owner.repo, LinkKind::Layer, digest).await?;
    s.discard_finished(id, &state).await?;
    Ok(Finish::Done { size: state.size })
}

/// Puts the session's bytes at the blob's key. `Some(actual)` when they turn out to have
/// another (sha512) digest; then nothing was published.
async fn assemble(
    s: &ObjectStorage,
    id: UploadId,
    state: &State,
    digest: &Digest,
) -> StorageResult<Option<Digest>> {
    let blob = s.keys.blob(digest);
    let tail = s.read_tail(id, &state.tail).await?;
    if state.parts.is_empty() {
        // At most one part's bytes: verified in memory, then one atomic PUT.
        if digest.algorithm() == Algorithm::Sha512 {
            let mut h = Sha512::new();
            tail.iter().for_each(|b| h.update(b));
            let actual = Digest::from_hash(Algorithm::Sha512, &h.finalize());
            if actual != *digest {
                return Ok(Some(actual));
            }
        }
        s.store
            .put(&blob, PutPayload::from_iter(tail))
            .await
            .map_err(unavailable("write blob"))?;
        return Ok(None);
    }
    let data = s.keys.upload_data(id);
    let multipart = state
        .multipart
        .clone()
        .ok_or_else(|| StorageError::Corrupt {
            what: format!("upload {id}: parts without a multipart upload"),
        })?;
    let mut parts: Vec<PartId> = (state.parts.iter())
        .map(|e| PartId {
            content_id: e.clone(),
        })
        .collect();
    if !tail.is_empty() {
        let last = s
            .store
            .put_part(&data, &multipart, parts.len(), PutPayload::from_iter(tail))
            .await
            .map_err(unavailable("upload part"))?;
        parts.push(last);
    }
    s.store
        .complete_multipart(&data, &multipart, parts)
        .await
        .map_err(unavailable("complete multipart upload"))?;
    publish_verified(s, &data, state.size, digest).await
}

/// Publishes the completed upload `data` as the blob, after checking a sha512 digest by
/// reading it back. `Some(actual)` when that check fails.
async fn publish_verified(
    s: &ObjectStorage,
    data: &Path,
    size: u64,
    digest: &Digest,
) -> StorageResult<Option<Digest>> {
    if digest.algorithm() == Algorithm::Sha512 {
        let actual = hash_object(s, data).await?;
        if actual != *digest {
            return Ok(Some(actual));
        }
    }
    s.publish(data, &s.keys.blob(digest), size).await?;
    Ok(None)
}

/// After a step of [`assemble`] failed: whether an earlier finish got far enough that this
/// one can carry on. Publishes the completed upload when that is where it stopped.
async fn resume(
    s: &ObjectStorage,
    id: UploadId,
    state: &State,
    digest: &Digest,
) -> StorageResult<bool> {
    // Published already (by the earlier finish, or by anyone: the bytes are the same).
    if s.blob_size(digest).await? == Some(state.size) {
        return Ok(true);
    }
    if state.multipart.is_none() {
        return Ok(false);
    }
    // Completed already: `data` is the whole blob.
    let data = s.keys.upload_data(id);
    match s.store.head(&data).await {
        Ok(meta) if meta.size == state.size => {}
        Ok(_) | Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(unavailable("resume finish")(e)),
    }
    Ok(publish_verified(s, &data, state.size, digest)
        .await?
        .is_none())
}

/// sha512 of a stored object, streamed.
async fn hash_object(s: &ObjectStorage, key: &Path) -> StorageResult<Digest> {
    let mut stream = s
        .store
        .get(key)
        .await
        .map_err(unavailable("verify upload"))?
        .into_stream();
    let mut h = Sha512::new();
    while let Some(chunk) = stream.next().await {
        h.update(chunk.map_err(unavailable("verify upload"))?);
    }
    Ok(Digest::from_hash(Algorithm::Sha512, &h.finalize()))
}
