//! The command line as a user runs it: `wharf check-config` and `wharf serve` lifecycle.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::WharfProcess;

fn wharf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
}

#[test]
fn check_config_accepts_the_shipped_files() {
    // examples/real-certificate.toml names files that exist only on a real server, and the
    // login examples a users file; rate-limits.toml is checked below with one.
    for file in [
        "conf/wharf.toml",
        "conf/container.toml",
        "examples/self-signed.toml",
        "examples/vhosts.toml",
    ] {
        let out = wharf().args(["check-config", file]).output().unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
}

#[test]
fn check_config_accepts_the_rate_limits_example() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(
        dir.path().join("conf/users.htpasswd"),
        format!("ci:{hash}\n"),
    )
    .unwrap();
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rate-limits.toml");
    let out = wharf()
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

#[test]
fn a_config_naming_missing_certificate_files_is_refused_precisely() {
    let out = wharf()
        .args(["check-config", "examples/real-certificate.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server[0].tls.cert") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn check_config_names_the_key_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[storage]\nrot = \"x\"\n", "unknown field `rot`"),
        (
            "[[listener]]\naddress = \"nowhere\"\n",
            "listener[0].address",
        ),
        (
            "[storage]\nupload_max_age = \"soon\"\n",
            "storage.upload_max_age",
        ),
        ("this is not toml", "config file"),
    ];
    for (text, expected) in cases {
        let path = dir.path().join("bad.toml");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = wharf().arg("check-config").arg(&path).output().unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{text}: {err}");
    }
    let out = wharf()
        .args(["check-config", "/no/such/file.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn serve_refuses_a_broken_config_and_honours_wharf_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.toml");
    std::fs::write(&path, "[log]\nformat = \"xml\"\n").unwrap();
    let out = wharf()
        .arg("serve")
        .env("WHARF_CONFIG", &path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.format"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut process = WharfProcess::spawn(root.path(), conf.path());
    let base = format!("http://{}", process.addr);
    let http = reqwest::Client::new();
    // An upload whose body is still arriving when SIGTERM comes.
    let r = http
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let session = r.headers()["location"].to_str().unwrap().to_owned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let patch = tokio::spawn(
        http.patch(format!("{base}{session}"))
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    // Well more than the server's write batch (2 MiB and a block), so some of it reaches
    // the session's file and its size shows the PATCH is being served (a signal that came
    // before the server read the request would rightly close the idle connection).
    tx.send(Ok(vec![1u8; 5 << 20])).await.unwrap();
    let mut in_flight = false;
    for _ in 0..500 {
        let r = http.get(format!("{base}{session}")).send().await.unwrap();
        if r.headers()["range"] != "0-0" {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(in_flight, "the first batch never landed");

    let pid = process.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // New connections are refused soon after the signal...
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if std::net::TcpStream::connect(process.addr).is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        std::net::TcpStream::connect(process.addr).is_err(),
        "listener closed"
    );
    // ...while the request in flight completes.
    tx.send(Ok(vec![2u8; 1000])).await.unwrap();
    drop(tx);
    let r = patch.await.unwrap().unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    assert_eq!(r.headers()["range"], format!("0-{}", (5 << 20) + 1000 - 1));
    let status = process.child.wait().unwrap();
    assert!(status.success(), "clean exit: {status:?}");
}

#[test]
fn check_config_checks_htpasswd_files_and_access_rules() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, "alice:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n").unwrap();
    let config = dir.path().join("wharf.toml");
    let write = |access: &str| {
        std::fs::write(
            &config,
            format!("[[server]]\ndefault = true\n[server.auth]\nproviders = [{{ htpasswd = {users:?} }}]\naccess = [{access}]\n"),
        )
        .unwrap();
    };
    write("{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\"] }");
    let out = wharf().arg("check-config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server[0].auth") && err.contains(":1:") && err.contains("bcrypt"),
        "{err}"
    );

    std::fs::write(
        &users,
        format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    write("{ repos = \"Team/*\", who = [\"authenticated\"], actions = [\"pull\"] }");
    let out = wharf().arg("check-config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("access[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    write("{ repos = \"team/*\", who = [\"authenticated\"], actions = [\"pull\"] }");
    let out = wharf().arg("check-config").arg(&config).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An OS error is said once: "cannot read ...: No such file or directory (os error 2)", not
/// followed by the same text again from the error's source.
#[test]
fn os_errors_are_printed_once() {
    let out = wharf()
        .args(["check-config", "/no/such/file.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\naddress = \"{}\"\n[storage]\nroot = {:?}\n",
            taken.local_addr().unwrap(),
            dir.path().join("data")
        ),
    )
    .unwrap();
    let out = wharf()
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    assert_eq!(err.matches("(os error 98)").count(), 1, "{err}");
}

/// Outside the repository, with no file named, `check-config` checks what `serve` would run
/// with: the built-in default.
#[test]
fn check_config_without_a_file_checks_what_serve_would_use() {
    let dir = tempfile::tempdir().unwrap();
    let out = wharf()
        .arg("check-config")
        .current_dir(dir.path())
        .env_remove("WHARF_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("built-in default: ok"), "{said}");
}

/// Errors found after loading (access rules, htpasswd files) name the file and line too.
#[test]
fn check_config_names_the_line_of_an_access_rule() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    std::fs::write(&users, format!("a:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!("[[server]]\ndefault = true\n\n[server.auth]\nproviders = [{{ htpasswd = {users:?} }}]\naccess = [\n  {{ repos = \"*\", who = [\"a\"], actions = [\"pull\"] }},\n  {{ repos = \"Team/*\", who = [\"a\"], actions = [\"pull\"] }},\n]\n"),
    )
    .unwrap();
    let out = wharf().arg("check-config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:8:", config.display())) && err.contains("access[1]"),
        "{err}"
    );
}

/// A server whose stdout reader left (a script that read the first "listening on" line
/// and went, `| head -1`) keeps serving: printing the other listeners' lines once
/// panicked it ("failed printing to stdout: Broken pipe") and reset every client.
#[test]
fn serve_outlives_a_closed_stdout() {
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (a, b) = (port(0), port(1));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\naddress = \"127.0.0.1:{a}\"\n[[listener]]\naddress = \"127.0.0.1:{b}\"\n\
             [storage]\nroot = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = wharf()
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before wharf says a word
    let deadline = Instant::now() + Duration::from_secs(20);
    let answered = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("wharf exited ({status}) with its stdout closed");
        }
        let reply = std::net::TcpStream::connect(("127.0.0.1", b))
            .ok()
            .and_then(|mut s| {
                s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut text = String::new();
                std::io::Read::read_to_string(&mut s, &mut text).ok()?;
                Some(text)
            });
        match reply {
            Some(text) if text.starts_with("HTTP/1.1 200") => break true,
            _ if Instant::now() > deadline => break false,
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered, "wharf never answered on its second listener");
}
