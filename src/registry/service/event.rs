//! What the repository service announces after each durable effect, and the one trait its
//! consumers (the notifications outbox today; GC, the mirror and the UI later) implement.
//!
//! The fields follow what registry:2's notifications carry (`notifications/event.go` in
//! distribution/distribution), so an event maps onto its envelope without losing anything,
//! and onto CloudEvents as well.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::registry::reference::{Digest, RepoName, Tag};
use crate::registry::storage::StorageResult;

/// What happened to the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// A manifest was stored (and tagged, when pushed by tag), or an upload finished a blob.
    Push,
    /// A manifest or blob was served.
    Pull,
    /// A blob was mounted from another repository (`from_repository` says which).
    Mount,
    /// A manifest, a tag, a blob link or a whole repository was removed.
    Delete,
    /// The pull-through cache stored what it fetched from its upstream (a manifest, with
    /// its tag when fetched by tag, or a blob) for the pull of the event's actor. Not a
    /// push: nobody pushed, and registry:2's proxy announces its fills not at all, so
    /// endpoints get them only when they ask for `fetch` by name.
    Fetch,
}

impl Action {
    /// The name registry:2 uses (`push`, `pull`, `mount`, `delete`), and wharf's `fetch`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Mount => "mount",
            Action::Delete => "delete",
            Action::Fetch => "fetch",
        }
    }
}

/// What kind of thing an event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Manifest,
    Blob,
    /// A tag removed on its own (the manifest stays).
    Tag,
    /// A whole repository removed.
    Repository,
}

/// The thing an event is about. Fields that do not apply to the kind are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: TargetKind,
    pub repository: RepoName,
    pub digest: Option<Digest>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    /// The tag a manifest was pushed or pulled by, or the tag deleted.
    pub tag: Option<Tag>,
    /// For [`Action::Mount`]: where the blob came from.
    pub from_repository: Option<RepoName>,
}

/// Who did it: the logged-in user (none when anonymous or logins are off) and their groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// The HTTP request that caused the event (empty strings for the CLI or a background job).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// A unique id of the request (also useful to correlate with the access log).
    pub id: String,
    /// The client's address (after trusted proxies), `ip:port` or `ip`.
    pub addr: String,
    /// The `Host` the client asked for (the virtual host).
    pub host: String,
    pub method: String,
    pub user_agent: String,
}

/// One repository event, emitted after its effect is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Unique per event (a UUID): consumers de-duplicate on it.
    pub id: String,
    pub timestamp: SystemTime,
    pub action: Action,
    pub target: Target,
    pub actor: Actor,
    pub request: RequestInfo,
}

/// A consumer of events. `emit` is awaited by the operation that produced the event, before
/// the client gets its answer: a sink that must not lose events (the outbox) makes the event
/// durable there, and anything slow (delivery) happens later, elsewhere. An error fails the
/// client's request (the effect happened, the client retries, the retry emits again: at
/// least once).
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    async fn emit(&self, event: &Event) -> StorageResult<()>;

    /// Whether this sink wants pull events (they are many; most sinks don't).
    fn wants_pulls(&self) -> bool {
        false
    }
}

/// The sink when nothing listens.
pub struct NoEvents;

#[async_trait]
impl EventSink for NoEvents {
    async fn emit(&self, _event: &Event) -> StorageResult<()> {
        Ok(())
    }
}
