//! The web UI in a real browser: Debian's chromium driven by playwright-core
//! (`tests/ui/e2e.mjs`) against a server with logins, holding images pushed by podman and a
//! hostile one. Screenshots of each page land in `target/ui-screenshots/`. Outside CI, a
//! missing podman, node, chromium or `npm ci --prefix tests/ui` skips the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::clients::{import_image, run};
use crate::support::{have, have_program, podman, TestServer};

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

/// Whether node, chromium and the test's npm packages are here (see the module docs).
fn have_browser() -> bool {
    if !have_program("node", "nodejs") || !have_program("chromium", "chromium") {
        return false;
    }
    let installed = ui_dir().join("node_modules/playwright-core").is_dir();
    if !installed {
        if std::env::var_os("CI").is_some() {
            panic!("tests/ui/node_modules is missing; CI must run `npm ci --prefix tests/ui`");
        }
        eprintln!("SKIPPED: run `npm ci --prefix tests/ui` for the browser test");
    }
    installed
}

fn config(users: &Path) -> String {
    format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[[server]]
default = true
[server.auth]
providers = [{{ htpasswd = {users:?} }}]
access = [
  {{ repos = "*", who = ["alice"], actions = ["pull", "push", "delete"] }},
  {{ repos = "*", who = ["bob"], actions = ["pull"] }},
  {{ repos = "evil/*", who = ["alice", "bob"], actions = ["pull", "push"] }},
  {{ repos = "evil/*", who = ["anonymous"], actions = ["push"] }},
]
"#,
        users = users.display().to_string()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_browse_search_copy_delete_and_log_out_in_chromium() {
    if !have_program("podman", "podman") || !have_browser() || !have("tar", "apt-get install tar") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    let line = |u: &str, p: &str| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap());
    std::fs::write(&users, line("alice", "a-pass") + &line("bob", "b-pass")).unwrap();
    let (s, _) = TestServer::start_config(&config(&users)).await;

    // podman pushes team/app:1, team/app:old and other/thing:1 as alice.
    let work = tempfile::tempdir().unwrap();
    let addr = s.addr.to_string();
    tokio::task::spawn_blocking(move || {
        import_image(work.path(), "localhost/ui/app:1", "hello from the UI test");
        for remote in ["team/app:1", "team/app:old", "other/thing:1"] {
            run(podman(work.path()).args([
                "push",
                "--tls-verify=false",
                "--creds",
                "alice:a-pass",
                "localhost/ui/app:1",
                &format!("{addr}/{remote}"),
            ]));
        }
    })
    .await
    .unwrap();
    crate::ui::push_hostile_image(&s, "evil/app", "1").await;

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("e2e.mjs")
            .current_dir(ui_dir())
            .env("WHARF_URL", base)
            .env("SCREENSHOTS", &shots)
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
