//! Monolithic uploads (`POST ?digest=` with the whole blob) on an object store.
//!
//! A blob that fits in one part never becomes a session: its body is read (at most one
//! part, the memory an append uses anyway), verified and PUT to the blob's key. That is one
//! request (and the link) where a session costs nine, and a request that dies leaves
//! nothing behind.
//!
//! Larger ones need a multipart upload, so they stream through a session like any other,
//! marked with their [`Writer`] (host and process). No client knows such a session, so once
//! its process is gone it is garbage: at start-up each node discards the ones its earlier
//! runs left ([`purge_orphans`]), aborting their multipart uploads, so a crash loop leaves
//! at most one run's worth. Sessions of a node that never comes back (a replaced pod with
//! a new host name) go with `upload_max_age`, like abandoned resumable ones.

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};

use super::{unavailable, uploads, ObjectStorage};
use crate::registry::reference::{Algorithm, Digest};
use crate::registry::storage::{
    through_session, ByteStream, Finish, LinkKind, Storage, StorageResult, UploadOwner,
};

/// The process writing a monolithic session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Writer {
    host: String,
    pid: u32,
}

impl Writer {
    pub fn this_process() -> Self {
        Self {
            host: host_name(),
            pid: std::process::id(),
        }
    }

    /// Whether the writer is an earlier run of `me`, seen at `me`'s start-up: a process of
    /// this host that has exited, or one with `me`'s own id (in a container every run is
    /// pid 1). Other hosts' processes cannot be checked, so they are never "gone".
    pub fn is_earlier_run_of(&self, me: &Writer) -> bool {
        self.host == me.host && (self.pid == me.pid || !process_alive(self.pid))
    }
}

/// This machine's host name (empty when unknown).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Whether a process of this host is running. Where there is no `/proc` to ask, it is
/// assumed to run, so its sessions wait for `upload_max_age`.
pub fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// The digest of a body as it arrives, in the algorithm the client named.
enum BodyHash {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl BodyHash {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Self::Sha256(Sha256::new()),
            Algorithm::Sha512 => Self::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(bytes),
            Self::Sha512(h) => h.update(bytes),
        }
    }

    fn digest(self) -> Digest {
        match self {
            Self::Sha256(h) => Digest::from_hash(Algorithm::Sha256, &h.finalize()),
            Self::Sha512(h) => Digest::from_hash(Algorithm::Sha512, &h.finalize()),
        }
    }
}

pub async fn put_blob(
    s: &ObjectStorage,
    owner: &UploadOwner,
    digest: &Digest,
    mut body: ByteStream,
) -> StorageResult<Finish> {
    let mut hash = BodyHash::new(digest.algorithm());
    let (mut chunks, mut len) = (Vec::new(), 0u64);
    while len <= s.part_size {
        match body.next().await {
            Some(Ok(chunk)) => {
                hash.update(&chunk);
                len += chunk.len() as u64;
                chunks.push(chunk);
            }
            Some(Err(error)) => return Ok(Finish::BodyFailed { error }),
            None => return put_small(s, owner, digest, hash.digest(), chunks, len).await,
        }
    }
    // More than a part: it needs a multipart upload, so a session this process owns.
    let id = uploads::create(s, owner, Some(Writer::this_process())).await?;
    let read = futures_util::stream::iter(chunks.into_iter().map(Ok));
    through_session(s, owner, id, digest, Box::pin(read.chain(body))).await
}

/// Verified, then one atomic PUT to the blob's key.
async fn put_small(
    s: &ObjectStorage,
    owner: &UploadOwner,
    digest: &Digest,
    actual: Digest,
    chunks: Vec<Bytes>,
    size: u64,
) -> StorageResult<Finish> {
    if actual != *digest {
        return Ok(Finish::DigestMismatch { actual });
    }
    s.store
        .put(&s.keys.blob(digest), PutPayload::from_iter(chunks))
        .await
        .map_err(unavailable("write blob"))?;
    s.remember_size(digest, size);
    s.link(&owner.repo, LinkKind::Layer, digest).await?;
    Ok(Finish::Done { size })
}

/// Discards the monolithic sessions earlier runs of this process left (see the module
/// docs), with their multipart uploads.
pub async fn purge_orphans(s: &ObjectStorage) -> StorageResult<usize> {
    let me = Writer::this_process();
    let mut purged = 0;
    for id in s.sessions().await?.into_keys() {
        let Some(state) = s.read_state(id).await? else {
            continue;
        };
        if state
            .writer
            .as_ref()
            .is_some_and(|w| w.is_earlier_run_of(&me))
        {
            s.delete_session(id, state.multipart.as_ref()).await?;
            purged += 1;
        }
    }
    Ok(purged)
}
