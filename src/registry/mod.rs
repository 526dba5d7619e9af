//! The OCI Distribution API engine: routes `/v2/...` (and docker's `/v1/search`) to
//! handlers that stream bodies to and from [`storage`].

pub mod access;
pub mod error;
pub mod reference;
pub mod route;
pub mod service;
pub mod storage;

pub(crate) mod blobs;
mod cache;
#[cfg(test)]
mod cache_race_tests;
mod health;
mod listing;
pub(crate) mod manifest;
mod manifests;
mod referrers;
mod search;
pub(crate) mod uploads;

use std::sync::Arc;

use http::request::Parts;
use http::{Method, Request, Response, StatusCode};

use self::cache::ManifestCache;
use self::error::{ApiError, ApiResult, Code};
use self::route::Route;
use self::storage::{ByteStream, Storage};
use crate::http_util::{Body, Reply};

/// Who an upload session belongs to: the repository, and the logged-in user the gateway
/// recorded in the request's [`access::Caller`], if any.
fn owner_of(repo: &reference::RepoName, parts: &Parts) -> storage::UploadOwner {
    storage::UploadOwner {
        repo: repo.clone(),
        user: parts
            .extensions
            .get::<access::Caller>()
            .and_then(|c| c.0.clone()),
    }
}

/// Limits and knobs of the engine, from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryOptions {
    /// Manifests larger than this are refused with 413.
    pub max_manifest_bytes: u64,
    /// Memory the manifest cache may use.
    pub manifest_cache_bytes: u64,
}

/// One registry: a storage backend plus the API on top of it.
pub struct Registry {
    storage: Arc<dyn Storage>,
    cache: ManifestCache,
    health: health::HealthCache,
    options: RegistryOptions,
}

impl Registry {
    pub fn new(storage: Arc<dyn Storage>, options: RegistryOptions) -> Self {
        Self {
            storage,
            cache: ManifestCache::new(options.manifest_cache_bytes),
            health: health::HealthCache::default(),
            options,
        }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// Serves one `/v2/...` request.
    pub async fn handle(&self, req: Request<ByteStream>) -> ApiResult<Response<Body>> {
        let (mut parts, body) = req.into_parts();
        let route = match parts.extensions.remove::<Route>() {
            Some(route) => route,
            None => route::parse(parts.uri.path())?,
        };
        let method = parts.method.clone();
        match (route, method) {
            (Route::Base, Method::GET | Method::HEAD) => {
                Ok(Reply::new(StatusCode::OK).json(&serde_json::json!({})))
            }
            (Route::Catalog, Method::GET) => self.catalog(&parts).await,
            (Route::Tags(name), Method::GET) => self.tags(&name, &parts).await,
            (Route::Manifest(name, r), Method::GET) => self.get_manifest(&name, &r, true).await,
            (Route::Manifest(name, r), Method::HEAD) => self.get_manifest(&name, &r, false).await,
            (Route::Manifest(name, r), Method::PUT) => {
                self.put_manifest(&name, &r, &parts, body).await
            }
            (Route::Manifest(name, r), Method::DELETE) => self.delete_manifest(&name, &r).await,
            // A real client only sends such a reference after a typo; what it asks for is
            // simply not there (Distribution treats it as a tag nobody pushed).
            (Route::ImpossibleManifest(_, r), Method::GET | Method::HEAD | Method::DELETE) => Err(
                ApiError::new(Code::ManifestUnknown, format!("manifest {r:?} is unknown")),
            ),
            (Route::ImpossibleManifest(_, r), Method::PUT) => Err(route::invalid_reference(&r)),
            (Route::Blob(name, d), Method::GET) => self.get_blob(&name, &d, &parts, true).await,
            (Route::Blob(name, d), Method::HEAD) => self.get_blob(&name, &d, &parts, false).await,
            (Route::Blob(name, d), Method::DELETE) => self.delete_blob(&name, &d).await,
            (Route::UploadStart(name), Method::POST) => {
                self.start_upload(&owner_of(&name, &parts), &parts, body)
                    .await
            }
            (Route::Upload(name, id), Method::GET) => {
                self.upload_status(&owner_of(&name, &parts), id).await
            }
            (Route::Upload(name, id), Method::PATCH) => {
                self.patch_upload(&owner_of(&name, &parts), id, &parts, body)
                    .await
            }
            (Route::Upload(name, id), Method::PUT) => {
                self.put_upload(&owner_of(&name, &parts), id, &parts, body)
                    .await
            }
            (Route::Upload(name, id), Method::DELETE) => {
                self.cancel_upload(&owner_of(&name, &parts), id).await
            }
            (Route::Referrers(name, d), Method::GET) => self.referrers(&name, &d, &parts).await,
            (_, method) => Err(ApiError::new(
                Code::MethodNotAllowed,
                format!("{method} is not supported on this endpoint"),
            )),
        }
    }

    /// Every repository the caller may see, sorted by name: what `_catalog` and
    /// `/v1/search` list. Without an [`access::Visibility`] in the request, nothing: a
    /// gateway that forgot to say who may see what must not show everything.
    pub(crate) async fn visible_repositories(&self, req: &Parts) -> ApiResult<Vec<String>> {
        let visibility = req.extensions.get::<access::Visibility>();
        Ok(self
            .storage
            .list_repositories()
            .await?
            .into_iter()
            .map(|r| r.as_str().to_owned())
            .filter(|r| visibility.is_some_and(|v| v.allows(r)))
            .collect())
    }

    /// `GET /healthz`: storage accepts writes (as a probe at most a few seconds old found).
    pub async fn healthy(&self) -> bool {
        self.health
            .check(|| async {
                // The conversion logs why the probe failed.
                let probed: ApiResult<()> = self.storage.check_writable().await.map_err(Into::into);
                probed.is_ok()
            })
            .await
    }

    /// Serves docker's `/v1/_ping` and `/v1/search`.
    pub async fn handle_v1(&self, req: &Parts) -> ApiResult<Response<Body>> {
        search::handle(self, req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway that forgot to attach a filter must not list every repository.
    #[tokio::test]
    async fn listings_without_a_visibility_filter_show_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("repositories/team/app/_manifests")).unwrap();
        let storage = Arc::new(storage::fs::FsStorage::open(dir.path()).unwrap());
        let registry = Registry::new(
            storage,
            RegistryOptions {
                max_manifest_bytes: 1 << 20,
                manifest_cache_bytes: 1 << 20,
            },
        );
        let (mut parts, ()) = Request::get("/v2/_catalog").body(()).unwrap().into_parts();
        assert!(registry
            .visible_repositories(&parts)
            .await
            .unwrap()
            .is_empty());
        parts
            .extensions
            .insert(access::Visibility(Arc::new(|_| true)));
        assert_eq!(
            registry.visible_repositories(&parts).await.unwrap(),
            ["team/app"]
        );
    }
}
