//! Deleting a whole repository: `DELETE /wharf/api/v1/repositories/<name>` on every backend
//! (gone from the catalog and search at once, pulls fail, a nested repository survives,
//! pushing again works), its permission (401 with a challenge, 403 for a reader, 405 with
//! deletes off), podman against it, and `wharf repo delete` from the command line.

use std::process::Command;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::clients::{import_image, run};
use crate::on_every_backend;
use crate::support::{assert_error, have_program, podman, Backend, TestServer, WharfProcess};

const DELETES_ON: &str = "[registry]\ndelete = true\n";

async fn delete_repo(s: &TestServer, name: &str, auth: Option<(&str, &str)>) -> Response {
    let r = s
        .http
        .delete(s.url(&format!("/wharf/api/v1/repositories/{name}")));
    with(r, auth).send().await.unwrap()
}

/// An error of wharf's API: the registry's JSON envelope (without the `/v2/` version header).
async fn assert_api_error(r: Response, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status, "status for expected {code}");
    let body: Value = r.json().await.expect("error body is JSON");
    assert_eq!(body["errors"][0]["code"], code, "body: {body}");
}

fn with(r: RequestBuilder, auth: Option<(&str, &str)>) -> RequestBuilder {
    match auth {
        Some((user, password)) => r.basic_auth(user, Some(password)),
        None => r,
    }
}

async fn catalog(s: &TestServer, auth: Option<(&str, &str)>) -> Value {
    let r = with(s.http.get(s.url("/v2/_catalog")), auth);
    r.send().await.unwrap().json::<Value>().await.unwrap()["repositories"].clone()
}

async fn a_deleted_repository_is_gone_at_once_and_can_be_pushed_again(backend: Backend) {
    let Some((s, _store)) = TestServer::start_with_in(backend, DELETES_ON).await else {
        return;
    };
    s.push_image("team/app", "v1", b"one").await;
    s.push_image("team/app", "v2", b"two").await;
    s.push_image("team/app/nested", "v1", b"three").await;
    s.push_image("other", "v1", b"four").await;
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "read once, so a cache may hold it"
    );

    let r = delete_repo(&s, "team/app", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"repository": "team/app", "tags": ["v1", "v2"]})
    );

    assert_eq!(catalog(&s, None).await, json!(["other", "team/app/nested"]));
    let r = s.http.get(s.url("/v1/search?q=team")).send().await.unwrap();
    let found: Value = r.json().await.unwrap();
    assert_eq!(found["results"][0]["name"], "team/app/nested");
    assert_eq!(found["num_results"], 1);
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let r = s
        .http
        .get(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    let r = delete_repo(&s, "team/app", None).await;
    assert_api_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
    let r = s
        .http
        .get(s.url("/v2/team/app/nested/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the nested repository stays");

    s.push_image("team/app", "v3", b"one").await;
    let r = s
        .http
        .get(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["v3"]));
}

on_every_backend!(a_deleted_repository_is_gone_at_once_and_can_be_pushed_again);

fn users(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("users.htpasswd");
    let line =
        |user: &str, password: &str| format!("{user}:{}\n", bcrypt::hash(password, 4).unwrap());
    std::fs::write(&path, line("alice", "a-pass") + &line("bob", "b-pass")).unwrap();
    path
}

/// The same rules as the registry API: anonymous gets a challenge, a reader is denied and
/// told why, and only a user whose rules name `delete` deletes.
#[tokio::test]
async fn only_a_user_allowed_to_delete_deletes_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = TestServer::start_config(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n\
         [server.auth]\nrealm = \"wharf-test\"\nproviders = [{{ htpasswd = {:?} }}]\naccess = [\n\
         {{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\"] }},\n\
         {{ repos = \"*\", who = [\"alice\"], actions = [\"delete\"] }},\n]\n",
        users(dir.path()).display().to_string()
    ))
    .await;
    let alice = Some(("alice", "a-pass"));
    let (config, layer) = (b"{}".to_vec(), b"layer".to_vec());
    for blob in [&config, &layer] {
        let d = crate::support::sha256(blob);
        let r = with(
            s.http
                .post(s.url(&format!("/v2/team/app/blobs/uploads/?digest={d}"))),
            alice,
        );
        assert_eq!(
            r.body(blob.clone()).send().await.unwrap().status(),
            StatusCode::CREATED
        );
    }
    let m = crate::support::image_manifest(
        &crate::support::sha256(&config),
        config.len(),
        &[(&crate::support::sha256(&layer), layer.len())],
    );
    let r = with(s.http.put(s.url("/v2/team/app/manifests/v1")), alice)
        .header("Content-Type", crate::support::OCI_MANIFEST)
        .body(serde_json::to_vec(&m).unwrap());
    assert_eq!(r.send().await.unwrap().status(), StatusCode::CREATED);

    let r = delete_repo(&s, "team/app", None).await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"wharf-test\"",
        "a challenge, so clients send their credentials"
    );
    assert_api_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let r = delete_repo(&s, "team/app", Some(("bob", "b-pass"))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "DENIED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("bob may not delete") && message.contains("team/app"),
        "{message}"
    );
    assert_eq!(
        catalog(&s, alice).await,
        json!(["team/app"]),
        "refused, so still there"
    );

    let r = delete_repo(&s, "team/app", alice).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(catalog(&s, alice).await, json!([]));
}

/// Deletes are off unless granted (as for manifests): the repository stays.
#[tokio::test]
async fn with_deletes_off_a_repository_delete_is_refused() {
    let s = TestServer::start().await;
    s.push_image("team/app", "v1", b"kept").await;
    let r = delete_repo(&s, "team/app", None).await;
    assert_api_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    assert_eq!(catalog(&s, None).await, json!(["team/app"]));
    let r = delete_repo(&s, "..%2Fetc", None).await;
    assert_api_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
}

fn wharf_repo_delete(config: &std::path::Path, name: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["repo", "delete", name, "--config"])
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// podman pushes two repositories; one is deleted over HTTP, the other with `wharf repo
/// delete` while the server is stopped. Each leaves the catalog, podman cannot pull it, and
/// podman can push it again. (The server is a child process: the blocking podman calls
/// hold up nothing it needs.)
#[tokio::test]
async fn podman_sees_deleted_repositories_go_and_can_push_them_again() {
    if !have_program("podman", "podman") {
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n{DELETES_ON}",
        root.path().display().to_string()
    );
    let mut wharf = WharfProcess::spawn_config(conf.path(), &toml);
    import_image(work.path(), "localhost/e2e/app:1", "hello");
    let push = |addr: std::net::SocketAddr, repo: &str| {
        let remote = format!("{addr}/{repo}:1");
        run(podman(work.path()).args([
            "push",
            "--tls-verify=false",
            "localhost/e2e/app:1",
            &remote,
        ]));
        remote
    };
    let pull = |remote: &str| {
        podman(work.path())
            .args(["pull", "-q", "--tls-verify=false", remote])
            .output()
            .unwrap()
    };
    let http = reqwest::Client::new();
    let catalog = |addr: std::net::SocketAddr| {
        let r = http.get(format!("http://{addr}/v2/_catalog")).send();
        async move { r.await.unwrap().json::<Value>().await.unwrap()["repositories"].clone() }
    };
    let app = push(wharf.addr, "team/app");
    push(wharf.addr, "team/keep");

    let url = format!("http://{}/wharf/api/v1/repositories/team/app", wharf.addr);
    let r = http.delete(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(catalog(wharf.addr).await, json!(["team/keep"]));
    let refused = pull(&app);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "pulled a deleted repository");
    assert!(
        stderr.contains("manifest unknown"),
        "podman says why: {stderr}"
    );
    push(wharf.addr, "team/app");
    assert!(pull(&app).status.success(), "pushed again, it pulls");

    let config = conf.path().join("wharf.toml");
    let busy = wharf_repo_delete(&config, "team/keep");
    assert!(!busy.status.success(), "the server holds the root");
    let stderr = String::from_utf8_lossy(&busy.stderr);
    assert!(
        stderr.contains("stop the server") && stderr.contains("HTTP API"),
        "{stderr}"
    );
    wharf.terminate();
    let done = wharf_repo_delete(&config, "team/keep");
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(
        stdout.contains("deleted repository team/keep (1 tags)"),
        "{stdout}"
    );
    let again = wharf_repo_delete(&config, "team/keep");
    assert!(!again.status.success(), "a second delete finds nothing");

    let wharf = WharfProcess::spawn_config(conf.path(), &toml);
    assert_eq!(catalog(wharf.addr).await, json!(["team/app"]));
    let keep = format!("{}/team/keep:1", wharf.addr);
    assert!(!pull(&keep).status.success());
    push(wharf.addr, "team/keep");
    assert!(pull(&keep).status.success());
}
