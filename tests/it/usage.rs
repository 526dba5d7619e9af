//! Usage per repository: `GET /wharf/api/v1/usage` on every backend (shared and unique
//! bytes), filtered by what the caller may pull, and `wharf usage` on 10,000 blobs.

use std::process::Command;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::on_every_backend;
use crate::support::{Backend, TestServer};

async fn usage(s: &TestServer, auth: Option<(&str, &str)>) -> Value {
    let r = s.http.get(s.url("/wharf/api/v1/usage"));
    let r = match auth {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["repositories"].clone()
}

async fn shared_bytes_count_in_each_repository_and_unique_ones_once(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let (m1, _, _) = s.push_image("team/a", "v1", b"shared layer").await;
    s.push_image("team/b", "v1", b"shared layer").await;
    s.push_blob("team/a", b"only a").await;
    let r = s
        .http
        .get(s.url(&format!("/v2/team/a/manifests/{m1}")))
        .send()
        .await
        .unwrap();
    let manifest = r.bytes().await.unwrap().len() as u64;
    // config `{"layer":12}` (12 bytes) + layer (12) + manifest, in both.
    let shared = 12 + 12 + manifest;
    assert_eq!(
        usage(&s, None).await,
        json!([
            {"repository": "team/a", "tags": 1, "manifests": 1, "bytes": shared + 6, "unique_bytes": 6},
            {"repository": "team/b", "tags": 1, "manifests": 1, "bytes": shared, "unique_bytes": 0},
        ])
    );
}

on_every_backend!(shared_bytes_count_in_each_repository_and_unique_ones_once);

/// Like the catalog: only repositories the caller may pull.
#[tokio::test]
async fn usage_shows_only_what_the_caller_may_pull() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    let hash = bcrypt::hash("a-pass", 4).unwrap();
    std::fs::write(&users, format!("alice:{hash}\n")).unwrap();
    let (s, _) = TestServer::start_config(&format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n\
         [server.auth]\nproviders = [{{ htpasswd = {:?} }}]\naccess = [\n\
         {{ repos = \"*\", who = [\"alice\"], actions = [\"pull\", \"push\"] }},\n\
         {{ repos = \"public/*\", who = [\"anonymous\"], actions = [\"pull\", \"push\"] }},\n]\n",
        users.display().to_string()
    ))
    .await;
    s.push_image("public/app", "v1", b"open").await;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["repository"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(usage(&s, None).await), ["public/app"]);
    assert_eq!(
        names(usage(&s, Some(("alice", "a-pass"))).await),
        ["public/app"]
    );
}

/// 10,000 blobs in 1,000 repositories, written straight into registry:2's layout: `wharf
/// usage` answers in seconds (one enumeration, not one per repository). Prints the time.
#[test]
#[ignore = "a measurement: writing 10,000 blobs took about two minutes on the shared test machine"]
fn usage_of_ten_thousand_blobs_takes_seconds() {
    let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v2 = root.path().join("docker/registry/v2");
    for i in 0..10_000u32 {
        let hex = format!("{:064x}", u128::from(i) * 7919 + 1);
        let dir = v2.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data"), vec![b'x'; (i % 100) as usize]).unwrap();
        // Each blob linked by its repository, and every tenth also by a shared one.
        for repo in [format!("r{}", i % 1000), "shared".to_owned()]
            .iter()
            .take(1 + (i % 10 == 0) as usize)
        {
            let link = v2.join(format!("repositories/{repo}/_layers/sha256/{hex}"));
            std::fs::create_dir_all(&link).unwrap();
            std::fs::write(link.join("link"), format!("sha256:{hex}")).unwrap();
        }
    }
    let config = conf.path().join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nroot = {:?}\n",
            root.path().display().to_string()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["usage", "--json", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let repos = v["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 1001);
    let shared = repos.iter().find(|r| r["repository"] == "shared").unwrap();
    assert_eq!(shared["unique_bytes"], 0);
    eprintln!("wharf usage: 10,000 blobs, 1,001 repositories in {took:.2?}");
    assert!(took.as_secs() < 20, "took {took:?}");
}
