//! Listeners, accept loops, connections and graceful shutdown.
//!
//! [`Server::bind`] builds everything (storage, registries, certificates, the gateway) and
//! binds every listener, returning only when they are all accepting, so callers (and tests)
//! can read the real addresses at once. [`Server::run`] serves until the shutdown future
//! completes, then stops accepting and lets in-flight requests finish for the configured
//! grace period.

mod conn;
mod maintenance;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, Limits, ListenerConfig, RouteTarget};
use crate::gateway::Gateway;
use crate::registry::storage::fs::FsStorage;
use crate::registry::{Registry, RegistryOptions};
use crate::tls::acceptor::TlsServers;
use crate::tls::error::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open storage root {path}: {source}")]
    Storage { path: String, source: io::Error },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Upstream(#[from] crate::gateway::proxy::ProxyError),
}

/// What every connection needs.
pub(crate) struct Shared {
    gateway: Arc<Gateway>,
    tls: Option<TlsServers>,
    limits: Limits,
}

pub struct Server {
    listeners: Vec<(TcpListener, ListenerConfig)>,
    shared: Arc<Shared>,
    registries: Vec<Arc<Registry>>,
    config: Config,
}

impl Server {
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let registries = open_registries(&config).await?;
        for registry in registries.values() {
            maintenance::purge_uploads_once(registry, config.storage.upload_max_age).await;
        }
        let gateway = Arc::new(Gateway::new(&config, &registries)?);
        let tls = match config.servers.iter().any(|s| s.tls.is_some()) {
            true => {
                let (servers, ca_dir) = (config.servers.clone(), config.ca_dir.clone());
                let tls = tokio::task::spawn_blocking(move || TlsServers::load(&servers, &ca_dir))
                    .await
                    .map_err(|e| ServerError::Storage {
                        path: "certificates".into(),
                        source: io::Error::other(e),
                    })??;
                Some(tls)
            }
            false => None,
        };
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let listener =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| ServerError::Bind {
                        address: l.address,
                        source,
                    })?;
            listeners.push((listener, l.clone()));
        }
        Ok(Self {
            listeners,
            shared: Arc::new(Shared {
                gateway,
                tls,
                limits: config.limits.clone(),
            }),
            registries: registries.into_values().collect(),
            config,
        })
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
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let mut loops = Vec::new();
        for (listener, config) in self.listeners {
            loops.push(tokio::spawn(accept_loop(
                listener,
                config,
                self.shared.clone(),
                graceful.clone(),
                stop_rx.clone(),
            )));
        }
        let purges: Vec<_> = self
            .registries
            .iter()
            .map(|r| {
                tokio::spawn(maintenance::purge_uploads_forever(
                    r.clone(),
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
        // The accept loops are gone, so this is the last reference.
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            tracing::error!("the shutdown watcher is still shared; exiting without draining");
            return;
        };
        let grace = self.config.shutdown_grace;
        match tokio::time::timeout(grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
        }
    }
}

/// One registry engine per distinct storage root named by a route.
async fn open_registries(config: &Config) -> Result<HashMap<PathBuf, Arc<Registry>>, ServerError> {
    let mut out = HashMap::new();
    let roots = config
        .servers
        .iter()
        .flat_map(|s| &s.routes)
        .filter_map(|r| match &r.target {
            RouteTarget::Registry { root } => Some(root.clone()),
            RouteTarget::Upstream { .. } | RouteTarget::Redirect { .. } => None,
        });
    for root in roots {
        if out.contains_key(&root) {
            continue;
        }
        let r = root.clone();
        let storage = tokio::task::spawn_blocking(move || FsStorage::open(&r))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|source| ServerError::Storage {
                path: root.display().to_string(),
                source,
            })?;
        let options = RegistryOptions {
            max_manifest_bytes: config.registry.max_manifest_bytes,
            manifest_cache_bytes: config.registry.manifest_cache_bytes,
        };
        out.insert(root, Arc::new(Registry::new(Arc::new(storage), options)));
    }
    Ok(out)
}

/// Accepts until told to stop. Errors (out of file descriptors, aborted connections) are
/// logged and followed by a short, growing pause: they never end the loop.
async fn accept_loop(
    listener: TcpListener,
    config: ListenerConfig,
    shared: Arc<Shared>,
    graceful: Arc<GracefulShutdown>,
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
                    tokio::spawn(conn::serve(stream, peer, local, config.clone(), shared.clone(), graceful.watcher()));
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
