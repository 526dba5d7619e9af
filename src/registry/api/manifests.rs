//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::request::Parts;
use http::{HeaderName, Response, StatusCode};

use super::blobs::DOCKER_CONTENT_DIGEST;
use crate::http_util::{self, Body, Reply};
use crate::registry::error::ApiResult;
use crate::registry::reference::{Reference, RepoName};
use crate::registry::service::{ByteStream, Caller};
use crate::registry::Registry;

const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");

impl Registry {
    pub(super) async fn get_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        with_body: bool,
    ) -> ApiResult<Response<Body>> {
        let m = self
            .service()
            .get_manifest(caller, repo, reference, with_body)
            .await?;
        let reply = Reply::new(StatusCode::OK)
            .header(CONTENT_TYPE, &m.media_type)
            .header(CONTENT_LENGTH, m.bytes.len())
            .header(DOCKER_CONTENT_DIGEST, &m.digest);
        Ok(match with_body {
            true => reply.body(http_util::full(m.bytes.clone())),
            false => reply.empty(),
        })
    }

    pub(super) async fn put_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
        req: &Parts,
        body: ByteStream,
    ) -> ApiResult<Response<Body>> {
        let content_type = req.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let pushed = self
            .service()
            .put_manifest(caller, repo, reference, content_type, body)
            .await?;
        let digest = &pushed.digest;
        let mut reply = Reply::new(StatusCode::CREATED)
            .header(LOCATION, format!("/v2/{repo}/manifests/{digest}"))
            .header(DOCKER_CONTENT_DIGEST, digest)
            .header(CONTENT_LENGTH, 0);
        if let Some(subject) = &pushed.subject {
            reply = reply.header(OCI_SUBJECT, subject);
        }
        Ok(reply.empty())
    }

    pub(super) async fn delete_manifest(
        &self,
        caller: &Caller,
        repo: &RepoName,
        reference: &Reference,
    ) -> ApiResult<Response<Body>> {
        self.service()
            .delete_manifest(caller, repo, reference)
            .await?;
        Ok(Reply::new(StatusCode::ACCEPTED)
            .header(CONTENT_LENGTH, 0)
            .empty())
    }
}
