//! Appending a request body to an upload's data file, hashing it on the way.
//!
//! The body is cut into batches. Each batch is hashed on one blocking thread while the
//! batch before it is written on another and the next one arrives from the network, so
//! hashing, writing and reading overlap.
//!
//! Writes bypass the page cache (`O_DIRECT`) where the filesystem allows it. Copying a
//! body into the page cache cost as much CPU as hashing it (a quarter of a push's CPU
//! time, measured with `perf`), and the kernel then spent more writing those pages back.
//! A direct write needs a block-aligned buffer, so the hashing thread copies each piece of
//! the batch into one right after hashing it, while the piece is still in the CPU's cache:
//! copied on its own, a batch was read from memory a second time (an eighth of a push's
//! CPU time). Two such buffers take turns: one filling, one being written. The few bytes
//! at the end that do not fill a block are carried into the next buffer, and at the end of
//! the body go through the page cache; the next append starts by reading that block back,
//! so direct writes always start on a block. Where `O_DIRECT` is refused (tmpfs, some
//! network filesystems), the batches are written through the page cache as they arrived,
//! with writeback started every few MiB so the fsync that publishes a blob finds little
//! left to flush.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::task::{spawn_blocking, JoinHandle};

use crate::registry::storage::ByteStream;

/// Batch size: one batch is hashed while the one before it is written and the next one
/// arrives. Each batch costs two hand-offs to blocking threads and back (futex and epoll
/// wake-ups, ~12 k per GiB at 1 MiB, measured with `strace -c`); 2 MiB halves them. An
/// upload holds about three batches (one arriving, two in the aligned buffers).
const BATCH: usize = 2 * 1024 * 1024;
/// Direct writes start at, and are sized in, multiples of this. 4 KiB satisfies the
/// logical block size of every common device and filesystem.
const BLOCK: usize = 4096;
/// Hashed, then copied, this much at a time: small enough to stay in the CPU's cache
/// between the two.
const PIECE: usize = 64 * 1024;
/// Buffered writes: how much is written before the kernel is asked to start writing it
/// back.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// What [`append`] did.
pub struct Appended {
    /// The sha256 state after the appended bytes, when one was carried in.
    pub hasher: Option<Sha256>,
    pub written: u64,
    /// Set when the body broke off; everything before the break was written.
    pub body_error: Option<io::Error>,
}

/// An upload's data file, opened for appending (blocking).
pub struct Sink {
    file: File,
    end: u64,
    /// The same file opened with `O_DIRECT`, while the filesystem takes direct writes.
    direct: Option<File>,
    /// The aligned buffers not in use, when writes are direct (the first to be used last:
    /// it holds the bytes of `end`'s block already written).
    free: Vec<Staging>,
}

impl Sink {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let end = file.seek(SeekFrom::End(0))?;
        let (direct, free) = match open_direct(path) {
            Ok(d) => (Some(d), vec![Staging::empty(), Staging::at(&file, end)?]),
            Err(e) => {
                tracing::debug!(error = %e, "O_DIRECT refused; appending through the page cache");
                (None, Vec::new())
            }
        };
        Ok(Self {
            file,
            end,
            direct,
            free,
        })
    }

    /// The file's size before this append.
    pub fn len(&self) -> u64 {
        self.end
    }

    /// Writes a staged batch: an aligned buffer's whole blocks (the rest was carried into
    /// the next buffer), which is then free again, or the pieces as they arrived.
    fn write(&mut self, staged: Staged) -> io::Result<()> {
        match staged {
            Staged::Pieces(batch) => {
                write_buffered(&mut self.file, self.end, &batch)?;
                self.end += batch.iter().map(|b| b.len() as u64).sum::<u64>();
            }
            Staged::Aligned(mut staging) => {
                self.write_aligned(staging.held(), staging.base)?;
                staging.clear();
                self.free.push(staging);
            }
        }
        Ok(())
    }

    /// Writes the last staged batch, the bytes after its last whole block included.
    fn write_last(&mut self, staged: Staged) -> io::Result<()> {
        match staged {
            Staged::Pieces(_) => self.write(staged),
            Staged::Aligned(staging) => {
                let held = staging.held();
                let whole = held.len() - held.len() % BLOCK;
                self.write_aligned(&held[..whole], staging.base)?;
                self.file
                    .write_all_at(&held[whole..], staging.base + whole as u64)
            }
        }
    }

    /// Writes whole blocks at `at`, directly unless the filesystem refused it before.
    fn write_aligned(&mut self, bytes: &[u8], at: u64) -> io::Result<()> {
        if let Some(direct) = &self.direct {
            match direct.write_all_at(bytes, at) {
                Ok(()) => return Ok(()),
                // EINVAL: this filesystem wants another alignment after all. This buffer
                // and the rest go through the page cache (what was written is rewritten).
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!("O_DIRECT write refused; appending through the page cache");
                    self.direct = None;
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(bytes, at)?;
        let end = at + bytes.len() as u64;
        if end / WRITEBACK_EVERY > at / WRITEBACK_EVERY {
            start_writeback(&self.file, end - end % WRITEBACK_EVERY);
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A block-aligned buffer for direct writes: `len` bytes meant for the file at `base`, a
/// multiple of `BLOCK`.
struct Staging {
    mem: Vec<u8>,
    /// Where the aligned part of `mem` starts.
    start: usize,
    len: usize,
    base: u64,
}

impl Staging {
    /// Room for a batch after a partial block carried over.
    const CAPACITY: usize = BATCH + BLOCK;

    fn empty() -> Self {
        let mem = vec![0u8; Self::CAPACITY + BLOCK];
        let start = mem.as_ptr().align_offset(BLOCK);
        Self {
            mem,
            start,
            len: 0,
            base: 0,
        }
    }

    /// A buffer for appending at `end`, holding the bytes of `end`'s block already written.
    fn at(file: &File, end: u64) -> io::Result<Self> {
        let mut staging = Self::empty();
        staging.base = end - end % BLOCK as u64;
        staging.len = (end - staging.base) as usize;
        let (start, len) = (staging.start, staging.len);
        file.read_exact_at(&mut staging.mem[start..start + len], staging.base)?;
        Ok(staging)
    }

    fn held(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.len]
    }

    /// Empty, for the bytes after the ones it held.
    fn clear(&mut self) {
        self.base += self.len as u64;
        self.len = 0;
    }

    fn put(&mut self, piece: &[u8]) -> io::Result<()> {
        if self.len + piece.len() > Self::CAPACITY {
            return Err(io::Error::other("a batch overflowed its aligned buffer"));
        }
        let at = self.start + self.len;
        self.mem[at..at + piece.len()].copy_from_slice(piece);
        self.len += piece.len();
        Ok(())
    }

    /// Moves the bytes after the last whole block to the front of `next` (empty), which
    /// then continues where this buffer's whole blocks end.
    fn carry_tail(&mut self, next: &mut Staging) {
        let whole = self.len - self.len % BLOCK;
        let tail = self.len - whole;
        next.base = self.base + whole as u64;
        next.len = tail;
        let from = self.start + whole;
        next.mem[next.start..next.start + tail].copy_from_slice(&self.mem[from..from + tail]);
        self.len = whole;
    }
}

/// A batch on its way to the file.
enum Staged {
    /// As it arrived, for writes through the page cache.
    Pieces(Vec<Bytes>),
    /// Copied into an aligned buffer, for direct writes.
    Aligned(Staging),
}

/// Hashes a batch and, when writes are direct, copies it into `staging`: each piece right
/// after it was hashed, while it is in the CPU's cache.
fn stage(
    mut hasher: Option<Sha256>,
    batch: Vec<Bytes>,
    staging: Option<Staging>,
) -> io::Result<(Option<Sha256>, Staged)> {
    let Some(mut staging) = staging else {
        if let Some(h) = &mut hasher {
            batch.iter().for_each(|b| h.update(b));
        }
        return Ok((hasher, Staged::Pieces(batch)));
    };
    for piece in batch.iter().flat_map(|b| b.chunks(PIECE)) {
        if let Some(h) = &mut hasher {
            h.update(piece);
        }
        staging.put(piece)?;
    }
    Ok((hasher, Staged::Aligned(staging)))
}

/// Writes a batch at the file's position (its end, `end`), starting writeback of every
/// completed `WRITEBACK_EVERY` stretch.
fn write_buffered(file: &mut File, end: u64, batch: &[Bytes]) -> io::Result<()> {
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
        start_writeback(file, new_end - new_end % WRITEBACK_EVERY);
    }
    Ok(())
}

/// Asks the kernel to start writing the dirty pages of the last stretch before `end` to
/// disk, without waiting.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, end: u64) {
    use std::os::fd::AsRawFd;
    let from = end.saturating_sub(WRITEBACK_EVERY);
    // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open. It is a
    // hint: a failure changes nothing about correctness (the final fsync still runs).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (end - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _end: u64) {}

type Hashing = JoinHandle<io::Result<(Option<Sha256>, Option<Staged>)>>;

/// The two blocking steps a batch goes through: hashing (and staging), then writing.
struct Pipeline {
    hashing: Hashing,
    writing: JoinHandle<io::Result<Sink>>,
}

impl Pipeline {
    fn new(sink: Sink, hasher: Option<Sha256>) -> Self {
        Self {
            hashing: spawn_blocking(move || Ok((hasher, None))),
            writing: spawn_blocking(move || Ok(sink)),
        }
    }

    /// Once the previous batch is hashed and the one before it written: hands the
    /// previous one to the writing thread and `batch` to the hashing thread.
    async fn push(&mut self, batch: Vec<Bytes>) -> io::Result<()> {
        // Both are awaited before either's error is returned, so no write is still running
        // on the file when the caller hears of a failure.
        let hashed = (&mut self.hashing).await;
        let written = (&mut self.writing).await;
        let (hasher, mut staged) = hashed.map_err(io::Error::other)??;
        let mut sink = written.map_err(io::Error::other)??;
        // With direct writes, one buffer is free now (the other holds `staged`); its
        // partial last block moves on to the buffer `batch` is staged in.
        let mut next = sink.free.pop();
        if let (Some(Staged::Aligned(prev)), Some(next)) = (&mut staged, &mut next) {
            prev.carry_tail(next);
        }
        self.writing = spawn_blocking(move || {
            if let Some(staged) = staged {
                sink.write(staged)?;
            }
            Ok(sink)
        });
        self.hashing = spawn_blocking(move || {
            let (hasher, staged) = stage(hasher, batch, next)?;
            Ok((hasher, Some(staged)))
        });
        Ok(())
    }

    /// Writes the last batch; the hash state after it.
    async fn finish(self) -> io::Result<Option<Sha256>> {
        let hashed = self.hashing.await;
        let written = self.writing.await;
        let (hasher, staged) = hashed.map_err(io::Error::other)??;
        let mut sink = written.map_err(io::Error::other)??;
        if let Some(staged) = staged {
            spawn_blocking(move || sink.write_last(staged))
                .await
                .map_err(io::Error::other)??;
        }
        Ok(hasher)
    }
}

/// Appends a body to `sink`, updating `hasher` on the way.
pub async fn append(
    sink: Sink,
    hasher: Option<Sha256>,
    mut body: ByteStream,
) -> io::Result<Appended> {
    let mut pipeline = Pipeline::new(sink, hasher);
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut written = 0u64;
    let mut body_error = None;
    loop {
        match body.next().await {
            Some(Ok(mut bytes)) => {
                // Batches are cut at exactly BATCH bytes, the size of an aligned buffer.
                while batched + bytes.len() >= BATCH {
                    batch.push(bytes.split_to(BATCH - batched));
                    pipeline.push(std::mem::take(&mut batch)).await?;
                    written += BATCH as u64;
                    batched = 0;
                }
                if !bytes.is_empty() {
                    batched += bytes.len();
                    batch.push(bytes);
                }
                continue;
            }
            Some(Err(e)) => body_error = Some(e),
            None => {}
        }
        break;
    }
    if batched > 0 {
        pipeline.push(batch).await?;
        written += batched as u64;
    }
    let hasher = pipeline.finish().await?;
    Ok(Appended {
        hasher,
        written,
        body_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(chunks: Vec<Vec<u8>>) -> ByteStream {
        Box::pin(futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok(Bytes::from(c))),
        ))
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Appends of awkward sizes (tiny, one byte short of or past a block, more than a
    /// batch), each through a fresh `Sink`, as successive PATCHes would.
    async fn appends_reassemble(direct: bool, piece: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::write(&path, b"").unwrap();
        let mut all = Vec::new();
        let mut hasher = Some(Sha256::new());
        let sizes = [1, 4095, 4097, BATCH + 3, 10, 3 * BATCH - 1, BLOCK];
        for (i, n) in sizes.into_iter().enumerate() {
            let data = pattern(n, i as u8);
            let mut sink = Sink::open(&path).unwrap();
            assert_eq!(sink.len(), all.len() as u64);
            if !direct {
                sink.direct = None;
                sink.free.clear();
            }
            // Split the chunk the way a network would: pieces of a size and odd bits.
            let pieces = data.chunks(piece).map(<[u8]>::to_vec).collect();
            let done = append(sink, hasher, body(pieces)).await.unwrap();
            assert_eq!(done.written, n as u64);
            hasher = done.hasher;
            all.extend_from_slice(&data);
        }
        assert!(std::fs::read(&path).unwrap() == all, "file content differs");
        assert_eq!(
            hasher.unwrap().finalize().to_vec(),
            Sha256::digest(&all).to_vec()
        );
    }

    #[tokio::test]
    async fn direct_appends_reassemble_byte_exact() {
        appends_reassemble(true, 65_536 + 7).await;
    }

    #[tokio::test]
    async fn buffered_appends_reassemble_byte_exact() {
        appends_reassemble(false, 65_536 + 7).await;
    }

    /// hyper hands over up to its read buffer's size (512 KiB) at a time; other bodies
    /// may come in one piece larger than several batches.
    #[tokio::test]
    async fn large_pieces_are_cut_into_batches() {
        appends_reassemble(true, 512 * 1024 + 1).await;
        appends_reassemble(true, 5 * BATCH + 3).await;
        appends_reassemble(false, 5 * BATCH + 3).await;
    }
}
