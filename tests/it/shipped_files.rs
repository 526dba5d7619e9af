//! What the repository ships besides the code: `.gitignore`, the systemd unit and the docs,
//! checked the way a new user meets them.

use std::path::Path;
use std::process::Command;

use crate::support::have_program;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `wharf cert ca` and `wharf cert issue` write private keys under `certs/` in the checkout
/// (the default `--dir`), and the README puts users in `conf/users.htpasswd`: none of it may
/// be one `git add -A` away from a commit.
#[test]
fn private_keys_and_password_files_are_ignored_by_git() {
    if !have_program("git", "git") {
        return;
    }
    let ignored = |path: &str| {
        Command::new("git")
            .args(["check-ignore", "--no-index", "-q", path])
            .current_dir(repo())
            .status()
            .unwrap()
            .success()
    };
    for secret in [
        "certs/ca.key",
        "certs/registry.internal.key",
        "certs/127.0.0.1.key",
        "conf/users.htpasswd",
        "conf/ldap.pw",
        "server.key",
    ] {
        assert!(ignored(secret), "{secret} is not ignored");
    }
    for kept in ["certs/README.md", "conf/wharf.toml", "src/main.rs"] {
        assert!(!ignored(kept), "{kept} is ignored");
    }
}

/// The systemd unit in examples/ is what the README tells people to install: systemd's own
/// checker accepts it (with ExecStart pointing at the binary just built, as it would after
/// `install`), and it keeps the parts the README relies on.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    if !have_program("systemd-analyze", "systemd") {
        return;
    }
    let unit = std::fs::read_to_string(repo().join("examples/wharf.service"))
        .expect("examples/wharf.service");
    for needle in [
        "User=wharf",
        "StateDirectory=wharf",
        "WorkingDirectory=/var/lib/wharf",
        "ExecStart=/usr/local/bin/wharf serve --config /etc/wharf/wharf.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(needle), "the unit lacks {needle:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/wharf", env!("CARGO_BIN_EXE_wharf")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let about_it: Vec<_> = said
        .lines()
        .filter(|l| l.contains("wharf.service"))
        .collect();
    assert!(about_it.is_empty(), "{said}");
}

/// examples/ldap.toml says how to create every file it names, and after those steps
/// `check-config` accepts it (it asked for the CA file no step had made).
#[test]
fn the_ldap_example_says_how_to_make_each_file_it_names() {
    let example = repo().join("examples/ldap.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    let header: String = text
        .lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let named: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('"').nth(1))
        .filter(|v| v.starts_with("conf/"))
        .collect();
    assert_eq!(named.len(), 3, "{named:?}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    for file in &named {
        assert!(header.contains(file), "the header never makes {file}");
    }
    // The steps, done the way the header says.
    let pki = crate::pki::Pki::new();
    std::fs::write(dir.path().join("conf/ldap-ca.pem"), &pki.ca_pem).unwrap();
    std::fs::write(dir.path().join("conf/ldap.pw"), "service-secret").unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(
        dir.path().join("conf/users.htpasswd"),
        format!("admin:{hash}\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("check-config")
        .arg(&example)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// conf/wharf.toml is what a new user reads first; it must not describe wharf as it was.
#[test]
fn the_shipped_config_describes_tls_listeners() {
    let text = std::fs::read_to_string(repo().join("conf/wharf.toml")).unwrap();
    assert!(!text.contains("Plain HTTP for now"));
    for mode in ["\"off\"", "\"on\"", "\"auto\"", "examples/self-signed.toml"] {
        assert!(
            text.contains(mode),
            "conf/wharf.toml does not mention {mode}"
        );
    }
}
