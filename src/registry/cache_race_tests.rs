//! The manifest cache against writers, with the race made to happen: a reader is held
//! between reading storage and filling the cache while a writer changes what it read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use tokio::sync::Notify;

use super::error::Code;
use super::reference::{Digest, RepoName, Tag};
use super::storage::fs::FsStorage;
use super::storage::*;
use super::{Registry, RegistryOptions};

/// The filesystem backend, except that one armed `is_linked` waits for a signal.
struct Gated {
    inner: FsStorage,
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

#[async_trait]
impl Storage for Gated {
    async fn is_linked(
        &self,
        repo: &RepoName,
        kind: LinkKind,
        digest: &Digest,
    ) -> StorageResult<bool> {
        let found = self.inner.is_linked(repo, kind, digest).await;
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        found
    }
    async fn blob_size(&self, d: &Digest) -> StorageResult<Option<u64>> {
        self.inner.blob_size(d).await
    }
    async fn read_blob(&self, d: &Digest, o: u64, l: u64) -> StorageResult<Option<ByteStream>> {
        self.inner.read_blob(d, o, l).await
    }
    async fn read_small_blob(&self, d: &Digest) -> StorageResult<Option<Bytes>> {
        self.inner.read_small_blob(d).await
    }
    async fn put_small_blob(&self, d: &Digest, b: Bytes) -> StorageResult<()> {
        self.inner.put_small_blob(d, b).await
    }
    async fn link(&self, r: &RepoName, k: LinkKind, d: &Digest) -> StorageResult<()> {
        self.inner.link(r, k, d).await
    }
    async fn unlink(&self, r: &RepoName, k: LinkKind, d: &Digest) -> StorageResult<bool> {
        self.inner.unlink(r, k, d).await
    }
    async fn read_tag(&self, r: &RepoName, t: &Tag) -> StorageResult<Option<Digest>> {
        self.inner.read_tag(r, t).await
    }
    async fn write_tag(&self, r: &RepoName, t: &Tag, d: &Digest) -> StorageResult<()> {
        self.inner.write_tag(r, t, d).await
    }
    async fn delete_tag(&self, r: &RepoName, t: &Tag) -> StorageResult<bool> {
        self.inner.delete_tag(r, t).await
    }
    async fn list_tags(&self, r: &RepoName) -> StorageResult<Option<Vec<Tag>>> {
        self.inner.list_tags(r).await
    }
    async fn add_referrer(
        &self,
        r: &RepoName,
        s: &Digest,
        f: &Digest,
        d: &[u8],
    ) -> StorageResult<()> {
        self.inner.add_referrer(r, s, f, d).await
    }
    async fn remove_referrer(&self, r: &RepoName, s: &Digest, f: &Digest) -> StorageResult<()> {
        self.inner.remove_referrer(r, s, f).await
    }
    async fn list_referrers(&self, r: &RepoName, s: &Digest) -> StorageResult<Vec<Bytes>> {
        self.inner.list_referrers(r, s).await
    }
    async fn list_repositories(&self) -> StorageResult<Vec<RepoName>> {
        self.inner.list_repositories().await
    }
    async fn create_upload(&self, o: &UploadOwner, k: SessionKind) -> StorageResult<UploadId> {
        self.inner.create_upload(o, k).await
    }
    async fn upload_size(&self, o: &UploadOwner, id: UploadId) -> StorageResult<Option<u64>> {
        self.inner.upload_size(o, id).await
    }
    async fn append_upload(
        &self,
        o: &UploadOwner,
        id: UploadId,
        r: Option<ChunkRange>,
        b: ByteStream,
    ) -> StorageResult<Append> {
        self.inner.append_upload(o, id, r, b).await
    }
    async fn finish_upload(
        &self,
        o: &UploadOwner,
        id: UploadId,
        d: &Digest,
    ) -> StorageResult<Finish> {
        self.inner.finish_upload(o, id, d).await
    }
    async fn cancel_upload(&self, o: &UploadOwner, id: UploadId) -> StorageResult<bool> {
        self.inner.cancel_upload(o, id).await
    }
    async fn purge_uploads(&self, max_age: Duration) -> StorageResult<usize> {
        self.inner.purge_uploads(max_age).await
    }
    async fn purge_orphans(&self) -> StorageResult<usize> {
        self.inner.purge_orphans().await
    }
    async fn check_writable(&self) -> StorageResult<()> {
        self.inner.check_writable().await
    }
    async fn put_record(&self, k: &RecordKey, b: Bytes) -> StorageResult<()> {
        self.inner.put_record(k, b).await
    }
    async fn create_record(&self, k: &RecordKey, b: Bytes) -> StorageResult<bool> {
        self.inner.create_record(k, b).await
    }
    async fn replace_record(
        &self,
        k: &RecordKey,
        b: Bytes,
        v: &RecordVersion,
    ) -> StorageResult<bool> {
        self.inner.replace_record(k, b, v).await
    }
    async fn read_record(&self, k: &RecordKey) -> StorageResult<Option<(Bytes, RecordVersion)>> {
        self.inner.read_record(k).await
    }
    async fn list_records(&self, p: &RecordKey) -> StorageResult<Vec<RecordKey>> {
        self.inner.list_records(p).await
    }
    async fn delete_record(&self, k: &RecordKey) -> StorageResult<bool> {
        self.inner.delete_record(k).await
    }
}

struct Fixture {
    registry: Arc<Registry>,
    storage: Arc<Gated>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Gated {
        inner: FsStorage::open(dir.path()).unwrap(),
        armed: AtomicBool::new(false),
        reached: Notify::new(),
        release: Notify::new(),
    });
    let options = RegistryOptions {
        max_manifest_bytes: 1 << 20,
        manifest_cache_bytes: 1 << 20,
        immutable: Vec::new(),
    };
    let registry = Arc::new(Registry::new(storage.clone(), options));
    Fixture {
        registry,
        storage,
        _dir: dir,
    }
}

/// Sends one request; returns the status and `Docker-Content-Digest`, or the error's code.
async fn send(
    r: &Registry,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, String), Code> {
    let stream: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from(body))]));
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", super::manifest::OCI_INDEX)
        .body(stream)
        .unwrap();
    match r.handle(req).await {
        Ok(resp) => {
            let digest = resp
                .headers()
                .get("docker-content-digest")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            Ok((resp.status(), digest))
        }
        Err(e) => Err(e.code),
    }
}

/// A manifest of its own for each `n` (an empty index with an annotation).
fn index(n: u32) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[],"annotations":{{"n":"{n}"}}}}"#,
        super::manifest::OCI_INDEX
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_the_old_tag_cannot_refill_the_cache_after_a_retag() {
    let f = fixture();
    let url = "/v2/team/app/manifests/latest";
    let (status, _) = send(&f.registry, Method::PUT, url, index(1)).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    // A reader resolves `latest` to the first push, then is held before filling the cache.
    f.storage.armed.store(true, Ordering::SeqCst);
    let reached = f.storage.reached.notified();
    let reader = {
        let registry = f.registry.clone();
        tokio::spawn(async move { send(&registry, Method::GET, url, Vec::new()).await })
    };
    reached.await;
    let (status, second) = send(&f.registry, Method::PUT, url, index(2)).await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    f.storage.release.notify_one();
    reader.await.unwrap().unwrap();
    let (status, now) = send(&f.registry, Method::GET, url, Vec::new())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(now, second, "latest resolves to the replaced push");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_deleted_manifest_cannot_bring_it_back() {
    let f = fixture();
    let put = send(
        &f.registry,
        Method::PUT,
        "/v2/team/app/manifests/v1",
        index(1),
    );
    let (status, digest) = put.await.unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let by_digest = format!("/v2/team/app/manifests/{digest}");
    f.storage.armed.store(true, Ordering::SeqCst);
    let reached = f.storage.reached.notified();
    let reader = {
        let (registry, url) = (f.registry.clone(), by_digest.clone());
        tokio::spawn(async move { send(&registry, Method::GET, &url, Vec::new()).await })
    };
    reached.await;
    let (status, _) = send(&f.registry, Method::DELETE, &by_digest, Vec::new())
        .await
        .unwrap();
    assert_eq!(status, StatusCode::ACCEPTED);
    f.storage.release.notify_one();
    reader.await.unwrap().unwrap();
    let after = send(&f.registry, Method::GET, &by_digest, Vec::new()).await;
    assert_eq!(
        after,
        Err(Code::ManifestUnknown),
        "the deleted manifest is served again"
    );
}
