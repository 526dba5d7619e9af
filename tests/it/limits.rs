//! Connection and request limits: connections per client IP, header size, per-route body size.

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{assert_error, sha256, TestServer};

async fn get_v2(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn connections_per_ip_are_capped() {
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[limits]\nmax_connections_per_ip = 2\n",
    )
    .await;
    let mut a = TcpStream::connect(s.addr).await.unwrap();
    let mut b = TcpStream::connect(s.addr).await.unwrap();
    assert!(get_v2(&mut a).await.starts_with("HTTP/1.1 200"));
    assert!(get_v2(&mut b).await.starts_with("HTTP/1.1 200"));
    // The third is closed without an answer.
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    let _ = c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = Vec::new();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read_to_end(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "closed without a response: {:?}",
        String::from_utf8_lossy(&buf)
    );
    // A slot frees up when a connection ends.
    drop(a);
    let mut ok = false;
    for _ in 0..100 {
        let mut d = TcpStream::connect(s.addr).await.unwrap();
        if d.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .is_ok()
        {
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_secs(2), d.read(&mut buf)).await
            {
                if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200") {
                    ok = true;
                    break;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(ok, "a freed slot is usable again");
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[limits]\nmax_header_bytes = 65536\n",
    )
    .await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let req = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let _ = conn.write_all(req.as_bytes()).await;
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn route_body_limits_answer_413() {
    let toml = "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nregistry = {}\nmax_body_bytes = 1000\n";
    let (s, _) = TestServer::start_config(toml).await;
    let small = vec![1u8; 500];
    let r = s
        .http
        .post(s.url(&format!("/v2/a/blobs/uploads/?digest={}", sha256(&small))))
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let big = vec![2u8; 2000];
    let d = sha256(&big);
    let r = s
        .http
        .post(s.url(&format!("/v2/a/blobs/uploads/?digest={d}")))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    // A chunked body with no announced length fails once it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let r = s
        .http
        .post(s.url(&format!("/v2/a/blobs/uploads/?digest={d}")))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = s
        .http
        .head(s.url(&format!("/v2/a/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "nothing over the limit was stored"
    );
}
