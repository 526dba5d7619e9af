//! The cache policy: the pure planner, then eviction through the service on a filesystem
//! store followed by a collection, with the clock moved forward instead of waited for.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::*;
use crate::config::{GcConfig, Untagged};
use crate::registry::manifest::OCI_MANIFEST;
use crate::registry::reference::{Algorithm, Tag};
use crate::registry::service::{Action, ByteStream, Event, EventSink, Finished, TargetKind};
use crate::registry::storage::fs::FsStorage;
use crate::registry::storage::StorageResult;

const DAY: Duration = Duration::from_secs(86400);

fn sha(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).unwrap()
}

fn image(name: &str, pulled: SystemTime, blobs: &[(&[u8], u64)]) -> Image {
    Image {
        repo: repo(name),
        digest: sha(name.as_bytes()),
        last_pulled: pulled,
        blobs: blobs.iter().map(|(b, n)| (sha(b), *n)).collect(),
    }
}

#[test]
fn age_evicts_the_unpulled_and_size_the_least_recently_pulled_counting_shared_blobs_once() {
    let t = SystemTime::UNIX_EPOCH + 1000 * DAY;
    let images = [
        image("c/old", t - 10 * DAY, &[(b"base", 100), (b"old", 10)]),
        image("c/b", t - 3 * DAY, &[(b"base", 100), (b"b", 20)]),
        image("c/a", t - 2 * DAY, &[(b"base", 100), (b"a", 30)]),
        image("c/new", t - DAY, &[(b"new", 40)]),
    ];
    let by_age = CachePolicy {
        max_age: Some(7 * DAY),
        max_size: None,
    };
    assert_eq!(plan(&images, &by_age, t), vec![(0, Why::Age)]);
    assert_eq!(plan(&images, &by_age, t - 4 * DAY), vec![]);
    // Kept after the age rule: base 100 + b 20 + a 30 + new 40 = 190 (base once).
    let fits = |cap| CachePolicy {
        max_age: Some(7 * DAY),
        max_size: Some(cap),
    };
    assert_eq!(plan(&images, &fits(190), t), vec![(0, Why::Age)]);
    // 189: b goes (its own 20; base still named by a).
    assert_eq!(
        plan(&images, &fits(189), t),
        vec![(0, Why::Age), (1, Why::Size)]
    );
    // 70: b, then a (and with it base), leaving new's 40.
    let small = plan(&images, &fits(70), t);
    assert_eq!(small, vec![(0, Why::Age), (1, Why::Size), (2, Why::Size)]);
    let none = CachePolicy::default();
    assert!(plan(&images, &none, t + 100 * DAY).is_empty());
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

#[async_trait]
impl EventSink for Recorder {
    async fn emit(&self, event: &Event) -> StorageResult<()> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

fn body(bytes: &[u8]) -> ByteStream {
    let bytes = Bytes::copy_from_slice(bytes);
    Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
}

/// Stores an image as the mirror does (blobs, then the fetched manifest by tag).
async fn cached(service: &Service, r: &RepoName, layers: &[&[u8]]) -> (Digest, Vec<Digest>) {
    let caller = Caller::default();
    let config = format!("{{\"repo\":\"{r}\"}}").into_bytes();
    let mut named = Vec::new();
    for blob in std::iter::once(&config[..]).chain(layers.iter().copied()) {
        let d = sha(blob);
        let stored = service.put_blob(&caller, r, &d, body(blob)).await;
        assert!(matches!(stored, Ok(Finished::Stored)));
        named.push((d, blob.len()));
    }
    let desc = |(d, n): &(Digest, usize)| serde_json::json!({"mediaType": "application/octet-stream", "digest": d.to_string(), "size": n});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(&named[0]),
        "layers": named[1..].iter().map(desc).collect::<Vec<_>>(),
    }))
    .unwrap();
    let digest = sha(&manifest);
    let tag = Tag::parse("1").unwrap();
    service
        .store_fetched_manifest(
            &caller,
            r,
            Some(&tag),
            &digest,
            Some(OCI_MANIFEST),
            manifest.into(),
        )
        .await
        .unwrap();
    (digest, named.into_iter().map(|(d, _)| d).collect())
}

#[tokio::test]
async fn an_idle_cached_image_is_deleted_as_events_and_gc_frees_only_what_nobody_else_names() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(FsStorage::open(dir.path()).unwrap());
    let sink = Arc::new(Recorder::default());
    let service = Service::new(storage.clone(), 1 << 20, 1 << 20).with_events(sink.clone());
    let fetched = SystemTime::now();
    let (idle, shared) = (
        repo("up.example/team/idle"),
        b"shared base layer".as_slice(),
    );
    let (idle_digest, idle_blobs) = cached(&service, &idle, &[shared, b"idle's own"]).await;
    let hot = repo("up.example/team/hot");
    let (hot_digest, _) = cached(&service, &hot, &[b"hot's own"]).await;
    // A local repository shares the idle image's base layer (its own manifest).
    let local = repo("team/local");
    let (local_digest, _) = cached(&service, &local, &[shared]).await;
    // `hot` was pulled six days after the fetch (another node, before a restart: a record).
    pulls::pulled_at(&*storage, &hot, &hot_digest, fetched + 6 * DAY)
        .await
        .unwrap();
    sink.0.lock().unwrap().clear();

    let config = Config::from_toml(
        &format!(
            "[storage]\nroot = {:?}\n[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nmirror = \"http://up.example\"\ncache_max_age = \"7d\"\n",
            dir.path().display().to_string()
        ),
        "t",
    )
    .unwrap();
    let policies = policies(&config, dir.path());
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].prefix, "up.example/");
    let now = fetched + 8 * DAY;
    let dry = evict(&service, &policies, now, true).await.unwrap();
    assert_eq!(dry.len(), 1);
    assert_eq!((&dry[0].repo, &dry[0].outcome), (&idle, &Outcome::Planned));
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "a dry run changed something"
    );

    let done = evict(&service, &policies, now, false).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!((&done[0].digest, done[0].why), (&idle_digest, Why::Age));
    assert_eq!(done[0].outcome, Outcome::Deleted);
    let events = std::mem::take(&mut *sink.0.lock().unwrap());
    let kinds: Vec<_> = events.iter().map(|e| (e.action, e.target.kind)).collect();
    assert_eq!(
        kinds,
        [
            (Action::Delete, TargetKind::Tag),
            (Action::Delete, TargetKind::Manifest)
        ],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e.target.repository == idle));

    // The collection then frees the idle image's own blobs, never the shared layer.
    let gc = GcConfig {
        interval: None,
        grace: DAY,
        untagged: Untagged::Keep,
    };
    let swept = crate::gc::collect_at(&*storage, &gc, now, false, crate::gc::Pace::BesideServers)
        .await
        .unwrap();
    let freed: HashSet<_> = swept.blobs.iter().map(|b| b.digest.clone()).collect();
    let expected: HashSet<_> = [
        idle_digest.clone(),
        idle_blobs[0].clone(),
        idle_blobs[2].clone(),
    ]
    .into();
    assert_eq!(freed, expected, "{swept:#?}");
    let caller = Caller::default();
    for (r, d) in [(&local, &local_digest), (&hot, &hot_digest)] {
        let m = service
            .get_manifest(&caller, r, &Reference::Digest(d.clone()), false)
            .await;
        assert!(m.is_ok(), "{r} lost its manifest");
    }
    assert!(
        service.blob_size(&local, &sha(shared)).await.is_ok(),
        "the shared layer went"
    );
    // The evicted image's pull records are gone with it; the kept one's stays.
    let left = pulls::list_all(&*storage).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].repo, hot);
}
