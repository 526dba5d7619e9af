//! Every way of uploading a blob, and every way an upload can go wrong.

use reqwest::StatusCode;

use crate::support::{assert_error, bytes_of, sha256, Backend, TestServer, TestStore};

async fn start_session(s: &TestServer, repo: &str) -> String {
    let r = s
        .http
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-0");
    assert!(r.headers().contains_key("docker-upload-uuid"));
    s.url(r.headers()["location"].to_str().unwrap())
}

async fn head_status(s: &TestServer, repo: &str, digest: &str) -> StatusCode {
    s.http
        .head(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .status()
}

async fn monolithic_post_with_digest(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let data = bytes_of(100_000, 2);
    let d = sha256(&data);
    let r = s
        .http
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/app/blobs/{d}").as_str()
    );
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    assert_eq!(head_status(&s, "team/app", &d).await, StatusCode::OK);
}

async fn post_then_put_with_body(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let data = bytes_of(70_000, 3);
    let d = sha256(&data);
    let loc = start_session(&s, "team/app").await;
    let r = s
        .http
        .put(format!("{loc}?digest={d}"))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(head_status(&s, "team/app", &d).await, StatusCode::OK);
}

async fn streamed_patch_then_put(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let data = bytes_of(3 << 20, 4);
    let d = sha256(&data);
    let loc = start_session(&s, "team/app").await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(100_000).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = s.http.patch(&loc).body(body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", data.len() - 1).as_str()
    );
    let loc = s.url(r.headers()["location"].to_str().unwrap());
    let r = s
        .http
        .put(format!("{loc}?digest={d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = s
        .http
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), data);
}

async fn chunked_upload_with_status_and_final_chunk(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let data = bytes_of(250_000, 5);
    let d = sha256(&data);
    let mut loc = start_session(&s, "team/app").await;
    for (start, end) in [(0usize, 100_000usize), (100_000, 200_000)] {
        let r = s
            .http
            .patch(&loc)
            .header("Content-Range", format!("{}-{}", start, end - 1))
            .header("Content-Type", "application/octet-stream")
            .body(data[start..end].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(r.headers()["range"], format!("0-{}", end - 1).as_str());
        loc = s.url(r.headers()["location"].to_str().unwrap());
    }
    let r = s.http.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-199999");
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("/blobs/uploads/"));
    // The final chunk travels with the closing PUT.
    let r = s
        .http
        .put(format!("{loc}?digest={d}"))
        .header("Content-Range", "200000-249999")
        .body(data[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = s
        .http
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), data);
}

async fn out_of_order_chunk_is_416_with_current_range(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let loc = start_session(&s, "team/app").await;
    let r = s
        .http
        .patch(&loc)
        .header("Content-Range", "0-9")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for range in ["20-29", "0-9", "5-14"] {
        let r = s
            .http
            .patch(&loc)
            .header("Content-Range", range)
            .body(vec![2u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["range"], "0-9", "{range}");
        assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    }
    let r = s.http.get(&loc).send().await.unwrap();
    assert_eq!(
        r.headers()["range"],
        "0-9",
        "the rejected chunks changed nothing"
    );
}

async fn bad_content_range_is_rejected(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let loc = start_session(&s, "team/app").await;
    for range in ["abc", "9-0", "0-", "0-99"] {
        // "0-99" is well formed but claims 100 bytes for a 10-byte body.
        let r = s
            .http
            .patch(&loc)
            .header("Content-Range", range)
            .body(vec![0u8; 10])
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    }
    let r = s.http.get(&loc).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-0");
}

async fn wrong_digest_is_refused_and_nothing_appears(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let data = bytes_of(50_000, 6);
    let real = sha256(&data);
    let claimed = sha256(b"something else");
    let loc = start_session(&s, "team/app").await;
    let r = s
        .http
        .put(format!("{loc}?digest={claimed}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        head_status(&s, "team/app", &claimed).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        head_status(&s, "team/app", &real).await,
        StatusCode::NOT_FOUND
    );
    let r = s.http.get(&loc).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;

    // Monolithic too.
    let r = s
        .http
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={claimed}")))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert_eq!(
        head_status(&s, "team/app", &claimed).await,
        StatusCode::NOT_FOUND
    );
    // No blob file exists anywhere under the root (HEAD above covers S3).
    if backend == Backend::Fs {
        let blobs = walk_files(&s.root.join("docker/registry/v2/blobs"));
        assert!(blobs.is_empty(), "{blobs:?}");
    }
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk_files(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

async fn put_without_digest_and_malformed_digest(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let loc = start_session(&s, "team/app").await;
    let r = s.http.put(&loc).body("x").send().await.unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let r = s
        .http
        .put(format!("{loc}?digest=sha256:nothex"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

async fn sha512_digests_are_accepted(backend: Backend) {
    use sha2::{Digest as _, Sha512};
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    // Over one S3 part, so the object is verified after assembly there.
    let data = bytes_of(9 << 20, 7);
    let d = format!("sha512:{}", hex::encode(Sha512::digest(&data)));
    let r = s
        .http
        .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = s
        .http
        .get(s.url(&format!("/v2/team/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.bytes().await.unwrap(), data);
}

async fn cancel_and_foreign_sessions(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let loc = start_session(&s, "team/app").await;
    let id = loc.rsplit('/').next().unwrap().to_owned();
    // A session belongs to the repository that opened it.
    let other = s.url(&format!("/v2/other/app/blobs/uploads/{id}"));
    let r = s.http.get(&other).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = s.http.patch(&other).body("x").send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;

    let r = s.http.delete(&loc).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s.http.get(&loc).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = s.http.delete(&loc).send().await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = s
        .http
        .get(s.url("/v2/team/app/blobs/uploads/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

async fn cross_repository_mount(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let d = s.push_blob("team/base", b"base layer").await;
    let r = s
        .http
        .post(s.url(&format!(
            "/v2/team/app/blobs/uploads/?mount={d}&from=team/base"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/app/blobs/{d}").as_str()
    );
    assert_eq!(head_status(&s, "team/app", &d).await, StatusCode::OK);

    // The source lacks the blob: an ordinary upload session instead.
    let missing = sha256(b"not there");
    let r = s
        .http
        .post(s.url(&format!(
            "/v2/team/other/blobs/uploads/?mount={missing}&from=team/base"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("/blobs/uploads/"));
    let r = s
        .http
        .post(s.url(&format!(
            "/v2/team/app/blobs/uploads/?mount={d}&from=Bad..Name"
        )))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
}

async fn concurrent_pushes_of_one_blob_are_safe(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let data = bytes_of(2 << 20, 8);
    let d = sha256(&data);
    let pushes = (0..8).map(|i| {
        let (http, url, body) = (
            s.http.clone(),
            s.url(&format!("/v2/team/app{i}/blobs/uploads/?digest={d}")),
            data.clone(),
        );
        tokio::spawn(async move { http.post(url).body(body).send().await.unwrap().status() })
    });
    for p in pushes {
        assert_eq!(p.await.unwrap(), StatusCode::CREATED);
    }
    let got = s
        .http
        .get(s.url(&format!("/v2/team/app3/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&got.bytes().await.unwrap()), d);
}

async fn sessions_survive_a_restart(backend: Backend) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    let data = bytes_of(200_000, 9);
    let d = sha256(&data);
    let loc = {
        let s = TestServer::start_on_store(&store, "").await;
        let loc = start_session(&s, "team/app").await;
        let r = s
            .http
            .patch(&loc)
            .header("Content-Range", "0-99999")
            .body(data[..100_000].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        loc.split_once("/v2/").unwrap().1.to_owned()
    };
    let s = TestServer::start_on_store(&store, "").await;
    let loc = s.url(&format!("/v2/{loc}"));
    let r = s.http.get(&loc).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-99999");
    let r = s
        .http
        .put(format!("{loc}?digest={d}"))
        .header("Content-Range", "100000-199999")
        .body(data[100_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the digest is verified from disk after a restart"
    );
}

#[tokio::test]
async fn stale_sessions_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let (stale, fresh) = {
        let s = TestServer::start_on(dir.path(), "").await;
        (
            start_session(&s, "team/app").await,
            start_session(&s, "team/app").await,
        )
    };
    let id = stale.rsplit('/').next().unwrap();
    let data = dir.path().join("wharf/uploads").join(id).join("data");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&data)
        .unwrap()
        .set_modified(old)
        .unwrap();

    // The first purge runs before the server starts accepting.
    let s = TestServer::start_on(dir.path(), "[storage]\nupload_max_age = \"1h\"").await;
    assert!(!data.exists(), "the stale session was purged");
    let r = s
        .http
        .get(s.url(&format!("/v2/{}", stale.split_once("/v2/").unwrap().1)))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = s
        .http
        .get(s.url(&format!("/v2/{}", fresh.split_once("/v2/").unwrap().1)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NO_CONTENT,
        "the fresh session stays"
    );
}

crate::on_every_backend!(
    sha512_digests_are_accepted,
    sessions_survive_a_restart,
    monolithic_post_with_digest,
    post_then_put_with_body,
    streamed_patch_then_put,
    chunked_upload_with_status_and_final_chunk,
    out_of_order_chunk_is_416_with_current_range,
    bad_content_range_is_rejected,
    wrong_digest_is_refused_and_nothing_appears,
    put_without_digest_and_malformed_digest,
    cancel_and_foreign_sessions,
    cross_repository_mount,
    concurrent_pushes_of_one_blob_are_safe,
);
