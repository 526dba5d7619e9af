//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (session, monolithic, or mount) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use http::header::{CONTENT_LENGTH, LOCATION, RANGE};
use http::request::Parts;
use http::{HeaderMap, HeaderName, Response, StatusCode};

use super::blobs::DOCKER_CONTENT_DIGEST;
use crate::http_util::{query_param, Body, Reply};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::{Digest, RepoName};
use crate::registry::service::{Append, ByteStream, Caller, ChunkRange, Finished, UploadId};
use crate::registry::Registry;

const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

impl Registry {
    pub(super) async fn start_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        req: &Parts,
        body: ByteStream,
    ) -> ApiResult<Response<Body>> {
        let query = req.uri.query();
        if let (Some(mount), Some(from)) = (query_param(query, "mount"), query_param(query, "from"))
        {
            let digest = parse_digest(&mount)?;
            let from = RepoName::parse(&from)
                .map_err(|why| ApiError::new(Code::NameInvalid, format!("from: {why}")))?;
            if self.service().mount(caller, repo, &from, &digest).await? {
                return Ok(blob_created(repo, &digest));
            }
            // The spec's fallback when the source lacks the blob: an ordinary session.
        }
        let digest = query_param(query, "digest")
            .map(|d| parse_digest(&d))
            .transpose()?;
        if let Some(digest) = digest {
            if content_range(&req.headers)?.is_some_and(|range| range.offset != 0) {
                return Err(ApiError::new(
                    Code::RangeInvalid,
                    "a monolithic upload starts at byte 0",
                ));
            }
            let outcome = self.service().put_blob(caller, repo, &digest, body).await?;
            return finished(repo, &digest, outcome);
        }
        let id = self.service().start_upload(caller, repo).await?;
        Ok(session_reply(StatusCode::ACCEPTED, repo, id, 0))
    }

    pub(super) async fn upload_status(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
    ) -> ApiResult<Response<Body>> {
        let size = self
            .service()
            .upload_size(caller, repo, id)
            .await?
            .ok_or_else(upload_unknown)?;
        Ok(session_reply(StatusCode::NO_CONTENT, repo, id, size))
    }

    pub(super) async fn patch_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
        req: &Parts,
        body: ByteStream,
    ) -> ApiResult<Response<Body>> {
        let size = self
            .append(caller, repo, id, &req.headers, body)
            .await?
            .ok_or_else(upload_unknown)?;
        Ok(session_reply(StatusCode::ACCEPTED, repo, id, size))
    }

    pub(super) async fn put_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
        req: &Parts,
        body: ByteStream,
    ) -> ApiResult<Response<Body>> {
        let digest = query_param(req.uri.query(), "digest")
            .ok_or_else(|| {
                ApiError::new(
                    Code::DigestInvalid,
                    "the digest query parameter is required",
                )
            })
            .and_then(|d| parse_digest(&d))?;
        let has_body = req.headers.get(CONTENT_LENGTH).is_none_or(|v| v != "0");
        if has_body {
            // An unknown session is left to the finish: it may be a retry whose first try
            // finished it (the answer was lost), which the service recognises.
            self.append(caller, repo, id, &req.headers, body).await?;
        }
        let outcome = self
            .service()
            .finish_upload(caller, repo, id, &digest)
            .await?;
        finished(repo, &digest, outcome)
    }

    pub(super) async fn cancel_upload(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
    ) -> ApiResult<Response<Body>> {
        if !self.service().cancel_upload(caller, repo, id).await? {
            return Err(upload_unknown());
        }
        Ok(Reply::new(StatusCode::NO_CONTENT).empty())
    }

    /// Appends a request body to a session, honouring `Content-Range` when the client sent
    /// one. Returns the session's new size, or `None` for an unknown session.
    async fn append(
        &self,
        caller: &Caller,
        repo: &RepoName,
        id: UploadId,
        headers: &HeaderMap,
        body: ByteStream,
    ) -> ApiResult<Option<u64>> {
        let expected = content_range(headers)?;
        let appended = self
            .service()
            .append_upload(caller, repo, id, expected, body)
            .await?;
        match appended {
            Append::Written { size } => Ok(Some(size)),
            Append::UnknownUpload => Ok(None),
            Append::OffsetMismatch { size } => Err(ApiError::new(
                Code::RangeInvalid,
                format!("chunk must start at byte {size}, where the upload ends"),
            )
            .with_header(RANGE, range_value(size))
            .with_header(LOCATION, session_location(repo, id))),
            Append::LengthMismatch { size } => Err(ApiError::new(
                Code::RangeInvalid,
                format!("the body's length differs from its Content-Range; it was discarded and the upload still holds {size} bytes"),
            )
            .with_header(RANGE, range_value(size))
            .with_header(LOCATION, session_location(repo, id))),
            Append::BodyFailed { size, error } => {
                tracing::warn!(%repo, upload = %id, size, %error, "upload body broke off");
                Err(ApiError::new(
                    Code::BlobUploadInvalid,
                    format!("the request body ended early; the upload holds {size} bytes and can be resumed"),
                ))
            }
        }
    }
}

/// The answer to a finished upload or monolithic put.
fn finished(repo: &RepoName, digest: &Digest, outcome: Finished) -> ApiResult<Response<Body>> {
    match outcome {
        Finished::Stored => Ok(blob_created(repo, digest)),
        Finished::UnknownUpload => Err(upload_unknown()),
        Finished::DigestMismatch { actual } => Err(ApiError::new(
            Code::DigestInvalid,
            format!(
                "the uploaded content has digest {actual}, not {digest}; the upload was discarded"
            ),
        )),
        Finished::BodyFailed { error } => {
            tracing::warn!(%repo, %digest, %error, "monolithic upload body broke off");
            Err(ApiError::new(
                Code::BlobUploadInvalid,
                "the request body ended early; the upload was discarded",
            ))
        }
    }
}

/// The chunk a `Content-Range: <start>-<end>` names, checked against `Content-Length`
/// when both are present (storage checks it against the body actually received).
pub(crate) fn content_range(headers: &HeaderMap) -> ApiResult<Option<ChunkRange>> {
    let Some(value) = headers.get(http::header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::new(
            Code::RangeInvalid,
            "Content-Range must be <start>-<end> with start <= end, matching Content-Length",
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    let text = text
        .trim()
        .trim_start_matches("bytes=")
        .trim_start_matches("bytes ");
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    // `end` may be anything a client writes, u64::MAX included: no unchecked arithmetic,
    // and no chunk whose end (`start + len`) is past the largest offset there is.
    let len = end
        .checked_sub(start)
        .and_then(|n| n.checked_add(1))
        .filter(|&len| start.checked_add(len).is_some())
        .ok_or_else(bad)?;
    if let Some(declared) = headers.get(CONTENT_LENGTH) {
        let declared: u64 = declared
            .to_str()
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or_else(bad)?;
        if declared != len {
            return Err(bad());
        }
    }
    Ok(Some(ChunkRange { offset: start, len }))
}

fn parse_digest(s: &str) -> ApiResult<Digest> {
    Digest::parse(s).map_err(|why| ApiError::new(Code::DigestInvalid, why))
}

fn upload_unknown() -> ApiError {
    ApiError::new(
        Code::BlobUploadUnknown,
        "upload session is unknown to this repository",
    )
}

fn session_location(repo: &RepoName, id: UploadId) -> String {
    // Relative, so it is right whatever scheme, host and port the client came through.
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// The spec's `Range: 0-<last byte>` of a session (`0-0` when it is empty).
fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn session_reply(status: StatusCode, repo: &RepoName, id: UploadId, size: u64) -> Response<Body> {
    Reply::new(status)
        .header(LOCATION, session_location(repo, id))
        .header(RANGE, range_value(size))
        .header(DOCKER_UPLOAD_UUID, id)
        .header(CONTENT_LENGTH, 0)
        .empty()
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response<Body> {
    Reply::new(StatusCode::CREATED)
        .header(LOCATION, format!("/v2/{repo}/blobs/{digest}"))
        .header(DOCKER_CONTENT_DIGEST, digest)
        .header(CONTENT_LENGTH, 0)
        .empty()
}

#[cfg(test)]
mod properties {
    use crate::invariants::{self, strategies};
    use proptest::prelude::*;

    /// Found by the property: `1-18446744073709551615` was accepted as a chunk of u64::MAX
    /// bytes from offset 1, which ends past the largest offset there is.
    #[test]
    fn a_chunk_ending_past_u64_max_is_refused() {
        let max = u64::MAX;
        for range in [
            format!("1-{max}"),
            format!("{max}-{max}"),
            format!("bytes {max}-{max}"),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_RANGE, range.parse().unwrap());
            let e = super::content_range(&headers).unwrap_err();
            assert_eq!(
                e.code,
                crate::registry::error::Code::RangeInvalid,
                "{range}"
            );
        }
        invariants::chunk_range(format!("0-{}", max - 1).as_bytes(), None);
    }

    proptest! {
        #[test]
        fn an_accepted_chunk_ends_after_it_starts_and_before_u64_max(
            unit in prop_oneof![Just(""), Just("bytes "), Just("bytes=")],
            start in strategies::number_text(),
            end in strategies::number_text(),
            length in proptest::option::of(strategies::number_text()),
        ) {
            let range = format!("{unit}{start}-{end}");
            invariants::chunk_range(range.as_bytes(), length.as_deref().map(str::as_bytes));
        }
    }
}
