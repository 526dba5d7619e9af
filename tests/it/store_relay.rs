//! An HTTP/1.1 relay in front of the object store that reads every request wharf sends:
//! it keeps a log of them (what a push or a pull costs, counted where the store sees it)
//! and can hold back the store's answer to a chosen request (a "trap"), so a test can kill
//! wharf after the store did the work and before wharf learned that it was done.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

type Matcher = Box<dyn Fn(&str) -> bool + Send>;

pub struct StoreRelay {
    pub addr: SocketAddr,
    /// One line per request: `METHOD /path?query`, plus ` copy` for a server-side copy.
    log: Mutex<Vec<String>>,
    trap: Mutex<Option<(Matcher, oneshot::Sender<String>)>>,
    /// Requests sent to the store and not yet answered, and the most there ever were.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// How long each answer is held back (so that concurrent requests overlap).
    delay: Mutex<Duration>,
}

impl StoreRelay {
    pub async fn start(target: SocketAddr) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Arc::new(Self {
            addr: listener.local_addr().unwrap(),
            log: Mutex::default(),
            trap: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            delay: Mutex::default(),
        });
        let r = relay.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay_connection(r.clone(), client, target));
            }
        });
        relay
    }

    /// Starts a relay in front of `store`'s object store and points the store's endpoint at it.
    pub async fn in_front_of(store: &mut crate::support::TestStore) -> Arc<Self> {
        let rest = store
            .endpoint
            .strip_prefix("http://")
            .expect("a plain HTTP store");
        let target = rest.split('/').next().unwrap().to_owned();
        let relay = Self::start(target.parse().unwrap()).await;
        store.endpoint = store.endpoint.replacen(&target, &relay.addr.to_string(), 1);
        relay
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Forgets the requests so far (to count one phase of a test).
    pub fn reset(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// Holds back every answer for `delay` from now on.
    pub fn delay_answers(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// The most requests that were ever waiting for the store at once, since the last call.
    pub fn take_max_in_flight(&self) -> usize {
        self.max_in_flight.swap(0, Ordering::SeqCst)
    }

    /// The next request `matches` accepts goes to the store, but its answer never comes
    /// back: the connection stays silent. The receiver gets the request's line once the
    /// store has answered.
    pub fn trap(
        &self,
        matches: impl Fn(&str) -> bool + Send + 'static,
    ) -> oneshot::Receiver<String> {
        let (tx, rx) = oneshot::channel();
        *self.trap.lock().unwrap() = Some((Box::new(matches), tx));
        rx
    }

    fn sprung(&self, line: &str) -> Option<oneshot::Sender<String>> {
        let mut trap = self.trap.lock().unwrap();
        match trap.as_ref() {
            Some((matches, _)) if matches(line) => trap.take().map(|(_, tx)| tx),
            _ => None,
        }
    }
}

/// How a message's body is delimited.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A message head: the raw bytes, the first line and the headers (names lowercased).
struct Head {
    raw: Vec<u8>,
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn framing(&self, default: Framing) -> Framing {
        if self
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Framing::Chunked;
        }
        match self.header("content-length").and_then(|v| v.parse().ok()) {
            Some(n) => Framing::Length(n),
            None => default,
        }
    }
}

async fn read_head<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<Head> {
    let mut raw = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        raw.extend_from_slice(line.as_bytes());
        let trimmed = line.trim_end().to_owned();
        if trimmed.is_empty() {
            break;
        }
        lines.push(trimmed);
    }
    let first = lines.first()?.clone();
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Head {
        raw,
        first,
        headers,
    })
}

async fn copy_body<R, W>(r: &mut BufReader<R>, w: &mut W, framing: Framing) -> Option<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            tokio::io::copy(&mut (&mut *r).take(n), w).await.ok()?;
        }
        Framing::UntilClose => {
            tokio::io::copy(r, w).await.ok()?;
        }
        Framing::Chunked => loop {
            let mut line = String::new();
            r.read_line(&mut line).await.ok()?;
            w.write_all(line.as_bytes()).await.ok()?;
            let size = line.trim().split(';').next()?;
            let size = u64::from_str_radix(size, 16).ok()?;
            if size == 0 {
                // Trailers, up to the empty line.
                while line.trim() != "" || line.is_empty() {
                    line.clear();
                    if r.read_line(&mut line).await.ok()? == 0 {
                        return None;
                    }
                    w.write_all(line.as_bytes()).await.ok()?;
                }
                break;
            }
            tokio::io::copy(&mut (&mut *r).take(size + 2), w)
                .await
                .ok()?;
        },
    }
    w.flush().await.ok()
}

async fn relay_connection(relay: Arc<StoreRelay>, client: TcpStream, target: SocketAddr) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (client_r, mut client_w) = client.into_split();
    let (server_r, mut server_w) = server.into_split();
    let (mut client_r, mut server_r) = (BufReader::new(client_r), BufReader::new(server_r));
    while let Some(request) = read_head(&mut client_r).await {
        let mut parts = request.first.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let mut line = format!("{method} {}", parts.next().unwrap_or_default());
        if request.header("x-amz-copy-source").is_some()
            || request.header("x-ms-copy-source").is_some()
        {
            line.push_str(" copy");
        }
        relay.log.lock().unwrap().push(line.clone());
        let now = relay.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        relay.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if server_w.write_all(&request.raw).await.is_err() {
            return;
        }
        let framing = request.framing(Framing::None);
        if copy_body(&mut client_r, &mut server_w, framing)
            .await
            .is_none()
        {
            return;
        }
        let Some(response) = read_head(&mut server_r).await else {
            return;
        };
        let delay = *relay.delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        relay.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(hit) = relay.sprung(&line) {
            let _ = hit.send(line);
            // The store did it; wharf never hears so. Hold the connection open and silent.
            std::future::pending::<()>().await;
        }
        if client_w.write_all(&response.raw).await.is_err() {
            return;
        }
        let status: u16 = response
            .first
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let framing = match (method.as_str(), status) {
            ("HEAD", _) | (_, 204) | (_, 304) => Framing::None,
            _ => response.framing(Framing::UntilClose),
        };
        if copy_body(&mut server_r, &mut client_w, framing)
            .await
            .is_none()
        {
            return;
        }
    }
}
