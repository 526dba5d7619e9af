//! Notifications end to end: podman pushes to a `wharf serve` child, a real receiver gets
//! the events; and an acknowledged push survives a SIGKILL before its delivery.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::pki::Pki;
use crate::receiver::{Delivery, Receiver};
use crate::support::{have_program, podman, WharfProcess};

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Imports a one-file image and pushes it to `remote` with podman; returns the manifest
/// digest podman pushed.
fn podman_push(work: &Path, remote: &str, authfile: Option<&Path>) -> String {
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello.txt"), remote).unwrap();
    let tar = work.join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    ok(
        podman(work)
            .args(["import", tar.to_str().unwrap(), "localhost/events/app:1"])
            .output()
            .unwrap(),
        "import",
    );
    let digestfile = work.join("digest");
    let mut push = podman(work);
    push.args(["push", "--tls-verify=false", "--digestfile"])
        .arg(&digestfile);
    if let Some(auth) = authfile {
        push.arg("--authfile").arg(auth);
    }
    ok(
        push.args(["localhost/events/app:1", remote])
            .output()
            .unwrap(),
        "push",
    );
    std::fs::read_to_string(digestfile)
        .unwrap()
        .trim()
        .to_owned()
}

fn endpoint(url: &str, extra: &str) -> String {
    format!(
        "[notifications]\nlease = \"2s\"\npoll = \"200ms\"\n\
         [[notifications.endpoint]]\nname = \"hook\"\nurl = {url:?}\n\
         backoff = \"100ms\"\nmax_backoff = \"300ms\"\n{extra}"
    )
}

fn manifest_pushes(deliveries: &[Delivery]) -> Vec<Value> {
    deliveries
        .iter()
        .map(Delivery::event)
        .filter(|e| e["action"] == "push" && e["target"]["tag"].is_string())
        .collect()
}

fn add_user(users: &Path) {
    let mut add = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "htpasswd",
            users.to_str().unwrap(),
            "dev",
            "--password-stdin",
        ])
        .args(["--cost", "5"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"dev-secret\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
}

#[tokio::test]
async fn a_podman_push_notifies_the_digest_tag_size_actor_and_address_over_https() {
    if !have_program("podman", "podman") {
        return;
    }
    let pki = Pki::new();
    let receiver = Receiver::https(&pki).await;
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let users = conf.path().join("users.htpasswd");
    add_user(&users);
    let secret = conf.path().join("hook.secret");
    std::fs::write(&secret, "s3cret-for-tests\n").unwrap();
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {root:?}\n\
         [[server]]\ndefault = true\n[server.auth]\nproviders = [{{ htpasswd = {users:?} }}]\n\
         access = [{{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\"] }}]\n{}",
        endpoint(
            &receiver.url(),
            &format!(
                "secret_file = {:?}\nca_file = {:?}\n",
                secret.display().to_string(),
                pki.ca_path().display().to_string()
            )
        ),
        root = root.path().display().to_string(),
        users = users.display().to_string(),
    );
    let wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let registry = wharf.addr.to_string();
    let auth = work.path().join("auth.json");
    let login = podman(work.path())
        .args([
            "login",
            "--tls-verify=false",
            "--authfile",
            auth.to_str().unwrap(),
        ])
        .args(["-u", "dev", "-p", "dev-secret", &registry])
        .output()
        .unwrap();
    ok(login, "login");
    let digest = podman_push(work.path(), &format!("{registry}/team/app:1"), Some(&auth));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pushed = loop {
        let found = manifest_pushes(&receiver.deliveries());
        if !found.is_empty() {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no manifest push event"
        );
        receiver
            .wait_for(receiver.deliveries().len() + 1, Duration::from_secs(30))
            .await;
    };
    let e = &pushed[0];
    assert_eq!(e["target"]["digest"], digest);
    assert_eq!(e["target"]["tag"], "1");
    assert_eq!(e["target"]["repository"], "team/app");
    assert!(e["target"]["size"].as_u64().unwrap() > 0);
    assert_eq!(e["actor"]["name"], "dev");
    assert!(
        e["request"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1"),
        "{e}"
    );
    let d = receiver
        .deliveries()
        .into_iter()
        .find(|d| d.event()["id"] == e["id"])
        .unwrap();
    crate::notifications::assert_signed(&d);
    // Layers and the config were pushed too, as blob events.
    let blobs = receiver
        .deliveries()
        .iter()
        .map(Delivery::event)
        .filter(|e| {
            e["action"] == "push"
                && e["target"]["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/blobs/"))
        })
        .count();
    assert!(blobs >= 2, "blob push events: {blobs}");
}

#[tokio::test]
async fn a_push_acknowledged_before_a_sigkill_is_delivered_after_the_restart() {
    if !have_program("podman", "podman") {
        return;
    }
    let mut receiver = Receiver::http().await;
    receiver.down().await;
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n{}",
        root.path().display().to_string(),
        endpoint(&receiver.url(), "")
    );
    let mut wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let digest = podman_push(work.path(), &format!("{}/team/app:1", wharf.addr), None);
    // Acknowledged, not delivered (the receiver is down): SIGKILL.
    wharf.kill();
    assert!(receiver.deliveries().is_empty());
    let listed = wharf_events(conf.path());
    let waiting = listed
        .lines()
        .find(|l| l.contains("team/app:1"))
        .unwrap_or_else(|| panic!("wharf events:\n{listed}"));
    assert!(
        waiting.contains("pending") || waiting.contains("retrying"),
        "{waiting}"
    );
    receiver.up().await;
    let _wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = manifest_pushes(&receiver.deliveries());
        if let Some(e) = found.first() {
            assert_eq!(e["target"]["digest"], digest);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the push event never arrived"
        );
        receiver
            .wait_for(receiver.deliveries().len() + 1, Duration::from_secs(30))
            .await;
    }
    // Beside the running server, `wharf events` shows it delivered (once the worker has
    // recorded it).
    loop {
        let listed = wharf_events(conf.path());
        if listed
            .lines()
            .any(|l| l.contains("team/app:1") && l.contains("delivered"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "wharf events:\n{listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `wharf events --config <dir>/wharf.toml`'s output.
fn wharf_events(conf: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["events", "--config"])
        .arg(conf.join("wharf.toml"))
        .output()
        .unwrap();
    String::from_utf8(ok(out, "wharf events").stdout).unwrap()
}

/// The median time of pushing `n` small images (config, layer, manifest by tag).
async fn median_push(server: &crate::support::TestServer, n: usize) -> Duration {
    let mut times = Vec::new();
    for i in 0..n {
        let started = std::time::Instant::now();
        server
            .push_image(
                "team/app",
                &format!("t{i}"),
                &crate::support::bytes_of(4096, i as u8),
            )
            .await;
        times.push(started.elapsed());
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn pushes_take_as_long_with_a_hanging_or_failing_endpoint_as_without() {
    use crate::receiver::Mode;
    use crate::support::TestServer;
    let plain = TestServer::start().await;
    let no_endpoint = median_push(&plain, 15).await;
    // The baseline is an endpoint that answers at once: the outbox writes are the same,
    // so what differs is only how the endpoint behaves.
    let healthy = Receiver::http().await;
    let healthy_server = TestServer::start_with(&endpoint(&healthy.url(), "")).await;
    let without = median_push(&healthy_server, 15).await;

    let hanging = Receiver::http().await;
    hanging.set_mode(Mode::Hang);
    let stuck_server =
        TestServer::start_with(&endpoint(&hanging.url(), "timeout = \"60s\"\n")).await;
    let stuck = median_push(&stuck_server, 15).await;
    assert!(
        !hanging.deliveries().is_empty(),
        "the endpoint was reached and hangs"
    );

    let failing = Receiver::http().await;
    failing.set_mode(Mode::Fail);
    let (failing_server, _) = TestServer::start_config(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [log]\naccess_log = false\n{}",
        endpoint(&failing.url(), "")
    ))
    .await;
    let erroring = median_push(&failing_server, 15).await;
    eprintln!(
        "median push: no endpoint {no_endpoint:?}, healthy endpoint {without:?}, \
         hanging {stuck:?}, failing {erroring:?}"
    );
    let bound = without * 2 + Duration::from_millis(30);
    // The failing endpoint's retries and queue show on /metrics.
    let admin = failing_server.admin.unwrap();
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{endpoint=\"hook\"}}")))
            .unwrap_or_else(|| panic!("{name} in:\n{metrics}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(line("wharf_notifications_retries_total") >= 1.0);
    assert!(line("wharf_notifications_queue_depth") >= 1.0);
    assert!(line("wharf_notifications_oldest_pending_seconds") >= 0.0);
    assert!(stuck < bound, "hanging endpoint: {stuck:?} vs {without:?}");
    assert!(
        erroring < bound,
        "failing endpoint: {erroring:?} vs {without:?}"
    );
}

/// Pushes a one-layer image to `tag` of `team/app` through the node at `addr`.
async fn push_through(addr: std::net::SocketAddr, tag: &str) {
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/v2/team/app");
    let mut blobs = Vec::new();
    for bytes in [
        format!("{{\"tag\":\"{tag}\"}}").into_bytes(),
        crate::support::bytes_of(2048, 3),
    ] {
        let digest = crate::support::sha256(&bytes);
        let r = http
            .post(format!("{base}/blobs/uploads/?digest={digest}"))
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        blobs.push((digest, bytes.len()));
    }
    let manifest =
        crate::support::image_manifest(&blobs[0].0, blobs[0].1, &[(&blobs[1].0, blobs[1].1)]);
    let r = http
        .put(format!("{base}/manifests/{tag}"))
        .header("Content-Type", crate::support::OCI_MANIFEST)
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// The pid in the endpoint's lease record (`host/pid/run`), once a node holds it.
async fn lease_holder(store: &crate::support::TestStore) -> u32 {
    let config = wharf::config::Config::from_toml(&store.config(""), "test").unwrap();
    let storage = wharf::server::open_storage(&config.storage.backend, &config.storage.root)
        .await
        .unwrap();
    let key = wharf::registry::storage::RecordKey::new("events/hook/lease").unwrap();
    let (bytes, _) = storage.read_record(&key).await.unwrap().expect("a lease");
    let lease: Value = serde_json::from_slice(&bytes).unwrap();
    lease["holder"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn two_wharf_processes_on_one_bucket_deliver_once_and_survive_a_sigkill() {
    use crate::receiver::Mode;
    let Some(store) = crate::support::TestStore::fresh(crate::support::Backend::S3) else {
        return;
    };
    let receiver = Receiver::http().await;
    let toml = store.config(&endpoint(&receiver.url(), ""));
    let (conf_a, conf_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = WharfProcess::spawn_async(conf_a.path(), &toml).await;
    let mut b = WharfProcess::spawn_async(conf_b.path(), &toml).await;
    for i in 0..3 {
        push_through(a.addr, &format!("a{i}")).await;
        push_through(b.addr, &format!("b{i}")).await;
    }
    // Each push announces two blobs and a manifest: 18 events, each delivered once.
    receiver.wait_for(18, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last_count = 0;
    loop {
        // Quiet for a couple of polls: nothing more (no second copies) is coming.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let n = receiver.deliveries().len();
        if n == last_count || tokio::time::Instant::now() > deadline {
            break;
        }
        last_count = n;
    }
    let got = receiver.deliveries();
    let mut ids: Vec<_> = got.iter().map(|d| d.event()["id"].to_string()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!((got.len(), ids.len()), (18, 18), "each event once");

    // The delivering node is stuck on an event when it is SIGKILLed; the other delivers it.
    receiver.set_mode(Mode::Hang);
    push_through(a.addr, "last").await;
    receiver.wait_for(19, Duration::from_secs(30)).await;
    let holder = lease_holder(&store).await;
    let survivor = if holder == a.child.id() {
        a.kill();
        &b
    } else {
        assert_eq!(holder, b.child.id(), "one of the nodes holds the lease");
        b.kill();
        &a
    };
    receiver.set_mode(Mode::Accept);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let tags: Vec<_> = receiver
            .deliveries()
            .iter()
            .skip(19)
            .map(|d| d.event()["target"]["tag"].clone())
            .collect();
        if tags.iter().any(|t| t == "last") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the survivor never delivered"
        );
        receiver
            .wait_for(receiver.deliveries().len() + 1, Duration::from_secs(30))
            .await;
    }
    assert_eq!(lease_holder(&store).await, survivor.child.id());
}
