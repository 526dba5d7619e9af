//! Terminating TLS: one rustls `ServerConfig` per server block, chosen per connection from
//! the ClientHello's SNI (or, without SNI, from the address the client connected to), with
//! the whole handshake under a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{Acceptor, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::error::TlsError;
use super::read_ahead::ReadAhead;
use crate::config::names::ServerName;
use crate::config::{find_server, ServerConfig, ServerTls};

/// Why a TLS connection did not get going. Logged and counted; never stops an accept loop.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
    #[error("TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    #[error("no server block with a certificate answers to {0:?}")]
    NoServer(String),
}

impl HandshakeError {
    /// A short label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            HandshakeError::Failed(_) => "failed",
            HandshakeError::Timeout(_) => "timeout",
            HandshakeError::NoServer(_) => "no_server",
        }
    }
}

/// What the handshake established, for routing and logs.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub sni: Option<String>,
    /// The server block whose certificate was presented.
    pub server: usize,
    pub alpn: Option<Vec<u8>>,
}

/// The TLS side of every server block that has a certificate.
pub struct TlsServers {
    servers: Vec<ServerConfig>,
    /// Indexed like `servers`; `None` for servers without TLS.
    configs: Vec<Option<Arc<rustls::ServerConfig>>>,
}

/// Always presents one certificate: each server block gets its own `ServerConfig`.
#[derive(Debug)]
struct OneCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl TlsServers {
    /// Loads (or, for self-signed servers, issues) every server's certificate.
    pub fn load(servers: &[ServerConfig], ca_dir: &Path) -> Result<Self, TlsError> {
        let mut configs = Vec::new();
        for server in servers {
            let key = match &server.tls {
                None => {
                    configs.push(None);
                    continue;
                }
                Some(ServerTls::Files { cert, key }) => super::pem::load_certified_key(cert, key)?,
                Some(ServerTls::SelfSigned) => {
                    let (cert, key) = self_signed_leaf(ca_dir, &server.names)?;
                    super::pem::load_certified_key(&cert, &key)?
                }
            };
            configs.push(Some(server_config(Arc::new(key))));
        }
        Ok(Self {
            servers: servers.to_vec(),
            configs,
        })
    }

    /// Reads the ClientHello, picks the server, and completes the handshake, all within
    /// `deadline`. The socket is read through a [`ReadAhead`] buffer.
    pub async fn accept(
        &self,
        stream: TcpStream,
        local: SocketAddr,
        deadline: Duration,
    ) -> Result<(TlsStream<ReadAhead<TcpStream>>, TlsInfo), HandshakeError> {
        let handshake = async {
            let start = LazyConfigAcceptor::new(Acceptor::default(), ReadAhead::new(stream))
                .await
                .map_err(HandshakeError::Failed)?;
            let sni = start.client_hello().server_name().map(str::to_owned);
            let host = sni.clone().unwrap_or_else(|| local.ip().to_string());
            let (server, config) = find_server(&self.servers, &host)
                .and_then(|i| Some((i, self.configs[i].clone()?)))
                .ok_or_else(|| HandshakeError::NoServer(host.clone()))?;
            let stream = start
                .into_stream(config)
                .await
                .map_err(HandshakeError::Failed)?;
            let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            Ok((stream, TlsInfo { sni, server, alpn }))
        };
        tokio::time::timeout(deadline, handshake)
            .await
            .map_err(|_| HandshakeError::Timeout(deadline))?
    }
}

/// Issues (once) or reuses the leaf of a self-signed server, covering all its names.
fn self_signed_leaf(ca_dir: &Path, names: &[ServerName]) -> Result<(PathBuf, PathBuf), TlsError> {
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for n in names {
        match n {
            ServerName::Exact(_) | ServerName::Wildcard(_) => dns.push(n.to_string()),
            ServerName::Ip(ip) => ips.push(*ip),
        }
    }
    let label = names
        .first()
        .map(ToString::to_string)
        .unwrap_or_else(|| "default".into());
    let leaf = super::ca::ensure_leaf(ca_dir, ca_dir, &label, &dns, &ips)?;
    Ok((leaf.cert, leaf.key))
}

/// TLS 1.2 and 1.3 only (rustls never offers older versions), ALPN h2 then http/1.1.
fn server_config(key: Arc<CertifiedKey>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap_or_else(|_| {
            rustls::ServerConfig::builder_with_protocol_versions(&[
                &rustls::version::TLS13,
                &rustls::version::TLS12,
            ])
        });
    let mut config = builder
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCert(key)));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}
