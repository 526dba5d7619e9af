//! `wharf gc` on a filesystem root: after one of two images that share a layer is deleted,
//! the dry run lists what would go and deletes nothing, the real run deletes it, and the
//! other image still pulls whole.

use std::path::Path;
use std::process::Command;

use reqwest::{Client, StatusCode};

use crate::support::{image_manifest, sha256, WharfProcess};

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

/// Ages every stored blob past the default grace period (a day), as time would.
fn age_blobs(root: &Path) {
    let status = Command::new("find")
        .arg(root.join("docker/registry/v2/blobs"))
        .args([
            "-name",
            "data",
            "-exec",
            "touch",
            "-d",
            "3 days ago",
            "{}",
            "+",
        ])
        .status()
        .unwrap();
    assert!(status.success());
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

#[tokio::test]
async fn gc_deletes_what_a_deleted_image_left_and_the_other_image_still_pulls() {
    let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n\
         [registry]\ndelete = true\n",
        root.path().display().to_string()
    );
    let mut wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let (http, base) = (Client::new(), format!("http://{}", wharf.addr));
    let shared = b"the shared base layer".to_vec();
    let kept = push_image(&http, &base, "team/app", "v1", &[&shared, b"app's own"]).await;
    let gone = push_image(&http, &base, "team/old", "v1", &[&shared, b"old's own"]).await;
    let r = http
        .delete(format!("{base}/v2/team/old/manifests/{gone}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    wharf.terminate();
    let orphan = sha256(b"uploaded, never named by a manifest");
    let config = conf.path().join("wharf.toml");
    // A blob stored but linked nowhere (as a crashed client's upload leaves one), planted
    // with the server stopped straight into registry:2's layout.
    let hex = orphan.trim_start_matches("sha256:");
    let dir = root.path().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}",
        &hex[..2]
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data"), b"uploaded, never named by a manifest").unwrap();
    age_blobs(root.path());

    // Layers stay while a repository links them (the safety rule in `gc`'s docs), so what
    // goes is the deleted manifest and the orphan.
    let mut want = vec![gone.clone(), orphan.clone()];
    want.sort();
    let dry = gc(&config, true);
    assert_eq!(deleted_blobs(&dry), want, "{dry}");
    assert!(dir.join("data").exists(), "the dry run deleted something");
    let real = gc(&config, false);
    assert_eq!(deleted_blobs(&real), want, "{real}");
    assert!(!dir.join("data").exists());
    assert_eq!(deleted_blobs(&gc(&config, true)), Vec::<String>::new());

    let wharf = WharfProcess::spawn_config(conf.path(), &toml);
    let base = format!("http://{}", wharf.addr);
    let r = http
        .get(format!("{base}/v2/team/app/manifests/v1"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.unwrap();
    assert_eq!(sha256(&bytes), kept);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for l in manifest["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    for d in blobs {
        let r = http
            .get(format!("{base}/v2/team/app/blobs/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{d}");
        assert_eq!(sha256(&r.bytes().await.unwrap()), d, "{d} hashes wrong");
    }
}
