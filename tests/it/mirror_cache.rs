//! The pull-through cache's loose ends, against a real Distribution 2.8.2 upstream: what a
//! client's manifest HEAD costs upstream, and the cache policy (eviction, then GC) with
//! podman.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;

use crate::clients::{import_image, run};
use crate::mirror::{mirror_of, push_image, ACCEPT};
use crate::support::{have_program, podman, WharfProcess};
use crate::upstream_registry::{Login, UpstreamRegistry};

/// containerd (and so docker) resolves a tag with a HEAD before it pulls by digest. Docker
/// Hub counts a manifest GET as a pull and a HEAD not: a HEAD the cache cannot answer is
/// answered with an upstream HEAD, and nothing is fetched.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_head_on_a_miss_is_an_upstream_head_not_a_get() {
    if !have_program("docker-registry", "docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = UpstreamRegistry::start(dir.path(), None, Login::Anonymous).await;
    let (digest, _) = push_image(&upstream.url, "team/app", "1", b"a layer").await;
    let wharf = mirror_of(&upstream.url, "up.example").await;
    let head = |reference: &str| {
        wharf
            .http
            .head(wharf.url(&format!("/v2/team/app/manifests/{reference}")))
            .header("Accept", ACCEPT)
            .send()
    };
    let gets = || upstream.requests("GET /v2/team/app/manifests/");
    let heads = || upstream.requests("HEAD /v2/team/app/manifests/");

    for reference in ["1", digest.as_str()] {
        let r = head(reference).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{reference}");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert!(r.headers().contains_key("content-type"), "{reference}");
    }
    assert_eq!(
        gets(),
        0,
        "a HEAD was a GET upstream:\n{}",
        upstream.log_text()
    );
    assert_eq!(heads(), 2, "{}", upstream.log_text());
    // Nothing was stored: the cache's repository has no tags yet.
    let tags = wharf
        .http
        .get(wharf.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    let tags = tags.text().await.unwrap();
    assert!(!tags.contains("\"1\""), "{tags}");
    let missing = head("404").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The pull (GET by digest, as containerd does next) fetches once; the tag's next HEAD
    // finds that digest cached and keeps the tag, so the upstream can go away.
    let r = wharf
        .http
        .get(wharf.url(&format!("/v2/team/app/manifests/{digest}")))
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(gets(), 1, "{}", upstream.log_text());
    assert_eq!(head("1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(head(&digest).await.unwrap().status(), StatusCode::OK);
    assert_eq!(gets(), 1, "{}", upstream.log_text());
    assert_eq!(heads(), 4, "the digest HEAD was answered by the cache");
    let tags = wharf
        .http
        .get(wharf.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    let tags = tags.text().await.unwrap();
    assert!(tags.contains("\"1\""), "the tag was not kept: {tags}");
}

/// podman pulls two images through the mirror and pushes one of them to a local
/// repository on the same root; the cache's size cap then evicts both cached images
/// (`wharf gc --dry-run` says so, then `wharf gc` does it), the collection frees the blobs
/// only the evicted images named and keeps those the local image shares, the local image
/// still pulls, and a pull through the mirror fetches from the upstream again.
#[tokio::test(flavor = "multi_thread")]
async fn podman_pull_eviction_gc_then_the_local_image_pulls_and_the_mirror_fetches_again() {
    if !(have_program("docker-registry", "docker-registry") && have_program("podman", "podman")) {
        return;
    }
    let (up_dir, conf, work, root) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let upstream = UpstreamRegistry::start(up_dir.path(), None, Login::Anonymous).await;
    let plain = "--tls-verify=false";
    for (name, content) in [
        ("app", "shared with a local image"),
        ("other", "only cached"),
    ] {
        import_image(work.path(), &format!("localhost/src/{name}:1"), content);
        let to = format!("{}/team/{name}:1", upstream.addr);
        run(podman(work.path()).args(["push", plain, &format!("localhost/src/{name}:1"), &to]));
    }
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[gc]\ngrace = \"1ms\"\n\
         [[server]]\ndefault = true\n\
         [[server.route]]\npath = \"/v2/hub/\"\nmirror = {:?}\nns = \"up.example\"\ncache_max_size = \"1\"\n\
         [[server.route]]\npath = \"/\"\nregistry = {{}}\n",
        root.path().display().to_string(),
        upstream.url
    );
    let mut wharf = WharfProcess::spawn_async(conf.path(), &toml).await;
    let hub = |name: &str, addr| format!("{addr}/hub/team/{name}:1");
    run(podman(work.path()).args(["rmi", "-a", "-f"]));
    for name in ["app", "other"] {
        run(podman(work.path()).args(["pull", "-q", plain, &hub(name, wharf.addr)]));
    }
    let local = format!("{}/team/local:1", wharf.addr);
    run(podman(work.path()).args(["push", plain, &hub("app", wharf.addr), &local]));
    let app_blob_gets = upstream.requests("GET /v2/team/app/blobs/");
    assert_eq!(
        app_blob_gets,
        2,
        "config and layer once: {}",
        upstream.log_text()
    );
    wharf.terminate();

    // The CLI plans the eviction (the filesystem root is locked while wharf runs).
    let out = run(Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["gc", "--dry-run", "--config"])
        .arg(conf.path().join("wharf.toml"))
        .env_remove("RUST_LOG"));
    let said = String::from_utf8_lossy(&out.stdout);
    for name in ["app", "other"] {
        let line = format!("would evict cached image up.example/team/{name}@");
        assert!(said.contains(&line), "{said}");
    }
    assert!(!said.contains("team/local"), "{said}");

    // The collection itself: the evictions, then the mark and sweep (grace 1ms).
    let out = run(Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["gc", "--config"])
        .arg(conf.path().join("wharf.toml"))
        .env_remove("RUST_LOG"));
    let said = String::from_utf8_lossy(&out.stdout);
    for name in ["app", "other"] {
        let line = format!("evicted cached image up.example/team/{name}@");
        assert!(said.contains(&line), "{said}");
    }
    // Freed: `other`'s manifest, config and layer, and at most `app`'s manifest (podman
    // may have pushed the same bytes to the local repository); never a blob of `local`.
    let freed: HashSet<String> = said
        .lines()
        .filter_map(|l| l.strip_prefix("deleted blob "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_owned)
        .collect();
    let other: HashSet<String> = named_by(&upstream.url, "team/other")
        .await
        .into_iter()
        .collect();
    let app = named_by(&upstream.url, "team/app").await;
    assert!(freed.is_superset(&other), "{said}\n{other:?}");
    let rest: HashSet<_> = freed.difference(&other).cloned().collect();
    assert!(rest.iter().all(|d| *d == app[0]), "{said}\n{app:?}");
    let blob_file = |d: &str| {
        let hex = &d["sha256:".len()..];
        root.path()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    };
    for shared in &app[1..] {
        assert!(
            blob_file(shared).exists(),
            "{shared} of team/local was deleted"
        );
    }

    let wharf = WharfProcess::spawn_async(conf.path(), &toml).await;
    run(podman(work.path()).args(["rmi", "-a", "-f"]));
    let local = format!("{}/team/local:1", wharf.addr);
    run(podman(work.path()).args(["pull", "-q", plain, &local]));
    run(podman(work.path()).args(["pull", "-q", plain, &hub("other", wharf.addr)]));
    let other_gets = upstream.requests("GET /v2/team/other/blobs/");
    assert_eq!(
        other_gets,
        4,
        "the evicted image was fetched again: {}",
        upstream.log_text()
    );
    let manifest_gets = upstream
        .log_text()
        .lines()
        .filter(|l| l.contains("\"GET /v2/team/other/manifests/") && l.contains("(mirror)"))
        .count();
    assert_eq!(manifest_gets, 2, "{}", upstream.log_text());
}

/// The digest of `repo:1`'s manifest upstream, then its config's and layers'.
async fn named_by(base: &str, repo: &str) -> Vec<String> {
    let r = reqwest::Client::new()
        .get(format!("{base}/v2/{repo}/manifests/1"))
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let mut out = vec![
        crate::support::sha256(&bytes),
        m["config"]["digest"].as_str().unwrap().to_owned(),
    ];
    for layer in m["layers"].as_array().unwrap() {
        out.push(layer["digest"].as_str().unwrap().to_owned());
    }
    out
}

/// A cache fill is not a push by whoever pulled: a webhook endpoint without filters (a
/// registry:2 consumer, to which registry:2's proxy announces nothing of its fills) gets
/// no event for it; one that asks for `fetch` gets each fill, named as one, with the
/// puller's request.
#[tokio::test(flavor = "multi_thread")]
async fn cache_fills_are_fetch_events_not_pushes() {
    if !have_program("docker-registry", "docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = UpstreamRegistry::start(dir.path(), None, Login::Anonymous).await;
    let (digest, layer) = push_image(&upstream.url, "team/app", "1", b"a layer").await;
    let receiver = crate::receiver::Receiver::http().await;
    let hook = |name: &str, extra: &str| {
        format!(
            "[[notifications.endpoint]]\nname = {name:?}\nurl = {:?}\nbackoff = \"100ms\"\n{extra}\
             [[notifications.endpoint.header]]\nname = \"x-hook\"\nvalue = {name:?}\n",
            receiver.url()
        )
    };
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[notifications]\npoll = \"200ms\"\n{}{}\
         [[server]]\ndefault = true\n\
         [[server.route]]\npath = \"/v2/hub/\"\nmirror = {:?}\nns = \"up.example\"\n\
         [[server.route]]\npath = \"/\"\nregistry = {{}}\n",
        hook("all", ""),
        hook("fetches", "actions = [\"fetch\"]\n"),
        upstream.url
    );
    let (wharf, _) = crate::support::TestServer::start_config(&toml).await;
    for path in [
        "/v2/hub/team/app/manifests/1".to_owned(),
        format!("/v2/hub/team/app/blobs/{layer}"),
    ] {
        let r = wharf
            .http
            .get(wharf.url(&path))
            .header("Accept", ACCEPT)
            .header("User-Agent", "containerd/1.7")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.bytes().await.unwrap();
    }
    // A push to the local registry afterwards: the unfiltered endpoint's sign of life.
    wharf.push_blob("team/local", b"local bytes").await;
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    let by = |hook: &str| -> Vec<serde_json::Value> {
        got.iter()
            .filter(|d| d.headers["x-hook"] == hook)
            .map(|d| d.event())
            .collect()
    };
    let all = by("all");
    assert!(
        all.iter()
            .all(|e| e["target"]["repository"] == "team/local"),
        "a fill reached an unfiltered endpoint: {all:#?}"
    );
    let fetches = by("fetches");
    assert_eq!(fetches.len(), 2, "{fetches:#?}");
    assert!(
        fetches.iter().all(|e| e["action"] == "fetch"),
        "{fetches:#?}"
    );
    let manifest = fetches
        .iter()
        .find(|e| e["target"]["digest"] == digest.as_str());
    let manifest = manifest.expect("the manifest's fill");
    assert_eq!(manifest["target"]["repository"], "up.example/team/app");
    assert_eq!(manifest["target"]["tag"], "1");
    assert_eq!(manifest["request"]["useragent"], "containerd/1.7");
    assert!(fetches
        .iter()
        .any(|e| e["target"]["digest"] == layer.as_str()));
}
