//! The pull-through cache's loose ends, against a real Distribution 2.8.2 upstream: what a
//! client's manifest HEAD costs upstream.

use reqwest::StatusCode;

use crate::mirror::{mirror_of, push_image, ACCEPT};
use crate::support::have_program;
use crate::upstream_registry::{Login, UpstreamRegistry};

/// containerd (and so docker) resolves a tag with a HEAD before it pulls by digest. Docker
/// Hub counts a manifest GET as a pull and a HEAD not: a HEAD the cache cannot answer is
/// answered with an upstream HEAD, and nothing is fetched.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_head_on_a_miss_is_an_upstream_head_not_a_get() {
    if !have_program("docker-registry", "docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upstream = UpstreamRegistry::start(dir.path(), None, Login::Anonymous).await;
    let (digest, _) = push_image(&upstream.url, "team/app", "1", b"a layer").await;
    let wharf = mirror_of(&upstream.url, "up.example").await;
    let head = |reference: &str| {
        wharf
            .http
            .head(wharf.url(&format!("/v2/team/app/manifests/{reference}")))
            .header("Accept", ACCEPT)
            .send()
    };
    let gets = || upstream.requests("GET /v2/team/app/manifests/");
    let heads = || upstream.requests("HEAD /v2/team/app/manifests/");

    for reference in ["1", digest.as_str()] {
        let r = head(reference).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{reference}");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert!(r.headers().contains_key("content-type"), "{reference}");
    }
    assert_eq!(
        gets(),
        0,
        "a HEAD was a GET upstream:\n{}",
        upstream.log_text()
    );
    assert_eq!(heads(), 2, "{}", upstream.log_text());
    // Nothing was stored: the cache's repository has no tags yet.
    let tags = wharf
        .http
        .get(wharf.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    let tags = tags.text().await.unwrap();
    assert!(!tags.contains("\"1\""), "{tags}");
    let missing = head("404").await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    // The pull (GET by digest, as containerd does next) fetches once; the tag's next HEAD
    // finds that digest cached and keeps the tag, so the upstream can go away.
    let r = wharf
        .http
        .get(wharf.url(&format!("/v2/team/app/manifests/{digest}")))
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(gets(), 1, "{}", upstream.log_text());
    assert_eq!(head("1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(head(&digest).await.unwrap().status(), StatusCode::OK);
    assert_eq!(gets(), 1, "{}", upstream.log_text());
    assert_eq!(heads(), 4, "the digest HEAD was answered by the cache");
    let tags = wharf
        .http
        .get(wharf.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    let tags = tags.text().await.unwrap();
    assert!(tags.contains("\"1\""), "the tag was not kept: {tags}");
}
