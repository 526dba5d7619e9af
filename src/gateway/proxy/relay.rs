//! Relaying the request body upstream while recording progress, so the response timeout
//! restarts while an upload moves, and a failing client is told apart from a failing upstream.

use super::Chain;
use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

/// A body passing through the proxy. Errors become `io::Error` (the one body type);
/// trailers end the body, because `Trailer` is stripped and HTTP/1 peers drop undeclared
/// trailers anyway. Size hints pass through, so known lengths stay known.
pub(super) struct Relay<B> {
    pub(super) inner: Pin<Box<B>>,
    pub(super) side: Side,
}

pub(super) enum Side {
    /// Every chunk the upstream takes is progress for the response timeout.
    Request(Arc<Progress>),
    /// The upstream's name, to log a body that breaks after the headers were passed on.
    Response(Arc<str>),
}

impl<B> http_body::Body for Relay<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: StdError + Send + Sync + 'static,
{
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let frame = match this.inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(frame) => frame,
        };
        if let Side::Request(progress) = &this.side {
            progress.touch();
        }
        match frame {
            None => Poll::Ready(None),
            Some(Ok(frame)) => Poll::Ready(frame.into_data().ok().map(|d| Ok(Frame::data(d)))),
            Some(Err(e)) => {
                match &this.side {
                    Side::Request(progress) => progress.fail(),
                    Side::Response(upstream) => tracing::warn!(
                        %upstream, error = %Chain(&e), "upstream response body failed"
                    ),
                }
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// When the request last made progress, and whether the client's body failed. Shared by
/// the request body (polled on hyper's connection task) and `wait_for_headers`.
pub(super) struct Progress {
    start: Instant,
    /// Nanoseconds after `start`.
    last: AtomicU64,
    client_failed: AtomicBool,
}

impl Progress {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            client_failed: AtomicBool::new(false),
        }
    }

    pub(super) fn touch(&self) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(nanos, Ordering::Relaxed);
    }

    pub(super) fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    pub(super) fn fail(&self) {
        self.client_failed.store(true, Ordering::Relaxed);
    }

    pub(super) fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }
}
