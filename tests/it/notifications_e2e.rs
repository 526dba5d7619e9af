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
    let without = median_push(&plain, 15).await;

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
    let failing_server = TestServer::start_with(&endpoint(&failing.url(), "")).await;
    let erroring = median_push(&failing_server, 15).await;
    eprintln!("median push: no endpoint {without:?}, hanging {stuck:?}, failing {erroring:?}");
    let bound = without * 3 + Duration::from_millis(30);
    assert!(stuck < bound, "hanging endpoint: {stuck:?} vs {without:?}");
    assert!(
        erroring < bound,
        "failing endpoint: {erroring:?} vs {without:?}"
    );
}
