//! The connection layer as clients and attackers meet it: responses sent before the body
//! was read, idle connections, connection caps, plain HTTP on a TLS port, shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestServer;

/// Reads one HTTP/1.1 response with a `Content-Length` body; returns its head and body.
async fn read_response(
    conn: &mut (impl tokio::io::AsyncRead + Unpin),
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                return Some((head, body));
            }
        }
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

fn says_close(head: &str) -> bool {
    head.lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "connection:close")
}

/// Sends `head`, then (a moment later, as from a client on a real network) a body of
/// `len` bytes and a second request, as a Go client reusing its connection does. The
/// early answer must have `status`, and the second request must be answered unless the
/// first answer said `Connection: close`. Returns whether it did.
async fn early_answer_then_reuse(s: &TestServer, head: &str, len: usize, status: &str) -> bool {
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let head =
        format!("{head}Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut rd, mut wr) = conn.into_split();
    // Written alongside the reads: a large body may not fit the socket buffers.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&vec![b'x'; len]).await;
        let _ = wr.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").await;
        wr
    });
    let mut buf = Vec::new();
    let (first, _) = read_response(&mut rd, &mut buf)
        .await
        .expect("the early answer");
    assert!(first.starts_with(status), "{first}");
    if says_close(&first) {
        return true;
    }
    let second = read_response(&mut rd, &mut buf).await;
    assert!(
        second
            .as_ref()
            .is_some_and(|(h, _)| h.starts_with("HTTP/1.1 ")),
        "the connection was closed after an answer without `Connection: close`: {second:?}"
    );
    drop(writer);
    false
}

/// 404 for an unknown upload, sent before the PATCH body arrived: the body is drained, so
/// the connection stays usable.
#[tokio::test]
async fn an_early_error_keeps_the_connection_usable() {
    let s = TestServer::start().await;
    let head =
        "PATCH /v2/a/blobs/uploads/00000000-0000-4000-8000-000000000000 HTTP/1.1\r\nHost: x\r\n";
    let closed = early_answer_then_reuse(&s, head, 300_000, "HTTP/1.1 404").await;
    assert!(!closed, "a small body is drained, not a reason to close");
}

/// With logins on, a PUT without credentials gets 401 before its body was read; a body
/// over the drain limit makes the answer say `Connection: close`.
#[tokio::test]
async fn a_401_before_a_large_body_says_connection_close() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.htpasswd");
    std::fs::write(
        &file,
        format!("alice:{}\n", bcrypt::hash("a-pass", 4).unwrap()),
    )
    .unwrap();
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n[server.auth]\n\
         providers = [{{ htpasswd = {file:?} }}]\n\
         access = [{{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\"] }}]\n"
    );
    let (s, _) = TestServer::start_config(&toml).await;
    let head = "PUT /v2/a/blobs/uploads/00000000-0000-4000-8000-000000000000?digest=sha256:00 HTTP/1.1\r\nHost: x\r\n";
    early_answer_then_reuse(&s, head, 100_000, "HTTP/1.1 401").await;
    let closed = early_answer_then_reuse(&s, head, 3 * 1024 * 1024, "HTTP/1.1 401").await;
    assert!(closed, "3 MiB is more than wharf drains");
}
