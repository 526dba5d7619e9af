//! `[[immutable]]`: a covered tag is pushed once; pushing it again with other content, or
//! deleting it, is refused with 409 `DENIED`. Pushes by digest (signatures, SBOMs and other
//! referrers) are never blocked.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use crate::clients::{import_image, run};
use crate::support::{
    assert_error, have_program, image_manifest, podman, sha256, TestServer, WharfProcess,
    OCI_MANIFEST,
};

const RULES: &str =
    "[registry]\ndelete = true\n\n[[immutable]]\nrepos = \"prod/*\"\ntags = [\"v*\"]\n";

/// A one-layer manifest whose blobs are in `repo`.
async fn manifest(s: &TestServer, repo: &str, layer: &[u8]) -> serde_json::Value {
    let config = s.push_blob(repo, b"{}").await;
    let layer_digest = s.push_blob(repo, layer).await;
    image_manifest(&config, 2, &[(&layer_digest, layer.len())])
}

#[tokio::test]
async fn a_covered_tag_cannot_move_or_be_deleted() {
    let s = TestServer::start_with(RULES).await;
    let (first, bytes, _) = s.push_image("prod/app", "v1", b"first").await;
    let again: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    // The same content again (a retried push) is fine.
    let r = s.put_manifest("prod/app", "v1", OCI_MANIFEST, &again).await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let other = manifest(&s, "prod/app", b"second").await;
    let r = s.put_manifest("prod/app", "v1", OCI_MANIFEST, &other).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("\"DENIED\"") && body.contains("immutable"),
        "{body}"
    );
    let r = s.put_manifest("prod/app", "v1", OCI_MANIFEST, &other).await;
    assert_error(r, StatusCode::CONFLICT, "DENIED").await;

    // Deleting the tag, or the manifest it names, would let it move too.
    let r = s
        .http
        .delete(s.url("/v2/prod/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::CONFLICT, "DENIED").await;
    let url = s.url(&format!("/v2/prod/app/manifests/{first}"));
    let r = s.http.delete(url).send().await.unwrap();
    assert_error(r, StatusCode::CONFLICT, "DENIED").await;

    let r = s
        .http
        .head(s.url("/v2/prod/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["docker-content-digest"], first.as_str());
}

#[tokio::test]
async fn tags_and_repositories_the_rules_do_not_cover_move_freely() {
    let s = TestServer::start_with(RULES).await;
    s.push_image("prod/app", "latest", b"first").await;
    s.push_image("prod/app", "latest", b"second").await;
    s.push_image("dev/app", "v1", b"first").await;
    s.push_image("dev/app", "v1", b"second").await;
    let r = s
        .http
        .delete(s.url("/v2/prod/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn referrers_pushed_by_digest_are_never_blocked() {
    let s = TestServer::start_with(RULES).await;
    let (subject, bytes, _) = s.push_image("prod/app", "v1", b"image").await;
    let config = s.push_blob("prod/app", b"{}").await;
    let payload = b"signature".as_slice();
    let layer = s.push_blob("prod/app", payload).await;
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": payload.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": bytes.len()},
    });
    let digest = sha256(&serde_json::to_vec(&m).unwrap());
    let r = s.put_manifest("prod/app", &digest, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // A cosign-style signature tag is not covered by "v*": it may be replaced.
    let sig_tag = format!("{}.sig", subject.replace(':', "-"));
    let r = s.put_manifest("prod/app", &sig_tag, OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// skopeo (a Go client, like docker) copying a second image over an immutable tag fails,
/// says why, and the tag still names the first image.
#[test]
fn skopeo_cannot_overwrite_an_immutable_tag() {
    if !have_program("skopeo", "skopeo") || !have_program("podman", "podman") {
        return;
    }
    let (root, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let wharf = WharfProcess::spawn_config(
        conf.path(),
        &format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n{RULES}",
            root.path().display().to_string()
        ),
    );
    let archive = |name: &str, content: &str| {
        let dir = work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        import_image(&dir, &format!("localhost/e2e/{name}:1"), content);
        let path = dir.join("image.tar");
        run(podman(&dir)
            .args(["save", "--format", "oci-archive", "-o"])
            .arg(&path)
            .arg(format!("localhost/e2e/{name}:1")));
        format!("oci-archive:{}", path.display())
    };
    let (a, b) = (archive("a", "first"), archive("b", "second"));
    let dest = format!("docker://{}/prod/app:v1", wharf.addr);
    let latest = format!("docker://{}/prod/app:latest", wharf.addr);
    run(Command::new("skopeo").args(["copy", "--dest-tls-verify=false", &a, &dest]));
    let out = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &dest]));
    let before: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let refused = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false", &b, &dest])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "the second copy succeeded");
    assert!(stderr.contains("immutable"), "skopeo says why: {stderr}");
    // The same image under a tag no rule covers goes through.
    run(Command::new("skopeo").args(["copy", "--dest-tls-verify=false", &b, &latest]));

    let out = run(Command::new("skopeo").args(["inspect", "--tls-verify=false", &dest]));
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        before["Digest"], after["Digest"],
        "v1 still names the first image"
    );
}
