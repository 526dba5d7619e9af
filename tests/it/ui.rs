//! The web UI under `/ui/`, as a browser meets it: pages render what was pushed, every
//! image-derived value is text (a hostile image cannot inject markup), viewers see only
//! what they may pull, deletes need the delete permission and a CSRF token, and failed UI
//! logins count against the same limits as `docker login`.

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::json;

use crate::support::{sha256, TestServer, OCI_INDEX, OCI_LAYER, OCI_MANIFEST};

pub const SCRIPT: &str = "<script>document.title='pwned'</script>";
pub const IMG: &str = "\"><img src=x onerror=\"document.title='pwned'\">";

/// A browser without JavaScript: keeps the UI cookie, follows no redirects.
pub struct Browser {
    http: Client,
    base: String,
    cookie: Option<String>,
}

/// A page as the browser got it.
pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub csp: Option<String>,
    pub body: String,
}

impl Page {
    /// The value of the first `<input name="csrf">` on the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .expect("a form with a CSRF token");
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

impl Browser {
    pub fn new(s: &TestServer) -> Self {
        Self {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header(COOKIE, format!("wharf_ui={c}")),
            None => req,
        };
        let r = req.header("Accept", "text/html").send().await.unwrap();
        if let Some(set) = r.headers().get(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let value = set
                .split(';')
                .next()
                .unwrap()
                .trim_start_matches("wharf_ui=");
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        let header = |name| {
            r.headers()
                .get(name)
                .map(|v: &reqwest::header::HeaderValue| v.to_str().unwrap().to_owned())
        };
        Page {
            status: r.status(),
            location: header(LOCATION),
            csp: header(CONTENT_SECURITY_POLICY),
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    /// Logs in through the form; returns the answer to the POST.
    pub async fn login(&mut self, user: &str, password: &str) -> Page {
        let csrf = self.get("/ui/login").await.csrf();
        self.post(
            "/ui/login",
            &[("csrf", &csrf), ("user", user), ("password", password)],
        )
        .await
    }
}

/// Pushes an image whose labels, env, history and annotations carry markup; returns the
/// manifest's digest.
pub async fn push_hostile_image(s: &TestServer, repo: &str, tag: &str) -> String {
    let config = json!({
        "created": "2026-01-02T03:04:05Z",
        "architecture": "amd64", "os": "linux",
        "config": {
            "Entrypoint": ["/bin/app", SCRIPT],
            "Env": [format!("EVIL={IMG}")],
            "Labels": { "org.example.title": SCRIPT, "org.example.img": IMG },
            "ExposedPorts": { "8080/tcp": {} }
        },
        "history": [{ "created_by": format!("RUN echo {SCRIPT}") }],
        "rootfs": { "type": "layers", "diff_ids": [] }
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = s.push_blob(repo, &config).await;
    let layer = b"hostile layer".to_vec();
    let layer_digest = s.push_blob(repo, &layer).await;
    let manifest = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len() }],
        "annotations": { "org.opencontainers.image.description": IMG }
    });
    let r = s.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    sha256(&serde_json::to_vec(&manifest).unwrap())
}

/// No markup from the image survives as markup.
fn assert_inert(body: &str) {
    assert!(!body.contains("<script>document"), "raw script tag: {body}");
    assert!(!body.contains("<img"), "raw img tag: {body}");
    assert!(
        body.contains("&lt;script&gt;"),
        "the label is shown, escaped"
    );
}

#[tokio::test]
async fn pages_show_what_was_pushed_and_escape_what_the_image_says() {
    let s = TestServer::start().await;
    let digest = push_hostile_image(&s, "team/app", "1.0").await;
    let mut b = Browser::new(&s);
    let list = b.get("/ui/").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.csp.unwrap().contains("script-src 'self'"));
    assert!(list.body.contains("team/app") && list.body.contains("1 tag"));

    let repo = b.get("/ui/repo/team/app").await;
    assert_eq!(repo.status, StatusCode::OK);
    let host = s.addr.to_string();
    for part in [
        format!("docker pull {host}/team/app:1.0"),
        format!("podman pull {host}/team/app:1.0"),
        format!("{host}/team/app@{digest}"),
        "2026-01-02T03:04:05Z".into(),
        "linux/amd64".into(),
    ] {
        assert!(repo.body.contains(&part), "{part} in {}", repo.body);
    }
    assert!(
        !repo.body.contains("Delete tag"),
        "deletes are off by default"
    );

    for path in [
        "/ui/image/team/app:1.0".to_string(),
        format!("/ui/image/team/app@{digest}"),
    ] {
        let image = b.get(&path).await;
        assert_eq!(image.status, StatusCode::OK, "{path}");
        assert_inert(&image.body);
        for part in [
            "Layers",
            "8080/tcp",
            "org.example.title",
            "RUN echo",
            OCI_LAYER,
        ] {
            assert!(image.body.contains(part), "{part} in {}", image.body);
        }
    }
    let missing = b.get("/ui/image/team/app:nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let missing = b.get("/ui/repo/no/such").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let css = b.get("/ui/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains("prefers-color-scheme"));
}

/// Today's date in UTC, as the pages print dates.
fn today() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()[..10].to_owned()
}

/// `1.2 kB`, as the pages print sizes.
fn kb(bytes: usize) -> String {
    format!("{:.1} kB", bytes as f64 / 1000.0)
}

/// The list's tag counts, sizes and last pushes (from the repository index) follow pushes
/// and deletes at once; a repository's tags are dated by their push.
#[tokio::test]
async fn lists_show_tag_counts_sizes_and_push_dates_that_follow_changes() {
    let s = TestServer::start_with("[registry]\ndelete = true\n").await;
    let mut b = Browser::new(&s);
    let before = today();
    let (_, m1, _) = s.push_image("team/app", "1", &[7u8; 2000]).await;
    let one = m1.len() + "{\"layer\":2000}".len() + 2000;
    let list = b.get("/ui/").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("1 tag<"), "{}", list.body);
    assert!(list.body.contains(&kb(one)), "{} in {}", kb(one), list.body);
    let dated = |body: &str| body.contains(&before) || body.contains(&today());
    assert!(dated(&list.body), "last push in {}", list.body);

    // Seen at once, with the second image's blobs added to the size.
    let (_, m2, _) = s.push_image("team/app", "2", &[8u8; 3000]).await;
    let two = one + m2.len() + "{\"layer\":3000}".len() + 3000;
    let list = b.get("/ui/").await;
    assert!(
        list.body.contains("2 tags") && list.body.contains(&kb(two)),
        "{}",
        list.body
    );
    let repo = b.get("/ui/repo/team/app").await;
    assert_eq!(repo.body.matches("Pushed").count(), 2, "{}", repo.body);
    assert!(dated(&repo.body), "push dates in {}", repo.body);

    let r = s
        .http
        .delete(s.url("/v2/team/app/manifests/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let list = b.get("/ui/").await;
    assert!(list.body.contains("1 tag<"), "{}", list.body);
    assert!(list.body.contains(&kb(two - one)), "{}", list.body);
}

#[tokio::test]
async fn search_filters_and_pages_the_repository_list() {
    let s = TestServer::start().await;
    for repo in ["alpha/one", "alpha/two", "beta/three"] {
        s.push_image(repo, "1", repo.as_bytes()).await;
    }
    let mut b = Browser::new(&s);
    let found = b.get("/ui/?q=ALPHA").await;
    assert!(found.body.contains("alpha/one") && found.body.contains("alpha/two"));
    assert!(!found.body.contains("beta/three"));
    assert!(found.body.contains("2 repositories"));
    let none = b.get("/ui/?q=%3Cscript%3E").await;
    assert!(none.body.contains("0 repositories"));
    assert!(
        !none.body.contains("<script>"),
        "the query is echoed as text"
    );
}

#[tokio::test]
async fn an_index_shows_its_platforms_and_referrers_form_a_tree() {
    let s = TestServer::start().await;
    let (amd, amd_bytes, _) = s.push_image("multi/app", "amd", b"amd64 layer").await;
    let (arm, arm_bytes, _) = s.push_image("multi/app", "arm", b"arm64 layer").await;
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            { "mediaType": OCI_MANIFEST, "digest": amd, "size": amd_bytes.len(), "platform": { "os": "linux", "architecture": "amd64" } },
            { "mediaType": OCI_MANIFEST, "digest": arm, "size": arm_bytes.len(), "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" } }
        ]
    });
    assert_eq!(
        s.put_manifest("multi/app", "1", OCI_INDEX, &index)
            .await
            .status(),
        StatusCode::CREATED
    );
    let index_digest = sha256(&serde_json::to_vec(&index).unwrap());
    // A signature of the index, and an attestation of the signature.
    let empty = s.push_blob("multi/app", b"{}").await;
    let referrer = |subject: &str, kind: &str| {
        json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": kind,
            "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2 },
            "layers": [],
            "subject": { "mediaType": OCI_MANIFEST, "digest": subject, "size": 1 }
        })
    };
    let sig = referrer(&index_digest, "application/vnd.example.signature");
    let sig_digest = sha256(&serde_json::to_vec(&sig).unwrap());
    let r = s
        .put_manifest("multi/app", &sig_digest, OCI_MANIFEST, &sig)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let att = referrer(&sig_digest, "application/vnd.example.attestation");
    let att_digest = sha256(&serde_json::to_vec(&att).unwrap());
    let r = s
        .put_manifest("multi/app", &att_digest, OCI_MANIFEST, &att)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    let mut b = Browser::new(&s);
    let repo = b.get("/ui/repo/multi/app").await;
    assert!(
        repo.body.contains("linux/amd64, linux/arm64/v8"),
        "{}",
        repo.body
    );
    let page = b.get(&format!("/ui/image/multi/app@{index_digest}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("linux/arm64/v8"));
    let sig_at = page
        .body
        .find("application/vnd.example.signature")
        .expect("signature");
    let att_at = page
        .body
        .find("application/vnd.example.attestation")
        .expect("attestation");
    assert!(sig_at < att_at);
    // The attestation is nested inside the signature's item.
    assert!(page.body[sig_at..att_at].contains("<ul class=\"tree\">"));
}

#[tokio::test]
async fn a_browser_asking_for_the_root_is_sent_to_the_ui_and_curl_is_not() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    let root = b.get("/").await;
    assert_eq!(root.status, StatusCode::SEE_OTHER);
    assert_eq!(root.location.as_deref(), Some("/ui/"));
    let banner = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(banner.status(), StatusCode::OK);
    assert!(banner.text().await.unwrap().contains("/v2/"));
}

#[tokio::test]
async fn ui_false_turns_the_ui_off() {
    let (s, _) = TestServer::start_config(
        "[[listener]]\naddress = \"127.0.0.1:0\"\n[[server]]\ndefault = true\nui = false\n",
    )
    .await;
    let mut b = Browser::new(&s);
    assert_eq!(b.get("/ui/").await.status, StatusCode::NOT_FOUND);
    assert_eq!(b.get("/").await.status, StatusCode::OK, "the API banner");
}
