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

/// Waits until the server closes `conn` (EOF or reset), at most `within`; returns how long
/// that took, or `None` when the connection was still open.
async fn closed_within(
    conn: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + within),
            conn.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// A TLS client connection to `addr` that trusts `ca_pem` and names `127.0.0.1`.
async fn tls_connect(
    ca_pem: &str,
    addr: std::net::SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// A plain listener and a TLS listener with short deadlines: 1 s to the first request's
/// headers, 2 s idle between requests.
async fn short_deadlines(pki: &crate::pki::Pki) -> (TestServer, Vec<std::net::SocketAddr>) {
    let leaf = pki.leaf("ip", &["127.0.0.1"]);
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"on\"\n\
         [[server]]\nnames = [\"127.0.0.1\"]\ndefault = true\ntls = {{ cert = {:?}, key = {:?} }}\n\
         [limits]\nheader_read_timeout = \"1s\"\nkeepalive_timeout = \"2s\"\n",
        leaf.cert, leaf.key
    );
    TestServer::start_config(&toml).await
}

/// A TCP connection that never sends a byte, and a TLS connection that completes its
/// handshake and then says nothing, are both closed at the first-request deadline.
#[tokio::test]
async fn silent_connections_are_closed_at_the_first_request_deadline() {
    let pki = crate::pki::Pki::new();
    let (_s, addrs) = short_deadlines(&pki).await;
    let mut tcp = TcpStream::connect(addrs[0]).await.unwrap();
    let mut tls = tls_connect(&pki.ca_pem, addrs[1]).await;
    let (tcp_closed, tls_closed) = tokio::join!(
        closed_within(&mut tcp, Duration::from_secs(20)),
        closed_within(&mut tls, Duration::from_secs(20)),
    );
    for (what, closed) in [("silent TCP", tcp_closed), ("silent TLS", tls_closed)] {
        let took = closed.unwrap_or_else(|| panic!("{what} connection still open after 20 s"));
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed after {took:?}"
        );
    }
}

/// After an answer, a keep-alive connection may stay idle for `keepalive_timeout`, not
/// longer.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed_at_the_keepalive_timeout() {
    let pki = crate::pki::Pki::new();
    let (_s, addrs) = short_deadlines(&pki).await;
    let mut conn = TcpStream::connect(addrs[0]).await.unwrap();
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let (head, _) = read_response(&mut conn, &mut buf).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let took = closed_within(&mut conn, Duration::from_secs(20))
        .await
        .expect("an idle keep-alive connection is closed");
    // Longer than the 1 s header deadline: the keep-alive timeout is its own setting.
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
}

/// The descriptors a process holds.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// GET /v2/ from 127.0.0.1 until it is answered (the cap may be full for a while);
/// returns how long that took.
async fn served_within(addr: std::net::SocketAddr, within: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if let Ok(mut conn) = TcpStream::connect(addr).await {
            let _ = conn
                .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let mut buf = Vec::new();
            if let Some((head, _)) = read_response(&mut conn, &mut buf).await {
                if head.starts_with("HTTP/1.1 200") {
                    return Some(started.elapsed());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Five source addresses each open eight silent sockets (40, over the cap of 20) against a
/// real `wharf serve`: its descriptors stay within the cap, the silent sockets are closed
/// at the deadline, and an ordinary client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_many_addresses_cannot_exhaust_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n\
         [limits]\nmax_connections = 20\nmax_connections_per_ip = 8\nheader_read_timeout = \"2s\"\n",
        dir.path().join("data").display().to_string()
    );
    let wharf = crate::support::WharfProcess::spawn_config(dir.path(), &toml);
    let pid = wharf.child.id();
    let baseline = open_fds(pid);
    let mut silent = Vec::new();
    for host in 2..=6u8 {
        for _ in 0..8 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(std::net::SocketAddr::from(([127, 0, 0, host], 0)))
                .unwrap();
            silent.push(socket.connect(wharf.addr).await.unwrap());
        }
    }
    // Sampled while the server takes them in: never more than the cap.
    let mut peak = 0;
    for _ in 0..20 {
        peak = peak.max(open_fds(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        peak <= baseline + 20 + 2,
        "descriptors: {baseline} at rest, {peak} with 40 silent sockets (cap 20)"
    );
    let took = served_within(wharf.addr, Duration::from_secs(20)).await;
    assert!(took.is_some(), "an ordinary client was never served");
    for (i, conn) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(conn, Duration::from_secs(20)).await.is_some(),
            "silent socket {i} still open"
        );
    }
    let after = open_fds(pid);
    assert!(
        after <= baseline + 2,
        "descriptors: {baseline} at rest, {after} after"
    );
    eprintln!("fds: {baseline} at rest, peak {peak} with 40 silent sockets, {after} after; ordinary client served after {took:?}");
}

/// `curl http://` to a `tls = "on"` port gets a 400 that says to use https (nginx: "The
/// plain HTTP request was sent to HTTPS port"), not a TLS alert curl calls "HTTP/0.9".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_a_tls_port_is_told_to_use_https() {
    if !crate::support::have_program("curl", "curl") {
        return;
    }
    let pki = crate::pki::Pki::new();
    let (_s, addrs) = short_deadlines(&pki).await;
    let curl = |path: &'static str| {
        let url = format!("http://{}{path}", addrs[1]);
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", &url])
                .output()
                .unwrap()
        })
    };
    let out = curl("/").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "curl failed: {err}");
    assert!(text.ends_with("\n400"), "{text}");
    assert!(text.contains("https://"), "says to use https: {text}");
    // On registry paths, the OCI error envelope, so clients can show it.
    let out = curl("/v2/").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.ends_with("\n400"), "{text}");
    assert!(
        text.contains("\"errors\"") && text.contains("https"),
        "{text}"
    );
}

fn signal(wharf: &crate::support::WharfProcess, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([name, &wharf.child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill {name} failed");
}

/// SIGTERM, then how long the process took to exit (`None`: still running after `within`).
fn exit_after_sigterm(
    wharf: &mut crate::support::WharfProcess,
    within: Duration,
) -> Option<Duration> {
    let sent = std::time::Instant::now();
    signal(wharf, "-TERM");
    while sent.elapsed() < within {
        if wharf.child.try_wait().unwrap().is_some() {
            return Some(sent.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

fn config_in(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"auto\"\n[storage]\nroot = {:?}\n\
         [tls]\nca_dir = {:?}\n[[server]]\nnames = [\"localhost\"]\ndefault = true\n\
         tls = {{ self_signed = true }}\n{extra}",
        dir.join("data").display().to_string(),
        dir.join("certs").display().to_string()
    )
}

/// An idle server, and one holding a connection that has not sent its first byte yet (an
/// `auto` listener is waiting to tell TLS from plain), both exit at once on SIGTERM rather
/// than after the first-byte deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_promptly_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let toml = config_in(dir.path(), "[limits]\ntls_handshake_timeout = \"30s\"\n");
    let mut idle = crate::support::WharfProcess::spawn_config(dir.path(), &toml);
    let took = exit_after_sigterm(&mut idle, Duration::from_secs(10));
    eprintln!("idle: exit {took:?} after SIGTERM");
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "idle: {took:?}"
    );

    let mut wharf = crate::support::WharfProcess::spawn_config(dir.path(), &toml);
    let mut silent = TcpStream::connect(wharf.addr).await.unwrap();
    // Served first, so the silent connection has surely been accepted.
    assert!(served_within(wharf.addr, Duration::from_secs(10))
        .await
        .is_some());
    let took = exit_after_sigterm(&mut wharf, Duration::from_secs(10));
    eprintln!("with a silent connection: exit {took:?} after SIGTERM");
    assert!(
        took.is_some_and(|t| t < Duration::from_secs(1)),
        "with a silent connection: {took:?}"
    );
    let _ = silent.write_all(b"x").await;
}

/// `shutdown.grace` changed by SIGHUP is the one SIGTERM uses: 60 s at start, 1 s after the
/// reload, with an upload still in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_changed_by_sighup_is_used_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("wharf.log");
    let mut wharf = crate::support::WharfProcess::spawn_logging(
        dir.path(),
        &config_in(dir.path(), "[shutdown]\ngrace = \"60s\"\n"),
        std::fs::File::create(&log).unwrap(),
    );
    std::fs::write(
        dir.path().join("wharf.toml"),
        config_in(dir.path(), "[shutdown]\ngrace = \"1s\"\n"),
    )
    .unwrap();
    signal(&wharf, "-HUP");
    let reloaded = (0..400).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("configuration reloaded"))
    });
    assert!(reloaded, "no reload in the log");
    // An upload whose body stops half way: in flight until the grace ends.
    let mut upload = TcpStream::connect(wharf.addr).await.unwrap();
    upload
        .write_all(b"POST /v2/a/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nhalf")
        .await
        .unwrap();
    assert!(served_within(wharf.addr, Duration::from_secs(10))
        .await
        .is_some());
    let took = exit_after_sigterm(&mut wharf, Duration::from_secs(15));
    eprintln!("grace 60s reloaded to 1s: exit {took:?} after SIGTERM");
    assert!(
        took.is_some_and(|t| t >= Duration::from_millis(900) && t < Duration::from_secs(10)),
        "exit {took:?} after SIGTERM"
    );
}

/// `limits.max_header_bytes` below hyper's 64 KiB buffer is honoured, and the 431 carries
/// the OCI error envelope on `/v2/` paths.
#[tokio::test]
async fn a_small_max_header_bytes_is_honoured_with_the_oci_envelope() {
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[limits]\nmax_header_bytes = 16384\n",
    )
    .await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let mut buf = Vec::new();
    let fits = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(12_000)
    );
    conn.write_all(fits.as_bytes()).await.unwrap();
    let (head, _) = read_response(&mut conn, &mut buf).await.unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "a 12 KB head fits: {head}"
    );
    let over = format!(
        "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    conn.write_all(over.as_bytes()).await.unwrap();
    let (head, body) = read_response(&mut conn, &mut buf).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("\"errors\"") && body.contains("HEADERS_TOO_LARGE"),
        "{body}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "{head}"
    );
}

/// An h2 connection with no stream open is closed (GOAWAY) after `keepalive_timeout`,
/// though it answers every ping.
#[tokio::test]
async fn idle_h2_connections_are_closed_at_the_keepalive_timeout() {
    let pki = crate::pki::Pki::new();
    let (_s, addrs) = short_deadlines(&pki).await;
    let tcp = TcpStream::connect(addrs[0]).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let connection = tokio::spawn(connection);
    let req = http::Request::get(format!("http://127.0.0.1:{}/v2/", addrs[0].port()))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let r = sender.send_request(req).await.unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    let ended = tokio::time::timeout(Duration::from_secs(20), connection).await;
    let took = started.elapsed();
    assert!(
        ended.is_ok(),
        "the idle h2 connection is still open after 20 s"
    );
    assert!(took >= Duration::from_millis(1900), "closed after {took:?}");
}
