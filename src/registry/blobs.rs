//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use futures_util::TryStreamExt;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::request::Parts;
use http::{HeaderName, Response, StatusCode};

use super::error::{ApiError, ApiResult, Code};
use super::reference::{Digest, RepoName};
use super::storage::LinkKind;
use super::Registry;
use crate::http_util::{self, Body, Reply};

pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

impl Registry {
    /// Whether `repo` may serve `digest` as a blob: it was pushed or mounted there, or it is
    /// one of the repository's manifests (some clients fetch manifests through `/blobs/`).
    pub(super) async fn repo_has_blob(&self, repo: &RepoName, digest: &Digest) -> ApiResult<bool> {
        for kind in [LinkKind::Layer, LinkKind::Manifest] {
            if self.storage.read_link(repo, kind, digest).await?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) async fn get_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        req: &Parts,
        with_body: bool,
    ) -> ApiResult<Response<Body>> {
        let size = match self.repo_has_blob(repo, digest).await? {
            true => self.storage.blob_size(digest).await?,
            false => None,
        };
        let size = size.ok_or_else(|| blob_unknown(digest))?;
        let range = match req.headers.get(RANGE) {
            None => None,
            Some(v) => Some(parse_range(v.to_str().unwrap_or(""), size).ok_or_else(|| {
                ApiError::new(Code::RangeInvalid, "requested range is not satisfiable")
                    .with_header(CONTENT_RANGE, format!("bytes */{size}"))
            })?),
        };
        let (status, start, len) = match range {
            Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
            None => (StatusCode::OK, 0, size),
        };
        let mut reply = Reply::new(status)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, len)
            .header(ACCEPT_RANGES, "bytes")
            .header(DOCKER_CONTENT_DIGEST, digest);
        if status == StatusCode::PARTIAL_CONTENT {
            reply = reply.header(
                CONTENT_RANGE,
                format!("bytes {start}-{}/{size}", start + len - 1),
            );
        }
        if !with_body || len == 0 {
            return Ok(reply.empty());
        }
        let body = self
            .storage
            .read_blob(digest, start, len)
            .await?
            .ok_or_else(|| blob_unknown(digest))?;
        // Once the headers are out, a storage failure (a store that stalls, say) can only
        // end the body, which the client sees as a short read; the log says why.
        let digest = digest.clone();
        let body = body.inspect_err(move |error| {
            tracing::error!(%digest, %error, "blob download broke off: storage failed");
        });
        Ok(reply.body(http_util::stream(Box::pin(body))))
    }

    pub(super) async fn delete_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> ApiResult<Response<Body>> {
        // Only the repository's link goes; the bytes may be shared with other repositories.
        if !self.storage.unlink(repo, LinkKind::Layer, digest).await? {
            return Err(blob_unknown(digest));
        }
        Ok(Reply::new(StatusCode::ACCEPTED)
            .header(CONTENT_LENGTH, 0)
            .header(DOCKER_CONTENT_DIGEST, digest)
            .empty())
    }
}

pub fn blob_unknown(digest: &Digest) -> ApiError {
    ApiError::new(
        Code::BlobUnknown,
        format!("blob {digest} is unknown to this repository"),
    )
}

/// Parses a single `bytes=` range against a blob of `size` bytes into inclusive bounds.
/// `None` when the range is malformed or not satisfiable.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // multipart ranges are not supported
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let suffix: u64 = b.parse().ok()?;
        if suffix == 0 {
            return None;
        }
        (size.saturating_sub(suffix), size.checked_sub(1)?)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.checked_sub(1)?
        } else {
            b.parse::<u64>().ok()?.min(size.checked_sub(1)?)
        };
        (start, end)
    };
    (start <= end && start < size).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-0", 0), None);
    }
}
