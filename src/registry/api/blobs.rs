//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use futures_util::TryStreamExt;
use http::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use http::request::Parts;
use http::{HeaderName, Response, StatusCode};

use crate::http_util::{self, Body, Reply};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::{Digest, RepoName};
use crate::registry::service::Caller;
use crate::registry::Registry;

pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

impl Registry {
    pub(super) async fn get_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
        req: &Parts,
        with_body: bool,
    ) -> ApiResult<Response<Body>> {
        let size = self.service().blob_size(repo, digest).await?;
        let range = req.headers.get(RANGE).map_or(Ranged::Whole, |v| {
            parse_range(v.to_str().unwrap_or(""), size)
        });
        let (status, start, len) = match range {
            Ranged::Whole => (StatusCode::OK, 0, size),
            Ranged::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
            Ranged::Unsatisfiable => {
                return Err(
                    ApiError::new(Code::RangeInvalid, "requested range is not satisfiable")
                        .with_header(CONTENT_RANGE, format!("bytes */{size}")),
                )
            }
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
        let read = self
            .service()
            .read_blob(caller, repo, digest, size, start, len)
            .await?;
        // Once the headers are out, a storage failure (a store that stalls, say) can only
        // end the body, which the client sees as a short read; the log says why.
        let digest = digest.clone();
        let body = read.body.inspect_err(move |error| {
            tracing::error!(%digest, %error, "blob download broke off: storage failed");
        });
        Ok(reply.body(http_util::stream(Box::pin(body))))
    }

    pub(super) async fn delete_blob(
        &self,
        caller: &Caller,
        repo: &RepoName,
        digest: &Digest,
    ) -> ApiResult<Response<Body>> {
        self.service().delete_blob(caller, repo, digest).await?;
        Ok(Reply::new(StatusCode::ACCEPTED)
            .header(CONTENT_LENGTH, 0)
            .header(DOCKER_CONTENT_DIGEST, digest)
            .empty())
    }
}

/// What a `Range` header asks of a blob.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// No range wharf serves: the whole blob, 200. RFC 9110 lets a server ignore any
    /// `Range`; wharf ignores the ones it does not parse as one `bytes` range (other units,
    /// several ranges, malformed ones), as Distribution and nginx do, rather than fail them.
    Whole,
    /// Inclusive bounds inside the blob: 206.
    Part(u64, u64),
    /// A well-formed range that starts past the end (or an empty suffix): 416.
    Unsatisfiable,
}

/// Reads a `Range` header against a blob of `size` bytes.
pub(crate) fn parse_range(value: &str, size: u64) -> Ranged {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    let Some((a, b)) = spec.split_once('-') else {
        return Ranged::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    // Digits too long for a u64 are still a position, just one past any blob's end.
    let number = |s: &str| s.parse::<u64>().unwrap_or(u64::MAX);
    let last = match size.checked_sub(1) {
        Some(last) => last,
        None if digits(a) || digits(b) => return Ranged::Unsatisfiable,
        None => return Ranged::Whole,
    };
    match (digits(a), digits(b), a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (false, true, true, _) => match number(b) {
            0 => Ranged::Unsatisfiable,
            n => Ranged::Part(size.saturating_sub(n), last),
        },
        // bytes=S- and bytes=S-E
        (true, _, _, true) | (true, true, _, _) => {
            let start = number(a);
            let end = (!b.is_empty()).then(|| number(b));
            if end.is_some_and(|end| end < start) {
                Ranged::Whole // first > last is invalid syntax, not an unsatisfiable range
            } else if start > last {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part(start, end.unwrap_or(last).min(last))
            }
        }
        _ => Ranged::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_range, Ranged};

    #[test]
    fn ranges() {
        use Ranged::{Part, Unsatisfiable, Whole};
        assert_eq!(parse_range("bytes=0-9", 100), Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), Part(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), Part(0, 99));
        assert_eq!(parse_range("bytes=95-200", 100), Part(95, 99));
        assert_eq!(
            parse_range(&format!("bytes=0-{}", u64::MAX), 100),
            Part(0, 99)
        );
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 100),
            Part(0, 99)
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 100), Whole);
        assert_eq!(parse_range("bytes=0-1,3-4", 100), Whole);
        assert_eq!(parse_range("items=0-1", 100), Whole);
        assert_eq!(parse_range("bytes=", 100), Whole);
        assert_eq!(parse_range("bytes=-", 100), Whole);
        assert_eq!(parse_range("bytes=a-b", 100), Whole);
        assert_eq!(parse_range("bytes=1-2-3", 100), Whole);
    }
}

#[cfg(test)]
mod properties {
    use crate::invariants::{self, strategies};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_served_range_lies_inside_the_blob(
            unit in prop_oneof![Just("bytes="), Just(" bytes= "), Just("items=")],
            start in prop_oneof![strategies::number_text(), Just(String::new())],
            end in prop_oneof![strategies::number_text(), Just(String::new())],
            size in strategies::number(),
        ) {
            invariants::range(&format!("{unit}{start}-{end}"), size);
        }
    }
}
