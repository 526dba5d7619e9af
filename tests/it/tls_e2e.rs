//! TLS end to end with real processes: certificate reload on SIGHUP during a 1 GiB
//! download, self-signed servers, and podman/skopeo trusting wharf's CA via --cert-dir.

use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

use crate::pki::{https_client, peer_cert, Pki};
use crate::support::{bytes_of, have_program, WharfProcess};

fn tls_config(root: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"on\"\n[storage]\nroot = {:?}\n[[server]]\nnames = [\"registry.test\"]\ndefault = true\ntls = {{ cert = {cert:?}, key = {key:?} }}\n",
        root.display().to_string()
    )
}

fn sighup(p: &WharfProcess) {
    assert!(Command::new("kill")
        .args(["-HUP", &p.child.id().to_string()])
        .status()
        .unwrap()
        .success());
}

/// Waits (bounded) until a fresh connection is served `want`; reloads run after the signal.
async fn wait_for_cert(pki: &Pki, addr: std::net::SocketAddr, want: &[u8]) -> bool {
    for _ in 0..200 {
        let c = https_client(&pki.ca_pem, &["registry.test"], addr);
        if let Ok(r) = c
            .get(format!("https://registry.test:{}/v2/", addr.port()))
            .send()
            .await
        {
            if peer_cert(&r) == want {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_while_a_1gib_download_continues() {
    let pki = Pki::new();
    let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = pki.leaf("live", &["registry.test"]);
    let wharf = WharfProcess::spawn_config(
        conf.path(),
        &tls_config(root.path(), &first.cert, &first.key),
    );
    let addr = wharf.addr;
    let base = format!("https://registry.test:{}", addr.port());
    let client = https_client(&pki.ca_pem, &["registry.test"], addr);

    // Push 1 GiB, streamed and hashed on the fly.
    const CHUNK: usize = 4 << 20;
    let chunk = bytes_of(CHUNK, 42);
    let mut hasher = Sha256::new();
    for _ in 0..256 {
        hasher.update(&chunk);
    }
    let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
    let body =
        futures_util::stream::iter((0..256).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = client
        .post(format!("{base}/v2/big/blobs/uploads/?digest={digest}"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Start downloading, read a little, then swap the certificate files and reload.
    let r = client
        .get(format!("{base}/v2/big/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(peer_cert(&r), first.der);
    let mut stream = r.bytes_stream();
    let mut got = Sha256::new();
    let mut received = 0usize;
    while received < 8 << 20 {
        let b = stream.next().await.unwrap().unwrap();
        received += b.len();
        got.update(&b);
    }
    let second = pki.leaf("next", &["registry.test"]);
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    sighup(&wharf);
    assert!(
        wait_for_cert(&pki, addr, &second.der).await,
        "new connections get the new certificate"
    );

    // A broken certificate is refused; the running one stays.
    std::fs::write(&first.cert, "not a certificate").unwrap();
    sighup(&wharf);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        wait_for_cert(&pki, addr, &second.der).await,
        "a broken reload keeps the old certificate"
    );

    // The download that started before the reload finishes intact.
    while let Some(b) = stream.next().await {
        let b = b.unwrap();
        received += b.len();
        got.update(&b);
    }
    assert_eq!(received, 1 << 30);
    assert_eq!(format!("sha256:{}", hex::encode(got.finalize())), digest);
}

fn self_signed_config(root: &std::path::Path, ca_dir: &std::path::Path) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"on\"\n[storage]\nroot = {:?}\n[tls]\nca_dir = {:?}\n[[server]]\nnames = [\"127.0.0.1\", \"localhost\"]\ndefault = true\ntls = {{ self_signed = true }}\n",
        root.display().to_string(),
        ca_dir.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_server_makes_its_ca_once_and_reuses_its_leaf() {
    let (root, conf, ca) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut first =
        WharfProcess::spawn_config(conf.path(), &self_signed_config(root.path(), ca.path()));
    let ca_pem = std::fs::read_to_string(ca.path().join("ca.crt")).expect("the CA was created");
    let c = https_client(&ca_pem, &[], first.addr);
    let r = c
        .get(format!("https://127.0.0.1:{}/v2/", first.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cert = peer_cert(&r);
    first.kill();

    let second =
        WharfProcess::spawn_config(conf.path(), &self_signed_config(root.path(), ca.path()));
    assert_eq!(
        std::fs::read_to_string(ca.path().join("ca.crt")).unwrap(),
        ca_pem,
        "the CA is kept"
    );
    let c = https_client(&ca_pem, &["localhost"], second.addr);
    let r = c
        .get(format!("https://localhost:{}/v2/", second.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(peer_cert(&r), cert, "restarts reuse the leaf");
}

#[test]
fn podman_and_skopeo_over_tls_trusting_wharfs_ca() {
    if !have_program("podman", "podman") || !have_program("skopeo", "skopeo") {
        return;
    }
    let (root, conf, ca, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // The documented path: `wharf cert ca`, then a self-signed server block, and clients
    // given the folder `wharf cert ca` names for --cert-dir. (The CA folder itself fails:
    // podman takes ca.key for a client key and wants its ca.cert.)
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["cert", "ca", "--dir"])
        .arg(ca.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    let cert_dir = said
        .lines()
        .find_map(|l| l.split_once("--cert-dir ").map(|(_, dir)| dir.trim()))
        .unwrap_or_else(|| panic!("`wharf cert ca` names no --cert-dir folder:\n{said}"))
        .to_owned();
    let wharf =
        WharfProcess::spawn_config(conf.path(), &self_signed_config(root.path(), ca.path()));

    let podman = |args: &[&str]| {
        let out = crate::support::podman(work.path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello.txt"), "over tls").unwrap();
    let tar = work.path().join("rootfs.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    podman(&["import", tar.to_str().unwrap(), "localhost/tls/app:1"]);
    let registry = format!("127.0.0.1:{}", wharf.addr.port());
    let authfile = work.path().join("auth.json");
    let authfile = authfile.to_str().unwrap();
    // No logins are configured yet, so any credentials pass; this checks TLS trust and /v2/.
    podman(&[
        "login",
        "--cert-dir",
        &cert_dir,
        "--authfile",
        authfile,
        "-u",
        "ci",
        "-p",
        "unused",
        &registry,
    ]);
    let remote = format!("{registry}/team/app:1");
    podman(&[
        "push",
        "--cert-dir",
        &cert_dir,
        "localhost/tls/app:1",
        &remote,
    ]);
    podman(&["rmi", "-a", "-f"]);
    podman(&["pull", "--cert-dir", &cert_dir, &remote]);

    let copy = format!("docker://127.0.0.1:{}/mirror/app:1", wharf.addr.port());
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--src-cert-dir",
            &cert_dir,
            "--dest-cert-dir",
            &cert_dir,
            &format!("docker://{remote}"),
            &copy,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And without trusting the CA, the clients refuse, as they should.
    let out = Command::new("skopeo")
        .args(["inspect", &copy])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
