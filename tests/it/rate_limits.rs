//! Rate limits and the failed-login limit, from the outside: 429s with `Retry-After` and the
//! OCI envelope, recovery, trusted and spoofed `X-Forwarded-For`, bounded client state, and
//! a real `podman pull` of a many-layer image under the default limits.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Response, StatusCode};

use crate::support::{
    assert_error, have_program, podman, sha256, TestServer, WharfProcess, OCI_MANIFEST,
};

/// Sends `GET path` with optional extra header; returns the response.
async fn get(s: &TestServer, path: &str, xff: Option<&str>) -> Response {
    let mut r = s.http.get(s.url(path));
    if let Some(x) = xff {
        r = r.header("X-Forwarded-For", x);
    }
    r.send().await.unwrap()
}

/// How many of `n` requests pass before the first refusal; returns it too.
async fn until_refused(
    s: &TestServer,
    path: &str,
    xff: Option<&str>,
    n: usize,
) -> (usize, Response) {
    for i in 0..n {
        let r = get(s, path, xff).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            return (i, r);
        }
        assert!(
            r.status().is_success() || r.status().is_redirection(),
            "{}",
            r.status()
        );
    }
    panic!("{n} requests to {path} all passed");
}

fn retry_after(r: &Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_burst_gets_429_with_retry_after_then_recovers() {
    let (s, _) = TestServer::start_config(
        r#"
[[listener]]
address = "127.0.0.1:0"
[rate_limit.tight]
requests = "manifests"
rate = "4/s"
burst = 3
[rate_limit.old]
rate = "1/h"
burst = 1
[[server]]
default = true
rate_limits = ["tight"]
[[server.route]]
path = "/"
registry = {}
[[server.route]]
path = "/old/"
redirect = "http://elsewhere.example/"
rate_limits = ["old"]
"#,
    )
    .await;
    let (passed, r) = until_refused(&s, "/v2/", None, 20).await;
    assert_eq!(passed, 3, "the burst passes, the next is refused");
    assert_eq!(retry_after(&r), 1, "whole seconds, rounded up");
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    // Blob requests are not what "tight" counts.
    let r = get(&s, &format!("/v2/a/blobs/{}", sha256(b"x")), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The route's own limit adds to the server's; outside the API the answer is plain text.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let old = || no_redirects.get(s.url("/old/x")).send();
    assert_eq!(
        old().await.unwrap().status(),
        StatusCode::PERMANENT_REDIRECT
    );
    let r = old().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&r) > 3000, "one an hour: {}", retry_after(&r));
    assert!(r.text().await.unwrap().contains("too many requests"));

    // Waiting as told is enough to get through again, at the rate.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (passed, _) = until_refused(&s, "/v2/", None, 20).await;
    assert!((1..=3).contains(&passed), "{passed} passed after a second");
}

#[tokio::test]
async fn blob_and_manifest_budgets_are_separate() {
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[rate_limit.blobs_per_ip]\nrate = \"1/h\"\nburst = 2\n",
    )
    .await;
    let blob = format!("/v2/a/blobs/{}", sha256(b"x"));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(get(&s, &blob, None).await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND,
            StatusCode::TOO_MANY_REQUESTS
        ],
        "the tuned blob limit keeps the built-in key and class"
    );
    for _ in 0..20 {
        assert_eq!(
            get(&s, "/v2/", None).await.status(),
            StatusCode::OK,
            "manifests pass"
        );
    }
}

#[tokio::test]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let config = |trusted: &str| {
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[limits]\ntrusted_proxies = [{trusted}]\n\
             [rate_limit.manifests_per_ip]\nrate = \"1/h\"\nburst = 2\n"
        )
    };
    // Untrusted peer: a new made-up address per request buys nothing.
    let (s, _) = TestServer::start_config(&config("")).await;
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            get(&s, "/v2/", Some(&format!("203.0.113.{i}")))
                .await
                .status(),
        );
    }
    assert_eq!(statuses[..2], [StatusCode::OK; 2]);
    assert_eq!(statuses[2..], [StatusCode::TOO_MANY_REQUESTS; 2]);

    // Behind a trusted proxy, each real client has its own budget, and what the client
    // itself wrote left of the proxy's entry is ignored.
    let (s, _) = TestServer::start_config(&config("\"127.0.0.1\"")).await;
    for i in 0..4 {
        let xff = format!("6.6.6.6, 198.51.100.{i}");
        assert_eq!(get(&s, "/v2/", Some(&xff)).await.status(), StatusCode::OK);
        assert_eq!(get(&s, "/v2/", Some(&xff)).await.status(), StatusCode::OK);
        let r = get(&s, "/v2/", Some(&xff)).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "client {i}");
    }
}

/// Reads one sample from the admin listener's `/metrics`.
async fn metric(s: &TestServer, sample: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{}/metrics", s.admin.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_addresses_keeps_client_state_bounded() {
    // Every request claims a new address through a trusted proxy; with a limit that
    // remembers clients for an hour, only the store's bound keeps memory in check.
    // (4000 requests stand for the million of the unit test, which runs in-memory.)
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [limits]\ntrusted_proxies = [\"127.0.0.1\"]\nrate_limit_keys = 100\n\
         [rate_limit.manifests_per_ip]\nrate = \"1/h\"\nburst = 1000\n",
    )
    .await;
    let flood = futures_util::stream::iter(0..4000u32).map(|i| {
        let s = &s;
        async move {
            let xff = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            get(s, "/v2/", Some(&xff)).await.status()
        }
    });
    let statuses: Vec<StatusCode> = flood.buffer_unordered(16).collect().await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    // The sweeper reports the count every 10 s.
    let sample = "wharf_rate_limit_clients{limit=\"manifests_per_ip\"} ";
    let mut remembered = None;
    for _ in 0..150 {
        remembered = metric(&s, sample).await.filter(|n| *n > 0.0);
        if remembered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let remembered = remembered.expect("the sweeper reported the clients");
    assert!(
        remembered <= 100.0,
        "{remembered} clients remembered, bound is 100"
    );
    // A client remembered before the store filled up is still limited.
    let (passed, _) = until_refused(&s, "/v2/", Some("10.0.0.0"), 2000).await;
    assert_eq!(passed, 999, "it had spent one request of its 1000");
}

fn login_server_config(root: &Path, htpasswd: &Path) -> String {
    format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[storage]
root = {root:?}
[limits]
trusted_proxies = ["127.0.0.1"]
[failed_logins]
rate = "1/h"
burst = 3
[[server]]
default = true
[server.auth]
providers = [{{ htpasswd = {htpasswd:?} }}]
access = [{{ repos = "*", who = ["authenticated"], actions = ["pull"] }}]
"#,
        root = root.display().to_string(),
        htpasswd = htpasswd.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_block_guessing_even_the_right_password() {
    let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = conf.path().join("users.htpasswd");
    let hash = |p| bcrypt::hash(p, 4).unwrap();
    std::fs::write(
        &file,
        format!("alice:{}\nbob:{}\n", hash("a-pass"), hash("b-pass")),
    )
    .unwrap();
    let log_path = conf.path().join("wharf.log");
    let mut wharf = WharfProcess::spawn_logging(
        conf.path(),
        &login_server_config(root.path(), &file),
        std::fs::File::create(&log_path).unwrap(),
    );
    let http = reqwest::Client::new();
    let login = |from: &'static str, user: &'static str, pass: &'static str| {
        http.get(format!("http://{}/v2/", wharf.addr))
            .header("X-Forwarded-For", from)
            .basic_auth(user, Some(pass))
            .send()
    };
    let guesser = "198.51.100.66";
    for guess in ["123456", "password", "qwerty"] {
        let r = login(guesser, "alice", guess).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{guess}");
    }
    let r = login(guesser, "alice", "letmein").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the guess past the budget"
    );
    let r = login(guesser, "alice", "a-pass").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password"
    );
    assert!(retry_after(&r) > 3000, "until a failure's hour is up");
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    let r = login(guesser, "bob", "b-pass").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "one name's failures do not block the others behind the address"
    );
    let r = login("203.0.113.5", "alice", "a-pass").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the user name is blocked where it has not logged in before"
    );
    let r = login("203.0.113.5", "bob", "b-pass").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "others are not");

    wharf.terminate();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let refusal = text
        .lines()
        .find(|l| l.contains("login refused: too many failed logins"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{text}"));
    assert!(
        refusal.contains(guesser) && refusal.contains("alice"),
        "{refusal}"
    );
    assert!(!text.contains("a-pass") && !text.contains("letmein"));
}

/// `docker pull` arithmetic made real: a 30-layer image pulled by podman under the default
/// limits, which then still stop a flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_pulls_a_30_layer_image_under_the_default_limits() {
    if !have_program("podman", "podman") {
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let wharf = WharfProcess::spawn(root.path(), conf.path());
    let base = format!("http://{}", wharf.addr);
    let http = reqwest::Client::new();
    let push_blob = |bytes: Vec<u8>| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let digest = sha256(&bytes);
            let r = http
                .post(format!("{base}/v2/deep/app/blobs/uploads/?digest={digest}"))
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            digest
        }
    };
    let mut layers = Vec::new();
    for i in 0..30 {
        let tar = layer_tar(work.path(), i);
        let size = tar.len();
        layers.push((push_blob(tar).await, size));
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(d, _)| d).collect::<Vec<_>>()},
    }))
    .unwrap();
    let config_size = config.len();
    let config_digest = push_blob(config).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": s
        })).collect::<Vec<_>>(),
    });
    let r = http
        .put(format!("{base}/v2/deep/app/manifests/v1"))
        .header("Content-Type", OCI_MANIFEST)
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let remote = format!("{}/deep/app:v1", wharf.addr);
    let out = podman(work.path())
        .args(["pull", "-q", "--tls-verify=false", &remote])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman(work.path())
        .args(["image", "mount", &remote])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mounted = Path::new(String::from_utf8_lossy(&out.stdout).trim()).to_owned();
    for i in [0, 17, 29] {
        let text = std::fs::read_to_string(mounted.join(format!("layer{i}.txt"))).unwrap();
        assert_eq!(text, format!("layer {i}\n"), "every layer arrived");
    }

    // The defaults are on: a flood of manifest requests from one address is cut off.
    let mut refused = 0;
    for _ in 0..600 {
        let r = http
            .head(format!("{base}/v2/deep/app/manifests/v1"))
            .send()
            .await
            .unwrap();
        refused += usize::from(r.status() == StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(refused > 0, "600 manifest requests at once all passed");
}

/// A layer: a tar holding `/layerN.txt`.
fn layer_tar(dir: &Path, i: usize) -> Vec<u8> {
    let src = dir.join(format!("layer{i}"));
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(format!("layer{i}.txt")), format!("layer {i}\n")).unwrap();
    let tar = dir.join(format!("layer{i}.tar"));
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success();
    assert!(ok, "tar failed");
    std::fs::read(tar).unwrap()
}
