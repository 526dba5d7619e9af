//! Moving blob bytes between the network and files without holding a blob in memory.
//!
//! File I/O is blocking, so each chunk is read or written on tokio's blocking pool. A
//! transfer never parks a blocking thread while it waits for the network: threads are
//! taken per chunk, so thousands of slow clients cannot exhaust the pool.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256, Sha512};
use tokio::task::{spawn_blocking, JoinHandle};

use crate::registry::reference::{Algorithm, Digest};
use crate::registry::storage::ByteStream;

/// Chunk size for reads: large enough that the per-chunk hop to the blocking pool is cheap,
/// small enough that many parallel downloads stay within a few MiB of memory.
const READ_CHUNK: u64 = 512 * 1024;
/// Batch size for writes: one batch is hashed and written while the next one arrives.
const WRITE_BATCH: usize = 1024 * 1024;
/// How much is written before the kernel is asked to start writing it back, so the fsync
/// that publishes a blob finds little left to flush.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Streams `len` bytes of a blob file from `offset`, one chunk read ahead on the blocking
/// pool while the previous one goes out on the socket.
///
/// Chunks are positioned reads (`pread`) into buffers of their own, not memory maps: a blob
/// file truncated under a mapping (a disk repair, an operator's `truncate`, a filesystem
/// error) raises SIGBUS when the bytes are copied in user space (TLS encrypts them there),
/// and that ends the whole process. A short read here fails this download only.
pub fn read_range(file: File, offset: u64, len: u64) -> ByteStream {
    let file = std::sync::Arc::new(file);
    let end = offset.saturating_add(len);
    let first = read_chunk(file, offset, end);
    Box::pin(futures_util::stream::try_unfold(
        first,
        |pending| async move {
            let Some(pending) = pending else {
                return Ok(None);
            };
            let (file, chunk, pos, end) = pending.await.map_err(io::Error::other)??;
            let next = read_chunk(file, pos, end);
            Ok(Some((chunk, next)))
        },
    ))
}

type PendingChunk = JoinHandle<io::Result<(std::sync::Arc<File>, Bytes, u64, u64)>>;

/// Starts reading the next chunk of at most `READ_CHUNK` bytes; `None` when nothing is left.
fn read_chunk(file: std::sync::Arc<File>, pos: u64, end: u64) -> Option<PendingChunk> {
    use std::os::unix::fs::FileExt;
    if pos >= end {
        return None;
    }
    Some(spawn_blocking(move || {
        let want = (end - pos).min(READ_CHUNK);
        let mut buf = vec![0u8; want as usize];
        // A file shorter than its published size ends with UnexpectedEof: this body fails.
        file.read_exact_at(&mut buf, pos)?;
        Ok((file, Bytes::from(buf), pos + want, end))
    }))
}

/// What [`append`] did.
pub struct Appended {
    /// The sha256 state after the appended bytes, when one was carried in.
    pub hasher: Option<Sha256>,
    pub written: u64,
    /// Set when the body broke off; everything before the break was written.
    pub body_error: Option<io::Error>,
}

/// Appends a body to `file` (opened for append), updating `hasher` on the way. Each batch
/// is hashed and written on two blocking threads at once while the next batch arrives.
pub async fn append(
    file: File,
    hasher: Option<Sha256>,
    mut body: ByteStream,
) -> io::Result<Appended> {
    let start = file.metadata()?.len();
    let mut hashing: JoinHandle<Option<Sha256>> = spawn_blocking(move || hasher);
    let mut writing: JoinHandle<io::Result<(File, u64)>> =
        spawn_blocking(move || Ok((file, start)));
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut written = 0u64;
    let mut body_error = None;
    loop {
        let done = match body.next().await {
            Some(Ok(bytes)) => {
                batched += bytes.len();
                batch.push(bytes);
                if batched < WRITE_BATCH {
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
        if batched > 0 {
            let (file, end) = writing.await.map_err(io::Error::other)??;
            let hasher = hashing.await.map_err(io::Error::other)?;
            let for_hash = batch.clone();
            hashing = spawn_blocking(move || {
                hasher.map(|mut h| {
                    for b in &for_hash {
                        h.update(b);
                    }
                    h
                })
            });
            let for_write = std::mem::take(&mut batch);
            writing = spawn_blocking(move || write_batch(file, end, &for_write));
            written += batched as u64;
            batched = 0;
        }
        if done {
            break;
        }
    }
    writing.await.map_err(io::Error::other)??;
    let hasher = hashing.await.map_err(io::Error::other)?;
    Ok(Appended {
        hasher,
        written,
        body_error,
    })
}

/// Writes a batch at the end of the file (which ends at `end`), starting writeback of
/// every completed `WRITEBACK_EVERY` stretch.
fn write_batch(mut file: File, end: u64, batch: &[Bytes]) -> io::Result<(File, u64)> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = file.write_vectored(rest)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    let new_end = end + batch.iter().map(|b| b.len() as u64).sum::<u64>();
    if new_end / WRITEBACK_EVERY > end / WRITEBACK_EVERY {
        start_writeback(&file, new_end);
    }
    Ok((file, new_end))
}

/// Asks the kernel to start writing dirty pages up to `end` to disk, without waiting.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, end: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open. It is a
    // hint: a failure changes nothing about correctness (the final fsync still runs).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            0,
            end as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _end: u64) {}

/// Hashes a whole file from disk (blocking). Used when no streamed hash state is at hand:
/// after a restart, or for sha512.
pub fn hash_file(file: &mut File, algorithm: Algorithm) -> io::Result<Digest> {
    fn run<D: sha2::Digest>(file: &mut File, mut h: D) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; WRITE_BATCH];
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
