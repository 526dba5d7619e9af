//! Listeners, accept loops, connections and graceful shutdown.
//!
//! [`Server::bind`] builds everything and binds every listener, returning only when they
//! are all accepting, so callers (and tests) can read the real addresses at once.
//! [`Server::run`] serves until the shutdown future completes, then stops accepting and
//! lets in-flight requests finish for the configured grace period.

mod maintenance;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::Config;
use crate::gateway::{ConnInfo, Gateway};
use crate::registry::storage::fs::FsStorage;
use crate::registry::{Registry, RegistryOptions};

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open storage root {path}: {source}")]
    Storage { path: String, source: io::Error },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
}

pub struct Server {
    listeners: Vec<TcpListener>,
    gateway: Arc<Gateway>,
    registry: Arc<Registry>,
    config: Config,
}

impl Server {
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        let root = config.storage.root.clone();
        let storage = tokio::task::spawn_blocking(move || FsStorage::open(&root))
            .await
            .map_err(io::Error::other)
            .and_then(|r| r)
            .map_err(|source| ServerError::Storage {
                path: config.storage.root.display().to_string(),
                source,
            })?;
        let registry = Arc::new(Registry::new(
            Arc::new(storage),
            RegistryOptions {
                max_manifest_bytes: config.registry.max_manifest_bytes,
                manifest_cache_bytes: config.registry.manifest_cache_bytes,
            },
        ));
        maintenance::purge_uploads_once(&registry, config.storage.upload_max_age).await;
        let gateway = Arc::new(Gateway::new(registry.clone(), config.log.access_log));
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let listener =
                TcpListener::bind(l.address)
                    .await
                    .map_err(|source| ServerError::Bind {
                        address: l.address,
                        source,
                    })?;
            listeners.push(listener);
        }
        Ok(Self {
            listeners,
            gateway,
            registry,
            config,
        })
    }

    /// The bound addresses, in config order (with real ports where the config said 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests for up to the
    /// configured grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let mut loops = Vec::new();
        for listener in self.listeners {
            loops.push(tokio::spawn(accept_loop(
                listener,
                self.gateway.clone(),
                graceful.clone(),
                stop_rx.clone(),
            )));
        }
        let purge = tokio::spawn(maintenance::purge_uploads_forever(
            self.registry.clone(),
            self.config.storage.upload_max_age,
        ));

        shutdown.await;
        tracing::info!("shutting down: no new connections; draining in-flight requests");
        let _ = stop_tx.send(true);
        for l in loops {
            let _ = l.await;
        }
        purge.abort();
        let Ok(graceful) = Arc::try_unwrap(graceful) else {
            tracing::error!("connections still referenced the shutdown watcher; exiting now");
            return;
        };
        let grace = self.config.shutdown_grace;
        match tokio::time::timeout(grace, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => tracing::warn!(?grace, "grace period over; closing remaining connections"),
        }
    }
}

/// Accepts until told to stop. Errors (out of file descriptors, aborted handshakes) are
/// logged and followed by a short, growing pause: they never end the loop.
async fn accept_loop(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    let local = listener.local_addr().ok();
    let mut backoff = Duration::from_millis(5);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(5);
                    let Some(local) = local else { continue };
                    serve_connection(stream, ConnInfo { peer, local }, gateway.clone(), &graceful);
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

fn serve_connection(
    stream: TcpStream,
    conn: ConnInfo,
    gateway: Arc<Gateway>,
    graceful: &GracefulShutdown,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let gateway = gateway.clone();
        async move { Ok::<_, std::convert::Infallible>(gateway.handle(req, conn).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .into_owned();
    let connection = graceful.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(peer = %conn.peer, %error, "connection ended with an error");
        }
    });
}
