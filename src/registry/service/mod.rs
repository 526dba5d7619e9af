//! Repository operations with their actor: the one place where something happens to a
//! repository, between the HTTP handlers ([`crate::registry::api`]) and [`Storage`].
//!
//! Every operation takes the [`Caller`] (who, from where, through which host) and returns a
//! typed outcome, never an HTTP response; failures are [`ApiError`]s with an OCI code, which
//! the gateway alone turns into responses. Each operation with a durable effect (a manifest
//! pushed or deleted, a tag removed, a blob pushed, mounted or deleted) emits an [`Event`]
//! through the engine's [`EventSink`] once the effect is durable and before the client gets
//! its answer; if the sink fails, so does the request (503), and the client's retry emits
//! again. Pulls are announced only to a sink that [`EventSink::wants_pulls`].
//!
//! A new repository-level feature (retention, quotas, immutable tags, a pull-through cache)
//! belongs here, as an operation or a check inside one, so that the API, the UI and
//! background jobs all go through it and every effect is announced.
//!
//! - `manifests.rs`: get (through the manifest cache), push with reference checks, delete.
//! - `blobs.rs`: size, read, delete.
//! - `uploads.rs`: sessions (start, append, finish, cancel), monolithic puts and mounts.
//! - `listing.rs`: tags, the catalog and referrers.
//! - `repositories.rs`: deleting a whole repository; `usage.rs`: what each one uses.
//! - `mirrored.rs`: storing what the pull-through cache fetched (no reference checks).
//! - `immutable.rs`: `[[immutable]]` tags, checked by manifest push and delete.
//! - `touch.rs`: touch records, which keep a blob a client relies on from a concurrent
//!   garbage collection (the `gc` module docs).
//! - `catalog.rs`: the repository index the UI lists from, kept right by [`Service::emit`];
//!   `catalog_saved.rs`: the index saved in storage for the first view after a restart.
//! - `cache.rs`: the bounded manifest cache; `caller.rs`: [`Caller`]; `event.rs`: events.

pub mod browse;
pub mod cache;
pub mod caller;
pub mod catalog;
mod catalog_saved;
pub mod event;
pub mod gc_status;

mod blobs;
mod immutable;
mod listing;
mod manifests;
mod mirrored;
mod repositories;
pub mod touch;
mod uploads;
pub mod usage;

#[cfg(test)]
mod catalog_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::SystemTime;

pub use self::blobs::BlobRead;
pub use self::caller::{Caller, RequestId};
pub use self::event::{Action, Event, EventSink, NoEvents, Target, TargetKind};
pub use self::manifests::ManifestPushed;
pub use self::repositories::RepositoryDeleted;
pub use self::uploads::Finished;
pub use self::usage::RepoUsage;
// The value types operations take and return, so the API layer needs nothing of storage.
pub use crate::registry::storage::{Append, ByteStream, ChunkRange, UploadId};

use self::cache::ManifestCache;
use self::catalog::Catalog;
use self::touch::Touches;
use crate::config::ImmutableRule;
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::RepoName;
use crate::registry::storage::Storage;

/// The repository operations of one engine: its storage, manifest cache and event sink.
pub struct Service {
    storage: Arc<dyn Storage>,
    cache: ManifestCache,
    events: Arc<dyn EventSink>,
    /// Manifests larger than this are refused (413).
    max_manifest_bytes: u64,
    /// `[[immutable]]`: tags that never move once pushed (`immutable.rs`).
    immutable: Arc<[ImmutableRule]>,
    /// Touch records for the blobs clients rely on (`touch.rs`).
    touches: Touches,
    /// The repository index (`catalog.rs`), told of every effect by [`Service::emit`].
    catalog: Arc<Catalog>,
    /// The grace period `touches` was sized for (a reload changing it needs a new engine).
    gc_grace: std::time::Duration,
    /// What the storage's last garbage collection on this node did (`gc_status.rs`).
    gc_status: Arc<gc_status::GcStatus>,
}

impl Service {
    pub fn new(
        storage: Arc<dyn Storage>,
        max_manifest_bytes: u64,
        manifest_cache_bytes: u64,
    ) -> Self {
        Self {
            cache: ManifestCache::new(manifest_cache_bytes),
            events: Arc::new(NoEvents),
            max_manifest_bytes,
            immutable: Arc::new([]),
            touches: Touches::for_grace(crate::config::GcConfig::DEFAULT_GRACE),
            catalog: Arc::new(Catalog::new(storage.shared())),
            gc_grace: crate::config::GcConfig::DEFAULT_GRACE,
            gc_status: Arc::default(),
            storage,
        }
    }

    /// Touches blobs often enough for a collection with this grace period (`touch.rs`).
    pub fn with_gc_grace(mut self, grace: std::time::Duration) -> Self {
        self.touches = Touches::for_grace(grace);
        self.gc_grace = grace;
        self
    }

    pub fn gc_grace(&self) -> std::time::Duration {
        self.gc_grace
    }

    pub fn gc_status(&self) -> &Arc<gc_status::GcStatus> {
        &self.gc_status
    }

    /// Shares another engine's GC status (a reload's new engine on the same storage).
    pub fn with_gc_status(mut self, status: Arc<gc_status::GcStatus>) -> Self {
        self.gc_status = status;
        self
    }

    /// Refuses to move or delete the tags these rules cover.
    pub fn with_immutable(mut self, rules: &[ImmutableRule]) -> Self {
        self.immutable = rules.into();
        self
    }

    /// Sends this service's events to `events` instead of nowhere.
    pub fn with_events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = events;
        self
    }

    /// Shares another engine's repository index (a reload's new engine on the same storage,
    /// while the old one finishes its requests), so both engines' changes reach it.
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Self {
        self.catalog = catalog;
        self
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The repository index the UI lists from.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn events(&self) -> &Arc<dyn EventSink> {
        &self.events
    }

    /// Announces an effect that is now durable. A sink failure fails the request with 503:
    /// the effect stays, and the client's retry emits the event again (at least once).
    async fn emit(&self, caller: &Caller, action: Action, target: Target) -> ApiResult<()> {
        // Every durable effect passes here, so the index hears of each one.
        self.catalog.note(action, &target);
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: SystemTime::now(),
            action,
            target,
            actor: caller.actor(),
            request: caller.request_info(),
        };
        self.events.emit(&event).await.map_err(|error| {
            tracing::error!(event = %event.id, action = action.as_str(), %error, "recording an event failed");
            ApiError::new(
                Code::Unavailable,
                "the change was made but could not be recorded; retry later",
            )
        })
    }

    /// Whether pull events are wanted: checked before building one, so the manifest fast
    /// path pays nothing when no sink wants them.
    fn wants_pulls(&self) -> bool {
        self.events.wants_pulls()
    }
}

/// A target of `kind` in `repo` with nothing else filled in.
fn target(kind: TargetKind, repo: &RepoName) -> Target {
    Target {
        kind,
        repository: repo.clone(),
        digest: None,
        media_type: None,
        size: None,
        tag: None,
        from_repository: None,
    }
}
