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
//!
//! Requests and bytes only update [`Activity`]'s state; nothing wakes the watcher. It runs
//! in the connection's task, so a wake per request would poll the whole connection (and
//! try its socket) once more per request: on small requests that cost about a sixth of the
//! throughput. The watcher instead looks at the state when its timer fires, at least once
//! per [`Deadlines::look_every`], which is often enough that a request's first byte, the
//! one event that brings a deadline forward, is never seen late.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep_until, Instant};

/// What the deadlines watch on one connection.
pub struct Activity {
    /// When the connection began serving: the first request's header deadline counts from here.
    opened: Instant,
    /// Taken twice per request (begin, end) and once per first byte, never contended for
    /// long: cheaper than a wake, and simpler to keep consistent than separate atomics.
    state: Mutex<State>,
    /// Set while the connection is quiet and no byte has come since: only the first byte of
    /// the next request takes the lock.
    armed: AtomicBool,
    /// Set once an h2 request came: its control frames (SETTINGS, PING and WINDOW_UPDATE
    /// acknowledgements) are bytes too, but not the start of a request.
    multiplexed: AtomicBool,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// Whether any request began: the first one gets the header deadline from `opened`.
    served: bool,
    /// When the last request in progress ended.
    quiet_since: Instant,
    /// The first byte after `quiet_since`, i.e. the next request has begun arriving.
    arrived: Option<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        let opened = Instant::now();
        Arc::new(Self {
            opened,
            state: Mutex::new(State {
                in_flight: 0,
                served: false,
                quiet_since: opened,
                arrived: None,
            }),
            armed: AtomicBool::new(true),
            multiplexed: AtomicBool::new(false),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn byte_arrived(&self) {
        if self.armed.load(Ordering::Relaxed) && self.armed.swap(false, Ordering::Relaxed) {
            let mut state = self.state();
            if state.in_flight == 0 && state.arrived.is_none() {
                state.arrived = Some(Instant::now());
            }
        }
    }

    /// When the connection may be closed, or `None` while a request is in progress.
    fn deadline(&self, deadlines: Deadlines) -> Option<Instant> {
        let state = self.state();
        if state.in_flight > 0 {
            return None;
        }
        if !state.served {
            // For the first request, bytes do not extend anything: the headers must be
            // complete by the header deadline from the start.
            return Some(self.opened + deadlines.header_read);
        }
        match state.arrived {
            Some(first_byte) if !self.multiplexed.load(Ordering::Relaxed) => {
                Some(first_byte + deadlines.header_read)
            }
            _ => Some(state.quiet_since + deadlines.keepalive),
        }
    }
}

/// A request in progress; dropping it ends it.
pub struct Busy(Arc<Activity>);

impl Busy {
    pub fn start(activity: &Arc<Activity>, version: http::Version) -> Self {
        if version == http::Version::HTTP_2 {
            activity.multiplexed.store(true, Ordering::Relaxed);
        }
        let mut state = activity.state();
        state.in_flight += 1;
        state.served = true;
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.quiet_since = Instant::now();
            state.arrived = None;
            self.0.armed.store(true, Ordering::Relaxed);
        }
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

impl Deadlines {
    /// How long the watcher may sleep without looking. A first byte brings the deadline
    /// forward to `header_read` after it, so looking at least that often never misses it.
    fn look_every(self) -> Duration {
        self.header_read
            .min(self.keepalive)
            .max(Duration::from_millis(1))
    }
}

/// Completes when the connection has been quiet past its deadline; never while a request
/// is in progress.
pub async fn expired(activity: &Activity, deadlines: Deadlines) {
    loop {
        let now = Instant::now();
        let next_look = now + deadlines.look_every();
        match activity.deadline(deadlines) {
            Some(deadline) if deadline <= now => return,
            Some(deadline) => sleep_until(deadline.min(next_look)).await,
            None => sleep_until(next_look).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;

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

    /// Counts how often the deadline watcher is woken.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The watcher runs in the connection's task: waking it per request would poll the whole
    /// connection (and its socket) once more per request. Requests and their bytes only
    /// update counters; the watcher looks at them when its timer fires.
    #[tokio::test(start_paused = true)]
    async fn requests_do_not_wake_the_watcher() {
        let a = Activity::new();
        let wakes = Arc::new(Wakes(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut watcher = std::pin::pin!(expired(&a, D));
        assert!(watcher.as_mut().poll(&mut cx).is_pending());
        for _ in 0..100 {
            a.byte_arrived();
            let busy = Busy::start(&a, http::Version::HTTP_11);
            drop(busy);
            assert!(watcher.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0);
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
