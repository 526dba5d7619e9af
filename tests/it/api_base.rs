//! The base endpoint, the non-API paths, docker's v1 search, and routing errors.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{assert_error, Backend, TestServer};

#[tokio::test]
async fn base_endpoint_answers_200_with_api_version() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(r.text().await.unwrap(), "{}");
    let r = s.http.head(s.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn banner_and_healthz() {
    let s = TestServer::start().await;
    let r = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("wharf"));
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The probe really writes: it fails when the root is gone. (Results are reused for a
    // few seconds, so this is a server that has not probed yet.)
    let s = TestServer::start().await;
    std::fs::remove_dir_all(&s.root).unwrap();
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !r.text().await.unwrap().contains(s.root.to_str().unwrap()),
        "no paths leak"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let s = TestServer::start().await;
    let r = s
        .http
        .get(s.url("/v2/team/app/whatever"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "UNSUPPORTED").await;
    let r = s
        .http
        .post(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    let r = s.http.get(s.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn docker_search_matches_repository_names(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    for repo in ["team/web", "team/api", "other/tool"] {
        s.push_image(repo, "v1", repo.as_bytes()).await;
    }
    let r = s.http.get(s.url("/v1/_ping")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .http
        .get(s.url("/v1/search?q=team&n=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["query"], "team");
    assert_eq!(body["num_results"], 2);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "n limits the page");
    assert_eq!(results[0]["name"], "team/api");
    for key in ["description", "star_count", "is_official", "is_automated"] {
        assert!(results[0].get(key).is_some(), "{key}");
    }
    let body: Value = s
        .http
        .get(s.url("/v1/search?q=zzz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["num_results"], 0);
    let r = s
        .http
        .get(s.url("/v1/search?q=a&n=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

crate::on_every_backend!(docker_search_matches_repository_names);
