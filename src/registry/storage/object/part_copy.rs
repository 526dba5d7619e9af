//! Publishing blobs larger than one CopyObject may be (5 GiB on AWS): a multipart upload
//! at the blob's key whose parts are copied by S3 from the completed upload, a range each
//! (UploadPartCopy), a few at a time. No byte passes through wharf, and the blob appears
//! whole when the upload completes, as with CopyObject.
//!
//! object_store has no call for UploadPartCopy, so this builds the request itself: the
//! object URLs as object_store makes them (its presigned URL without the signature), signed
//! by object_store's own SigV4 signer with the client's credentials, sent with an HTTP
//! client from the same options. Each request has the deadline of a server-side copy.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use http::Method;
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, MultipartId};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use super::Store;

/// How many parts are copied at once.
const CONCURRENT_COPIES: usize = 4;

pub struct PartCopier {
    s3: AmazonS3,
    http: HttpClient,
    region: String,
    bucket: String,
    path_style: bool,
    /// The largest single copy, and the size of each copied part.
    pub part_size: u64,
    deadline: Duration,
}

impl PartCopier {
    pub fn new(
        s3: AmazonS3,
        options: &ClientOptions,
        config: &crate::config::S3Config,
        deadline: Duration,
    ) -> std::io::Result<Self> {
        let http = ReqwestConnector::default()
            .connect(options)
            .map_err(std::io::Error::other)?;
        Ok(Self {
            s3,
            http,
            region: config.region.clone(),
            bucket: config.bucket.clone(),
            path_style: config.path_style,
            part_size: config.copy_part_size,
            deadline,
        })
    }

    /// Copies `from` (`size` bytes) to `to` in parts of [`PartCopier::part_size`].
    pub async fn copy(
        &self,
        store: &Arc<dyn Store>,
        from: &Path,
        to: &Path,
        size: u64,
    ) -> object_store::Result<()> {
        let upload = store.create_multipart(to).await?;
        let ranges: Vec<(usize, u64, u64)> = (0..size.div_ceil(self.part_size))
            .map(|n| {
                let start = n * self.part_size;
                (n as usize, start, (start + self.part_size).min(size) - 1)
            })
            .collect();
        let copied: object_store::Result<Vec<PartId>> = futures_util::stream::iter(ranges)
            .map(|(n, first, last)| self.copy_part(from, to, &upload, n, first, last))
            .buffered(CONCURRENT_COPIES)
            .try_collect()
            .await;
        match copied {
            Ok(parts) => store.complete_multipart(to, &upload, parts).await.map(drop),
            Err(e) => {
                let _ = store.abort_multipart(to, &upload).await;
                Err(e)
            }
        }
    }

    /// Copies bytes `first..=last` of `from` as part `n` (from 0) of `upload` at `to`.
    async fn copy_part(
        &self,
        from: &Path,
        to: &Path,
        upload: &MultipartId,
        n: usize,
        first: u64,
        last: u64,
    ) -> object_store::Result<PartId> {
        let source = self.object_url(from).await?;
        let source_path = &source[source.find("://").map_or(0, |i| i + 3)..];
        let source_path = &source_path[source_path.find('/').unwrap_or(0)..];
        let copy_source = match self.path_style {
            true => source_path.to_owned(),
            false => format!("/{}{source_path}", self.bucket),
        };
        let url = format!(
            "{}?partNumber={}&uploadId={}",
            self.object_url(to).await?,
            n + 1,
            utf8_percent_encode(upload, NON_ALPHANUMERIC)
        );
        let mut request = http::Request::builder()
            .method(Method::PUT)
            .uri(url)
            .header("x-amz-copy-source", copy_source)
            .header("x-amz-copy-source-range", format!("bytes={first}-{last}"))
            .body(HttpRequestBody::empty())
            .map_err(failed)?;
        let credential = self.s3.credentials().get_credential().await?;
        AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
        let answer = async {
            let response = self.http.execute(request).await.map_err(failed)?;
            let status = response.status();
            let body = response.into_body().bytes().await.map_err(failed)?;
            Ok::<_, object_store::Error>((status, body))
        };
        let (status, body) =
            tokio::time::timeout(self.deadline, answer)
                .await
                .map_err(|_| {
                    failed(format!(
                        "UploadPartCopy took longer than {:?}",
                        self.deadline
                    ))
                })??;
        let body = String::from_utf8_lossy(&body);
        // S3 may answer a copy with 200 and an error in the body.
        match (status.is_success(), etag_of(&body)) {
            (true, Some(etag)) if !body.contains("<Error>") => Ok(PartId { content_id: etag }),
            _ => Err(failed(format!("UploadPartCopy answered {status}: {body}"))),
        }
    }

    /// The URL of an object, exactly as object_store addresses it.
    async fn object_url(&self, key: &Path) -> object_store::Result<String> {
        let mut url = self
            .s3
            .signed_url(Method::PUT, key, Duration::from_secs(60))
            .await?;
        url.set_query(None);
        Ok(url.to_string())
    }
}

/// The e-tag in a `CopyPartResult`, quotes and all (as CompleteMultipartUpload wants it).
fn etag_of(body: &str) -> Option<String> {
    let start = body.find("<ETag>")? + "<ETag>".len();
    let len = body[start..].find("</ETag>")?;
    Some(body[start..start + len].replace("&quot;", "\""))
}

fn failed(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::etag_of;

    #[test]
    fn the_etag_of_a_copied_part() {
        let body = "<CopyPartResult><LastModified>x</LastModified><ETag>&quot;abc&quot;</ETag></CopyPartResult>";
        assert_eq!(etag_of(body).as_deref(), Some("\"abc\""));
        assert_eq!(etag_of("<Error><Code>NoSuchUpload</Code></Error>"), None);
    }
}
