//! A real upstream registry for the pull-through cache tests: Debian's `docker-registry`
//! (Distribution 2.8.2) on loopback, optionally over TLS (a leaf from the test CA), with an
//! htpasswd login or token auth. Its access log (stdout) counts what reached it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::pki::Pki;

/// How the registry wants clients to log in.
pub enum Login {
    Anonymous,
    /// htpasswd with this user and password.
    Basic(&'static str, &'static str),
    /// `auth: token`: tokens from `realm`, signed by the certificate at `cert` (its own root).
    Token {
        realm: String,
        issuer: &'static str,
        service: &'static str,
        cert: PathBuf,
    },
}

pub struct UpstreamRegistry {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// `https://127.0.0.1:PORT` or `http://...`.
    pub url: String,
    log: PathBuf,
    config: PathBuf,
}

impl UpstreamRegistry {
    /// Starts one in `dir` (its storage, config and log), over TLS with a leaf of `pki`
    /// when given. It cannot listen on port 0: it gets a port that was free a moment ago,
    /// and is ready once `/v2/` answers.
    pub async fn start(dir: &Path, pki: Option<&Pki>, login: Login) -> Self {
        let storage = format!(
            "  filesystem:\n    rootdirectory: {}\n",
            dir.join("storage").display()
        );
        Self::start_on(dir, pki, login, &storage).await
    }

    /// [`UpstreamRegistry::start`] with its own `storage:` driver section (indented YAML).
    pub async fn start_on(dir: &Path, pki: Option<&Pki>, login: Login, storage: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut http = format!("http:\n  addr: {addr}\n");
        let scheme = match pki {
            Some(pki) => {
                let leaf = pki.leaf("upstream", &["127.0.0.1"]);
                http.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    leaf.cert.display(),
                    leaf.key.display()
                ));
                "https"
            }
            None => "http",
        };
        let auth = match &login {
            Login::Anonymous => String::new(),
            Login::Basic(user, password) => {
                let file = dir.join("htpasswd");
                let hash = bcrypt::hash(password, 4).unwrap();
                std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n",
                    file.display()
                )
            }
            Login::Token {
                realm,
                issuer,
                service,
                cert,
            } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                cert.display()
            ),
        };
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n{storage}  delete:\n    enabled: true\n{auth}{http}"
            ),
        )
        .unwrap();
        let mut r = Self {
            child: None,
            addr,
            url: format!("{scheme}://{addr}"),
            log: dir.join("registry.log"),
            config,
        };
        r.run(pki).await;
        r
    }

    async fn run(&mut self, pki: Option<&Pki>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("docker-registry")
            // Its AWS SDK panics on a custom CA bundle; moto is plain HTTP anyway.
            .env_remove("AWS_CA_BUNDLE")
            .arg("serve")
            .arg(&self.config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        self.child = Some(child);
        let mut client = reqwest::Client::builder();
        if let Some(pki) = pki {
            client = client.add_root_certificate(
                reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap(),
            );
        }
        let client = client.build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = client.get(format!("{}/v2/", self.url)).send().await;
            if up.is_ok_and(|r| r.status() == 200 || r.status() == 401) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("docker-registry exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "registry never answered on {}",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Access-log lines of requests whose request line starts with `prefix`
    /// (`"GET /v2/team/app/blobs/"`).
    pub fn requests(&self, prefix: &str) -> usize {
        let needle = format!("\"{prefix}");
        self.log_text()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for UpstreamRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}
