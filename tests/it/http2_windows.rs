//! HTTP/2 receive windows large enough for a push over a long round trip, read from the
//! server's first frames as any HTTP/2 client sees them; over TLS, within the server's
//! window budget.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crate::pki::Pki;
use crate::support::TestServer;

const MIB: u32 = 1 << 20;

fn plain(addr: SocketAddr) -> TcpStream {
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    sock
}

/// A TLS connection to `addr` (as registry.test) that chose h2 by ALPN.
fn tls_h2(pki: &Pki, addr: SocketAddr) -> impl Read + Write {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = "registry.test".try_into().unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, plain(addr))
}

/// What an HTTP/2 client learns from the server's first frames: the initial stream window
/// (SETTINGS_INITIAL_WINDOW_SIZE), the connection window (65535 plus the first
/// WINDOW_UPDATE on stream 0) and the largest frame it may send (SETTINGS_MAX_FRAME_SIZE).
fn http2_windows(mut sock: impl Read + Write) -> (u32, u32, u32) {
    // The client preface and an empty SETTINGS frame.
    sock.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let (mut stream, mut connection, mut frame) = (65_535, 65_535, 16_384);
    let mut seen_settings = false;
    let mut seen_update = false;
    while !(seen_settings && seen_update) {
        let mut head = [0u8; 9];
        if sock.read_exact(&mut head).is_err() {
            break; // no WINDOW_UPDATE: the connection window stayed at 65535
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream_id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        let mut payload = vec![0u8; len];
        sock.read_exact(&mut payload).unwrap();
        match kind {
            0x4 if flags & 1 == 0 => {
                for s in payload.chunks(6) {
                    let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                    match u16::from_be_bytes([s[0], s[1]]) {
                        0x4 => stream = value,
                        0x5 => frame = value,
                        _ => {}
                    }
                }
                seen_settings = true;
                // Acknowledge, so the server goes on.
                sock.write_all(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
                    .unwrap();
            }
            0x8 if stream_id == 0 => {
                connection += u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                seen_update = true;
            }
            _ => {}
        }
    }
    (stream, connection, frame)
}

/// A TLS server with `limits` on an ephemeral port, and its certificates.
async fn tls_server(limits: &str) -> (TestServer, SocketAddr, Pki) {
    let pki = Pki::new();
    let leaf = pki.leaf("registry", &["registry.test"]);
    let (server, addrs) = TestServer::start_config(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"on\"\n[limits]\n{limits}\n\
         [[server]]\nnames = [\"registry.test\"]\ndefault = true\n\
         tls = {{ cert = {:?}, key = {:?} }}\n",
        leaf.cert.display().to_string(),
        leaf.key.display().to_string()
    ))
    .await;
    (server, addrs[0], pki)
}

/// At a 40 ms round trip, hyper's default 1 MiB windows held an HTTP/2 push to about
/// 25 MB/s, and 16 MiB to about 250 MB/s, against 600 over HTTP/1.1. The windows are now a
/// bandwidth-delay budget, given to connections that chose h2 over TLS.
#[tokio::test]
async fn http2_windows_carry_a_long_round_trip() {
    let (_s, addr, pki) = tls_server("").await;
    let got = tokio::task::spawn_blocking(move || http2_windows(tls_h2(&pki, addr)))
        .await
        .unwrap();
    assert_eq!(got, (48 * MIB, 96 * MIB, 256 << 10));
}

#[tokio::test]
async fn http2_windows_follow_the_limits() {
    let (_s, addr, pki) = tls_server("http2_stream_window = 4194304").await;
    let got = tokio::task::spawn_blocking(move || http2_windows(tls_h2(&pki, addr)))
        .await
        .unwrap();
    assert_eq!(got, (4 * MIB, 8 * MIB, 256 << 10));
}

/// Plain connections (nearly all HTTP/1.1) take no share of the budget, so h2 without TLS
/// gets the floor: 1 MiB per stream, 2 MiB per connection.
#[tokio::test]
async fn plain_http2_gets_the_floor() {
    let s = TestServer::start().await;
    let addr = s.addr;
    let got = tokio::task::spawn_blocking(move || http2_windows(plain(addr)))
        .await
        .unwrap();
    assert_eq!(got, (MIB, 2 * MIB, 256 << 10));
}

/// Windows are leased from `limits.http2_window_budget` while a connection is open: with
/// room for one connection's, a second connection at the same time gets the floor, and a
/// connection after the first one closed gets the full windows again.
#[tokio::test]
async fn connections_share_the_window_budget() {
    let limits = "http2_stream_window = 8388608\nhttp2_window_budget = 16777216";
    let (_s, addr, pki) = tls_server(limits).await;
    let got = tokio::task::spawn_blocking(move || {
        let mut first = tls_h2(&pki, addr);
        let full = http2_windows(&mut first);
        let second = http2_windows(tls_h2(&pki, addr));
        drop(first);
        // The server sees the close a moment later.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut again = http2_windows(tls_h2(&pki, addr));
        while again != full && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            again = http2_windows(tls_h2(&pki, addr));
        }
        (full, second, again)
    })
    .await
    .unwrap();
    let full = (8 * MIB, 16 * MIB, 256 << 10);
    assert_eq!(got, (full, (MIB, 2 * MIB, 256 << 10), full));
}
