//! Deadlines for every request to the object store, in one place: [`Deadlines`] wraps the
//! store and every other part of the backend goes through it.
//!
//! Why here and not in the HTTP client: object_store's request timeout covers a whole
//! response body, and a blob download to a slow client may rightly take an hour, so
//! `connect.rs` disables it. Without a deadline, a store that accepts connections but
//! never answers (or stalls mid-response) would hang wharf's requests forever. So:
//!
//! - every request that is not a streamed body must be answered within its deadline
//!   ([`Limits`]); that includes the headers of a GET whose body then streams;
//! - a streamed body (blob downloads, listings) may take as long as it likes, but a
//!   stall of `timeout` with no data from the store ends it with an error.
//!
//! A deadline covers object_store's own retries (`RetryConfig` in `connect.rs`), so one
//! operation never takes longer than its deadline, however many attempts it makes. An
//! attempt that stalls is not retried: it ends the operation, and the client's request
//! gets a 503 it may retry.
//!
//! An elapsed deadline is an [`object_store::Error`] like any other failure of the store,
//! so the backend turns it into `StorageError::Unavailable` (a 503) with the operation's
//! name, where it handles every other store error.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartId, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result, UploadPart,
};

/// The slowest upload rate to the store that still counts as working: a request that
/// sends a body gets one extra second per MiB, so a full 512 MiB part may take
/// `timeout` + 8½ minutes but a tag PUT only `timeout`.
const MIN_SEND_RATE: u64 = 1 << 20;

/// S3 answers CopyObject and CompleteMultipartUpload only once it has assembled the whole
/// object, which AWS says may take minutes for large ones. They get this many `timeout`s
/// (5 minutes with the default 30 s).
const SERVER_SIDE_FACTOR: u32 = 10;

/// How long each kind of request may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// One request without a (large) body, and a stall between chunks of a streamed one.
    pub timeout: Duration,
}

impl Limits {
    /// A request sending `bytes` (a PUT or a part upload).
    fn sending(&self, bytes: usize) -> Duration {
        self.timeout + Duration::from_secs(bytes as u64 / MIN_SEND_RATE)
    }

    /// A request the store answers after working on a whole object.
    pub fn server_side(&self) -> Duration {
        self.timeout * SERVER_SIDE_FACTOR
    }
}

/// A store whose every request has a deadline (see the module's notes).
#[derive(Debug)]
pub struct Deadlines<S> {
    inner: S,
    limits: Limits,
}

impl<S> Deadlines<S> {
    pub fn new(inner: S, limits: Limits) -> Self {
        Self { inner, limits }
    }
}

impl<S: fmt::Display> fmt::Display for Deadlines<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (timeout {:?})", self.inner, self.limits.timeout)
    }
}

/// `request` unless it finishes within `limit`; the error names what timed out.
async fn within<T>(
    limit: Duration,
    what: impl FnOnce() -> String,
    request: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result,
        Err(_) => Err(no_answer(what(), limit)),
    }
}

fn no_answer(what: String, limit: Duration) -> object_store::Error {
    object_store::Error::Generic {
        store: "S3",
        source: format!("{what}: no answer from the store within {limit:?}").into(),
    }
}

/// `stream`, ended with an error when the store sends nothing for `limit`. The clock runs
/// only while the consumer waits for the next item, so a slow client is never cut off.
fn idle_limited<T: Send + 'static>(
    stream: BoxStream<'static, Result<T>>,
    limit: Duration,
    what: String,
) -> BoxStream<'static, Result<T>> {
    futures_util::stream::unfold(Some(stream), move |stream| {
        let what = what.clone();
        async move {
            let mut stream = stream?;
            match tokio::time::timeout(limit, stream.next()).await {
                Ok(Some(item)) => Some((item, Some(stream))),
                Ok(None) => None,
                // The error is the stream's last item.
                Err(_) => Some((Err(no_answer(format!("{what} stalled"), limit)), None)),
            }
        }
    })
    // Some consumers poll once more after the end, which an unfused `unfold` panics on.
    .fuse()
    .boxed()
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Deadlines<S> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let limit = self.limits.sending(payload.content_length());
        let what = || format!("PUT {location}");
        within(limit, what, self.inner.put_opts(location, payload, opts)).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let what = || format!("create multipart upload {location}");
        let upload = within(
            self.limits.timeout,
            what,
            self.inner.put_multipart_opts(location, opts),
        )
        .await?;
        Ok(Box::new(TimedUpload {
            inner: upload,
            limits: self.limits,
            location: location.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let method = if options.head { "HEAD" } else { "GET" };
        let what = || format!("{method} {location}");
        let mut result = within(
            self.limits.timeout,
            what,
            self.inner.get_opts(location, options),
        )
        .await?;
        // The headers came in time; the body streams under the idle limit.
        result.payload = match result.payload {
            GetResultPayload::Stream(body) => GetResultPayload::Stream(idle_limited(
                body,
                self.limits.timeout,
                format!("GET {location}"),
            )),
            #[allow(unreachable_patterns)] // a local file (object_store's "fs" feature)
            other => other,
        };
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let what = || format!("GET ranges of {location}");
        within(
            self.limits.timeout,
            what,
            self.inner.get_ranges(location, ranges),
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let deleted = self.inner.delete_stream(locations);
        idle_limited(deleted, self.limits.timeout, "DELETE".into())
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let what = format!("LIST {}", prefix.map(Path::as_ref).unwrap_or_default());
        idle_limited(self.inner.list(prefix), self.limits.timeout, what)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let what = format!("LIST {}", prefix.map(Path::as_ref).unwrap_or_default());
        let listed = self.inner.list_with_offset(prefix, offset);
        idle_limited(listed, self.limits.timeout, what)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let what = || format!("LIST {}", prefix.map(Path::as_ref).unwrap_or_default());
        within(
            self.limits.timeout,
            what,
            self.inner.list_with_delimiter(prefix),
        )
        .await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let what = || format!("COPY {from} to {to}");
        within(
            self.limits.server_side(),
            what,
            self.inner.copy_opts(from, to, options),
        )
        .await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let what = || format!("RENAME {from} to {to}");
        within(
            self.limits.server_side(),
            what,
            self.inner.rename_opts(from, to, options),
        )
        .await
    }
}

#[async_trait]
impl<S: MultipartStore> MultipartStore for Deadlines<S> {
    async fn create_multipart(&self, path: &Path) -> Result<MultipartId> {
        let what = || format!("create multipart upload {path}");
        within(self.limits.timeout, what, self.inner.create_multipart(path)).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> Result<PartId> {
        let limit = self.limits.sending(data.content_length());
        let what = || format!("PUT part {part_idx} of {path}");
        within(limit, what, self.inner.put_part(path, id, part_idx, data)).await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<PutResult> {
        let what = || format!("complete multipart upload {path}");
        within(
            self.limits.server_side(),
            what,
            self.inner.complete_multipart(path, id, parts),
        )
        .await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> Result<()> {
        let what = || format!("abort multipart upload {path}");
        within(
            self.limits.timeout,
            what,
            self.inner.abort_multipart(path, id),
        )
        .await
    }
}

/// object_store's own multipart writer, under the same deadlines. (wharf writes parts
/// through [`MultipartStore`]; this is here so that no way through the store lacks one.)
#[derive(Debug)]
struct TimedUpload {
    inner: Box<dyn MultipartUpload>,
    limits: Limits,
    location: Path,
}

#[async_trait]
impl MultipartUpload for TimedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let limit = self.limits.sending(data.content_length());
        let what = format!("PUT part of {}", self.location);
        Box::pin(within(limit, move || what, self.inner.put_part(data)))
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let what = || format!("complete multipart upload {}", self.location);
        within(self.limits.server_side(), what, self.inner.complete()).await
    }

    async fn abort(&mut self) -> Result<()> {
        let what = || format!("abort multipart upload {}", self.location);
        within(self.limits.timeout, what, self.inner.abort()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn a_request_without_an_answer_fails_at_its_deadline() {
        let started = tokio::time::Instant::now();
        let never = std::future::pending::<Result<()>>();
        let e = within(LIMIT, || "HEAD x".into(), never).await.unwrap_err();
        assert_eq!(started.elapsed(), LIMIT);
        assert!(e.to_string().contains("HEAD x: no answer"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_stream_ends_with_an_error_after_the_idle_limit() {
        let first = futures_util::stream::iter([Ok(1)]);
        let stalled = first.chain(futures_util::stream::pending()).boxed();
        let mut s = idle_limited(stalled, LIMIT, "GET x".into());
        assert_eq!(s.next().await.unwrap().unwrap(), 1);
        let started = tokio::time::Instant::now();
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(started.elapsed(), LIMIT);
        assert!(e.to_string().contains("GET x stalled"), "{e}");
        assert!(s.next().await.is_none(), "the error ends the stream");
        assert!(s.next().await.is_none(), "and it stays ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_consumer_is_not_a_stall() {
        let s = futures_util::stream::iter([Ok(1), Ok(2)]).boxed();
        let mut s = idle_limited(s, LIMIT, "GET x".into());
        assert_eq!(s.next().await.unwrap().unwrap(), 1);
        tokio::time::sleep(LIMIT * 3).await; // the client reads slowly
        assert_eq!(s.next().await.unwrap().unwrap(), 2);
    }

    #[test]
    fn bodies_and_server_side_work_get_longer_deadlines() {
        let l = Limits { timeout: LIMIT };
        assert_eq!(l.sending(100), LIMIT);
        assert_eq!(l.sending(8 << 20), LIMIT + Duration::from_secs(8));
        assert_eq!(l.server_side(), LIMIT * 10);
    }
}
