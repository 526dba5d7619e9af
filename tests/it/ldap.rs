//! LDAP logins against a real OpenLDAP `slapd` (Debian package `slapd`), started by the test
//! on a free loopback port with its own config and database in a temp dir.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::pki::{Leaf, Pki};
use crate::support::{have_program, TestServer};

const SCHEMA: &str = "/etc/ldap/schema";
const MODULES: &str = "/usr/lib/ldap";

/// dc=example,dc=org: alice (in pushers, with memberOf), bob, two entries with uid=twin,
/// and the service account wharf binds as.
const FIXTURE: &str = "\
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=org
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice
sn: A
userPassword: alice-pw
memberOf: cn=pushers,ou=groups,dc=example,dc=org

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: B
userPassword: bob-pw

dn: cn=twin one,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: twin
cn: twin one
sn: T
userPassword: twin-pw

dn: cn=twin two,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: twin
cn: twin two
sn: T
userPassword: twin-pw

dn: cn=wharf,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: wharf-service
cn: wharf
sn: service
userPassword: svc-pw

dn: cn=pushers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: pushers
member: uid=alice,ou=people,dc=example,dc=org
";

/// A slapd of the test's own; stopped (killed) on drop.
struct Slapd {
    dir: tempfile::TempDir,
    port: u16,
    /// The ldaps:// port, when started with a certificate.
    tls_port: Option<u16>,
    child: Option<Child>,
}

/// Debian puts slapd and slapadd in /usr/sbin, which is not on every user's PATH.
fn sbin(program: &str) -> String {
    let full = format!("/usr/sbin/{program}");
    match Path::new(&full).exists() {
        true => full,
        false => program.to_owned(),
    }
}

impl Slapd {
    /// Loads the fixture and starts slapd; None (test skipped) when slapd is not installed.
    async fn start() -> Option<Self> {
        Self::start_with(None).await
    }

    /// Like `start`; with a certificate, slapd also offers StartTLS on `port` and listens
    /// for ldaps:// on `tls_port`.
    async fn start_with(tls: Option<&Leaf>) -> Option<Self> {
        if !Path::new(&sbin("slapd")).exists() && !have_program("slapd", "slapd") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("db")).unwrap();
        let conf = format!(
            "include {SCHEMA}/core.schema\ninclude {SCHEMA}/cosine.schema\n\
             include {SCHEMA}/inetorgperson.schema\nmodulepath {MODULES}\n\
             moduleload back_mdb\nmoduleload memberof\npidfile {pid}\n\
             database mdb\nsuffix \"dc=example,dc=org\"\n\
             rootdn \"cn=admin,dc=example,dc=org\"\ndirectory {db}\noverlay memberof\n\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by users read by * none\n",
            pid = d.join("slapd.pid").display(),
            db = d.join("db").display(),
        );
        // TLS settings are global, so they go before `database`; `security tls=1` refuses
        // anything unencrypted, so a passing StartTLS test really used TLS.
        let conf = match tls {
            Some(leaf) => format!(
                "TLSCertificateFile {}\nTLSCertificateKeyFile {}\nsecurity tls=1\n{conf}",
                leaf.cert.display(),
                leaf.key.display()
            ),
            None => conf,
        };
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        std::fs::write(d.join("fixture.ldif"), FIXTURE).unwrap();
        let out = Command::new(sbin("slapadd"))
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("fixture.ldif"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "slapadd failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(d.join("service.pw"), "svc-pw\n").unwrap();
        let mut slapd = Self {
            dir,
            port: free_port(),
            tls_port: tls.map(|_| free_port()),
            child: None,
        };
        slapd.launch().await;
        Some(slapd)
    }

    /// Starts slapd on `self.port` and waits (bounded) until it accepts connections.
    async fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("slapd.log")).unwrap();
        // `-d 0` keeps slapd in the foreground (so it can be killed by its pid) without
        // debug output.
        let mut child = Command::new(sbin("slapd"))
            .arg("-h")
            .arg(self.urls())
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(d.join("slapd.log")).unwrap_or_default();
                panic!("slapd exited with {status}: {log}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                self.child = Some(child);
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        panic!("slapd did not answer on port {} within 5s", self.port);
    }

    fn urls(&self) -> String {
        let plain = format!("ldap://127.0.0.1:{}/", self.port);
        match self.tls_port {
            Some(p) => format!("{plain} ldaps://127.0.0.1:{p}/"),
            None => plain,
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn password_file(&self) -> PathBuf {
        self.dir.path().join("service.pw")
    }
}

/// A port nobody listens on right now (slapd binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A wharf with carol in an htpasswd file (asked first), then the directory; members of
/// `pushers` may push, every logged-in user may pull.
async fn wharf(slapd: &Slapd, groups: &str) -> (TestServer, tempfile::TempDir) {
    let url = format!("ldap://127.0.0.1:{}", slapd.port);
    wharf_at(slapd, &url, groups).await
}

/// `wharf` with the directory at `url`; `extra` holds more `ldap` keys (groups, TLS).
async fn wharf_at(slapd: &Slapd, url: &str, extra: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("users.htpasswd");
    std::fs::write(
        &htpasswd,
        format!("carol:{}\n", bcrypt::hash("carol-pw", 4).unwrap()),
    )
    .unwrap();
    let toml = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[[server]]
default = true
[server.auth]
providers = [
  {{ htpasswd = {htpasswd:?} }},
  {{ ldap = {{ url = "{url}", bind_dn = "cn=wharf,ou=people,dc=example,dc=org", bind_password_file = {pw:?}, base_dn = "ou=people,dc=example,dc=org", user_filter = "(uid={{user}})", {extra}, connect_timeout = "2s", timeout = "2s" }} }},
]
access = [
  {{ repos = "*", who = ["authenticated"], actions = ["pull"] }},
  {{ repos = "*", who = ["group:pushers"], actions = ["pull", "push"] }},
]
"#,
        pw = slapd.password_file(),
    );
    let (s, _) = TestServer::start_config(&toml).await;
    (s, dir)
}

async fn base(s: &TestServer, user: &str, password: &str) -> reqwest::Response {
    s.http
        .get(s.url("/v2/"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
}

/// Starting an upload needs push rights: 202 when allowed, 403 when not.
async fn start_upload(s: &TestServer, user: &str, password: &str) -> StatusCode {
    s.http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .status()
}

async fn pull(s: &TestServer, user: &str, password: &str) -> StatusCode {
    s.http
        .get(s.url("/v2/team/app/manifests/v1"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn ldap_logins_and_groups() {
    let Some(slapd) = Slapd::start().await else {
        return;
    };
    for groups in [
        "group_attribute = \"memberOf\"",
        "group_search = { base_dn = \"ou=groups,dc=example,dc=org\", filter = \"(member={dn})\" }",
    ] {
        let (s, _d) = wharf(&slapd, groups).await;
        assert_eq!(base(&s, "alice", "alice-pw").await.status(), StatusCode::OK);
        assert_eq!(base(&s, "bob", "bob-pw").await.status(), StatusCode::OK);
        // alice is in pushers; bob may only pull (404: nothing pushed yet, but allowed).
        assert_eq!(
            start_upload(&s, "alice", "alice-pw").await,
            StatusCode::ACCEPTED,
            "{groups}"
        );
        assert_eq!(
            start_upload(&s, "bob", "bob-pw").await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(pull(&s, "bob", "bob-pw").await, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn ldap_rejects_wrong_passwords_and_filter_injection() {
    let Some(slapd) = Slapd::start().await else {
        return;
    };
    let (s, _d) = wharf(&slapd, "group_attribute = \"memberOf\"").await;
    for (user, password) in [
        ("alice", "wrong"),
        // An empty password would be an unauthenticated bind, which LDAP calls success.
        ("alice", ""),
        ("nobody", "alice-pw"),
        // Unescaped, this would be (uid=*)(uid=*) and match every entry.
        ("*)(uid=*", "alice-pw"),
        ("*", "alice-pw"),
        // Unescaped, (uid=ali*) would find alice alone, and her password would work.
        ("ali*", "alice-pw"),
        ("alice)(uid=*", "alice-pw"),
        // Two entries match: neither is guessed.
        ("twin", "twin-pw"),
    ] {
        let r = base(&s, user, password).await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{user:?}/{password:?}"
        );
        assert!(r.headers().contains_key("www-authenticate"));
    }
    assert_eq!(base(&s, "alice", "alice-pw").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn ldap_outage_is_503_and_logins_recover() {
    let Some(mut slapd) = Slapd::start().await else {
        return;
    };
    let (s, _d) = wharf(&slapd, "group_attribute = \"memberOf\"").await;
    // A pooled service connection exists before the outage.
    assert_eq!(base(&s, "alice", "alice-pw").await.status(), StatusCode::OK);

    slapd.stop();
    // alice logged in just before: the login cache keeps serving her through the outage.
    assert_eq!(base(&s, "alice", "alice-pw").await.status(), StatusCode::OK);
    // bob was never verified: nothing can vouch for him now.
    let r = base(&s, "bob", "bob-pw").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.text().await.unwrap();
    assert!(body.contains("login service is unavailable"), "{body}");
    // Nor for a password the cache has not seen.
    assert_eq!(
        base(&s, "alice", "other").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // A wrong password cannot be told apart from a right one while the directory is
    // down: it is 503 too, never 401.
    assert_eq!(
        base(&s, "bob", "wrong").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    // The htpasswd provider is asked first and does not need the directory.
    assert_eq!(base(&s, "carol", "carol-pw").await.status(), StatusCode::OK);

    slapd.launch().await;
    assert_eq!(base(&s, "alice", "alice-pw").await.status(), StatusCode::OK);
    assert_eq!(base(&s, "bob", "bob-pw").await.status(), StatusCode::OK);
    assert_eq!(
        start_upload(&s, "alice", "alice-pw").await,
        StatusCode::ACCEPTED
    );
}

/// The web UI's login form asks the same providers: a directory user logs in, a wrong
/// password is refused, and an unreachable directory says so (503), never "wrong password".
#[tokio::test]
async fn the_ui_logs_in_directory_users() {
    let Some(mut slapd) = Slapd::start().await else {
        return;
    };
    let (s, _d) = wharf(&slapd, "group_attribute = \"memberOf\"").await;
    let mut b = crate::ui::Browser::new(&s);
    assert_eq!(
        b.login("alice", "wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        b.login("alice", "alice-pw").await.status,
        StatusCode::SEE_OTHER
    );
    assert!(b
        .get("/ui/")
        .await
        .body
        .contains("Signed in as <strong>alice</strong>"));
    slapd.stop();
    let mut other = crate::ui::Browser::new(&s);
    let down = other.login("bob", "bob-pw").await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        down.body.contains("login service is unavailable"),
        "{}",
        down.body
    );
}

#[tokio::test]
async fn a_directory_that_never_answers_is_503_after_the_timeout() {
    // Accepts connections and never says a word: the timeouts, not the client, must end it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("service.pw");
    std::fs::write(&pw, "svc-pw").unwrap();
    let toml = format!(
        r#"
[[listener]]
address = "127.0.0.1:0"
[[server]]
default = true
[server.auth]
providers = [{{ ldap = {{ url = "ldap://127.0.0.1:{port}", bind_dn = "cn=wharf,dc=example,dc=org", bind_password_file = {pw:?}, base_dn = "dc=example,dc=org", connect_timeout = "1s", timeout = "1s" }} }}]
access = [{{ repos = "*", who = ["authenticated"], actions = ["pull"] }}]
"#
    );
    let (s, _) = TestServer::start_config(&toml).await;
    let started = std::time::Instant::now();
    let r = base(&s, "alice", "alice-pw").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    hold.abort();
}

#[tokio::test]
async fn ldap_over_starttls_and_ldaps_trusts_the_ca_file() {
    let pki = Pki::new();
    let leaf = pki.leaf("slapd", &["127.0.0.1"]);
    let Some(slapd) = Slapd::start_with(Some(&leaf)).await else {
        return;
    };
    let ca = format!("ca_file = {:?}", pki.ca_path());
    let plain = format!("ldap://127.0.0.1:{}", slapd.port);
    let ldaps = format!("ldaps://127.0.0.1:{}", slapd.tls_port.unwrap());
    for (url, extra) in [
        (
            &plain,
            format!("{ca}, starttls = true, group_attribute = \"memberOf\""),
        ),
        (&ldaps, format!("{ca}, group_attribute = \"memberOf\"")),
    ] {
        let (s, _d) = wharf_at(&slapd, url, &extra).await;
        assert_eq!(
            base(&s, "alice", "alice-pw").await.status(),
            StatusCode::OK,
            "{url} {extra}"
        );
        assert_eq!(
            start_upload(&s, "alice", "alice-pw").await,
            StatusCode::ACCEPTED
        );
    }
    // A certificate from a CA wharf was not told to trust is refused: the directory is
    // unusable (503), and no password is sent to it.
    let other = Pki::new();
    let wrong_ca = format!("ca_file = {:?}", other.ca_path());
    let (s, _d) = wharf_at(&slapd, &ldaps, &wrong_ca).await;
    assert_eq!(
        base(&s, "alice", "alice-pw").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}
