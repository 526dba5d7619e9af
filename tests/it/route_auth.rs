//! Logins belong to the route, not to `/v2/` paths: on a server with `[server.auth]`, every
//! route kind (upstream, redirect, a registry under a prefix, listings proxied upstream) is
//! protected unless the route says `public = true`. And credentials wharf consumed never
//! reach an upstream; the identity goes only where `forward_user = true` asks for it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::support::TestServer;

/// An upstream answering every request with JSON naming its path and the credential
/// headers it received; `hits` counts requests.
async fn origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            let service = service_fn(move |req: http::Request<Incoming>| {
                count.fetch_add(1, Ordering::SeqCst);
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .map(|v| v.to_str().unwrap_or("?").to_owned())
                };
                let body = json!({
                    "path": req.uri().path(),
                    "authorization": header("authorization"),
                    "user": header("x-forwarded-user"),
                    "repositories": ["secret/app"],
                });
                let response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )));
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, hits)
}

struct Site {
    s: TestServer,
    /// Does not follow redirects.
    http: reqwest::Client,
    hits: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    std::fs::write(
        &users,
        format!("alice:{}\n", bcrypt::hash("a-pass", 4).unwrap()),
    )
    .unwrap();
    let team_root = dir.path().join("team");
    let (up, hits) = origin().await;
    let up = format!("http://{up}");
    let toml = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[[server]]
default = true
[server.auth]
providers = [{{ htpasswd = {users:?} }}]
access = [
  {{ repos = "*", who = ["authenticated"], actions = ["pull", "push"] }},
  {{ repos = "public/*", who = ["anonymous"], actions = ["pull"] }},
]
[[server.route]]
path = "/"
registry = {{}}
[[server.route]]
path = "/v2/team/"
registry = {{ root = {team:?} }}
[[server.route]]
path = "/ui/"
upstream = "{up}"
[[server.route]]
path = "/open/"
upstream = "{up}"
public = true
[[server.route]]
path = "/who/"
upstream = "{up}"
forward_user = true
[[server.route]]
path = "/v2/mirror/"
upstream = "{up}/v2/"
[[server.route]]
path = "/v2/_catalog"
upstream = "{up}/v2/_catalog"
[[server.route]]
path = "/v1/search"
upstream = "{up}/v1/search"
[[server.route]]
path = "/docs/"
redirect = "https://wiki.example.com/registry"
"#,
        users = users.display().to_string(),
        team = team_root.display().to_string(),
    );
    let (s, _) = TestServer::start_config(&toml).await;
    Site {
        s,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        hits,
        _dir: dir,
    }
}

impl Site {
    async fn get(
        &self,
        path: &str,
        auth: Option<&str>,
        user_header: Option<&str>,
    ) -> reqwest::Response {
        let mut r = self.http.get(self.s.url(path));
        if let Some(value) = auth {
            r = r.header("Authorization", value);
        }
        if let Some(value) = user_header {
            r = r.header("X-Forwarded-User", value);
        }
        r.send().await.unwrap()
    }
}

/// `alice:a-pass`.
const ALICE: &str = "Basic YWxpY2U6YS1wYXNz";

#[tokio::test]
async fn every_route_kind_needs_a_login_unless_public() {
    let site = site().await;
    let status = |r: reqwest::Response| r.status();
    for path in [
        "/ui/page",
        "/docs/guide",
        "/v2/team/app/manifests/1",
        "/v2/mirror/app/manifests/1",
        "/unknown",
    ] {
        let r = site.get(path, None, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "anonymous {path}");
        assert!(r.headers().contains_key("www-authenticate"), "{path}");
        assert_eq!(
            status(site.get(path, Some("Basic Og=="), None).await),
            StatusCode::UNAUTHORIZED,
            "empty credentials on {path}"
        );
    }
    assert_eq!(
        site.hits.load(Ordering::SeqCst),
        0,
        "nothing reached the upstream"
    );
    assert_eq!(
        status(site.get("/ui/page", Some(ALICE), None).await),
        StatusCode::OK
    );
    assert_eq!(
        status(site.get("/docs/guide", Some(ALICE), None).await),
        StatusCode::PERMANENT_REDIRECT
    );
    assert_eq!(
        status(
            site.get("/v2/team/app/manifests/1", Some(ALICE), None)
                .await
        ),
        StatusCode::NOT_FOUND,
        "the prefixed registry answers alice"
    );
    assert_eq!(
        status(
            site.get("/v2/mirror/app/manifests/1", Some(ALICE), None)
                .await
        ),
        StatusCode::OK
    );
    assert_eq!(
        status(site.get("/open/page", None, None).await),
        StatusCode::OK
    );
    assert_eq!(
        status(site.get("/healthz", None, None).await),
        StatusCode::OK,
        "the registry's health check stays open"
    );
}

#[tokio::test]
async fn listings_through_an_upstream_are_refused() {
    let site = site().await;
    for path in ["/v2/_catalog", "/v1/search?q=app"] {
        for auth in [None, Some(ALICE)] {
            let r = site.get(path, auth, None).await;
            assert!(
                matches!(r.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{path} {auth:?}: {}",
                r.status()
            );
            let body = r.text().await.unwrap();
            assert!(!body.contains("secret/app"), "{path}: {body}");
        }
    }
    assert_eq!(site.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn consumed_credentials_stay_here_and_the_user_is_forwarded_only_when_asked() {
    let site = site().await;
    let seen = |r: reqwest::Response| async move { r.json::<Value>().await.unwrap() };
    let v = seen(site.get("/ui/page", Some(ALICE), Some("admin")).await).await;
    assert_eq!(
        v["authorization"],
        Value::Null,
        "wharf consumed alice's password"
    );
    assert_eq!(
        v["user"],
        Value::Null,
        "a client's X-Forwarded-User never passes"
    );
    let v = seen(site.get("/who/page", Some(ALICE), Some("admin")).await).await;
    assert_eq!(v["authorization"], Value::Null);
    assert_eq!(v["user"], "alice");
    // A public route has no logins: the upstream's own credentials pass untouched.
    let v = seen(
        site.get("/open/page", Some("Bearer upstream-token"), Some("admin"))
            .await,
    )
    .await;
    assert_eq!(v["authorization"], "Bearer upstream-token");
    assert_eq!(v["user"], Value::Null);
    let v = seen(site.get("/open/page", Some(ALICE), None).await).await;
    assert_eq!(v["authorization"], ALICE, "not wharf's to consume there");
}

#[tokio::test]
async fn a_bearer_token_passes_through_a_server_without_logins() {
    let (up, hits) = origin().await;
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nupstream = \"http://{up}\"\n"
    );
    let (s, _) = TestServer::start_config(&toml).await;
    let r = s
        .http
        .get(s.url("/api"))
        .header("Authorization", "Bearer upstream-token")
        .header("X-Forwarded-User", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["authorization"], "Bearer upstream-token");
    assert_eq!(v["user"], Value::Null);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
