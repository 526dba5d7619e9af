//! Several wharf nodes on one bucket, and the bucket going away: what object storage adds.
//! Each test gets its own bucket on the shared moto server (see `moto.rs`) or its own
//! container on the shared Azurite (see `azurite.rs`); the tests that take a `Backend`
//! run on both (`s3::NAME`, `azure::NAME`).

use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::mpsc;

use crate::clients::{import_image, run};
use crate::moto::Outage;
use crate::support::{
    assert_error, bytes_of, have_program, podman, sha256, Backend, TestServer, TestStore,
    WharfProcess,
};

const MIB: usize = 1 << 20;

/// Two in-process nodes (own listeners, engines and caches) on one fresh bucket or container.
async fn two_nodes(backend: Backend) -> Option<(TestServer, TestServer, TestStore)> {
    let store = TestStore::fresh(backend)?;
    // Deletes are granted: one node's delete must be seen by the other.
    let a = TestServer::start_on_store(&store, "[registry]\ndelete = true\n").await;
    let b = TestServer::start_on_store(&store, "[registry]\ndelete = true\n").await;
    Some((a, b, store))
}

async fn patch(s: &TestServer, loc: &str, start: usize, chunk: &[u8]) -> reqwest::Response {
    s.http
        .patch(loc)
        .header(
            "Content-Range",
            format!("{start}-{}", start + chunk.len() - 1),
        )
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap()
}

async fn start_session(s: &TestServer, repo: &str) -> String {
    let r = s
        .http
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    r.headers()["location"].to_str().unwrap().to_owned()
}

async fn get_blob(s: &TestServer, repo: &str, digest: &str) -> Vec<u8> {
    let r = s
        .http
        .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

async fn a_chunked_upload_moves_between_nodes(backend: Backend) {
    let Some((a, b, _store)) = two_nodes(backend).await else {
        return;
    };
    // Chunks that straddle the 8 MiB parts, so parts, tail pieces and the hash state all
    // pass from node to node.
    let data = bytes_of(22 * MIB, 31);
    let d = sha256(&data);
    let path = start_session(&a, "team/app").await;
    let cuts = [
        (0, 12 * MIB, &a),
        (12 * MIB, 15 * MIB, &b),
        (15 * MIB, 21 * MIB, &a),
    ];
    for (start, end, node) in cuts {
        let r = patch(node, &node.url(&path), start, &data[start..end]).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()["range"], format!("0-{}", end - 1).as_str());
    }
    let r = a.http.get(a.url(&path)).send().await.unwrap();
    assert_eq!(r.headers()["range"], format!("0-{}", 21 * MIB - 1).as_str());
    let r = b
        .http
        .put(format!("{}?digest={d}", b.url(&path)))
        .header("Content-Range", format!("{}-{}", 21 * MIB, 22 * MIB - 1))
        .body(data[21 * MIB..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(get_blob(&a, "team/app", &d).await == data);
    assert!(get_blob(&b, "team/app", &d).await == data);
}

async fn what_one_node_pushes_or_deletes_the_other_serves_at_once(backend: Backend) {
    let Some((a, b, _store)) = two_nodes(backend).await else {
        return;
    };
    let (first, _, _) = a.push_image("team/app", "v1", b"first").await;
    let get = |node: &TestServer| node.http.get(node.url("/v2/team/app/manifests/v1")).send();
    let r = get(&b).await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"], first.as_str());
    // Retagged through A: B must not answer from its cache.
    let (second, _, _) = a.push_image("team/app", "v1", b"second").await;
    let r = get(&b).await.unwrap();
    assert_eq!(r.headers()["docker-content-digest"], second.as_str());
    // Deleted through A: gone on B, by tag and by digest.
    let r = a
        .http
        .delete(a.url(&format!("/v2/team/app/manifests/{second}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_error(
        get(&b).await.unwrap(),
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let r = b
        .http
        .get(b.url(&format!("/v2/team/app/manifests/{second}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

async fn concurrent_pushes_of_one_image_through_both_nodes_succeed(backend: Backend) {
    let Some((a, b, _store)) = two_nodes(backend).await else {
        return;
    };
    let layer = bytes_of(10 * MIB, 32);
    let (ra, rb) = tokio::join!(
        a.push_image("team/app", "latest", &layer),
        b.push_image("team/app", "latest", &layer)
    );
    assert_eq!(ra.0, rb.0, "the same image has the same manifest digest");
    for node in [&a, &b] {
        let r = node
            .http
            .get(node.url("/v2/team/app/manifests/latest"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["docker-content-digest"], ra.0.as_str());
        assert!(get_blob(node, "team/app", &ra.2).await == layer);
    }
}

async fn racing_appends_to_one_session_leave_one_winner(backend: Backend) {
    let Some((a, b, _store)) = two_nodes(backend).await else {
        return;
    };
    let path = start_session(&a, "team/app").await;
    let (one, two) = (bytes_of(MIB, 33), bytes_of(MIB, 34));
    let (via_a, via_b) = (a.url(&path), b.url(&path));
    let (ra, rb) = tokio::join!(patch(&a, &via_a, 0, &one), patch(&b, &via_b, 0, &two));
    let statuses = [ra.status(), rb.status()];
    assert!(
        statuses.contains(&StatusCode::ACCEPTED),
        "one append wins: {statuses:?}"
    );
    // Either both ran one after the other (the second starts at 0, where the session no
    // longer ends) or they raced (the second's conditional state write failed): 416.
    assert!(
        statuses.contains(&StatusCode::RANGE_NOT_SATISFIABLE),
        "{statuses:?}"
    );
    let winner = match ra.status() {
        StatusCode::ACCEPTED => &one,
        _ => &two,
    };
    let d = sha256(winner);
    let r = b
        .http
        .put(format!("{}?digest={d}", b.url(&path)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(get_blob(&a, "team/app", &d).await == *winner);
}

/// A server on an S3 bucket that it reaches through a relay the test can cut or stall;
/// `store_options` are more `[storage.s3]` keys. `None` when moto is missing (outside CI).
async fn behind_relay(
    store_options: &str,
) -> Option<(std::sync::Arc<Outage>, TestStore, TestServer)> {
    let moto = crate::moto::shared()?;
    let outage = Outage::start(moto.addr()).await;
    let mut store = TestStore::fresh(Backend::S3)?;
    store.endpoint = format!("http://{}", outage.addr);
    store.store_options = store_options.into();
    let s = TestServer::start_on_store(&store, "").await;
    Some((outage, store, s))
}

#[tokio::test]
async fn the_store_going_away_mid_push_is_503_and_a_retry_succeeds() {
    let Some((outage, _store, s)) = behind_relay("").await else {
        return;
    };
    let data = bytes_of(20 * MIB, 35);
    let d = sha256(&data);
    let path = start_session(&s, "team/app").await;

    // A streamed PATCH: 10 MiB go through (one part is written), then the store goes away
    // while the rest is still arriving.
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|item| (item, rx))
    }));
    let request = s.http.patch(s.url(&path)).body(body).send();
    let feeder = {
        let data = data.clone();
        let outage = outage.clone();
        async move {
            for chunk in data[..10 * MIB].chunks(MIB) {
                tx.send(Ok(chunk.to_vec())).await.unwrap();
            }
            outage.cut();
            for chunk in data[10 * MIB..15 * MIB].chunks(MIB) {
                if tx.send(Ok(chunk.to_vec())).await.is_err() {
                    break; // the server gave up on the request
                }
            }
        }
    };
    let (response, ()) = tokio::join!(request, feeder);
    match response {
        Ok(r) => assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await,
        Err(e) => eprintln!("the connection broke instead of a 503: {e}"),
    }
    // While the store is away, every storage request is a 503 with a clear body.
    let r = s.http.get(s.url(&path)).send().await.unwrap();
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    let r = s
        .http
        .head(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);

    outage.restore();
    // Nothing half-written is visible, and the session resumes where its state says.
    let r = s
        .http
        .head(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s.http.get(s.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let held: usize = r.headers()["range"].to_str().unwrap()[2..]
        .parse::<usize>()
        .map_or(0, |last| last + 1);
    assert!(held < 15 * MIB, "no bytes after the cut were kept: {held}");
    let held = if held == 1 { 0 } else { held }; // "0-0" is an empty session
    let r = s
        .http
        .put(format!("{}?digest={d}", s.url(&path)))
        .header("Content-Range", format!("{held}-{}", data.len() - 1))
        .body(data[held..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(get_blob(&s, "team/app", &d).await == data);
}

/// A request against a store that never answers must end within the configured
/// `storage.s3.timeout` (2 s here), plus room for a loaded machine.
const ANSWERED_WITHIN: Duration = Duration::from_secs(15);

/// Sends `request` (not a HEAD: the body is checked) and asserts a 503 `UNAVAILABLE`
/// within [`ANSWERED_WITHIN`].
async fn unavailable_in_time(request: reqwest::RequestBuilder, what: &str) {
    let started = std::time::Instant::now();
    let r = request.send().await.unwrap();
    let took = started.elapsed();
    assert!(took < ANSWERED_WITHIN, "{what} took {took:?}");
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
}

#[tokio::test]
async fn a_store_that_stops_answering_is_503_within_the_timeout() {
    let Some((outage, _store, s)) = behind_relay("timeout = \"2s\"\n").await else {
        return;
    };
    let stored = bytes_of(1000, 36);
    let stored_digest = sha256(&stored);
    let blob = |d: &str| s.url(&format!("/v2/team/app/blobs/{d}"));
    let monolithic = |d: &str| s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}"));
    let r = s.http.post(monolithic(&stored_digest)).body(stored.clone());
    assert_eq!(r.send().await.unwrap().status(), StatusCode::CREATED);

    // The store now accepts connections (and keeps the pooled ones) but never answers.
    outage.stall();
    let r = s.http.head(blob(&stored_digest)).send();
    let started = std::time::Instant::now();
    assert_eq!(r.await.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < ANSWERED_WITHIN,
        "HEAD took {:?}",
        started.elapsed()
    );
    unavailable_in_time(s.http.get(blob(&stored_digest)), "GET blob").await;
    let path = s.url("/v2/team/app/blobs/uploads/");
    unavailable_in_time(s.http.post(path), "starting an upload").await;
    let pushed = bytes_of(3 * MIB, 37);
    let pushed_digest = sha256(&pushed);
    let push = s.http.post(monolithic(&pushed_digest)).body(pushed);
    unavailable_in_time(push, "a monolithic push").await;

    // Nothing of the push became visible; what was there is served again.
    outage.restore();
    let r = s.http.head(blob(&pushed_digest)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(get_blob(&s, "team/app", &stored_digest).await == stored);
}

#[tokio::test]
async fn a_download_whose_store_stalls_ends_after_the_timeout() {
    let Some((outage, _store, s)) = behind_relay("timeout = \"2s\"\n").await else {
        return;
    };
    // Larger than every socket buffer between moto and the test, so the stall is felt.
    let data = bytes_of(32 * MIB, 38);
    let d = sha256(&data);
    let push = s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}"));
    let r = s.http.post(push).body(data.clone()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let blob = s.url(&format!("/v2/team/app/blobs/{d}"));
    let mut r = s.http.get(blob).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut received = r.chunk().await.unwrap().map_or(0, |c| c.len());
    // The store goes silent mid-body: the response must end, not hang.
    outage.stall();
    let started = std::time::Instant::now();
    let ended = loop {
        match r.chunk().await {
            Ok(Some(c)) => received += c.len(),
            Ok(None) => break "at a short end",
            Err(_) => break "with an error",
        }
    };
    let took = started.elapsed();
    assert!(
        took < ANSWERED_WITHIN,
        "the body ended {ended} after {took:?}"
    );
    assert!(
        received < data.len(),
        "{received} bytes came through a stall"
    );
    outage.restore();
}

async fn stale_sessions_are_purged_from_the_bucket(backend: Backend) {
    let Some((s, store)) = TestServer::start_in(backend).await else {
        return;
    };
    let stale = start_session(&s, "team/app").await;
    let r = patch(&s, &s.url(&stale), 0, &bytes_of(9 * MIB, 36)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let config = wharf::config::Config::from_toml(&store.config(""), "test").unwrap();
    let storage = wharf::server::open_storage(&config.storage.backend, &config.storage.root)
        .await
        .unwrap();
    assert_eq!(
        storage
            .purge_uploads(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    // Everything is older than zero seconds once the clock has moved past the session.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while storage.purge_uploads(Duration::ZERO).await.unwrap() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the session was never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = s.http.get(s.url(&stale)).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[test]
fn podman_pushes_through_one_node_and_pulls_through_the_other() {
    if !have_program("podman", "podman") {
        return;
    }
    let Some(store) = TestStore::fresh(Backend::S3) else {
        return;
    };
    let (conf1, conf2, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let node1 = WharfProcess::spawn_config(conf1.path(), &store.config(""));
    let node2 = WharfProcess::spawn_config(conf2.path(), &store.config(""));
    let image_id = import_image(work.path(), "localhost/e2e/app:1", "hello from two nodes");
    let via = |node: &WharfProcess| format!("{}/team/app:1", node.addr);
    run(podman(work.path()).args([
        "push",
        "--tls-verify=false",
        "localhost/e2e/app:1",
        &via(&node1),
    ]));
    run(podman(work.path()).args(["rmi", "-a", "-f"]));
    run(podman(work.path()).args(["pull", "-q", "--tls-verify=false", &via(&node2)]));
    let out =
        run(podman(work.path()).args(["image", "inspect", "--format", "{{.Id}}", &via(&node2)]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        image_id.trim_start_matches("sha256:")
    );
}

#[test]
fn check_config_probes_the_bucket() {
    check_config_probes(Backend::S3, "bucket", "NoSuchBucket");
}

#[test]
fn check_config_probes_the_container() {
    check_config_probes(Backend::Azure, "container", "ContainerNotFound");
}

/// `check-config` writes, reads and deletes a probe in the store: fine in the test's own
/// bucket or container, an error naming the store's complaint and the fix in a missing one.
fn check_config_probes(backend: Backend, key: &str, complaint: &str) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    let (table, scheme) = match backend {
        Backend::Azure => (
            "storage.azure",
            format!("azure://{}/", crate::azurite::ACCOUNT),
        ),
        _ => ("storage.s3", "s3://".to_owned()),
    };
    let dir = tempfile::tempdir().unwrap();
    let check = |toml: &str| {
        let file = dir.path().join("wharf.toml");
        std::fs::write(&file, toml).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("check-config")
            .arg(&file)
            .output()
            .unwrap()
    };
    let out = check(&store.config(""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{scheme}{}/", store.bucket)),
        "{stdout}"
    );

    let missing = store.config("").replace(
        &format!("{key} = {:?}", store.bucket),
        &format!("{key} = \"no-such-store\""),
    );
    let out = check(&missing);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(table) && stderr.contains(complaint) && stderr.contains("fix:"),
        "{stderr}"
    );
    for secret in ["testing\"", crate::azurite::KEY] {
        assert!(
            !stderr.contains(secret),
            "no secret in the message: {stderr}"
        );
    }
}

crate::on_object_stores!(
    a_chunked_upload_moves_between_nodes,
    what_one_node_pushes_or_deletes_the_other_serves_at_once,
    concurrent_pushes_of_one_image_through_both_nodes_succeed,
    racing_appends_to_one_session_leave_one_winner,
    stale_sessions_are_purged_from_the_bucket,
);
