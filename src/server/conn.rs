//! One connection: tell TLS from plain HTTP, finish the TLS handshake under its deadline,
//! then serve HTTP/1.1 or HTTP/2 with hyper-util until the client or shutdown ends it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{drain, Shared};
use crate::config::{ListenerConfig, TlsMode};
use crate::gateway::ConnInfo;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: ListenerConfig,
    shared: Arc<Shared>,
    watcher: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let deadline = shared.limits.tls_handshake_timeout;
    let use_tls = match listener.tls {
        TlsMode::Off => false,
        TlsMode::On => true,
        TlsMode::Auto => match starts_with_tls(&stream, deadline).await {
            Some(tls) => tls,
            None => return, // the client sent nothing in time, or left
        },
    };
    let base = ConnInfo {
        peer,
        local,
        tls: None,
        plain: listener.plain,
    };
    if !use_tls {
        http(TokioIo::new(stream), base, shared, watcher).await;
        return;
    }
    let Some(tls) = shared.tls.as_ref() else {
        tracing::warn!(%peer, "TLS connection on a listener without certificates");
        return;
    };
    match tls.accept(stream, local, deadline).await {
        Ok((stream, info)) => {
            shared.metrics.tls_handshake("ok");
            let conn = ConnInfo {
                tls: Some(info),
                ..base
            };
            http(TokioIo::new(stream), conn, shared, watcher).await;
        }
        Err(error) => {
            shared.metrics.tls_handshake(error.outcome());
            tracing::debug!(%peer, %error, "TLS connection not established");
        }
    }
}

/// Peeks at the first byte without consuming it.
async fn starts_with_tls(stream: &TcpStream, deadline: Duration) -> Option<bool> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == TLS_HANDSHAKE_RECORD),
        _ => None,
    }
}

async fn http<I>(io: TokioIo<I>, conn: ConnInfo, shared: Arc<Shared>, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = Arc::new(conn);
    let peer = conn.peer;
    let gateway = shared.gateway.clone();
    let service = service_fn(move |req| {
        let (gateway, conn) = (gateway.clone(), conn.clone());
        async move {
            let response =
                drain::answer(req, |req| async move { gateway.handle(req, &conn).await });
            Ok::<_, std::convert::Infallible>(response.await)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    super::transport::tune(&mut builder, &shared.limits);
    let connection = builder.serve_connection(io, service).into_owned();
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
