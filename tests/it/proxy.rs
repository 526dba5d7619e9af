//! `gateway::proxy` against real hyper servers on 127.0.0.1:0: path mapping, header
//! rewriting, redirects, streaming in both directions, pooling, timeouts and failures.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use wharf::gateway::proxy::{Forwarded, ProxyError, Upstream};
use wharf::http_util::{self, Body};

const PATIENT: Duration = Duration::from_secs(10);

/// An upstream server; `accepted` counts its TCP connections.
struct Origin {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

async fn origin<F, Fut>(handler: F) -> Origin
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            let service = service_fn(move |req| {
                let answer = handler(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    Origin { addr, accepted }
}

/// An upstream that answers each connection with `reply` written raw, then closes.
async fn raw_origin(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(reply).await;
        }
    });
    addr
}

/// A stand-in for the gateway: a real HTTP server that proxies every request under `prefix`.
async fn front(upstream: Upstream, prefix: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let upstream = upstream.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let upstream = upstream.clone();
                async move {
                    let host = req.headers().get("host").and_then(|v| v.to_str().ok());
                    let fwd = Forwarded {
                        client_ip: peer.ip(),
                        scheme: "http",
                        host: host.unwrap_or_default().to_owned(),
                        route_prefix: prefix.to_owned(),
                    };
                    let status = match upstream.forward(req, &fwd).await {
                        Ok(response) => return Ok::<_, Infallible>(response),
                        Err(ProxyError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
                        Err(_) => StatusCode::BAD_GATEWAY,
                    };
                    Ok(http_util::Reply::new(status).empty())
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

fn upstream_at(addr: SocketAddr, base: &str, response_timeout: Duration) -> Upstream {
    let url = format!("http://{addr}{base}").parse().unwrap();
    Upstream::new(url, Duration::from_secs(2), response_timeout).unwrap()
}

fn fwd(prefix: &str) -> Forwarded {
    Forwarded {
        client_ip: [192, 0, 2, 7].into(),
        scheme: "https",
        host: "registry.example:8443".to_owned(),
        route_prefix: prefix.to_owned(),
    }
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(path).body(Empty::new()).unwrap()
}

/// Echoes the request target in `x-target` and the request headers as `name: value` lines.
async fn echo(req: Request<Incoming>) -> Response<Body> {
    let target = req.uri().to_string();
    let mut lines = String::new();
    for (name, value) in req.headers() {
        lines.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    lines.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
    http_util::Reply::new(StatusCode::OK)
        .header(http::header::HeaderName::from_static("x-target"), target)
        .body(http_util::full(lines))
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// Chunk `i` of a deterministic test payload.
fn chunk(i: usize, len: usize) -> Bytes {
    (0..len).map(|j| (i * 31 + j * 7 + j / 251) as u8).collect()
}

#[tokio::test]
async fn paths_and_queries_map_under_the_prefix() {
    let o = origin(echo).await;
    let up = upstream_at(o.addr, "/base/", PATIENT);

    let err = up.forward(get("/mirror/../admin"), &fwd("/mirror/")).await;
    assert!(matches!(err, Err(ProxyError::BadPath { .. })), "{err:?}");
    let err = up.forward(get("/elsewhere/x"), &fwd("/mirror/")).await;
    assert!(matches!(err, Err(ProxyError::BadPath { .. })), "{err:?}");
    assert_eq!(
        o.accepted.load(Ordering::SeqCst),
        0,
        "refused before connecting"
    );

    for (path, prefix, expected) in [
        (
            "/mirror/v2/a%2Fb/tags/list?n=1&last=%20x",
            "/mirror/",
            "/base/v2/a%2Fb/tags/list?n=1&last=%20x",
        ),
        ("/mirror/", "/mirror/", "/base/"),
        ("/mirror", "/mirror/", "/base"),
        ("/v2/?q", "/", "/base/v2/?q"),
    ] {
        let response = up.forward(get(path), &fwd(prefix)).await.unwrap();
        assert_eq!(
            header(response.headers(), "x-target"),
            Some(expected),
            "{path}"
        );
    }
}

/// h2 clients reach the gateway too; the upstream always gets HTTP/1.1 with a Host header.
#[tokio::test]
async fn an_http2_request_goes_upstream_as_http1() {
    let o = origin(|req| async move {
        let seen = format!("{:?} {:?}", req.version(), req.headers().get("host"));
        http_util::Reply::new(StatusCode::OK).body(http_util::full(seen))
    })
    .await;
    let up = upstream_at(o.addr, "/", PATIENT);
    let req = Request::get("https://registry.example:8443/v2/")
        .version(http::Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = up.forward(req, &fwd("/")).await.unwrap();
    let expected = format!("HTTP/1.1 Some({:?})", o.addr.to_string());
    assert_eq!(text(response).await, expected);
}

#[tokio::test]
async fn headers_are_rewritten_and_hop_by_hop_headers_stripped_both_ways() {
    let o = origin(|req| async move {
        let mut response = echo(req).await;
        let h = response.headers_mut();
        h.insert("connection", "X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        response
    })
    .await;
    let up = upstream_at(o.addr, "/", PATIENT);
    let req = Request::post("/x")
        .header("host", "registry.example:8443")
        .header("x-forwarded-for", "198.51.100.1")
        .header("x-forwarded-proto", "gopher")
        .header("connection", "keep-alive, X-Hop")
        .header("x-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("proxy-connection", "keep-alive")
        .header("te", "trailers")
        .header("trailer", "x-checksum")
        .header("upgrade", "websocket")
        .header("proxy-authorization", "Basic cHJveHk6cHc=")
        .header("authorization", "Bearer end-to-end")
        .header("content-length", "5")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let response = up.forward(req, &fwd("/")).await.unwrap();

    let h = response.headers();
    assert_eq!(header(h, "x-kept"), Some("1"));
    for gone in ["connection", "x-secret", "keep-alive", "proxy-authenticate"] {
        assert_eq!(header(h, gone), None, "response header {gone}");
    }
    let seen = text(response).await;
    let lines: Vec<&str> = seen.lines().collect();
    let host = format!("host: {}", o.addr);
    for expected in [
        host.as_str(),
        "x-forwarded-for: 198.51.100.1, 192.0.2.7",
        "x-forwarded-proto: https",
        "x-forwarded-host: registry.example:8443",
        "x-real-ip: 192.0.2.7",
        "authorization: Bearer end-to-end",
        "content-length: 5",
        "body: hello",
    ] {
        assert!(lines.contains(&expected), "{expected:?} missing in\n{seen}");
    }
    for gone in [
        "x-hop:",
        "keep-alive:",
        "proxy-connection:",
        "te:",
        "trailer:",
        "upgrade:",
        "proxy-authorization:",
        "transfer-encoding:",
    ] {
        assert!(!seen.contains(gone), "{gone} reached the upstream:\n{seen}");
    }
}

#[tokio::test]
async fn locations_pointing_into_the_upstream_are_rewritten() {
    let o = origin(|req| async move {
        let own = req.headers()["host"].to_str().unwrap().to_owned();
        let (location, content_location) = match req.uri().path() {
            "/base/absolute" => (format!("http://{own}/base/v2/u/1?_state=x"), "/base/v2/c"),
            "/base/foreign" => ("http://elsewhere/base/x".to_owned(), "/not-base/c"),
            _ => ("/base/v2/relative?y".to_owned(), "relative"),
        };
        http_util::Reply::new(StatusCode::ACCEPTED)
            .header(http::header::LOCATION, location)
            .header(http::header::CONTENT_LOCATION, content_location)
            .empty()
    })
    .await;
    let up = upstream_at(o.addr, "/base", PATIENT);
    let mut seen = Vec::new();
    for path in ["/mirror/absolute", "/mirror/foreign", "/mirror/relative"] {
        let response = up.forward(get(path), &fwd("/mirror/")).await.unwrap();
        let h = response.headers();
        seen.push((
            header(h, "location").unwrap().to_owned(),
            header(h, "content-location").unwrap().to_owned(),
        ));
    }
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(
        seen,
        [
            pair(
                "https://registry.example:8443/mirror/v2/u/1?_state=x",
                "/mirror/v2/c"
            ),
            pair("http://elsewhere/base/x", "/not-base/c"),
            pair("/mirror/v2/relative?y", "relative"),
        ]
    );
}

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 64;

/// 64 MiB up and 64 MiB down through a real front server (the request body is hyper's
/// `Incoming`, as in the gateway), compared by SHA-256.
#[tokio::test]
async fn large_bodies_stream_both_ways_through_a_front_server() {
    let o = origin(|req| async move {
        if req.method() == http::Method::GET {
            let chunks =
                stream::iter(0..CHUNKS).map(|i| Ok::<_, io::Error>(Frame::data(chunk(i, CHUNK))));
            return http_util::Reply::new(StatusCode::OK)
                .header(http::header::CONTENT_LENGTH, CHUNK * CHUNKS)
                .body(BodyExt::boxed_unsync(StreamBody::new(chunks)));
        }
        let framing = format!(
            "{:?} {:?}",
            req.headers().get("content-length"),
            req.headers().get("transfer-encoding")
        );
        let mut body = req.into_body();
        let mut hash = Sha256::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                hash.update(&data);
            }
        }
        let digest = hex::encode(hash.finalize());
        http_util::Reply::new(StatusCode::CREATED)
            .body(http_util::full(format!("{digest} {framing}")))
    })
    .await;
    let addr = front(upstream_at(o.addr, "/", PATIENT), "/").await;
    let client = reqwest::Client::new();

    let mut payload = Vec::with_capacity(CHUNK * CHUNKS);
    for i in 0..CHUNKS {
        payload.extend_from_slice(&chunk(i, CHUNK));
    }
    let expected = hex::encode(Sha256::digest(&payload));
    let response = client
        .put(format!("http://{addr}/upload"))
        .body(payload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.text().await.unwrap(),
        format!("{expected} Some({:?}) None", (CHUNK * CHUNKS).to_string()),
        "digest, then Content-Length kept and no chunking"
    );

    let response = client
        .get(format!("http://{addr}/download"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.content_length(), Some((CHUNK * CHUNKS) as u64));
    let mut hash = Sha256::new();
    let mut download = response.bytes_stream();
    while let Some(bytes) = download.next().await {
        hash.update(bytes.unwrap());
    }
    assert_eq!(hex::encode(hash.finalize()), expected);
}

/// A body fed from a channel, so a test decides when each chunk exists.
fn channel_body(
    rx: mpsc::Receiver<Bytes>,
) -> StreamBody<impl Stream<Item = Result<Frame<Bytes>, io::Error>>> {
    let chunks = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    StreamBody::new(chunks.map(|b| Ok(Frame::data(b))))
}

/// Neither direction waits for a whole body: the upstream sees the first chunk of the
/// upload before the second exists, and the client gets the first chunk of the download
/// before the upstream has produced the second.
#[tokio::test]
async fn bodies_are_relayed_chunk_by_chunk() {
    let (first_seen_tx, mut first_seen) = mpsc::channel::<()>(1);
    let (down_tx, down_rx) = mpsc::channel::<Bytes>(1);
    let down_rx = Arc::new(tokio::sync::Mutex::new(Some(down_rx)));
    let o = origin(move |req| {
        let first_seen_tx = first_seen_tx.clone();
        let down_rx = down_rx.clone();
        async move {
            let mut body = req.into_body();
            let mut received = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    if received == 0 {
                        first_seen_tx.send(()).await.unwrap();
                    }
                    received += data.len();
                }
            }
            assert_eq!(received, 6);
            let rx = down_rx.lock().await.take().unwrap();
            http_util::Reply::new(StatusCode::OK).body(BodyExt::boxed_unsync(channel_body(rx)))
        }
    })
    .await;
    let up = upstream_at(o.addr, "/", PATIENT);

    let (up_tx, up_rx) = mpsc::channel::<Bytes>(1);
    let req = Request::put("/x").body(channel_body(up_rx)).unwrap();
    let pending = tokio::spawn(async move { up.forward(req, &fwd("/")).await });
    up_tx.send(Bytes::from_static(b"abc")).await.unwrap();
    tokio::time::timeout(PATIENT, first_seen.recv())
        .await
        .expect("first upload chunk relayed alone");
    up_tx.send(Bytes::from_static(b"def")).await.unwrap();
    drop(up_tx);

    let response = pending.await.unwrap().unwrap();
    let mut body = response.into_body();
    down_tx.send(Bytes::from_static(b"one")).await.unwrap();
    let first = tokio::time::timeout(PATIENT, body.frame())
        .await
        .expect("first download chunk relayed alone");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "one");
    down_tx.send(Bytes::from_static(b"two")).await.unwrap();
    drop(down_tx);
    assert_eq!(body.collect().await.unwrap().to_bytes(), "two");
}

#[tokio::test]
async fn sequential_requests_reuse_one_pooled_connection() {
    let o = origin(echo).await;
    let up = upstream_at(o.addr, "/", PATIENT);
    for _ in 0..5 {
        let response = up.forward(get("/v2/"), &fwd("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        text(response).await;
    }
    assert_eq!(o.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let up = upstream_at(addr, "/", PATIENT);
    match up.forward(get("/v2/"), &fwd("/")).await {
        Err(ProxyError::Unreachable { upstream, source }) => {
            assert!(source.is_connect(), "{source:?}");
            assert!(upstream.contains(&addr.to_string()), "{upstream}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_upstream_closing_before_its_headers_is_unreachable() {
    let addr = raw_origin(b"HTTP/1.1 200 O").await;
    let up = upstream_at(addr, "/", PATIENT);
    match up.forward(get("/v2/"), &fwd("/")).await {
        Err(ProxyError::Unreachable { source, .. }) => assert!(!source.is_connect()),
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_upstream_breaking_off_its_body_fails_the_relayed_body() {
    let addr = raw_origin(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b").await;
    let up = upstream_at(addr, "/", PATIENT);
    let response = up.forward(get("/v2/"), &fwd("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.into_body().collect().await.is_err());
}

#[tokio::test]
async fn a_silent_upstream_times_out() {
    let o = origin(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        http_util::Reply::new(StatusCode::OK).empty()
    })
    .await;
    let up = upstream_at(o.addr, "/", Duration::from_millis(200));
    let started = Instant::now();
    let result = up.forward(get("/v2/"), &fwd("/")).await;
    assert!(
        matches!(result, Err(ProxyError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The response timeout counts from the last chunk the upstream took: an upload that keeps
/// moving may take longer than the timeout in total.
#[tokio::test]
async fn a_progressing_upload_outlives_the_response_timeout() {
    let o = origin(echo).await;
    let up = upstream_at(o.addr, "/", Duration::from_millis(300));
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            tx.send(Bytes::from_static(b"x")).await.unwrap();
        }
    });
    let started = Instant::now();
    let req = Request::put("/x").body(channel_body(rx)).unwrap();
    let response = up.forward(req, &fwd("/")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(text(response).await.contains("body: xxxxxx"));
}

#[tokio::test]
async fn a_failing_client_body_is_the_clients_fault() {
    let o = origin(echo).await;
    let up = upstream_at(o.addr, "/", PATIENT);
    let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"partial"))),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let req = Request::put("/x")
        .body(StreamBody::new(stream::iter(frames)))
        .unwrap();
    let result = up.forward(req, &fwd("/")).await;
    assert!(
        matches!(result, Err(ProxyError::ClientBody { .. })),
        "{result:?}"
    );
}
