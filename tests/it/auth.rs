//! Logins and permissions, end to end: Basic auth with htpasswd, the `/v2/` challenge, the
//! permission matrix (including catalog filtering and mounts), and the login cache.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{assert_error, image_manifest, sha256, TestServer, OCI_MANIFEST};

/// Users (bcrypt cost 4 keeps the suite quick; the cache test measures verifications, not
/// time): alice owns team-a, bob reads it through a group, carol is just authenticated.
fn htpasswd(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("users.htpasswd");
    let line = |u: &str, p: &str| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap());
    std::fs::write(
        &path,
        format!(
            "{}{}{}",
            line("alice", "a-pass"),
            line("bob", "b-pass"),
            line("carol", "c-pass")
        ),
    )
    .unwrap();
    path
}

async fn server() -> (TestServer, tempfile::TempDir) {
    server_with("").await
}

/// The test server with `extra` top-level TOML tables.
async fn server_with(extra: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = htpasswd(dir.path());
    let toml = format!(
        r#"
{extra}
[[listener]]
address = "127.0.0.1:0"
[admin]
address = "127.0.0.1:0"
[[server]]
default = true
[server.auth]
realm = "test registry"
providers = [{{ htpasswd = {file:?} }}]
access = [
  {{ repos = "*", who = ["authenticated"], actions = ["pull", "push"] }},
  {{ repos = "public/*", who = ["anonymous", "authenticated"], actions = ["pull"] }},
  {{ repos = "public/*", who = ["alice"], actions = ["push", "delete"] }},
  {{ repos = "team-a/*", who = ["alice"], actions = ["pull", "push", "delete"] }},
  {{ repos = "team-a/*", who = ["group:readers"], actions = ["pull"] }},
]
[server.auth.groups]
readers = ["bob"]
"#
    );
    let (s, _) = TestServer::start_config(&toml).await;
    (s, dir)
}

/// Pushes a one-layer image as `user`; returns the push's final status.
async fn push(s: &TestServer, user: Option<(&str, &str)>, repo: &str) -> StatusCode {
    let auth = |r: reqwest::RequestBuilder| match user {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    let layer = format!("layer of {repo}");
    let d = sha256(layer.as_bytes());
    let r = auth(
        s.http
            .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}"))),
    )
    .body(layer.clone())
    .send()
    .await
    .unwrap();
    if r.status() != StatusCode::CREATED {
        return r.status();
    }
    let c = sha256(b"{}");
    auth(
        s.http
            .post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={c}"))),
    )
    .body("{}")
    .send()
    .await
    .unwrap();
    let m = image_manifest(&c, 2, &[(&d, layer.len())]);
    let r = auth(s.http.put(s.url(&format!("/v2/{repo}/manifests/v1"))))
        .header("Content-Type", OCI_MANIFEST)
        .body(serde_json::to_vec(&m).unwrap())
        .send()
        .await
        .unwrap();
    r.status()
}

async fn pull(s: &TestServer, user: Option<(&str, &str)>, repo: &str) -> StatusCode {
    let r = s.http.get(s.url(&format!("/v2/{repo}/manifests/v1")));
    let r = match user {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    r.send().await.unwrap().status()
}

const ALICE: Option<(&str, &str)> = Some(("alice", "a-pass"));
const BOB: Option<(&str, &str)> = Some(("bob", "b-pass"));
const CAROL: Option<(&str, &str)> = Some(("carol", "c-pass"));

#[tokio::test]
async fn anonymous_v2_is_challenged_even_when_some_pulls_are_public() {
    let (s, _d) = server().await;
    // docker and podman send stored credentials only after GET /v2/ answered 401 with a
    // challenge: a 200 here would make them push anonymously, and fail.
    let r = s.http.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"test registry\""
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let r = s
        .http
        .get(s.url("/v2/"))
        .basic_auth("alice", Some("a-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .get(s.url("/v2/"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"test registry\""
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let r = s
        .http
        .get(s.url("/v2/"))
        .basic_auth("nobody", Some("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = s
        .http
        .get(s.url("/v2/"))
        .header("Authorization", "Basic !!!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_permission_matrix() {
    let (s, _d) = server().await;
    // push: 401 anonymous, 403 for a user without the right, 201 with it.
    assert_eq!(push(&s, None, "team-a/app").await, StatusCode::UNAUTHORIZED);
    assert_eq!(push(&s, BOB, "team-a/app").await, StatusCode::FORBIDDEN);
    assert_eq!(
        push(&s, CAROL, "team-a/app").await,
        StatusCode::FORBIDDEN,
        "team-a/* beats *"
    );
    assert_eq!(push(&s, ALICE, "team-a/app").await, StatusCode::CREATED);
    assert_eq!(
        push(&s, CAROL, "carol/tool").await,
        StatusCode::CREATED,
        "* lets any user push"
    );
    assert_eq!(push(&s, ALICE, "public/base").await, StatusCode::CREATED);
    assert_eq!(push(&s, CAROL, "public/base").await, StatusCode::FORBIDDEN);

    // pull
    assert_eq!(pull(&s, None, "team-a/app").await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        pull(&s, BOB, "team-a/app").await,
        StatusCode::OK,
        "bob reads through group:readers"
    );
    assert_eq!(pull(&s, CAROL, "team-a/app").await, StatusCode::FORBIDDEN);
    assert_eq!(
        pull(&s, None, "public/base").await,
        StatusCode::OK,
        "anonymous pull of public/*"
    );
    assert_eq!(pull(&s, None, "carol/tool").await, StatusCode::UNAUTHORIZED);
    assert_eq!(pull(&s, ALICE, "carol/tool").await, StatusCode::OK);

    // delete: nobody has it on carol/*; alice has it on team-a/*.
    let del = |user: (&str, &str), repo: &str| {
        s.http
            .delete(s.url(&format!("/v2/{repo}/manifests/v1")))
            .basic_auth(user.0, Some(user.1))
            .send()
    };
    let r = del(("carol", "c-pass"), "carol/tool").await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert_eq!(
        del(("bob", "b-pass"), "team-a/app").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        del(("alice", "a-pass"), "team-a/app")
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn catalog_and_search_list_only_pullable_repositories() {
    let (s, _d) = server().await;
    push(&s, ALICE, "team-a/app").await;
    push(&s, ALICE, "public/base").await;
    push(&s, CAROL, "carol/tool").await;
    let catalog = |user: Option<(&str, &str)>| {
        let r = s.http.get(s.url("/v2/_catalog"));
        let r = match user {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        };
        async move { r.send().await.unwrap().json::<Value>().await.unwrap()["repositories"].clone() }
    };
    assert_eq!(catalog(None).await, serde_json::json!(["public/base"]));
    assert_eq!(
        catalog(CAROL).await,
        serde_json::json!(["carol/tool", "public/base"])
    );
    assert_eq!(
        catalog(BOB).await,
        serde_json::json!(["carol/tool", "public/base", "team-a/app"])
    );
    let r = s.http.get(s.url("/v1/search?q=a")).send().await.unwrap();
    let names: Vec<String> = r.json::<Value>().await.unwrap()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["public/base"]);
}

#[tokio::test]
async fn mounts_need_pull_on_the_source_and_push_on_the_target() {
    let (s, _d) = server().await;
    push(&s, ALICE, "team-a/app").await;
    let d = sha256(b"layer of team-a/app");
    let mount = |user: (&str, &str), target: &str| {
        s.http
            .post(s.url(&format!(
                "/v2/{target}/blobs/uploads/?mount={d}&from=team-a/app"
            )))
            .basic_auth(user.0, Some(user.1))
            .send()
    };
    assert_eq!(
        mount(("alice", "a-pass"), "alice/copy")
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    // carol may push to carol/* but not pull team-a: no mount, an ordinary upload instead.
    let r = mount(("carol", "c-pass"), "carol/copy").await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .http
        .head(s.url(&format!("/v2/carol/copy/blobs/{d}")))
        .basic_auth("carol", Some("c-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "nothing leaked from team-a"
    );
    // bob may pull team-a but not push there.
    assert_eq!(
        mount(("bob", "b-pass"), "team-a/other")
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn many_requests_cost_one_verification() {
    let (s, _d) = server().await;
    for _ in 0..30 {
        assert_eq!(
            s.http
                .head(s.url("/v2/"))
                .basic_auth("alice", Some("a-pass"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    for _ in 0..3 {
        s.http
            .head(s.url("/v2/"))
            .basic_auth("alice", Some("wrong"))
            .send()
            .await
            .unwrap();
    }
    let metrics = reqwest::get(format!("http://{}/metrics", s.admin.unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count: f64 = metrics
        .lines()
        .find(|l| l.starts_with("wharf_login_verifications_total"))
        .unwrap_or_else(|| panic!("{metrics}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        count, 4.0,
        "one for the 30 good logins, one per wrong password (failures are not cached)"
    );
}

/// podman login (wrong, then right password), then push and pull with podman and skopeo
/// using the stored credentials, against a real `wharf serve` with an htpasswd made by
/// `wharf htpasswd`.
#[test]
fn podman_and_skopeo_log_in_and_use_stored_credentials() {
    use std::process::{Command, Stdio};
    if !crate::support::have_program("podman", "podman")
        || !crate::support::have_program("skopeo", "skopeo")
    {
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let users = conf.path().join("users.htpasswd");
    let mut add = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args([
            "htpasswd",
            users.to_str().unwrap(),
            "dev",
            "--password-stdin",
            "--cost",
            "5",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"dev-secret\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[[server]]\ndefault = true\n[server.auth]\nproviders = [{{ htpasswd = {:?} }}]\naccess = [{{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\", \"delete\"] }}]\n",
        root.path().display().to_string(),
        users.display().to_string()
    );
    let wharf = crate::support::WharfProcess::spawn_config(conf.path(), &toml);
    let registry = wharf.addr.to_string();
    let authfile = work.path().join("auth.json");
    let podman = |args: &[&str]| {
        crate::support::podman(work.path())
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |out: std::process::Output, what: &str| {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let auth = authfile.to_str().unwrap();
    let bad = podman(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        auth,
        "-u",
        "dev",
        "-p",
        "wrong",
        &registry,
    ]);
    assert!(!bad.status.success(), "a wrong password is refused");
    ok(
        podman(&[
            "login",
            "--tls-verify=false",
            "--authfile",
            auth,
            "-u",
            "dev",
            "-p",
            "dev-secret",
            &registry,
        ]),
        "podman login",
    );

    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello.txt"), "with a login").unwrap();
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
    ok(
        podman(&["import", tar.to_str().unwrap(), "localhost/auth/app:1"]),
        "import",
    );
    let remote = format!("{registry}/team/app:1");
    ok(
        podman(&[
            "push",
            "--tls-verify=false",
            "--authfile",
            auth,
            "localhost/auth/app:1",
            &remote,
        ]),
        "push",
    );
    ok(podman(&["rmi", "-a", "-f"]), "rmi");
    ok(
        podman(&["pull", "--tls-verify=false", "--authfile", auth, &remote]),
        "pull",
    );

    // skopeo with the same stored credentials, and without them.
    let copy = Command::new("skopeo")
        .args([
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--authfile",
            auth,
        ])
        .arg(format!("docker://{remote}"))
        .arg(format!("docker://{registry}/mirror/app:1"))
        .output()
        .unwrap();
    ok(copy, "skopeo copy");
    let anonymous = Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--no-creds"])
        .arg(format!("docker://{registry}/mirror/app:1"))
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "anonymous inspect is refused");
}

#[tokio::test]
async fn upload_sessions_belong_to_the_user_that_opened_them() {
    let (s, _d) = server().await;
    // Both may push to shared/* (the "*" rule); the session is still alice's alone.
    let r = s
        .http
        .post(s.url("/v2/shared/x/blobs/uploads/"))
        .basic_auth("alice", Some("a-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = s.url(r.headers()["location"].to_str().unwrap());
    // Whatever carol tries on alice's session, it does not exist for her.
    for request in [
        s.http.patch(&loc).body("injected"),
        s.http.get(&loc),
        s.http.delete(&loc),
    ] {
        let r = request
            .basic_auth("carol", Some("c-pass"))
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
    let r = s
        .http
        .get(&loc)
        .basic_auth("alice", Some("a-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["range"], "0-0", "carol's bytes never landed");
}

#[tokio::test]
async fn htpasswd_changes_take_effect_without_a_restart() {
    // Polling with the new password fails until the file is re-read; those failures must
    // not trip the failed-login limit.
    let (s, d) = server_with("[failed_logins]\nrate = \"100/s\"\nburst = 1000\n").await;
    let ok = |p: &'static str| {
        let r = s
            .http
            .get(s.url("/v2/"))
            .basic_auth("alice", Some(p))
            .send();
        async move { r.await.unwrap().status() }
    };
    assert_eq!(ok("a-pass").await, StatusCode::OK);
    // Change alice's password and drop carol, as `wharf htpasswd` would.
    let file = d.path().join("users.htpasswd");
    let bob = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("bob:"))
        .unwrap()
        .to_owned();
    std::fs::write(
        &file,
        format!("alice:{}\n{bob}\n", bcrypt::hash("new-pass", 4).unwrap()),
    )
    .unwrap();
    let mut switched = false;
    for _ in 0..100 {
        if ok("new-pass").await == StatusCode::OK {
            switched = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(switched, "the new password works once the file is re-read");
    assert_eq!(
        ok("a-pass").await,
        StatusCode::UNAUTHORIZED,
        "the cached old login is not honoured"
    );
    let r = s
        .http
        .get(s.url("/v2/"))
        .basic_auth("carol", Some("c-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a deleted user is out at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_logged_without_the_password() {
    let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let file = htpasswd(conf.path());
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[[server]]\ndefault = true\n[server.auth]\nproviders = [{{ htpasswd = {:?} }}]\naccess = [{{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\"] }}]\n",
        root.path().display().to_string(),
        file.display().to_string()
    );
    let log_path = conf.path().join("wharf.log");
    let mut wharf = crate::support::WharfProcess::spawn_logging(
        conf.path(),
        &toml,
        std::fs::File::create(&log_path).unwrap(),
    );
    let http = reqwest::Client::new();
    let r = http
        .get(format!("http://{}/v2/", wharf.addr))
        .basic_auth("alice", Some("hunter2-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .get(format!("http://{}/v2/", wharf.addr))
        .basic_auth("alice", Some("a-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    wharf.terminate();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("login failed"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains("127.0.0.1") && line.contains("alice"),
        "{line}"
    );
    assert!(
        !text.contains("hunter2-secret") && !text.contains("a-pass"),
        "passwords never reach the log"
    );
    assert!(
        text.contains("\"GET /v2/ HTTP/1.1\" 200") && text.contains(" - alice ["),
        "the access log names the user"
    );
}

/// `wharf htpasswd FILE USER && podman login -u USER` works on the first try: the server
/// sees the file change from its event, not at its next poll (the login would otherwise be
/// refused, and counted as a failed one).
#[test]
fn a_user_added_with_wharf_htpasswd_can_log_in_at_once() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if !crate::support::have_program("podman", "podman") {
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let users = conf.path().join("users.htpasswd");
    let add = |user: &str, password: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args([
                "htpasswd",
                users.to_str().unwrap(),
                user,
                "--password-stdin",
            ])
            .args(["--cost", "4"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success());
    };
    add("first", "first-secret");
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[[server]]\ndefault = true\n[server.auth]\nproviders = [{{ htpasswd = {:?} }}]\naccess = [{{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\"] }}]\n",
        root.path().display().to_string(),
        users.display().to_string()
    );
    let wharf = crate::support::WharfProcess::spawn_config(conf.path(), &toml);
    let authfile = work.path().join("auth.json");
    add("second", "second-secret");
    let out = crate::support::podman(work.path())
        .args(["login", "--tls-verify=false", "--authfile"])
        .arg(&authfile)
        .args(["-u", "second", "-p", "second-secret"])
        .arg(wharf.addr.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman login right after wharf htpasswd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
