//! A real S3 API on loopback for the S3 backend's tests: moto's server (`pip install
//! 'moto[server]'`), started once per test binary on a free port, one bucket per test.
//! Plus [`Outage`], a TCP relay a test can cut to take the store away mid-request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct Moto {
    addr: SocketAddr,
    buckets: AtomicU64,
}

/// The test binary's moto server, started on first use; `None` (with a printed skip) when
/// `moto_server` is missing outside CI.
pub fn shared() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(start).as_ref()
}

fn start() -> Option<Moto> {
    let addr =
        crate::support::start_emulator("moto_server", "pip install 'moto[server]'", |port| {
            ["-H", "127.0.0.1", "-p", &port.to_string()]
                .map(String::from)
                .to_vec()
        })?;
    Some(Moto {
        addr,
        buckets: AtomicU64::new(0),
    })
}

impl Moto {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates an empty bucket of its own for a test.
    pub fn new_bucket(&self) -> String {
        let n = self.buckets.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}-{n}", std::process::id());
        let status = http(self.addr, "PUT", &format!("/{name}")).expect("create bucket");
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "create bucket: {status}"
        );
        name
    }

    /// The whole answer (head and body) to an unsigned GET, such as a listing.
    pub fn get(&self, path: &str) -> String {
        exchange(self.addr, "GET", path).expect("GET from moto")
    }
}

/// One request without a body (moto takes unsigned requests); returns the status line.
fn http(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<String> {
    let out = exchange(addr, method, path)?;
    Ok(out.lines().next().unwrap_or_default().to_owned())
}

/// One request without a body; returns the whole answer.
fn exchange(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// A TCP relay in front of the store. [`Outage::cut`] drops every open connection and
/// refuses new ones, as a store that went away; [`Outage::stall`] keeps every connection
/// open but silent, as a store that accepts connections and never answers (a "black
/// hole"); [`Outage::restore`] brings it back.
pub struct Outage {
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    Cut,
    Stalled,
}

impl Outage {
    pub async fn start(target: SocketAddr) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Up);
        let relay = Arc::new(Self { addr, mode });
        let r = relay.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mode = *r.mode.borrow();
                match mode {
                    Mode::Cut => {} // dropped: the connection is reset
                    Mode::Stalled => drop(tokio::spawn(silent(client, r.mode.subscribe()))),
                    Mode::Up => drop(tokio::spawn(forward(client, target, r.mode.subscribe()))),
                }
            }
        });
        relay
    }

    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stalled);
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Up);
    }
}

/// Relays one connection until the relay is cut or stalled.
async fn forward(
    mut client: tokio::net::TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<Mode>,
) {
    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        _ = mode.wait_for(|m| *m != Mode::Up) => {}
    }
    if *mode.borrow() == Mode::Stalled {
        silent(client, mode).await;
    }
}

/// Holds a connection open without a byte either way until the stall ends.
async fn silent(client: tokio::net::TcpStream, mut mode: watch::Receiver<Mode>) {
    let _ = mode.wait_for(|m| *m != Mode::Stalled).await;
    drop(client);
}
