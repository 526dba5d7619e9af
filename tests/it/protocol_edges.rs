//! Protocol edges that real and hostile clients hit: references that cannot exist, work a
//! request can make the server do, chunks whose range lies about their body, descriptor
//! sizes, `Range` headers and numbers at the edge of `u64`.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    assert_error, bytes_of, image_manifest, sha256, Backend, TestServer, OCI_MANIFEST,
};

/// Sends one raw request (with `Connection: close`) and returns the whole answer; an empty
/// string when the server dropped the connection without one.
async fn raw(s: &TestServer, request: String) -> String {
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server neither answered nor closed");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn impossible_manifest_references_are_unknown_not_invalid() {
    // Deletes granted, so a DELETE reaches the engine (else it is 405 for any reference).
    let s = TestServer::start_with("[registry]\ndelete = true\n").await;
    s.push_image("team/app", "latest", b"layer").await;
    for reference in ["-latest", ".hidden", "sha256:zz", "x%20y"] {
        let url = s.url(&format!("/v2/team/app/manifests/{reference}"));
        let r = s.http.get(&url).send().await.unwrap();
        assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        let r = s.http.head(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "HEAD {reference}");
        let r = s.http.delete(&url).send().await.unwrap();
        assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    }
    // Pushing under a name that is not a tag is still the client's mistake.
    let m = image_manifest(&sha256(b"c"), 1, &[]);
    let r = s
        .put_manifest("team/app", "-latest", OCI_MANIFEST, &m)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let r = s
        .put_manifest("team/app", "sha256:zz", OCI_MANIFEST, &m)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

/// A `PATCH` whose `Content-Range` does not match the bytes that arrive (a chunked body,
/// so no `Content-Length` catches it) is refused and leaves the session as it was.
async fn chunk_whose_body_disagrees_with_its_range_is_refused(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let r = s
        .http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = s.url(r.headers()["location"].to_str().unwrap());
    let data = bytes_of(50, 7);
    let chunked = |bytes: Vec<u8>| {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(bytes)];
        reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
    };
    for range in ["0-99", "0-9"] {
        let r = s
            .http
            .patch(&loc)
            .header("Content-Range", range)
            .body(chunked(data.clone()))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
        let r = s.http.get(&loc).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["range"], "0-0", "after a lying {range} chunk");
    }
    let r = s
        .http
        .patch(&loc)
        .header("Content-Range", "0-49")
        .body(chunked(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], "0-49");
    let d = sha256(&data);
    let r = s
        .http
        .put(format!("{loc}?digest={d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// A descriptor's `size` must be the stored blob's: clients trust it when they pull.
async fn descriptor_size_must_match_the_blob(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let config = b"{}".to_vec();
    let layer = bytes_of(1000, 3);
    let c = s.push_blob("team/app", &config).await;
    let l = s.push_blob("team/app", &layer).await;
    let wrong_layer = image_manifest(&c, config.len(), &[(&l, 999)]);
    let r = s
        .put_manifest("team/app", "v1", OCI_MANIFEST, &wrong_layer)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let wrong_config = image_manifest(&c, 3, &[(&l, layer.len())]);
    let r = s
        .put_manifest("team/app", "v1", OCI_MANIFEST, &wrong_config)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let right = image_manifest(&c, config.len(), &[(&l, layer.len())]);
    let r = s.put_manifest("team/app", "v1", OCI_MANIFEST, &right).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let child = serde_json::to_vec(&right).unwrap();
    let index = |size: usize| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::support::OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&child), "size": size}],
        })
    };
    let r = s
        .put_manifest("team/app", "idx", crate::support::OCI_INDEX, &index(1))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    let r = s
        .put_manifest(
            "team/app",
            "idx",
            crate::support::OCI_INDEX,
            &index(child.len()),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

crate::on_every_backend!(
    chunk_whose_body_disagrees_with_its_range_is_refused,
    descriptor_size_must_match_the_blob,
);

/// RFC 9110: a `Range` the server cannot or will not honour as one range is ignored (200,
/// the whole blob); only a well-formed single range outside the blob is 416.
#[tokio::test]
async fn malformed_and_multi_ranges_are_ignored() {
    let s = TestServer::start().await;
    let data = bytes_of(1000, 5);
    let d = s.push_blob("team/app", &data).await;
    let url = s.url(&format!("/v2/team/app/blobs/{d}"));
    for range in [
        "bytes=0-1,5-6",
        "bytes=0-9, 20-29",
        "bytes=5-1",
        "bytes=abc",
        "bytes=",
        "items=0-9",
        "bytes 0-9",
    ] {
        let r = s
            .http
            .get(&url)
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "Range: {range}");
        assert!(!r.headers().contains_key("content-range"), "Range: {range}");
        assert_eq!(r.bytes().await.unwrap(), data, "Range: {range}");
    }
    let r = s
        .http
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), data[10..20]);
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let r = s
            .http
            .get(&url)
            .header("Range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-range"], "bytes */1000");
        assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    }
}

#[tokio::test]
async fn content_range_ending_at_u64_max_is_refused_not_overflowed() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    for range in [format!("0-{}", u64::MAX), format!("1-{}", u64::MAX)] {
        let answer = raw(
            &s,
            format!(
                "PATCH {loc} HTTP/1.1\r\nHost: registry\r\nContent-Range: {range}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(
            answer.starts_with("HTTP/1.1 416") && answer.contains("RANGE_INVALID"),
            "Content-Range {range}: {answer:?}"
        );
    }
    // The server is still there, and the session untouched.
    let r = s.http.get(s.url(&loc)).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-0");
}

#[tokio::test]
async fn search_page_at_usize_max_is_an_empty_page_not_an_overflow() {
    let s = TestServer::start().await;
    s.push_image("team/app", "latest", b"layer").await;
    for query in [
        format!("q=app&page={}", usize::MAX),
        format!("q=app&page={}&n=100", usize::MAX / 2),
    ] {
        let answer = raw(
            &s,
            format!(
                "GET /v1/search?{query} HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{query}: {answer:?}");
        assert!(answer.contains("\"results\":[]"), "{query}: {answer:?}");
        assert!(answer.contains("\"num_results\":1"), "{query}: {answer:?}");
    }
}

/// `/healthz` is anonymous and unlimited, so its write probe is shared: calls within a few
/// seconds reuse the last result instead of each writing and fsyncing a file.
#[tokio::test]
async fn healthz_shares_one_probe_between_close_calls() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Every probe stages a file in `wharf/tmp` and removes it again, which touches the directory.
    let staging = s.root.join("wharf/tmp");
    // So does the GC scheduler once at start-up, writing `gc/since`: wait for it to finish.
    let since = s.root.join("wharf/records/gc/since");
    for _ in 0..500 {
        let staged = std::fs::read_dir(&staging).map_or(0, |d| d.count());
        if since.exists() && staged == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before = std::fs::metadata(&staging).unwrap().modified().unwrap();
    let calls = (0..20).map(|_| async {
        let r = s.http.get(s.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    });
    futures_util::future::join_all(calls).await;
    let after = std::fs::metadata(&staging).unwrap().modified().unwrap();
    assert_eq!(before, after, "a /healthz call probed storage again");
}
