//! How access rules combine, as an operator meets it: `check-config` warns when a narrower
//! pattern grants less than a broader one to the same principals, and a refusal names the
//! action and the repository.

use std::process::Command;

use reqwest::StatusCode;

use crate::support::TestServer;

fn config(users: &std::path::Path, rules: &str) -> String {
    format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n[server.auth]\nproviders = [{{ htpasswd = {:?} }}]\naccess = [\n{rules}]\n",
        users.display().to_string()
    )
}

fn users(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("users.htpasswd");
    std::fs::write(
        &path,
        format!(
            "alice:{}\nbob:{}\n",
            bcrypt::hash("a-pass", 4).unwrap(),
            bcrypt::hash("b-pass", 4).unwrap()
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_config_warns_when_a_narrower_pattern_takes_rights_away() {
    let dir = tempfile::tempdir().unwrap();
    let users = users(dir.path());
    let check = |rules: &str| {
        let path = dir.path().join("wharf.toml");
        std::fs::write(&path, config(&users, rules)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "a warning is not an error: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let surprising = check(
        "{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\"] },\n\
         { repos = \"public/*\", who = [\"anonymous\"], actions = [\"pull\"] },\n",
    );
    assert!(surprising.contains("warning"), "{surprising}");
    for part in [
        "access[1]",
        "public/*",
        "push",
        "authenticated",
        "access[0]",
    ] {
        assert!(surprising.contains(part), "names {part}: {surprising}");
    }
    let intended = check(
        "{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\"] },\n\
         { repos = \"public/*\", who = [\"anonymous\"], actions = [\"pull\"] },\n\
         { repos = \"public/*\", who = [\"authenticated\"], actions = [\"push\"] },\n",
    );
    assert!(!intended.contains("warning"), "{intended}");
}

#[tokio::test]
async fn a_refusal_names_the_action_and_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let users = users(dir.path());
    let (s, _) = TestServer::start_config(&config(
        &users,
        "{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\"] },\n",
    ))
    .await;
    let r = s
        .http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .basic_auth("bob", Some("b-pass"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("bob may not push") && body.contains("team/app"),
        "{body}"
    );
}
