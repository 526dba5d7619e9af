//! registry:2's own `config.yml`, given to `wharf serve` the ways registry:2 takes it:
//! `wharf serve <config.yml>` (as `registry serve <config.yml>`) and
//! `REGISTRY_CONFIGURATION_PATH` (as the container image sets it). The same file then
//! starts the real registry:2 (Debian's `docker-registry`) on what wharf stored. A
//! setting wharf cannot carry over stops start-up, every one of them named.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::clients::{import_image, run};
use crate::receiver::Receiver;
use crate::registry2_env::{spawn, wharf_run};
use crate::support::{have_program, podman};

/// registry:2's stock config.yml (the one its image ships), with a login and deletes, as
/// its deployment docs add them.
fn stock_config_yml(root: &Path, addr: &str, htpasswd: &Path) -> String {
    format!(
        "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  \
         filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  headers:\n    \
         X-Content-Type-Options: [nosniff]\nauth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n\
         health:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n",
        root.display(),
        htpasswd.display()
    )
}

fn htpasswd_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash("testpassword", 4).unwrap();
    std::fs::write(&path, format!("testuser:{hash}\n")).unwrap();
    path
}

/// A loopback address that was free a moment ago (registry:2 cannot listen on port 0).
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

#[test]
fn wharf_serve_takes_registry2s_config_yml_and_registry2_serves_what_it_stored() {
    if !have_program("podman", "podman")
        || !have_program("skopeo", "skopeo")
        || !have_program("docker-registry", "docker-registry")
    {
        return;
    }
    let (cwd, root, auth, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let htpasswd = htpasswd_file(auth.path());
    let registry2_addr = free_addr();
    let yml = auth.path().join("config.yml");
    let stock = stock_config_yml(root.path(), &registry2_addr.to_string(), &htpasswd);
    std::fs::write(&yml, stock).unwrap();

    // The file as registry:2 takes it; a variable over it wins, as on registry:2.
    let wharf = spawn(&mut wharf_run(
        cwd.path(),
        &["serve", yml.to_str().unwrap()],
        &[("REGISTRY_HTTP_ADDR", "127.0.0.1:0".into())],
    ));
    let registry = format!("127.0.0.1:{}", wharf.addr.port());
    // The header registry:2's stock file asks for (http.headers), which wharf always sends.
    let head = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-D", "-"])
        .arg(format!("http://{registry}/v2/")));
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let authfile = work.path().join("auth.json");
    let authfile = authfile.to_str().unwrap();
    let login = |registry: &str| {
        let wrong = podman(work.path())
            .args(["login", "--tls-verify=false", "--authfile", authfile])
            .args(["-u", "testuser", "-p", "wrong", registry])
            .output()
            .unwrap();
        assert!(!wrong.status.success(), "config.yml's htpasswd is in force");
        run(podman(work.path())
            .args(["login", "--tls-verify=false", "--authfile", authfile])
            .args(["-u", "testuser", "-p", "testpassword", registry]));
    };
    login(&registry);
    import_image(work.path(), "localhost/yml/app:1", "served from config.yml");
    run(podman(work.path())
        .args(["push", "--tls-verify=false", "--authfile", authfile])
        .args(["localhost/yml/app:1", &format!("{registry}/team/app:1")]));
    let inspect = |registry: &str| {
        let out = run(Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--authfile", authfile])
            .arg(format!("docker://{registry}/team/app:1")));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Digest"].as_str().unwrap().to_owned()
    };
    let digest = inspect(&registry);
    assert!(
        root.path()
            .join("docker/registry/v2/repositories/team/app")
            .is_dir(),
        "stored under config.yml's rootdirectory"
    );
    drop(wharf);

    // The same file starts registry:2, which serves what wharf stored.
    let mut registry2 = Registry2::start(&yml, registry2_addr, auth.path());
    login(&registry2_addr.to_string());
    assert_eq!(inspect(&registry2_addr.to_string()), digest);
    registry2.stop();
}

#[test]
fn registry_configuration_path_is_read_and_every_setting_wharf_lacks_is_named() {
    let (cwd, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let yml = dir.path().join("config.yml");
    std::fs::write(
        &yml,
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /tmp/x\nhttp:\n  addr: 127.0.0.1:0\n  \
         headers:\n    X-Frame-Options: [DENY]\nauth:\n  token:\n    realm: https://auth.example.com/token\n\
         proxy:\n  remoteurl: https://registry-1.docker.io\n",
    )
    .unwrap();
    let out = wharf_run(
        cwd.path(),
        &["serve"],
        &[
            ("REGISTRY_CONFIGURATION_PATH", yml.to_str().unwrap().into()),
            ("REGISTRY_HTTP_SECRET", "x".into()),
        ],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success(), "started anyway: {stdout}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    for named in [
        "`http.headers.X-Frame-Options`",
        "`auth.token.realm`",
        "`proxy.remoteurl`",
    ] {
        assert!(stderr.contains(named), "{named} not named: {stderr}");
    }

    // A config.yml that cannot be read is an error too, never a silent default.
    let missing = dir.path().join("nowhere.yml");
    let out = wharf_run(
        cwd.path(),
        &["serve"],
        &[(
            "REGISTRY_CONFIGURATION_PATH",
            missing.to_str().unwrap().into(),
        )],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("nowhere.yml"),
        "{stderr}"
    );
}

/// The real registry:2 on a config.yml, ready once `/v2/` answers (401 with logins).
struct Registry2 {
    child: Child,
}

impl Registry2 {
    fn start(yml: &Path, addr: SocketAddr, dir: &Path) -> Self {
        let log = dir.join("registry2.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(yml)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start docker-registry");
        let mut r = Self { child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = r.child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("docker-registry exited with {status}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "registry:2 never listened on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Registry2 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for the push event of `repo:tag` and returns it; every delivery before it must
/// have passed the endpoint's filters (no blob events: registry:2's `ignoredmediatypes`).
async fn push_event(receiver: &Receiver, repo: &str, tag: &str) -> (serde_json::Value, String) {
    let mut seen = 0;
    loop {
        let got = receiver.wait_for(seen + 1, Duration::from_secs(30)).await;
        for d in &got[seen..] {
            let event = d.event();
            let target = &event["target"];
            assert_ne!(target["mediaType"], "application/octet-stream", "{event}");
            if event["action"] == "push" && target["repository"] == repo && target["tag"] == tag {
                let auth = d
                    .headers
                    .get("authorization")
                    .map(|v| v.to_str().unwrap().to_owned());
                return (event, auth.unwrap_or_default());
            }
        }
        seen = got.len();
    }
}

/// registry:2's notification endpoint, served from the config.yml itself and from the
/// wharf.toml `import-config` writes: both deliver registry:2's envelope to the receiver,
/// with the endpoint's header, and leave out the blob events it ignores.
#[tokio::test(flavor = "multi_thread")]
async fn registry2_notification_endpoints_deliver_from_config_yml_and_its_conversion() {
    if !have_program("podman", "podman") {
        return;
    }
    let receiver = Receiver::http().await;
    let (cwd, root, work) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let yml = cwd.path().join("config.yml");
    std::fs::write(
        &yml,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n\
             notifications:\n  events:\n    includereferences: false\n  endpoints:\n    - name: CI Listener\n      \
             disabled: false\n      url: {}\n      headers:\n        Authorization: [Bearer t0ken]\n      \
             timeout: 500ms\n      threshold: 5\n      backoff: 1s\n      ignoredmediatypes:\n        \
             - application/octet-stream\n    - name: old\n      disabled: true\n      url: http://192.0.2.1/\n",
            root.path().display(),
            receiver.url()
        ),
    )
    .unwrap();
    import_image(work.path(), "localhost/hooks/app:1", "announced");
    let push = |addr: SocketAddr, tag: &str| {
        run(podman(work.path())
            .args(["push", "--tls-verify=false", "localhost/hooks/app:1"])
            .arg(format!("127.0.0.1:{}/team/hooks:{tag}", addr.port())));
    };

    let mut wharf = spawn(&mut wharf_run(
        cwd.path(),
        &["serve", yml.to_str().unwrap()],
        &[],
    ));
    push(wharf.addr, "from-yml");
    let (event, auth) = push_event(&receiver, "team/hooks", "from-yml").await;
    assert_eq!(auth, "Bearer t0ken");
    assert!(event["target"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    // Stopped as an operator would, so it hands the endpoint's queue over at once.
    wharf.terminate();

    let toml = cwd.path().join("wharf.toml");
    let convert = [
        "import-config",
        yml.to_str().unwrap(),
        "-o",
        toml.to_str().unwrap(),
    ];
    run(&mut wharf_run(cwd.path(), &convert, &[]));
    let written = std::fs::read_to_string(&toml).unwrap();
    assert!(written.contains("[[notifications.endpoint]]"), "{written}");
    assert!(!written.contains("NOT CARRIED OVER:"), "{written}");
    run(&mut wharf_run(
        cwd.path(),
        &["check-config", toml.to_str().unwrap()],
        &[],
    ));
    let wharf = spawn(&mut wharf_run(
        cwd.path(),
        &["serve", "--config", toml.to_str().unwrap()],
        &[],
    ));
    push(wharf.addr, "from-toml");
    let (_, auth) = push_event(&receiver, "team/hooks", "from-toml").await;
    assert_eq!(auth, "Bearer t0ken");
}
