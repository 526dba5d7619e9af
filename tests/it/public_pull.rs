//! Anonymous pulls of public repositories on a server with logins, by the Go clients.
//! After the `/v2/` challenge, podman and skopeo send `Authorization: Basic Og==` (an empty
//! user and password) when they have no credentials: that is anonymous, not an error.

use std::process::{Command, Output};

use reqwest::StatusCode;

use crate::support::{have_program, podman, WharfProcess};

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real `wharf serve` whose `public/*` is open to anonymous pulls, with alice able to push.
fn public_server(root: &std::path::Path, conf: &std::path::Path) -> WharfProcess {
    let users = conf.join("users.htpasswd");
    std::fs::write(
        &users,
        format!("alice:{}\n", bcrypt::hash("a-pass", 4).unwrap()),
    )
    .unwrap();
    let toml = format!(
        r#"[[listener]]
address = "127.0.0.1:0"
[storage]
root = {root:?}
[[server]]
default = true
[server.auth]
providers = [{{ htpasswd = {users:?} }}]
access = [
  {{ repos = "*", who = ["authenticated"], actions = ["pull", "push"] }},
  {{ repos = "public/*", who = ["anonymous"], actions = ["pull"] }},
  {{ repos = "public/*", who = ["authenticated"], actions = ["push"] }},
]
"#,
        root = root.display().to_string(),
        users = users.display().to_string(),
    );
    WharfProcess::spawn_config(conf, &toml)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_basic_credentials_are_anonymous() {
    let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wharf = public_server(root.path(), conf.path());
    let http = reqwest::Client::new();
    let get = |path: &str, auth: Option<&'static str>| {
        let r = http.get(format!("http://{}{path}", wharf.addr));
        match auth {
            Some(value) => r.header("Authorization", value),
            None => r,
        }
    };
    // "Og==" is ":": no user, no password. A tag that does not exist is 404 for anyone
    // who may pull, so a 404 here means the anonymous pull was allowed.
    let r = get("/v2/public/app/manifests/none", Some("Basic Og=="))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "anonymous may pull public/*"
    );
    let r = get("/v2/private/app/manifests/none", Some("Basic Og=="))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "but not private/*");
    assert!(r.headers().contains_key("www-authenticate"));
    // A user without a password is still credentials (and wrong); garbage is still refused.
    for bad in ["Basic OnB3", "Basic !!!", "Basic YWxpY2U6d3Jvbmc="] {
        let r = get("/v2/public/app/manifests/none", Some(bad))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
    }
}

/// podman pushes with a login, then podman pulls and skopeo inspects with none.
#[test]
fn podman_and_skopeo_pull_public_images_anonymously() {
    if !have_program("podman", "podman") || !have_program("skopeo", "skopeo") {
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let wharf = public_server(root.path(), conf.path());
    let registry = wharf.addr.to_string();
    // An empty auth file, so nothing stored elsewhere on the machine is sent.
    let authfile = work.path().join("auth.json");
    std::fs::write(&authfile, "{\"auths\":{}}").unwrap();
    let auth = authfile.to_str().unwrap();
    let run = |args: &[&str]| podman(work.path()).args(args).output().unwrap();

    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello.txt"), "public").unwrap();
    let tar = work.path().join("rootfs.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["-cf", tar.to_str().unwrap(), "."])
        .status()
        .unwrap()
        .success());
    ok(
        &run(&["import", tar.to_str().unwrap(), "localhost/pub/app:1"]),
        "import",
    );
    let public = format!("{registry}/public/app:1");
    let private = format!("{registry}/private/app:1");
    for remote in [&public, &private] {
        ok(
            &run(&[
                "push",
                "--tls-verify=false",
                "--authfile",
                auth,
                "--creds",
                "alice:a-pass",
                "localhost/pub/app:1",
                remote,
            ]),
            "push with a login",
        );
    }
    ok(&run(&["rmi", "-a", "-f"]), "rmi");

    ok(
        &run(&["pull", "--tls-verify=false", "--authfile", auth, &public]),
        "anonymous podman pull of a public image",
    );
    let inspect = |image: &str| {
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--no-creds"])
            .arg(format!("docker://{image}"))
            .output()
            .unwrap()
    };
    ok(
        &inspect(&public),
        "skopeo inspect --no-creds of a public image",
    );
    let refused = inspect(&private);
    assert!(!refused.status.success(), "a private image stays closed");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("authentication required") || why.contains("unauthorized"),
        "{why}"
    );
}
