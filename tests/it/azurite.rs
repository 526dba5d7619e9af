//! A real Azure Blob Storage API on loopback for the Azure backend's tests: Azurite's blob
//! service (`npm install -g azurite`), started once per test binary on a free port, one
//! container per test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Azurite's well-known development account and its published key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    addr: SocketAddr,
    containers: AtomicU64,
}

/// The test binary's Azurite, started on first use; `None` (with a printed skip) when
/// `azurite-blob` is missing outside CI.
pub fn shared() -> Option<&'static Azurite> {
    static AZURITE: OnceLock<Option<Azurite>> = OnceLock::new();
    AZURITE.get_or_init(start).as_ref()
}

fn start() -> Option<Azurite> {
    let addr = crate::support::start_emulator("azurite-blob", "npm install -g azurite", |port| {
        let port = port.to_string();
        // In memory, so nothing is left behind (it refuses --location then). Any API
        // version, since object_store's may be newer than this Azurite knows.
        [
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port,
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--silent",
            "--disableTelemetry",
        ]
        .map(String::from)
        .to_vec()
    })?;
    Some(Azurite {
        addr,
        containers: AtomicU64::new(0),
    })
}

impl Azurite {
    /// The account's blob service URL, as `storage.azure.endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}/{ACCOUNT}", self.addr)
    }

    /// Creates an empty container of its own for a test.
    pub fn new_container(&self) -> String {
        let n = self.containers.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}-{n}", std::process::id());
        let status = self.create_container(&name).expect("create container");
        assert!(
            status.starts_with("HTTP/1.1 201"),
            "create container: {status}"
        );
        name
    }

    /// Create Container, signed with the account key (Azurite refuses anonymous requests);
    /// returns the status line.
    fn create_container(&self, name: &str) -> std::io::Result<String> {
        let out = self.signed("PUT", name, &[("restype", "container")])?;
        Ok(out.lines().next().unwrap_or_default().to_owned())
    }

    /// The names of the blobs in `container` under `prefix` (one listing page is plenty
    /// for a test).
    pub fn list(&self, container: &str, prefix: &str) -> Vec<String> {
        let params = [
            ("comp", "list"),
            ("prefix", prefix),
            ("restype", "container"),
        ];
        let out = self.signed("GET", container, &params).expect("list blobs");
        assert!(out.starts_with("HTTP/1.1 200"), "list blobs: {out}");
        out.split("<Name>")
            .skip(1)
            .map(|n| n.split('<').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// A request without a body to `/<account>/<path>?<params>` (params sorted by name,
    /// plain values), signed with the account key; returns the whole answer.
    fn signed(&self, method: &str, path: &str, params: &[(&str, &str)]) -> std::io::Result<String> {
        const VERSION: &str = "2021-08-06";
        let date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
            ))
            .expect("date");
        // The Shared Key string to sign: the verb, eleven empty standard headers, the
        // x-ms-* headers, then the resource (the account twice with Azurite's path style)
        // and its query parameters, one a line.
        let canonical: String = params.iter().map(|(k, v)| format!("\n{k}:{v}")).collect();
        let to_sign = format!(
            "{method}\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n/{ACCOUNT}/{ACCOUNT}/{path}{canonical}"
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut mac = Hmac::<Sha256>::new_from_slice(&b64.decode(KEY).expect("key")).expect("hmac");
        mac.update(to_sign.as_bytes());
        let signature = b64.encode(mac.finalize().into_bytes());
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} /{ACCOUNT}/{path}?{} HTTP/1.1\r\nHost: {}\r\nx-ms-date: {date}\r\n\
             x-ms-version: {VERSION}\r\nAuthorization: SharedKey {ACCOUNT}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n",
            query.join("&"),
            self.addr
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }
}
