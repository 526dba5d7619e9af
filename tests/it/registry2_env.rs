//! `wharf serve` configured the way registry:2's deployment docs run it: only `REGISTRY_*`
//! variables (htpasswd logins, TLS, a root directory), no config file; then podman and
//! skopeo log in and push. An unsupported `REGISTRY_*` variable stops start-up, naming it.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::clients::{import_image, run};
use crate::pki::Pki;
use crate::support::{have_program, podman, WharfProcess};

/// `wharf serve` in an empty directory (so no conf/wharf.toml), with no config named and
/// exactly these `REGISTRY_*` variables.
fn wharf_with_env(cwd: &Path, vars: &[(&str, String)]) -> Command {
    wharf_run(cwd, &["serve"], vars)
}

/// `wharf ARGS` in `cwd` with exactly these `REGISTRY_*` variables.
pub(crate) fn wharf_run(cwd: &Path, args: &[&str], vars: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("WHARF_CONFIG")
        .env_remove("RUST_LOG");
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("REGISTRY_")) {
        cmd.env_remove(name);
    }
    for (name, value) in vars {
        cmd.env(name, value);
    }
    cmd
}

pub(crate) fn spawn(cmd: &mut Command) -> WharfProcess {
    spawn_logging(cmd, Stdio::null())
}

/// [`spawn`], with wharf's log (stderr) going to `log`.
fn spawn_logging(cmd: &mut Command, log: impl Into<Stdio>) -> WharfProcess {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start wharf");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    WharfProcess { child, addr }
}

#[test]
fn registry2_variables_alone_serve_tls_htpasswd_and_a_root_directory() {
    if !have_program("podman", "podman") || !have_program("skopeo", "skopeo") {
        return;
    }
    let (cwd, root, auth, work, trust) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let pki = Pki::new();
    let leaf = pki.leaf("domain", &["localhost", "127.0.0.1"]);
    // Only the CA in the folder clients get: podman reads a *.key there as a client key.
    std::fs::write(trust.path().join("ca.crt"), &pki.ca_pem).unwrap();
    let htpasswd = auth.path().join("htpasswd");
    let hash = bcrypt::hash("testpassword", 4).unwrap();
    std::fs::write(&htpasswd, format!("testuser:{hash}\n")).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    // As in registry:2's "Deploy a registry server" docs (the port is the test's own).
    let wharf = spawn(&mut wharf_with_env(
        cwd.path(),
        &[
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0".into()),
            ("REGISTRY_HTTP_TLS_CERTIFICATE", path(&leaf.cert)),
            ("REGISTRY_HTTP_TLS_KEY", path(&leaf.key)),
            ("REGISTRY_AUTH", "htpasswd".into()),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm".into()),
            ("REGISTRY_AUTH_HTPASSWD_PATH", path(&htpasswd)),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                path(root.path()),
            ),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "true".into()),
            ("REGISTRY_HTTP_SECRET", "not-needed-by-wharf".into()),
        ],
    ));
    // 127.0.0.1, not localhost: Go clients try ::1 first, where another test's server may
    // hold the same port number.
    let registry = format!("127.0.0.1:{}", wharf.addr.port());
    let cert_dir = path(trust.path());
    let authfile = path(&work.path().join("auth.json"));

    let wrong = podman(work.path())
        .args(["login", "--cert-dir", &cert_dir, "--authfile", &authfile])
        .args(["-u", "testuser", "-p", "wrong", &registry])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a wrong password must not log in");
    run(podman(work.path())
        .args(["login", "--cert-dir", &cert_dir, "--authfile", &authfile])
        .args(["-u", "testuser", "-p", "testpassword", &registry]));
    import_image(
        work.path(),
        "localhost/env/app:1",
        "configured by REGISTRY_*",
    );
    let remote = format!("{registry}/team/app:1");
    run(podman(work.path())
        .args(["push", "--cert-dir", &cert_dir, "--authfile", &authfile])
        .args(["localhost/env/app:1", &remote]));

    // skopeo with the same login reads it back, and deletes it (deletes are enabled).
    let skopeo = |args: &[&str]| {
        let mut c = Command::new("skopeo");
        c.args(args[..1].iter())
            .args(["--cert-dir", &cert_dir, "--authfile", &authfile])
            .args(args[1..].iter());
        c
    };
    let docker = format!("docker://{remote}");
    let out = run(&mut skopeo(&["inspect", "--raw", &docker]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("schemaVersion"));
    let anonymous = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--no-creds",
            "--cert-dir",
            &cert_dir,
            &docker,
        ])
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "logins are required");
    run(&mut skopeo(&["delete", &docker]));
    assert!(
        std::fs::read_dir(root.path()).unwrap().next().is_some(),
        "the registry lives under REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"
    );
}

#[test]
fn an_unsupported_registry_variable_stops_start_up_naming_it() {
    let cwd = tempfile::tempdir().unwrap();
    for (name, value, says) in [
        (
            "REGISTRY_AUTH_TOKEN_REALM",
            "https://auth.example.com/token",
            "htpasswd or LDAP",
        ),
        ("REGISTRY_STORAGE_S3_SKIPVERIFY", "true", "remove it"),
    ] {
        let mut child = wharf_with_env(
            cwd.path(),
            &[
                ("REGISTRY_HTTP_ADDR", "127.0.0.1:0".into()),
                (name, value.into()),
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        // A server that starts says so on stdout; one that refuses closes it at once.
        let mut said = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut said,
        )
        .unwrap();
        if !said.is_empty() {
            let _ = child.kill();
            panic!("{name}: wharf started anyway: {said}");
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: exited successfully");
        assert!(
            stderr.contains(name) && stderr.contains(says),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn check_config_reports_what_each_registry_variable_became() {
    let cwd = tempfile::tempdir().unwrap();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/container.toml");
    let mut check = wharf_run(
        cwd.path(),
        &["check-config", conf.to_str().unwrap()],
        &[
            ("REGISTRY_HTTP_ADDR", ":5000".into()),
            (
                "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                "/var/lib/registry".into(),
            ),
            ("REGISTRY_HTTP_SECRET", "shh-do-not-print".into()),
        ],
    );
    let out = run(&mut check);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("REGISTRY_HTTP_ADDR: one [[listener]] address = \"0.0.0.0:5000\""),
        "{said}"
    );
    assert!(
        said.contains(
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: storage.root = \"/var/lib/registry\""
        ),
        "{said}"
    );
    assert!(said.contains("REGISTRY_HTTP_SECRET: not needed"), "{said}");
    assert!(!said.contains("shh-do-not-print"), "{said}");
}

/// `REGISTRY_LOG_LEVEL`, in registry:2's words, sets what wharf logs: `error` leaves out
/// the start-up lines logged at info by default, `debug` adds wharf's debug events (a
/// connection that ended in a protocol error). Access lines are no log events: they stay.
#[test]
fn registry_log_level_sets_what_wharf_logs() {
    use std::io::{Read, Write};
    let cwd = tempfile::tempdir().unwrap();
    let root = cwd.path().join("data").to_str().unwrap().to_owned();
    let logged = |level: Option<&str>| {
        let mut vars = vec![
            ("REGISTRY_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", root.clone()),
        ];
        vars.extend(level.map(|l| ("REGISTRY_LOG_LEVEL", l.to_owned())));
        let path = cwd
            .path()
            .join(format!("{}.log", level.unwrap_or("default")));
        let log = std::fs::File::create(&path).unwrap();
        let mut wharf = spawn_logging(&mut wharf_with_env(cwd.path(), &vars), log);
        let mut http = std::net::TcpStream::connect(wharf.addr).unwrap();
        http.write_all(b"GET /v2/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap();
        http.read_to_end(&mut Vec::new()).unwrap();
        let mut garbage = std::net::TcpStream::connect(wharf.addr).unwrap();
        garbage.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
        let _ = garbage.read_to_end(&mut Vec::new());
        wharf.terminate();
        std::fs::read_to_string(&path).unwrap()
    };
    let access = "\"GET /v2/ HTTP/1.1\" 200";
    let default = logged(None);
    assert!(
        default.contains(" INFO wharf") && !default.contains(" DEBUG "),
        "{default}"
    );
    let error = logged(Some("error"));
    assert!(
        !error.contains(" INFO ") && !error.contains(" DEBUG "),
        "{error}"
    );
    assert!(error.contains(access), "{error}");
    let debug = logged(Some("debug"));
    assert!(
        debug.contains(" DEBUG ") && debug.contains("connection ended with an error"),
        "{debug}"
    );
}

/// The variables README's table (in "Switching from registry:2") names in its first column:
/// `_KEY` after `REGISTRY_HTTP_TLS_CERTIFICATE` is `REGISTRY_HTTP_TLS_KEY`, and in the row of
/// those accepted with nothing needed, `_HTTP_SECRET` is `REGISTRY_HTTP_SECRET`. Patterns
/// (`_REDIS_*`) and the "refused" row are left out.
fn readme_variables() -> Vec<(String, String)> {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(readme).unwrap();
    let table = readme
        .split("| registry:2 variable | wharf |")
        .nth(1)
        .unwrap();
    let mut vars = Vec::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cell = row.split(" | ").next().unwrap();
        if cell.contains("refused") {
            continue;
        }
        let mut last = String::new();
        for token in cell.split('`').skip(1).step_by(2) {
            let (name, value) = token.split_once('=').unwrap_or((token, "x"));
            let name = match name.strip_prefix('_') {
                _ if name.starts_with("REGISTRY_") => name.to_owned(),
                Some(_) if cell.contains("accepted") => format!("REGISTRY{name}"),
                Some(_) if !last.is_empty() => {
                    format!("{}{name}", &last[..last.rfind('_').unwrap()])
                }
                _ => continue,
            };
            let plain = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"_-".contains(&b);
            if name.bytes().all(plain) {
                last.clone_from(&name);
                vars.push((name, value.to_owned()));
            }
        }
    }
    vars
}

/// Every variable README's table says wharf takes, wharf knows (a value it dislikes is
/// another error), and the table has each one issue 14 asks for.
#[test]
fn every_variable_in_the_readme_table_is_one_wharf_knows() {
    let vars = readme_variables();
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    for wanted in [
        "REGISTRY_HTTP_ADDR",
        "REGISTRY_HTTP_TLS_CERTIFICATE",
        "REGISTRY_HTTP_TLS_KEY",
        "REGISTRY_AUTH",
        "REGISTRY_AUTH_HTPASSWD_REALM",
        "REGISTRY_AUTH_HTPASSWD_PATH",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
        "REGISTRY_STORAGE_S3_BUCKET",
        "REGISTRY_STORAGE_S3_REGION",
        "REGISTRY_STORAGE_S3_REGIONENDPOINT",
        "REGISTRY_STORAGE_S3_ACCESSKEY",
        "REGISTRY_STORAGE_S3_SECRETKEY",
        "REGISTRY_STORAGE_S3_ROOTDIRECTORY",
        "REGISTRY_STORAGE_S3_FORCEPATHSTYLE",
        "REGISTRY_STORAGE_DELETE_ENABLED",
        "REGISTRY_LOG_LEVEL",
    ] {
        assert!(
            names.contains(&wanted),
            "README's table lacks {wanted}: {names:?}"
        );
    }
    let cwd = tempfile::tempdir().unwrap();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/container.toml");
    for (name, value) in &vars {
        let args = ["check-config", conf.to_str().unwrap()];
        let out = wharf_run(cwd.path(), &args, &[(name.as_str(), value.clone())])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !said.contains("is not a registry:2 setting wharf knows"),
            "{said}"
        );
    }
}

/// What can be checked of the image without pulling a base image (none can be pulled where
/// these tests run): fully qualified bases, registry:2's port and volume, a build context
/// that holds what the COPYs name and none of what .dockerignore keeps out.
#[test]
fn the_container_image_is_laid_out_like_registry2s() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let ignored = |path: &str| {
        patterns.iter().any(|p| match p.strip_prefix("**/*") {
            Some(ext) => path.ends_with(ext),
            None => path.starts_with(p.trim_end_matches('/')),
        })
    };
    // Build outputs and local data of a working copy, gigabytes of it (fuzz/target after
    // scripts/fuzz, the browser test's npm packages), stay out of the build context.
    for local in [
        "target/debug/wharf",
        "conf/users.htpasswd",
        "fuzz/target/x86_64-unknown-linux-gnu/release/route",
        "fuzz/corpus/route/0a1b",
        "tests/ui/node_modules/puppeteer/package.json",
        "data/docker/registry/v2/blobs",
    ] {
        assert!(ignored(local), "{local}: sent to the build context");
    }
    for line in dockerfile.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["FROM", image, ..] => {
                let registry = image.split('/').next().unwrap();
                assert!(
                    image.contains('/') && registry.contains('.'),
                    "{image}: not fully qualified"
                );
            }
            ["COPY", from, ..] if from.starts_with("--from") => {}
            ["COPY", sources @ .., _dest] => {
                for src in sources {
                    assert!(root.join(src).exists(), "COPY {src}: missing");
                    assert!(!ignored(src), "COPY {src}: kept out by .dockerignore");
                }
            }
            _ => {}
        }
    }
    assert!(dockerfile.contains("EXPOSE 5000"));
    assert!(dockerfile.contains("VOLUME [\"/var/lib/registry\"]"));
    let config = wharf::config::Config::from_file(&root.join("conf/container.toml")).unwrap();
    assert_eq!(config.listeners[0].address.to_string(), "0.0.0.0:5000");
    assert_eq!(config.storage.root, Path::new("/var/lib/registry"));
}
