//! HTTP ↔ repository operations: `route.rs` parses `/v2/...` into a typed [`Route`];
//! [`Registry::handle`] matches it with the method and calls one handler; each handler
//! reads what it needs from the request, calls the [`Service`](super::service::Service)
//! with the request's [`Caller`], and shapes the spec's response from the typed outcome.
//! Handlers never touch storage; errors stay [`ApiError`]s for the gateway to answer.
//!
//! One file per endpoint family: `blobs.rs`, `uploads.rs`, `manifests.rs`, `listing.rs`
//! (tags and catalog), `referrers.rs`, `search.rs` (docker's `/v1/`), `wharf_api.rs`
//! (wharf's own API under `/wharf/api/`: repository delete).

pub(crate) mod blobs;
mod listing;
mod manifests;
mod referrers;
pub mod route;
mod search;
pub(crate) mod uploads;
pub mod wharf_api;

use http::request::Parts;
use http::{Method, Request, Response, StatusCode};

use self::route::Route;
use super::error::{ApiError, ApiResult, Code};
use super::service::{ByteStream, Caller};
use super::Registry;
use crate::http_util::{Body, Reply};

impl Registry {
    /// Serves one `/v2/...` request.
    pub async fn handle(&self, req: Request<ByteStream>) -> ApiResult<Response<Body>> {
        let (mut parts, body) = req.into_parts();
        let route = match parts.extensions.remove::<Route>() {
            Some(route) => route,
            None => route::parse(parts.uri.path())?,
        };
        // The gateway says who is asking; a request without it is anonymous.
        let caller = parts.extensions.remove::<Caller>().unwrap_or_default();
        let c = &caller;
        let method = parts.method.clone();
        match (route, method) {
            (Route::Base, Method::GET | Method::HEAD) => {
                Ok(Reply::new(StatusCode::OK).json(&serde_json::json!({})))
            }
            (Route::Catalog, Method::GET) => self.catalog(&parts).await,
            (Route::Tags(name), Method::GET) => self.tags(&name, &parts).await,
            (Route::Manifest(name, r), Method::GET) => self.get_manifest(c, &name, &r, true).await,
            (Route::Manifest(name, r), Method::HEAD) => {
                self.get_manifest(c, &name, &r, false).await
            }
            (Route::Manifest(name, r), Method::PUT) => {
                self.put_manifest(c, &name, &r, &parts, body).await
            }
            (Route::Manifest(name, r), Method::DELETE) => self.delete_manifest(c, &name, &r).await,
            // A real client only sends such a reference after a typo; what it asks for is
            // simply not there (Distribution treats it as a tag nobody pushed).
            (Route::ImpossibleManifest(_, r), Method::GET | Method::HEAD | Method::DELETE) => Err(
                ApiError::new(Code::ManifestUnknown, format!("manifest {r:?} is unknown")),
            ),
            (Route::ImpossibleManifest(_, r), Method::PUT) => Err(route::invalid_reference(&r)),
            (Route::Blob(name, d), Method::GET) => self.get_blob(c, &name, &d, &parts, true).await,
            (Route::Blob(name, d), Method::HEAD) => {
                self.get_blob(c, &name, &d, &parts, false).await
            }
            (Route::Blob(name, d), Method::DELETE) => self.delete_blob(c, &name, &d).await,
            (Route::UploadStart(name), Method::POST) => {
                self.start_upload(c, &name, &parts, body).await
            }
            (Route::Upload(name, id), Method::GET) => self.upload_status(c, &name, id).await,
            (Route::Upload(name, id), Method::PATCH) => {
                self.patch_upload(c, &name, id, &parts, body).await
            }
            (Route::Upload(name, id), Method::PUT) => {
                self.put_upload(c, &name, id, &parts, body).await
            }
            (Route::Upload(name, id), Method::DELETE) => self.cancel_upload(c, &name, id).await,
            (Route::Referrers(name, d), Method::GET) => self.referrers(&name, &d, &parts).await,
            (_, method) => Err(ApiError::new(
                Code::MethodNotAllowed,
                format!("{method} is not supported on this endpoint"),
            )),
        }
    }

    /// Serves docker's `/v1/_ping` and `/v1/search`.
    pub async fn handle_v1(&self, req: &Parts) -> ApiResult<Response<Body>> {
        search::handle(self, req).await
    }

    /// The repositories the request's [`access::Visibility`](super::access::Visibility)
    /// lets it see (none without one).
    async fn visible_repositories(&self, req: &Parts) -> ApiResult<Vec<String>> {
        let visibility = req.extensions.get::<super::access::Visibility>();
        self.service().visible_repositories(visibility).await
    }
}
