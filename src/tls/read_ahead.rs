//! A read-ahead buffer between the socket and rustls.
//!
//! rustls asks its transport for little at a time: at most what completes one TLS record
//! (about 16 KiB), and often only 4 KiB. Over a fast link a TLS upload then costs one or
//! more `recvmsg` calls, each with its trip through the reactor, for every 16 KiB of
//! body. `ReadAhead` reads up to `READ_AHEAD` bytes per call when rustls asks for less,
//! and serves rustls's small reads from memory: one extra copy, which costs far less than
//! the calls it saves.
//!
//! The buffer exists only while data streams in. A read that brings in less than a TLS
//! record says the connection may be trading small requests and replies (or idling), but
//! within a stream small reads come too: curl sends each 16 KiB HTTP/2 DATA frame as two
//! records, the second of 9 bytes. So the buffer is freed only when a short read is
//! followed by a read that finds nothing: idle connections hold nothing, and a stream keeps
//! its one buffer. The buffer is never zeroed: the socket fills it, and only what it filled
//! is handed out.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one read of the socket may bring in.
const READ_AHEAD: usize = 256 * 1024;
/// A read smaller than this (a TLS record's worth) says the connection is not streaming.
const STREAMING: usize = 16 * 1024;

pub struct ReadAhead<S> {
    inner: S,
    /// What the last read of the socket brought in; no allocation between streams.
    buf: Vec<u8>,
    /// `buf[pos..]` is read from the socket but not yet handed out.
    pos: usize,
    /// The last read of the socket was short: if the next finds nothing, free the buffer.
    short: bool,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
            short: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> ReadAhead<S> {
    /// Refills the drained buffer with one read of the socket.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.buf.clear();
        self.pos = 0;
        self.buf.reserve_exact(READ_AHEAD);
        let mut fill = ReadBuf::uninit(&mut self.buf.spare_capacity_mut()[..READ_AHEAD]);
        let polled = Pin::new(&mut self.inner).poll_read(cx, &mut fill);
        let n = fill.filled().len();
        // SAFETY: the first `n` bytes of the spare capacity were filled by the read
        // (`ReadBuf` tracks that), and `n <= READ_AHEAD <= capacity`.
        unsafe { self.buf.set_len(n) };
        if polled.is_pending() && self.short {
            self.buf = Vec::new(); // quiet after a short read: hold nothing
        }
        ready!(polled)?;
        self.short = n < STREAMING;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.buf.len() {
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            ready!(this.fill(cx))?;
        }
        let n = out.remaining().min(this.buf.len() - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the reads that reach the transport.
    struct Counting<R> {
        inner: R,
        reads: usize,
    }

    impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.reads += 1;
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    #[tokio::test]
    async fn small_reads_of_a_stream_are_served_from_one_big_read() {
        let data: Vec<u8> = (0..READ_AHEAD as u32).map(|i| i as u8).collect();
        let mut r = ReadAhead::new(Counting {
            inner: &data[..],
            reads: 0,
        });
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        loop {
            let n = r.read(&mut piece).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, data);
        // One read filled the buffer, one more saw the end; not one per 4 KiB.
        assert_eq!(r.inner.reads, 2);
    }

    /// Hands out the chunks it was given, one per read, then has nothing (`Pending`), as a
    /// socket does once the client has sent everything so far.
    struct Arrivals(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Arrivals {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.pop_front() {
                Some(chunk) => {
                    buf.put_slice(&chunk);
                    Poll::Ready(Ok(()))
                }
                None => Poll::Pending,
            }
        }
    }

    /// Reads in rustls's 4 KiB pieces until the transport has nothing more.
    async fn read_what_arrived<S: AsyncRead + Unpin>(r: &mut ReadAhead<S>) -> Vec<u8> {
        use futures_util::FutureExt;
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        while let Some(n) = r.read(&mut piece).now_or_never() {
            got.extend_from_slice(&piece[..n.unwrap()]);
        }
        got
    }

    /// curl's HTTP/2 uploads send each 16 KiB DATA frame as two TLS records, the second
    /// of 9 bytes, so reads of a stream alternate between a record and a few bytes. The
    /// buffer must survive those: reallocating 256 KiB after every tiny read cost more
    /// CPU than the copies it saves (`perf`: memset, malloc).
    #[tokio::test]
    async fn tiny_reads_within_a_stream_keep_the_buffer() {
        let mut r = ReadAhead::new(Arrivals(
            [vec![1u8; 16_406], vec![2u8; 31], vec![3u8; 16_406]].into(),
        ));
        let mut piece = [0u8; 4096];
        let mut got = Vec::new();
        while got.len() < 16_406 + 31 {
            let n = r.read(&mut piece).await.unwrap();
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(
            r.buf.capacity(),
            READ_AHEAD,
            "the tiny read freed the buffer"
        );
        got.extend(read_what_arrived(&mut r).await);
        assert_eq!(got.len(), 2 * 16_406 + 31);
        assert!(got[16_406..16_437].iter().all(|&b| b == 2));
    }

    /// Once a short read is followed by silence, the connection is trading requests and
    /// replies or idling: it keeps no buffer.
    #[tokio::test]
    async fn a_short_read_then_silence_frees_the_buffer() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut r = ReadAhead::new(server);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(read_what_arrived(&mut r).await, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.buf.capacity(), 0, "an idle connection keeps no buffer");
    }

    #[tokio::test]
    async fn large_reads_bypass_the_buffer() {
        let data = vec![7u8; 2 * READ_AHEAD];
        let mut r = ReadAhead::new(&data[..]);
        let mut big = vec![0u8; READ_AHEAD];
        r.read_exact(&mut big).await.unwrap();
        assert!(big.iter().all(|&b| b == 7));
        assert_eq!(r.buf.capacity(), 0);
    }
}
