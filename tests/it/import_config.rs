//! `wharf import-config` as a user runs it on a registry:2 config.yml and the nginx site in
//! front of it (the pairs in tests/fixtures/registry2), then `check-config` on the result,
//! and for some a real podman push through the converted configuration on free ports.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::clients::{import_image, run};
use crate::pki::Pki;
use crate::support::{have_program, podman, WharfProcess};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/registry2");

/// A fixture pair moved into `dir`: its absolute paths (`/etc/...`, `/var/lib/registry`)
/// under `dir`, and S3 pointed at `s3` (moto: endpoint, bucket) when given.
fn moved(name: &str, file: &str, dir: &Path, s3: Option<(&str, &str)>) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}/{file}")).ok()?;
    let base = dir.display().to_string();
    let mut text = text
        .replace(" /etc/", &format!(" {base}/etc/"))
        .replace(" /var/lib/registry", &format!(" {base}/var/lib/registry"));
    if let Some((endpoint, bucket)) = s3 {
        text = text
            .replace("http://minio.internal:9000", endpoint)
            .replace("bucket: registry", &format!("bucket: {bucket}"));
    }
    let path = dir.join(format!("{name}-{file}"));
    std::fs::write(&path, text).unwrap();
    Some(path)
}

/// Runs `wharf import-config` on a fixture pair; returns the written wharf.toml.
fn import(name: &str, dir: &Path, s3: Option<(&str, &str)>) -> PathBuf {
    let yml = moved(name, "config.yml", dir, s3).unwrap();
    let out = dir.join("wharf.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.arg("import-config").arg(&yml).arg("-o").arg(&out);
    if let Some(nginx) = moved(name, "nginx.conf", dir, None) {
        cmd.arg("--nginx").arg(nginx);
    }
    run(&mut cmd);
    out
}

/// Makes the files the converted config names: each server's certificate and key (from
/// the test CA, for localhost) and each htpasswd file (user `ci`, password `ci-pass`).
fn make_named_files(config: &Path, pki: &Pki) {
    let parsed: toml::Value = std::fs::read_to_string(config).unwrap().parse().unwrap();
    let leaf = pki.leaf("server", &["localhost", "127.0.0.1"]);
    let write = |to: &str, from: &[u8]| {
        std::fs::create_dir_all(Path::new(to).parent().unwrap()).unwrap();
        std::fs::write(to, from).unwrap();
    };
    let servers = parsed.get("server").and_then(|s| s.as_array()).cloned();
    for server in servers.unwrap_or_default() {
        if let Some(tls) = server.get("tls") {
            write(
                tls["cert"].as_str().unwrap(),
                &std::fs::read(&leaf.cert).unwrap(),
            );
            write(
                tls["key"].as_str().unwrap(),
                &std::fs::read(&leaf.key).unwrap(),
            );
        }
        let providers = server.get("auth").and_then(|a| a.get("providers"));
        for p in providers.and_then(|p| p.as_array()).into_iter().flatten() {
            let hash = bcrypt::hash("ci-pass", 4).unwrap();
            write(
                p["htpasswd"].as_str().unwrap(),
                format!("ci:{hash}\n").as_bytes(),
            );
        }
    }
}

fn check_config(config: &Path) -> String {
    let out = run(Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("check-config")
        .arg(config));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn import_config_then_check_config_on_every_fixture_pair() {
    let moto = crate::moto::shared();
    for name in [
        "default",
        "deploy-tls-htpasswd",
        "nginx-auth-proxy",
        "nginx-ui-s3",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let bucket = moto.map(|m| (m.endpoint(), m.new_bucket()));
        let s3 = bucket.as_ref().map(|(e, b)| (e.as_str(), b.as_str()));
        if name == "nginx-ui-s3" && s3.is_none() {
            continue; // moto's absence was reported by shared()
        }
        let config = import(name, dir.path(), s3);
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.starts_with("# wharf configuration converted"),
            "{name}:\n{text}"
        );
        make_named_files(&config, &Pki::new());
        let said = check_config(&config);
        assert!(said.contains(": ok ("), "{name}: {said}");
    }
}

#[test]
fn an_existing_output_file_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("wharf.toml");
    std::fs::write(&out, "# mine\n").unwrap();
    let result = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "import-config",
            &format!("{FIXTURES}/default/config.yml"),
            "-o",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("must not exist"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# mine\n");
}

/// The converted config served on free ports: every address becomes 127.0.0.1:0.
fn serve(config: &Path, dir: &Path) -> WharfProcess {
    let text = std::fs::read_to_string(config).unwrap();
    let text: String = text
        .lines()
        .map(|l| match l.starts_with("address = ") {
            true => "address = \"127.0.0.1:0\"".to_owned(),
            false => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let conf = dir.join("serve");
    std::fs::create_dir_all(&conf).unwrap();
    // The log is kept so that a client's failure can show what the server saw.
    let log = std::fs::File::create(conf.join("wharf.log")).unwrap();
    WharfProcess::spawn_logging(&conf, &text, log)
}

/// Runs a client command; on failure, panics with its output and the server's log (a
/// podman login was once reset mid-handshake under a loaded machine: this says why).
fn run_logged(cmd: &mut Command, dir: &Path) {
    let out = cmd.output().expect("program runs");
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("serve/wharf.log")).unwrap_or_default();
        panic!(
            "{cmd:?} failed:\n{}\n{}\nwharf's log:\n{log}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Converts `fixture` (with `s3`: its S3 endpoint and bucket), serves it over TLS with a
/// test CA and logs in and pushes through it with podman; returns the directory the
/// converted config runs in.
fn push_through_tls_fixture(fixture: &str, s3: Option<(&str, &str)>) -> tempfile::TempDir {
    let (dir, work, trust) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let pki = Pki::new();
    std::fs::write(trust.path().join("ca.crt"), &pki.ca_pem).unwrap();
    let config = import(fixture, dir.path(), s3);
    make_named_files(&config, &pki);
    let wharf = serve(&config, dir.path());
    let cert_dir = trust.path().display().to_string();
    push_through(
        &wharf,
        dir.path(),
        work.path(),
        &["--cert-dir", &cert_dir],
        true,
    );
    dir
}

/// Logs in (when `login`), pushes a small image and reads it back with podman.
fn push_through(wharf: &WharfProcess, dir: &Path, work: &Path, tls: &[&str], login: bool) {
    // 127.0.0.1, not localhost: Go clients try ::1 first, where another test's server may
    // hold the same port number.
    let registry = format!("127.0.0.1:{}", wharf.addr.port());
    let authfile = work.join("auth.json").display().to_string();
    if !login {
        std::fs::write(&authfile, "{}").unwrap();
    } else {
        run_logged(
            podman(work)
                .args(["login", "--authfile", &authfile])
                .args(tls)
                .args(["-u", "ci", "-p", "ci-pass", &registry]),
            dir,
        );
    }
    import_image(work, "localhost/import/app:1", "through an imported config");
    let remote = format!("{registry}/team/app:1");
    run(podman(work)
        .args(["push", "--authfile", &authfile])
        .args(tls)
        .args(["localhost/import/app:1", &remote]));
    run(podman(work).args(["rmi", "-a", "-f"]));
    run(podman(work)
        .args(["pull", "-q", "--authfile", &authfile])
        .args(tls)
        .arg(&remote));
}

#[test]
fn a_push_through_the_converted_image_default() {
    if !have_program("podman", "podman") {
        return;
    }
    let (dir, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = import("default", dir.path(), None);
    let wharf = serve(&config, dir.path());
    push_through(
        &wharf,
        dir.path(),
        work.path(),
        &["--tls-verify=false"],
        false,
    );
    assert!(dir
        .path()
        .join("var/lib/registry")
        .read_dir()
        .unwrap()
        .next()
        .is_some());
}

#[test]
fn a_push_through_the_converted_nginx_auth_proxy() {
    if !have_program("podman", "podman") {
        return;
    }
    push_through_tls_fixture("nginx-auth-proxy", None);
}

#[test]
fn a_push_through_the_converted_nginx_ui_on_s3() {
    let Some(moto) = crate::moto::shared() else {
        return;
    };
    if !have_program("podman", "podman") {
        return;
    }
    let bucket = moto.new_bucket();
    push_through_tls_fixture("nginx-ui-s3", Some((&moto.endpoint(), &bucket)));
    // Under registry:2's rootdirectory in the bucket.
    let listing = moto.get(&format!("/{bucket}?list-type=2&prefix=docker/"));
    assert!(listing.contains("<Key>docker/"), "{listing}");
}

/// "Deploy a registry server": TLS and htpasswd in registry:2 itself, no nginx. Its
/// `http.host` names the server, which stays the default one, so clients reach it by address.
#[test]
fn a_push_through_the_converted_deploy_tls_htpasswd() {
    if !have_program("podman", "podman") {
        return;
    }
    let dir = push_through_tls_fixture("deploy-tls-htpasswd", None);
    let repo = dir
        .path()
        .join("var/lib/registry/docker/registry/v2/repositories/team/app");
    assert!(
        repo.is_dir(),
        "the push is under registry:2's rootdirectory"
    );
}
