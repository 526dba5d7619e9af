//! One connection: tell TLS from plain HTTP (answering plain requests on TLS-only ports
//! with a 400 that says to use https), finish the TLS handshake under its deadline,
//! then serve HTTP/1.1 or HTTP/2 with hyper-util until the client or shutdown ends it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::window_budget::{self, Lease, Windows};
use super::{drain, idle, plain_on_tls, transport, Shared};
use crate::config::{ListenerConfig, TlsMode};
use crate::gateway::ConnInfo;

/// The first byte of every TLS connection: a handshake record.
pub(crate) const TLS_HANDSHAKE_RECORD: u8 = 0x16;

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    listener: ListenerConfig,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let accepted = Instant::now();
    let deadline = shared.limits.tls_handshake_timeout;
    let use_tls = match listener.tls {
        TlsMode::Off => false,
        // Shutdown does not wait for a client that has not said a word.
        TlsMode::On | TlsMode::Auto => {
            match unless_stopped(&mut stop, starts_with_tls(&stream, deadline)).await {
                Some(Some(tls)) => tls,
                _ => return, // the client sent nothing in time, or left, or we are stopping
            }
        }
    };
    if listener.tls == TlsMode::On && !use_tls {
        plain_on_tls::answer(stream, peer, shared.limits.header_read_timeout).await;
        return;
    }
    // One deadline from accept, however long the first byte took.
    let deadline = deadline.saturating_sub(accepted.elapsed());
    let base = ConnInfo {
        peer,
        local,
        tls: None,
        plain: listener.plain,
    };
    if !use_tls {
        http(stream, base, shared, stop).await;
        return;
    }
    let Some(tls) = shared.tls.as_ref() else {
        tracing::warn!(%peer, "TLS connection on a listener without certificates");
        return;
    };
    let Some(handshake) = unless_stopped(&mut stop, tls.accept(stream, local, deadline)).await
    else {
        return;
    };
    match handshake {
        Ok((stream, info)) => {
            shared.metrics.tls_handshake("ok");
            let conn = ConnInfo {
                tls: Some(info),
                ..base
            };
            http(stream, conn, shared, stop).await;
        }
        Err(error) => {
            shared.metrics.tls_handshake(error.outcome());
            tracing::debug!(%peer, %error, "TLS connection not established");
        }
    }
}

/// `phase`'s outcome, or `None` when shutdown began first.
async fn unless_stopped<T>(
    stop: &mut watch::Receiver<bool>,
    phase: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        outcome = phase => Some(outcome),
        _ = stop.wait_for(|stop| *stop) => None,
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

/// A connection's HTTP/2 windows and its lease of `limits.http2_window_budget`. Only TLS
/// connections that chose h2 (ALPN) take a lease: HTTP/2 registry clients (docker, crane,
/// containerd) speak it over TLS, while a connection that chose HTTP/1.1, or a plain one
/// (nearly always HTTP/1.1; wharf cannot tell before hyper reads it), would hold a share
/// it never uses. Those get at most the floor: h2 without TLS is for nearby clients.
fn http2_windows(conn: &ConnInfo, shared: &Shared) -> (Windows, Option<Lease>) {
    let wanted = transport::wanted_windows(&shared.limits);
    let chose_h2 = conn.tls.as_ref().and_then(|t| t.alpn.as_deref()) == Some(b"h2");
    match chose_h2 {
        true => {
            let (windows, lease) = shared.windows.lease(wanted);
            (windows, Some(lease))
        }
        false => (window_budget::at_most_the_floor(wanted), None),
    }
}

async fn http<I>(io: I, conn: ConnInfo, shared: Arc<Shared>, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The lease is held until the connection ends.
    let (windows, _lease) = http2_windows(&conn, &shared);
    let conn = Arc::new(conn);
    let peer = conn.peer;
    let activity = idle::Activity::new();
    let gateway = shared.gateway.clone();
    let for_requests = activity.clone();
    let service = service_fn(move |req| {
        let (gateway, conn) = (gateway.clone(), conn.clone());
        let busy = idle::Busy::start(&for_requests, req.version());
        async move {
            let response =
                drain::answer(req, |req| async move { gateway.handle(req, &conn).await });
            let response = response.await.map(|body| idle::BusyBody::new(body, busy));
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // `idle::expired` keeps the header and keep-alive deadlines, for h2 too.
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    transport::tune(&mut builder, &shared.limits, windows);
    let io = TokioIo::new(idle::Watched::new(io, activity.clone()));
    let connection = builder.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let deadlines = idle::Deadlines {
        header_read: shared.limits.header_read_timeout,
        keepalive: shared.limits.keepalive_timeout,
    };
    let quiet_too_long = idle::expired(&activity, deadlines);
    let mut quiet_too_long = std::pin::pin!(quiet_too_long);
    let mut closing = false;
    // After a quiet deadline: a request head that never completed keeps hyper's h1
    // connection "in progress", so the goodbye (h2 GOAWAY) gets a moment, then it is cut.
    let mut cut_at: Option<Instant> = None;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stop| *stop), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = &mut quiet_too_long, if cut_at.is_none() => {
                tracing::debug!(%peer, "closing a connection that stayed quiet past its deadline");
                if !closing {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                cut_at = Some(Instant::now() + QUIET_CLOSE_GRACE);
            }
            () = sleep_until_some(cut_at) => return,
        }
    }
}

/// How long a connection closed for quietness may take to say goodbye.
const QUIET_CLOSE_GRACE: Duration = Duration::from_secs(1);

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
