//! Moving blob bytes between the network and files without holding a blob in memory.
//!
//! File I/O is blocking, so each chunk is read or written on tokio's blocking pool. A
//! transfer never parks a blocking thread while it waits for the network: threads are
//! taken per chunk, so thousands of slow clients cannot exhaust the pool.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256, Sha512};

use crate::registry::reference::{Algorithm, Digest};
use crate::registry::storage::ByteStream;

/// Chunk size for reads: large enough that the per-chunk hop to the blocking pool is cheap,
/// small enough that many parallel downloads stay within a few MiB of memory.
const READ_CHUNK: usize = 256 * 1024;
/// Chunk size for writes; one chunk is hashed and written while the next one arrives.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Streams `len` bytes of `file` from `offset`.
pub fn read_range(file: File, offset: u64, len: u64) -> ByteStream {
    let file = Arc::new(file);
    let end = offset + len;
    Box::pin(futures_util::stream::try_unfold(offset, move |pos| {
        let file = file.clone();
        async move {
            if pos >= end {
                return Ok(None);
            }
            let want = (end - pos).min(READ_CHUNK as u64) as usize;
            let chunk = tokio::task::spawn_blocking(move || read_exact_at(&file, pos, want))
                .await
                .map_err(io::Error::other)??;
            Ok(Some((chunk, pos + want as u64)))
        }
    }))
}

fn read_exact_at(file: &File, pos: u64, want: usize) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(want);
    file.read_exact_at(&mut buf, pos)?;
    Ok(buf.freeze())
}

/// What [`append`] did.
pub struct Appended {
    /// The sha256 state after the appended bytes, when one was carried in.
    pub hasher: Option<Sha256>,
    pub written: u64,
    /// Set when the body broke off; everything before the break was written.
    pub body_error: Option<io::Error>,
}

/// Appends a body to `file` (positioned at its end), updating `hasher` on the way. Receiving
/// the next chunk overlaps with hashing and writing the previous one.
pub async fn append(
    file: File,
    hasher: Option<Sha256>,
    mut body: ByteStream,
) -> io::Result<Appended> {
    let mut state = Some((file, hasher));
    let mut inflight: Option<tokio::task::JoinHandle<io::Result<(File, Option<Sha256>)>>> = None;
    let mut buf = BytesMut::with_capacity(WRITE_CHUNK);
    let mut written = 0u64;
    let mut body_error = None;
    loop {
        let done = match body.next().await {
            Some(Ok(bytes)) => {
                buf.extend_from_slice(&bytes);
                if buf.len() < WRITE_CHUNK {
                    continue;
                }
                false
            }
            Some(Err(e)) => {
                body_error = Some(e);
                true
            }
            None => true,
        };
        if let Some(task) = inflight.take() {
            state = Some(task.await.map_err(io::Error::other)??);
        }
        let chunk = std::mem::replace(&mut buf, BytesMut::with_capacity(WRITE_CHUNK)).freeze();
        if !chunk.is_empty() {
            let (mut file, mut hasher) = state.take().ok_or_else(missing_state)?;
            written += chunk.len() as u64;
            inflight = Some(tokio::task::spawn_blocking(move || {
                if let Some(h) = hasher.as_mut() {
                    h.update(&chunk);
                }
                file.write_all(&chunk)?;
                Ok((file, hasher))
            }));
        }
        if done {
            break;
        }
    }
    if let Some(task) = inflight.take() {
        state = Some(task.await.map_err(io::Error::other)??);
    }
    let (_file, hasher) = state.ok_or_else(missing_state)?;
    Ok(Appended {
        hasher,
        written,
        body_error,
    })
}

fn missing_state() -> io::Error {
    io::Error::other("append pipeline lost its file handle")
}

/// Hashes a whole file from disk (blocking). Used when no streamed hash state is at hand:
/// after a restart, or for sha512.
pub fn hash_file(file: &mut File, algorithm: Algorithm) -> io::Result<Digest> {
    fn run<D: sha2::Digest>(file: &mut File, mut h: D) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; WRITE_CHUNK];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(h.finalize().to_vec());
            }
            h.update(&buf[..n]);
        }
    }
    let hash = match algorithm {
        Algorithm::Sha256 => run(file, Sha256::new())?,
        Algorithm::Sha512 => run(file, Sha512::new())?,
    };
    Ok(Digest::from_hash(algorithm, &hash))
}
