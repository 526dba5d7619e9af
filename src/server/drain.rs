//! Responses sent before the request body was read (401 before the body arrived, 404 for
//! an unknown upload, 413, 416), for every handler at once.
//!
//! Go clients (docker, containerd, podman, skopeo) reuse a keep-alive connection once they
//! have written the body. If the server answered early and then closed the connection
//! because part of the body was still unread, the client's next request on it fails with
//! `EOF`. So, on HTTP/1.x, when the handler let go of a body it had not read to the end,
//! the rest is read and discarded, up to [`DRAIN_LIMIT`] within [`DRAIN_DEADLINE`], before
//! the answer goes out; a body that is larger or slower gets `Connection: close` on the
//! answer instead, so the client knows not to reuse the connection. On h2 a dropped body
//! resets only its stream, and the connection stays usable.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, EXPECT};
use http::{HeaderValue, Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

/// How much of an unread body is read and discarded to keep the connection.
pub const DRAIN_LIMIT: u64 = 1024 * 1024;
/// How long the rest of a body may take to arrive before the connection is given up.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// Where a request body that was dropped unfinished is handed back.
type Slot<B> = Arc<Mutex<Option<B>>>;

/// A request body that, when dropped before its end, hands itself back through its slot.
pub struct Tracked<B> {
    inner: Option<B>,
    finished: bool,
    slot: Slot<B>,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        // After an error the connection is broken anyway: nothing to drain.
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl<B> Drop for Tracked<B> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(inner) = self.inner.take() {
            *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(inner);
        }
    }
}

/// Runs `handle` on the request, then makes sure an answer given before the body was read
/// leaves the connection either usable or marked `Connection: close`.
pub async fn answer<B, F, Fut, R>(req: Request<B>, handle: F) -> Response<R>
where
    B: Body<Data = Bytes> + Unpin,
    F: FnOnce(Request<Tracked<B>>) -> Fut,
    Fut: std::future::Future<Output = Response<R>>,
{
    let h1 = req.version() <= Version::HTTP_11;
    // The client waits for `100 Continue` before it sends the body: reading would ask
    // for a body nobody needs, so such a connection is closed instead.
    let awaits_continue = req.headers().contains_key(EXPECT);
    let slot: Slot<B> = Arc::new(Mutex::new(None));
    let req = req.map(|inner| Tracked {
        inner: Some(inner),
        finished: false,
        slot: slot.clone(),
    });
    let mut response = handle(req).await;
    let unread = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(unread) = unread else {
        return response; // read to the end, still being read, or never there
    };
    if !h1 || unread.is_end_stream() {
        return response;
    }
    if awaits_continue || !drain(unread, DRAIN_LIMIT, DRAIN_DEADLINE).await {
        tracing::debug!("request body left unread; closing the connection after the answer");
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads and discards the rest of `body`; true when it ended within `limit` bytes and
/// `deadline`.
async fn drain<B>(mut body: B, limit: u64, deadline: Duration) -> bool
where
    B: Body<Data = Bytes> + Unpin,
{
    if body.size_hint().lower() > limit {
        return false; // announced as larger: no use reading part of it
    }
    let read_all = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > limit {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(deadline, read_all)
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn request<B>(body: B) -> Request<B> {
        Request::builder()
            .method("PATCH")
            .uri("/x")
            .body(body)
            .unwrap()
    }

    fn closes<R>(r: &Response<R>) -> bool {
        r.headers().get(CONNECTION).is_some_and(|v| v == "close")
    }

    #[tokio::test]
    async fn an_unread_small_body_is_drained_and_the_connection_kept() {
        let r = answer(
            request(Full::new(Bytes::from(vec![1u8; 1000]))),
            |req| async move {
                drop(req);
                Response::new(())
            },
        )
        .await;
        assert!(!closes(&r));
    }

    #[tokio::test]
    async fn a_body_read_to_the_end_needs_nothing() {
        let r = answer(
            request(Full::new(Bytes::from_static(b"abc"))),
            |req| async move {
                let _ = req.into_body().collect().await;
                Response::new(())
            },
        )
        .await;
        assert!(!closes(&r));
    }

    #[tokio::test]
    async fn a_large_body_closes_the_connection() {
        let big = Full::new(Bytes::from(vec![0u8; DRAIN_LIMIT as usize + 1]));
        let r = answer(request(big), |req| async move {
            drop(req);
            Response::new(())
        })
        .await;
        assert!(closes(&r));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_closes_the_connection() {
        let endless = StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, std::io::Error>,
        >());
        let r = answer(request(endless), |req| async move {
            drop(req);
            Response::new(())
        })
        .await;
        assert!(closes(&r));
    }

    #[tokio::test]
    async fn a_client_waiting_for_100_continue_gets_close() {
        let mut req = request(Full::new(Bytes::from_static(b"abc")));
        req.headers_mut()
            .insert(EXPECT, HeaderValue::from_static("100-continue"));
        let r = answer(req, |req| async move {
            drop(req);
            Response::new(())
        })
        .await;
        assert!(closes(&r));
    }
}
