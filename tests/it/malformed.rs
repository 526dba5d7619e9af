//! Malformed input on a raw socket: path tricks, bad names, broken HTTP, truncated bodies.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{assert_error, TestServer};

/// Sends raw bytes and returns everything the server answers until it closes or goes quiet.
async fn raw(s: &TestServer, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n")
                    && String::from_utf8_lossy(&out).contains("\"errors\"")
                {
                    break;
                }
            }
            Ok(Err(_)) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: registry\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn path_tricks_never_leave_the_root() {
    let s = TestServer::start().await;
    for path in [
        "/v2/../x/tags/list",
        "/v2/a/../../etc/tags/list",
        "/v2/%2e%2e/x/tags/list",
        "/v2/a%2F..%2F..%2Fetc/tags/list",
        "/v2/a/blobs/sha256:..%2F..%2F..%2Fetc%2Fpasswd",
    ] {
        let answer = raw(&s, &get(path)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(
            answer.contains("NAME_INVALID")
                || answer.contains("DIGEST_INVALID")
                || answer.contains("MANIFEST_INVALID"),
            "{path}: {answer}"
        );
    }
    // A reference that cannot be a tag names nothing: not found, and nothing is touched.
    let answer = raw(&s, &get("/v2/a/manifests/..%2F..%2Fx")).await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("MANIFEST_UNKNOWN"), "{answer}");
    let r = raw(&s, b"PUT /v2/../../tmp/x/manifests/latest HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}").await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(!s.root.parent().unwrap().join("tmp").exists());
}

#[tokio::test]
async fn bad_names_are_name_invalid() {
    let s = TestServer::start().await;
    let long = "a".repeat(300);
    for name in [
        "Upper/case",
        long.as_str(),
        "a//b",
        "-leading",
        "trailing-",
        "a..b",
    ] {
        let r = s
            .http
            .get(s.url(&format!("/v2/{name}/tags/list")))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        let r = s
            .http
            .post(s.url(&format!("/v2/{name}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    }
    let entries = std::fs::read_dir(s.root.join("docker/registry/v2/repositories"))
        .unwrap()
        .count();
    assert_eq!(entries, 0, "nothing was created for invalid names");
}

#[tokio::test]
async fn broken_http_gets_400_and_the_server_keeps_serving() {
    let s = TestServer::start().await;
    let answer = raw(&s, b"THIS IS NOT HTTP\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    let huge = format!(
        "GET /v2/ HTTP/1.1\r\nHost: r\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let answer = raw(&s, huge.as_bytes()).await;
    assert!(
        answer.is_empty()
            || answer.starts_with("HTTP/1.1 431")
            || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    let r = s.http.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn truncated_chunk_keeps_what_arrived_and_the_session_resumes() {
    let s = TestServer::start().await;
    let r = s
        .http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    // Promise 1000 bytes, send 10, hang up.
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let head = format!("PATCH {loc} HTTP/1.1\r\nHost: r\r\nContent-Length: 1000\r\n\r\n0123456789");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.shutdown().await.unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut sink)).await;
    drop(conn);
    // The server noticed the broken body; the session holds exactly what arrived.
    let mut range = String::new();
    for _ in 0..50 {
        let r = s.http.get(s.url(&loc)).send().await.unwrap();
        range = r.headers()["range"].to_str().unwrap().to_owned();
        if range == "0-9" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(range, "0-9");
    let rest = vec![b'x'; 5];
    let mut all = b"0123456789".to_vec();
    all.extend_from_slice(&rest);
    let d = crate::support::sha256(&all);
    let r = s
        .http
        .put(s.url(&format!("{loc}?digest={d}")))
        .header("Content-Range", "10-14")
        .body(rest)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}
