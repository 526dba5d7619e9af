//! A delete through the UI goes through the repository service like the API's: the event
//! names the user logged in on the UI, the client's address and the host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::*;
use crate::registry::reference::{Algorithm, Digest, RepoName, Tag};
use crate::registry::service::{Action, Event, EventSink};
use crate::registry::storage::fs::FsStorage;
use crate::registry::storage::{LinkKind, Storage, StorageResult};
use crate::registry::RegistryOptions;

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

#[async_trait]
impl EventSink for Recorder {
    async fn emit(&self, event: &Event) -> StorageResult<()> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

fn conn() -> ConnInfo {
    ConnInfo {
        peer: "192.0.2.7:40000".parse().unwrap(),
        local: "127.0.0.1:5000".parse().unwrap(),
        tls: None,
        plain: PlainMode::Serve,
    }
}

/// A browser's request with the UI cookie `cookie` and an optional form body.
async fn send(
    gateway: &Gateway,
    method: &str,
    path: &str,
    cookie: &str,
    form: &str,
) -> (StatusCode, Option<String>, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "registry.example:5000")
        .header("cookie", format!("wharf_ui={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form.to_owned())))
        .unwrap();
    let response = gateway.handle(req, &conn()).await;
    let status = response.status();
    let set = response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.strip_prefix("wharf_ui="))
        .map(str::to_owned);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, set, String::from_utf8_lossy(&body).into_owned())
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..at + 64].to_owned()
}

#[tokio::test]
async fn a_ui_delete_is_announced_with_the_ui_user_as_actor() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    let hash = bcrypt::hash("a-pass", 4).unwrap();
    std::fs::write(&users, format!("alice:{hash}\n")).unwrap();
    let root = dir.path().join("store");
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {root:?}\n[log]\naccess = \"off\"\n\
         [[server]]\ndefault = true\n[server.auth]\nproviders = [{{ htpasswd = {users:?} }}]\n\
         access = [{{ repos = \"*\", who = [\"alice\"], actions = [\"pull\", \"delete\"] }}]\n"
    );
    let config = Config::from_toml(&toml, "test").unwrap();
    let sink = Arc::new(Recorder::default());
    let storage = Arc::new(FsStorage::open(&root).unwrap());
    let (repo, tag) = (
        RepoName::parse("team/app").unwrap(),
        Tag::parse("1").unwrap(),
    );
    let digest = Digest::of(Algorithm::Sha256, b"a manifest");
    storage
        .link(&repo, LinkKind::Manifest, &digest)
        .await
        .unwrap();
    storage.write_tag(&repo, &tag, &digest).await.unwrap();
    let options = RegistryOptions {
        max_manifest_bytes: 1 << 20,
        manifest_cache_bytes: 1 << 20,
        immutable: Vec::new(),
    };
    let engine = Arc::new(Registry::new(storage.clone(), options).with_events(sink.clone()));
    let registries = HashMap::from([(root.clone(), engine)]);
    let gateway =
        Gateway::new(&config, &registries, Arc::new(metrics::Metrics::new()), &[]).unwrap();

    let anonymous = "0".repeat(64);
    let (_, _, page) = send(&gateway, "GET", "/ui/login", &anonymous, "").await;
    let form = format!("csrf={}&user=alice&password=a-pass", csrf_of(&page));
    let (status, session, _) = send(&gateway, "POST", "/ui/login", &anonymous, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let session = session.expect("a session cookie");
    let (_, _, page) = send(&gateway, "GET", "/ui/", &session, "").await;
    let form = format!("csrf={}&repo=team/app&ref=1", csrf_of(&page));
    let (status, _, body) = send(&gateway, "POST", "/ui/delete", &session, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(storage.read_tag(&repo, &tag).await.unwrap(), None);

    let events = sink.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e.action, Action::Delete);
    assert_eq!(e.target.tag.as_ref(), Some(&tag));
    assert_eq!(e.actor.name.as_deref(), Some("alice"));
    assert_eq!(e.request.addr, "192.0.2.7");
    assert_eq!(e.request.host, "registry.example:5000");
    assert_eq!(e.request.method, "POST");
}

/// The UI cookie is `Secure` on TLS connections (and only there: a browser would drop a
/// `Secure` cookie sent over plain HTTP), and pages carry the security headers.
#[tokio::test]
async fn the_cookie_is_secure_over_tls_and_pages_carry_a_strict_csp() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {root:?}\n[log]\naccess = \"off\"\n"
    );
    let config = Config::from_toml(&toml, "test").unwrap();
    let storage = Arc::new(FsStorage::open(&root).unwrap());
    let options = RegistryOptions {
        max_manifest_bytes: 1 << 20,
        manifest_cache_bytes: 1 << 20,
        immutable: Vec::new(),
    };
    let registries = HashMap::from([(root.clone(), Arc::new(Registry::new(storage, options)))]);
    let gateway =
        Gateway::new(&config, &registries, Arc::new(metrics::Metrics::new()), &[]).unwrap();
    for tls in [false, true] {
        let conn = ConnInfo {
            tls: tls.then_some(crate::tls::acceptor::TlsInfo {
                sni: None,
                server: 0,
                alpn: None,
            }),
            ..conn()
        };
        let req = Request::get("/ui/").body(Full::new(Bytes::new())).unwrap();
        let response = gateway.handle(req, &conn).await;
        assert_eq!(response.status(), StatusCode::OK);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        let cookie = header("set-cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert_eq!(cookie.contains("Secure"), tls, "{cookie}");
        let csp = header("content-security-policy");
        assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("cache-control"), "no-store");
    }
}
