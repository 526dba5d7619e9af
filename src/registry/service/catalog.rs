//! The repository index the web UI lists from: every repository's name and, per repository,
//! its tag count, size and last push. A page of a 10,000-repository registry then costs a
//! filter over names in memory and the figures of the repositories it shows, not a walk of
//! storage per view.
//!
//! Kept right by this node's own changes: [`Service::emit`](super::Service) tells it of every
//! durable effect (a repository that appears with a push or mount, figures changed by a
//! manifest push or a tag or manifest delete, a repository deleted). What it cannot see is
//! revalidated: on shared storage (S3, Azure) other nodes write too, so names and figures
//! older than [`SHARED_TTL`] are served once more while a fresh read runs in the background;
//! on a local root only this process writes (the root lock), and [`LOCAL_TTL`] only bounds
//! how long something written behind wharf's back (registry:2 on the same directory) stays
//! unseen.
//!
//! The first view after start-up does not wait for a walk of storage either: it is served
//! what the last run saved (`catalog_saved.rs`), as stale, while the walk runs behind it;
//! each walk saves the index again, and so does a server that stops. Only with nothing
//! saved (the first start on a root) does a view wait for the walk, and then in a task of
//! its own, so a view that stops waiting (the UI's, after a moment) leaves it running.
//!
//! The `_catalog` API still reads storage on every call: it must be exact across nodes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::browse::{Descriptor, RawManifest};
use super::catalog_saved::{self as saved, Saved};
use super::{Action, Target, TargetKind};
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{Storage, StorageError, StorageResult};

/// How old names and figures may be on shared storage before they are read again.
pub const SHARED_TTL: Duration = Duration::from_secs(10);
/// The same on a local root, where only changes made behind wharf's back can be missed.
pub const LOCAL_TTL: Duration = Duration::from_secs(300);
/// Figures kept at most; past it they are dropped and read again as pages ask for them.
const MAX_FIGURES: usize = 100_000;
/// Storage reads run at once while figures are computed.
const CONCURRENT_READS: usize = 8;
/// Changes kept from start-up until the names are first read, to replay over the saved
/// index; past it the saved index is not used (the walk is).
const MAX_EARLY: usize = 10_000;

/// What the listing shows of a repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepoStats {
    pub tags: usize,
    /// The distinct blobs the tags reach (manifests, configs, layers, an index's images),
    /// each counted once: what keeping the tags costs.
    pub size: u64,
    /// The latest time any tag was written (pushed), as storage dates the tag's link.
    pub last_push: Option<SystemTime>,
}

/// See the module docs. One per storage, shared by the engines of a reload.
pub struct Catalog {
    ttl: Duration,
    state: Mutex<State>,
    /// Held while the names are read from storage, so one reading runs at a time.
    listing: Arc<tokio::sync::Mutex<()>>,
    /// Read-held by each background reading, so tests can wait for them to end.
    background: Arc<tokio::sync::RwLock<()>>,
    /// Held while the index is saved; holds the fingerprint of what storage has.
    saving: tokio::sync::Mutex<Option<u64>>,
}

struct Timed<T> {
    value: T,
    /// When it was read from storage; `None` for what the saved index said (stale).
    at: Option<Instant>,
}

impl<T> Timed<T> {
    fn now(value: T) -> Self {
        Self {
            value,
            at: Some(Instant::now()),
        }
    }

    fn fresh(&self, ttl: Duration) -> bool {
        self.at.is_some_and(|at| at.elapsed() < ttl)
    }
}

#[derive(Default)]
struct State {
    names: Option<Timed<Arc<Vec<RepoName>>>>,
    /// While the names are read: changes noted meanwhile (present or not), replayed over
    /// what the reading found, which may predate them.
    during_listing: Option<Vec<(RepoName, bool)>>,
    figures: HashMap<RepoName, Timed<Arc<RepoStats>>>,
    /// Bumped by every change: figures computed under an older generation may predate it,
    /// so they are used once but not kept.
    generation: u64,
    /// Repositories whose stale figures are being read again.
    refreshing: HashSet<RepoName>,
    /// From start-up until the first walk begins: the repositories changed (present, gone,
    /// or `None`: figures only), to replay over the saved index, which may predate them.
    /// `None` once a walk began, or when more than [`MAX_EARLY`] came.
    early: Option<Vec<(RepoName, Option<bool>)>>,
}

impl Catalog {
    pub fn new(shared: bool) -> Self {
        let state = State {
            early: Some(Vec::new()),
            ..State::default()
        };
        Self {
            ttl: if shared { SHARED_TTL } else { LOCAL_TTL },
            state: Mutex::new(state),
            listing: Arc::default(),
            background: Arc::default(),
            saving: tokio::sync::Mutex::default(),
        }
    }

    /// Waits until the background readings begun so far have ended.
    #[cfg(test)]
    pub(crate) async fn settled(&self) {
        drop(self.background.write().await);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-changed in a way that matters here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes note of a durable effect (called for every event the service emits).
    pub(super) fn note(&self, action: Action, target: &Target) {
        let repo = &target.repository;
        match (action, target.kind) {
            (Action::Pull, _) | (Action::Delete, TargetKind::Blob) => {}
            (Action::Delete, TargetKind::Repository) => self.set_present(repo, false),
            (Action::Push | Action::Mount | Action::Fetch, _) => self.set_present(repo, true),
            (Action::Delete, TargetKind::Manifest | TargetKind::Tag) => {
                let mut state = self.lock();
                state.generation += 1;
                state.figures.remove(repo);
                state.note_early(repo, None);
            }
        }
    }

    fn set_present(&self, repo: &RepoName, present: bool) {
        let mut state = self.lock();
        state.generation += 1;
        state.figures.remove(repo);
        state.note_early(repo, Some(present));
        if let Some(pending) = &mut state.during_listing {
            pending.push((repo.clone(), present));
        }
        if let Some(names) = &mut state.names {
            apply(Arc::make_mut(&mut names.value), repo, present);
        }
    }

    /// Every repository's name, sorted.
    pub async fn names(
        self: &Arc<Self>,
        storage: &Arc<dyn Storage>,
    ) -> StorageResult<Arc<Vec<RepoName>>> {
        if let Some(stale) = self.cached_names(false) {
            // Served once more while they are read again, unless a reading runs already.
            if let Ok(guard) = self.listing.clone().try_lock_owned() {
                self.spawn_listing(storage.clone(), guard, None);
            }
            return Ok(stale);
        }
        if let Some(fresh) = self.cached_names(true) {
            return Ok(fresh);
        }
        let guard = self.listing.clone().lock_owned().await;
        // Another view may have read them (or the saved index) while this one waited.
        if let Some(names) = self.any_names() {
            return Ok(names);
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.spawn_listing(storage.clone(), guard, Some(answer));
        answered.await.unwrap_or_else(|_| {
            Err(StorageError::Io {
                op: "list repositories",
                source: std::io::Error::other("the listing task ended early"),
            })
        })
    }

    /// Reads the names in a task of its own, holding `guard`. With an `answer` (nothing is
    /// known yet), the saved index first when there is one: it is the answer, and the
    /// walk goes on behind it; without one, the walk's result is.
    fn spawn_listing(
        self: &Arc<Self>,
        storage: Arc<dyn Storage>,
        guard: OwnedMutexGuard<()>,
        mut answer: Option<tokio::sync::oneshot::Sender<StorageResult<Arc<Vec<RepoName>>>>>,
    ) {
        let me = self.clone();
        let running = self.background.clone().try_read_owned().ok();
        tokio::spawn(async move {
            let _running = running;
            if answer.is_some() {
                if let Some(names) = me.install_saved(storage.as_ref()).await {
                    if let Some(answer) = answer.take() {
                        let _ = answer.send(Ok(names));
                    }
                }
            }
            let listed = me.list(storage.as_ref(), guard).await;
            match (answer, listed) {
                (Some(answer), listed) => drop(answer.send(listed)),
                (None, Ok(_)) => {}
                (None, Err(error)) => {
                    tracing::warn!(%error, "reading the repository names again failed");
                }
            }
            if let Err(error) = me.save(storage.as_ref()).await {
                tracing::warn!(%error, "saving the repository index failed");
            }
        });
    }

    /// The cached names, if fresh (or, with `fresh` false, if stale).
    fn cached_names(&self, fresh: bool) -> Option<Arc<Vec<RepoName>>> {
        let state = self.lock();
        let names = state.names.as_ref()?;
        (fresh == names.fresh(self.ttl)).then(|| names.value.clone())
    }

    fn any_names(&self) -> Option<Arc<Vec<RepoName>>> {
        self.lock().names.as_ref().map(|n| n.value.clone())
    }

    /// Takes the saved index as the (stale) names and figures, with the changes made since
    /// start-up replayed over it; `None` when there is none to take.
    async fn install_saved(&self, storage: &dyn Storage) -> Option<Arc<Vec<RepoName>>> {
        // Nothing to replay the changes over once a walk began: not worth a read.
        self.lock().early.as_ref()?;
        let (Saved { mut names, figures }, print) = saved::load(storage).await?;
        let names = {
            let mut state = self.lock();
            let early = state.early.take()?;
            let mut changed = HashSet::new();
            for (repo, present) in early {
                if let Some(present) = present {
                    apply(&mut names, &repo, present);
                }
                changed.insert(repo);
            }
            for (repo, value) in figures {
                if !changed.contains(&repo) {
                    let value = Arc::new(value);
                    state.figures.insert(repo, Timed { value, at: None });
                }
            }
            let names = Arc::new(names);
            state.names = Some(Timed {
                value: names.clone(),
                at: None,
            });
            names
        };
        // What storage holds is this; no need to write it back unchanged.
        *self.saving.lock().await = Some(print);
        Some(names)
    }

    /// Saves the names and the figures known (after each walk, and when the server stops),
    /// unless storage holds that already. Nothing is saved before the names were read, nor
    /// an empty index where none was saved.
    pub async fn save(&self, storage: &dyn Storage) -> StorageResult<()> {
        let mut saving = self.saving.lock().await;
        let bytes = {
            let state = self.lock();
            let Some(names) = &state.names else {
                return Ok(());
            };
            if names.value.is_empty() && saving.is_none() {
                return Ok(());
            }
            saved::encode(&names.value, |n| {
                state.figures.get(n).map(|f| f.value.as_ref())
            })
        };
        let print = saved::fingerprint(&bytes);
        if *saving == Some(print) {
            return Ok(());
        }
        saved::save(storage, bytes).await?;
        *saving = Some(print);
        Ok(())
    }

    /// Reads the names from storage and keeps them, with what changed meanwhile.
    async fn list(
        &self,
        storage: &dyn Storage,
        _reading: OwnedMutexGuard<()>,
    ) -> StorageResult<Arc<Vec<RepoName>>> {
        {
            let mut state = self.lock();
            state.during_listing = Some(Vec::new());
            // The walk sees every change made so far (they were durable before noted).
            state.early = None;
        }
        let listed = storage.list_repositories().await;
        let mut state = self.lock();
        let changes = state.during_listing.take().unwrap_or_default();
        let mut names = listed?;
        names.sort();
        for (repo, present) in changes {
            apply(&mut names, &repo, present);
        }
        let names = Arc::new(names);
        state.names = Some(Timed::now(names.clone()));
        Ok(names)
    }

    /// The figures of `repos`, in order: kept ones, stale ones (read again in the
    /// background), and the rest read now.
    pub async fn figures(
        self: &Arc<Self>,
        storage: &Arc<dyn Storage>,
        repos: &[RepoName],
    ) -> StorageResult<Vec<Arc<RepoStats>>> {
        let (generation, mut out, missing, stale) = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let mut out = Vec::with_capacity(repos.len());
            let (mut missing, mut stale) = (Vec::new(), Vec::new());
            for repo in repos {
                match state.figures.get(repo) {
                    Some(kept) => {
                        if !kept.fresh(self.ttl) && state.refreshing.insert(repo.clone()) {
                            stale.push(repo.clone());
                        }
                        out.push(Some(kept.value.clone()));
                    }
                    None => {
                        missing.push(repo.clone());
                        out.push(None);
                    }
                }
            }
            (state.generation, out, missing, stale)
        };
        let read = read_all(storage.as_ref(), missing.clone()).await?;
        self.keep(
            generation,
            missing.iter().cloned().zip(read.iter().cloned()),
        );
        let mut read = read.into_iter();
        for slot in out.iter_mut().filter(|s| s.is_none()) {
            *slot = read.next();
        }
        if !stale.is_empty() {
            self.refresh(storage.clone(), stale);
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Reads `repos`' figures again in the background.
    fn refresh(self: &Arc<Self>, storage: Arc<dyn Storage>, repos: Vec<RepoName>) {
        let me = self.clone();
        let running = self.background.clone().try_read_owned().ok();
        tokio::spawn(async move {
            let _running = running;
            let generation = me.lock().generation;
            let read = read_all(storage.as_ref(), repos.clone()).await;
            match read {
                Ok(read) => me.keep(generation, repos.iter().cloned().zip(read)),
                Err(error) => tracing::warn!(%error, "reading repository figures again failed"),
            }
            let mut state = me.lock();
            for repo in &repos {
                state.refreshing.remove(repo);
            }
        });
    }

    /// Keeps figures read under `generation`, unless something changed since.
    fn keep(&self, generation: u64, read: impl Iterator<Item = (RepoName, Arc<RepoStats>)>) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        if state.figures.len() >= MAX_FIGURES {
            state.figures.clear();
        }
        for (repo, value) in read {
            state.figures.insert(repo, Timed::now(value));
        }
    }
}

impl State {
    /// Keeps a change for the saved index while no walk has begun (see `early`).
    fn note_early(&mut self, repo: &RepoName, present: Option<bool>) {
        if self.names.is_some() {
            return;
        }
        match &mut self.early {
            Some(early) if early.len() < MAX_EARLY => early.push((repo.clone(), present)),
            _ => self.early = None,
        }
    }
}

/// Adds `repo` to the sorted `names`, or removes it.
fn apply(names: &mut Vec<RepoName>, repo: &RepoName, present: bool) {
    match (names.binary_search(repo), present) {
        (Err(at), true) => names.insert(at, repo.clone()),
        (Ok(at), false) => drop(names.remove(at)),
        (Ok(_), true) | (Err(_), false) => {}
    }
}

/// Boxed one by one: futures made by a closure over a borrowed storage trip up the `Send`
/// proof `tokio::spawn` needs.
type Read<'a, T> = futures_util::future::BoxFuture<'a, StorageResult<T>>;

/// Runs `reads` [`CONCURRENT_READS`] at a time; their results in order.
async fn concurrently<T>(reads: Vec<Read<'_, T>>) -> StorageResult<Vec<T>> {
    let mut out = Vec::with_capacity(reads.len());
    let mut running = futures_util::stream::iter(reads).buffered(CONCURRENT_READS);
    while let Some(done) = running.next().await {
        out.push(done?);
    }
    Ok(out)
}

/// The figures of each of `repos`, read from storage.
async fn read_all(
    storage: &dyn Storage,
    repos: Vec<RepoName>,
) -> StorageResult<Vec<Arc<RepoStats>>> {
    let mut reads: Vec<Read<'_, Arc<RepoStats>>> = Vec::new();
    for repo in repos {
        reads.push(Box::pin(async move {
            Ok(Arc::new(read_figures(storage, &repo).await?))
        }));
    }
    concurrently(reads).await
}

/// One repository's figures: its tags, when each was written, and the blobs they reach.
pub(super) async fn read_figures(
    storage: &dyn Storage,
    repo: &RepoName,
) -> StorageResult<RepoStats> {
    let Some(tags) = storage.list_tags(repo).await? else {
        return Ok(RepoStats::default());
    };
    let mut reads: Vec<Read<'_, _>> = Vec::new();
    for tag in &tags {
        reads.push(storage.read_tag_dated(repo, tag));
    }
    let dated: Vec<_> = concurrently(reads).await?.into_iter().flatten().collect();
    let last_push = dated.iter().filter_map(|(_, at)| *at).max();
    let manifests: BTreeSet<Digest> = dated.into_iter().map(|(d, _)| d).collect();
    let mut reads: Vec<Read<'_, _>> = Vec::new();
    for digest in manifests {
        reads.push(Box::pin(async move { blobs_of(storage, &digest).await }));
    }
    let blobs: HashMap<String, u64> = concurrently(reads).await?.into_iter().flatten().collect();
    Ok(RepoStats {
        tags: tags.len(),
        size: blobs.values().sum(),
        last_push,
    })
}

/// The blobs a manifest reaches with their sizes: itself, its config and layers, and for an
/// index each image it lists with theirs.
async fn blobs_of(storage: &dyn Storage, digest: &Digest) -> StorageResult<Vec<(String, u64)>> {
    let Some((mut out, children)) = manifest_blobs(storage, digest).await? else {
        return Ok(Vec::new());
    };
    for child in children {
        let Ok(child) = Digest::parse(&child.digest) else {
            continue;
        };
        if let Some((blobs, _)) = manifest_blobs(storage, &child).await? {
            out.extend(blobs);
        }
    }
    Ok(out)
}

/// A manifest's own blobs (itself, config, layers) and, for an index, the images it lists.
async fn manifest_blobs(
    storage: &dyn Storage,
    digest: &Digest,
) -> StorageResult<Option<(Vec<(String, u64)>, Vec<Descriptor>)>> {
    let Some(raw) = storage.read_small_blob(digest).await? else {
        return Ok(None);
    };
    let parsed: RawManifest = serde_json::from_slice(&raw).unwrap_or_default();
    let mut blobs = vec![(digest.to_string(), raw.len() as u64)];
    blobs.extend(
        parsed
            .config
            .iter()
            .chain(&parsed.layers)
            .map(|d| (d.digest.clone(), d.size)),
    );
    Ok(Some((blobs, parsed.manifests.unwrap_or_default())))
}
