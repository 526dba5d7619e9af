//! Manifest push, pull, validation and deletion.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    assert_error, image_manifest, sha256, Backend, TestServer, TestStore, OCI_INDEX, OCI_MANIFEST,
};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

async fn push_then_get_and_head_by_tag_and_digest(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let (digest, bytes, _) = s.push_image("team/app", "v1", b"layer").await;
    for reference in ["v1", digest.as_str()] {
        let url = s.url(&format!("/v2/team/app/manifests/{reference}"));
        let r = s
            .http
            .get(&url)
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(r.bytes().await.unwrap(), bytes, "stored byte-exact");
        let r = s.http.head(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["content-length"],
            bytes.len().to_string().as_str()
        );
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    }
}

async fn bytes_are_kept_exactly_and_put_by_digest_works(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let config = s.push_blob("team/app", b"{}").await;
    // Odd spacing and key order: the digest is of these bytes, not of a re-serialisation.
    let text = format!(
        "{{ \"schemaVersion\" : 2,\n  \"config\": {{\"size\": 2, \"digest\": \"{config}\", \"mediaType\": \"application/vnd.oci.image.config.v1+json\"}},\n\"layers\": [], \"mediaType\": \"{OCI_MANIFEST}\" }}\n"
    );
    let digest = sha256(text.as_bytes());
    let r = s
        .http
        .put(s.url(&format!("/v2/team/app/manifests/{digest}")))
        .header("Content-Type", OCI_MANIFEST)
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/app/manifests/{digest}").as_str()
    );
    let got = s
        .http
        .get(s.url(&format!("/v2/team/app/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.text().await.unwrap(), text);

    let wrong = sha256(b"other");
    let r = s
        .http
        .put(s.url(&format!("/v2/team/app/manifests/{wrong}")))
        .header("Content-Type", OCI_MANIFEST)
        .body(text)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

async fn manifest_referring_to_a_missing_blob_is_refused(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let config = s.push_blob("team/app", b"{}").await;
    let missing = sha256(b"never pushed");
    let m = image_manifest(&config, 2, &[(&missing, 12)]);
    let r = s.put_manifest("team/app", "v1", OCI_MANIFEST, &m).await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    // A blob in another repository does not count either.
    let elsewhere = s.push_blob("other/repo", b"elsewhere").await;
    let m = image_manifest(&config, 2, &[(&elsewhere, 9)]);
    let r = s.put_manifest("team/app", "v1", OCI_MANIFEST, &m).await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

async fn invalid_manifests_are_manifest_invalid(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    for (ct, body) in [
        (OCI_MANIFEST, "not json"),
        (OCI_MANIFEST, "{\"schemaVersion\": 2, \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\"}"),
        (OCI_MANIFEST, "{\"schemaVersion\": 3, \"config\": {}, \"layers\": []}"),
        (OCI_INDEX, "{\"schemaVersion\": 2, \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"manifests\": []}"),
        ("application/x-unknown", "{\"schemaVersion\": 2}"),
        (OCI_MANIFEST, ""),
    ] {
        let r = s
            .http
            .put(s.url("/v2/team/app/manifests/v1"))
            .header("Content-Type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    let r = s
        .http
        .put(s.url("/v2/team/app/manifests/v1"))
        .header(
            "Content-Type",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        )
        .body("{\"schemaVersion\": 1}")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "UNSUPPORTED").await;
}

async fn oversized_manifest_is_413(backend: Backend) {
    let Some((s, _store)) =
        TestServer::start_with_in(backend, "[registry]\nmax_manifest_bytes = 2048").await
    else {
        return;
    };
    let config = s.push_blob("team/app", b"{}").await;
    let mut m = image_manifest(&config, 2, &[]);
    m["annotations"] = json!({ "padding": "x".repeat(4096) });
    let r = s.put_manifest("team/app", "v1", OCI_MANIFEST, &m).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
}

async fn indexes_need_their_children(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let (amd, amd_bytes, _) = s.push_image("team/app", "amd64", b"amd").await;
    let missing = sha256(b"no such manifest");
    let index = |children: &[(&str, usize)]| {
        json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": children.iter().map(|(d, n)| json!({
                "mediaType": OCI_MANIFEST, "digest": d, "size": n,
                "platform": {"architecture": "amd64", "os": "linux"}
            })).collect::<Vec<_>>()
        })
    };
    let r = s
        .put_manifest("team/app", "multi", OCI_INDEX, &index(&[(&missing, 10)]))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    let r = s
        .put_manifest(
            "team/app",
            "multi",
            OCI_INDEX,
            &index(&[(&amd, amd_bytes.len())]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/multi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
}

async fn docker_schema2_and_manifest_list(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let config = s.push_blob("team/app", b"{}").await;
    let layer = s.push_blob("team/app", b"docker layer").await;
    let m = json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 12}],
    });
    let r = s
        .put_manifest("team/app", "docker", DOCKER_MANIFEST, &m)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let digest = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let size = serde_json::to_vec(&m).unwrap().len();
    let list = json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": digest, "size": size,
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    });
    let r = s.put_manifest("team/app", "list", DOCKER_LIST, &list).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/docker"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], DOCKER_MANIFEST);
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], DOCKER_LIST);
}

async fn retagging_is_seen_at_once(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let (first, _, _) = s.push_image("team/app", "latest", b"one").await;
    let r = s
        .http
        .head(s.url("/v2/team/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], first.as_str());
    let (second, _, _) = s.push_image("team/app", "latest", b"two").await;
    let r = s
        .http
        .head(s.url("/v2/team/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], second.as_str());
}

async fn deleting_a_tag_keeps_the_manifest(backend: Backend) {
    let Some((s, _store)) = TestServer::start_with_in(backend, "[registry]\ndelete = true\n").await
    else {
        return;
    };
    let (digest, _, _) = s.push_image("team/app", "v1", b"layer").await;
    let r = s
        .http
        .delete(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let r = s
        .http
        .get(s.url(&format!("/v2/team/app/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .delete(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

async fn deleting_by_digest_removes_manifest_and_its_tags(backend: Backend) {
    let Some((s, _store)) = TestServer::start_with_in(backend, "[registry]\ndelete = true\n").await
    else {
        return;
    };
    let (digest, bytes, _) = s.push_image("team/app", "v1", b"layer").await;
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        s.put_manifest("team/app", "v2", OCI_MANIFEST, &m)
            .await
            .status(),
        StatusCode::CREATED
    );
    let (keep, _, _) = s.push_image("team/app", "keep", b"other").await;
    // Warm the cache so the delete has to invalidate it.
    s.http
        .head(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    let r = s
        .http
        .delete(s.url(&format!("/v2/team/app/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for reference in ["v1", "v2", digest.as_str()] {
        let r = s
            .http
            .get(s.url(&format!("/v2/team/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    }
    let tags: serde_json::Value = s
        .http
        .get(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["keep"]));
    let r = s
        .http
        .head(s.url(&format!("/v2/team/app/manifests/{keep}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .delete(s.url(&format!("/v2/team/app/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

async fn manifests_survive_a_restart(backend: Backend) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    let (digest, bytes, layer) = {
        let s = TestServer::start_on_store(&store, "").await;
        s.push_image("team/app", "v1", b"persistent").await
    };
    let s = TestServer::start_on_store(&store, "").await;
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(r.bytes().await.unwrap(), bytes);
    let r = s
        .http
        .get(s.url(&format!("/v2/team/app/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"persistent"[..]);
}

crate::on_every_backend!(
    manifests_survive_a_restart,
    push_then_get_and_head_by_tag_and_digest,
    bytes_are_kept_exactly_and_put_by_digest_works,
    manifest_referring_to_a_missing_blob_is_refused,
    invalid_manifests_are_manifest_invalid,
    oversized_manifest_is_413,
    indexes_need_their_children,
    docker_schema2_and_manifest_list,
    retagging_is_seen_at_once,
    deleting_a_tag_keeps_the_manifest,
    deleting_by_digest_removes_manifest_and_its_tags,
);
