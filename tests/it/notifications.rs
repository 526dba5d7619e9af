//! Notifications against a real receiver (`receiver.rs`): what arrives, signed and in
//! order, over http and https; nothing lost while the receiver is down; one delivery per
//! event with two nodes on one bucket, and the survivor delivering a dead node's events;
//! emits that do not wait for a slow or failing receiver.
//!
//! Events are emitted through the outbox's sink as the repository service emits them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::pki::Pki;
use crate::receiver::{Delivery, Mode, Receiver};
use crate::support::{Backend, TestStore};
use wharf::config::{Config, NotificationsConfig};
use wharf::events::metrics::EventMetrics;
use wharf::events::Notifications;
use wharf::registry::reference::{Digest, RepoName, Tag};
use wharf::registry::service::event::{
    Action, Actor, Event, EventSink, RequestInfo, Target, TargetKind,
};
use wharf::registry::storage::fs::FsStorage;
use wharf::registry::storage::{RecordKey, Storage};

const SECRET: &str = "s3cret-for-tests";

/// `[notifications]` with quick retries and a short lease, and one endpoint `hook`.
fn notifications(url: &str, extra: &str) -> NotificationsConfig {
    let toml = format!(
        "[notifications]\nlease = \"2s\"\npoll = \"200ms\"\n\
         [[notifications.endpoint]]\nname = \"hook\"\nurl = {url:?}\n\
         backoff = \"100ms\"\nmax_backoff = \"300ms\"\n{extra}"
    );
    Config::from_toml(&toml, "test").unwrap().notifications
}

fn push(repo: &str, tag: &str, n: u8) -> Event {
    let digest = format!("sha256:{}", hex::encode([n; 32]));
    Event {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp: SystemTime::now(),
        action: Action::Push,
        target: Target {
            kind: TargetKind::Manifest,
            repository: RepoName::parse(repo).unwrap(),
            digest: Some(Digest::parse(&digest).unwrap()),
            media_type: Some(crate::support::OCI_MANIFEST.to_owned()),
            size: Some(1000 + u64::from(n)),
            tag: Some(Tag::parse(tag).unwrap()),
            from_repository: None,
        },
        actor: Actor {
            name: Some("alice".into()),
            groups: vec![],
        },
        request: RequestInfo {
            id: "req-1".into(),
            addr: "10.1.2.3:4444".into(),
            host: "registry.test".into(),
            method: "PUT".into(),
            user_agent: "podman/5.0".into(),
        },
    }
}

fn fs_storage() -> (tempfile::TempDir, Arc<dyn Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(FsStorage::open(dir.path()).unwrap());
    (dir, storage)
}

/// Checks `Wharf-Signature: t=<unix>,v1=<hex>` against HMAC-SHA256 over `<t>.<body>`.
pub(crate) fn assert_signed(d: &Delivery) {
    let header = d.headers["wharf-signature"].to_str().unwrap();
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("signature header {header:?}"));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(t.parse().unwrap()) < 60,
        "signed now: {header}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&d.body);
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies");
}

/// Runs README's Python `verify` on a delivery, as a receiver would.
fn python_verifies(d: &Delivery, secret: &str) -> bool {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find("### Verifying signatures").unwrap()..];
    let start = section.find("```python\n").unwrap() + "```python\n".len();
    let snippet = &section[start..start + section[start..].find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, &d.body).unwrap();
    let script = format!(
        "{snippet}\nimport sys\nok = verify(sys.argv[1].encode(), sys.argv[2], open(sys.argv[3], 'rb').read())\nsys.exit(0 if ok else 1)\n"
    );
    let header = d.headers["wharf-signature"].to_str().unwrap();
    std::process::Command::new("python3")
        .args(["-c", &script, secret, header])
        .arg(&body)
        .status()
        .unwrap()
        .success()
}

async fn pending(storage: &Arc<dyn Storage>) -> usize {
    let folder = RecordKey::new("events/hook/pending").unwrap();
    storage.list_records(&folder).await.unwrap().len()
}

/// Waits (polling the outbox, not the clock) until nothing is pending.
async fn until_drained(storage: &Arc<dyn Storage>, within: Duration) {
    let deadline = Instant::now() + within;
    while pending(storage).await > 0 {
        assert!(
            Instant::now() < deadline,
            "outbox not drained in {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries
        .iter()
        .map(|d| d.event()["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn push_events_arrive_signed_over_https_in_registry2s_envelope() {
    let pki = Pki::new();
    let receiver = Receiver::https(&pki).await;
    let ca = pki.ca_path().display().to_string();
    let config = notifications(
        &receiver.url(),
        &format!("secret = {SECRET:?}\nca_file = {ca:?}\n"),
    );
    let (_dir, storage) = fs_storage();
    let n = Notifications::start(&config, storage.clone(), EventMetrics::default()).unwrap();
    let event = push("team/app", "v1", 7);
    n.sink().emit(&event).await.unwrap();

    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let d = &got[0];
    assert_eq!(
        d.headers["content-type"],
        "application/vnd.docker.distribution.events.v1+json"
    );
    assert_signed(d);
    if crate::support::have_program("python3", "python3") {
        assert!(python_verifies(d, SECRET), "README's snippet verifies it");
        assert!(!python_verifies(d, "wrong secret"));
    }
    let e = d.event();
    assert_eq!(e["id"], event.id);
    assert_eq!(e["action"], "push");
    let t = &e["target"];
    assert_eq!(t["digest"], format!("sha256:{}", hex::encode([7u8; 32])));
    assert_eq!(t["tag"], "v1");
    assert_eq!(t["size"], 1007);
    assert_eq!(t["length"], 1007);
    assert_eq!(t["repository"], "team/app");
    assert_eq!(t["mediaType"], crate::support::OCI_MANIFEST);
    assert_eq!(e["actor"]["name"], "alice");
    assert_eq!(e["request"]["addr"], "10.1.2.3:4444");
    assert_eq!(e["request"]["useragent"], "podman/5.0");
    assert!(e["source"]["instanceID"].as_str().is_some());
    until_drained(&storage, Duration::from_secs(10)).await;
    n.shutdown().await;
}

#[tokio::test]
async fn cloudevents_arrive_over_http_with_configured_headers() {
    let receiver = Receiver::http().await;
    std::env::set_var("WHARF_TEST_HOOK_TOKEN", "Bearer from-env");
    let config = notifications(
        &receiver.url(),
        "format = \"cloudevents\"\n[[notifications.endpoint.header]]\n\
         name = \"Authorization\"\nvalue_env = \"WHARF_TEST_HOOK_TOKEN\"\n",
    );
    let (_dir, storage) = fs_storage();
    let n = Notifications::start(&config, storage.clone(), EventMetrics::default()).unwrap();
    n.sink().emit(&push("team/app", "v2", 1)).await.unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(
        got[0].headers["content-type"],
        "application/cloudevents+json"
    );
    assert_eq!(got[0].headers["authorization"], "Bearer from-env");
    assert!(
        got[0].headers.get("wharf-signature").is_none(),
        "no secret, no signature"
    );
    let v = got[0].json();
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["type"], "io.wharf.manifest.push");
    assert_eq!(v["subject"], "team/app:v2");
    assert_eq!(v["data"]["target"]["tag"], "v2");
    n.shutdown().await;
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_event_once_in_order_per_repository() {
    let mut receiver = Receiver::http().await;
    receiver.down().await;
    let config = notifications(&receiver.url(), "");
    let (_dir, storage) = fs_storage();
    let metrics = EventMetrics::default();
    let n = Notifications::start(&config, storage.clone(), metrics.clone()).unwrap();
    let mut emitted = Vec::new();
    for i in 0..12u8 {
        let repo = ["team/a", "team/b", "team/c"][usize::from(i % 3)];
        let event = push(repo, &format!("t{i}"), i);
        n.sink().emit(&event).await.unwrap();
        emitted.push(event);
    }
    // Failed attempts were made while it was down.
    let retries = metrics
        .retries
        .get_or_create(&EventMetrics::label("hook"))
        .clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while retries.get() < 3 {
        assert!(Instant::now() < deadline, "no delivery attempts while down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(receiver.deliveries().len(), 0);
    assert_eq!(pending(&storage).await, 12, "nothing dropped while down");
    receiver.up().await;

    receiver.wait_for(12, Duration::from_secs(30)).await;
    until_drained(&storage, Duration::from_secs(10)).await;
    let got = receiver.deliveries();
    let mut unique = ids(&got);
    unique.sort();
    unique.dedup();
    assert_eq!((got.len(), unique.len()), (12, 12), "each event once");
    for repo in ["team/a", "team/b", "team/c"] {
        let sent: Vec<_> = emitted
            .iter()
            .filter(|e| e.target.repository.as_str() == repo)
            .map(|e| e.id.clone())
            .collect();
        let arrived: Vec<_> = got
            .iter()
            .map(Delivery::event)
            .filter(|e| e["target"]["repository"] == repo)
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(arrived, sent, "{repo} in order");
    }
    let sent = metrics
        .sent
        .get_or_create(&EventMetrics::label("hook"))
        .get();
    assert_eq!(sent, 12);
    n.shutdown().await;
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_given_up_and_kept_visible() {
    let receiver = Receiver::http().await;
    receiver.set_mode(Mode::Fail);
    let config = notifications(&receiver.url(), "max_attempts = 2\n");
    let (_dir, storage) = fs_storage();
    let n = Notifications::start(&config, storage.clone(), EventMetrics::default()).unwrap();
    n.sink().emit(&push("team/app", "v1", 1)).await.unwrap();
    until_drained(&storage, Duration::from_secs(20)).await;
    assert_eq!(receiver.deliveries().len(), 2, "two attempts");
    let failed = RecordKey::new("events/hook/failed").unwrap();
    let kept = storage.list_records(&failed).await.unwrap();
    assert_eq!(kept.len(), 1);
    let (bytes, _) = storage.read_record(&kept[0]).await.unwrap().unwrap();
    let record: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(record["status"], "failed");
    assert!(record["last_error"].as_str().unwrap().contains("500"));
    n.shutdown().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_hanging_endpoint() {
    let receiver = Receiver::http().await;
    receiver.set_mode(Mode::Hang);
    let (_dir, storage) = fs_storage();
    let config = notifications(&receiver.url(), "timeout = \"60s\"\n");
    let n = Notifications::start(&config, storage.clone(), EventMetrics::default()).unwrap();
    n.sink().emit(&push("team/app", "v1", 1)).await.unwrap();
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let started = Instant::now();
    n.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pending(&storage).await, 1, "the event stays pending");
}

/// The median time of `n` emits.
async fn median_emit(sink: &Arc<dyn EventSink>, n: usize) -> Duration {
    let mut times = Vec::new();
    for i in 0..n {
        let started = Instant::now();
        sink.emit(&push("team/app", &format!("m{i}"), 1))
            .await
            .unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn a_hanging_or_failing_receiver_does_not_slow_emits() {
    let healthy = Receiver::http().await;
    let (_d1, s1) = fs_storage();
    let n1 = Notifications::start(
        &notifications(&healthy.url(), ""),
        s1,
        EventMetrics::default(),
    )
    .unwrap();
    let baseline = median_emit(&n1.sink(), 30).await;

    let hanging = Receiver::http().await;
    hanging.set_mode(Mode::Hang);
    let (_d2, s2) = fs_storage();
    let config = notifications(&hanging.url(), "timeout = \"30s\"\n");
    let n2 = Notifications::start(&config, s2, EventMetrics::default()).unwrap();
    let stuck = median_emit(&n2.sink(), 30).await;
    // The worker is stuck on the first event meanwhile.
    hanging.wait_for(1, Duration::from_secs(10)).await;

    let failing = Receiver::http().await;
    failing.set_mode(Mode::Fail);
    let (_d3, s3) = fs_storage();
    let n3 = Notifications::start(
        &notifications(&failing.url(), ""),
        s3,
        EventMetrics::default(),
    )
    .unwrap();
    let erroring = median_emit(&n3.sink(), 30).await;
    eprintln!("median emit: healthy {baseline:?}, hanging {stuck:?}, failing {erroring:?}");
    let bound = baseline * 3 + Duration::from_millis(20);
    assert!(stuck < bound, "hanging receiver: {stuck:?} vs {baseline:?}");
    assert!(
        erroring < bound,
        "failing receiver: {erroring:?} vs {baseline:?}"
    );
    n1.abort();
    n2.abort();
    n3.abort();
}

async fn open(store: &TestStore) -> Arc<dyn Storage> {
    let config = Config::from_toml(&store.config(""), "test").unwrap();
    wharf::server::open_storage(&config.storage.backend, &config.storage.root)
        .await
        .unwrap()
}

async fn two_nodes_deliver_each_event_once_and_a_survivor_takes_over(backend: Backend) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    let receiver = Receiver::http().await;
    let config = notifications(&receiver.url(), "");
    let (a_store, b_store) = (open(&store).await, open(&store).await);
    let a = Notifications::start(&config, a_store.clone(), EventMetrics::default()).unwrap();
    let b = Notifications::start(&config, b_store, EventMetrics::default()).unwrap();
    for i in 0..10u8 {
        let node = if i % 2 == 0 { &a } else { &b };
        node.sink()
            .emit(&push("team/app", &format!("t{i}"), i))
            .await
            .unwrap();
    }
    receiver.wait_for(10, Duration::from_secs(30)).await;
    until_drained(&a_store, Duration::from_secs(20)).await;
    let mut got = ids(&receiver.deliveries());
    got.sort();
    got.dedup();
    assert_eq!(
        (receiver.deliveries().len(), got.len()),
        (10, 10),
        "once each"
    );

    // Node b dies (as a crash would: its lease, if it held it, just expires); node a is
    // then the one delivering, and gets stuck on an event when it dies too, while node c
    // is live.
    b.abort();
    receiver.set_mode(Mode::Hang);
    let last = push("team/app", "last", 99);
    a.sink().emit(&last).await.unwrap();
    receiver.wait_for(11, Duration::from_secs(20)).await;
    let survivor_store = open(&store).await;
    let c = Notifications::start(&config, survivor_store, EventMetrics::default()).unwrap();
    a.abort();
    receiver.set_mode(Mode::Accept);
    // The new node waits for the dead one's lease to expire, then sends the event again.
    let again = receiver.wait_for(12, Duration::from_secs(30)).await;
    assert_eq!(again[11].event()["id"], last.id);
    until_drained(&a_store, Duration::from_secs(20)).await;
    c.shutdown().await;
}

/// A delivery that takes longer than the lease: the sender keeps its lease while it waits,
/// so the other node does not send the same event meanwhile.
async fn a_delivery_slower_than_the_lease_is_still_sent_once(backend: Backend) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    let receiver = Receiver::http().await;
    receiver.set_mode(Mode::Slow(Duration::from_secs(4)));
    let toml = format!(
        "[notifications]\nlease = \"1s\"\npoll = \"100ms\"\n\
         [[notifications.endpoint]]\nname = \"hook\"\nurl = {:?}\ntimeout = \"30s\"\n",
        receiver.url()
    );
    let config = Config::from_toml(&toml, "test").unwrap().notifications;
    let (a_store, b_store) = (open(&store).await, open(&store).await);
    let a = Notifications::start(&config, a_store.clone(), EventMetrics::default()).unwrap();
    let b = Notifications::start(&config, b_store, EventMetrics::default()).unwrap();
    a.sink().emit(&push("team/app", "slow", 1)).await.unwrap();
    until_drained(&a_store, Duration::from_secs(30)).await;
    assert_eq!(receiver.deliveries().len(), 1, "sent once");
    a.shutdown().await;
    b.shutdown().await;
}

crate::on_object_stores!(
    two_nodes_deliver_each_event_once_and_a_survivor_takes_over,
    a_delivery_slower_than_the_lease_is_still_sent_once
);
