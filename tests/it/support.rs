//! Test harness: a wharf server started in-process on 127.0.0.1:0 with a temporary
//! storage root, plus helpers shared by the API tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;

use wharf::config::Config;
use wharf::server::Server;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A running in-process server. Dropping it shuts the server down.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`), when the config has one.
    pub admin: Option<SocketAddr>,
    pub base: String,
    pub root: PathBuf,
    pub http: Client,
    _dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
}

/// Which storage backend a behavioural test runs on. Every such test runs on all of them
/// (see [`on_every_backend!`](crate::on_every_backend)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Fs,
    /// A fresh bucket on the moto server this test binary shares.
    S3,
    /// A fresh container on the Azurite this test binary shares.
    Azure,
}

/// A fresh, empty storage: a temporary directory, a new bucket on moto or a new container
/// on Azurite. Servers started
/// on the same `TestStore` share it, like nodes sharing a bucket.
pub struct TestStore {
    pub backend: Backend,
    /// The filesystem root (fs only).
    pub root: PathBuf,
    /// The bucket or container (object stores only).
    pub bucket: String,
    /// Where the store's API is (object stores only); a test may point it at a proxy.
    pub endpoint: String,
    /// More keys for the store's table (object stores only), like `timeout = "2s"`.
    pub store_options: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// `None` when the backend cannot run here (s3 without moto, azure without Azurite,
    /// outside CI; the skip is printed).
    pub fn fresh(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Fs => {
                let dir = tempfile::tempdir().expect("temp dir");
                Some(Self {
                    backend,
                    root: dir.path().to_path_buf(),
                    bucket: String::new(),
                    endpoint: String::new(),
                    store_options: String::new(),
                    _dir: Some(dir),
                })
            }
            Backend::S3 => {
                let moto = crate::moto::shared()?;
                Some(Self {
                    backend,
                    root: PathBuf::new(),
                    bucket: moto.new_bucket(),
                    endpoint: moto.endpoint(),
                    store_options: String::new(),
                    _dir: None,
                })
            }
            Backend::Azure => {
                let azurite = crate::azurite::shared()?;
                Some(Self {
                    backend,
                    root: PathBuf::new(),
                    bucket: azurite.new_container(),
                    endpoint: azurite.endpoint(),
                    store_options: String::new(),
                    _dir: None,
                })
            }
        }
    }

    /// A whole config: a listener on port 0, this storage, and `extra` (whose own
    /// `[storage]` keys, such as upload_max_age, are merged in).
    pub fn config(&self, extra: &str) -> String {
        let storage = match self.backend {
            Backend::Fs => format!("[storage]\nroot = {:?}\n", self.root.display().to_string()),
            Backend::S3 => "[storage]\nbackend = \"s3\"\n".to_owned(),
            Backend::Azure => "[storage]\nbackend = \"azure\"\n".to_owned(),
        };
        let extra = match extra.contains("[storage]") {
            true => extra.replace("[storage]\n", &storage),
            false => format!("{storage}{extra}"),
        };
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n{extra}\n[log]\naccess_log = false\n{}",
            self.store_table()
        )
    }

    /// `[storage.s3]` for this bucket or `[storage.azure]` for this container (empty on fs).
    pub fn store_table(&self) -> String {
        match self.backend {
            Backend::Fs => String::new(),
            Backend::S3 => format!(
                "\n[storage.s3]\nbucket = {:?}\nendpoint = {:?}\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n{}",
                self.bucket, self.endpoint, self.store_options
            ),
            Backend::Azure => format!(
                "\n[storage.azure]\naccount = {:?}\ncontainer = {:?}\nendpoint = {:?}\naccess_key = {:?}\n{}",
                crate::azurite::ACCOUNT,
                self.bucket,
                self.endpoint,
                crate::azurite::KEY,
                self.store_options
            ),
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with("").await
    }

    /// Starts a server whose config is `extra` TOML plus a listener on port 0 and a fresh
    /// storage root.
    pub async fn start_with(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_on(dir.path(), extra).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a server from a whole config (listeners included); returns it with every
    /// bound address, in listener order. The storage root is a fresh temp dir unless the
    /// config names one.
    pub async fn start_config(toml: &str) -> (Self, Vec<SocketAddr>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let toml = match toml.contains("[storage]") {
            true => toml.to_owned(),
            false => format!(
                "{toml}\n[storage]\nroot = {:?}\n",
                dir.path().display().to_string()
            ),
        };
        // In process, access lines would go to the test runner's stderr, uncaptured.
        let toml = match toml.contains("[log]") {
            true => toml,
            false => format!("{toml}\n[log]\naccess = \"off\"\n"),
        };
        let config = Config::from_toml(&toml, "test").expect("test config is valid");
        let server = Server::bind(config).await.expect("server binds");
        let addrs = server.local_addrs();
        let admin = server.admin_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let s = Self {
            admin,
            addr: addrs[0],
            base: format!("http://{}", addrs[0]),
            root: dir.path().to_path_buf(),
            http: Client::new(),
            _dir: Some(dir),
            stop: Some(stop),
        };
        (s, addrs)
    }

    /// Starts a server on an existing storage root (to test restarts).
    pub async fn start_on(root: &Path, extra: &str) -> Self {
        let store = TestStore {
            backend: Backend::Fs,
            root: root.to_path_buf(),
            bucket: String::new(),
            endpoint: String::new(),
            store_options: String::new(),
            _dir: None,
        };
        Self::start_on_store(&store, extra).await
    }

    /// A server on a fresh store of `backend`; `None` when that backend is skipped here.
    pub async fn start_in(backend: Backend) -> Option<(Self, TestStore)> {
        Self::start_with_in(backend, "").await
    }

    /// Like [`TestServer::start_with`], on a fresh store of `backend`.
    pub async fn start_with_in(backend: Backend, extra: &str) -> Option<(Self, TestStore)> {
        let store = TestStore::fresh(backend)?;
        Some((Self::start_on_store(&store, extra).await, store))
    }

    /// A server (a "node") on an existing store; several may share one.
    pub async fn start_on_store(store: &TestStore, extra: &str) -> Self {
        let root = store.root.as_path();
        let toml = store.config(extra);
        let config = Config::from_toml(&toml, "test").expect("test config is valid");
        let server = Server::bind(config).await.expect("server binds");
        let addr = server.local_addrs()[0];
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            admin: None,
            addr,
            base: format!("http://{addr}"),
            root: root.to_path_buf(),
            http: Client::new(),
            _dir: None,
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Pushes a blob monolithically into `repo`; returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "push blob: {}",
            r.text().await.unwrap()
        );
        digest
    }

    /// Pushes a manifest; returns the response.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &Value,
    ) -> Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Content-Type", media_type)
            .body(serde_json::to_vec(body).unwrap())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a one-layer image; returns (manifest digest, manifest bytes, layer digest).
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        layer: &[u8],
    ) -> (String, Vec<u8>, String) {
        let config = format!("{{\"layer\":{}}}", layer.len()).into_bytes();
        let config_digest = self.push_blob(repo, &config).await;
        let layer_digest = self.push_blob(repo, layer).await;
        let manifest = image_manifest(
            &config_digest,
            config.len(),
            &[(&layer_digest, layer.len())],
        );
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let r = self
            .http
            .put(self.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "push manifest: {}",
            r.text().await.unwrap()
        );
        (sha256(&bytes), bytes, layer_digest)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn image_manifest(config: &str, config_size: usize, layers: &[(&str, usize)]) -> Value {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_size},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({"mediaType": OCI_LAYER, "digest": d, "size": s})).collect::<Vec<_>>(),
    })
}

/// Asserts an OCI error response: status, the envelope's code, and the API version header.
pub async fn assert_error(r: Response, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status, "status for expected {code}");
    assert_eq!(
        r.headers()
            .get("docker-distribution-api-version")
            .map(|v| v.to_str().unwrap()),
        Some("registry/2.0")
    );
    let body: Value = r.json().await.expect("error body is JSON");
    assert_eq!(body["errors"][0]["code"], code, "body: {body}");
    assert!(body["errors"][0]["message"].is_string());
}

/// Random-looking but deterministic bytes.
pub fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    let mut x = seed as u32 | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Whether an external program is available. In CI (`CI` set) a missing program fails the
/// test, because CI must install it; elsewhere the test is skipped with a message naming
/// the Debian package.
pub fn have_program(program: &str, package: &str) -> bool {
    have(program, &format!("apt-get install {package}"))
}

/// [`have_program`] with any install command (`pip install ...`).
pub fn have(program: &str, install: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("{program} is missing; CI must install it: `{install}`");
        }
        eprintln!("SKIPPED: {program} not found; install it with `{install}`");
    }
    found
}

/// Starts a store emulator (moto, Azurite) for the whole test binary: `program` with the
/// arguments `args` gives for a free loopback port; returns its address once it accepts
/// connections. `None` (with a printed skip) when the program is missing outside CI.
///
/// The thread that spawns it lives as long as the test binary, and PDEATHSIG takes the
/// emulator down with that thread, so it never outlives the tests, however they end.
pub fn start_emulator(
    program: &'static str,
    install: &str,
    args: impl FnOnce(u16) -> Vec<String>,
) -> Option<SocketAddr> {
    if !have(program, install) {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let args = args(port);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new(program);
        cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; it only sets this child's death signal.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let _ = tx.send(child.is_ok());
        if let Ok(mut child) = child {
            let _ = child.wait();
        }
    });
    assert!(rx.recv().unwrap_or(false), "{program} did not start");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{program} never answered on {addr}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Some(addr)
}

/// wharf as a separate process (for tests that kill it or drive it with external clients).
pub struct WharfProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl WharfProcess {
    /// Runs `wharf serve --config <dir>/wharf.toml` with storage at `root` on port 0 and
    /// waits for its "listening on" line.
    pub fn spawn(root: &Path, config_dir: &Path) -> Self {
        let toml = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n",
            root.display().to_string()
        );
        Self::spawn_config(config_dir, &toml)
    }

    /// Runs `wharf serve` with `toml` written to `<config_dir>/wharf.toml`; the address is
    /// the first listener's.
    pub fn spawn_config(config_dir: &Path, toml: &str) -> Self {
        Self::spawn_logging(config_dir, toml, Stdio::null())
    }

    /// [`WharfProcess::spawn_config`] off the test's reactor, for tests whose own tasks (a
    /// relay in front of the store, say) must keep running while wharf starts.
    pub async fn spawn_async(config_dir: &Path, toml: &str) -> Self {
        let (dir, toml) = (config_dir.to_path_buf(), toml.to_owned());
        tokio::task::spawn_blocking(move || Self::spawn_config(&dir, &toml))
            .await
            .expect("start wharf")
    }

    /// Like [`WharfProcess::spawn_config`], with the log (stderr) going to `log`.
    pub fn spawn_logging(config_dir: &Path, toml: &str, log: impl Into<Stdio>) -> Self {
        use std::io::{BufRead, BufReader};
        let config = config_dir.join("wharf.toml");
        std::fs::write(&config, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start wharf");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// Stops the process as an operator would (SIGTERM) and waits until it has exited, so
    /// everything it logged has been written.
    pub fn terminate(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM failed");
        self.child.wait().unwrap();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WharfProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// podman with its own storage under `dir`, so tests never touch the machine's images.
pub fn podman(dir: &Path) -> Command {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}
