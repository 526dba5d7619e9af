//! What a push and a pull cost in requests to the object store, counted where the store
//! sees them (a relay in front of it), with upper bounds so the numbers cannot creep back.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::store_relay::StoreRelay;
use crate::support::{
    bytes_of, sha256, Backend, TestServer, TestStore, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST,
};

/// Pushes a blob the way docker, containerd and podman do: HEAD (absent), POST a session,
/// PATCH the bytes, PUT with the digest.
async fn push_like_go_clients(s: &TestServer, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let r = s
        .http
        .head(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .http
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let session = r.headers()["location"].to_str().unwrap().to_owned();
    let r = s
        .http
        .patch(s.url(&session))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .http
        .put(s.url(&format!("{session}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    digest
}

fn manifest(config: &str, config_size: usize, layers: &[(String, usize)]) -> serde_json::Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_size},
        "layers": layers.iter().map(|(d, n)| json!({"mediaType": OCI_LAYER, "digest": d, "size": n})).collect::<Vec<_>>(),
    })
}

async fn a_small_push_and_its_pull_cost_few_store_requests(backend: Backend) {
    let Some(mut store) = TestStore::fresh(backend) else {
        return;
    };
    let relay = StoreRelay::in_front_of(&mut store).await;
    let s = TestServer::start_on_store(&store, "").await;
    // The GC scheduler's start-up (write `gc/since`, read it and `gc/last`) is not the push's.
    for _ in 0..500 {
        if relay.requests().iter().any(|r| r.contains("/gc/last")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    relay.reset();

    let layer = bytes_of(100_000, 71);
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer_digest = push_like_go_clients(&s, "team/app", &layer).await;
    let config_digest = push_like_go_clients(&s, "team/app", &config).await;
    let body = manifest(
        &config_digest,
        config.len(),
        &[(layer_digest.clone(), layer.len())],
    );
    let r = s
        .http
        .put(s.url("/v2/team/app/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let push = relay.reset();

    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (digest, len) in [(&config_digest, config.len()), (&layer_digest, layer.len())] {
        let r = s
            .http
            .get(s.url(&format!("/v2/team/app/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap().len(), len);
    }
    let pull = relay.reset();

    // A monolithic push of a small blob (`POST ?digest=` with the bytes).
    s.push_blob("team/app", &bytes_of(100_000, 72)).await;
    let monolithic = relay.reset();

    println!("{backend:?}: push {} requests: {push:#?}", push.len());
    println!("{backend:?}: pull {} requests: {pull:#?}", pull.len());
    println!(
        "{backend:?}: monolithic blob {} requests: {monolithic:#?}",
        monolithic.len()
    );
    // Measured before the direct path, the concurrent reference checks and the size
    // cache: 35, 9 and 11. The tag is two PUTs since the registry:2 layout (its index
    // entry, then `current`), as registry:2 writes it.
    assert!(
        push.len() <= 30,
        "{backend:?}: a push of two blobs and a manifest took {} store requests: {push:#?}",
        push.len()
    );
    assert!(
        pull.len() <= 7,
        "{backend:?}: a pull of a manifest and two blobs took {} store requests: {pull:#?}",
        pull.len()
    );
    assert!(
        monolithic.len() <= 2,
        "{backend:?}: a monolithic blob push took {} store requests: {monolithic:#?}",
        monolithic.len()
    );
}

/// A manifest's references are checked several at a time, not one round trip after another.
async fn a_manifest_checks_its_layers_concurrently(backend: Backend) {
    let Some(mut store) = TestStore::fresh(backend) else {
        return;
    };
    let relay = StoreRelay::in_front_of(&mut store).await;
    let s = TestServer::start_on_store(&store, "").await;
    let mut layers = Vec::new();
    for i in 0..30u8 {
        let bytes = bytes_of(1000, i);
        layers.push((s.push_blob("team/app", &bytes).await, bytes.len()));
    }
    let config = s.push_blob("team/app", b"{}").await;
    relay.delay_answers(Duration::from_millis(50));
    relay.take_max_in_flight();
    let r = s
        .http
        .put(s.url("/v2/team/app/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(serde_json::to_vec(&manifest(&config, 2, &layers)).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let overlap = relay.take_max_in_flight();
    assert!(
        overlap >= 4,
        "at most {overlap} reference checks were in flight at once"
    );
}

crate::on_object_stores!(
    a_small_push_and_its_pull_cost_few_store_requests,
    a_manifest_checks_its_layers_concurrently,
);
