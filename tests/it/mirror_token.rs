//! The Docker token flow against real Distribution code: Distribution 2.8.2 with
//! `auth: token`, and a test token issuer (a tiny HTTP server here) that signs JWTs (ES256)
//! with a key the test makes, its certificate being Distribution's `rootcertbundle`.
//! podman pulls through wharf's mirror, which logs in to the issuer with its upstream
//! credentials, caches the token, and renews it when Distribution refuses it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, KeyPair};
use serde_json::json;
use tokio::net::TcpListener;

use crate::clients::{import_image, run};
use crate::mirror::ACCEPT;
use crate::support::{have_program, podman, WharfProcess};
use crate::upstream_registry::{Login, UpstreamRegistry};

const ISSUER: &str = "wharf-test-issuer";
const SERVICE: &str = "upstream.test";
const BASIC: &str = "Basic cHVsbGVyOnMzY3JldA=="; // puller:s3cret

/// The token issuer: signs what it is asked for, for the one user it knows.
struct Issuer {
    key: KeyPair,
    cert_der: Vec<u8>,
    /// `scope` of every token request, with whether it carried the right credentials.
    asked: Mutex<Vec<(String, bool)>>,
    /// Tokens to hand out with no access at all before the real ones (a refused token).
    useless: Mutex<u32>,
}

impl Issuer {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "wharf test token issuer");
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert_der: cert.der().to_vec(),
            key,
            asked: Mutex::new(Vec::new()),
            useless: Mutex::new(0),
        }
    }

    fn cert_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.cert_der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    }

    /// A JWT granting `scope` (`repository:NAME:ACTIONS`), signed ES256 with the key.
    fn token(&self, scope: &str, grant: bool) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let actions: Vec<&str> = match grant {
            true => actions.split(',').filter(|a| !a.is_empty()).collect(),
            false => Vec::new(),
        };
        let header =
            json!({"alg": "ES256", "typ": "JWT", "x5c": [STANDARD.encode(&self.cert_der)]});
        let claims = json!({
            "iss": ISSUER, "sub": "puller", "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": uuid::Uuid::new_v4().to_string(),
            "access": [{"type": kind, "name": name, "actions": actions}],
        });
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = es256(&self.key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn answer(&self, req: &http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
        let query = req.uri().query().unwrap_or("");
        let scope: Vec<String> = form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.into_owned())
            .collect();
        let scope = scope.join(" ");
        let authorized = req
            .headers()
            .get("authorization")
            .is_some_and(|v| v == BASIC);
        self.asked.lock().unwrap().push((scope.clone(), authorized));
        if !authorized {
            return http::Response::builder()
                .status(401)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
        }
        let grant = {
            let mut useless = self.useless.lock().unwrap();
            let grant = *useless == 0;
            *useless = useless.saturating_sub(1);
            grant
        };
        // Only the first scope: the tests ask for one at a time.
        let first = scope.split(' ').next().unwrap_or("");
        let body = json!({"token": self.token(first, grant), "expires_in": 300});
        http::Response::new(Full::new(Bytes::from(body.to_string())))
    }
}

/// ECDSA P-256 over SHA-256 as JWS wants it: `r || s`, 32 bytes each (ring signs DER).
fn es256(key: &KeyPair, message: &[u8]) -> Vec<u8> {
    let der = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&der).unwrap();
    let signer = signing
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .unwrap();
    let sig = signer.sign(message).unwrap();
    // SEQUENCE { INTEGER r, INTEGER s }, each possibly with a leading zero.
    let mut out = Vec::new();
    let mut i = 2;
    for _ in 0..2 {
        assert_eq!(sig[i], 0x02);
        let len = sig[i + 1] as usize;
        let int = &sig[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0, 32 - int.len()));
        out.extend_from_slice(int);
        i += 2 + len;
    }
    out
}

async fn serve(issuer: Arc<Issuer>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let issuer = issuer.clone();
            let service = service_fn(move |req| {
                let answer = issuer.answer(&req);
                async move { Ok::<_, Infallible>(answer) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// Distribution with `auth: token` from a new issuer, holding `team/app:1` (pushed by podman
/// from `work`): the issuer (its requests forgotten), the registry, the image's id.
async fn token_upstream(dir: &Path, work: &Path) -> (Arc<Issuer>, UpstreamRegistry, String) {
    let issuer = Arc::new(Issuer::new());
    let cert = dir.join("issuer.crt");
    std::fs::write(&cert, issuer.cert_pem()).unwrap();
    let realm = format!("http://{}/token", serve(issuer.clone()).await);
    let login = Login::Token {
        realm,
        issuer: ISSUER,
        service: SERVICE,
        cert,
    };
    let upstream = UpstreamRegistry::start(dir, None, login).await;
    let image_id = import_image(work, "localhost/src/app:1", "behind a token");
    run(podman(work).args([
        "push",
        "--tls-verify=false",
        "--creds",
        "puller:s3cret",
        "localhost/src/app:1",
        &format!("{}/team/app:1", upstream.addr),
    ]));
    run(podman(work).args(["rmi", "-a", "-f"]));
    issuer.asked.lock().unwrap().clear();
    (issuer, upstream, image_id)
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_pulls_through_a_token_authenticated_upstream() {
    if !have_program("docker-registry", "docker-registry") || !have_program("podman", "podman") {
        return;
    }
    let (up_dir, conf, work, root) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (issuer, upstream, image_id) = token_upstream(up_dir.path(), work.path()).await;
    // The first token wharf gets grants nothing: Distribution refuses it with a 401, and
    // wharf must ask again.
    *issuer.useless.lock().unwrap() = 1;

    let password = conf.path().join("upstream-password");
    std::fs::write(&password, "s3cret").unwrap();
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[[server]]\ndefault = true\n\
         [[server.route]]\npath = \"/\"\nmirror = {:?}\nusername = \"puller\"\npassword_file = {:?}\n",
        root.path().display().to_string(),
        upstream.url,
        password.display().to_string()
    );
    let wharf = WharfProcess::spawn_async(conf.path(), &toml).await;
    let via = format!("{}/team/app:1", wharf.addr);
    run(podman(work.path()).args(["pull", "-q", "--tls-verify=false", &via]));
    let id = run(podman(work.path()).args(["image", "inspect", "--format", "{{.Id}}", &via]));
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        image_id.trim_start_matches("sha256:")
    );
    let asked = issuer.asked.lock().unwrap().clone();
    // The refused token, then one token for the whole pull (manifest, config, layer).
    assert_eq!(
        asked,
        vec![
            ("repository:team/app:pull".to_owned(), true),
            ("repository:team/app:pull".to_owned(), true)
        ],
        "{}",
        upstream.log_text()
    );
}

/// SIGHUP keeps an unchanged mirror route with its state: after a reload that changed
/// something else, a tag fetched within `tag_ttl` is served without asking the upstream,
/// and a blob is fetched with the token already held (the issuer is not asked again). A
/// reload that changed the route's password file starts the route afresh: a new token,
/// and the tag checked again.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_keeps_an_unchanged_mirror_routes_token_and_tag_checks() {
    if !have_program("docker-registry", "docker-registry") || !have_program("podman", "podman") {
        return;
    }
    let (up_dir, conf, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (issuer, upstream, _) = token_upstream(up_dir.path(), work.path()).await;
    let password = conf.path().join("upstream-password");
    std::fs::write(&password, "s3cret").unwrap();
    let toml = |grace: &str| {
        format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n\
             [shutdown]\ngrace = {grace:?}\n[[server]]\ndefault = true\n\
             [[server.route]]\npath = \"/\"\nmirror = {:?}\nusername = \"puller\"\n\
             password_file = {:?}\ntag_ttl = \"1h\"\n",
            conf.path().join("data").display().to_string(),
            upstream.url,
            password.display().to_string()
        )
    };
    let log = conf.path().join("wharf.log");
    let wharf = WharfProcess::spawn_logging(
        conf.path(),
        &toml("10s"),
        std::fs::File::create(&log).unwrap(),
    );
    // A connection keeps the configuration it was accepted under: a new one per request.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let get = |path: String| {
        let url = format!("http://{}/v2/team/app/{path}", wharf.addr);
        let http = http.clone();
        async move {
            let r = http.get(url).header("Accept", ACCEPT).send().await.unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::OK, "{path}");
            r.bytes().await.unwrap()
        }
    };
    let manifest = get("manifests/1".into()).await;
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config = m["config"]["digest"].as_str().unwrap().to_owned();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_owned();
    let asked = || issuer.asked.lock().unwrap().len();
    let heads = || upstream.requests("HEAD /v2/team/app/manifests/1");
    assert_eq!(asked(), 1, "one token for the manifest");

    // Something else changes: the route is kept, with its token and its tag's check.
    std::fs::write(conf.path().join("wharf.toml"), toml("5s")).unwrap();
    reload(&wharf, &log, 1);
    get("manifests/1".into()).await;
    assert_eq!(
        heads(),
        0,
        "the tag was checked again:\n{}",
        upstream.log_text()
    );
    get(format!("blobs/{config}")).await;
    assert_eq!(asked(), 1, "a new token was asked for after the reload");

    // The route's password file changes (same password, other bytes): a new route.
    std::fs::write(&password, "s3cret\n").unwrap();
    reload(&wharf, &log, 2);
    get(format!("blobs/{layer}")).await;
    assert_eq!(
        asked(),
        2,
        "the changed route used the old token:\n{}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        upstream.log_text()
    );
    get("manifests/1".into()).await;
    assert_eq!(heads(), 1, "{}", upstream.log_text());
}

/// Sends SIGHUP and waits until the log says the `n`th reload is done.
fn reload(wharf: &WharfProcess, log: &Path, n: usize) {
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &wharf.child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill -HUP failed");
    let done = (0..400).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(25));
        let text = std::fs::read_to_string(log).unwrap_or_default();
        text.matches("configuration reloaded").count() >= n
    });
    assert!(
        done,
        "reload {n} not in the log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
