//! The OCI Distribution API engine, in three layers, each calling only the next:
//!
//! - [`api`]: HTTP. Parses `/v2/...` (and docker's `/v1/search`), calls the service with the
//!   request's [`service::Caller`], and shapes the spec's responses. No storage calls.
//! - [`service`]: repository operations (push, tag, pull, delete, uploads, mounts, listings)
//!   with their caller. Typed outcomes, the manifest cache, the reference checks, and an
//!   [`service::Event`] after each durable effect. A new repository-level feature goes here.
//! - [`storage`]: the `Storage` trait with its written contract, and the backends.
//!
//! Beside them: `reference.rs` (names, tags, digests), `manifest.rs` (reading a manifest),
//! `error.rs` (OCI codes and [`ApiError`], which the gateway turns into responses),
//! `access.rs` (what a request needs to be allowed) and `health.rs` (`/healthz`).

pub mod access;
pub mod api;
pub mod error;
pub mod reference;
pub mod service;
pub mod storage;

#[cfg(test)]
mod cache_race_tests;
mod health;
pub(crate) mod manifest;

pub use self::api::route;

use std::sync::Arc;

use self::error::ApiResult;
use self::service::{EventSink, Service};
use self::storage::Storage;

/// Limits and knobs of the engine, from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Manifests larger than this are refused with 413.
    pub max_manifest_bytes: u64,
    /// Memory the manifest cache may use.
    pub manifest_cache_bytes: u64,
    /// `[[immutable]]` rules.
    pub immutable: Vec<crate::config::ImmutableRule>,
}

/// One registry: the repository service on a storage backend, plus the API on top of it.
pub struct Registry {
    service: Service,
    health: health::HealthCache,
    options: RegistryOptions,
}

impl Registry {
    /// An engine whose events go nowhere; [`Registry::with_events`] plugs a sink in.
    pub fn new(storage: Arc<dyn Storage>, options: RegistryOptions) -> Self {
        Self {
            service: Service::new(
                storage,
                options.max_manifest_bytes,
                options.manifest_cache_bytes,
            )
            .with_immutable(&options.immutable),
            health: health::HealthCache::default(),
            options,
        }
    }

    /// Sends the engine's repository events to `events` (the notifications outbox, say).
    pub fn with_events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.service = self.service.with_events(events);
        self
    }

    /// Shares `other`'s repository index (`service/catalog.rs`) and GC status: for a new
    /// engine on the same storage, so that changes through either engine reach the one index.
    pub fn sharing_catalog_of(mut self, other: &Registry) -> Self {
        self.service = self
            .service
            .with_catalog(other.service().catalog().clone())
            .with_gc_status(other.service().gc_status().clone());
        self
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        self.service.storage()
    }

    /// Where the engine's events go (kept when a reload builds a new engine on the same storage).
    pub fn events(&self) -> &Arc<dyn EventSink> {
        self.service.events()
    }

    /// Touches the blobs clients rely on often enough for a collection with `grace`.
    pub fn with_gc_grace(mut self, grace: std::time::Duration) -> Self {
        self.service = self.service.with_gc_grace(grace);
        self
    }

    /// The repository operations, for callers other than the HTTP API (the UI, jobs).
    pub fn service(&self) -> &Service {
        &self.service
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// `GET /healthz`: storage accepts writes (as a probe at most a few seconds old found).
    pub async fn healthy(&self) -> bool {
        self.health
            .check(|| async {
                // The conversion logs why the probe failed.
                let probed: ApiResult<()> = self
                    .service
                    .storage()
                    .check_writable()
                    .await
                    .map_err(Into::into);
                probed.is_ok()
            })
            .await
    }
}

/// The scheduled collector runs retention through the engine's service.
impl AsRef<Service> for Registry {
    fn as_ref(&self) -> &Service {
        &self.service
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway that forgot to attach a filter must not list every repository.
    #[tokio::test]
    async fn listings_without_a_visibility_filter_show_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(
            dir.path()
                .join("docker/registry/v2/repositories/team/app/_manifests"),
        )
        .unwrap();
        let storage = Arc::new(storage::fs::FsStorage::open(dir.path()).unwrap());
        let registry = Registry::new(
            storage,
            RegistryOptions {
                max_manifest_bytes: 1 << 20,
                manifest_cache_bytes: 1 << 20,
                immutable: Vec::new(),
            },
        );
        let service = registry.service();
        assert!(service.visible_repositories(None).await.unwrap().is_empty());
        let everything = access::Visibility(Arc::new(|_| true));
        assert_eq!(
            service
                .visible_repositories(Some(&everything))
                .await
                .unwrap(),
            ["team/app"]
        );
    }
}
