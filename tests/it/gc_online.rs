//! The collector inside the server: a scheduled run (retention first, then the sweep)
//! frees what nothing references and shows in `GET /wharf/api/v1/gc`; `wharf gc` beside a
//! running server takes the GC lease instead of the root's lock (and is refused while
//! another holds it); a SIGHUP-style reload changing `[gc]` takes effect; touch records
//! do not pile up with the schedule off; and the status endpoint's permissions.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{bytes_of, sha256, TestServer};
use wharf::config::Config;
use wharf::server::Server;

/// A blob's data file in registry:2's layout under `root`.
pub fn blob_path(root: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    root.join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Waits (polling, at most `limit`) until `done` holds; panics with `what` otherwise.
pub async fn eventually(limit: Duration, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn gc_status(s: &TestServer) -> Value {
    let r = s.http.get(s.url("/wharf/api/v1/gc")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// Retention deletes v1 (keep_last = 1), the schedule's collection then deletes v1's layer
/// and, with `untagged = "delete"`, an untagged manifest pulled by digest a moment before
/// (the engine's cache must not serve it afterwards); v2 and the other image still pull.
#[tokio::test]
async fn a_scheduled_run_applies_retention_then_frees_what_nothing_references() {
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [registry]\ndelete = true\n[gc]\ninterval = \"1s\"\ngrace = \"1s\"\nuntagged = \"delete\"\n\
         [[retention]]\nrepos = \"team/*\"\nkeep_last = 1\n",
    )
    .await;
    let (_, _, old_layer) = s.push_image("team/app", "v1", &bytes_of(1000, 1)).await;
    let (v2, _, v2_layer) = s.push_image("team/app", "v2", &bytes_of(1001, 2)).await;
    let (keep, _, keep_layer) = s.push_image("other", "keep", &bytes_of(1002, 3)).await;
    // An untagged manifest: pushed by digest, read once so the engine caches it.
    let (config, layer) = (b"{\"untagged\":1}".to_vec(), bytes_of(1003, 4));
    let (cd, ld) = (
        s.push_blob("other", &config).await,
        s.push_blob("other", &layer).await,
    );
    let m = crate::support::image_manifest(&cd, config.len(), &[(&ld, layer.len())]);
    let untagged = sha256(&serde_json::to_vec(&m).unwrap());
    let r = s
        .put_manifest("other", &untagged, crate::support::OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let by_digest = s.url(&format!("/v2/other/manifests/{untagged}"));
    assert_eq!(
        s.http.get(&by_digest).send().await.unwrap().status(),
        StatusCode::OK
    );

    let status = gc_status(&s).await;
    assert_eq!(status["interval_seconds"], 1, "{status}");
    // Polled on disk: a HEAD would touch the blobs and keep them.
    let gone = [blob_path(&s.root, &old_layer), blob_path(&s.root, &ld)];
    eventually(
        Duration::from_secs(40),
        "v1's layer and the untagged image are swept",
        async || gone.iter().all(|p| !p.exists()),
    )
    .await;

    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "retention deleted v1");
    let r = s.http.get(&by_digest).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "swept, so not served from the cache"
    );
    for (repo, tag, manifest, layer) in [
        ("team/app", "v2", &v2, &v2_layer),
        ("other", "keep", &keep, &keep_layer),
    ] {
        let r = s
            .http
            .get(s.url(&format!("/v2/{repo}/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(&sha256(&r.bytes().await.unwrap()), manifest);
        let r = s
            .http
            .get(s.url(&format!("/v2/{repo}/blobs/{layer}")))
            .send()
            .await
            .unwrap();
        assert_eq!(&sha256(&r.bytes().await.unwrap()), layer);
    }
    let status = gc_status(&s).await;
    let last = &status["last_run"];
    assert_eq!(last["result"], "success", "{status}");
    assert!(last["started"].as_str().unwrap() <= last["ended"].as_str().unwrap());
    for key in [
        "objects_freed",
        "bytes_freed",
        "tags_deleted",
        "links_removed",
    ] {
        assert!(last[key].is_u64(), "{key} in {status}");
    }
    assert!(
        status["next_run"].is_string() || status["running_since"].is_string(),
        "{status}"
    );
    let admin = s.admin.expect("admin listener");
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| -> f64 {
        let line = metrics.lines().find(|l| l.starts_with(name));
        let line = line.unwrap_or_else(|| panic!("{name} not in:\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("wharf_gc_runs_total{result=\"success\"}") >= 1.0);
    let freed = (1000 + layer.len()) as f64; // v1's layer and the untagged image's

    assert!(value("wharf_gc_freed_bytes_total") >= freed, "{metrics}");
    assert!(value("wharf_gc_freed_objects_total") >= 2.0, "{metrics}");
    assert!(value("wharf_gc_last_success_timestamp_seconds") > 1.7e9);
    assert!(value("wharf_gc_duration_seconds") >= 0.0);
}

fn wharf_gc(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["gc", "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `wharf gc` on the root a server holds: it runs (taking the GC lease, not the root's
/// lock), and while another live collector holds the lease it is refused, naming it.
#[tokio::test]
async fn wharf_gc_beside_a_running_server_takes_the_lease() {
    let s = TestServer::start_with("[registry]\ndelete = true\n[gc]\ngrace = \"1s\"\n").await;
    let (gone, _, layer) = s.push_image("team/app", "old", &bytes_of(2000, 5)).await;
    let r = s
        .http
        .delete(s.url(&format!("/v2/team/app/manifests/{gone}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_secs(2)).await; // older than the grace period
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nroot = {:?}\n[gc]\ngrace = \"1s\"\n",
            s.root.display().to_string()
        ),
    )
    .unwrap();
    let out = wharf_gc(&config);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("deleted blob {layer}")), "{text}");
    assert!(!blob_path(&s.root, &layer).exists());
    let status = gc_status(&s).await;
    assert_eq!(status["lease"], Value::Null, "released: {status}");

    // A live collector of this host (this test process) holds the lease.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let holder = format!("{}/{}/other-collector", host.trim(), std::process::id());
    let until = std::time::SystemTime::now() + Duration::from_secs(60);
    let until = until
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let lease = s.root.join("wharf/records/gc/lease");
    std::fs::write(
        &lease,
        format!("{{\"holder\":{holder:?},\"expires_ms\":{until}}}"),
    )
    .unwrap();
    let status = gc_status(&s).await;
    assert_eq!(status["lease"]["holder"], holder.as_str(), "{status}");
    let out = wharf_gc(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("a collection is running already") && err.contains(&holder),
        "{err}"
    );
}

/// Writes a blob and its layer link into `root` as registry:2 would, before a server
/// starts (a blob the server wrote itself needs no touch for a while: its write time
/// protects it).
fn plant_blob(root: &Path, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let data = blob_path(root, &digest);
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, bytes).unwrap();
    let hex = digest.trim_start_matches("sha256:");
    let link = root
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_layers/sha256")
        .join(hex);
    std::fs::create_dir_all(&link).unwrap();
    std::fs::write(link.join("link"), &digest).unwrap();
    digest
}

fn touches_of(root: &Path, digest: &str) -> usize {
    let dir = root
        .join("wharf/records/gc/touches")
        .join(digest.replace(':', "-"));
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn server_config(root: &Path, gc: &str) -> Config {
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[registry]\ndelete = true\n{gc}\n[log]\naccess = \"off\"\n",
        root.display().to_string()
    );
    Config::from_toml(&toml, "test").unwrap()
}

/// A reload that changes `[gc]` takes effect: pushes touch blobs as often as the new grace
/// needs (the engine is rebuilt), and the new interval starts scheduled runs.
#[tokio::test]
async fn a_reload_changing_gc_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let digest = plant_blob(dir.path(), "team/app", &bytes_of(100, 9));
    let server = Server::bind(server_config(dir.path(), "[gc]\ngrace = \"1h\"\n"))
        .await
        .unwrap();
    let reloader = server.reloader();
    let addr = server.local_addrs()[0];
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let head = async || {
        let r = http
            .head(format!("{base}/v2/team/app/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    };
    head().await;
    head().await;
    assert_eq!(touches_of(dir.path(), &digest), 1, "once per quarter hour");
    let r = http
        .get(format!("{base}/wharf/api/v1/gc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let status: Value = r.json().await.unwrap();
    assert_eq!(
        status["interval_seconds"], 86400,
        "daily by default: {status}"
    );
    assert_eq!(status["last_run"], Value::Null, "{status}");

    let gc = "[gc]\ninterval = \"1s\"\ngrace = \"2s\"\n";
    reloader
        .reload(server_config(dir.path(), gc))
        .await
        .unwrap();
    // A connection keeps the engine it was accepted with: a new one sees the reload.
    let http = reqwest::Client::new();
    let r = http
        .head(format!("{base}/v2/team/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        touches_of(dir.path(), &digest),
        2,
        "the new grace's engine touches again"
    );
    let status_of = async || -> Value {
        http.get(format!("{base}/wharf/api/v1/gc"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    eventually(
        Duration::from_secs(20),
        "a scheduled run after the reload",
        async || status_of().await["last_run"]["result"] == "success",
    )
    .await;
    let _ = stop.send(());
}

/// With the schedule off, touch records older than the grace period are pruned by the
/// server (a `wharf gc` may run any time, so pushes keep writing them).
#[tokio::test]
async fn touch_records_are_pruned_with_the_schedule_off() {
    let dir = tempfile::tempdir().unwrap();
    let digest = plant_blob(dir.path(), "team/app", &bytes_of(100, 7));
    let gc = "[gc]\ninterval = \"off\"\ngrace = \"1s\"\n";
    let s = TestServer::start_on(dir.path(), gc).await;
    let r = s
        .http
        .head(s.url(&format!("/v2/team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(touches_of(&s.root, &digest), 1);
    eventually(
        Duration::from_secs(15),
        "the touch record is pruned",
        async || touches_of(&s.root, &digest) == 0,
    )
    .await;
}

fn users(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("users.htpasswd");
    let line = |user: &str| format!("{user}:{}\n", bcrypt::hash("pw", 4).unwrap());
    std::fs::write(&path, line("admin") + &line("teamlead") + &line("reader")).unwrap();
    path
}

/// The status is an operator's: it needs `delete` by the rule for every repository.
#[tokio::test]
async fn the_gc_status_needs_delete_on_every_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = TestServer::start_config(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n\
         [server.auth]\nrealm = \"wharf-test\"\nproviders = [{{ htpasswd = {:?} }}]\naccess = [\n\
         {{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\"] }},\n\
         {{ repos = \"*\", who = [\"admin\"], actions = [\"pull\", \"push\", \"delete\"] }},\n\
         {{ repos = \"team/*\", who = [\"teamlead\"], actions = [\"pull\", \"push\", \"delete\"] }},\n]\n",
        users(dir.path()).display().to_string()
    ))
    .await;
    let get = async |user: Option<&str>| {
        let r = s.http.get(s.url("/wharf/api/v1/gc"));
        let r = match user {
            Some(u) => r.basic_auth(u, Some("pw")),
            None => r,
        };
        r.send().await.unwrap().status()
    };
    assert_eq!(get(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("reader")).await, StatusCode::FORBIDDEN);
    assert_eq!(
        get(Some("teamlead")).await,
        StatusCode::FORBIDDEN,
        "delete on team/* only"
    );
    assert_eq!(get(Some("admin")).await, StatusCode::OK);

    let open = TestServer::start().await;
    let r = open
        .http
        .get(open.url("/wharf/api/v1/gc"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::METHOD_NOT_ALLOWED,
        "deletes off: nobody is an operator"
    );
}
