//! The gateway tells the registry who is asking: a request through the whole pipeline
//! (logins, groups, a trusted proxy's `X-Forwarded-For`) reaches the service with its
//! [`Caller`], as the event it causes shows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;

use super::*;
use crate::registry::service::{Action, Event, EventSink};
use crate::registry::storage::fs::FsStorage;
use crate::registry::storage::StorageResult;
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

fn config(root: &std::path::Path, users: &std::path::Path) -> Config {
    let toml = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[storage]
root = {root:?}
[limits]
trusted_proxies = ["10.0.0.0/8"]
[log]
access = "off"
[[server]]
default = true
[server.auth]
providers = [{{ htpasswd = {users:?} }}]
access = [{{ repos = "*", who = ["group:builders"], actions = ["pull", "push"] }}]
[server.auth.groups]
builders = ["alice"]
"#
    );
    Config::from_toml(&toml, "test").unwrap()
}

#[tokio::test]
async fn the_service_learns_user_groups_address_host_and_agent() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    let hash = bcrypt::hash("a-pass", 4).unwrap();
    std::fs::write(&users, format!("alice:{hash}\n")).unwrap();
    let root = dir.path().join("store");
    let config = config(&root, &users);
    let sink = Arc::new(Recorder::default());
    let storage = Arc::new(FsStorage::open(&root).unwrap());
    let options = RegistryOptions {
        max_manifest_bytes: 1 << 20,
        manifest_cache_bytes: 1 << 20,
        immutable: Vec::new(),
    };
    let engine = Arc::new(Registry::new(storage, options).with_events(sink.clone()));
    let registries = HashMap::from([(root.clone(), engine)]);
    let gateway =
        Gateway::new(&config, &registries, Arc::new(metrics::Metrics::new()), &[]).unwrap();

    let digest = crate::registry::reference::Digest::of(
        crate::registry::reference::Algorithm::Sha256,
        b"hello",
    );
    let login = base64::engine::general_purpose::STANDARD.encode("alice:a-pass");
    let req = Request::post(format!("/v2/team/app/blobs/uploads/?digest={digest}"))
        .header("host", "registry.example:5000")
        .header(
            "user-agent",
            "containers/5.29 (github.com/containers/image)",
        )
        .header("authorization", format!("Basic {login}"))
        .header("x-forwarded-for", "203.0.113.5")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let conn = ConnInfo {
        peer: "10.1.2.3:40000".parse().unwrap(),
        local: "127.0.0.1:5000".parse().unwrap(),
        tls: None,
        plain: PlainMode::Serve,
    };
    let response = gateway.handle(req, &conn).await;
    assert_eq!(response.status(), StatusCode::CREATED);

    let events = sink.0.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e.action, Action::Push);
    assert_eq!(e.target.repository.as_str(), "team/app");
    assert_eq!(e.target.digest.as_ref(), Some(&digest));
    assert_eq!(e.actor.name.as_deref(), Some("alice"));
    assert_eq!(e.actor.groups, ["builders"]);
    assert_eq!(
        e.request.addr, "203.0.113.5",
        "the client behind the trusted proxy"
    );
    assert_eq!(e.request.host, "registry.example:5000");
    assert_eq!(e.request.method, "POST");
    assert!(e.request.user_agent.starts_with("containers/5.29"));
    assert!(!e.request.id.is_empty());
}
