//! `wharf retention [--dry-run]` on a root a real server pushed to: one test per rule kind
//! (keep_last, keep_tags over delete_older_than, delete_tags with match = "all", untagged
//! manifests by age, immutable tags), and a dry run that changes nothing. Push times are
//! what registry:2's layout records: a tag's `current/link` write time, a revision link's
//! for an untagged manifest; the tests age them as time would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use reqwest::{Client, StatusCode};

use crate::support::{image_manifest, sha256, Backend, TestServer, WharfProcess, OCI_MANIFEST};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// A stopped server's root with images pushed through it, and its config.
struct Pushed {
    root: tempfile::TempDir,
    conf: tempfile::TempDir,
    toml: String,
}

impl Pushed {
    /// Starts `wharf serve` with `rules`, lets `push` push through it, then stops it (the
    /// command takes the root's lock, as with `wharf gc`).
    async fn new(rules: &str, pushes: &[(&str, &str, &str)]) -> (Self, Vec<String>) {
        let (root, conf) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let toml = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n{rules}\n",
            root.path().display().to_string()
        );
        let mut wharf = WharfProcess::spawn_async(conf.path(), &toml).await;
        let (http, base) = (Client::new(), format!("http://{}", wharf.addr));
        let mut digests = Vec::new();
        for (repo, reference, content) in pushes {
            digests.push(push_image(&http, &base, repo, reference, content).await);
        }
        wharf.terminate();
        (Self { root, conf, toml }, digests)
    }

    fn repo(&self, repo: &str) -> PathBuf {
        self.root
            .path()
            .join("docker/registry/v2/repositories")
            .join(repo)
    }

    fn has_tag(&self, repo: &str, tag: &str) -> bool {
        self.tag_link(repo, tag).is_file()
    }

    fn tag_link(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo(repo)
            .join(format!("_manifests/tags/{tag}/current/link"))
    }

    fn revision_link(&self, repo: &str, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.repo(repo)
            .join(format!("_manifests/revisions/sha256/{hex}/link"))
    }

    /// Makes a tag look pushed `days` ago.
    fn age_tag(&self, repo: &str, tag: &str, days: u32) {
        age(&self.tag_link(repo, tag), days);
    }

    fn retention(&self, dry_run: bool) -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.args(["retention", "--config"])
            .arg(self.conf.path().join("wharf.toml"));
        if dry_run {
            cmd.arg("--dry-run");
        }
        let out = cmd.env_remove("RUST_LOG").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "wharf retention failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

fn age(path: &Path, days: u32) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - days * DAY).unwrap();
}

async fn push_blob(http: &Client, base: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256(bytes);
    let url = format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}");
    let r = http.post(url).body(bytes.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    digest
}

/// An image whose layer holds `content`, pushed under `reference` (a tag, or "@" for by
/// digest only); returns the manifest's digest.
async fn push_image(
    http: &Client,
    base: &str,
    repo: &str,
    reference: &str,
    content: &str,
) -> String {
    let config = format!("{{\"content\":{content:?}}}").into_bytes();
    let config_digest = push_blob(http, base, repo, &config).await;
    let layer = push_blob(http, base, repo, content.as_bytes()).await;
    let body = serde_json::to_vec(&image_manifest(
        &config_digest,
        config.len(),
        &[(&layer, content.len())],
    ))
    .unwrap();
    let digest = sha256(&body);
    let reference = match reference {
        "@" => digest.clone(),
        tag => tag.to_owned(),
    };
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    digest
}

#[tokio::test]
async fn keep_last_keeps_the_newest_tags_and_a_dry_run_changes_nothing() {
    let pushes = [
        ("team/app", "a", "1"),
        ("team/app", "b", "2"),
        ("team/app", "c", "3"),
        ("team/app", "d", "4"),
    ];
    let rules = "[[retention]]\nrepos = \"team/*\"\nkeep_last = 2\n";
    let (p, digests) = Pushed::new(rules, &pushes).await;
    for (tag, days) in [("a", 4), ("b", 3), ("c", 2), ("d", 1)] {
        p.age_tag("team/app", tag, days);
    }
    let plan = p.retention(true);
    for tag in ["a", "b"] {
        assert!(
            plan.contains(&format!("team/app: would delete tag {tag} (")),
            "{plan}"
        );
    }
    assert!(
        plan.contains("[[retention]] #1") && plan.contains("pushed 20"),
        "{plan}"
    );
    assert!(!plan.contains("tag c") && !plan.contains("tag d"), "{plan}");
    assert!(
        plan.contains(&digests[0]),
        "the plan names the digest: {plan}"
    );
    for tag in ["a", "b", "c", "d"] {
        assert!(p.has_tag("team/app", tag), "the dry run deleted {tag}");
    }

    let done = p.retention(false);
    assert!(
        done.contains("team/app: deleted tag a") && done.contains("deleted 2"),
        "{done}"
    );
    assert_eq!(
        ["a", "b", "c", "d"].map(|t| p.has_tag("team/app", t)),
        [false, false, true, true]
    );
    // A real server agrees, and the deleted tag's manifest is still there by digest.
    let wharf = WharfProcess::spawn_async(p.conf.path(), &p.toml).await;
    let http = Client::new();
    let get = |path: String| http.get(format!("http://{}{path}", wharf.addr)).send();
    let r = get("/v2/team/app/tags/list".into()).await.unwrap();
    let tags: serde_json::Value = r.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["c", "d"]));
    let r = get(format!("/v2/team/app/manifests/{}", digests[0]))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "only the tag went");
}

#[tokio::test]
async fn keep_tags_win_over_delete_older_than() {
    let pushes = [
        ("team/app", "v1", "1"),
        ("team/app", "pr-1", "2"),
        ("team/app", "pr-2", "3"),
        ("other", "pr-1", "4"),
    ];
    let rules =
        "[[retention]]\nrepos = \"team/*\"\nkeep_tags = [\"v*\"]\ndelete_older_than = \"7d\"\n";
    let (p, _) = Pushed::new(rules, &pushes).await;
    p.age_tag("team/app", "v1", 30);
    p.age_tag("team/app", "pr-1", 30);
    p.age_tag("other", "pr-1", 30);
    p.retention(false);
    assert!(p.has_tag("team/app", "v1"), "kept by keep_tags");
    assert!(!p.has_tag("team/app", "pr-1"), "older than 7d");
    assert!(p.has_tag("team/app", "pr-2"), "young");
    assert!(
        p.has_tag("other", "pr-1"),
        "no policy matches the repository"
    );
}

#[tokio::test]
async fn delete_tags_with_match_all_needs_every_condition() {
    let pushes = [
        ("team/app", "pr-old", "1"),
        ("team/app", "pr-new", "2"),
        ("team/app", "main-old", "3"),
    ];
    let rules = "[[retention]]\nrepos = \"*\"\ndelete_tags = [\"pr-*\"]\n\
                 delete_older_than = \"7d\"\nmatch = \"all\"\n";
    let (p, _) = Pushed::new(rules, &pushes).await;
    p.age_tag("team/app", "pr-old", 30);
    p.age_tag("team/app", "main-old", 30);
    let done = p.retention(false);
    assert!(done.contains("deleted 1,"), "{done}");
    assert!(!p.has_tag("team/app", "pr-old"));
    assert!(p.has_tag("team/app", "pr-new"), "matches, but young");
    assert!(p.has_tag("team/app", "main-old"), "old, but does not match");
}

#[tokio::test]
async fn untagged_manifests_go_once_older_than_the_limit() {
    let pushes = [
        ("team/app", "v1", "first"),
        ("team/app", "v1", "second"), // moves v1: "first" is untagged now
        ("team/app", "@", "by digest, recent"),
    ];
    let rules = "[[retention]]\nrepos = \"*\"\ndelete_untagged_older_than = \"7d\"\n";
    let (p, d) = Pushed::new(rules, &pushes).await;
    age(&p.revision_link("team/app", &d[0]), 30);
    age(&p.revision_link("team/app", &d[1]), 30);
    let plan = p.retention(true);
    assert!(
        plan.contains(&format!("would delete untagged manifest {}", d[0])),
        "{plan}"
    );
    assert!(
        p.revision_link("team/app", &d[0]).is_file(),
        "dry: still there"
    );
    p.retention(false);
    assert!(
        !p.revision_link("team/app", &d[0]).is_file(),
        "old and untagged"
    );
    assert!(
        p.revision_link("team/app", &d[1]).is_file(),
        "tagged, however old"
    );
    assert!(
        p.revision_link("team/app", &d[2]).is_file(),
        "untagged, but young"
    );
    assert!(p.has_tag("team/app", "v1"));
}

#[tokio::test]
async fn immutable_tags_are_never_deleted() {
    let pushes = [
        ("prod/app", "v1", "1"),
        ("prod/app", "v2", "2"),
        ("prod/app", "rc-1", "3"),
        ("prod/app", "latest", "4"),
    ];
    let rules = "[[immutable]]\nrepos = \"prod/*\"\ntags = [\"v*\"]\n\
                 [[retention]]\nrepos = \"*\"\nkeep_last = 1\n";
    let (p, _) = Pushed::new(rules, &pushes).await;
    for (tag, days) in [("v1", 9), ("v2", 8), ("rc-1", 7), ("latest", 1)] {
        p.age_tag("prod/app", tag, days);
    }
    let done = p.retention(false);
    assert!(
        done.contains("deleted tag rc-1") && done.contains("deleted 1,"),
        "{done}"
    );
    assert_eq!(
        ["v1", "v2", "rc-1", "latest"].map(|t| p.has_tag("prod/app", t)),
        [true, true, false, true]
    );
}

/// On S3 and Azure the command runs beside the server (no lock: nodes share the bucket),
/// reading push times from the objects' last-modified times; the server sees the result at
/// once.
async fn runs_beside_the_server_on_object_stores(backend: Backend) {
    let rules = "[[retention]]\nrepos = \"*\"\nkeep_last = 1\n";
    let Some((s, store)) = TestServer::start_with_in(backend, rules).await else {
        return;
    };
    s.push_image("team/app", "a", b"older").await;
    s.push_image("team/app", "b", b"newer").await;
    let conf = tempfile::tempdir().unwrap();
    let path = conf.path().join("wharf.toml");
    std::fs::write(&path, store.config(rules)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["retention", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("team/app: deleted tag a"), "{stdout}");
    let r = s
        .http
        .get(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    let tags: serde_json::Value = r.json().await.unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["b"]));
}

crate::on_object_stores!(runs_beside_the_server_on_object_stores);
