//! Moving blob bytes from files to the network without holding a blob in memory (the
//! write side, network to file, is `append.rs`).
//!
//! File I/O is blocking, so each chunk is read or written on tokio's blocking pool. A
//! transfer never parks a blocking thread while it waits for the network: threads are
//! taken per chunk, so thousands of slow clients cannot exhaust the pool.

use std::fs::File;
use std::io::{self, Read};

use bytes::Bytes;
use sha2::{Digest as _, Sha256, Sha512};
use tokio::task::{spawn_blocking, JoinHandle};

use crate::registry::reference::{Algorithm, Digest};
use crate::registry::storage::ByteStream;

/// Chunk size for reads: large enough that the per-chunk hop to the blocking pool is cheap,
/// small enough that many parallel downloads stay within a few MiB of memory.
const READ_CHUNK: u64 = 512 * 1024;
/// Read size when hashing a file from disk.
const HASH_READ: usize = 1024 * 1024;

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

/// Hashes a whole file from disk (blocking). Used when no streamed hash state is at hand:
/// after a restart, or for sha512.
pub fn hash_file(file: &mut File, algorithm: Algorithm) -> io::Result<Digest> {
    fn run<D: sha2::Digest>(file: &mut File, mut h: D) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; HASH_READ];
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
