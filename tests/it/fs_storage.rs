//! Filesystem storage that stays right: the manifest cache under concurrent retags, one
//! process per root, blobs that change under a download, and config reloads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;

use crate::support::{image_manifest, sha256, TestServer, WharfProcess, OCI_MANIFEST};

/// One registry on a fresh root, without the built-in rate limits (the tests hammer it).
const UNLIMITED: &str = "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\nrate_limits = []\n[[server.route]]\npath = \"/\"\nregistry = {}\n";

/// A reader that resolved the old tag must not put it back into the cache after the push
/// that replaced it: once the push has answered, every reader sees the new digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retagging_under_readers_never_leaves_a_stale_tag() {
    let (s, _) = TestServer::start_config(UNLIMITED).await;
    let s = Arc::new(s);
    let config = b"{}".to_vec();
    let c = s.push_blob("team/app", &config).await;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..12)
        .map(|i| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let url = s.url("/v2/team/app/manifests/latest");
                while !stop.load(Ordering::Relaxed) {
                    let req = match i % 2 {
                        0 => s.http.head(&url),
                        _ => s.http.get(&url),
                    };
                    let _ = req.header("Accept", OCI_MANIFEST).send().await;
                }
            })
        })
        .collect();
    for round in 0..40 {
        // A different (empty-layered) manifest each round: annotations make the digest.
        let mut m = image_manifest(&c, config.len(), &[]);
        m["annotations"] = serde_json::json!({ "round": round.to_string() });
        let r = s.put_manifest("team/app", "latest", OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let pushed = sha256(&serde_json::to_vec(&m).unwrap());
        for _ in 0..5 {
            let r = s
                .http
                .head(s.url("/v2/team/app/manifests/latest"))
                .header("Accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "round {round}");
            assert_eq!(
                r.headers()["docker-content-digest"],
                pushed.as_str(),
                "round {round}: latest still resolves to an older push"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
}

/// A second `wharf serve` on a root another one is using must refuse to start, naming the
/// holder, instead of clearing the first one's staging files from under it.
#[test]
fn a_second_process_on_one_root_is_refused_with_the_holders_pid() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let (first_dir, second_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&first_dir).unwrap();
    std::fs::create_dir_all(&second_dir).unwrap();
    let first = WharfProcess::spawn(&root, &first_dir);
    // A file the first process is staging.
    let staged = root.join("wharf/tmp/in-flight");
    std::fs::write(&staged, b"partial").unwrap();

    let config = second_dir.join("wharf.toml");
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n",
        root.display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let mut second = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(second.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    if line.starts_with("listening on") {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second wharf started on a root in use");
    }
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let pid = format!("pid {}", first.child.id());
    assert!(stderr.contains(&pid), "the message names {pid}: {stderr}");
    assert!(
        staged.exists(),
        "the first process's staging file was deleted"
    );
    // The first one serves on.
    let mut conn = std::net::TcpStream::connect(first.addr).unwrap();
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// A blob file cut short under a download (a disk repair, an operator's mistake) ends that
/// download only; the process lives on and serves the next request. Over TLS, where the
/// bytes are copied in user space (rustls encrypts them), which is where a memory map of a
/// truncated file raises SIGBUS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_truncated_during_its_download_fails_that_download_only() {
    use futures_util::StreamExt;

    let pki = crate::pki::Pki::new();
    let leaf = pki.leaf("live", &["registry.test"]);
    let dir = tempfile::tempdir().unwrap();
    let (root, config_dir) = (dir.path().join("root"), dir.path().join("conf"));
    std::fs::create_dir_all(&config_dir).unwrap();
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"on\"\n[storage]\nroot = {:?}\n\
         [[server]]\nnames = [\"registry.test\"]\ndefault = true\nrate_limits = []\n\
         tls = {{ cert = {:?}, key = {:?} }}\n",
        root.display().to_string(),
        leaf.cert,
        leaf.key
    );
    let mut wharf = WharfProcess::spawn_config(&config_dir, &toml);
    let client = crate::pki::https_client(&pki.ca_pem, &["registry.test"], wharf.addr);
    let base = format!("https://registry.test:{}", wharf.addr.port());
    // Whether the cut lands while a chunk is still being copied is a matter of timing, so
    // a few downloads are cut; with a memory map, one of them is enough to end the process.
    for round in 0..4u8 {
        let data = crate::support::bytes_of(16 << 20, round);
        let digest = sha256(&data);
        let r = client
            .post(format!("{base}/v2/team/app/blobs/uploads/?digest={digest}"))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);

        // Read a little, so the server has chunks in flight, then cut the file.
        let r = client
            .get(format!("{base}/v2/team/app/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let mut body = r.bytes_stream();
        let mut received = 0;
        while received < 64 * 1024 {
            received += body.next().await.unwrap().unwrap().len();
        }
        let hex = digest.strip_prefix("sha256:").unwrap();
        let blob = root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&blob)
            .unwrap()
            .set_len(0)
            .unwrap();
        while let Some(Ok(chunk)) = body.next().await {
            received += chunk.len();
        }
        assert!(received < data.len(), "round {round}: not cut short");
        let fresh = crate::pki::https_client(&pki.ca_pem, &["registry.test"], wharf.addr);
        let alive = fresh.get(format!("{base}/v2/")).send().await;
        assert!(
            alive.is_ok_and(|r| r.status() == StatusCode::OK),
            "round {round}: the server died: {:?}",
            wharf.child.try_wait()
        );
    }
    wharf.terminate();
}

/// SIGHUP applies `[registry]` changes and refuses `[storage]` changes it cannot apply (a
/// running engine keeps its bucket and client), naming the keys, instead of reporting a
/// reload that silently kept the old values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_registry_limits_and_refuses_storage_changes_by_name() {
    use crate::support::{Backend, TestStore};

    let Some(store) = TestStore::fresh(Backend::S3) else {
        return;
    };
    let conf = tempfile::tempdir().unwrap();
    let log_path = conf.path().join("wharf.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let limit = |bytes: u32| {
        format!(
            "[registry]\nmax_manifest_bytes = {bytes}\n[[server]]\ndefault = true\nrate_limits = []\n\
             [[server.route]]\npath = \"/\"\nregistry = {{}}\n"
        )
    };
    let wharf = WharfProcess::spawn_logging(conf.path(), &store.config(&limit(8192)), log);
    // A connection keeps the configuration it was accepted under: a fresh one per request.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let base = format!("http://{}", wharf.addr);
    // An empty index padded to about 2 KiB: it refers to nothing, so only its size matters.
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[],"annotations":{{"pad":"{}"}}}}"#,
        crate::support::OCI_INDEX,
        "x".repeat(2000)
    );
    let put = || {
        http.put(format!("{base}/v2/team/app/manifests/v1"))
            .header("Content-Type", crate::support::OCI_INDEX)
            .body(manifest.clone())
            .send()
    };
    assert_eq!(put().await.unwrap().status(), StatusCode::CREATED);
    let hup = || {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &wharf.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };

    // A lower manifest limit applies to the running engine.
    std::fs::write(conf.path().join("wharf.toml"), store.config(&limit(1024))).unwrap();
    hup();
    let mut applied = false;
    for _ in 0..200 {
        if put().await.unwrap().status() == StatusCode::PAYLOAD_TOO_LARGE {
            applied = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        applied,
        "max_manifest_bytes was not applied by SIGHUP: {}",
        std::fs::read_to_string(&log_path).unwrap()
    );

    // Another bucket cannot be switched to under running uploads: the reload is refused,
    // with the key named, and nothing else in that file is applied either.
    let moved = store.config(&limit(8192)).replace(
        &format!("bucket = {:?}", store.bucket),
        "bucket = \"elsewhere\"",
    );
    std::fs::write(conf.path().join("wharf.toml"), moved).unwrap();
    hup();
    let mut said = String::new();
    for _ in 0..200 {
        said = std::fs::read_to_string(&log_path).unwrap();
        if said.contains("storage.s3.bucket") || said.matches("configuration reloaded").count() > 1
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        said.contains("storage.s3.bucket") && said.contains("restart"),
        "the refused reload names the key and says a restart is needed: {said}"
    );
    assert_eq!(
        put().await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "a refused reload changes nothing"
    );
}
