//! Deadlines for a connection with no request in progress, on HTTP/1.1 and h2 alike.
//!
//! A connection that sends nothing still holds a file descriptor, so every quiet phase has
//! a deadline: from accept (or the end of the TLS handshake) until the first request's
//! headers are complete, `header_read_timeout`; between requests, `keepalive_timeout`
//! until the next request's first byte, then `header_read_timeout` for its headers. hyper
//! cannot do this itself: hyper-util's protocol detection reads without a deadline, h2 has
//! no idle timeout, and h1's header timer would cut keep-alive at the header deadline.
//!
//! [`Activity`] is shared by the connection's IO ([`Watched`] notes a request's first
//! byte), its requests ([`Busy`], held from the call until the response body is done) and
//! [`expired`], which completes when a deadline passes with no request in progress.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

/// What the deadlines watch on one connection.
pub struct Activity {
    /// Requests in progress, and begun in all.
    load: watch::Sender<Load>,
    /// Bumped when a byte arrives while `armed`, i.e. the next request has begun.
    arrivals: watch::Sender<u64>,
    armed: AtomicBool,
    /// Set once an h2 request came: its control frames (SETTINGS, PING and WINDOW_UPDATE
    /// acknowledgements) are bytes too, but not the start of a request.
    multiplexed: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            load: watch::Sender::new(Load::default()),
            arrivals: watch::Sender::new(0),
            armed: AtomicBool::new(false),
            multiplexed: AtomicBool::new(false),
        })
    }

    fn byte_arrived(&self) {
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::Relaxed) {
            self.arrivals.send_modify(|n| *n += 1);
        }
    }
}

/// Counted, not flagged: a request may begin and end between two looks of [`expired`].
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    in_flight: usize,
    begun: u64,
}

/// A request in progress; dropping it ends it.
pub struct Busy(Arc<Activity>);

impl Busy {
    pub fn start(activity: &Arc<Activity>, version: http::Version) -> Self {
        if version == http::Version::HTTP_2 {
            activity.multiplexed.store(true, Ordering::Relaxed);
        }
        activity.load.send_modify(|l| {
            l.in_flight += 1;
            l.begun += 1;
        });
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0
            .load
            .send_modify(|l| l.in_flight = l.in_flight.saturating_sub(1));
    }
}

/// A response body that keeps its request [`Busy`] until it has been sent (or dropped).
pub struct BusyBody<B> {
    inner: B,
    _busy: Busy,
}

impl<B> BusyBody<B> {
    pub fn new(inner: B, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's IO, noting when bytes arrive.
pub struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I> Watched<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.byte_arrived();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The two deadlines of a quiet connection.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub header_read: Duration,
    pub keepalive: Duration,
}

/// Completes when the connection has been quiet past its deadline; never while a request
/// is in progress.
pub async fn expired(activity: &Activity, deadlines: Deadlines) {
    let mut load = activity.load.subscribe();
    let mut arrivals = activity.arrivals.subscribe();
    loop {
        let Ok(quiet) = load.wait_for(|l| l.in_flight == 0).await.map(|l| *l) else {
            return;
        };
        arrivals.borrow_and_update();
        activity.armed.store(true, Ordering::Relaxed);
        let idle_from = Instant::now();
        let served = quiet.begun > 0;
        let begins = |l: &Load| l.in_flight > 0 || l.begun != quiet.begun;
        // Waiting for the next request to begin.
        let wait = match served {
            true => deadlines.keepalive,
            false => deadlines.header_read,
        };
        let by_bytes = !activity.multiplexed.load(Ordering::Relaxed);
        tokio::select! {
            _ = load.wait_for(begins) => continue,
            _ = arrivals.changed(), if by_bytes => {}
            _ = sleep_until(idle_from + wait) => return,
        }
        // Its first byte came: the headers have their own deadline (for the first
        // request, counted from the start).
        let until = match served {
            true => Instant::now() + deadlines.header_read,
            false => idle_from + deadlines.header_read,
        };
        tokio::select! {
            _ = load.wait_for(begins) => {}
            _ = sleep_until(until) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Deadlines = Deadlines {
        header_read: Duration::from_secs(10),
        keepalive: Duration::from_secs(60),
    };

    /// Runs `expired` in the background; returns when it completed, in seconds from now.
    fn watch(activity: &Arc<Activity>) -> tokio::task::JoinHandle<u64> {
        let (activity, started) = (activity.clone(), Instant::now());
        tokio::spawn(async move {
            expired(&activity, D).await;
            started.elapsed().as_secs()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_gets_the_header_deadline_from_the_start() {
        let a = Activity::new();
        assert_eq!(watch(&a).await.unwrap(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_request_trickling_in_still_ends_at_the_header_deadline() {
        let a = Activity::new();
        let w = watch(&a);
        tokio::time::sleep(Duration::from_secs(5)).await;
        a.byte_arrived();
        assert_eq!(w.await.unwrap(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_keepalive_deadline_applies() {
        let a = Activity::new();
        let w = watch(&a);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = Busy::start(&a, http::Version::HTTP_11);
        // A long request is never cut off.
        tokio::time::sleep(Duration::from_secs(500)).await;
        drop(busy);
        assert_eq!(w.await.unwrap(), 501 + 60);
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_request_gets_the_header_deadline_from_its_first_byte() {
        let a = Activity::new();
        let w = watch(&a);
        drop(Busy::start(&a, http::Version::HTTP_11));
        tokio::time::sleep(Duration::from_secs(30)).await;
        a.byte_arrived();
        assert_eq!(w.await.unwrap(), 30 + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn h2_control_frames_do_not_shorten_the_keepalive() {
        let a = Activity::new();
        let w = watch(&a);
        drop(Busy::start(&a, http::Version::HTTP_2));
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.byte_arrived(); // a PING acknowledgement
        assert_eq!(w.await.unwrap(), 60);
    }
}
