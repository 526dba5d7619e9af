//! Listeners, accept loops, connections and graceful shutdown.
//!
//! [`Server::bind`] builds everything (storage, registries, certificates, the gateway) and
//! binds every listener, returning only when they are all accepting, so callers (and tests)
//! can read the real addresses at once. [`Server::run`] serves until the shutdown future
//! completes, then stops accepting and lets in-flight requests finish for the configured
//! grace period.

mod admin;
mod allocator;
mod collector;
pub(crate) mod conn;
mod conn_limit;
mod drain;
mod idle;
mod maintenance;
mod notifications;
pub(crate) mod plain_on_tls;
mod transport;
mod window_budget;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, Limits, ListenerConfig, StorageBackend, StorageConfig};
use crate::events::metrics::EventMetrics;
use crate::gateway::metrics::Metrics;
use crate::gateway::Gateway;
use crate::registry::storage::fs::FsStorage;
use crate::registry::storage::object::ObjectStorage;
use crate::registry::storage::Storage;
use crate::registry::{Registry, RegistryOptions};
use crate::tls::acceptor::TlsServers;
use crate::tls::error::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    // The cause is part of the message, so it is not also the error's `source()`: a chain
    // printer (`{:#}`, anyhow) would say it twice.
    #[error("cannot open storage root {path}: {cause}")]
    Storage { path: String, cause: io::Error },
    #[error("cannot start notifications: {cause}")]
    Notifications { cause: io::Error },
    #[error("cannot listen on {address}: {cause}")]
    Bind {
        address: SocketAddr,
        cause: io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("{keys} changed: that needs a restart, so nothing of this reload was applied (restore the running values to reload the rest)")]
    RestartNeeded { keys: String },
}

/// What every connection needs.
pub(crate) struct Shared {
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
    tls: Option<TlsServers>,
    limits: Limits,
    /// HTTP/2 windows for all connections; the one budget, kept across reloads.
    windows: Arc<window_budget::WindowBudget>,
    /// How long shutdown waits for requests in progress; the latest config's, so a
    /// reload changes it.
    shutdown_grace: Duration,
}

pub struct Server {
    listeners: Vec<(TcpListener, ListenerConfig)>,
    /// Serves `/metrics`, when configured.
    admin: Option<TcpListener>,
    state: Arc<State>,
    config: Config,
}

/// The current configuration's runtime pieces. Each connection takes a snapshot when it
/// is accepted, so a reload never disturbs connections already running.
struct State {
    current: RwLock<Arc<Shared>>,
    /// Kept across reloads, so counters never reset while the process lives.
    metrics: Arc<Metrics>,
    /// Open connections per client IP, across all listeners.
    conn_limit: Arc<conn_limit::ConnLimiter>,
    /// The HTTP/2 window budget, across listeners; its total follows reloads, and leases
    /// of connections accepted before one count against the new total.
    windows: Arc<window_budget::WindowBudget>,
    /// Registry engines by storage root, kept across reloads: an engine owns the upload
    /// sessions' locks and the manifest cache of its root, so there must be one per root.
    registries: Mutex<HashMap<PathBuf, Arc<Registry>>>,
    /// The notifications of each root, started with its engine.
    outboxes: Arc<notifications::Outboxes>,
    /// The garbage collector of each root, started when the server runs.
    collectors: collector::Collectors,
    /// The config the server runs with (its latest reload's).
    config: Mutex<Config>,
}

impl State {
    fn snapshot(&self) -> Arc<Shared> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Applies a new configuration to a running server (what SIGHUP does).
#[derive(Clone)]
pub struct Reloader {
    state: Arc<State>,
    listeners: Vec<ListenerConfig>,
    /// What the engines run with; changes to it are refused (see `keys_needing_restart`).
    storage: StorageConfig,
}

impl Reloader {
    /// Builds everything the new config needs (opening new storage roots, loading or
    /// issuing certificates) and then switches to it. On any error nothing changes.
    /// Listener addresses are not rebound: changing them needs a restart.
    pub async fn reload(&self, config: Config) -> Result<(), ServerError> {
        let listeners_changed = config.listeners.len() != self.listeners.len()
            || config
                .listeners
                .iter()
                .zip(&self.listeners)
                .any(|(a, b)| a.address != b.address || a.tls != b.tls || a.plain != b.plain);
        if listeners_changed {
            tracing::warn!(
                "listener changes take effect after a restart; keeping the current listeners"
            );
        }
        let restart = self.storage.keys_needing_restart(&config.storage);
        if !restart.is_empty() {
            return Err(ServerError::RestartNeeded {
                keys: restart.join(", "),
            });
        }
        let known = self
            .state
            .registries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let registries = open_registries(&config, known, &self.state.outboxes).await?;
        let kept = self.state.snapshot().gateway.mirrors();
        let windows = self.state.windows.clone();
        let shared = build_shared(
            &config,
            &registries,
            self.state.metrics.clone(),
            &kept,
            windows,
        )
        .await?;
        *self
            .state
            .registries
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = registries;
        self.state.conn_limit.set_caps(caps_of(&config.limits));
        self.state
            .windows
            .set_total(config.limits.http2_window_budget);
        self.state
            .collectors
            .apply(&config, &registries_now(&self.state));
        *self.state.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        *self
            .state
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(shared);
        Ok(())
    }
}

impl Server {
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        allocator::tune();
        let mut metrics = Metrics::new();
        let event_metrics = EventMetrics::default();
        event_metrics.register(metrics.registry_mut());
        let gc_metrics = crate::gc::metrics::GcMetrics::default();
        gc_metrics.register(metrics.registry_mut());
        let metrics = Arc::new(metrics);
        let outboxes = Arc::new(notifications::Outboxes::new(
            config.notifications.clone(),
            event_metrics,
        ));
        let registries = open_registries(&config, HashMap::new(), &outboxes).await?;
        for registry in registries.values() {
            maintenance::purge_uploads_at_start(registry, config.storage.upload_max_age).await;
        }
        let windows = window_budget::WindowBudget::new(
            config.limits.http2_window_budget,
            metrics.http2_windows.clone(),
        );
        let shared =
            build_shared(&config, &registries, metrics.clone(), &[], windows.clone()).await?;
        let admin = match config.admin_address {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .map_err(|cause| ServerError::Bind { address, cause })?,
            ),
            None => None,
        };
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let listener =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|cause| ServerError::Bind {
                        address: l.address,
                        cause,
                    })?;
            listeners.push((listener, l.clone()));
        }
        Ok(Self {
            listeners,
            admin,
            state: Arc::new(State {
                metrics,
                current: RwLock::new(Arc::new(shared)),
                conn_limit: conn_limit::ConnLimiter::new(caps_of(&config.limits)),
                windows,
                registries: Mutex::new(registries),
                outboxes,
                collectors: collector::Collectors::new(gc_metrics),
                config: Mutex::new(config.clone()),
            }),
            config,
        })
    }

    /// A handle that applies new configurations while the server runs.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            state: self.state.clone(),
            listeners: self.config.listeners.clone(),
            storage: self.config.storage.clone(),
        }
    }

    /// The admin listener's address, when one is configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound addresses, in config order (with real ports where the config said 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for up to the
    /// configured grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        // Every accept loop and connection holds a receiver: once they are all gone,
        // everything has closed.
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut loops = Vec::new();
        if let Some(admin) = self.admin {
            let (metrics, stop) = (self.state.metrics.clone(), stop_rx.clone());
            loops.push(tokio::spawn(admin::serve(admin, metrics, stop)));
        }
        for (listener, config) in self.listeners {
            loops.push(tokio::spawn(accept_loop(
                listener,
                config,
                self.state.clone(),
                stop_rx.clone(),
            )));
        }
        let config = self
            .state
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.state
            .collectors
            .apply(&config, &registries_now(&self.state));
        let registries: Vec<_> = registries_now(&self.state).into_values().collect();
        let purges: Vec<_> = registries
            .into_iter()
            .map(|r| {
                tokio::spawn(maintenance::purge_uploads_forever(
                    r,
                    self.config.storage.upload_max_age,
                ))
            })
            .collect();

        shutdown.await;
        tracing::info!("shutting down: no new connections; draining in-flight requests");
        let _ = stop_tx.send(true);
        for l in loops {
            let _ = l.await;
        }
        purges.iter().for_each(|p| p.abort());
        self.state.collectors.shutdown();
        drop(stop_rx);
        let grace = self.state.snapshot().shutdown_grace;
        match tokio::time::timeout(grace, stop_tx.closed()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
        }
        self.state.outboxes.shutdown().await;
        save_indexes(&self.state.registries).await;
    }
}

/// How long a stopping server gives the repository indexes to be saved.
const SAVE_INDEX_WITHIN: Duration = Duration::from_secs(5);

/// Saves each engine's repository index with the figures this run learnt, so the next
/// start lists them at once (`registry/service/catalog_saved.rs`). Bounded: a store that
/// does not answer does not hold the exit up.
async fn save_indexes(registries: &Mutex<HashMap<PathBuf, Arc<Registry>>>) {
    let engines: Vec<_> = (registries.lock())
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    for engine in engines {
        let saving = engine.service().catalog().save(engine.storage().as_ref());
        match tokio::time::timeout(SAVE_INDEX_WITHIN, saving).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "saving the repository index failed"),
            Err(_) => tracing::warn!("saving the repository index took too long; not saved"),
        }
    }
}

/// The engines by storage root, as the latest reload left them.
fn registries_now(state: &State) -> HashMap<PathBuf, Arc<Registry>> {
    state
        .registries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// The gateway and certificates for a configuration.
async fn build_shared(
    config: &Config,
    registries: &HashMap<PathBuf, Arc<Registry>>,
    metrics: Arc<Metrics>,
    kept_mirrors: &[Arc<crate::mirror::Mirror>],
    windows: Arc<window_budget::WindowBudget>,
) -> Result<Shared, ServerError> {
    let gateway = Arc::new(Gateway::new(
        config,
        registries,
        metrics.clone(),
        kept_mirrors,
    )?);
    let tls = match config.servers.iter().any(|s| s.tls.is_some()) {
        true => {
            let (servers, ca_dir) = (config.servers.clone(), config.ca_dir.clone());
            let loaded = tokio::task::spawn_blocking(move || TlsServers::load(&servers, &ca_dir))
                .await
                .map_err(|e| ServerError::Storage {
                    path: "certificates".into(),
                    cause: io::Error::other(e),
                })??;
            Some(loaded)
        }
        false => None,
    };
    Ok(Shared {
        gateway,
        metrics,
        tls,
        limits: config.limits.clone(),
        windows,
        shutdown_grace: config.shutdown_grace,
    })
}

/// One registry engine per distinct storage root named by a route; engines in `known` are
/// reused, and roots no route names any more are dropped.
async fn open_registries(
    config: &Config,
    known: HashMap<PathBuf, Arc<Registry>>,
    outboxes: &notifications::Outboxes,
) -> Result<HashMap<PathBuf, Arc<Registry>>, ServerError> {
    let mut out = HashMap::new();
    let roots = config
        .servers
        .iter()
        .flat_map(|s| &s.routes)
        .filter_map(|r| r.target.root().map(Path::to_path_buf));
    let options = RegistryOptions {
        max_manifest_bytes: config.registry.max_manifest_bytes,
        manifest_cache_bytes: config.registry.manifest_cache_bytes,
        immutable: config.immutable.clone(),
    };
    for root in roots {
        if out.contains_key(&root) {
            continue;
        }
        let engine = match known.get(&root) {
            Some(existing)
                if *existing.options() == options
                    && existing.service().gc_grace() == config.gc.grace =>
            {
                existing.clone()
            }
            // New `[registry]` limits or `gc.grace` (how often pushes touch blobs): a new
            // engine (and manifest cache) on the same storage, announcing its events where
            // the old one did.
            Some(existing) => Arc::new(
                Registry::new(existing.storage().clone(), options.clone())
                    .with_events(existing.events().clone())
                    .sharing_catalog_of(existing)
                    .with_gc_grace(config.gc.grace),
            ),
            None => {
                let storage = open_storage(&config.storage.backend, &root).await?;
                let events = outboxes.start(&storage)?;
                let engine = Registry::new(storage, options.clone()).with_events(events);
                Arc::new(engine.with_gc_grace(config.gc.grace))
            }
        };
        out.insert(root, engine);
    }
    Ok(out)
}

/// The one place a backend is chosen: a directory, or a key prefix in the bucket.
pub async fn open_storage(
    backend: &StorageBackend,
    root: &Path,
) -> Result<Arc<dyn Storage>, ServerError> {
    let (r, b) = (root.to_path_buf(), backend.clone());
    let opened = tokio::task::spawn_blocking(move || -> io::Result<Arc<dyn Storage>> {
        Ok(match &b {
            StorageBackend::Filesystem => Arc::new(FsStorage::open(&r)?),
            StorageBackend::S3(s3) => Arc::new(ObjectStorage::open_s3(s3, &r)?),
            StorageBackend::Azure(azure) => Arc::new(ObjectStorage::open_azure(azure, &r)?),
        })
    })
    .await
    .map_err(io::Error::other)
    .and_then(|r| r);
    opened.map_err(|cause| ServerError::Storage {
        path: describe_root(backend, root),
        cause,
    })
}

/// A storage root as people name it: a directory, `s3://bucket/prefix` or
/// `azure://account/container/prefix`.
pub fn describe_root(backend: &StorageBackend, root: &Path) -> String {
    let (place, prefix) = match backend {
        StorageBackend::Filesystem => return root.display().to_string(),
        StorageBackend::S3(s3) => (format!("s3://{}", s3.bucket), &s3.prefix),
        StorageBackend::Azure(a) => (format!("azure://{}/{}", a.account, a.container), &a.prefix),
    };
    let parts = [prefix.as_str(), root.to_str().unwrap_or_default()];
    let prefix: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
    format!("{place}/{}", prefix.join("/"))
}

/// Accepts until told to stop. Errors (out of file descriptors, aborted connections) are
/// logged and followed by a short, growing pause: they never end the loop.
async fn accept_loop(
    listener: TcpListener,
    config: ListenerConfig,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(local) = listener.local_addr() else {
        return;
    };
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    // Refused before any TLS or HTTP work: closing costs the client its
                    // connection, and costs us nothing.
                    let guard = match state.conn_limit.try_acquire(peer.ip()) {
                        Ok(guard) => guard,
                        Err(refused) => {
                            refuse(&state, peer, refused);
                            continue;
                        }
                    };
                    let serve = conn::serve(stream, peer, local, config.clone(), state.snapshot(), stop.clone());
                    tokio::spawn(async move {
                        serve.await;
                        drop(guard);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "accept failed; pausing");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// Logs and counts a connection closed by a connection cap.
fn refuse(state: &State, peer: SocketAddr, refused: conn_limit::Refused) {
    match refused {
        conn_limit::Refused::PerClient => {
            tracing::warn!(client = %peer.ip(), "connection refused: too many open connections from this client");
            state.metrics.connection_refused("per_ip");
        }
        conn_limit::Refused::Total { first } => {
            if first {
                tracing::warn!(
                    client = %peer.ip(),
                    "limits.max_connections reached: refusing new connections until some close"
                );
            }
            state.metrics.connection_refused("total");
        }
    }
}

/// The connection caps a config asks for.
fn caps_of(limits: &Limits) -> conn_limit::Caps {
    conn_limit::Caps {
        per_client: limits.max_connections_per_ip,
        total: limits.max_connections,
        exempt: limits.trusted_proxies.clone(),
    }
}
