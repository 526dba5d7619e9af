//! Garbage collection under load (issue 16): pushers push images that share base layers,
//! retag and delete in a loop, while collections run one after another with a short grace
//! period beside the serving nodes. Afterwards no push ever failed (no
//! `MANIFEST_BLOB_UNKNOWN`, nothing else), every tagged image pulls with podman and every
//! blob it names hashes right, what the retags and deletes left is freed, and a last dry
//! run finds nothing more. On the filesystem, on S3 (moto), and with two nodes on one
//! bucket (pushes to both).
//!
//! The collector runs in the test process through `wharf::gc::collect`, on the store the
//! nodes serve from (on the filesystem the root's lock is shared within a process), as the
//! server's own schedule runs it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use wharf::config::{Config, GcConfig};
use wharf::gc::Pace;
use wharf::registry::storage::Storage;

use crate::clients::run;
use crate::support::{
    bytes_of, have_program, podman, sha256, Backend, TestServer, TestStore, OCI_CONFIG, OCI_LAYER,
    OCI_MANIFEST,
};

/// Short enough that manifests retagged away early in the load are collected during it;
/// long enough for a push on a busy machine (one covers three quarters of it, see `gc`).
const GRACE_SECS: u64 = 4;
const LOAD: Duration = Duration::from_secs(12);
const PUSHERS: usize = 3;
const TAGS: usize = 3;
const BASES: usize = 3;

/// One image's blobs: a base layer shared with other images, a layer of its own, a config.
struct Image {
    base: usize,
    own: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl Image {
    fn new(pusher: usize, i: usize) -> Self {
        let base = (pusher + i) % BASES;
        let own = tar_of(
            &format!("p{pusher}-{i}.bin"),
            &bytes_of(4096 + i, (pusher * 31 + i) as u8),
        );
        let diff_ids = [sha256(&base_layer(base)), sha256(&own)];
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": {"Labels": {"push": format!("{pusher}-{i}")}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let layer =
            |d: &str, n: usize| serde_json::json!({"mediaType": OCI_LAYER, "digest": d, "size": n});
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
            "layers": [layer(&diff_ids[0], base_layer(base).len()), layer(&diff_ids[1], own.len())],
        }))
        .unwrap();
        Self {
            base,
            own,
            config,
            manifest,
        }
    }
}

fn base_layer(n: usize) -> Vec<u8> {
    tar_of(
        &format!("base-{n}.bin"),
        &bytes_of(32 * 1024, 200 + n as u8),
    )
}

/// A tar (ustar) of one regular file, as podman unpacks it.
fn tar_of(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let fields: [(usize, String); 5] = [
        (100, "0000644".into()),
        (108, "0000000".into()),
        (116, "0000000".into()),
        (124, format!("{:011o}", content.len())),
        (136, "00000000000".into()),
    ];
    for (at, v) in fields {
        h[at..at + v.len()].copy_from_slice(v.as_bytes());
    }
    h[148..156].copy_from_slice(b"        ");
    h[156] = b'0';
    h[257..265].copy_from_slice(b"ustar\x0000");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// What the pushers leave: per repository, tag -> manifest digest; the own layers of
/// manifests no tag holds any more (retagged away or deleted), which must be freed; and
/// every request that did not answer as it should.
#[derive(Default)]
struct Pushed {
    tags: BTreeMap<String, BTreeMap<String, String>>,
    dropped: Vec<(String, String)>,
    failures: Vec<String>,
    images: usize,
    deletes: usize,
}

fn repo(pusher: usize) -> String {
    format!("load/p{pusher}")
}

/// The request's status, or a failure line naming it and the body.
async fn expect(
    what: &str,
    r: reqwest::Result<reqwest::Response>,
    ok: &[StatusCode],
) -> Result<reqwest::Response, String> {
    let r = r.map_err(|e| format!("{what}: {e}"))?;
    if ok.contains(&r.status()) {
        return Ok(r);
    }
    let status = r.status();
    Err(format!(
        "{what}: {status} {}",
        r.text().await.unwrap_or_default()
    ))
}

/// Uploads a blob in one POST.
async fn upload(http: &Client, base: &str, repo: &str, bytes: &[u8]) -> Result<(), String> {
    let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={}", sha256(bytes));
    let r = http.post(url).body(bytes.to_vec()).send().await;
    expect(&format!("upload to {repo}"), r, &[StatusCode::CREATED]).await?;
    Ok(())
}

/// Gets the base layer into `repo` as clients do, in turn: a HEAD and an upload only when
/// it is missing; a cross-repository mount (an upload when the source lacks it); an upload.
async fn put_base(http: &Client, base: &str, repo: &str, i: usize, n: usize) -> Result<(), String> {
    let bytes = base_layer(n);
    let digest = sha256(&bytes);
    match i % 3 {
        0 => {
            let r = http
                .head(format!("{base}/v2/{repo}/blobs/{digest}"))
                .send()
                .await;
            let r = expect("HEAD base", r, &[StatusCode::OK, StatusCode::NOT_FOUND]).await?;
            if r.status() == StatusCode::OK {
                return Ok(());
            }
        }
        1 => {
            let from = repo_of_other(repo);
            let url = format!("{base}/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
            let r = http.post(url).send().await;
            let ok = [StatusCode::CREATED, StatusCode::ACCEPTED];
            let r = expect("mount base", r, &ok).await?;
            if r.status() == StatusCode::CREATED {
                return Ok(());
            }
            let loc = r.headers().get("location").and_then(|l| l.to_str().ok());
            let loc = loc.ok_or("mount answered 202 without a Location")?;
            let sep = if loc.contains('?') { '&' } else { '?' };
            let url = format!("{base}{loc}{sep}digest={digest}");
            let r = http.put(url).body(bytes).send().await;
            expect("upload after a refused mount", r, &[StatusCode::CREATED]).await?;
            return Ok(());
        }
        _ => {}
    }
    upload(http, base, repo, &bytes).await
}

fn repo_of_other(repo: &str) -> String {
    let n: usize = repo.trim_start_matches("load/p").parse().unwrap_or(0);
    self::repo((n + 1) % PUSHERS)
}

/// One push: blobs to `nodes[up]`, the manifest to `nodes[put]` under `tag`; its digest.
async fn push(
    http: &Client,
    nodes: &[String],
    (up, put): (usize, usize),
    repo: &str,
    tag: &str,
    img: &Image,
    i: usize,
) -> Result<String, String> {
    put_base(http, &nodes[up], repo, i, img.base).await?;
    upload(http, &nodes[up], repo, &img.own).await?;
    upload(http, &nodes[up], repo, &img.config).await?;
    let r = http
        .put(format!("{}/v2/{repo}/manifests/{tag}", nodes[put]))
        .header("Content-Type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .await;
    expect(
        &format!("PUT manifest {repo}:{tag}"),
        r,
        &[StatusCode::CREATED],
    )
    .await?;
    Ok(sha256(&img.manifest))
}

/// Pushes, retags (each push moves one of `TAGS` tags) and deletes (every fifth image right
/// after its push) until `until`.
async fn pusher(k: usize, nodes: Vec<String>, until: Instant) -> Pushed {
    let (http, repo) = (Client::new(), repo(k));
    let mut out = Pushed::default();
    // tag -> (manifest, its own layer)
    let mut held: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut i = 0;
    while Instant::now() < until {
        let img = Image::new(k, i);
        let tag = format!("t{}", i % TAGS);
        let route = (i % nodes.len(), (i + k) % nodes.len());
        i += 1;
        let digest = match push(&http, &nodes, route, &repo, &tag, &img, i - 1).await {
            Ok(digest) => digest,
            Err(e) => {
                out.failures.push(e);
                continue;
            }
        };
        out.images += 1;
        let own = sha256(&img.own);
        if let Some((_, before)) = held.insert(tag.clone(), (digest.clone(), own.clone())) {
            out.dropped.push((repo.clone(), before));
        }
        if i % 5 == 0 {
            let url = format!("{}/v2/{repo}/manifests/{digest}", nodes[route.1]);
            let r = http.delete(url).send().await;
            match expect("DELETE manifest", r, &[StatusCode::ACCEPTED]).await {
                Ok(_) => {
                    out.deletes += 1;
                    held.remove(&tag);
                    out.dropped.push((repo.clone(), own));
                }
                Err(e) => out.failures.push(e),
            }
        }
    }
    let tags = held.into_iter().map(|(t, (d, _))| (t, d)).collect();
    out.tags.insert(repo, tags);
    out
}

/// The store the nodes serve from, opened in this process, and the config's `[gc]`.
async fn open_store(toml: &str) -> (Arc<dyn Storage>, GcConfig) {
    let config = Config::from_toml(toml, "test").expect("test config is valid");
    let root = config
        .servers
        .iter()
        .flat_map(|s| &s.routes)
        .find_map(|r| r.target.root())
        .expect("a storage root")
        .to_owned();
    let storage = wharf::server::open_storage(&config.storage.backend, &root)
        .await
        .expect("open the store");
    (storage, config.gc)
}

/// Full collections one after another until `stop`: (runs, blobs freed, bytes freed).
async fn collector(
    storage: Arc<dyn Storage>,
    gc: GcConfig,
    stop: Arc<AtomicBool>,
) -> Result<(usize, usize, u64), String> {
    let (mut runs, mut blobs, mut bytes) = (0, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        let swept = wharf::gc::collect(&*storage, &gc, false, Pace::BesideServers)
            .await
            .map_err(|e| format!("collection {runs}: {e}"))?;
        runs += 1;
        blobs += swept.blobs.len();
        bytes += swept.bytes;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok((runs, blobs, bytes))
}

async fn gc_under_load(backend: Backend, node_count: usize) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    // The schedule is off: the only collector is this test's, running without pause. The
    // pushers all come from 127.0.0.1, and on an idle machine they push more than the
    // default 30 manifests/s per address: limits out of the way, this tests the collector.
    let extra = format!(
        "[registry]\ndelete = true\n[gc]\ngrace = \"{GRACE_SECS}s\"\nuntagged = \"delete\"\ninterval = \"off\"\n\
         [rate_limit.manifests_per_ip]\nrate = \"10000/s\"\nburst = 100000\n\
         [rate_limit.blobs_per_ip]\nrate = \"10000/s\"\nburst = 100000\n"
    );
    let mut nodes = Vec::new();
    for _ in 0..node_count {
        nodes.push(TestServer::start_on_store(&store, &extra).await);
    }
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let (storage, gc) = open_store(&store.config(&extra)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + LOAD;
    let pushers: Vec<_> = (0..PUSHERS)
        .map(|k| tokio::spawn(pusher(k, bases.clone(), until)))
        .collect();
    let load = async {
        let mut pushed = Pushed::default();
        for p in pushers {
            let p = p.await.expect("pusher");
            pushed.tags.extend(p.tags);
            pushed.dropped.extend(p.dropped);
            pushed.failures.extend(p.failures);
            (pushed.images, pushed.deletes) =
                (pushed.images + p.images, pushed.deletes + p.deletes);
        }
        stop.store(true, Ordering::Relaxed);
        pushed
    };
    // (On this task: the collection's future is not `Send`, so it cannot be spawned.)
    let (collected, pushed) =
        tokio::join!(collector(storage.clone(), gc.clone(), stop.clone()), load);
    let (runs, freed, bytes) = collected.unwrap();
    assert!(
        pushed.failures.is_empty(),
        "{} requests failed while collections ran, first: {:#?}",
        pushed.failures.len(),
        &pushed.failures[..pushed.failures.len().min(5)]
    );
    eprintln!(
        "{backend:?} x{node_count}: {} images pushed, {} deleted; {runs} collections during the load freed {freed} blobs, {bytes} bytes",
        pushed.images, pushed.deletes
    );
    assert!(
        runs >= 3 && freed > 0,
        "the collections must overlap the load and free some of it"
    );

    // Once the grace period is over, one more run frees the rest, and nothing is left after it.
    tokio::time::sleep(Duration::from_secs(GRACE_SECS + 2)).await;
    let last = wharf::gc::collect(&*storage, &gc, false, Pace::BesideServers)
        .await
        .unwrap();
    let more = wharf::gc::collect(&*storage, &gc, true, Pace::BesideServers)
        .await
        .unwrap();
    assert!(
        more.blobs.is_empty() && more.manifests_unlinked.is_empty(),
        "a dry run after the last collection still finds {} blobs, {:?}",
        more.blobs.len(),
        more.manifests_unlinked,
    );
    assert!(freed + last.blobs.len() >= pushed.dropped.len());
    for node in &nodes {
        check_dropped_gone(node, &pushed).await;
        check_tags(node, &pushed).await;
    }
    pull_with_podman(nodes.last().expect("a node"), &pushed).await;
}

/// The own layer of every image no tag holds any more is gone, and this node says so.
async fn check_dropped_gone(node: &TestServer, pushed: &Pushed) {
    for (repo, digest) in &pushed.dropped {
        let url = node.url(&format!("/v2/{repo}/blobs/{digest}"));
        let r = node.http.head(url).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{repo}@{digest} survived"
        );
    }
}

/// Every repository lists exactly the tags the pushers left, and each tag's manifest and
/// every blob it names come back whole.
async fn check_tags(node: &TestServer, pushed: &Pushed) {
    for (repo, tags) in &pushed.tags {
        let r = node
            .http
            .get(node.url(&format!("/v2/{repo}/tags/list")))
            .send()
            .await
            .unwrap();
        let listed: BTreeSet<String> = match r.status() {
            StatusCode::NOT_FOUND => BTreeSet::new(),
            _ => {
                let v: serde_json::Value = r.json().await.unwrap();
                serde_json::from_value(v["tags"].clone()).unwrap_or_default()
            }
        };
        assert_eq!(listed, tags.keys().cloned().collect(), "tags of {repo}");
        for (tag, digest) in tags {
            let r = node
                .http
                .get(node.url(&format!("/v2/{repo}/manifests/{tag}")))
                .header("Accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag}");
            let body = r.bytes().await.unwrap();
            assert_eq!(&sha256(&body), digest, "{repo}:{tag}");
            let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let layers = m["layers"].as_array().unwrap().iter();
            for d in layers
                .chain([&m["config"]])
                .map(|d| d["digest"].as_str().unwrap())
            {
                let r = node
                    .http
                    .get(node.url(&format!("/v2/{repo}/blobs/{d}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag} blob {d}");
                assert_eq!(
                    sha256(&r.bytes().await.unwrap()),
                    d,
                    "{repo}:{tag} blob {d}"
                );
            }
        }
    }
}

/// podman pulls every tag of every repository (checking each blob's digest and each
/// layer's diff ID as it unpacks) and gets the manifests the pushers left.
async fn pull_with_podman(node: &TestServer, pushed: &Pushed) {
    if !have_program("podman", "podman") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (addr, dir) = (node.addr, work.path().to_path_buf());
    let tags = pushed.tags.clone();
    tokio::task::spawn_blocking(move || {
        for (repo, tags) in &tags {
            for (tag, digest) in tags {
                // (Tag by tag: podman 4.3's --all-tags lists the tags over HTTPS whatever
                // --tls-verify says.)
                let image = format!("{addr}/{repo}:{tag}");
                run(podman(&dir).args(["pull", "-q", "--tls-verify=false", &image]));
                let out =
                    run(podman(&dir).args(["image", "inspect", "--format", "{{.Digest}}", &image]));
                assert_eq!(
                    String::from_utf8_lossy(&out.stdout).trim(),
                    digest,
                    "{image}"
                );
            }
        }
    })
    .await
    .expect("podman pulls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_retags_and_deletes_while_gc_runs_on_fs() {
    gc_under_load(Backend::Fs, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_retags_and_deletes_while_gc_runs_on_s3() {
    gc_under_load(Backend::S3, 1).await
}

/// Two nodes on one bucket: blobs go to one node and the manifest often to the other, and
/// the collector runs beside both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_to_two_nodes_on_one_bucket_while_gc_runs() {
    gc_under_load(Backend::S3, 2).await
}

/// A blob another node's collection deleted is unknown on a node that remembers its size:
/// the repository's layer link stays (only manifests keep blobs), so the HEAD's touch is
/// followed by a look in the bucket itself, not in the node's size cache.
#[tokio::test]
async fn a_blob_another_node_collected_is_unknown_where_its_size_was_cached() {
    let Some(store) = TestStore::fresh(Backend::S3) else {
        return;
    };
    let extra = "[registry]\ndelete = true\n[gc]\ngrace = \"2s\"\ninterval = \"off\"\n";
    let a = TestServer::start_on_store(&store, extra).await;
    let b = TestServer::start_on_store(&store, extra).await;
    let bytes = b"an upload whose manifest never came";
    upload(&a.http, &a.base, "team/app", bytes).await.unwrap();
    let url = b.url(&format!("/v2/team/app/blobs/{}", sha256(bytes)));
    let head = |url: String| async { b.http.head(url).send().await.unwrap().status() };
    assert_eq!(head(url.clone()).await, StatusCode::OK, "b learns its size");
    // Past the grace period, and past b's touch period (a quarter grace, at least 1 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (storage, gc) = open_store(&store.config(extra)).await;
    let swept = wharf::gc::collect(&*storage, &gc, false, Pace::BesideServers)
        .await
        .unwrap();
    assert_eq!(swept.blobs.len(), 1, "{swept:?}");
    assert_eq!(head(url).await, StatusCode::NOT_FOUND);
    let on_a = a.url(&format!("/v2/team/app/blobs/{}", sha256(bytes)));
    assert_eq!(head(on_a).await, StatusCode::NOT_FOUND);
}
