//! The filesystem backend: everything under one root directory, laid out as [`layout`]
//! describes. All file I/O runs on tokio's blocking pool.

mod append;
mod atomic;
mod enumerate;
mod layout;
mod link_removal;
mod parallel;
mod records;
mod repo_delete;
mod root_lock;
mod stream;
mod uploads;
mod walk;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use self::layout::Layout;
/// For the layout's promises (`crate::invariants`).
#[cfg(any(test, fuzzing))]
pub(crate) use self::layout::Layout as FsLayout;
use super::{
    Append, BlobEntry, ByteStream, ChunkRange, DatedTag, Finish, LinkEntry, LinkKind, RecordKey,
    RecordVersion, SessionKind, Storage, StorageError, StorageResult, UploadId, UploadOwner,
};
use crate::registry::reference::{Digest, RepoName, Tag};

pub struct FsStorage {
    layout: Layout,
    sessions: uploads::Sessions,
    /// Links removed by [`Storage::unlink_unsynced`], until [`Storage::sync_unlinks`].
    unsynced: std::sync::Arc<link_removal::Unsynced>,
    /// Held while the root is in use: no other process may open it (`None` for a reader
    /// of wharf's records beside a running server, see [`FsStorage::open_records_reader`]).
    _lock: Option<std::sync::Arc<root_lock::RootLock>>,
}

impl FsStorage {
    /// Opens (creating if needed) a storage root, locks it against other processes, and
    /// clears staging files a crash left.
    pub fn open(root: &Path) -> io::Result<Self> {
        let layout = Layout::new(root.to_path_buf());
        refuse_registry2_data_dir(root)?;
        atomic::create_dirs(layout.wharf())?;
        let (lock, fresh) = root_lock::lock(layout.wharf())?;
        for dir in [
            layout.blobs(),
            layout.repositories(),
            layout.uploads(),
            layout.tmp(),
        ] {
            atomic::create_dirs(&dir)?;
        }
        if fresh {
            for entry in fs::read_dir(layout.tmp())? {
                let path = entry?.path();
                // Staged files, and tags being deleted (moved here whole).
                let _ = match path.is_dir() {
                    true => fs::remove_dir_all(&path),
                    false => fs::remove_file(&path),
                };
            }
        }
        Ok(Self {
            layout,
            sessions: uploads::Sessions::default(),
            unsynced: Default::default(),
            _lock: Some(lock),
        })
    }

    /// Opens a root only to read wharf's records (`wharf events`) while a server may hold
    /// it: no lock, no clean-up, nothing created.
    pub fn open_records_reader(root: &Path) -> io::Result<Self> {
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Self {
            layout: Layout::new(root.to_path_buf()),
            sessions: uploads::Sessions::default(),
            unsynced: Default::default(),
            _lock: None,
        })
    }

    /// Opens a root for a collection beside the server that may hold it (`wharf gc`): no
    /// root lock, and staging files in `wharf/gc-tmp`, which the server never clears (it
    /// clears `wharf/tmp` when it starts, which would pull a staged file from under this
    /// process). One collector at a time holds the GC lease, so that directory has one user,
    /// and it clears it once it holds the lease ([`FsStorage::clear_staging`]).
    pub fn open_beside_server(root: &Path) -> io::Result<Self> {
        let layout = Layout::new(root.to_path_buf()).staging_in("gc-tmp");
        refuse_registry2_data_dir(root)?;
        for dir in [layout.blobs(), layout.repositories(), layout.tmp()] {
            atomic::create_dirs(&dir)?;
        }
        Ok(Self {
            layout,
            sessions: uploads::Sessions::default(),
            unsynced: Default::default(),
            _lock: None,
        })
    }

    /// Whether another process (a server) holds this root now; see
    /// [`root_lock::held_elsewhere`].
    pub fn root_held_elsewhere(&self) -> io::Result<bool> {
        root_lock::held_elsewhere(self.layout.wharf())
    }

    /// Removes what a killed process left in this storage's staging directory; only for
    /// the one user of a directory of its own ([`FsStorage::open_beside_server`]).
    pub async fn clear_staging(&self) -> StorageResult<()> {
        let tmp = self.layout.tmp();
        blocking("clear staging", move || {
            for entry in fs::read_dir(&tmp)? {
                let _ = fs::remove_file(entry?.path());
            }
            Ok(())
        })
        .await
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    async fn list_all_links_of(&self, kinds: &'static [LinkKind]) -> StorageResult<Vec<LinkEntry>> {
        let repos = self.list_repositories().await?;
        let layout = self.layout.clone();
        blocking("list links", move || {
            enumerate::list_all_links(&layout, &repos, kinds)
        })
        .await
    }
}

/// A root that holds `blobs/` and `repositories/` itself is registry:2's
/// `docker/registry/v2` directory (or wharf's layout before it took registry:2's): served
/// as a root, it would look empty. Refused, with the root to use instead.
fn refuse_registry2_data_dir(root: &Path) -> io::Result<()> {
    if !(root.join("blobs").is_dir() && root.join("repositories").is_dir()) {
        return Ok(());
    }
    let hint = match root.ends_with("docker/registry/v2") {
        true => match root.ancestors().nth(3) {
            Some(up) => format!("set the root to {} instead", up.display()),
            None => "set the root to the directory that holds docker/".to_owned(),
        },
        false => "this is not a layout wharf reads; start from an empty root".to_owned(),
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} holds blobs/ and repositories/ directly, but a storage root is the directory \
             that holds docker/registry/v2 (registry:2's rootdirectory): {hint}",
            root.display()
        ),
    ))
}

/// Runs blocking file work on the blocking pool, naming the operation for the log.
async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            op,
            source: io::Error::other(e),
        })?
        .map_err(StorageError::io(op))
}

/// Sorted names of the entries of `dir`; empty when `dir` does not exist.
fn sorted_names(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// A tag's `current/link` and when it was last written (tags are written by rename, so
/// the file's time is the push's); `None` when there is no such tag. What both a tag's
/// page and retention's listing read.
fn read_dated(path: &Path) -> io::Result<Option<(Vec<u8>, SystemTime)>> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(Some((bytes, file.metadata()?.modified()?)))
}

/// Writes a link file holding `value` (a digest), unless it already does.
fn write_link(tmp: &Path, path: &Path, value: &str) -> io::Result<()> {
    if atomic::read_optional(path)?.as_deref() == Some(value.as_bytes()) {
        return Ok(());
    }
    atomic::write_file(tmp, path, value.as_bytes())
}

fn parse_digest_file(path: PathBuf, bytes: &[u8]) -> StorageResult<Digest> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| Digest::parse(s.trim()).ok())
        .ok_or_else(|| StorageError::Corrupt {
            what: format!("{} does not hold a digest", path.display()),
        })
}

#[async_trait]
impl Storage for FsStorage {
    async fn blob_size(&self, digest: &Digest) -> StorageResult<Option<u64>> {
        let path = self.layout.blob(digest);
        blocking("stat blob", move || match fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> StorageResult<Option<ByteStream>> {
        let path = self.layout.blob(digest);
        let file = blocking("open blob", move || match fs::File::open(path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
        Ok(file.map(|f| stream::read_range(f, offset, len)))
    }

    async fn read_small_blob(&self, digest: &Digest) -> StorageResult<Option<Bytes>> {
        let path = self.layout.blob(digest);
        let bytes = blocking("read manifest", move || atomic::read_optional(&path)).await?;
        Ok(bytes.map(Bytes::from))
    }

    async fn put_small_blob(&self, digest: &Digest, bytes: Bytes) -> StorageResult<()> {
        let (tmp, path) = (self.layout.tmp(), self.layout.blob(digest));
        blocking("write manifest", move || {
            if path.exists() {
                // Content-addressed: the same digest is the same bytes. The write time is
                // renewed, as a rewrite would: a collection counts its grace period from
                // it, and the manifest is about to be linked again (`gc` module docs).
                let file = fs::File::options().write(true).open(&path)?;
                return file.set_modified(SystemTime::now());
            }
            atomic::write_file(&tmp, &path, &bytes)
        })
        .await
    }

    async fn link(&self, repo: &RepoName, kind: LinkKind, digest: &Digest) -> StorageResult<()> {
        let (tmp, path) = (self.layout.tmp(), self.layout.link(repo, kind, digest));
        let value = digest.to_string();
        blocking("write link", move || write_link(&tmp, &path, &value)).await
    }

    async fn is_linked(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
    ) -> StorageResult<bool> {
        let path = self.layout.link(repo, kind, digest);
        blocking("read link", move || {
            Ok(atomic::read_optional(&path)?.is_some())
        })
        .await
    }

    async fn unlink(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
    ) -> StorageResult<bool> {
        let path = self.layout.link(repo, kind, digest);
        blocking("remove link", move || link_removal::remove_synced(&path)).await
    }

    async fn unlink_unsynced(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
    ) -> StorageResult<bool> {
        let path = self.layout.link(repo, kind, digest);
        let unsynced = self.unsynced.clone();
        blocking("remove link", move || {
            Ok(unsynced.remember(link_removal::remove(&path)?))
        })
        .await
    }

    async fn sync_unlinks(&self) -> StorageResult<()> {
        let unsynced = self.unsynced.clone();
        blocking("sync removed links", move || unsynced.sync()).await
    }

    async fn read_tag(&self, repo: &RepoName, tag: &Tag) -> StorageResult<Option<Digest>> {
        let path = self.layout.tag(repo, tag);
        let p = path.clone();
        match blocking("read tag", move || atomic::read_optional(&p)).await? {
            None => Ok(None),
            Some(bytes) => parse_digest_file(path, &bytes).map(Some),
        }
    }

    async fn read_tag_dated(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> StorageResult<Option<(Digest, Option<SystemTime>)>> {
        let path = self.layout.tag(repo, tag);
        let p = path.clone();
        let read = blocking("read tag", move || read_dated(&p)).await?;
        match read {
            None => Ok(None),
            Some((bytes, at)) => Ok(Some((parse_digest_file(path, &bytes)?, Some(at)))),
        }
    }

    async fn write_tag(&self, repo: &RepoName, tag: &Tag, digest: &Digest) -> StorageResult<()> {
        let tmp = self.layout.tmp();
        let (index, current) = (
            self.layout.tag_index(repo, tag, digest),
            self.layout.tag(repo, tag),
        );
        let value = digest.to_string();
        blocking("write tag", move || {
            // The index first: whatever the tag points at is always in its index.
            write_link(&tmp, &index, &value)?;
            atomic::write_file(&tmp, &current, value.as_bytes())
        })
        .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> StorageResult<bool> {
        let (tmp, dir) = (self.layout.tmp(), self.layout.tag_dir(repo, tag));
        let current = self.layout.tag(repo, tag);
        blocking("delete tag", move || {
            if !current.exists() {
                return Ok(false);
            }
            // registry:2 deletes the tag's directory whole. Moved into staging first, so
            // the tag vanishes at once; what a crash leaves there goes at the next start.
            let doomed = tmp.join(uuid::Uuid::new_v4().to_string());
            match fs::rename(&dir, &doomed) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(e),
            }
            if let Some(tags) = dir.parent() {
                atomic::sync_dir(tags)?;
            }
            fs::remove_dir_all(&doomed)?;
            Ok(true)
        })
        .await
    }

    async fn list_tags(&self, repo: &RepoName) -> StorageResult<Option<Vec<Tag>>> {
        let (repo_dir, tags_dir) = (self.layout.repo(repo), self.layout.tags(repo));
        blocking("list tags", move || {
            // As the catalog sees it: a directory that only holds other repositories
            // (`team` of `team/app`) is none.
            if !(repo_dir.join("_layers").is_dir() || repo_dir.join("_manifests").is_dir()) {
                return Ok(None);
            }
            let tags = sorted_names(&tags_dir)?
                .iter()
                .filter(|t| tags_dir.join(t).join("current").join("link").is_file())
                .filter_map(|t| Tag::parse(t).ok())
                .collect();
            Ok(Some(tags))
        })
        .await
    }

    async fn add_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
        descriptor: &[u8],
    ) -> StorageResult<()> {
        let (tmp, path) = (
            self.layout.tmp(),
            self.layout.referrer(repo, subject, referrer),
        );
        let descriptor = descriptor.to_vec();
        blocking("write referrer", move || {
            atomic::write_file(&tmp, &path, &descriptor)
        })
        .await
    }

    async fn remove_referrer(
        &self,
        repo: &RepoName,
        subject: &Digest,
        referrer: &Digest,
    ) -> StorageResult<()> {
        let path = self.layout.referrer(repo, subject, referrer);
        blocking("remove referrer", move || {
            atomic::remove_file(&path).map(drop)
        })
        .await
    }

    async fn list_referrers(&self, repo: &RepoName, subject: &Digest) -> StorageResult<Vec<Bytes>> {
        let dir = self.layout.referrers(repo, subject);
        blocking("list referrers", move || {
            let mut out = Vec::new();
            for name in sorted_names(&dir)? {
                if let Some(bytes) = atomic::read_optional(&dir.join(name))? {
                    out.push(Bytes::from(bytes));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_repositories(&self) -> StorageResult<Vec<RepoName>> {
        let base = self.layout.repositories();
        blocking("list repositories", move || walk::list_repositories(&base)).await
    }

    async fn delete_repository(&self, repo: &RepoName) -> StorageResult<bool> {
        let (layout, repo) = (self.layout.clone(), repo.clone());
        blocking("delete repository", move || {
            repo_delete::delete_repository(&layout, &repo)
        })
        .await
    }

    async fn create_upload(
        &self,
        owner: &UploadOwner,
        kind: SessionKind,
    ) -> StorageResult<UploadId> {
        uploads::create(&self.layout, owner, kind).await
    }

    async fn upload_size(&self, owner: &UploadOwner, id: UploadId) -> StorageResult<Option<u64>> {
        uploads::size(&self.layout, owner, id).await
    }

    async fn append_upload(
        &self,
        owner: &UploadOwner,
        id: UploadId,
        range: Option<ChunkRange>,
        body: ByteStream,
    ) -> StorageResult<Append> {
        uploads::append(&self.layout, &self.sessions, owner, id, range, body).await
    }

    async fn finish_upload(
        &self,
        owner: &UploadOwner,
        id: UploadId,
        digest: &Digest,
    ) -> StorageResult<Finish> {
        let outcome = uploads::finish(&self.layout, &self.sessions, owner, id, digest).await?;
        if let Finish::Done { .. } = outcome {
            self.link(&owner.repo, LinkKind::Layer, digest).await?;
        }
        Ok(outcome)
    }

    async fn cancel_upload(&self, owner: &UploadOwner, id: UploadId) -> StorageResult<bool> {
        uploads::cancel(&self.layout, &self.sessions, owner, id).await
    }

    async fn purge_uploads(&self, max_age: Duration) -> StorageResult<usize> {
        uploads::purge(&self.layout, &self.sessions, max_age).await
    }

    async fn purge_orphans(&self) -> StorageResult<usize> {
        uploads::purge_orphans(&self.layout).await
    }

    async fn check_writable(&self) -> StorageResult<()> {
        let (tmp, probe) = (self.layout.tmp(), self.layout.tmp().join("health-probe"));
        blocking("health probe", move || {
            atomic::write_file(&tmp, &probe, b"ok")?;
            atomic::remove_file(&probe).map(drop)
        })
        .await
    }

    async fn put_record(&self, key: &RecordKey, bytes: Bytes) -> StorageResult<()> {
        self.put_record_file(key, bytes).await
    }

    async fn create_record(&self, key: &RecordKey, bytes: Bytes) -> StorageResult<bool> {
        self.create_record_file(key, bytes).await
    }

    async fn replace_record(
        &self,
        key: &RecordKey,
        bytes: Bytes,
        expected: &RecordVersion,
    ) -> StorageResult<bool> {
        self.replace_record_file(key, bytes, expected).await
    }

    async fn read_record(&self, key: &RecordKey) -> StorageResult<Option<(Bytes, RecordVersion)>> {
        self.read_record_file(key).await
    }

    async fn list_records(&self, prefix: &RecordKey) -> StorageResult<Vec<RecordKey>> {
        self.list_record_files(prefix).await
    }

    async fn delete_record(&self, key: &RecordKey) -> StorageResult<bool> {
        self.delete_record_file(key).await
    }

    async fn list_blobs(&self) -> StorageResult<Vec<BlobEntry>> {
        let layout = self.layout.clone();
        blocking("list blobs", move || enumerate::list_blobs(&layout)).await
    }

    async fn list_links(&self, repo: &RepoName, kind: LinkKind) -> StorageResult<Vec<Digest>> {
        let (layout, repo) = (self.layout.clone(), repo.clone());
        blocking("list links", move || {
            enumerate::list_links(&layout, &repo, kind)
        })
        .await
    }

    async fn list_tags_dated(&self, repo: &RepoName) -> StorageResult<Vec<DatedTag>> {
        let tags = self.list_tags(repo).await?.unwrap_or_default();
        let layout = self.layout.clone();
        let repo = repo.clone();
        blocking("list dated tags", move || {
            let mut out = Vec::with_capacity(tags.len());
            for tag in tags {
                let path = layout.tag(&repo, &tag);
                let Some((bytes, pushed)) = read_dated(&path)? else {
                    continue; // deleted since the listing
                };
                let digest = parse_digest_file(path, &bytes).map_err(io::Error::other)?;
                out.push(DatedTag {
                    tag,
                    digest,
                    pushed,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn list_all_links(&self) -> StorageResult<Vec<LinkEntry>> {
        self.list_all_links_of(&[LinkKind::Layer, LinkKind::Manifest])
            .await
    }

    async fn list_all_revisions(&self) -> StorageResult<Vec<LinkEntry>> {
        self.list_all_links_of(&[LinkKind::Manifest]).await
    }

    async fn blob_modified(&self, digest: &Digest) -> StorageResult<Option<SystemTime>> {
        let path = self.layout.blob(digest);
        blocking("stat blob", move || match fs::metadata(&path) {
            Ok(m) => m.modified().map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete_blob(&self, digest: &Digest) -> StorageResult<bool> {
        let (layout, digest) = (self.layout.clone(), digest.clone());
        blocking("delete blob", move || {
            enumerate::delete_blob(&layout, &digest)
        })
        .await
    }

    async fn delete_blob_written_before(
        &self,
        digest: &Digest,
        cutoff: SystemTime,
    ) -> StorageResult<bool> {
        let (layout, digest) = (self.layout.clone(), digest.clone());
        blocking("delete blob", move || {
            enumerate::delete_blob_written_before(&layout, &digest, cutoff)
        })
        .await
    }
}
