//! `wharf cert`: the real binary creates a CA and issues a leaf, and the real `openssl`
//! checks them, so the files are known to work outside wharf's own code.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::have_program;

fn wharf(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("cert")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run wharf")
}

fn openssl(args: &[&str], dir: &Path) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[track_caller]
fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got stdout:\n{}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

#[test]
fn ca_issue_trust_and_openssl_agrees() {
    if !have_program("openssl", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let err = failed(&wharf(&["issue", "registry.test"], d));
    assert!(err.contains("wharf cert ca"), "{err}");

    let out = succeeded(&wharf(
        &[
            "ca",
            "--permit-dns",
            "registry.test",
            "--permit-dns",
            "corp.test",
            "--permit-ip",
            "127.0.0.0/8",
        ],
        d,
    ));
    assert!(
        out.contains("ca.crt") && out.contains("SHA-256 fingerprint: "),
        "{out}"
    );
    // The fingerprint printed is the one openssl computes.
    let fp = out
        .lines()
        .find_map(|l| l.strip_prefix("SHA-256 fingerprint: "))
        .unwrap()
        .to_string();
    let openssl_fp = succeeded(&openssl(
        &["x509", "-in", "ca.crt", "-noout", "-fingerprint", "-sha256"],
        d,
    ));
    assert!(openssl_fp.contains(&fp), "{openssl_fp} vs {fp}");

    let err = failed(&wharf(&["ca"], d));
    assert!(err.contains("--force"), "{err}");

    let out = succeeded(&wharf(&["issue", "registry.test", "--ip", "127.0.0.1"], d));
    assert!(out.contains("registry.test.crt"), "{out}");
    assert!(
        out.contains("DNS:registry.test") && out.contains("IP:127.0.0.1"),
        "{out}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "registry.test.key"] {
            let mode = std::fs::metadata(d.join(key)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    // The chain validates with openssl, leaf first, the CA as the only trust anchor.
    succeeded(&openssl(
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-purpose",
            "sslserver",
            "registry.test.crt",
        ],
        d,
    ));
    succeeded(&openssl(
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_hostname",
            "registry.test",
            "-verify_ip",
            "127.0.0.1",
            "registry.test.crt",
        ],
        d,
    ));
    // The key belongs to the leaf: same public key.
    let from_cert = succeeded(&openssl(
        &["x509", "-in", "registry.test.crt", "-noout", "-pubkey"],
        d,
    ));
    let from_key = succeeded(&openssl(
        &["pkey", "-in", "registry.test.key", "-pubout"],
        d,
    ));
    assert_eq!(from_cert, from_key);

    let leaf = succeeded(&openssl(
        &["x509", "-in", "registry.test.crt", "-noout", "-text"],
        d,
    ));
    for needle in [
        "DNS:registry.test",
        "IP Address:127.0.0.1",
        "TLS Web Server Authentication",
        "CA:FALSE",
        "Subject: O = wharf, CN = registry.test",
    ] {
        assert!(leaf.contains(needle), "leaf lacks {needle:?}:\n{leaf}");
    }
    let ca = succeeded(&openssl(&["x509", "-in", "ca.crt", "-noout", "-text"], d));
    for needle in [
        "X509v3 Name Constraints: critical",
        "Permitted:",
        "DNS:registry.test",
        "DNS:corp.test",
        "IP:127.0.0.0/255.0.0.0",
        "CA:TRUE, pathlen:0",
        "ASN1 OID: prime256v1",
    ] {
        assert!(ca.contains(needle), "CA lacks {needle:?}:\n{ca}");
    }

    // Outside the constraints, and over the validity cap: refused, nothing written.
    let err = failed(&wharf(&["issue", "evil.example"], d));
    assert!(
        err.contains("evil.example") && err.contains("name constraints"),
        "{err}"
    );
    let err = failed(&wharf(&["issue", "x.corp.test", "--days", "826"], d));
    assert!(err.contains("825"), "{err}");
    let err = failed(&wharf(&["issue", "bad_name.corp.test"], d));
    assert!(err.contains("bad_name.corp.test"), "{err}");
    let err = failed(&wharf(&["issue", "x.corp.test", "--out-name", "ca"], d));
    assert!(err.contains("reserved"), "{err}");
    assert!(!d.join("evil.example.crt").exists());
    assert!(!d.join("x.corp.test.crt").exists());

    // Wildcards get a file name without `*`.
    let out = succeeded(&wharf(&["issue", "*.corp.test", "--days", "90"], d));
    assert!(out.contains("wildcard.corp.test.crt"), "{out}");
    succeeded(&openssl(
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-verify_hostname",
            "app.corp.test",
            "wildcard.corp.test.crt",
        ],
        d,
    ));

    let out = succeeded(&wharf(&["trust", "registry.test:5000"], d));
    for needle in [
        "/etc/docker/certs.d/registry.test:5000/ca.crt",
        "/etc/containers/certs.d/registry.test:5000/ca.crt",
        "update-ca-certificates",
        "update-ca-trust",
    ] {
        assert!(
            out.contains(needle),
            "trust output lacks {needle:?}:\n{out}"
        );
    }
}

/// Keys in the other PEM forms servers are handed (SEC1 EC and PKCS#1 RSA, as openssl
/// writes them) load, and a certificate made by openssl pairs with them.
#[test]
fn pem_loading_accepts_openssl_key_formats() {
    if !have_program("openssl", "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let self_signed = |key: &str, cert: &str| {
        succeeded(&openssl(
            &[
                "req",
                "-x509",
                "-key",
                key,
                "-out",
                cert,
                "-days",
                "2",
                "-subj",
                "/CN=r.test",
            ],
            d,
        ));
    };
    succeeded(&openssl(
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
        d,
    ));
    self_signed("ec.key", "ec.crt");
    succeeded(&openssl(
        &["genrsa", "-traditional", "-out", "rsa.key", "2048"],
        d,
    ));
    self_signed("rsa.key", "rsa.crt");

    use rustls_pki_types::PrivateKeyDer;
    use wharf::tls::pem;
    let ec = pem::load_key(&d.join("ec.key")).unwrap();
    assert!(matches!(ec, PrivateKeyDer::Sec1(_)), "{ec:?}");
    let rsa = pem::load_key(&d.join("rsa.key")).unwrap();
    assert!(matches!(rsa, PrivateKeyDer::Pkcs1(_)), "{rsa:?}");
    pem::load_certified_key(&d.join("ec.crt"), &d.join("ec.key")).unwrap();
    pem::load_certified_key(&d.join("rsa.crt"), &d.join("rsa.key")).unwrap();
    let err = pem::load_certified_key(&d.join("ec.crt"), &d.join("rsa.key")).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}
