//! Tag lists and the catalog, with pagination.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{assert_error, Backend, TestServer};

async fn tags_list_paginates_with_link(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    for tag in ["c", "a", "b", "d"] {
        s.push_image("team/app", tag, b"layer").await;
    }
    let r = s
        .http
        .get(s.url("/v2/team/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("link").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"name": "team/app", "tags": ["a", "b", "c", "d"]})
    );

    let r = s
        .http
        .get(s.url("/v2/team/app/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["link"],
        "</v2/team/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["a", "b"]));
    let r = s
        .http
        .get(s.url("/v2/team/app/tags/list?n=2&last=b"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!(["c", "d"]));
    let r = s
        .http
        .get(s.url("/v2/team/app/tags/list?n=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["tags"], json!([]));
    let r = s
        .http
        .get(s.url("/v2/team/app/tags/list?n=lots"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID").await;
}

async fn tags_of_unknown_repository_is_name_unknown(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let r = s
        .http
        .get(s.url("/v2/no/such/tags/list"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

async fn catalog_lists_nested_repositories_in_pages(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    for repo in ["b/app", "a", "a/nested/deep", "c"] {
        s.push_image(repo, "v1", b"x").await;
    }
    let body: Value = s
        .http
        .get(s.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"repositories": ["a", "a/nested/deep", "b/app", "c"]})
    );
    let r = s.http.get(s.url("/v2/_catalog?n=3")).send().await.unwrap();
    assert_eq!(
        r.headers()["link"],
        "</v2/_catalog?n=3&last=b%2Fapp>; rel=\"next\""
    );
    let r = s
        .http
        .get(s.url("/v2/_catalog?n=3&last=b%2Fapp"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["repositories"],
        json!(["c"])
    );
}

crate::on_every_backend!(
    tags_list_paginates_with_link,
    tags_of_unknown_repository_is_name_unknown,
    catalog_lists_nested_repositories_in_pages,
);
