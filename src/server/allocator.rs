//! glibc malloc's thresholds, set for a server that streams bodies through large buffers.
//!
//! A push moves each byte through buffers of hundreds of KiB (hyper's read buffer, TLS
//! read-ahead, the 2 MiB batches and staging buffer of a filesystem append). With glibc's
//! defaults, buffers over 128 KiB come from `mmap` until the first is freed, and the heap is
//! given back to the kernel whenever more than twice that is free at its top. Batches are
//! freed together, so the heap shrank and grew again every few MiB: a GiB pushed cost about
//! 96 k page faults (plain HTTP; 107 k over TLS), each a kernel entry and a zeroed page,
//! about a sixth of the server's CPU time. With the thresholds below the same push takes
//! about 2.8 k (`perf stat -e page-faults`).
//!
//! The cost is memory kept rather than returned: at most `TRIM_THRESHOLD` of free heap per
//! malloc arena. A `GLIBC_TUNABLES` setting of malloc's own takes precedence.

/// Allocations at least this large get their own mapping (and unmap when freed): larger
/// than any buffer a request body goes through.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 4 << 20;
/// Free memory at the top of a heap beyond this is returned to the kernel: room for the
/// buffers of a few uploads.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: i32 = 16 << 20;

/// Sets the thresholds, once per process, before the server starts serving.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
            if tunables.contains("glibc.malloc.") {
                return; // the operator chose
            }
            // SAFETY: mallopt only changes malloc's parameters, which it may at any time.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            }
        });
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Page faults taken by the calling thread so far.
    fn faults() -> i64 {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        usage.ru_minflt
    }

    /// What a push does to the heap: a batch of large buffers filled, then all freed.
    #[test]
    fn batches_of_large_buffers_reuse_their_memory() {
        super::tune();
        let round = || {
            let buffers: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; 512 * 1024]).collect();
            std::hint::black_box(&buffers);
        };
        round();
        let before = faults();
        for _ in 0..20 {
            round();
        }
        let taken = faults() - before;
        // Without the thresholds: 128 pages per buffer, every round (about 20 k).
        assert!(taken < 1000, "{taken} page faults");
    }
}
