//! Removing a link file (`.../<alg>/<hex>/link`) with its directory, made durable at once
//! ([`FsStorage::unlink`]) or later, together with many others
//! ([`FsStorage::unlink_unsynced`] then [`FsStorage::sync_unlinks`]): the collector may
//! remove thousands of untagged revisions (`gc.untagged = "delete"`), and one fsync each
//! made a run wait for thousands of journal commits, where one batch after all of them
//! waits for about one.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{atomic, parallel};

/// A removed link, and the directory whose fsync makes its removal durable.
pub(super) struct Removed {
    pub existed: bool,
    sync: Option<PathBuf>,
}

/// Removes the link file, then its `<alg>/<hex>` directory if now empty (registry:2 leaves
/// it; either way its walks skip directories without a link). Nothing is synced.
pub(super) fn remove(path: &Path) -> io::Result<Removed> {
    if !atomic::remove_unsynced(path)? {
        return Ok(Removed {
            existed: false,
            sync: None,
        });
    }
    let Some(dir) = path.parent() else {
        return Err(io::Error::other("a link path has no parent"));
    };
    // With the directory gone, its parent's entry is what must stay gone; otherwise (a
    // link put back meanwhile, or a stray file) the directory's own entry for `link`.
    let sync = match fs::remove_dir(dir) {
        Ok(()) => dir.parent().map(Path::to_path_buf),
        Err(_) => Some(dir.to_path_buf()),
    };
    Ok(Removed {
        existed: true,
        sync,
    })
}

/// Removes a link durably.
pub(super) fn remove_synced(path: &Path) -> io::Result<bool> {
    let removed = remove(path)?;
    if let Some(dir) = &removed.sync {
        sync_present(dir)?;
    }
    Ok(removed.existed)
}

/// Directories holding removals not yet made durable.
#[derive(Default)]
pub(super) struct Unsynced(Mutex<HashSet<PathBuf>>);

impl Unsynced {
    pub(super) fn remember(&self, removed: Removed) -> bool {
        if let Some(dir) = removed.sync {
            self.lock().insert(dir);
        }
        removed.existed
    }

    /// Fsyncs every remembered directory (several at once: after the first commits the
    /// journal, the rest mostly find nothing left to write).
    pub(super) fn sync(&self) -> io::Result<()> {
        let dirs: Vec<PathBuf> = self.lock().drain().collect();
        let result = parallel::for_each(&dirs, |dir, _: &mut Vec<()>| sync_present(dir));
        if result.is_err() {
            // Tried again by the next sync.
            self.lock().extend(dirs);
        }
        result.map(drop)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Fsyncs `dir`; a directory removed since (a repository deleted whole) has nothing left
/// to sync here.
fn sync_present(dir: &Path) -> io::Result<()> {
    match atomic::sync_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_syncs_the_directory_that_lost_the_entry() {
        let root = tempfile::tempdir().unwrap();
        let alg = root.path().join("_layers/sha256");
        for hex in ["aa", "bb"] {
            fs::create_dir_all(alg.join(hex)).unwrap();
            fs::write(alg.join(hex).join("link"), b"sha256:x").unwrap();
        }
        fs::write(alg.join("bb/stray"), b"").unwrap();
        let gone = remove(&alg.join("aa/link")).unwrap();
        assert!(gone.existed && !alg.join("aa").exists());
        assert_eq!(gone.sync.as_deref(), Some(alg.as_path()));
        let kept_dir = remove(&alg.join("bb/link")).unwrap();
        assert_eq!(kept_dir.sync, Some(alg.join("bb")));
        let again = remove(&alg.join("aa/link")).unwrap();
        assert!(!again.existed && again.sync.is_none());

        let unsynced = Unsynced::default();
        assert!(unsynced.remember(gone));
        assert!(unsynced.remember(kept_dir));
        assert_eq!(unsynced.lock().len(), 2);
        fs::remove_dir_all(alg.join("bb")).unwrap();
        unsynced.sync().expect("a directory gone since is no error");
        assert!(unsynced.lock().is_empty());
    }
}
