//! The object store backend, for S3 and Azure Blob Storage alike: everything in one
//! bucket (or container) under a prefix, laid out as [`keys`] describes, through the
//! `object_store` crate. Only building the client differs (`s3.rs`, `azure.rs`); the rest
//! is written against `ObjectStore + MultipartStore`. Several wharf processes may share
//! one bucket and prefix: nothing about the registry lives in a process, and upload
//! sessions (including their hash state and multipart upload) live in the bucket, so any
//! node can continue one.
//!
//! What the store must give and this relies on: single PUTs and server-side copies are
//! atomic, so links, tags and blobs appear whole or not at all; reads after writes are
//! strongly consistent (AWS since 2020, MinIO, Ceph RGW, Garage, Azure); `If-Match` on
//! PUT serialises appends to a session (Azure always; S3 where the store has it: see
//! `storage.s3.conditional_writes`).

mod azure;
mod client;
mod dated_tags;
mod deadline;
mod enumerate;
mod finish;
mod hasher;
mod keys;
mod monolithic;
mod part_copy;
mod publish;
mod records;
mod repo_delete;
mod s3;
mod uploads;

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};

/// Reads a secret given inline, in a file or in a variable (also for other modules' secrets).
pub use self::client::secret as read_secret;
use self::keys::Keys;
pub use self::monolithic::{host_name, process_alive};
/// For the layout's promises (`crate::invariants`): keys built, and keys listed, parsed.
#[cfg(any(test, fuzzing))]
pub(crate) use self::{
    enumerate::{blob_digest, link_of},
    keys::Keys as LayoutKeys,
};
use super::{
    Append, BlobEntry, ByteStream, ChunkRange, DatedTag, Finish, LinkEntry, LinkKind, RecordKey,
    RecordVersion, SessionKind, Storage, StorageError, StorageResult, UploadId, UploadOwner,
};
use crate::config::{AzureConfig, S3Config};
use crate::registry::reference::{Digest, RepoName, Tag};

/// What the backend needs of a store: objects and resumable multipart uploads. S3 and
/// Azure have both (so would GCS, through the same crate).
pub trait Store: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Store for T {}

pub struct ObjectStorage {
    store: Arc<dyn Store>,
    keys: Keys,
    part_size: u64,
    conditional_writes: bool,
    /// Sizes of blobs seen or written: blobs are immutable, so a GET needs no HEAD before
    /// it. Bounded; the time limit only guards against a future that deletes blobs.
    sizes: moka::sync::Cache<Digest, u64>,
    /// S3 only: publishes blobs too large for one CopyObject (`publish.rs`).
    part_copier: Option<part_copy::PartCopier>,
}

/// How many blob sizes are remembered (about 100 bytes each).
const SIZES_CACHED: u64 = 100_000;
/// Listings one walk of `repositories/` runs at once.
const CONCURRENT_LISTINGS: usize = 16;

/// What the backend takes from the config beside the client.
struct Settings<'a> {
    /// `storage.<backend>.prefix`.
    prefix: &'a str,
    part_size: u64,
    conditional_writes: bool,
    timeout: Duration,
}

impl ObjectStorage {
    /// A registry at `root` (a key prefix, possibly empty) below `storage.s3.prefix`. Does
    /// not contact the store.
    pub fn open_s3(config: &S3Config, root: &std::path::Path) -> io::Result<Self> {
        let settings = Settings {
            prefix: &config.prefix,
            part_size: config.part_size,
            conditional_writes: config.conditional_writes,
            timeout: config.timeout,
        };
        let client = s3::client(config)?;
        let options = client::options("s3", config.endpoint.as_deref(), config.ca_file.as_deref())?;
        let copy_deadline = deadline::Limits {
            timeout: config.timeout,
        }
        .server_side();
        let copier = part_copy::PartCopier::new(client.clone(), &options, config, copy_deadline)?;
        let mut storage = Self::new(client, settings, root);
        storage.part_copier = Some(copier);
        Ok(storage)
    }

    /// A registry at `root` below `storage.azure.prefix`. Does not contact the store.
    pub fn open_azure(config: &AzureConfig, root: &std::path::Path) -> io::Result<Self> {
        let settings = Settings {
            prefix: &config.prefix,
            part_size: config.part_size,
            // Azure honours If-Match on Put Blob everywhere.
            conditional_writes: true,
            timeout: config.timeout,
        };
        Ok(Self::new(azure::client(config)?, settings, root))
    }

    fn new(client: impl Store, settings: Settings<'_>, root: &std::path::Path) -> Self {
        // Every request to the store goes through its deadline (see `deadline`).
        let limits = deadline::Limits {
            timeout: settings.timeout,
        };
        let store = deadline::Deadlines::new(client, limits);
        let root = root.to_str().unwrap_or_default().trim_matches('/');
        let prefix = [settings.prefix, root]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        Self {
            store: Arc::new(store),
            keys: Keys::new(prefix),
            part_size: settings.part_size,
            conditional_writes: settings.conditional_writes,
            sizes: moka::sync::Cache::builder()
                .max_capacity(SIZES_CACHED)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            part_copier: None,
        }
    }

    fn remember_size(&self, digest: &Digest, size: u64) {
        self.sizes.insert(digest.clone(), size);
    }

    /// The blob's metadata from the store (remembering its size), `None` when it is gone
    /// (forgetting any size remembered).
    async fn blob_head(&self, digest: &Digest) -> StorageResult<Option<object_store::ObjectMeta>> {
        match self.store.head(&self.keys.blob(digest)).await {
            Ok(meta) => {
                self.remember_size(digest, meta.size);
                Ok(Some(meta))
            }
            Err(object_store::Error::NotFound { .. }) => {
                self.sizes.invalidate(digest);
                Ok(None)
            }
            Err(e) => Err(unavailable("stat blob")(e)),
        }
    }

    async fn read_optional(&self, op: &'static str, key: &Path) -> StorageResult<Option<Bytes>> {
        match self.store.get(key).await {
            Ok(r) => r.bytes().await.map(Some).map_err(unavailable(op)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable(op)(e)),
        }
    }

    async fn write(&self, op: &'static str, key: &Path, bytes: Bytes) -> StorageResult<()> {
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(unavailable(op))
    }

    /// Deletes `key`; `false` when it was not there. (S3 deletes of missing keys succeed,
    /// so presence is asked first; a racing delete just makes both answers `true`.)
    async fn remove(&self, op: &'static str, key: &Path) -> StorageResult<bool> {
        match self.store.head(key).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(unavailable(op)(e)),
        }
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(unavailable(op)(e)),
        }
    }

    /// Deletes `keys`, in one request where the store can (S3's DeleteObjects, Azure's
    /// batch); keys already gone are fine.
    async fn delete_all(&self, op: &'static str, keys: Vec<Path>) -> StorageResult<()> {
        let keys = futures_util::stream::iter(keys.into_iter().map(Ok)).boxed();
        self.store
            .delete_stream(keys)
            .map_ok(drop)
            .or_else(|e| async move {
                match e {
                    object_store::Error::NotFound { .. } => Ok(()),
                    e => Err(unavailable(op)(e)),
                }
            })
            .try_collect()
            .await
    }

    /// The keys under `prefix`, at any depth.
    async fn list_keys(&self, op: &'static str, prefix: &Path) -> StorageResult<Vec<Path>> {
        self.store
            .list(Some(prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(unavailable(op))
    }

    /// The child "directories" of `prefix` (their last segment) and its direct objects.
    async fn children(
        &self,
        op: &'static str,
        prefix: &Path,
    ) -> StorageResult<(Vec<String>, Vec<Path>)> {
        let listed = self
            .store
            .list_with_delimiter(Some(prefix))
            .await
            .map_err(unavailable(op))?;
        let dirs = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect();
        Ok((
            dirs,
            listed.objects.into_iter().map(|m| m.location).collect(),
        ))
    }
}

/// Every object store failure is "unavailable" for the client (503, retry later): the
/// request was fine, the store was not. The cause is logged where the error is turned
/// into a response.
fn unavailable(op: &'static str) -> impl FnOnce(object_store::Error) -> StorageError {
    move |e| StorageError::Unavailable {
        op,
        source: io::Error::other(e),
    }
}

pub(crate) fn parse_digest(key: &Path, bytes: &[u8]) -> StorageResult<Digest> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| Digest::parse(s.trim()).ok())
        .ok_or_else(|| StorageError::Corrupt {
            what: format!("{key} does not hold a digest"),
        })
}

#[async_trait]
impl Storage for ObjectStorage {
    fn shared(&self) -> bool {
        true
    }

    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        if let Some(size) = self.sizes.get(digest) {
            return Ok(Some(size));
        }
        self.blob_head(digest).await.map(|m| m.map(|m| m.size))
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> StorageResult<Option<ByteStream>> {
        let key = self.keys.blob(digest);
        if len == 0 {
            // S3 refuses empty ranges; an empty read needs only the blob to exist.
            return Ok(self
                .blob_size(digest)
                .await?
                .map(|_| Box::pin(futures_util::stream::empty()) as ByteStream));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset + len)),
            ..GetOptions::default()
        };
        match self.store.get_opts(&key, options).await {
            // The body streams from the store as the client reads it: never the whole blob.
            Ok(r) => Ok(Some(Box::pin(r.into_stream().map_err(io::Error::other)))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(unavailable("read blob")(e)),
        }
    }

    async fn read_small_blob(&self, digest: &Digest) -> StorageResult<Option<Bytes>> {
        self.read_optional("read manifest", &self.keys.blob(digest))
            .await
    }

    async fn put_small_blob(&self, digest: &Digest, bytes: Bytes) -> StorageResult<()> {
        // Content-addressed: rewriting the same digest writes the same bytes, atomically.
        self.write("write manifest", &self.keys.blob(digest), bytes)
            .await
    }

    async fn link(&self, repo: &RepoName, kind: LinkKind, digest: &Digest) -> StorageResult<()> {
        let key = self.keys.link(repo, kind, digest);
        self.write("write link", &key, Bytes::from(digest.to_string()))
            .await
    }

    async fn is_linked(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
    ) -> StorageResult<bool> {
        let key = self.keys.link(repo, kind, digest);
        Ok(self.read_optional("read link", &key).await?.is_some())
    }

    async fn unlink(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
    ) -> StorageResult<bool> {
        self.remove("remove link", &self.keys.link(repo, kind, digest))
            .await
    }

    async fn read_tag(&self, repo: &RepoName, tag: &Tag) -> StorageResult<Option<Digest>> {
        let key = self.keys.tag(repo, tag);
        match self.read_optional("read tag", &key).await? {
            None => Ok(None),
            Some(bytes) => parse_digest(&key, &bytes).map(Some),
        }
    }

    async fn read_tag_dated(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> StorageResult<Option<(Digest, Option<SystemTime>)>> {
        let key = self.keys.tag(repo, tag);
        let got = match self.store.get(&key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(unavailable("read tag")(e)),
        };
        let at = SystemTime::from(got.meta.last_modified);
        let bytes = got.bytes().await.map_err(unavailable("read tag"))?;
        Ok(Some((parse_digest(&key, &bytes)?, Some(at))))
    }

    async fn write_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> StorageResult<()> {
        let value = Bytes::from(digest.to_string());
        // The index first: whatever the tag points at is always in its index.
        let index = self.keys.tag_index(repo, tag, digest);
        self.write("write tag", &index, value.clone()).await?;
        self.write("write tag", &self.keys.tag(repo, tag), value)
            .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> StorageResult<bool> {
        // The current link first, so the tag is gone at once; then the rest of the tag's
        // keys (its index), as registry:2 deletes the tag's whole "directory".
        if !self.remove("delete tag", &self.keys.tag(repo, tag)).await? {
            return Ok(false);
        }
        let rest = self
            .list_keys("delete tag", &self.keys.tag_dir(repo, tag))
            .await?;
        self.delete_all("delete tag", rest).await?;
        Ok(true)
    }

    async fn list_tags(&self, repo: &RepoName) -> StorageResult<Option<Vec<Tag>>> {
        let (dirs, _) = self.children("list tags", &self.keys.repo(repo)).await?;
        if !dirs.iter().any(|d| d == "_layers" || d == "_manifests") {
            return Ok(None);
        }
        // The tags' "directories", as registry:2 lists them.
        let (names, _) = self.children("list tags", &self.keys.tags(repo)).await?;
        let mut tags: Vec<Tag> = names.iter().filter_map(|t| Tag::parse(t).ok()).collect();
        tags.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(Some(tags))
    }

    async fn add_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
        descriptor: &[u8],
    ) -> StorageResult<()> {
        let key = self.keys.referrer(repo, subject, referrer);
        self.write("write referrer", &key, Bytes::copy_from_slice(descriptor))
            .await
    }

    async fn remove_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
    ) -> StorageResult<()> {
        let key = self.keys.referrer(repo, subject, referrer);
        self.remove("remove referrer", &key).await.map(drop)
    }

    async fn list_referrers(&self, repo: &RepoName, subject: &Digest) -> StorageResult<Vec<Bytes>> {
        let mut keys = self
            .list_keys("list referrers", &self.keys.referrers(repo, subject))
            .await?;
        keys.sort();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // A referrer removed between the listing and the read is simply gone.
            if let Some(bytes) = self.read_optional("read referrer", &key).await? {
                out.push(bytes);
            }
        }
        Ok(out)
    }

    async fn list_repositories(&self) -> StorageResult<Vec<RepoName>> {
        // One listing per namespace level, like a directory walk: listing every key under
        // repositories/ would read every link and tag of the registry. A level's
        // listings run several at once: one after another, 10,000 repositories are
        // 10,000 round trips in a row.
        let mut out = Vec::new();
        let mut level = vec![String::new()];
        while !level.is_empty() {
            let listed: Vec<_> = futures_util::stream::iter(level)
                .map(|name| async move {
                    let key = self.keys.repo_named(&name);
                    let listed = self.children("list repositories", &key).await;
                    listed.map(|(dirs, _)| (name, dirs))
                })
                .buffer_unordered(CONCURRENT_LISTINGS)
                .try_collect()
                .await?;
            level = Vec::new();
            for (name, dirs) in listed {
                if dirs.iter().any(|d| d == "_layers" || d == "_manifests") {
                    if let Ok(repo) = RepoName::parse(&name) {
                        out.push(repo);
                    }
                }
                for d in dirs.into_iter().filter(|d| !d.starts_with('_')) {
                    level.push(match name.is_empty() {
                        true => d,
                        false => format!("{name}/{d}"),
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete_repository(&self, repo: &RepoName) -> StorageResult<bool> {
        repo_delete::delete_repository(self, repo).await
    }

    async fn create_upload(
        &self,
        owner: &UploadOwner,
        kind: SessionKind,
    ) -> StorageResult<UploadId> {
        let writer = match kind {
            SessionKind::Resumable => None,
            SessionKind::Monolithic => Some(monolithic::Writer::this_process()),
        };
        uploads::create(self, owner, writer).await
    }

    async fn upload_size(&self, owner: &UploadOwner, id: UploadId) -> StorageResult<Option<u64>> {
        uploads::size(self, owner, id).await
    }

    async fn append_upload(
        &self,
        owner: &UploadOwner,
        id: UploadId,
        range: Option<ChunkRange>,
        body: ByteStream,
    ) -> StorageResult<Append> {
        uploads::append(self, owner, id, range, body).await
    }

    async fn finish_upload(
        &self,
        owner: &UploadOwner,
        id: UploadId,
        digest: &Digest,
    ) -> StorageResult<Finish> {
        finish::finish(self, owner, id, digest).await
    }

    async fn put_blob(
        &self,
        owner: &UploadOwner,
        digest: &Digest,
        body: ByteStream,
    ) -> StorageResult<Finish> {
        monolithic::put_blob(self, owner, digest, body).await
    }

    async fn cancel_upload(&self, owner: &UploadOwner, id: UploadId) -> StorageResult<bool> {
        uploads::cancel(self, owner, id).await
    }

    async fn purge_uploads(&self, max_age: Duration) -> StorageResult<usize> {
        uploads::purge(self, max_age).await
    }

    async fn purge_orphans(&self) -> StorageResult<usize> {
        monolithic::purge_orphans(self).await
    }

    async fn check_writable(&self) -> StorageResult<()> {
        // A key of its own per probe, so nodes probing at once never disturb each other.
        let probe = self.keys.health_probe();
        self.write("health probe", &probe, Bytes::from_static(b"ok"))
            .await?;
        self.read_optional("health probe", &probe).await?;
        self.store
            .delete(&probe)
            .await
            .map_err(unavailable("health probe"))
    }

    async fn put_record(&self, key: &RecordKey, bytes: Bytes) -> StorageResult<()> {
        self.put_record_object(key, bytes).await
    }

    async fn create_record(&self, key: &RecordKey, bytes: Bytes) -> StorageResult<bool> {
        self.create_record_object(key, bytes).await
    }

    async fn replace_record(
        &self,
        key: &RecordKey,
        bytes: Bytes,
        expected: &RecordVersion,
    ) -> StorageResult<bool> {
        self.replace_record_object(key, bytes, expected).await
    }

    async fn read_record(&self, key: &RecordKey) -> StorageResult<Option<(Bytes, RecordVersion)>> {
        self.read_record_object(key).await
    }

    async fn list_records(&self, prefix: &RecordKey) -> StorageResult<Vec<RecordKey>> {
        self.list_record_objects(prefix).await
    }

    async fn delete_record(&self, key: &RecordKey) -> StorageResult<bool> {
        self.delete_record_object(key).await
    }

    async fn list_blobs(&self) -> StorageResult<Vec<BlobEntry>> {
        self.list_blob_objects().await
    }

    async fn list_links(&self, repo: &RepoName, kind: LinkKind) -> StorageResult<Vec<Digest>> {
        let mut links = self.list_link_objects(&self.keys.links(repo, kind)).await?;
        // Only this repository's, not a nested one's (`a/b` lives under `a/`'s keys).
        links.retain(|l| l.repo == *repo && l.kind == kind);
        let mut digests: Vec<Digest> = links.into_iter().map(|l| l.digest).collect();
        digests.sort();
        Ok(digests)
    }

    async fn list_tags_dated(&self, repo: &RepoName) -> StorageResult<Vec<DatedTag>> {
        dated_tags::list_tags_dated(self, repo).await
    }

    async fn list_all_links(&self) -> StorageResult<Vec<LinkEntry>> {
        self.list_link_objects(&self.keys.repositories()).await
    }

    async fn blob_size_fresh(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        self.blob_head(digest).await.map(|m| m.map(|m| m.size))
    }

    async fn blob_modified(&self, digest: &Digest) -> StorageResult<Option<std::time::SystemTime>> {
        let meta = self.blob_head(digest).await?;
        Ok(meta.map(|m| std::time::SystemTime::from(m.last_modified)))
    }

    async fn delete_blob(&self, digest: &Digest) -> StorageResult<bool> {
        self.delete_blob_object(digest).await
    }
}
