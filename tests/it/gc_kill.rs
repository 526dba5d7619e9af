//! `wharf gc` (a real process, beside a serving node) killed with SIGKILL while it deletes:
//! a second collector started meanwhile is refused by the GC lease; after the kill every
//! tagged image still pulls with oci-client, byte for byte, and the next `wharf gc` takes
//! the dead holder's lease at once and frees the rest.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use reqwest::StatusCode;

use crate::gc_online::blob_path;
use crate::support::{bytes_of, sha256, TestServer};

/// Enough garbage that the sweep runs for a while (a debug build deletes a few thousand
/// blobs a second here), so the kill lands in the middle of it.
const GARBAGE: usize = 5_000;

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

/// Blobs no repository links, written as registry:2 would; returns their data files.
fn plant_garbage(root: &Path, count: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|i| {
            let bytes = format!("garbage blob {i}").into_bytes();
            let path = blob_path(root, &sha256(&bytes));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

fn remaining(paths: &[PathBuf]) -> usize {
    paths.iter().filter(|p| p.exists()).count()
}

fn wharf_gc(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wharf"));
    c.args(["gc", "--config"])
        .arg(config)
        .env_remove("RUST_LOG");
    c
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Pulls `repo_tag` and checks each layer is one of `layers` (by digest of what came).
async fn assert_pulls(s: &TestServer, repo_tag: &str, layers: &[Vec<u8>]) {
    let image: Reference = format!("{}/{repo_tag}", s.addr).parse().unwrap();
    let pulled = client()
        .pull(&image, &RegistryAuth::Anonymous, vec![LAYER])
        .await
        .unwrap_or_else(|e| panic!("pull {repo_tag}: {e}"));
    let mut got: Vec<String> = pulled.layers.iter().map(|l| sha256(&l.data)).collect();
    let mut want: Vec<String> = layers.iter().map(|l| sha256(l)).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{repo_tag}'s layers");
}

async fn push(s: &TestServer, repo_tag: &str, layers: &[Vec<u8>]) {
    let image: Reference = format!("{}/{repo_tag}", s.addr).parse().unwrap();
    let layers: Vec<_> = layers
        .iter()
        .map(|l| ImageLayer::new(l.clone(), LAYER.into(), None))
        .collect();
    let config = Config::oci_v1(
        format!(r#"{{"os":"linux","tag":"{repo_tag}"}}"#).into(),
        None,
    );
    client()
        .push(&image, &layers, config, &RegistryAuth::Anonymous, None)
        .await
        .unwrap_or_else(|e| panic!("push {repo_tag}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_killed_mid_sweep_loses_nothing_and_the_next_one_finishes() {
    let s = TestServer::start_with("[registry]\ndelete = true\n[gc]\ngrace = \"1s\"\n").await;
    let base = bytes_of(200_000, 11);
    let images = [
        ("team/a:v1", vec![base.clone(), bytes_of(50_000, 12)]),
        ("team/b:v1", vec![base.clone(), bytes_of(60_000, 13)]),
        ("team/a:v2", vec![base.clone(), bytes_of(70_000, 14)]),
    ];
    for (repo_tag, layers) in &images {
        push(&s, repo_tag, layers).await;
    }
    // An image deleted by digest: its own layer becomes garbage, the base stays.
    let doomed_layer = bytes_of(80_000, 15);
    push(&s, "team/c:old", &[base.clone(), doomed_layer.clone()]).await;
    let r = s
        .http
        .head(s.url("/v2/team/c/manifests/old"))
        .header("Accept", crate::support::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    let digest = r.headers()["docker-content-digest"].to_str().unwrap();
    let r = s
        .http
        .delete(s.url(&format!("/v2/team/c/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let doomed = blob_path(&s.root, &sha256(&doomed_layer));
    let garbage = plant_garbage(&s.root, GARBAGE);
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the grace period

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    let toml = format!(
        "[storage]\nroot = {:?}\n[gc]\ngrace = \"1s\"\n",
        s.root.display().to_string()
    );
    std::fs::write(&config, toml).unwrap();

    let mut first = wharf_gc(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let sample: Vec<PathBuf> = garbage.iter().step_by(97).cloned().collect();
    while remaining(&sample) == sample.len() {
        assert!(first.try_wait().unwrap().is_none(), "first gc ended early");
        assert!(started.elapsed() < Duration::from_secs(120), "no deletion");
        std::thread::sleep(Duration::from_millis(5));
    }
    let deleting_after = started.elapsed();

    // The first collector is deleting: a second one is refused, naming it.
    let second = wharf_gc(&config).output().unwrap();
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first gc finished before the second looked: plant more garbage"
    );
    let pid = format!("/{}/", first.id());
    assert!(!second.status.success(), "{}", text(&second));
    let refused = text(&second);
    assert!(
        refused.contains("a collection is running already") && refused.contains(&pid),
        "{refused}"
    );

    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let left = remaining(&garbage);
    eprintln!(
        "deleting after {deleting_after:?}, killed after {:?} with {left} of {GARBAGE} garbage blobs left",
        started.elapsed()
    );
    assert!(left > 0 && left < GARBAGE, "killed mid-sweep: {left} left");
    let lease = std::fs::read_to_string(s.root.join("wharf/records/gc/lease")).unwrap();
    assert!(
        lease.contains(&pid),
        "the dead holder's lease stays: {lease}"
    );

    for (repo_tag, layers) in &images {
        assert_pulls(&s, repo_tag, layers).await;
    }

    // The next run takes the dead holder's lease at once and finishes the job.
    let next = wharf_gc(&config).output().unwrap();
    assert!(next.status.success(), "{}", text(&next));
    assert_eq!(remaining(&garbage), 0, "{}", text(&next));
    assert!(!doomed.exists(), "the deleted image's own layer is freed");
    assert!(blob_path(&s.root, &sha256(&base)).exists());
    for (repo_tag, layers) in &images {
        assert_pulls(&s, repo_tag, layers).await;
    }
}
