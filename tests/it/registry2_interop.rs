//! wharf and the real registry:2 (Debian's `docker-registry`, Distribution 2.8.2) on one
//! storage, both ways: what one wrote, the other serves, on a directory and on S3 (moto,
//! with registry:2's s3 driver and a `rootdirectory`). Images go in with skopeo (a single
//! image, a multi-arch index, an OCI artifact) and come out with skopeo and podman; every
//! digest is compared. registry:2's `garbage-collect --dry-run` must accept what wharf
//! wrote, its own state under `wharf/` included.
//!
//! Not on Azure: registry:2 2.8.2's azure driver cannot be pointed at an Azurite on a port
//! of the test's choosing. It builds its client with `azure.NewClient(account, key, realm,
//! ..., useHTTPS: true)` from the old azure-sdk-for-go `storage` package, which addresses
//! `https://<account>.blob.<realm>`, or, for the emulator's account `devstoreaccount1`,
//! the fixed `https://127.0.0.1:10000/devstoreaccount1`: always https and always port
//! 10000, a fixed port the tests may not take (and Azurite would need a certificate
//! registry:2 trusts). wharf keeps the same keys in a container as in a bucket
//! (`docker/registry/v2/...`), which is how that driver names blobs too (its storage path
//! without the leading `/`), but the two were never run on one container here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::clients::run;
use crate::support::{have_program, podman, sha256, Backend, TestStore, WharfProcess};

/// What the tests push: `(repository:tag, manifest digest)` of each, from the source layout.
pub(crate) struct Pushed {
    single: String,
    multi: String,
    note: String,
    /// The config digest of the single image: podman's image id for it.
    single_config: String,
}

const SINGLE: &str = "team/app:1";
const NESTED: &str = "team/app/debug:1";
const MULTI: &str = "team/app:multi";
const NOTE: &str = "team/notes:1";

/// Where both registries keep their data: a directory, or a prefix in a moto bucket.
enum Place {
    Dir(tempfile::TempDir),
    Bucket(TestStore),
}

/// registry:2's `rootdirectory` in the bucket, and wharf's `prefix` for the same place.
const BUCKET_ROOT: &str = "/reg/root";

impl Place {
    fn new(backend: Backend) -> Option<Self> {
        if !have_program("docker-registry", "docker-registry")
            || !have_program("skopeo", "skopeo")
            || !have_program("podman", "podman")
        {
            return None;
        }
        Some(match backend {
            Backend::Fs => Place::Dir(tempfile::tempdir().unwrap()),
            _ => {
                let mut store = TestStore::fresh(backend)?;
                store.store_options = format!("prefix = {:?}\n", BUCKET_ROOT.trim_matches('/'));
                Place::Bucket(store)
            }
        })
    }

    /// registry:2's `storage` section for this place.
    fn registry2_storage(&self) -> String {
        let driver = match self {
            Place::Dir(dir) => format!(
                "  filesystem:\n    rootdirectory: {}\n",
                dir.path().display()
            ),
            Place::Bucket(store) => format!(
                "  s3:\n    accesskey: testing\n    secretkey: testing\n    region: us-east-1\n    \
                 regionendpoint: {}\n    bucket: {}\n    secure: false\n    rootdirectory: {BUCKET_ROOT}\n  \
                 redirect:\n    disable: true\n",
                store.endpoint, store.bucket
            ),
        };
        format!(
            "storage:\n{driver}  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n"
        )
    }

    /// `wharf serve` on this place, deletes allowed.
    fn wharf(&self, conf: &Path) -> WharfProcess {
        let extra = "[registry]\ndelete = true\n";
        let toml = match self {
            Place::Dir(dir) => format!(
                "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n{extra}",
                dir.path().display().to_string()
            ),
            Place::Bucket(store) => store.config(extra),
        };
        WharfProcess::spawn_config(conf, &toml)
    }
}

/// registry:2 as a child process. It cannot listen on port 0, so it gets a port that was
/// free a moment ago, and is ready once `/v2/` answers.
pub(crate) struct Registry2 {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Registry2 {
    async fn start(place: &Place, conf: &Path) -> Self {
        let addr = Self::free_addr();
        let config = write_registry2_config(place, conf, &format!("http:\n  addr: {addr}\n"));
        Self::start_with(&config, addr, &[], conf).await
    }

    /// A loopback address that was free a moment ago.
    pub(crate) fn free_addr() -> SocketAddr {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        ([127, 0, 0, 1], port).into()
    }

    /// registry:2 on `config`, which makes it listen on `addr`, with these `REGISTRY_*`
    /// variables over it (and no others of this process's); its log goes to `conf`.
    pub(crate) async fn start_with(
        config: &Path,
        addr: SocketAddr,
        vars: &[(&str, String)],
        conf: &Path,
    ) -> Self {
        let log = conf.join("registry2.log");
        let mut cmd = Command::new("docker-registry");
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("REGISTRY_")) {
            cmd.env_remove(name);
        }
        let child = cmd
            .envs(vars.iter().map(|(n, v)| (n, v)))
            // Its AWS SDK cannot take a custom CA bundle with its HTTP client (it panics),
            // and moto is plain HTTP anyway.
            .env_remove("AWS_CA_BUNDLE")
            .arg("serve")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start docker-registry");
        let mut r = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        let http = Client::new();
        loop {
            let up = http.get(format!("http://{addr}/v2/")).send().await;
            if up.is_ok_and(|r| r.status() == StatusCode::OK) {
                return r;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("docker-registry exited with {status}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "registry:2 never answered on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry2 {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_registry2_config(place: &Place, conf: &Path, http: &str) -> PathBuf {
    let config = conf.join("config.yml");
    let yaml = format!(
        "version: 0.1\nlog:\n  level: warn\n{}{http}",
        place.registry2_storage()
    );
    std::fs::write(&config, yaml).unwrap();
    config
}

/// `docker-registry garbage-collect --dry-run` on the place: it must succeed and report
/// no error.
fn garbage_collect_dry_run(place: &Place, conf: &Path) -> Output {
    let config = write_registry2_config(place, conf, "");
    let out = Command::new("docker-registry")
        .env_remove("AWS_CA_BUNDLE")
        .args(["garbage-collect", "--dry-run"])
        .arg(&config)
        .output()
        .expect("run docker-registry garbage-collect");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "garbage-collect failed:\n{all}");
    assert!(
        !all.contains("level=error"),
        "garbage-collect reported errors:\n{all}"
    );
    out
}

/// Writes `bytes` as a blob of the OCI layout at `dir`; returns its descriptor.
fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let digest = sha256(bytes);
    let path = dir.join("blobs/sha256").join(&digest["sha256:".len()..]);
    std::fs::write(path, bytes).unwrap();
    json!({"mediaType": media_type, "digest": digest, "size": bytes.len()})
}

/// A runnable image for `arch` with one layer holding `hello.txt`: its manifest's
/// descriptor and its config's digest.
fn image(dir: &Path, arch: &str, content: &str) -> (Value, String) {
    let rootfs = dir.join(format!("rootfs-{arch}"));
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::write(rootfs.join("hello.txt"), content).unwrap();
    let tar = dir.join(format!("layer-{arch}.tar"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    let layer_bytes = std::fs::read(&tar).unwrap();
    let layout = dir.join("layout");
    let layer = blob(
        &layout,
        "application/vnd.oci.image.layer.v1.tar",
        &layer_bytes,
    );
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
    });
    let config = blob(
        &layout,
        "application/vnd.oci.image.config.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer],
    });
    let m = blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    );
    (m, config["digest"].as_str().unwrap().to_owned())
}

/// An OCI layout under `<dir>/layout` holding `single` (an image), `multi` (an index of
/// two architectures) and `note` (an artifact with its own artifactType and layer type).
pub(crate) fn source_layout(dir: &Path) -> Pushed {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let (single, single_config) = image(dir, "amd64", "hello from the source");
    let (arm, _) = image(dir, "arm64", "hello from arm");
    let mut amd = single.clone();
    amd["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut arm = arm;
    arm["platform"] = json!({"architecture": "arm64", "os": "linux"});
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [amd, arm],
    });
    let multi = blob(
        &layout,
        "application/vnd.oci.image.index.v1+json",
        index.to_string().as_bytes(),
    );
    let empty = blob(&layout, "application/vnd.oci.empty.v1+json", b"{}");
    let payload = blob(&layout, "application/vnd.example.note.v1+txt", b"a note");
    let artifact = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.note.v1",
        "config": empty, "layers": [payload],
    });
    let note = blob(
        &layout,
        "application/vnd.oci.image.manifest.v1+json",
        artifact.to_string().as_bytes(),
    );
    let named = |d: &Value, name: &str| {
        let mut d = d.clone();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": name});
        d
    };
    let index = json!({"schemaVersion": 2, "manifests": [
        named(&single, "single"), named(&multi, "multi"), named(&note, "note"),
    ]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let digest = |d: &Value| d["digest"].as_str().unwrap().to_owned();
    Pushed {
        single: digest(&single),
        multi: digest(&multi),
        note: digest(&note),
        single_config,
    }
}

/// skopeo copies everything of the source layout to the registry at `addr`.
pub(crate) fn push_all(addr: SocketAddr, work: &Path) {
    let layout = work.join("layout");
    for (name, dest) in [
        ("single", SINGLE),
        ("single", NESTED),
        ("multi", MULTI),
        ("note", NOTE),
    ] {
        run(Command::new("skopeo")
            .args([
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{name}", layout.display()))
            .arg(format!("docker://{addr}/{dest}")));
    }
}

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The most common manifests in a registry:2 volume, as docker pushes them: skopeo converts
/// the single image to Docker schema2 (`team/legacy:1`) and the index to a Docker manifest
/// list (`team/legacy:multi`). Returns `(tag, digest, media type)` of each, as the registry
/// at `addr` has them.
fn push_docker_formats(addr: SocketAddr, work: &Path) -> Vec<(&'static str, String, &'static str)> {
    let mut pushed = Vec::new();
    for (source, tag, media_type) in [
        ("single", "1", DOCKER_MANIFEST),
        ("multi", "multi", DOCKER_LIST),
    ] {
        let dest = format!("docker://{addr}/team/legacy:{tag}");
        run(Command::new("skopeo")
            .args([
                "copy",
                "--all",
                "--format",
                "v2s2",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:{source}", work.join("layout").display()))
            .arg(&dest));
        let out = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(&dest));
        let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(manifest["mediaType"], media_type);
        pushed.push((tag, sha256(&out.stdout), media_type));
    }
    pushed
}

/// wharf at `addr` serves what [`push_docker_formats`] put in registry:2's storage byte for
/// byte, answers a HEAD with the type registry:2 would, and podman pulls both.
async fn serves_docker_formats(addr: SocketAddr, work: &Path, pushed: &[(&str, String, &str)]) {
    for (tag, digest, media_type) in pushed {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{addr}/team/legacy:{tag}")));
        assert_eq!(
            &sha256(&out.stdout),
            digest,
            "team/legacy:{tag}, byte for byte"
        );
        let r = Client::new()
            .head(format!("http://{addr}/v2/team/legacy/manifests/{tag}"))
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["content-type"],
            *media_type,
            "team/legacy:{tag}"
        );
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        run(podman(work).args([
            "pull",
            "-q",
            "--tls-verify=false",
            &format!("{addr}/team/legacy:{tag}"),
        ]));
    }
}

/// Pulls everything from the registry at `addr` and checks every digest: the manifests
/// byte for byte (skopeo checks each blob against its digest as it copies), and podman's
/// image id of the single image.
pub(crate) fn pull_and_compare(addr: SocketAddr, work: &Path, pushed: &Pushed) {
    for (reference, digest) in [
        (SINGLE, &pushed.single),
        (NESTED, &pushed.single),
        (MULTI, &pushed.multi),
        (NOTE, &pushed.note),
    ] {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{addr}/{reference}")));
        assert_eq!(&sha256(&out.stdout), digest, "{reference} from {addr}");
        let dest = work.join("pulled").join(reference.replace([':', '/'], "_"));
        std::fs::create_dir_all(&dest).unwrap();
        run(Command::new("skopeo")
            .args([
                "copy",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{addr}/{reference}"))
            .arg(format!("oci:{}:x", dest.display())));
        let index: Value =
            serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            digest.as_str(),
            "{reference}"
        );
    }
    let remote = format!("{addr}/{SINGLE}");
    run(podman(work).args(["pull", "-q", "--tls-verify=false", &remote]));
    let out = run(podman(work).args(["image", "inspect", "--format", "{{.Id}}", &remote]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        pushed.single_config.trim_start_matches("sha256:"),
        "podman's image is the pushed one"
    );
    run(podman(work).args(["rmi", "-a", "-f"]));
}

/// The catalog and every repository's tags, as the registry at `addr` lists them.
pub(crate) async fn listing(addr: SocketAddr) -> Value {
    let http = Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };
    let catalog = get("/v2/_catalog".into()).await;
    let mut out = json!({"repositories": catalog["repositories"]});
    for repo in catalog["repositories"].as_array().unwrap() {
        let repo = repo.as_str().unwrap();
        let mut tags = get(format!("/v2/{repo}/tags/list")).await["tags"].clone();
        if let Some(t) = tags.as_array_mut() {
            t.sort_by_key(|t| t.as_str().map(str::to_owned));
        }
        out[repo] = tags;
    }
    out
}

/// Every manifest type: registry:2 answers 404 for an index to a client that does not
/// accept indexes.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

async fn status_of(method: reqwest::Method, url: String) -> StatusCode {
    Client::new()
        .request(method, url)
        .header("accept", ACCEPT)
        .send()
        .await
        .unwrap()
        .status()
}

pub(crate) fn expected_listing() -> Value {
    json!({
        "repositories": ["team/app", "team/app/debug", "team/notes"],
        "team/app": ["1", "multi"], "team/app/debug": ["1"], "team/notes": ["1"],
    })
}

/// registry:2 first: skopeo pushes to it; then wharf serves the same storage (and deletes
/// through it), and registry:2 agrees with wharf's deletes afterwards.
async fn registry2_then_wharf(backend: Backend) {
    let Some(place) = Place::new(backend) else {
        return;
    };
    let (conf, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pushed = source_layout(work.path());
    let mut registry2 = Registry2::start(&place, conf.path()).await;
    push_all(registry2.addr, work.path());
    let docker = push_docker_formats(registry2.addr, work.path());
    let listed = listing(registry2.addr).await;
    let mut expected = expected_listing();
    expected["repositories"] = json!(["team/app", "team/app/debug", "team/legacy", "team/notes"]);
    expected["team/legacy"] = json!(["1", "multi"]);
    assert_eq!(listed, expected);
    registry2.stop();

    let mut wharf = place.wharf(conf.path());
    assert_eq!(
        listing(wharf.addr).await,
        listed,
        "wharf lists what registry:2 did"
    );
    pull_and_compare(wharf.addr, work.path(), &pushed);
    serves_docker_formats(wharf.addr, work.path(), &docker).await;
    // A HEAD answers the type registry:2 would, though nothing but the bytes records it.
    let r = Client::new()
        .head(format!(
            "http://{}/v2/{}/manifests/multi",
            wharf.addr, "team/app"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );

    // Deletes through wharf: a tag, and a manifest (skopeo deletes by digest).
    let tag = format!("http://{}/v2/team/app/manifests/multi", wharf.addr);
    assert_eq!(
        status_of(reqwest::Method::DELETE, tag).await,
        StatusCode::ACCEPTED
    );
    run(Command::new("skopeo")
        .args(["delete", "--tls-verify=false"])
        .arg(format!("docker://{}/{NOTE}", wharf.addr)));
    let note = format!(
        "http://{}/v2/team/notes/manifests/{}",
        wharf.addr, pushed.note
    );
    assert_eq!(
        status_of(reqwest::Method::GET, note).await,
        StatusCode::NOT_FOUND
    );
    wharf.terminate();

    // registry:2 sees the deletes, and its garbage collector the rest as it was.
    let registry2 = Registry2::start(&place, conf.path()).await;
    let base = format!("http://{}/v2", registry2.addr);
    let gone = format!("{base}/team/notes/manifests/{}", pushed.note);
    assert_eq!(
        status_of(reqwest::Method::GET, gone).await,
        StatusCode::NOT_FOUND
    );
    let tags: Value = Client::new()
        .get(format!("{base}/team/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!(["1"]));
    let kept = format!("{base}/team/app/manifests/{}", pushed.multi);
    assert_eq!(status_of(reqwest::Method::GET, kept).await, StatusCode::OK);
    drop(registry2);
    garbage_collect_dry_run(&place, conf.path());
}

/// wharf first: skopeo pushes to it, with a referrer and an unfinished upload beside
/// (wharf's own state, which registry:2 must ignore); then registry:2 serves the storage
/// and its garbage collector accepts it.
async fn wharf_then_registry2(backend: Backend) {
    let Some(place) = Place::new(backend) else {
        return;
    };
    let (conf, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pushed = source_layout(work.path());
    let mut wharf = place.wharf(conf.path());
    push_all(wharf.addr, work.path());
    push_referrer(wharf.addr, &pushed).await;
    leave_an_upload_open(wharf.addr).await;
    let listed = listing(wharf.addr).await;
    wharf.terminate();
    if let Place::Dir(dir) = &place {
        let uploads = dir.path().join("wharf/uploads");
        assert_eq!(
            std::fs::read_dir(uploads).unwrap().count(),
            1,
            "a session is left"
        );
    }

    let registry2 = Registry2::start(&place, conf.path()).await;
    let mut expected = expected_listing();
    expected["team/app"] = json!(["1", "multi", "signed"]);
    assert_eq!(listing(registry2.addr).await, expected);
    assert_eq!(listed, expected, "registry:2 lists what wharf did");
    pull_and_compare(registry2.addr, work.path(), &pushed);
    drop(registry2);
    let out = garbage_collect_dry_run(&place, conf.path());
    // It walked wharf's repositories: it marked the manifests it found there.
    let marked = String::from_utf8_lossy(&out.stdout);
    assert!(
        marked.contains(&pushed.multi),
        "garbage-collect output:\n{marked}"
    );
}

/// An artifact whose `subject` is the single image, tagged `signed`: wharf records a
/// referrer under `wharf/`, and registry:2 serves the manifest as any other.
async fn push_referrer(addr: SocketAddr, pushed: &Pushed) {
    let http = Client::new();
    let base = format!("http://{addr}/v2/team/app");
    let empty = b"{}";
    let digest = sha256(empty);
    let r = http
        .post(format!("{base}/blobs/uploads/?digest={digest}"))
        .body(empty.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let single = http
        .get(format!("{base}/manifests/{}", pushed.single))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": pushed.single, "size": single.len()},
    });
    let r = http
        .put(format!("{base}/manifests/signed"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let referrers: Value = http
        .get(format!("{base}/referrers/{}", pushed.single))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(referrers["manifests"].as_array().unwrap().len(), 1);
}

/// A session with some bytes in it, never finished.
async fn leave_an_upload_open(addr: SocketAddr) {
    let http = Client::new();
    let r = http
        .post(format!("http://{addr}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = http
        .patch(format!("http://{addr}{location}"))
        .body(vec![7u8; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

mod fs {
    use super::*;

    #[tokio::test]
    async fn registry2_then_wharf() {
        super::registry2_then_wharf(Backend::Fs).await;
    }

    #[tokio::test]
    async fn wharf_then_registry2() {
        super::wharf_then_registry2(Backend::Fs).await;
    }

    /// Pointed at registry:2's `docker/registry/v2` instead of the directory holding it,
    /// wharf refuses to start and names the root to use.
    #[test]
    fn a_root_one_level_too_deep_is_refused_with_the_right_one() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = dir.path().join("docker/registry/v2");
        for sub in ["blobs", "repositories"] {
            std::fs::create_dir_all(v2.join(sub)).unwrap();
        }
        let config = dir.path().join("wharf.toml");
        let toml = format!(
            "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n",
            v2.display().to_string()
        );
        std::fs::write(&config, toml).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A wharf that starts says where it listens; one that refuses closes stdout.
        let mut said = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut said).ok();
        if !said.is_empty() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert!(said.is_empty(), "wharf started on the wrong root: {said}");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("set the root to {}", dir.path().display())),
            "{err}"
        );
    }
}

mod s3 {
    use super::*;

    #[tokio::test]
    async fn registry2_then_wharf() {
        super::registry2_then_wharf(Backend::S3).await;
    }

    #[tokio::test]
    async fn wharf_then_registry2() {
        super::wharf_then_registry2(Backend::S3).await;
    }
}
