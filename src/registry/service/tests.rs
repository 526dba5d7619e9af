//! The service's operations against a recording sink: each announces the right event with
//! the right fields, nothing on failure, and pulls only to a sink that wants them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderValue, Method};

use super::*;
use crate::registry::error::Code;
use crate::registry::manifest::OCI_MANIFEST;
use crate::registry::reference::{Algorithm, Digest, Reference, RepoName, Tag};
use crate::registry::storage::fs::FsStorage;
use crate::registry::storage::{Append, ByteStream, StorageError, StorageResult};

/// A sink that keeps what it is given, and can be told to fail.
#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    pulls: bool,
    failing: AtomicBool,
}

#[async_trait]
impl EventSink for Recorder {
    async fn emit(&self, event: &Event) -> StorageResult<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StorageError::Unavailable {
                op: "recording an event",
                source: std::io::Error::other("the outbox is down"),
            });
        }
        self.events.lock().unwrap().push(event.clone());
        Ok(())
    }

    fn wants_pulls(&self) -> bool {
        self.pulls
    }
}

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

struct Fixture {
    service: Service,
    sink: Arc<Recorder>,
    _dir: tempfile::TempDir,
}

fn fixture(pulls: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(FsStorage::open(dir.path()).unwrap());
    let sink = Arc::new(Recorder {
        pulls,
        ..Recorder::default()
    });
    let service = Service::new(storage, 1 << 20, 1 << 20).with_events(sink.clone());
    Fixture {
        service,
        sink,
        _dir: dir,
    }
}

fn alice() -> Caller {
    Caller {
        user: Some("alice".into()),
        groups: vec!["devs".into()],
        addr: Some("192.0.2.7".parse().unwrap()),
        host: Some(HeaderValue::from_static("registry.example")),
        method: Method::PUT,
        user_agent: Some(HeaderValue::from_static(
            "containers/5.0 (github.com/containers/image)",
        )),
        request_id: RequestId::next(),
    }
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).unwrap()
}

fn body(bytes: &[u8]) -> ByteStream {
    let bytes = Bytes::copy_from_slice(bytes);
    Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

/// Pushes `bytes` as a blob of `r` monolithically, and forgets the event.
async fn push_blob(f: &Fixture, r: &RepoName, bytes: &[u8]) -> Digest {
    let d = sha256(bytes);
    let done = f.service.put_blob(&alice(), r, &d, body(bytes)).await;
    assert!(matches!(done, Ok(Finished::Stored)));
    f.sink.take();
    d
}

/// An image manifest naming a config and one layer, both pushed into `r` first.
async fn image(f: &Fixture, r: &RepoName) -> Vec<u8> {
    let (config, layer) = (b"{}".as_slice(), b"layer bytes".as_slice());
    let (c, l) = (push_blob(f, r, config).await, push_blob(f, r, layer).await);
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l.to_string(), "size": layer.len()}],
    }))
    .unwrap()
}

async fn push_manifest(f: &Fixture, r: &RepoName, reference: &str, m: &[u8]) -> Digest {
    let reference = Reference::parse(reference).unwrap();
    let pushed = f
        .service
        .put_manifest(&alice(), r, &reference, Some(OCI_MANIFEST), body(m))
        .await
        .unwrap();
    pushed.digest
}

fn one(events: Vec<Event>) -> Event {
    assert_eq!(events.len(), 1, "{events:#?}");
    events.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_finished_upload_is_a_blob_push_with_actor_and_request() {
    let f = fixture(false);
    let (r, caller) = (repo("team/app"), alice());
    let id = f.service.start_upload(&caller, &r).await.unwrap();
    let appended = f
        .service
        .append_upload(&caller, &r, id, None, body(b"hello"))
        .await
        .unwrap();
    assert!(matches!(appended, Append::Written { size: 5 }));
    assert!(
        f.sink.take().is_empty(),
        "nothing is announced before the finish"
    );
    let d = sha256(b"hello");
    let done = f.service.finish_upload(&caller, &r, id, &d).await.unwrap();
    assert!(matches!(done, Finished::Stored));
    let e = one(f.sink.take());
    assert_eq!(e.action, Action::Push);
    assert_eq!(e.target.kind, TargetKind::Blob);
    assert_eq!(e.target.repository, r);
    assert_eq!(e.target.digest.as_ref(), Some(&d));
    assert_eq!(e.target.size, Some(5));
    assert_eq!(e.target.tag, None);
    assert_eq!(e.actor.name.as_deref(), Some("alice"));
    assert_eq!(e.actor.groups, ["devs"]);
    assert_eq!(e.request.addr, "192.0.2.7");
    assert_eq!(e.request.host, "registry.example");
    assert_eq!(e.request.method, "PUT");
    assert!(e.request.user_agent.starts_with("containers/"));
    assert_eq!(e.request.id, caller.request_id.to_string());
    assert!(!e.id.is_empty());

    // The client's retry of that finish (its answer lost) announces it again: at least once.
    let again = f.service.finish_upload(&caller, &r, id, &d).await.unwrap();
    assert!(matches!(again, Finished::Stored));
    assert_eq!(one(f.sink.take()).target.size, Some(5));
}

#[tokio::test]
async fn a_monolithic_put_is_a_blob_push_and_a_bad_digest_is_nothing() {
    let f = fixture(false);
    let r = repo("team/app");
    let d = sha256(b"whole");
    let done = f.service.put_blob(&alice(), &r, &d, body(b"whole")).await;
    assert!(matches!(done, Ok(Finished::Stored)));
    let e = one(f.sink.take());
    assert_eq!((e.action, e.target.kind), (Action::Push, TargetKind::Blob));
    assert_eq!(e.target.size, Some(5));

    let wrong = f.service.put_blob(&alice(), &r, &d, body(b"other")).await;
    assert!(matches!(wrong, Ok(Finished::DigestMismatch { .. })));
    let id = f.service.start_upload(&alice(), &r).await.unwrap();
    let unknown = sha256(b"never sent");
    let gone = f.service.finish_upload(&alice(), &r, id, &unknown).await;
    assert!(matches!(gone, Ok(Finished::DigestMismatch { .. })));
    assert!(f.sink.take().is_empty());
}

#[tokio::test]
async fn a_mount_names_where_the_blob_came_from() {
    let f = fixture(false);
    let (from, to) = (repo("team/base"), repo("team/app"));
    let d = push_blob(&f, &from, b"shared layer").await;
    assert!(f.service.mount(&alice(), &to, &from, &d).await.unwrap());
    let e = one(f.sink.take());
    assert_eq!(e.action, Action::Mount);
    assert_eq!(e.target.repository, to);
    assert_eq!(e.target.from_repository.as_ref(), Some(&from));
    assert_eq!(e.target.digest.as_ref(), Some(&d));
    assert_eq!(e.target.size, Some(12));

    // A source without the blob mounts nothing and announces nothing.
    let missing = sha256(b"not there");
    assert!(!f
        .service
        .mount(&alice(), &to, &from, &missing)
        .await
        .unwrap());
    assert!(f.sink.take().is_empty());
}

#[tokio::test]
async fn a_manifest_pushed_by_tag_carries_the_tag() {
    let f = fixture(false);
    let r = repo("team/app");
    let m = image(&f, &r).await;
    let d = push_manifest(&f, &r, "v1", &m).await;
    let e = one(f.sink.take());
    assert_eq!(
        (e.action, e.target.kind),
        (Action::Push, TargetKind::Manifest)
    );
    assert_eq!(e.target.digest.as_ref(), Some(&d));
    assert_eq!(e.target.tag, Some(Tag::parse("v1").unwrap()));
    assert_eq!(e.target.media_type.as_deref(), Some(OCI_MANIFEST));
    assert_eq!(e.target.size, Some(m.len() as u64));

    push_manifest(&f, &r, &d.to_string(), &m).await;
    assert_eq!(
        one(f.sink.take()).target.tag,
        None,
        "pushed by digest: no tag"
    );
}

#[tokio::test]
async fn a_refused_manifest_announces_nothing() {
    let f = fixture(false);
    let r = repo("team/app");
    let m = image(&f, &r).await;
    // Refers to blobs `other` does not have.
    let refused = f
        .service
        .put_manifest(
            &alice(),
            &repo("team/other"),
            &Reference::parse("v1").unwrap(),
            Some(OCI_MANIFEST),
            body(&m),
        )
        .await;
    assert_eq!(refused.unwrap_err().code, Code::ManifestBlobUnknown);
    let wrong_digest = Reference::Digest(sha256(b"something else"));
    let refused = f
        .service
        .put_manifest(&alice(), &r, &wrong_digest, Some(OCI_MANIFEST), body(&m))
        .await;
    assert_eq!(refused.unwrap_err().code, Code::DigestInvalid);
    let missing = Reference::parse("nope").unwrap();
    let refused = f.service.delete_manifest(&alice(), &r, &missing).await;
    assert_eq!(refused.unwrap_err().code, Code::ManifestUnknown);
    let refused = f.service.delete_blob(&alice(), &r, &sha256(b"x")).await;
    assert_eq!(refused.unwrap_err().code, Code::BlobUnknown);
    assert!(f.sink.take().is_empty());
}

#[tokio::test]
async fn deletes_name_what_was_deleted() {
    let f = fixture(false);
    let r = repo("team/app");
    let m = image(&f, &r).await;
    let d = push_manifest(&f, &r, "v1", &m).await;
    push_manifest(&f, &r, "latest", &m).await;
    push_manifest(&f, &r, "old", &m).await;
    f.sink.take();

    let old = Reference::parse("old").unwrap();
    f.service.delete_manifest(&alice(), &r, &old).await.unwrap();
    let e = one(f.sink.take());
    assert_eq!((e.action, e.target.kind), (Action::Delete, TargetKind::Tag));
    assert_eq!(e.target.tag, Some(Tag::parse("old").unwrap()));

    let by_digest = Reference::Digest(d.clone());
    f.service
        .delete_manifest(&alice(), &r, &by_digest)
        .await
        .unwrap();
    let events = f.sink.take();
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.action,
                e.target.kind,
                e.target.tag.as_ref().map(Tag::as_str),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Action::Delete, TargetKind::Tag, Some("latest")),
            (Action::Delete, TargetKind::Tag, Some("v1")),
            (Action::Delete, TargetKind::Manifest, None),
        ]
    );
    assert!(events.iter().all(|e| e.target.digest.as_ref() == Some(&d)));
    assert_eq!(events[2].target.media_type.as_deref(), Some(OCI_MANIFEST));

    let layer = sha256(b"layer bytes");
    f.service.delete_blob(&alice(), &r, &layer).await.unwrap();
    let e = one(f.sink.take());
    assert_eq!(
        (e.action, e.target.kind),
        (Action::Delete, TargetKind::Blob)
    );
    assert_eq!(e.target.digest, Some(layer));
}

/// A deleted repository: no tags, no pulls, out of the catalog; one event naming only it;
/// its blobs stay for the collector; a nested repository survives.
/// The code of a failed operation.
fn code<T>(r: ApiResult<T>) -> Code {
    r.map(drop).unwrap_err().code
}

#[tokio::test]
async fn a_repository_delete_removes_it_whole_with_one_event() {
    let f = fixture(false);
    let (r, nested) = (repo("team"), repo("team/app"));
    let m = image(&f, &r).await;
    let d = push_manifest(&f, &r, "v1", &m).await;
    push_manifest(&f, &r, "v2", &m).await;
    push_manifest(&f, &nested, "v1", &image(&f, &nested).await).await;
    let v1 = Reference::parse("v1").unwrap();
    f.service
        .get_manifest(&alice(), &r, &v1, true)
        .await
        .unwrap(); // cached now
    f.sink.take();

    let gone = f.service.delete_repository(&alice(), &r).await.unwrap();
    assert_eq!(
        gone.tags,
        [Tag::parse("v1").unwrap(), Tag::parse("v2").unwrap()]
    );
    let e = one(f.sink.take());
    assert_eq!(
        (e.action, e.target.kind),
        (Action::Delete, TargetKind::Repository)
    );
    assert_eq!(e.target.repository, r);
    assert_eq!((e.target.digest, e.target.tag), (None, None));
    assert_eq!(e.actor.name.as_deref(), Some("alice"));

    let everyone = crate::registry::access::Visibility(Arc::new(|_| true));
    let listed = f
        .service
        .visible_repositories(Some(&everyone))
        .await
        .unwrap();
    assert_eq!(listed, ["team/app"]);
    assert_eq!(code(f.service.list_tags(&r).await), Code::NameUnknown);
    let by_tag = f.service.get_manifest(&alice(), &r, &v1, true).await;
    assert_eq!(
        code(by_tag),
        Code::ManifestUnknown,
        "not from the cache either"
    );
    let by_digest = Reference::Digest(d.clone());
    let by_digest = f.service.get_manifest(&alice(), &r, &by_digest, true).await;
    assert_eq!(code(by_digest), Code::ManifestUnknown);
    assert!(
        f.service.storage().blob_size(&d).await.unwrap().is_some(),
        "bytes stay for GC"
    );
    let nested_v1 = f.service.get_manifest(&alice(), &nested, &v1, true).await;
    assert!(nested_v1.is_ok());

    let again = f.service.delete_repository(&alice(), &r).await;
    assert_eq!(code(again), Code::NameUnknown);
    assert!(
        f.sink.take().is_empty(),
        "nothing deleted, nothing announced"
    );
    push_manifest(&f, &r, "v1", &image(&f, &r).await).await;
    assert_eq!(
        f.service.list_tags(&r).await.unwrap(),
        [Tag::parse("v1").unwrap()]
    );
}

#[tokio::test]
async fn a_repository_with_an_immutable_tag_is_not_deleted() {
    let mut f = fixture(false);
    let rule = crate::config::ImmutableRule {
        repos: crate::config::RepoPattern::parse("prod/*").unwrap(),
        tags: vec![crate::config::TagPattern::parse("v*").unwrap()],
    };
    f.service = Service::new(f.service.storage().clone(), 1 << 20, 1 << 20)
        .with_immutable(&[rule])
        .with_events(f.sink.clone());
    let r = repo("prod/app");
    push_manifest(&f, &r, "v1", &image(&f, &r).await).await;
    f.sink.take();
    let refused = f.service.delete_repository(&alice(), &r).await.unwrap_err();
    assert_eq!(refused.code, Code::TagImmutable);
    assert!(refused.message.contains("v1"), "{}", refused.message);
    assert!(f.sink.take().is_empty());
    assert_eq!(
        f.service.list_tags(&r).await.unwrap(),
        [Tag::parse("v1").unwrap()]
    );
}

#[tokio::test]
async fn pulls_are_announced_only_to_a_sink_that_wants_them() {
    for wanted in [false, true] {
        let f = fixture(wanted);
        let r = repo("team/app");
        let m = image(&f, &r).await;
        let d = push_manifest(&f, &r, "v1", &m).await;
        f.sink.take();
        let v1 = Reference::parse("v1").unwrap();
        // Twice: the second answer comes from the cache and must be announced too.
        for _ in 0..2 {
            f.service
                .get_manifest(&alice(), &r, &v1, true)
                .await
                .unwrap();
        }
        // A HEAD checks; it does not pull.
        f.service
            .get_manifest(&alice(), &r, &v1, false)
            .await
            .unwrap();
        let layer = sha256(b"layer bytes");
        let size = f.service.blob_size(&r, &layer).await.unwrap();
        f.service
            .read_blob(&alice(), &r, &layer, size, 0, size)
            .await
            .unwrap();
        let events = f.sink.take();
        if !wanted {
            assert!(events.is_empty(), "{events:#?}");
            continue;
        }
        assert_eq!(events.len(), 3, "{events:#?}");
        assert!(events.iter().all(|e| e.action == Action::Pull));
        assert_eq!(events[0].target.kind, TargetKind::Manifest);
        assert_eq!(events[0].target.digest.as_ref(), Some(&d));
        assert_eq!(events[0].target.tag, Some(Tag::parse("v1").unwrap()));
        assert_eq!(events[0].target.size, Some(m.len() as u64));
        assert_eq!(events[2].target.kind, TargetKind::Blob);
        assert_eq!(events[2].target.size, Some(11));
    }
}

/// The effect stays; the client is told to retry (503), and the retry announces it.
#[tokio::test]
async fn a_failing_sink_fails_the_request_after_the_effect() {
    let f = fixture(false);
    let r = repo("team/app");
    let m = image(&f, &r).await;
    f.sink.failing.store(true, Ordering::SeqCst);
    let v1 = Reference::parse("v1").unwrap();
    let failed = f
        .service
        .put_manifest(&alice(), &r, &v1, Some(OCI_MANIFEST), body(&m))
        .await;
    assert_eq!(failed.unwrap_err().code, Code::Unavailable);
    let d = sha256(b"more");
    let failed = f.service.put_blob(&alice(), &r, &d, body(b"more")).await;
    assert_eq!(failed.unwrap_err().code, Code::Unavailable);
    assert!(f.sink.take().is_empty());
    assert!(f
        .service
        .get_manifest(&alice(), &r, &v1, false)
        .await
        .is_ok());
    assert_eq!(f.service.blob_size(&r, &d).await.unwrap(), 4);

    f.sink.failing.store(false, Ordering::SeqCst);
    push_manifest(&f, &r, "v1", &m).await;
    assert_eq!(one(f.sink.take()).action, Action::Push);
}

/// Two repositories share an image; one also has a layer of its own: that layer is its
/// unique bytes, the shared ones count in both totals, and a visibility filter hides.
#[tokio::test]
async fn usage_counts_shared_blobs_in_each_total_and_unique_ones_once() {
    let f = fixture(false);
    let (a, b) = (repo("team/a"), repo("team/b"));
    let m = image(&f, &a).await;
    push_manifest(&f, &a, "v1", &m).await;
    push_manifest(&f, &a, "latest", &m).await;
    push_manifest(&f, &b, "v1", &image(&f, &b).await).await;
    push_blob(&f, &a, b"only in a").await;
    let shared = (b"{}".len() + b"layer bytes".len() + m.len()) as u64;

    let usage = f.service.usage(None).await.unwrap();
    assert_eq!(
        usage,
        [
            RepoUsage {
                repository: "team/a".into(),
                tags: 2,
                manifests: 1,
                bytes: shared + 9,
                unique_bytes: 9,
            },
            RepoUsage {
                repository: "team/b".into(),
                tags: 1,
                manifests: 1,
                bytes: shared,
                unique_bytes: 0,
            },
        ]
    );
    let only_b = crate::registry::access::Visibility(Arc::new(|r| r == "team/b"));
    let seen = f.service.usage(Some(&only_b)).await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].unique_bytes, 0, "still shared with the hidden one");
}
