//! CA tests: every issued chain is checked with webpki (what rustls clients run), so a
//! passing test means a real client would accept the certificate.

use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::UnixTime;

use super::verify::verify_leaf;
use super::*;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn chain_of(leaf: &IssuedLeaf) -> Vec<CertificateDer<'static>> {
    pem::certs_from_pem(leaf.chain_pem.as_bytes(), Path::new("issued")).unwrap()
}

/// Does `leaf` validate for `name` (a DNS name or an address) against `ca`, now?
fn validates(ca: &Ca, chain: &[CertificateDer<'static>], name: &str) -> Result<(), String> {
    let (dns, ips) = match name.parse::<IpAddr>() {
        Ok(ip) => (vec![], vec![ip]),
        Err(_) => (vec![name.to_string()], vec![]),
    };
    verify_leaf(ca.cert_der(), chain, &dns, &ips, UnixTime::now()).map_err(|r| r.reason)
}

#[test]
fn create_load_issue_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let created = Ca::create(dir.path(), &CaOptions::default()).unwrap();
    let loaded = Ca::load(dir.path()).unwrap();
    assert_eq!(created.cert_der(), loaded.cert_der());
    assert_eq!(created.fingerprint(), loaded.fingerprint());
    assert_eq!(loaded.fingerprint().len(), 32 * 3 - 1);

    let leaf = loaded
        .issue(
            &names(&["registry.test", "*.apps.test", "localhost"]),
            &[ip("127.0.0.1"), ip("::1")],
            30,
        )
        .unwrap();
    let chain = chain_of(&leaf);
    assert_eq!(chain.len(), 2, "leaf then CA");
    assert_eq!(&chain[1], loaded.cert_der());
    for name in [
        "registry.test",
        "x.apps.test",
        "localhost",
        "127.0.0.1",
        "::1",
    ] {
        validates(&created, &chain, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in ["other.test", "a.b.apps.test", "apps.test", "127.0.0.2"] {
        assert!(
            validates(&created, &chain, name).is_err(),
            "{name} must not validate"
        );
    }
    assert_eq!(
        leaf.sans,
        [
            "DNS:registry.test",
            "DNS:*.apps.test",
            "DNS:localhost",
            "IP:127.0.0.1",
            "IP:::1"
        ]
    );
    // The key in the PEM is the leaf's: rustls accepts the pair.
    let key = pem::key_from_pem(leaf.key_pem.as_bytes(), Path::new("key")).unwrap();
    pem::certified_key(chain, key, Path::new("crt"), Path::new("key")).unwrap();
}

#[test]
fn a_leaf_from_another_ca_does_not_validate() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ca_a = Ca::create(a.path(), &CaOptions::default()).unwrap();
    let ca_b = Ca::create(b.path(), &CaOptions::default()).unwrap();
    let leaf = ca_b.issue(&names(&["registry.test"]), &[], 30).unwrap();
    assert!(validates(&ca_a, &chain_of(&leaf), "registry.test").is_err());
}

#[cfg(unix)]
#[test]
fn the_ca_key_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create(dir.path(), &CaOptions::default()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca.key_path()), 0o600);
    assert_eq!(
        mode(&ca.cert_path()) & 0o077 & !0o044,
        0,
        "certificate: no write for others"
    );
}

#[test]
fn refuses_to_overwrite_a_ca_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::create(dir.path(), &CaOptions::default()).unwrap();
    let err = Ca::create(dir.path(), &CaOptions::default()).unwrap_err();
    assert!(matches!(err, TlsError::CaExists { .. }), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    let forced = CaOptions {
        force: true,
        ..CaOptions::default()
    };
    let second = Ca::create(dir.path(), &forced).unwrap();
    assert_ne!(first.fingerprint(), second.fingerprint());
    assert_eq!(
        Ca::load(dir.path()).unwrap().fingerprint(),
        second.fingerprint()
    );
}

#[test]
fn load_without_a_ca_says_how_to_make_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ca::load(dir.path()).err().unwrap();
    assert!(matches!(err, TlsError::NoCa { .. }), "{err}");
    assert!(err.to_string().contains("wharf cert ca"), "{err}");
}

#[test]
fn load_refuses_a_key_from_another_ca() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    Ca::create(a.path(), &CaOptions::default()).unwrap();
    Ca::create(b.path(), &CaOptions::default()).unwrap();
    std::fs::copy(b.path().join(CA_KEY), a.path().join(CA_KEY)).unwrap();
    let err = Ca::load(a.path()).err().unwrap();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
}

#[test]
fn leaf_validity_is_capped_at_825_days() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create(dir.path(), &CaOptions::default()).unwrap();
    let n = names(&["registry.test"]);
    let leaf = ca.issue(&n, &[], MAX_LEAF_DAYS).unwrap();
    let days = (leaf.not_after - OffsetDateTime::now_utc()).whole_days();
    assert!((823..=825).contains(&days), "{days}");
    for bad in [0, MAX_LEAF_DAYS + 1, 3650] {
        let err = ca.issue(&n, &[], bad).unwrap_err();
        assert!(matches!(err, TlsError::InvalidDays { .. }), "{err}");
        assert!(err.to_string().contains("825"), "{err}");
    }
}

#[test]
fn issue_rejects_bad_names_and_empty_requests() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create(dir.path(), &CaOptions::default()).unwrap();
    let err = ca.issue(&names(&["bad name"]), &[], 30).unwrap_err();
    assert!(err.to_string().contains("\"bad name\""), "{err}");
    assert!(matches!(ca.issue(&[], &[], 30), Err(TlsError::NoNames)));
    // An address alone is enough; it becomes the CN.
    let leaf = ca.issue(&[], &[ip("10.1.2.3")], 30).unwrap();
    validates(&ca, &chain_of(&leaf), "10.1.2.3").unwrap();
}

#[test]
fn name_constraints_limit_what_validates() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CaOptions {
        permit_dns: names(&["corp.test"]),
        permit_ip: names(&["10.0.0.0/8"]),
        force: false,
    };
    let ca = Ca::create(dir.path(), &opts).unwrap();
    // Inside the constraints: issued, and valid after a reload too.
    let ca = Ca::load(ca.dir()).unwrap();
    let leaf = ca
        .issue(
            &names(&["registry.corp.test", "*.apps.corp.test"]),
            &[ip("10.1.2.3")],
            30,
        )
        .unwrap();
    validates(&ca, &chain_of(&leaf), "registry.corp.test").unwrap();
    // Outside: the CA's self-check refuses, naming the name.
    for (dns, ips, culprit) in [
        (
            names(&["registry.other.test"]),
            vec![],
            "registry.other.test",
        ),
        (
            names(&["registry.corp.test"]),
            vec![ip("192.168.1.1")],
            "192.168.1.1",
        ),
    ] {
        let err = ca.issue(&dns, &ips, 30).unwrap_err();
        assert!(matches!(err, TlsError::LeafRejected { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(culprit) && text.contains("name constraints"),
            "{text}"
        );
    }
}

#[test]
fn bad_constraints_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CaOptions {
        permit_ip: names(&["10.0.0.1/8"]),
        ..CaOptions::default()
    };
    let err = Ca::create(dir.path(), &opts).err().unwrap();
    assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    assert!(!dir.path().join(CA_KEY).exists());
}

#[test]
fn ensure_leaf_creates_reuses_and_reissues() {
    let root = tempfile::tempdir().unwrap();
    let (ca_dir, leaf_dir) = (root.path().join("ca"), root.path().join("leaves"));
    let n = names(&["registry.test"]);
    let ips = [ip("127.0.0.1")];

    let first = ensure_leaf(&ca_dir, &leaf_dir, "registry.test", &n, &ips).unwrap();
    assert!(first.issued);
    assert!(ca_dir.join(CA_CERT).exists(), "the CA is created on demand");
    assert_eq!(first.cert, leaf_dir.join("registry.test.crt"));
    let original = std::fs::read(&first.cert).unwrap();

    // A restart with the same request keeps the leaf byte for byte.
    let again = ensure_leaf(&ca_dir, &leaf_dir, "registry.test", &n, &ips).unwrap();
    assert!(!again.issued);
    assert_eq!(std::fs::read(&again.cert).unwrap(), original);
    // Fewer names are still covered.
    assert!(
        !ensure_leaf(&ca_dir, &leaf_dir, "registry.test", &n, &[])
            .unwrap()
            .issued
    );

    // A new name, or a new address, needs a new leaf.
    let more = names(&["registry.test", "mirror.test"]);
    let grown = ensure_leaf(&ca_dir, &leaf_dir, "registry.test", &more, &ips).unwrap();
    assert!(grown.issued);
    assert_ne!(std::fs::read(&grown.cert).unwrap(), original);
    let moved = ensure_leaf(
        &ca_dir,
        &leaf_dir,
        "registry.test",
        &more,
        &[ip("127.0.0.2")],
    );
    assert!(moved.unwrap().issued);

    // A damaged key is replaced rather than served.
    std::fs::write(&grown.key, "garbage").unwrap();
    assert!(
        ensure_leaf(&ca_dir, &leaf_dir, "registry.test", &more, &[])
            .unwrap()
            .issued
    );

    // A replaced CA invalidates the leaf.
    let forced = CaOptions {
        force: true,
        ..CaOptions::default()
    };
    Ca::create(&ca_dir, &forced).unwrap();
    let after = ensure_leaf(&ca_dir, &leaf_dir, "registry.test", &more, &[]).unwrap();
    assert!(after.issued);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&after.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn ensure_leaf_renews_a_leaf_close_to_expiry() {
    let root = tempfile::tempdir().unwrap();
    let ca = Ca::create(root.path(), &CaOptions::default()).unwrap();
    let n = names(&["registry.test"]);
    // Plant a leaf with 10 days left, as an old run would have left it.
    let short = ca.issue(&n, &[], 10).unwrap();
    std::fs::write(root.path().join("registry.test.crt"), &short.chain_pem).unwrap();
    std::fs::write(root.path().join("registry.test.key"), &short.key_pem).unwrap();
    let renewed = ensure_leaf(root.path(), root.path(), "registry.test", &n, &[]).unwrap();
    assert!(renewed.issued);
    // One with 60 days left is kept.
    let long = ca.issue(&n, &[], 60).unwrap();
    std::fs::write(&renewed.cert, &long.chain_pem).unwrap();
    std::fs::write(&renewed.key, &long.key_pem).unwrap();
    let kept = ensure_leaf(root.path(), root.path(), "registry.test", &n, &[]).unwrap();
    assert!(!kept.issued);
}

#[test]
fn trust_hint_names_every_store() {
    let hint = trust_hint(Path::new("/srv/wharf/certs/ca.crt"), "registry.test:5000");
    for needle in [
        "/etc/docker/certs.d/registry.test:5000/ca.crt",
        "/etc/containers/certs.d/registry.test:5000/ca.crt",
        "/usr/local/share/ca-certificates/wharf-ca.crt",
        "update-ca-certificates",
        "/etc/pki/ca-trust/source/anchors/",
        "update-ca-trust",
        "sudo cp /srv/wharf/certs/ca.crt ",
    ] {
        assert!(hint.contains(needle), "missing {needle:?} in\n{hint}");
    }
    // Another port: one folder name per client, with the port.
    assert!(!hint.contains("certs.d/registry.test/"), "{hint}");
    assert!(
        hint.contains("/etc/containerd/certs.d/registry.test:5000/hosts.toml")
            && hint.contains("https://registry.test:5000"),
        "{hint}"
    );
    assert!(hint.contains("--cert-dir /srv/wharf/certs/trust"), "{hint}");
    // Paths that need quoting are quoted.
    let hint = trust_hint(Path::new("/my certs/ca.crt"), "r:5000");
    assert!(hint.contains("'/my certs/ca.crt'"), "{hint}");
}

/// With port 443, docker, podman and containerd look in `certs.d/HOST` for
/// `HOST/team/app` and in `certs.d/HOST:443` for `HOST:443/team/app`: both are printed, for
/// every client, as is a bare host (which means 443).
#[test]
fn port_443_hints_cover_the_name_with_and_without_the_port() {
    for host_port in ["registry.test:443", "registry.test"] {
        let hint = trust_hint(Path::new("/x/ca.crt"), host_port);
        for root in [
            "/etc/docker/certs.d",
            "/etc/containers/certs.d",
            "/etc/containerd/certs.d",
        ] {
            for dir in ["registry.test", "registry.test:443"] {
                assert!(
                    hint.contains(&format!("{root}/{dir}/ca.crt")),
                    "{host_port}: missing {root}/{dir} in\n{hint}"
                );
            }
        }
        assert!(hint.contains("/etc/containerd/certs.d/registry.test:443/hosts.toml"));
        assert!(hint.contains("--cert-dir /x/trust"), "{hint}");
    }
}

#[test]
fn creating_a_ca_writes_a_trust_folder_with_only_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create(dir.path(), &CaOptions::default()).unwrap();
    let trust = dir.path().join(TRUST_DIR);
    let files: Vec<_> = std::fs::read_dir(&trust)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["ca.crt"]);
    assert_eq!(
        std::fs::read(trust.join("ca.crt")).unwrap(),
        std::fs::read(ca.cert_path()).unwrap()
    );
}
