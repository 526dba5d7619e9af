//! The pull-through cache against real upstream registries (Debian's `docker-registry`,
//! Distribution 2.8.2, on loopback): podman through a TLS + htpasswd upstream (cold pull,
//! warm pull that never reaches the upstream, a moved tag seen only once its TTL passed,
//! the upstream stopped), concurrent cold pulls of one big layer, a transfer cut mid-blob,
//! and `?ns=` / prefix routing to two upstreams.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reqwest::{Client, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::clients::{import_image, run};
use crate::pki::Pki;
use crate::support::{
    bytes_of, have_program, image_manifest, podman, sha256, Backend, TestServer, TestStore,
    WharfProcess,
};
use crate::upstream_registry::{Login, UpstreamRegistry};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn tools() -> bool {
    have_program("docker-registry", "docker-registry")
        && have_program("podman", "podman")
        && have_program("skopeo", "skopeo")
}

/// The digest of the manifest skopeo reads at `reference` (`docker://...`).
fn manifest_digest(reference: &str, extra: &[&str]) -> String {
    let out = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .args(extra)
        .arg(reference));
    sha256(&out.stdout)
}

fn mirror_route(path: &str, upstream: &UpstreamRegistry, ttl: &str, extra: &str) -> String {
    format!(
        "[[server.route]]\npath = {path:?}\nmirror = {:?}\ntag_ttl = {ttl:?}\n{extra}",
        upstream.url
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn podman_pulls_through_a_tls_upstream_and_the_cache_outlives_it() {
    if !tools() {
        return;
    }
    let (up_dir, conf, work, root) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let pki = Pki::new();
    let mut upstream =
        UpstreamRegistry::start(up_dir.path(), Some(&pki), Login::Basic("puller", "s3cret")).await;
    let creds = ["--creds", "puller:s3cret", "--tls-verify=false"];
    let first_id = import_image(work.path(), "localhost/src/app:1", "version one");
    let upstream_ref = format!("{}/team/app:1", upstream.addr);
    run(podman(work.path())
        .arg("push")
        .args(creds)
        .args(["localhost/src/app:1", &upstream_ref]));
    let first = manifest_digest(
        &format!("docker://{upstream_ref}"),
        &["--creds", "puller:s3cret"],
    );

    let password = conf.path().join("upstream-password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let login = format!(
        "ca_file = {:?}\nusername = \"puller\"\npassword_file = {:?}\n",
        pki.ca_path().display().to_string(),
        password.display().to_string()
    );
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n[[server]]\ndefault = true\n{}{}[[server.route]]\npath = \"/\"\nregistry = {{}}\n",
        root.path().display().to_string(),
        mirror_route("/v2/hub/", &upstream, "1h", &login),
        mirror_route("/v2/fresh/", &upstream, "0s", &login),
    );
    let wharf = WharfProcess::spawn_async(conf.path(), &toml).await;
    let via = |route: &str| format!("{}/{route}/team/app:1", wharf.addr);

    // Cold: everything comes from upstream, over TLS, with the login.
    run(podman(work.path()).args(["rmi", "-a", "-f"]));
    run(podman(work.path()).args(["pull", "-q", "--tls-verify=false", &via("hub")]));
    let id =
        run(podman(work.path()).args(["image", "inspect", "--format", "{{.Id}}", &via("hub")]));
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        first_id.trim_start_matches("sha256:")
    );
    let blob_gets = upstream.requests("GET /v2/team/app/blobs/");
    assert_eq!(
        blob_gets,
        2,
        "config and layer, once each:\n{}",
        upstream.log_text()
    );
    let touched = upstream.requests("GET /v2/team/") + upstream.requests("HEAD /v2/team/");

    // Warm: nothing reaches the upstream.
    run(podman(work.path()).args(["rmi", "-a", "-f"]));
    run(podman(work.path()).args(["pull", "-q", "--tls-verify=false", &via("hub")]));
    let after = upstream.requests("GET /v2/team/") + upstream.requests("HEAD /v2/team/");
    assert_eq!(
        after,
        touched,
        "the second pull went upstream:\n{}",
        upstream.log_text()
    );

    // The tag moves upstream: within the TTL the cache still says the old digest; a route
    // whose TTL has passed (0 s) checks with a HEAD and fetches the new one.
    import_image(work.path(), "localhost/src/app:2", "version two");
    run(podman(work.path())
        .arg("push")
        .args(creds)
        .args(["localhost/src/app:2", &upstream_ref]));
    let second = manifest_digest(
        &format!("docker://{upstream_ref}"),
        &["--creds", "puller:s3cret"],
    );
    assert_ne!(first, second);
    assert_eq!(
        manifest_digest(&format!("docker://{}", via("hub")), &[]),
        first
    );
    assert_eq!(
        manifest_digest(&format!("docker://{}", via("fresh")), &[]),
        second
    );
    // (Without the images podman made, so it fetches every layer.)
    run(podman(work.path()).args(["rmi", "-a", "-f"]));
    run(podman(work.path()).args(["pull", "-q", "--tls-verify=false", &via("fresh")]));

    // A push to the mirror is refused, clearly.
    let push = podman(work.path())
        .args(["push", "--tls-verify=false", &via("fresh")])
        .output()
        .unwrap();
    assert!(!push.status.success());
    let said = String::from_utf8_lossy(&push.stderr);
    assert!(said.contains("read-only"), "{said}");

    // The upstream goes away: the cached tag is served, marked stale.
    upstream.stop();
    let r = Client::new()
        .get(format!(
            "http://{}/v2/fresh/team/app/manifests/1",
            wharf.addr
        ))
        .header("Accept", ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let warning = r
        .headers()
        .get("warning")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        warning.as_deref().is_some_and(|w| w.starts_with("110 ")),
        "{warning:?}"
    );
    assert_eq!(sha256(&r.bytes().await.unwrap()), second);
    run(podman(work.path()).args(["rmi", "-a", "-f"]));
    run(podman(work.path()).args(["pull", "-q", "--tls-verify=false", &via("fresh")]));
    run(podman(work.path()).args(["pull", "-q", "--tls-verify=false", &via("hub")]));
}

/// Pushes a one-layer image to the registry at `base` (anonymous); returns the manifest's
/// and the layer's digests.
pub(crate) async fn push_image(
    base: &str,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> (String, String) {
    let http = Client::new();
    let config = format!("{{\"layer\":{}}}", layer.len()).into_bytes();
    for blob in [&config[..], layer] {
        // Distribution 2.8 has no monolithic POST: open a session, then PUT the bytes.
        let r = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let location = match location.starts_with('/') {
            true => format!("{base}{location}"),
            false => location,
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = http
            .put(format!("{location}{sep}digest={}", sha256(blob)))
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let manifest = image_manifest(
        &sha256(&config),
        config.len(),
        &[(&sha256(layer), layer.len())],
    );
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    (sha256(&bytes), sha256(layer))
}

/// A TCP relay to `to`. While `cut_after` is non-zero, the first connection that carries
/// more than that many bytes back to the client is cut there (once).
async fn relay(to: SocketAddr, cut_after: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let cut = cut_after.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(to).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                let mut sent = 0u64;
                let mut buf = vec![0u8; 64 << 10];
                while let Ok(n) = sr.read(&mut buf).await {
                    if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    sent += n as u64;
                    let limit = cut.load(Ordering::SeqCst);
                    if limit != 0
                        && sent > limit
                        && cut
                            .compare_exchange(limit, 0, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                    {
                        return; // both halves drop: the connection is cut mid-body
                    }
                }
            });
        }
    });
    addr
}

pub(crate) async fn mirror_of(url: &str, ns: &str) -> TestServer {
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nmirror = {url:?}\nns = {ns:?}\n"
    );
    TestServer::start_config(&toml).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn eight_cold_pulls_of_a_big_layer_make_one_upstream_get_and_a_cut_leaves_nothing() {
    if !have_program("docker-registry", "docker-registry") {
        return;
    }
    let up_dir = tempfile::tempdir().unwrap();
    let upstream = UpstreamRegistry::start(up_dir.path(), None, Login::Anonymous).await;
    let layer = bytes_of(64 << 20, 7);
    let (_, digest) = push_image(&upstream.url, "team/big", "1", &layer).await;
    let cut = Arc::new(AtomicU64::new(8 << 20));
    let relayed = relay(upstream.addr, cut.clone()).await;
    let wharf = mirror_of(&format!("http://{relayed}"), "up.example").await;
    let url = wharf.url(&format!("/v2/team/big/blobs/{digest}"));
    let gets = format!("GET /v2/team/big/blobs/{digest}");

    // Cut after 8 MiB: the client sees a broken download, and nothing is cached.
    let broken = match wharf.http.get(&url).send().await.unwrap().bytes().await {
        Ok(body) => body.len() < layer.len(),
        Err(_) => true,
    };
    assert!(broken, "the cut download looked whole");
    let data = wharf
        .root
        .join("docker/registry/v2/blobs/sha256")
        .join(&digest["sha256:".len().."sha256:".len() + 2])
        .join(&digest["sha256:".len()..])
        .join("data");
    assert!(!data.exists(), "a partial blob was cached");
    assert_eq!(upstream.requests(&gets), 1);

    // Eight at once, cold: one upstream GET, eight whole bodies.
    let pulls: Vec<_> = (0..8)
        .map(|_| {
            let (http, url) = (wharf.http.clone(), url.clone());
            tokio::spawn(async move { http.get(url).send().await.unwrap().bytes().await.unwrap() })
        })
        .collect();
    for pull in pulls {
        assert_eq!(sha256(&pull.await.unwrap()), digest);
    }
    assert_eq!(upstream.requests(&gets), 2, "{}", upstream.log_text());
    assert!(data.exists(), "the blob was cached whole");
    // And now served locally: no more upstream GETs.
    let body = wharf
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&body), digest);
    assert_eq!(upstream.requests(&gets), 2);

    // Another repository with the same layer: linked after a HEAD, no bytes fetched again.
    push_image(&upstream.url, "team/big2", "1", &layer).await;
    let other = wharf.url(&format!("/v2/team/big2/blobs/{digest}"));
    let body = wharf
        .http
        .get(&other)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&body), digest);
    assert_eq!(
        upstream.requests(&format!("GET /v2/team/big2/blobs/{digest}")),
        0
    );
    assert_eq!(
        upstream.requests(&format!("HEAD /v2/team/big2/blobs/{digest}")),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_ns_and_path_prefixes_reach_two_upstreams() {
    if !have_program("docker-registry", "docker-registry") {
        return;
    }
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = UpstreamRegistry::start(dir1.path(), None, Login::Anonymous).await;
    let two = UpstreamRegistry::start(dir2.path(), None, Login::Anonymous).await;
    let (from_one, _) = push_image(&one.url, "team/app", "1", b"layer of one").await;
    let (from_two, _) = push_image(&two.url, "team/app", "1", b"layer of two").await;
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\n\
         [[server.route]]\npath = \"/\"\nmirror = {:?}\nns = \"one.example\"\n\
         [[server.route]]\npath = \"/\"\nmirror = {:?}\nns = \"two.example\"\n\
         [[server.route]]\npath = \"/v2/two/\"\nmirror = {:?}\nns = \"two.example\"\n",
        one.url, two.url, two.url
    );
    let (wharf, _) = TestServer::start_config(&toml).await;
    let get = |path: &str| {
        let r = wharf
            .http
            .get(wharf.url(path))
            .header("Accept", ACCEPT)
            .send();
        async move {
            let r = r.await.unwrap();
            (r.status(), sha256(&r.bytes().await.unwrap()))
        }
    };
    assert_eq!(
        get("/v2/team/app/manifests/1?ns=one.example").await,
        (StatusCode::OK, from_one.clone())
    );
    assert_eq!(
        get("/v2/team/app/manifests/1?ns=two.example").await,
        (StatusCode::OK, from_two.clone())
    );
    assert_eq!(
        get("/v2/team/app/manifests/1").await,
        (StatusCode::OK, from_one.clone())
    );
    assert_eq!(
        get("/v2/two/team/app/manifests/1").await,
        (StatusCode::OK, from_two)
    );
    assert_eq!(
        get("/v2/team/app/manifests/1?ns=three.example").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get("/v2/team/app/manifests/404?ns=one.example").await.0,
        StatusCode::NOT_FOUND
    );

    // The metrics: one miss and two hits for one.example (by tag and by digest), bytes
    // fetched, and a 404 is no upstream error.
    let digest_path = format!("/v2/team/app/manifests/{from_one}?ns=one.example");
    assert_eq!(get(&digest_path).await.0, StatusCode::OK);
    let admin = wharf.admin.expect("admin listener");
    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("wharf_mirror_{name}_total{{ns=\"one.example\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse::<u64>().unwrap())
    };
    assert_eq!(value("misses"), Some(2), "{metrics}"); // the tag, and the unknown tag
    assert_eq!(value("hits"), Some(2), "{metrics}");
    assert!(value("upstream_bytes").is_some_and(|b| b > 0), "{metrics}");
    assert_eq!(value("upstream_errors"), None, "{metrics}");
}

/// Distribution on S3 (moto) answers blob GETs with a 307 to a presigned URL, as Docker
/// Hub, ghcr.io and quay.io send them to a CDN: wharf follows it (without its credentials).
#[tokio::test(flavor = "multi_thread")]
async fn blob_redirects_to_a_presigned_store_url_are_followed() {
    if !have_program("docker-registry", "docker-registry") {
        return;
    }
    let Some(store) = TestStore::fresh(Backend::S3) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let storage = format!(
        "  s3:\n    accesskey: testing\n    secretkey: testing\n    region: us-east-1\n    \
         regionendpoint: {}\n    bucket: {}\n    secure: false\n    rootdirectory: /up\n",
        store.endpoint, store.bucket
    );
    let upstream = UpstreamRegistry::start_on(dir.path(), None, Login::Anonymous, &storage).await;
    let (_, layer) = push_image(&upstream.url, "team/app", "1", b"a layer behind a redirect").await;
    let wharf = mirror_of(&upstream.url, "up.example").await;
    let r = wharf
        .http
        .get(wharf.url(&format!("/v2/team/app/blobs/{layer}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sha256(&r.bytes().await.unwrap()), layer);
    let redirected = upstream
        .log_text()
        .lines()
        .any(|l| l.contains(&format!("\"GET /v2/team/app/blobs/{layer} HTTP/1.1\" 307")));
    assert!(
        redirected,
        "the upstream did not redirect:\n{}",
        upstream.log_text()
    );
}
