//! Crash-safe file placement: write to a temporary file under the root, fsync it, rename it
//! into place, fsync the directory. Readers and a crash see the old file or the new one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `target` atomically, staging in `tmp_dir` (same filesystem).
pub fn write_file(tmp_dir: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_dir.join(uuid::Uuid::new_v4().to_string());
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        place(&tmp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Renames a finished, fsynced file into place, creating parent directories durably, and
/// makes the rename durable.
pub fn place(from: &Path, target: &Path) -> io::Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| io::Error::other("target has no parent directory"))?;
    create_dirs(parent)?;
    fs::rename(from, target)?;
    sync_dir(parent)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` with any missing parents, durably: a new directory is only an entry in
/// its parent until that parent is fsynced, so every directory that gained an entry is
/// synced, from the deepest new one's parent up to the first that already existed.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    create_dirs_with(dir, sync_dir)
}

/// [`create_dirs`] with the fsync given, so tests can see which directories it syncs.
fn create_dirs_with(dir: &Path, mut sync: impl FnMut(&Path) -> io::Result<()>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    // Each new directory is an entry of its parent; deepest first, ending with the parent
    // of the topmost new one, which already existed.
    for new in &missing {
        if let Some(parent) = new.parent() {
            sync(parent)?;
        }
    }
    Ok(())
}

/// Removes a file; `Ok(false)` when it did not exist.
pub fn remove_file(path: &Path) -> io::Result<bool> {
    remove_file_with(path, sync_dir)
}

fn remove_file_with(
    path: &Path,
    mut sync: impl FnMut(&Path) -> io::Result<()>,
) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            // Until its directory is synced, a crash can bring the entry back.
            if let Some(parent) = path.parent() {
                sync(parent)?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes a file without syncing its directory (a crash may bring it back); `Ok(false)`
/// when it did not exist.
pub fn remove_unsynced(path: &Path) -> io::Result<bool> {
    remove_file_with(path, |_| Ok(()))
}

/// Reads a file; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes a directory and everything in it, then syncs the directory that held it.
pub fn remove_dir_all(dir: &Path) -> io::Result<()> {
    fs::remove_dir_all(dir)?;
    match dir.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn synced_by(dir: &Path) -> Vec<PathBuf> {
        let mut synced = Vec::new();
        create_dirs_with(dir, |d| {
            synced.push(d.to_path_buf());
            Ok(())
        })
        .unwrap();
        synced
    }

    #[test]
    fn new_directories_are_synced_up_to_the_first_that_existed() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let deep = r.join("a/b/c");
        assert_eq!(
            synced_by(&deep),
            [r.join("a/b"), r.join("a"), r.to_path_buf()]
        );
        assert!(deep.is_dir());
        assert_eq!(synced_by(&r.join("a/b/d")), [r.join("a/b")]);
        assert!(synced_by(&deep).is_empty(), "nothing new, nothing to sync");
    }

    #[test]
    fn removals_sync_the_directory_that_held_the_entry() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("x");
        fs::write(&file, b"1").unwrap();
        let mut synced = Vec::new();
        let removed = remove_file_with(&file, |d| {
            synced.push(d.to_path_buf());
            Ok(())
        });
        assert!(removed.unwrap());
        assert_eq!(synced, [root.path().to_path_buf()]);
        synced.clear();
        let again = remove_file_with(&file, |d| {
            synced.push(d.to_path_buf());
            Ok(())
        });
        assert!(!again.unwrap());
        assert!(synced.is_empty(), "nothing removed, nothing to sync");
    }
}
