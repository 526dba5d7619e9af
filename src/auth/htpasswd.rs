//! Users from an Apache htpasswd file, read as Apache writes it, bcrypt only.
//!
//! The file is parsed whole at [`Htpasswd::open`] and on every [`Htpasswd::reload`]; any line
//! wharf cannot use (another hash type, a duplicate user, a line without `:`) is an error
//! naming the file, the line and the fix, never a user that silently cannot log in. A reload
//! that fails keeps the users that were in force. Lookups read an in-memory map; only
//! [`Provider::verify`] hashes, on tokio's blocking pool.
//!
//! `edit` holds what `wharf htpasswd` needs to change a file without disturbing other lines.

pub mod edit;
pub(crate) mod parse;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::hashing::bcrypt_verify;
use super::{AuthError, Credentials, Identity, Lookup, Provider};
use parse::Users;
pub use parse::DEFAULT_COST;

#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    // The cause is part of the message, so it is not also the error's `source()`: a chain
    // printer (`{:#}`, anyhow) would say it twice.
    #[error("cannot read htpasswd file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("cannot write htpasswd file {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("{path}:{line}: {reason}; fix or remove the line (comments start with `#`)")]
    Malformed {
        path: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{path}:{line}: the password hash of user {user:?} is {kind}, but wharf accepts only bcrypt; re-create the user with `wharf htpasswd {path} {user}` or `htpasswd -B {path} {user}`")]
    Unsupported {
        path: PathBuf,
        line: usize,
        user: String,
        kind: &'static str,
    },

    #[error("{path}:{line}: user {user:?} has a malformed bcrypt hash ({reason}); re-create the user with `wharf htpasswd {path} {user}` or `htpasswd -B {path} {user}`")]
    BadBcrypt {
        path: PathBuf,
        line: usize,
        user: String,
        reason: &'static str,
    },

    #[error(
        "{path}: user {user:?} is defined twice, on lines {first} and {second}; delete one of them"
    )]
    Duplicate {
        path: PathBuf,
        user: String,
        first: usize,
        second: usize,
    },

    #[error("invalid user name {user:?}: {reason}")]
    BadUserName { user: String, reason: &'static str },

    #[error("unusable password: {0}")]
    BadPassword(&'static str),

    #[error("cannot hash the password: {0}")]
    Hash(bcrypt::BcryptError),
}

/// What identifies one version of the file, to notice changes without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    /// A rename over the file (how `wharf htpasswd` and editors save) changes the inode even
    /// when size and mtime happen to match.
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode,
        })
    }
}

/// The users of one htpasswd file; see the module docs.
#[derive(Debug)]
pub struct Htpasswd {
    path: PathBuf,
    /// "htpasswd <path>", for logs and [`Provider::name`].
    name: String,
    /// Readers clone the `Arc` and let go of the lock at once; a reload swaps in a new map.
    users: RwLock<Arc<Users>>,
    /// The file as it was when last read (successfully or not), so the watcher neither
    /// misses a change nor retries a broken file until it changes again.
    stamp: Mutex<Option<Stamp>>,
}

impl Htpasswd {
    /// Reads and checks the file. Blocking (it is small, and read once at start-up).
    pub fn open(path: impl Into<PathBuf>) -> Result<Arc<Htpasswd>, HtpasswdError> {
        let path = path.into();
        let (stamp, bytes) = read(&path);
        let users = parse::parse(&path, &bytes?)?;
        Ok(Arc::new(Htpasswd {
            name: format!("htpasswd {}", path.display()),
            path,
            users: RwLock::new(Arc::new(users)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// Re-reads the file; `Ok(true)` when the users changed. When the file cannot be read or
    /// parsed, the users in force stay and the error is returned for the caller to log.
    /// Blocking, like [`Htpasswd::open`].
    pub fn reload(&self) -> Result<bool, HtpasswdError> {
        let (stamp, bytes) = read(&self.path);
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let users = parse::parse(&self.path, &bytes?)?;
        // Poisoning cannot leave the map half-written: the lock only guards an `Arc` swap.
        let mut current = self.users.write().unwrap_or_else(PoisonError::into_inner);
        let changed = current.entries != users.entries;
        if changed {
            *current = Arc::new(users);
        }
        Ok(changed)
    }

    /// Reloads the file when it changes, logging the outcome: at once on the file system's
    /// event (inotify on Linux) for anything in the file's directory (watching the
    /// directory sees editors' rename-over-the-file and Kubernetes' symlink swaps), and by
    /// polling its size, mtime and inode every `every` in case events are unavailable or
    /// lost (a network file system, inotify limits). Reads run on the blocking pool. The
    /// task ends by itself once every other `Arc` of this `Htpasswd` is dropped (e.g. after
    /// a config reload replaced it), and the event watcher with it.
    pub fn watch(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let changed = Arc::new(tokio::sync::Notify::new());
        // Watching starts before this returns, so no change after it can be missed.
        let events = self.watch_events(Arc::clone(&changed));
        let weak = Arc::downgrade(&self);
        drop(self);
        tokio::spawn(async move {
            let _events = events;
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate, and the file was just read.
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = changed.notified() => {}
                }
                let weak = Weak::clone(&weak);
                let polled = tokio::task::spawn_blocking(move || {
                    let this = weak.upgrade()?;
                    let outcome = this.reload_if_touched();
                    Some((this, outcome))
                })
                .await;
                // `this` is dropped at the end of the arm, so it never outlives one check.
                match polled {
                    Ok(None) => return,
                    Ok(Some((_, None))) => {}
                    Ok(Some((this, Some(outcome)))) => this.log_reload(outcome),
                    Err(error) => tracing::error!(%error, "htpasswd watcher failed"),
                }
            }
        })
    }

    /// Signals `changed` on every event in the file's directory; `None` (polling only) when
    /// the platform cannot watch it. Dropping the watcher stops it.
    fn watch_events(
        &self,
        changed: Arc<tokio::sync::Notify>,
    ) -> Option<notify::RecommendedWatcher> {
        use notify::Watcher as _;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // An error may mean lost events: check the file either way (it costs a stat).
            let _ = event;
            changed.notify_one();
        })
        .and_then(|mut w| {
            w.watch(dir, notify::RecursiveMode::NonRecursive)
                .map(|()| w)
        });
        match watcher {
            Ok(w) => Some(w),
            Err(error) => {
                tracing::warn!(
                    provider = %self.name, %error,
                    "cannot watch the htpasswd file's directory; changes are noticed by polling only"
                );
                None
            }
        }
    }

    fn log_reload(&self, outcome: Result<bool, HtpasswdError>) {
        match outcome {
            Ok(changed) => tracing::info!(
                provider = %self.name, users = self.user_count(), changed,
                "htpasswd file reloaded"
            ),
            Err(error) => tracing::error!(
                provider = %self.name, %error,
                "htpasswd file not reloaded; the users loaded before stay in force"
            ),
        }
    }

    /// Reloads when the file's stamp differs from the one last read; `None` when it does not.
    fn reload_if_touched(&self) -> Option<Result<bool, HtpasswdError>> {
        let last = *self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        (Stamp::of(&self.path) != last).then(|| self.reload())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn user_count(&self) -> usize {
        self.snapshot().entries.len()
    }

    /// The stored hash of `user`, if the file has one.
    pub fn hash_of(&self, user: &str) -> Option<String> {
        self.snapshot().entries.get(user).cloned()
    }

    /// Spends the time a real verification would, for a user no provider knows, so that a
    /// login's duration does not tell whether the user exists. The dummy hash has the cost
    /// most of this file's entries have (10 for an empty file).
    pub async fn verify_unknown(&self, password: &str) {
        let dummy = self.snapshot().dummy.clone();
        // The result is meaningless; only the time spent matters.
        let _ = bcrypt_verify(password.to_owned(), dummy).await;
    }

    fn snapshot(&self) -> Arc<Users> {
        Arc::clone(&self.users.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Reads the file, noting its stamp first: a write racing the read then shows up as a
/// change at the next poll rather than being missed.
fn read(path: &Path) -> (Option<Stamp>, Result<Vec<u8>, HtpasswdError>) {
    let stamp = Stamp::of(path);
    let bytes = std::fs::read(path).map_err(|cause| HtpasswdError::Read {
        path: path.to_path_buf(),
        cause,
    });
    (stamp, bytes)
}

#[async_trait]
impl Provider for Htpasswd {
    fn name(&self) -> &str {
        &self.name
    }

    async fn lookup(&self, user: &str) -> Result<Lookup, AuthError> {
        Ok(match self.hash_of(user) {
            Some(stored) => Lookup::Known { stored },
            None => Lookup::UnknownUser,
        })
    }

    async fn verify(
        &self,
        creds: &Credentials,
        stored: &str,
    ) -> Result<Option<Identity>, AuthError> {
        // bcrypt compares the digests in constant time, so right and wrong passwords cost the same.
        let outcome = bcrypt_verify(creds.password.clone(), stored.to_owned()).await;
        let matched = match outcome {
            Ok(Ok(matched)) => matched,
            Ok(Err(_)) => {
                // Not reachable with what `lookup` returns (checked at load). The error would
                // quote the hash, so it is not logged.
                tracing::warn!(provider = %self.name, user = %creds.user, "stored hash is not bcrypt");
                false
            }
            Err(error) => {
                return Err(AuthError::Unavailable {
                    provider: self.name.clone(),
                    reason: format!("the password check did not finish: {error}"),
                })
            }
        };
        Ok(matched.then(|| Identity {
            user: creds.user.clone(),
            groups: vec![],
        }))
    }
}

#[cfg(test)]
mod tests;
