//! `GET /v2/<name>/referrers/<digest>`: the manifests whose `subject` is `<digest>`, as an
//! image index, optionally filtered by `artifactType`.

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderName, Response, StatusCode};
use serde_json::{json, Value};

use super::error::ApiResult;
use super::manifest::OCI_INDEX;
use super::reference::{Digest, RepoName};
use super::Registry;
use crate::http_util::{query_param, Body, Reply};

const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

impl Registry {
    pub(super) async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        req: &Parts,
    ) -> ApiResult<Response<Body>> {
        let filter = query_param(req.uri.query(), "artifactType");
        let mut manifests = Vec::new();
        for raw in self.storage.list_referrers(repo, subject).await? {
            let Ok(descriptor) = serde_json::from_slice::<Value>(&raw) else {
                tracing::error!(%repo, %subject, "skipping an unreadable referrer record");
                continue;
            };
            let kind = descriptor.get("artifactType").and_then(Value::as_str);
            if filter.as_deref().is_none_or(|f| kind == Some(f)) {
                manifests.push(descriptor);
            }
        }
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
