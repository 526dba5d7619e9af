//! One process per storage root. Opening a root clears `wharf/tmp`, and two processes would
//! delete each other's staging files (and race on sessions), so a root is held with an
//! exclusive `flock` on `<root>/wharf/lock`, which names the holder's pid for whoever is refused.
//! The kernel drops the lock when the process ends, however it ends.
//!
//! Within one process the lock is shared: engines on the same root (an engine being
//! replaced while connections finish on the old one) hold one lock between them, and only
//! the first one clears `wharf/tmp`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// The held lock; released when the last engine on the root is dropped.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

/// Roots this process holds, by canonical path.
fn held() -> &'static Mutex<HashMap<PathBuf, Weak<RootLock>>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, Weak<RootLock>>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// Takes the root through its (existing) `wharf` directory `root`. `fresh` is true when this process did not hold
/// it already, so nobody in this process can be using its staging files.
pub fn lock(root: &Path) -> io::Result<(Arc<RootLock>, bool)> {
    let root = fs::canonicalize(root)?;
    let mut held = held().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(lock) = held.get(&root).and_then(Weak::upgrade) {
        return Ok((lock, false));
    }
    let path = root.join("lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    if !try_flock(&file)? {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "another process".to_owned(),
            pid => format!("another process (pid {pid})"),
        };
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{} is locked by {holder}: only one wharf may use a filesystem root at a time \
                 (stop the other one, or give this one its own root)",
                path.display()
            ),
        ));
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    let lock = Arc::new(RootLock { _file: file });
    held.retain(|_, l| l.strong_count() > 0);
    held.insert(root, Arc::downgrade(&lock));
    Ok((lock, true))
}

/// Whether a process holds the root through its `wharf` directory `root` now: a look, not
/// a hold (the lock is released at once), so a server may start right after.
pub fn held_elsewhere(root: &Path) -> io::Result<bool> {
    let path = root.join("lock");
    let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(named(e)),
    };
    // The descriptor closes when `file` drops, and the lock with it.
    Ok(!try_flock(&file).map_err(named)?)
}

/// An exclusive `flock` without waiting; `false` when someone else holds it.
fn try_flock(file: &File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only uses the descriptor, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_shares_its_lock_and_records_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let (a, fresh_a) = lock(dir.path()).unwrap();
        let (b, fresh_b) = lock(dir.path()).unwrap();
        assert!(fresh_a && !fresh_b);
        assert!(Arc::ptr_eq(&a, &b));
        let pid = fs::read_to_string(dir.path().join("lock")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
        // Another open file description is another holder, as another process would be.
        let other = File::open(dir.path().join("lock")).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        drop((a, b));
        other.try_lock().unwrap();
    }

    #[test]
    fn a_look_at_the_lock_does_not_hold_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!held_elsewhere(dir.path()).unwrap(), "no lock file yet");
        let (held, _) = lock(dir.path()).unwrap();
        assert!(held_elsewhere(dir.path()).unwrap());
        assert!(
            held_elsewhere(dir.path()).unwrap(),
            "the look released nothing"
        );
        drop(held);
        assert!(!held_elsewhere(dir.path()).unwrap());
        let (_again, fresh) = lock(dir.path()).unwrap();
        assert!(fresh, "the look left no lock behind");
    }
}
