//! Blob reads, ranges and deletes.

use reqwest::StatusCode;

use crate::support::{assert_error, bytes_of, sha256, Backend, TestServer};

async fn get_head_and_ranges(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let data = bytes_of(300_000, 1);
    let d = s.push_blob("team/app", &data).await;
    let url = s.url(&format!("/v2/team/app/blobs/{d}"));

    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(r.bytes().await.unwrap(), data);

    let r = s.http.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "300000");

    let r = s
        .http
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], "bytes 10-19/300000");
    assert_eq!(r.bytes().await.unwrap(), data[10..20]);

    let r = s
        .http
        .get(&url)
        .header("Range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), data[data.len() - 5..]);

    let r = s
        .http
        .get(&url)
        .header("Range", "bytes=300000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "bytes */300000");
    assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
}

async fn blobs_are_scoped_to_their_repository(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let d = s.push_blob("team/app", b"private layer").await;
    let r = s
        .http
        .get(s.url(&format!("/v2/other/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let unknown = sha256(b"never pushed");
    let r = s
        .http
        .get(s.url(&format!("/v2/team/app/blobs/{unknown}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

async fn delete_removes_the_blob_from_the_repository_only(backend: Backend) {
    let Some((s, _store)) = TestServer::start_with_in(backend, "[registry]\ndelete = true\n").await
    else {
        return;
    };
    let d = s.push_blob("team/a", b"shared").await;
    s.push_blob("team/b", b"shared").await;
    let r = s
        .http
        .delete(s.url(&format!("/v2/team/a/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .http
        .get(s.url(&format!("/v2/team/a/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let r = s
        .http
        .delete(s.url(&format!("/v2/team/a/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let r = s
        .http
        .get(s.url(&format!("/v2/team/b/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), &b"shared"[..]);
}

async fn malformed_digests_are_digest_invalid(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    for bad in ["sha256:abc", "md5:0123", "sha256:ZZZZ"] {
        let r = s
            .http
            .get(s.url(&format!("/v2/team/app/blobs/{bad}")))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
}

crate::on_every_backend!(
    get_head_and_ranges,
    blobs_are_scoped_to_their_repository,
    delete_removes_the_blob_from_the_repository_only,
    malformed_digests_are_digest_invalid,
);
