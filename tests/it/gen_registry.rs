//! The GC benchmark's generator (`examples/gen_registry`, run by `scripts/bench --gc-only`)
//! on a small instance, so it cannot rot: the same seed writes the same registry; wharf and
//! registry:2 both serve every image it wrote, whole; both collectors find exactly the
//! garbage it says it wrote; and after wharf's collection registry:2 finds nothing more.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::generate_registry::{generate, Blob, Spec, Summary};
use crate::support::{have_program, sha256, WharfProcess};
use crate::upstream_registry::{Login, UpstreamRegistry};

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json";

fn small(seed: u64) -> Spec {
    Spec {
        repos: 20,
        blobs: 200,
        seed,
        age: Duration::from_secs(7 * 86_400),
    }
}

#[test]
fn the_same_seed_writes_the_same_registry_and_another_seed_another() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = generate(dirs[0].path(), &small(7)).unwrap();
    let b = generate(dirs[1].path(), &small(7)).unwrap();
    let c = generate(dirs[2].path(), &small(8)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.live, c.live);
    assert_eq!((a.live.len(), a.garbage.len()), (100, 100));
    assert_eq!(a.repos.len(), 20);
    // A second run into the same root is refused rather than mixed in.
    assert!(generate(dirs[0].path(), &small(7)).is_err());
}

/// Every tag and kept untagged manifest of `s` is served with its digest, and every blob
/// it names downloads whole; the catalog lists every repository.
async fn assert_serves_everything(base: &str, s: &Summary) {
    let http = Client::new();
    let r = http
        .get(format!("{base}/v2/_catalog?n=1000"))
        .send()
        .await
        .unwrap();
    let catalog: Value = r.json().await.unwrap();
    let mut want = s.repos.clone();
    want.sort();
    assert_eq!(catalog["repositories"], serde_json::json!(want), "{base}");
    let tagged = s.tags.iter().map(|(r, t, d)| (r, t.as_str(), d));
    let untagged = s.untagged.iter().map(|(r, d)| (r, d.as_str(), d));
    for (repo, reference, digest) in tagged.chain(untagged) {
        let r = http
            .get(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header("Accept", ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{base}: {repo}:{reference}");
        let bytes = r.bytes().await.unwrap();
        assert_eq!(&sha256(&bytes), digest, "{base}: {repo}:{reference}");
        let m: Value = serde_json::from_slice(&bytes).unwrap();
        let layers = m["layers"].as_array().unwrap().iter();
        for d in std::iter::once(&m["config"]).chain(layers) {
            let d = d["digest"].as_str().unwrap();
            let r = http
                .get(format!("{base}/v2/{repo}/blobs/{d}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{base}: {repo} {d}");
            assert_eq!(sha256(&r.bytes().await.unwrap()), d, "{base}: {repo} {d}");
        }
    }
}

/// `wharf gc`: the blobs it deleted (or would) and its total of bytes.
fn wharf_gc(config: &Path, dry_run: bool) -> (Vec<String>, u64) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(["gc", "--config"]).arg(config);
    if dry_run {
        cmd.arg("--dry-run");
    }
    let out = cmd.env_remove("RUST_LOG").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wharf gc: {stdout}{out:?}");
    // "deleted N blobs, B bytes; ..."
    let bytes = stdout
        .lines()
        .find_map(|l| {
            l.split_once(" blobs, ")?
                .1
                .split_once(" bytes")?
                .0
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no total in {stdout}"));
    (digests_after(&stdout, " blob "), bytes)
}

/// registry:2's `garbage-collect --dry-run`: the blobs it would delete.
fn registry2_dry_run(config: &Path) -> Vec<String> {
    let out = Command::new("docker-registry")
        .args(["garbage-collect", "--dry-run"])
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "garbage-collect: {stdout}{out:?}");
    digests_after(&stdout, "blob eligible for deletion: ")
}

/// The digest after `marker` on each line that has it, sorted.
fn digests_after(out: &str, marker: &str) -> Vec<String> {
    let mut v: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once(marker))
        .filter_map(|(_, rest)| rest.split(' ').next().map(str::to_owned))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn wharf_and_registry2_serve_it_and_agree_on_its_garbage() {
    if !have_program("docker-registry", "docker-registry") {
        return;
    }
    let (root, conf, r2) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let s = generate(root.path(), &small(3)).unwrap();
    let garbage: Vec<String> = s.garbage.iter().map(|b: &Blob| b.digest.clone()).collect();

    let mut wharf = WharfProcess::spawn(root.path(), conf.path());
    assert_serves_everything(&format!("http://{}", wharf.addr), &s).await;
    wharf.terminate();
    let storage = format!(
        "  filesystem:\n    rootdirectory: {}\n",
        root.path().display()
    );
    let mut registry2 =
        UpstreamRegistry::start_on(r2.path(), None, Login::Anonymous, &storage).await;
    assert_serves_everything(&registry2.url, &s).await;
    registry2.stop();

    let r2_config = r2.path().join("config.yml");
    assert_eq!(registry2_dry_run(&r2_config), garbage);
    let wharf_toml = conf.path().join("wharf.toml");
    let freed = (garbage.clone(), Summary::bytes(&s.garbage));
    assert_eq!(wharf_gc(&wharf_toml, true), freed);
    assert_eq!(wharf_gc(&wharf_toml, false), freed);
    assert_eq!(registry2_dry_run(&r2_config), Vec::<String>::new());
    let wharf = WharfProcess::spawn(root.path(), conf.path());
    assert_serves_everything(&format!("http://{}", wharf.addr), &s).await;
}
