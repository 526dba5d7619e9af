//! What the registry may rely on from storage, and its implementations: the filesystem
//! (`fs`) and object stores, S3 and Azure Blob Storage (`object`).
//!
//! # Contract
//!
//! Every implementation of [`Storage`] promises:
//!
//! - **Blobs are content-addressed and immutable.** A blob becomes visible (through
//!   [`Storage::blob_size`] and [`Storage::read_blob`]) only after its digest was verified
//!   over the bytes actually stored. A crash at any moment leaves either no blob or the
//!   whole, verified blob; never a partial one.
//! - **Streaming.** No method holds a whole blob in memory. Only manifests, which the
//!   registry bounds by size before calling, go through the `*_small_blob` methods.
//! - **Upload sessions live in storage**, not in process memory: a session can be continued
//!   after a restart (and, for shared backends, by another node). Sessions belong to the
//!   [`UploadOwner`] that opened them (repository and user); asking for one as anyone else
//!   is "unknown".
//! - **Idempotence and concurrency.** Deletes of missing things report `false`, never fail.
//!   Two concurrent finishes of the same blob both succeed and leave one intact blob.
//!   Writes of small metadata (links, tags, referrers) are atomic: readers see the old or
//!   the new value.
//! - **Validated inputs only.** Every name, tag, digest and upload id arrives already
//!   validated ([`RepoName`], [`Tag`], [`Digest`], [`UploadId`]), so an implementation may
//!   build paths or object keys from them directly.
//! - **registry:2's layout.** Blobs, links and tags are stored where Distribution (the
//!   `registry:2` image) stores them, with the same contents (`fs/layout.rs`,
//!   `object/keys.rs`), so each can serve the other's storage. Nothing else goes under
//!   `docker/`: wharf's own state (sessions, staging, referrers, probes, the lock) lives
//!   under `wharf/` beside it, which registry:2's catalog and garbage collector never visit.
//! - **Enumeration for garbage collection** ([`Storage::list_blobs`],
//!   [`Storage::list_links`], [`Storage::list_all_links`], [`Storage::list_all_revisions`],
//!   [`Storage::delete_blob`]), on
//!   every backend: the filesystem walks registry:2's directories, the object stores list
//!   the same keys (`object/enumerate.rs`). A listing may miss what is written while it
//!   runs and may include what is deleted meanwhile; the collector's safety argument (`gc`
//!   module docs) allows for both. A blob's `modified` time is when its bytes were stored
//!   (the file's mtime, the object's last-modified), a link's when it was written. Entries
//!   whose name is no digest (a crash's leftover, another tool's file) are skipped, never
//!   deleted. A blob deleted by [`Storage::delete_blob`] is forgotten by that backend's
//!   caches at once. A backend that cannot enumerate answers with an `Unsupported` I/O
//!   error, so the collector refuses rather than collecting on a partial view.
//! - **Deleting a repository** ([`Storage::delete_repository`]) removes its tags, manifest
//!   revisions, layer links and referrer records, never a blob (others may share it; the
//!   collector decides) and never another repository nested under its name (`team/app`
//!   when `team` goes). Tags go first, so no pull resolves once it has begun; the catalog
//!   stops listing the repository when it returns. Interrupted, it leaves a repository with
//!   fewer parts, and deleting again finishes. A push racing it may recreate the repository.
//!
//! Errors are [`StorageError`]s; they carry the internal cause for the log, never for the client.

pub mod fs;
pub mod object;
pub mod records;

use std::io;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use super::reference::{Digest, RepoName, Tag};
pub use records::{RecordKey, RecordVersion};

/// A stream of body bytes, in or out.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The identifier of an upload session (a UUID, validated before use).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UploadId(uuid::Uuid);

impl UploadId {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::try_parse(s).ok().map(Self)
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// Who an upload session belongs to: the repository that opened it and, when logins are
/// on, the user. Every later request on the session must come from the same owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadOwner {
    pub repo: RepoName,
    pub user: Option<String>,
}

impl UploadOwner {
    /// The owner as stored with the session: the repository, then the user on a second line
    /// (user names cannot contain newlines).
    pub fn record(&self) -> String {
        match &self.user {
            None => self.repo.as_str().to_owned(),
            Some(u) => format!("{}\n{u}", self.repo),
        }
    }
}

/// Whether a client can name an upload session. A monolithic upload (`POST ?digest=` with
/// the whole blob) never tells the client its session, so when its request dies (a crash,
/// a client gone) nobody can resume it: such sessions are discarded at start-up
/// ([`Storage::purge_orphans`]) instead of waiting for `upload_max_age`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionKind {
    /// `POST` without a digest: the client gets the session's location and may resume it.
    Resumable,
    /// Lives only as long as the request that carries the whole blob.
    Monolithic,
}

/// Which kind of repository membership a link records. A link holds nothing but the digest
/// it links, as registry:2 writes it: a manifest's media type is read from its bytes
/// (`registry::manifest::media_type_of`), as registry:2 does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// A blob pushed or mounted into the repository (layers, configs).
    Layer,
    /// A manifest revision of the repository.
    Manifest,
}

/// One stored blob, as garbage collection lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    /// When the bytes were stored (the blob's only write: blobs are immutable).
    pub modified: std::time::SystemTime,
}

/// One link of a repository, as garbage collection lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEntry {
    pub repo: RepoName,
    pub kind: LinkKind,
    pub digest: Digest,
    /// When the link was written (links are written once: rewriting the same digest keeps
    /// it on disk, and replaces the object, with a new time, on object stores).
    pub modified: std::time::SystemTime,
}

/// A tag with the manifest it names and when it was last pushed, as retention reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatedTag {
    pub tag: Tag,
    pub digest: Digest,
    /// When the tag's `current/link` was last written: its last push (a push of the same
    /// content again counts), as registry:2's layout records it.
    pub pushed: std::time::SystemTime,
}

/// What a backend without enumeration answers to the garbage collector's calls.
fn no_enumeration(op: &'static str) -> StorageError {
    StorageError::Io {
        op,
        source: io::Error::new(
            io::ErrorKind::Unsupported,
            "this storage backend cannot list its contents for garbage collection yet",
        ),
    }
}

/// Where a chunk claims to go (its `Content-Range`): the session must hold exactly `offset`
/// bytes, and the body must be exactly `len` bytes long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRange {
    pub offset: u64,
    pub len: u64,
}

/// `body` cut off after `max` bytes. Given `len + 1` for a chunk of `len` bytes, it tells a
/// body longer than declared without storing what follows.
pub(crate) fn at_most(body: ByteStream, max: u64) -> ByteStream {
    use futures_util::StreamExt;
    let mut left = max;
    Box::pin(body.scan((), move |_, item| {
        let item = match item {
            Ok(_) if left == 0 => return futures_util::future::ready(None),
            Ok(mut bytes) => {
                if bytes.len() as u64 > left {
                    bytes.truncate(left as usize);
                }
                left -= bytes.len() as u64;
                Ok(bytes)
            }
            Err(e) => Err(e),
        };
        futures_util::future::ready(Some(item))
    }))
}

/// The result of appending a body to an upload session.
#[derive(Debug)]
pub enum Append {
    /// The whole body was stored; the session now holds `size` bytes.
    Written { size: u64 },
    /// No such session in this repository.
    UnknownUpload,
    /// The client's chunk does not start where the session ends.
    OffsetMismatch { size: u64 },
    /// The body was not as long as the chunk's range said. Nothing of it was kept: the
    /// session still holds `size` bytes.
    LengthMismatch { size: u64 },
    /// The request body broke off (client gone, truncated body). What arrived is kept,
    /// so the session holds `size` bytes and can be resumed from there.
    BodyFailed { size: u64, error: io::Error },
}

/// The result of finishing an upload session into a blob.
#[derive(Debug)]
pub enum Finish {
    /// The blob is stored, visible and linked into the owner's repository.
    Done {
        size: u64,
    },
    UnknownUpload,
    /// The bytes do not hash to the claimed digest; the session was discarded and no blob
    /// became visible.
    DigestMismatch {
        actual: Digest,
    },
    /// The request body of a monolithic upload ([`Storage::put_blob`]) broke off; nothing
    /// of it was kept, since no client could resume it.
    BodyFailed {
        error: io::Error,
    },
}

/// A storage failure. The fields are for the log; the client sees a generic message.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{op}: {source}")]
    Io { op: &'static str, source: io::Error },
    /// The backend is unreachable or overloaded; retrying later may work.
    #[error("{op}: backend unavailable: {source}")]
    Unavailable { op: &'static str, source: io::Error },
    #[error("corrupt data: {what}")]
    Corrupt { what: String },
}

impl StorageError {
    pub fn io(op: &'static str) -> impl FnOnce(io::Error) -> StorageError {
        move |source| StorageError::Io { op, source }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// A monolithic upload through the session `id`, which nobody else knows: appended and
/// finished, and discarded whatever goes wrong.
pub async fn through_session<S: Storage + ?Sized>(
    storage: &S,
    owner: &UploadOwner,
    id: UploadId,
    digest: &Digest,
    body: ByteStream,
) -> StorageResult<Finish> {
    let outcome = match storage.append_upload(owner, id, None, body).await {
        Ok(Append::Written { .. }) => storage.finish_upload(owner, id, digest).await,
        Ok(Append::BodyFailed { error, .. }) => Ok(Finish::BodyFailed { error }),
        // Nobody else knows the session, so nothing else can have happened to it.
        Ok(
            Append::UnknownUpload | Append::OffsetMismatch { .. } | Append::LengthMismatch { .. },
        ) => Ok(Finish::UnknownUpload),
        Err(e) => Err(e),
    };
    if !matches!(
        outcome,
        Ok(Finish::Done { .. } | Finish::DigestMismatch { .. })
    ) {
        // Nobody can name this session; don't leave it for the purge.
        if let Err(error) = storage.cancel_upload(owner, id).await {
            tracing::warn!(upload = %id, %error, "discarding a failed monolithic upload failed");
        }
    }
    outcome
}

/// The storage behind one registry. See the module docs for the contract.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Whether other processes may change this storage (several nodes on one bucket). The
    /// registry then caches nothing that can change, such as what a tag points at.
    fn shared(&self) -> bool {
        false
    }

    /// The size of a stored blob, or `None` when it does not exist.
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>>;
    /// Streams `len` bytes of a blob starting at `offset` (the caller checked the range
    /// against [`Storage::blob_size`]). `None` when the blob does not exist.
    async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> StorageResult<Option<ByteStream>>;
    /// Reads a small blob (a manifest) whole. `None` when it does not exist.
    async fn read_small_blob(&self, digest: &Digest) -> StorageResult<Option<Bytes>>;
    /// Stores a small blob whose digest the caller computed over `bytes`.
    async fn put_small_blob(&self, digest: &Digest, bytes: Bytes) -> StorageResult<()>;

    /// Records that `repo` contains `digest`.
    async fn link(&self, repo: &RepoName, kind: LinkKind, digest: &Digest) -> StorageResult<()>;
    /// Whether `repo` contains `digest`.
    async fn is_linked(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
    ) -> StorageResult<bool>;
    /// Removes a link; `false` when there was none.
    async fn unlink(&self, repo: &RepoName, kind: LinkKind, digest: &Digest)
        -> StorageResult<bool>;
    /// Removes a link like [`Storage::unlink`], except that a crash may bring it back until
    /// [`Storage::sync_unlinks`] returns: the collector may remove thousands of untagged
    /// revisions and makes the removals durable together, before it deletes any blob. On an object store every
    /// delete is durable when it returns, so this is [`Storage::unlink`].
    async fn unlink_unsynced(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
    ) -> StorageResult<bool> {
        self.unlink(repo, kind, digest).await
    }
    /// Makes every removal [`Storage::unlink_unsynced`] made so far durable.
    async fn sync_unlinks(&self) -> StorageResult<()> {
        Ok(())
    }

    async fn read_tag(&self, repo: &RepoName, tag: &Tag) -> StorageResult<Option<Digest>>;
    /// What a tag points at, and when it was last written (pushed) as storage dates the
    /// tag's `current/link` (a file's modification time, an object's last-modified), so
    /// registry:2's tags are dated too; `None` for a backend that cannot tell.
    async fn read_tag_dated(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> StorageResult<Option<(Digest, Option<SystemTime>)>> {
        Ok(self.read_tag(repo, tag).await?.map(|d| (d, None)))
    }
    /// Points `tag` at `digest` (and, as registry:2 does, records in the tag's index that
    /// it did).
    async fn write_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> StorageResult<()>;
    /// Removes a tag, with its index; `false` when there was none.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> StorageResult<bool>;
    /// All tags of a repository, sorted; `None` when the repository does not exist.
    async fn list_tags(&self, repo: &RepoName) -> StorageResult<Option<Vec<Tag>>>;

    /// Records that manifest `referrer` (described by the JSON `descriptor`) refers to `subject`.
    async fn add_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
        descriptor: &[u8],
    ) -> StorageResult<()>;
    async fn remove_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
    ) -> StorageResult<()>;
    /// The descriptors recorded for `subject`, in digest order.
    async fn list_referrers(&self, repo: &RepoName, subject: &Digest) -> StorageResult<Vec<Bytes>>;

    /// Every repository, sorted by name.
    async fn list_repositories(&self) -> StorageResult<Vec<RepoName>>;
    /// Removes a repository's tags, links and referrers (see the contract); `false` when
    /// there was no such repository. Every backend has it; the default only spares test
    /// doubles from writing it.
    async fn delete_repository(&self, repo: &RepoName) -> StorageResult<bool> {
        let _ = repo;
        Err(StorageError::Io {
            op: "delete repository",
            source: io::Error::new(io::ErrorKind::Unsupported, "not on this backend"),
        })
    }

    /// Opens an empty upload session owned by `owner`.
    async fn create_upload(
        &self,
        owner: &UploadOwner,
        kind: SessionKind,
    ) -> StorageResult<UploadId>;
    /// The number of bytes a session holds, or `None` when it is unknown for `owner`.
    async fn upload_size(&self, owner: &UploadOwner, id: UploadId) -> StorageResult<Option<u64>>;
    /// Appends a body to a session. With a `range`, the append happens only when the
    /// session currently holds exactly `range.offset` bytes, and is kept only when the body
    /// (ending normally) was exactly `range.len` bytes; otherwise the session stays as it was.
    async fn append_upload(
        &self,
        owner: &UploadOwner,
        id: UploadId,
        range: Option<ChunkRange>,
        body: ByteStream,
    ) -> StorageResult<Append>;
    /// Verifies the session's bytes against `digest`, makes them the blob `digest`, links
    /// it into the owner's repository and discards the session. Idempotent: a finish that
    /// was cut off (a crash, a lost answer) can be retried and carries on from where it was.
    async fn finish_upload(
        &self,
        owner: &UploadOwner,
        id: UploadId,
        digest: &Digest,
    ) -> StorageResult<Finish>;
    /// Discards a session; `false` when it was unknown.
    async fn cancel_upload(&self, owner: &UploadOwner, id: UploadId) -> StorageResult<bool>;
    /// Discards sessions not touched for `max_age`; returns how many.
    async fn purge_uploads(&self, max_age: Duration) -> StorageResult<usize>;
    /// Discards the monolithic sessions whose writer is gone (see [`SessionKind`]); called
    /// at start-up, before serving. Returns how many.
    async fn purge_orphans(&self) -> StorageResult<usize>;

    /// Stores a whole blob whose digest the client gave up front (a monolithic upload):
    /// verified, stored and linked like a finished session ([`Finish::Done`]), or nothing
    /// kept at all. By default it streams through a [`SessionKind::Monolithic`] session.
    async fn put_blob(
        &self,
        owner: &UploadOwner,
        digest: &Digest,
        body: ByteStream,
    ) -> StorageResult<Finish> {
        let id = self.create_upload(owner, SessionKind::Monolithic).await?;
        through_session(self, owner, id, digest, body).await
    }

    /// Proves the backend accepts writes (for `/healthz`).
    async fn check_writable(&self) -> StorageResult<()>;

    // Small records of wharf's own state: see [`records`] for their contract.

    /// Writes a record, replacing any.
    async fn put_record(&self, key: &RecordKey, bytes: Bytes) -> StorageResult<()>;
    /// Writes a record only if `key` is free; `false` when it exists.
    async fn create_record(&self, key: &RecordKey, bytes: Bytes) -> StorageResult<bool>;
    /// Replaces a record only if it is still at `expected`; `false` when it changed or went.
    async fn replace_record(
        &self,
        key: &RecordKey,
        bytes: Bytes,
        expected: &RecordVersion,
    ) -> StorageResult<bool>;
    /// A record and its version, or `None` when there is none.
    async fn read_record(&self, key: &RecordKey) -> StorageResult<Option<(Bytes, RecordVersion)>>;
    /// Every key under `prefix` (at any depth), sorted.
    async fn list_records(&self, prefix: &RecordKey) -> StorageResult<Vec<RecordKey>>;
    /// Removes a record; `false` when there was none.
    async fn delete_record(&self, key: &RecordKey) -> StorageResult<bool>;

    /// Every blob with its size and write time (garbage collection; see the contract).
    async fn list_blobs(&self) -> StorageResult<Vec<BlobEntry>> {
        Err(no_enumeration("list blobs"))
    }

    /// The digests `repo` links as `kind` (its layer links or its manifest revisions).
    async fn list_links(&self, repo: &RepoName, kind: LinkKind) -> StorageResult<Vec<Digest>> {
        let _ = (repo, kind);
        Err(no_enumeration("list links"))
    }

    /// Every tag of `repo` with its digest and last push time, sorted by tag; empty for an
    /// unknown repository. A tag deleted while this runs may be missing.
    async fn list_tags_dated(&self, repo: &RepoName) -> StorageResult<Vec<DatedTag>> {
        let _ = repo;
        Err(no_enumeration("list dated tags"))
    }

    /// Every layer link and manifest revision link of every repository, in one
    /// enumeration (a walk of `repositories/` on disk, one listing in a bucket): what the
    /// collector reads instead of asking each repository about each blob.
    async fn list_all_links(&self) -> StorageResult<Vec<LinkEntry>> {
        Err(no_enumeration("list all links"))
    }

    /// The manifest revision links of [`Storage::list_all_links`] only: what the collector,
    /// retention and the mirror cache's policy read. A backend whose layout keeps them
    /// apart (the filesystem) reads only those and skips every `_layers` directory.
    async fn list_all_revisions(&self) -> StorageResult<Vec<LinkEntry>> {
        let mut links = self.list_all_links().await?;
        links.retain(|l| l.kind == LinkKind::Manifest);
        Ok(links)
    }

    /// The size of a stored blob as the store says now, never from a cache: what a
    /// manifest push's reference check relies on, since a collection on another node may
    /// have deleted a blob this node remembers.
    async fn blob_size_fresh(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        self.blob_size(digest).await
    }

    /// When the blob's bytes were last written, or `None` when it does not exist: the
    /// collector's re-check right before it deletes one (an upload rewrites the bytes).
    async fn blob_modified(&self, digest: &Digest) -> StorageResult<Option<std::time::SystemTime>> {
        let _ = digest;
        Err(no_enumeration("stat blob"))
    }

    /// Deletes the blob's bytes; `false` when it was not there. Only the garbage collector
    /// calls this, after re-checking that nothing links the blob. The backend forgets what
    /// it cached about the blob (its size), so this node never vouches for it again.
    async fn delete_blob(&self, digest: &Digest) -> StorageResult<bool> {
        let _ = digest;
        Err(no_enumeration("delete blob"))
    }

    /// [`Storage::delete_blob`] only if the blob's bytes were last written before `cutoff`
    /// ([`Storage::blob_modified`] read right before): the collector's last re-check and
    /// its delete, in one step where the backend can (one blocking call on disk). `false`
    /// when the blob stays (written since) or was not there.
    async fn delete_blob_written_before(
        &self,
        digest: &Digest,
        cutoff: std::time::SystemTime,
    ) -> StorageResult<bool> {
        match self.blob_modified(digest).await? {
            Some(written) if written < cutoff => self.delete_blob(digest).await,
            _ => Ok(false),
        }
    }
}
