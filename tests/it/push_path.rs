//! The push path's write side: bodies written past the page cache, and chunks of any size
//! reassembled byte-exact around the direct writes' block alignment.

use std::path::Path;

use reqwest::StatusCode;

use crate::support::{bytes_of, sha256, TestServer};

/// The share of a file's pages that are in the page cache.
fn resident_share(path: &Path) -> f64 {
    let file = std::fs::File::open(path).unwrap();
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let page = 4096;
    let pages = map.len().div_ceil(page);
    let mut vec = vec![0u8; pages];
    // SAFETY: `map` is a live mapping of `map.len()` bytes and `vec` has one byte per page.
    let rc = unsafe { libc::mincore(map.as_ptr() as *mut _, map.len(), vec.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 == 1).count() as f64 / pages as f64
}

/// Whether files in `dir` can be opened with O_DIRECT (not on tmpfs, for one).
fn direct_io_works(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join("direct-probe");
    std::fs::write(&probe, b"").unwrap();
    let ok = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    std::fs::remove_file(&probe).unwrap();
    if !ok {
        eprintln!("SKIPPED: {} refuses O_DIRECT (tmpfs?)", dir.display());
    }
    ok
}

fn blob_path(root: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    root.join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Copying every pushed byte into the page cache cost as much CPU as hashing it; pushed
/// bytes now go to the disk directly, so a freshly pushed blob is (almost) not cached.
#[tokio::test]
async fn pushed_bytes_bypass_the_page_cache() {
    let s = TestServer::start().await;
    if !direct_io_works(&s.root) {
        return;
    }
    let data = bytes_of(16 << 20, 7);
    let digest = s.push_blob("team/app", &data).await;
    let share = resident_share(&blob_path(&s.root, &digest));
    assert!(
        share < 0.1,
        "{:.0}% of the pushed blob is in the page cache",
        share * 100.0
    );
}

/// Direct writes go in whole 4 KiB blocks from block boundaries; chunks that end
/// mid-block, tiny chunks and chunks bigger than a batch must still reassemble exactly.
#[tokio::test]
async fn chunks_of_odd_sizes_reassemble_byte_exact() {
    let s = TestServer::start().await;
    let sizes = [1, 4095, 4097, (1 << 20) + 3, 5000, 1, (2 << 20) - 1, 4096];
    let data = bytes_of(sizes.iter().sum(), 9);
    let digest = sha256(&data);
    let r = s
        .http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let mut loc = s.url(r.headers()["location"].to_str().unwrap());
    let mut at = 0;
    for n in sizes {
        let r = s
            .http
            .patch(&loc)
            .header("content-range", format!("{at}-{}", at + n - 1))
            .body(data[at..at + n].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "chunk at {at}");
        assert_eq!(r.headers()["range"], format!("0-{}", at + n - 1).as_str());
        loc = s.url(r.headers()["location"].to_str().unwrap());
        at += n;
    }
    let r = s
        .http
        .put(format!("{loc}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = s
        .http
        .get(s.url(&format!("/v2/team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got[..] == data[..], "the blob differs from what was pushed");
    assert_eq!(std::fs::read(blob_path(&s.root, &digest)).unwrap(), data);
}
