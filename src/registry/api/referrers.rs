//! `GET /v2/<name>/referrers/<digest>`: the manifests whose `subject` is `<digest>`, as an
//! image index, optionally filtered by `artifactType`.

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderName, Response, StatusCode};
use serde_json::json;

use crate::http_util::{query_param, Body, Reply};
use crate::registry::error::ApiResult;
use crate::registry::manifest::OCI_INDEX;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::Registry;

const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

impl Registry {
    pub(super) async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        req: &Parts,
    ) -> ApiResult<Response<Body>> {
        let filter = query_param(req.uri.query(), "artifactType");
        let manifests = self
            .service()
            .referrers(repo, subject, filter.as_deref())
            .await?;
        // Always an index, empty for an unknown subject: clients treat 404 as "no referrers
        // API" and fall back to the tag schema.
        let body = json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
        let mut reply = Reply::new(StatusCode::OK);
        if filter.is_some() {
            reply = reply.header(OCI_FILTERS_APPLIED, "artifactType");
        }
        let mut response = reply.json(&body);
        if let Ok(v) = http::HeaderValue::from_str(OCI_INDEX) {
            response.headers_mut().insert(CONTENT_TYPE, v);
        }
        Ok(response)
    }
}
