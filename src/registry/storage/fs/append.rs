//! Appending a request body to an upload's data file, hashing it on the way.
//!
//! Each batch of the body is hashed on one blocking thread and written on another while
//! the next batch arrives from the network, so hashing, writing and reading overlap.
//!
//! Writes bypass the page cache (`O_DIRECT`) where the filesystem allows it. Copying a
//! body into the page cache cost as much CPU as hashing it (a quarter of a push's CPU
//! time, measured with `perf`), and the kernel then spent more writing those pages back.
//! An `O_DIRECT` write goes from one reused, block-aligned buffer to the device. The few
//! bytes at the end that do not fill a block go through the page cache, and the next
//! append starts by reading that block back, so direct writes always start on a block.
//! Where `O_DIRECT` is refused (tmpfs, some network filesystems), every byte goes through
//! the page cache as before, with writeback started every few MiB so the fsync that
//! publishes a blob finds little left to flush.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::task::{spawn_blocking, JoinHandle};

use crate::registry::storage::ByteStream;

/// Batch size: one batch is hashed and written while the next one arrives. Each batch
/// costs two hand-offs to blocking threads and back (futex and epoll wake-ups, ~12 k per
/// GiB at 1 MiB, measured with `strace -c`); 2 MiB halves them. An upload holds at most
/// about three batches (one arriving, one being hashed and written, the staging buffer).
const BATCH: usize = 2 * 1024 * 1024;
/// Direct writes start at, and are sized in, multiples of this. 4 KiB satisfies the
/// logical block size of every common device and filesystem.
const BLOCK: usize = 4096;
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
    /// The same file opened with `O_DIRECT`, and the aligned buffer its writes go through.
    direct: Option<(File, Staging)>,
}

impl Sink {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut file = OpenOptions::new().read(true).write(true).open(path)?;
        let end = file.seek(SeekFrom::End(0))?;
        let direct = match open_direct(path) {
            Ok(d) => Some((d, Staging::at(&file, end)?)),
            Err(e) => {
                tracing::debug!(error = %e, "O_DIRECT refused; appending through the page cache");
                None
            }
        };
        Ok(Self { file, end, direct })
    }

    /// The file's size before this append.
    pub fn len(&self) -> u64 {
        self.end
    }

    fn write(&mut self, batch: &[Bytes]) -> io::Result<()> {
        let len: u64 = batch.iter().map(|b| b.len() as u64).sum();
        match &mut self.direct {
            Some((direct, staging)) => {
                if let Err((e, taken)) = staging.push(direct, batch) {
                    // EINVAL: this filesystem wants another alignment after all. What the
                    // buffer holds and the rest of the batch go through the page cache.
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                    tracing::debug!("O_DIRECT write refused; appending through the page cache");
                    staging.write_buffered(&self.file)?;
                    let at = staging.base;
                    self.direct = None;
                    self.file.seek(SeekFrom::Start(at))?;
                    write_buffered(&mut self.file, at, &skip(batch, taken))?;
                }
            }
            None => write_buffered(&mut self.file, self.end, batch)?,
        }
        self.end += len;
        Ok(())
    }

    /// Writes what the staging buffer still holds.
    fn finish(self) -> io::Result<()> {
        match self.direct {
            Some((direct, mut staging)) => staging.flush(&direct, &self.file),
            None => Ok(()),
        }
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

/// The block-aligned buffer direct writes go through: `len` bytes meant for the file at
/// `base`, a multiple of `BLOCK`.
struct Staging {
    mem: Vec<u8>,
    /// Where the aligned part of `mem` starts.
    start: usize,
    len: usize,
    base: u64,
}

impl Staging {
    /// A buffer for appending at `end`, holding the bytes of `end`'s block already written.
    fn at(file: &File, end: u64) -> io::Result<Self> {
        let mut mem = vec![0u8; BATCH + 2 * BLOCK];
        let start = mem.as_ptr().align_offset(BLOCK);
        let base = end - end % BLOCK as u64;
        let len = (end - base) as usize;
        file.read_exact_at(&mut mem[start..start + len], base)?;
        Ok(Self {
            mem,
            start,
            len,
            base,
        })
    }

    fn capacity(&self) -> usize {
        BATCH + BLOCK
    }

    /// Copies a batch in, writing every time the buffer fills. On an error, also says how
    /// many bytes of the batch the buffer took (all still held: nothing was lost).
    fn push(&mut self, direct: &File, batch: &[Bytes]) -> Result<(), (io::Error, usize)> {
        let mut taken = 0;
        for bytes in batch {
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = rest.len().min(self.capacity() - self.len);
                let at = self.start + self.len;
                self.mem[at..at + n].copy_from_slice(&rest[..n]);
                self.len += n;
                taken += n;
                rest = &rest[n..];
                if self.len == self.capacity() {
                    self.write_whole_blocks(direct).map_err(|e| (e, taken))?;
                }
            }
        }
        Ok(())
    }

    /// Writes the whole blocks held and keeps the partial one at the front.
    fn write_whole_blocks(&mut self, direct: &File) -> io::Result<()> {
        let whole = self.len - self.len % BLOCK;
        if whole == 0 {
            return Ok(());
        }
        direct.write_all_at(&self.mem[self.start..self.start + whole], self.base)?;
        self.mem
            .copy_within(self.start + whole..self.start + self.len, self.start);
        self.base += whole as u64;
        self.len -= whole;
        Ok(())
    }

    fn flush(&mut self, direct: &File, file: &File) -> io::Result<()> {
        self.write_whole_blocks(direct)?;
        self.write_buffered(file)
    }

    /// Writes what is held through the page cache.
    fn write_buffered(&mut self, file: &File) -> io::Result<()> {
        file.write_all_at(&self.mem[self.start..self.start + self.len], self.base)?;
        self.base += self.len as u64;
        self.len = 0;
        Ok(())
    }
}

/// The batch without its first `n` bytes.
fn skip(batch: &[Bytes], mut n: usize) -> Vec<Bytes> {
    let mut rest = Vec::with_capacity(batch.len());
    for b in batch {
        if n >= b.len() {
            n -= b.len();
        } else {
            rest.push(b.slice(n..));
            n = 0;
        }
    }
    rest
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

/// Appends a body to `sink`, updating `hasher` on the way.
pub async fn append(
    sink: Sink,
    hasher: Option<Sha256>,
    mut body: ByteStream,
) -> io::Result<Appended> {
    let mut hashing: JoinHandle<Option<Sha256>> = spawn_blocking(move || hasher);
    let mut writing: JoinHandle<io::Result<Sink>> = spawn_blocking(move || Ok(sink));
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batched = 0usize;
    let mut written = 0u64;
    let mut body_error = None;
    loop {
        let done = match body.next().await {
            Some(Ok(bytes)) => {
                batched += bytes.len();
                batch.push(bytes);
                if batched < BATCH {
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
            let mut sink = writing.await.map_err(io::Error::other)??;
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
            writing = spawn_blocking(move || sink.write(&for_write).map(|()| sink));
            written += batched as u64;
            batched = 0;
        }
        if done {
            break;
        }
    }
    let sink = writing.await.map_err(io::Error::other)??;
    spawn_blocking(move || sink.finish())
        .await
        .map_err(io::Error::other)??;
    let hasher = hashing.await.map_err(io::Error::other)?;
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
    async fn appends_reassemble(direct: bool) {
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
            }
            // Split the chunk the way a network would: pieces of 64 KiB and odd bits.
            let pieces = data.chunks(65_536 + 7).map(<[u8]>::to_vec).collect();
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
        appends_reassemble(true).await;
    }

    #[tokio::test]
    async fn buffered_appends_reassemble_byte_exact() {
        appends_reassemble(false).await;
    }

    #[test]
    fn skip_drops_whole_and_partial_pieces() {
        let batch = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")];
        let rest: Vec<u8> = skip(&batch, 4).concat();
        assert_eq!(rest, b"efg");
        assert!(skip(&batch, 7).is_empty());
    }
}
