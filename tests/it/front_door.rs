//! The front door: TLS with per-vhost certificates chosen by SNI, Host/SNI agreement,
//! default servers, routes, redirects, and TLS and plain HTTP on one port.

use reqwest::StatusCode;
use serde_json::Value;

use crate::pki::{https_client, peer_cert, Pki};
use crate::support::{assert_error, TestServer};

/// Two TLS vhosts, `a.test` (default) and `*.b.test`, each with its own certificate and its
/// own storage root.
async fn two_vhosts(
    pki: &Pki,
    listener_tls: &str,
) -> (
    TestServer,
    std::net::SocketAddr,
    [Vec<u8>; 2],
    tempfile::TempDir,
) {
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["*.b.test"]);
    let roots = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
tls = "{listener_tls}"

[[server]]
names = ["a.test"]
default = true
tls = {{ cert = {:?}, key = {:?} }}
[[server.route]]
path = "/"
registry = {{ root = {:?} }}

[[server]]
names = ["*.b.test"]
tls = {{ cert = {:?}, key = {:?} }}
[[server.route]]
path = "/"
registry = {{ root = {:?} }}
[[server.route]]
path = "/old/"
redirect = "https://a.test/new"
redirect_status = 301
"#,
        a.cert,
        a.key,
        roots.path().join("a"),
        b.cert,
        b.key,
        roots.path().join("b")
    );
    let (server, addrs) = TestServer::start_config(&toml).await;
    (server, addrs[0], [a.der, b.der], roots)
}

#[tokio::test]
async fn sni_picks_each_vhosts_certificate() {
    let pki = Pki::new();
    let (_s, addr, [a, b], _roots) = two_vhosts(&pki, "on").await;
    let c = https_client(&pki.ca_pem, &["a.test", "x.b.test", "unknown.test"], addr);
    let port = addr.port();

    let r = c
        .get(format!("https://a.test:{port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(peer_cert(&r), a);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN negotiated h2");

    let r = c
        .get(format!("https://x.b.test:{port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(peer_cert(&r), b, "the wildcard vhost's certificate");

    // An unknown name gets the default server's certificate, which doesn't cover it.
    let err = c
        .get(format!("https://unknown.test:{port}/v2/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err:?}");
}

#[tokio::test]
async fn host_and_sni_must_agree() {
    let pki = Pki::new();
    let (_s, addr, _, _roots) = two_vhosts(&pki, "on").await;
    let c = https_client(&pki.ca_pem, &["a.test"], addr);
    let r = c
        .get(format!("https://a.test:{}/v2/_catalog", addr.port()))
        .header("Host", "x.b.test")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::MISDIRECTED_REQUEST, "MISDIRECTED_REQUEST").await;
}

#[tokio::test]
async fn each_vhost_is_its_own_registry() {
    let pki = Pki::new();
    let (_s, addr, _, roots) = two_vhosts(&pki, "on").await;
    let c = https_client(&pki.ca_pem, &["a.test", "x.b.test"], addr);
    let port = addr.port();
    let d = crate::support::sha256(b"only in a");
    let r = c
        .post(format!(
            "https://a.test:{port}/v2/team/app/blobs/uploads/?digest={d}"
        ))
        .body(&b"only in a"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/app/blobs/{d}").as_str(),
        "relative Location"
    );
    let r = c
        .head(format!("https://a.test:{port}/v2/team/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .head(format!("https://x.b.test:{port}/v2/team/app/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        roots.path().join("a/docker/registry/v2/blobs").is_dir()
            && roots.path().join("b/docker/registry/v2/blobs").is_dir()
    );
}

#[tokio::test]
async fn route_redirects_keep_the_rest_of_the_path() {
    let pki = Pki::new();
    let (_s, addr, _, _roots) = two_vhosts(&pki, "on").await;
    let c = https_client(&pki.ca_pem, &["x.b.test"], addr);
    let r = c
        .get(format!("https://x.b.test:{}/old/page?x=1", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers()["location"], "https://a.test/new/page?x=1");
}

#[tokio::test]
async fn tls_and_plain_http_share_a_port() {
    let pki = Pki::new();
    let (s, addr, _, _roots) = two_vhosts(&pki, "auto").await;
    let c = https_client(&pki.ca_pem, &["a.test"], addr);
    let r = c
        .get(format!("https://a.test:{}/v2/", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Plain HTTP on the same port (what a client told the registry is insecure does).
    let r = s
        .http
        .get(format!("http://{addr}/v2/"))
        .header("Host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({}));
}

#[tokio::test]
async fn no_default_server_refuses_unknown_names() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["a.test"]);
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"auto\"\n[[server]]\nnames = [\"a.test\"]\ntls = {{ cert = {:?}, key = {:?} }}\n",
        a.cert, a.key
    );
    let (s, addrs) = TestServer::start_config(&toml).await;
    let c = https_client(&pki.ca_pem, &["a.test", "other.test"], addrs[0]);
    assert!(c
        .get(format!("https://other.test:{}/v2/", addrs[0].port()))
        .send()
        .await
        .is_err());
    let r = s
        .http
        .get(format!("http://{}/v2/", addrs[0]))
        .header("Host", "other.test")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::MISDIRECTED_REQUEST, "MISDIRECTED_REQUEST").await;
    let r = c
        .get(format!("https://a.test:{}/v2/", addrs[0].port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn plain_listener_redirects_to_https() {
    let pki = Pki::new();
    let a = pki.leaf("a", &["a.test"]);
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"on\"\n[[listener]]\naddress = \"127.0.0.1:0\"\nplain = \"redirect\"\nredirect_port = 8443\n[[server]]\nnames = [\"a.test\"]\ndefault = true\ntls = {{ cert = {:?}, key = {:?} }}\n",
        a.cert, a.key
    );
    let (s, addrs) = TestServer::start_config(&toml).await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://{}/v2/_catalog?n=1", addrs[1]))
        .header("Host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.headers()["location"],
        "https://a.test:8443/v2/_catalog?n=1"
    );
    let r = plain
        .put(format!("http://{}/v2/x/manifests/1", addrs[1]))
        .header("Host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::PERMANENT_REDIRECT,
        "methods with bodies keep them"
    );
    drop(s);
}

/// One TLS vhost for 127.0.0.1, as a client connecting by IP (no SNI) sees it.
async fn ip_vhost(pki: &Pki, extra: &str) -> (TestServer, std::net::SocketAddr) {
    let leaf = pki.leaf("ip", &["127.0.0.1", "localhost"]);
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"on\"\n[[server]]\nnames = [\"127.0.0.1\", \"localhost\"]\ntls = {{ cert = {:?}, key = {:?} }}\n{extra}",
        leaf.cert, leaf.key
    );
    let (s, addrs) = TestServer::start_config(&toml).await;
    (s, addrs[0])
}

/// Runs `openssl s_client` with `args` against `addr`; returns (handshake ok, output).
fn s_client(addr: std::net::SocketAddr, ca: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-CAfile"])
        .arg(ca)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)");
    (ok, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sees_tls12_and_13_only_and_h2() {
    if !crate::support::have_program("openssl", "openssl") {
        return;
    }
    let pki = Pki::new();
    let (_s, addr) = ip_vhost(&pki, "").await;
    let ca = pki.ca_path();
    let run = move |args: &'static [&'static str]| {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || s_client(addr, &ca, args))
    };
    let (ok, text) = run(&["-tls1_3"]).await.unwrap();
    assert!(ok && text.contains("TLSv1.3"), "{text}");
    let (ok, text) = run(&["-tls1_2"]).await.unwrap();
    assert!(ok && text.contains("TLSv1.2"), "{text}");
    // Old protocols are refused by the server even when the client lowers its own floor.
    for old in [
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
        &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
    ] {
        let (ok, text) = run(old).await.unwrap();
        assert!(!ok, "{old:?} must fail: {text}");
    }
    let (ok, text) = run(&["-alpn", "h2"]).await.unwrap();
    assert!(ok && text.contains("ALPN protocol: h2"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn slowloris_is_cut_off_at_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[limits]\nheader_read_timeout = \"5s\"\n",
    )
    .await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    // The client never finishes its headers; the server must hang up on its own.
    let n = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        conn.read_to_end(&mut buf),
    )
    .await;
    assert!(n.is_ok(), "the server closed the connection");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(5) && waited < std::time::Duration::from_secs(10),
        "{waited:?}"
    );
}

#[tokio::test]
async fn upstream_routes_proxy_the_registry_api() {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;
    let upstream = TestServer::start().await;
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nupstream = \"http://{}\"\n",
        upstream.addr
    );
    let (front, _) = TestServer::start_config(&toml).await;
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let layers = vec![ImageLayer::new(
        crate::support::bytes_of(2 << 20, 5),
        "application/vnd.oci.image.layer.v1.tar".into(),
        None,
    )];
    let config = Config::oci_v1(br#"{"os":"linux"}"#.to_vec(), None);
    let through_front: oci_client::Reference =
        format!("{}/team/app:1", front.addr).parse().unwrap();
    client
        .push(
            &through_front,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
    // The image landed on the upstream, byte for byte.
    let direct: oci_client::Reference = format!("{}/team/app:1", upstream.addr).parse().unwrap();
    let pulled = client
        .pull(
            &direct,
            &RegistryAuth::Anonymous,
            vec!["application/vnd.oci.image.layer.v1.tar"],
        )
        .await
        .unwrap();
    assert_eq!(pulled.layers[0].data, layers[0].data);

    // The upstream gone: 502 with the OCI envelope on registry paths.
    drop(upstream);
    tokio::task::yield_now().await;
    let mut status = StatusCode::OK;
    for _ in 0..50 {
        let r = front
            .http
            .get(front.url("/v2/team/app/tags/list"))
            .send()
            .await
            .unwrap();
        status = r.status();
        if status == StatusCode::BAD_GATEWAY {
            assert_error(r, StatusCode::BAD_GATEWAY, "BAD_GATEWAY").await;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test(start_paused = true)]
async fn idle_keep_alive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[limits]\nheader_read_timeout = \"5s\"\nkeepalive_timeout = \"5s\"\n",
    )
    .await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Now idle: the server hangs up after the timeout instead of keeping it forever.
    let started = tokio::time::Instant::now();
    let n = tokio::time::timeout(std::time::Duration::from_secs(120), conn.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "closed: {n:?}");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(5) && waited < std::time::Duration::from_secs(10),
        "{waited:?}"
    );
}

#[tokio::test]
async fn head_over_http2_carries_no_body_even_for_errors() {
    let pki = Pki::new();
    let (_s, addr, _, _roots) = two_vhosts(&pki, "on").await;
    let c = https_client(&pki.ca_pem, &["a.test"], addr);
    let port = addr.port();
    for (path, status) in [
        ("/v2/", StatusCode::OK),
        ("/v2/no/such/manifests/x", StatusCode::NOT_FOUND),
        ("/v2/Bad/tags/list", StatusCode::BAD_REQUEST),
    ] {
        let r = c
            .head(format!("https://a.test:{port}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.status(), status, "{path}");
        assert!(r.bytes().await.unwrap().is_empty());
    }
}
