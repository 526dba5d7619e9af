//! The sink the repository service emits into: for every endpoint whose filters let the
//! event through, one pending record, written durably before `emit` returns (so before
//! the client's answer). Nothing here waits for an endpoint: delivery is the workers' job.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::endpoint::Endpoint;
use super::record::{Pending, StoredEvent};
use crate::registry::service::event::{Event, EventSink};
use crate::registry::storage::{Storage, StorageError, StorageResult};

pub struct Outbox {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) endpoints: Vec<Arc<Endpoint>>,
}

#[async_trait]
impl EventSink for Outbox {
    async fn emit(&self, event: &Event) -> StorageResult<()> {
        let stored = StoredEvent::from_event(event);
        let pending = Pending {
            event: stored,
            attempts: 0,
            next_attempt_ms: 0,
            last_error: None,
        };
        let bytes = Bytes::from(serde_json::to_vec(&pending).map_err(|e| StorageError::Io {
            op: "encode event",
            source: e.into(),
        })?);
        let name = pending.event.record_name();
        for endpoint in self.endpoints.iter().filter(|e| e.wants(event)) {
            let key =
                endpoint
                    .folders
                    .pending
                    .join(&name)
                    .ok_or_else(|| StorageError::Corrupt {
                        what: format!("event id {:?} makes no record name", event.id),
                    })?;
            // A retried emit of the same event (same id and time) finds its record there.
            self.storage.create_record(&key, bytes.clone()).await?;
            endpoint.wake.notify_one();
        }
        Ok(())
    }

    fn wants_pulls(&self) -> bool {
        self.endpoints.iter().any(|e| e.config.pulls)
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::config::Config;
    use crate::registry::reference::{Digest, RepoName};
    use crate::registry::service::event::{Action, Actor, RequestInfo, Target, TargetKind};
    use crate::registry::storage::fs::FsStorage;

    fn outbox(endpoints: &str, root: &std::path::Path) -> Outbox {
        let config = Config::from_toml(endpoints, "test").unwrap();
        let endpoints = config
            .notifications
            .endpoints
            .into_iter()
            .map(|c| Arc::new(Endpoint::new(c).unwrap()))
            .collect();
        Outbox {
            storage: Arc::new(FsStorage::open(root).unwrap()),
            endpoints,
        }
    }

    pub(crate) fn event(action: Action, repo: &str, media_type: Option<&str>) -> Event {
        Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: SystemTime::now(),
            action,
            target: Target {
                kind: TargetKind::Manifest,
                repository: RepoName::parse(repo).unwrap(),
                digest: Some(Digest::parse(&format!("sha256:{}", "b".repeat(64))).unwrap()),
                media_type: media_type.map(str::to_owned),
                size: Some(10),
                tag: None,
                from_repository: None,
            },
            actor: Actor::default(),
            request: RequestInfo::default(),
        }
    }

    async fn pending(o: &Outbox, i: usize) -> usize {
        let folder = &o.endpoints[i].folders.pending;
        o.storage.list_records(folder).await.unwrap().len()
    }

    const TWO: &str = "[[notifications.endpoint]]\nname = \"all\"\nurl = \"http://127.0.0.1:9/\"\n\
        [[notifications.endpoint]]\nname = \"team\"\nurl = \"http://127.0.0.1:9/\"\n\
        repositories = [\"team/*\"]\nactions = [\"push\"]\npulls = true\n\
        media_types = [\"application/vnd.oci.image.manifest.v1+json\"]\n";

    #[tokio::test]
    async fn emit_writes_one_record_per_endpoint_that_wants_the_event() {
        let dir = tempfile::tempdir().unwrap();
        let o = outbox(TWO, dir.path());
        let oci = Some("application/vnd.oci.image.manifest.v1+json");
        o.emit(&event(Action::Push, "team/app", oci)).await.unwrap();
        assert_eq!((pending(&o, 0).await, pending(&o, 1).await), (1, 1));
        // Filtered by repository, action and media type.
        o.emit(&event(Action::Push, "other/app", oci))
            .await
            .unwrap();
        o.emit(&event(Action::Delete, "team/app", oci))
            .await
            .unwrap();
        o.emit(&event(Action::Push, "team/app", Some("text/plain")))
            .await
            .unwrap();
        assert_eq!((pending(&o, 0).await, pending(&o, 1).await), (4, 1));
    }

    #[tokio::test]
    async fn pulls_only_go_where_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let o = outbox(TWO, dir.path());
        assert!(o.wants_pulls(), "one endpoint has pulls = true");
        let oci = Some("application/vnd.oci.image.manifest.v1+json");
        o.emit(&event(Action::Pull, "team/app", oci)).await.unwrap();
        assert_eq!((pending(&o, 0).await, pending(&o, 1).await), (0, 0));
        let none = outbox("", dir.path().join("x").as_path());
        assert!(!none.wants_pulls());
    }

    #[tokio::test]
    async fn a_retried_emit_of_one_event_is_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let o = outbox(TWO, dir.path());
        let e = event(Action::Push, "x", None);
        o.emit(&e).await.unwrap();
        o.emit(&e).await.unwrap();
        assert_eq!(pending(&o, 0).await, 1);
    }
}
