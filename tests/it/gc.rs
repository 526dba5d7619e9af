//! `wharf gc` on every backend: after one of two images that share a layer is deleted,
//! the dry run lists what would go and deletes nothing, the real run deletes it, and the
//! other image still pulls whole.

use std::path::Path;
use std::process::Command;

use reqwest::{Client, StatusCode};

use crate::support::{have, image_manifest, sha256, Backend, TestStore, WharfProcess};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

async fn push_blob(http: &Client, base: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}");
    let r = http.post(url).body(bytes.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    digest
}

/// Pushes config + `layers` and the manifest naming them under `tag`; returns its digest.
async fn push_image(http: &Client, base: &str, repo: &str, tag: &str, layers: &[&[u8]]) -> String {
    let config = format!("{{\"image\":\"{repo}:{tag}\"}}").into_bytes();
    let config_digest = push_blob(http, base, repo, &config).await;
    let mut named = Vec::new();
    for layer in layers {
        named.push((push_blob(http, base, repo, layer).await, layer.len()));
    }
    let refs: Vec<(&str, usize)> = named.iter().map(|(d, n)| (d.as_str(), *n)).collect();
    let body = serde_json::to_vec(&image_manifest(&config_digest, config.len(), &refs)).unwrap();
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    sha256(&body)
}

fn gc(config: &Path, dry_run: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(["gc", "--config"]).arg(config);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.env_remove("RUST_LOG").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "wharf gc failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn deleted_blobs(out: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| {
            l.split_once(" blob ")
                .map(|(_, rest)| rest.split(' ').next().unwrap_or("").to_owned())
        })
        .collect();
    v.sort();
    v
}

/// How long the test's blobs must wait before they count as old: a second, in a config
/// only a test would write (the default is a day).
const TEST_GRACE: &str = "[gc]\ngrace = \"1s\"\n";

/// Lets the grace period pass: object stores date objects to the second, so two.
async fn outlive_grace() {
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
}

crate::on_every_backend!(gc_deletes_what_a_deleted_image_left_and_the_other_image_still_pulls);

async fn gc_deletes_what_a_deleted_image_left_and_the_other_image_still_pulls(backend: Backend) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    let conf = tempfile::tempdir().unwrap();
    let toml = store.config(&format!("[registry]\ndelete = true\n{TEST_GRACE}"));
    let mut wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let (kept, gone, orphan) = push_then_delete_one(&format!("http://{}", wharf.addr)).await;
    let http = Client::new();
    wharf.terminate();
    let config = conf.path().join("wharf.toml");
    outlive_grace().await;

    // The deleted manifest, the blobs only it named (its config and own layer: their
    // layer links in team/old keep nothing, as in registry:2's collector), and the
    // orphan. The shared layer stays: team/app's manifest names it.
    let old_own = [sha256(b"old's own"), sha256(b"{\"image\":\"team/old:v1\"}")];
    let mut want = vec![gone.clone(), orphan.clone()];
    want.extend(old_own);
    want.sort();
    let dry = gc(&config, true);
    assert_eq!(deleted_blobs(&dry), want, "{dry}");
    let real = gc(&config, false);
    assert_eq!(
        deleted_blobs(&real),
        want,
        "the dry run deleted something, or the run differs: {real}"
    );
    assert_eq!(deleted_blobs(&gc(&config, true)), Vec::<String>::new());

    let wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let base = format!("http://{}", wharf.addr);
    assert_pulls(&http, &base, "team/app:v1", &kept).await;
    let r = http
        .head(format!("{base}/v2/team/tmp/blobs/{orphan}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Pushes two images sharing a base layer (team/app:v1 and team/old:v1), deletes team/old's
/// manifest, and leaves an orphan (a blob pushed into team/tmp, then deleted from it, as a
/// crashed client's upload or a blob deleted from its only repository leaves one).
/// Returns the kept manifest, the deleted one and the orphan.
async fn push_then_delete_one(base: &str) -> (String, String, String) {
    let http = Client::new();
    let shared = b"the shared base layer".to_vec();
    let kept = push_image(&http, base, "team/app", "v1", &[&shared, b"app's own"]).await;
    let gone = push_image(&http, base, "team/old", "v1", &[&shared, b"old's own"]).await;
    let r = http
        .delete(format!("{base}/v2/team/old/manifests/{gone}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let orphan = push_blob(
        &http,
        base,
        "team/tmp",
        b"uploaded, never named by a manifest",
    )
    .await;
    let r = http
        .delete(format!("{base}/v2/team/tmp/blobs/{orphan}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    (kept, gone, orphan)
}

/// registry:2's `garbage-collect --dry-run` on a filesystem root: its summary line
/// ("N blobs marked, M blobs and K manifests eligible for deletion").
fn registry2_dry_run(root: &Path, conf: &Path) -> String {
    let config = conf.join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
        root.display()
    );
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new("docker-registry")
        .args(["garbage-collect", "--dry-run"])
        .arg(&config)
        .output()
        .expect("run docker-registry garbage-collect");
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "garbage-collect failed: {all}{err}");
    all.lines()
        .find(|l| l.contains("eligible for deletion"))
        .unwrap_or_else(|| panic!("no summary from garbage-collect: {all}"))
        .to_owned()
}

/// After wharf's collection, registry:2's finds nothing more to delete: wharf is at least
/// as thorough (it was not, when layer links counted as references for ever).
#[tokio::test]
async fn after_wharfs_gc_registry2s_garbage_collect_finds_nothing_more() {
    if !have("docker-registry", "apt install docker-registry") {
        return;
    }
    let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n\
         [registry]\ndelete = true\n{TEST_GRACE}",
        root.path().display().to_string()
    );
    let mut wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let (kept, _, _) = push_then_delete_one(&format!("http://{}", wharf.addr)).await;
    wharf.terminate();
    outlive_grace().await;
    let before = registry2_dry_run(root.path(), conf.path());
    assert!(
        !before.contains(" 0 blobs and 0 manifests eligible"),
        "registry:2 should see garbage before wharf's run: {before}"
    );
    gc(&conf.path().join("wharf.toml"), false);
    let after = registry2_dry_run(root.path(), conf.path());
    assert!(
        after.contains(" 0 blobs and 0 manifests eligible"),
        "registry:2 finds more to delete after wharf's gc: {after}"
    );
    let wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let base = format!("http://{}", wharf.addr);
    assert_pulls(&Client::new(), &base, "team/app:v1", &kept).await;
}

/// `image` (`repo:tag`) has the manifest `digest`, and every blob it names downloads whole.
async fn assert_pulls(http: &Client, base: &str, image: &str, digest: &str) {
    let (repo, tag) = image.split_once(':').unwrap();
    let r = http
        .get(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{image}");
    let bytes = r.bytes().await.unwrap();
    assert_eq!(sha256(&bytes), digest, "{image}");
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for l in manifest["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    for d in blobs {
        let r = http
            .get(format!("{base}/v2/{repo}/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{image}: {d}");
        assert_eq!(
            sha256(&r.bytes().await.unwrap()),
            d,
            "{image}: {d} hashes wrong"
        );
    }
}
