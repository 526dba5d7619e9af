//! A read-ahead buffer between the socket and rustls.
//!
//! rustls asks its transport for little at a time: at most what completes one TLS record
//! (about 16 KiB), and often only 4 KiB. Over a fast link a TLS upload then costs one or
//! more `recvmsg` calls, each with its trip through the reactor, for every 16 KiB of
//! body. `ReadAhead` reads up to `READ_AHEAD` bytes per call when rustls asks for less,
//! and serves rustls's small reads from memory: one extra copy, which costs far less than
//! the calls it saves.
//!
//! The buffer exists only while data streams in. When a read brings in less than a TLS
//! record, the connection is trading small requests and replies (or idling), so the buffer
//! is freed once it has been handed out: idle connections hold nothing.

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
    buf: Vec<u8>,
    /// `buf[pos..end]` is read from the socket but not yet handed out.
    pos: usize,
    end: usize,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
            end: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.end {
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.buf.is_empty() {
                this.buf = vec![0; READ_AHEAD];
            }
            let mut fill = ReadBuf::new(&mut this.buf);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut fill))?;
            this.pos = 0;
            this.end = fill.filled().len();
        }
        let n = out.remaining().min(this.end - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        if this.pos == this.end && this.end < STREAMING {
            this.buf = Vec::new();
            (this.pos, this.end) = (0, 0);
        }
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

    #[tokio::test]
    async fn a_drained_short_read_frees_the_buffer() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut r = ReadAhead::new(server);
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut piece = [0u8; 4096];
        let n = r.read(&mut piece).await.unwrap();
        assert_eq!(&piece[..n], b"GET / HTTP/1.1\r\n\r\n");
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
