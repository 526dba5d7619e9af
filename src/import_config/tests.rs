//! `import-config`'s rules, one test each, and every fixture pair converted into a config
//! wharf accepts.

use super::{convert, Inputs};
use crate::config::{Config, RouteTarget, StorageBackend, TlsMode};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/registry2");

fn fixture(dir: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("{FIXTURES}/{dir}/{file}")).ok()
}

fn toml(yml: &str, nginx: Option<&str>) -> String {
    convert(&Inputs {
        registry_yml: ("config.yml", yml),
        nginx: nginx.map(|n| ("nginx.conf", n)),
    })
    .unwrap()
    .toml
}

/// The converted text with its absolute paths moved under `dir`, where the files it
/// names are made, so validation finds them.
fn accepted(text: &str, dir: &std::path::Path) -> Config {
    let base = dir.display().to_string();
    let moved = text
        .replace("\"/etc/", &format!("\"{base}/etc/"))
        .replace("\"/var/lib/registry", &format!("\"{base}/var/lib/registry"));
    for path in moved
        .split('"')
        .filter(|p| p.starts_with(&base) && p.contains("/etc/"))
    {
        let path = std::path::Path::new(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }
    Config::from_toml(&moved, "converted").unwrap_or_else(|e| panic!("{e}\n{moved}"))
}

#[test]
fn every_fixture_pair_converts_into_a_config_wharf_accepts() {
    let dirs = std::fs::read_dir(FIXTURES).unwrap();
    let mut seen = 0;
    for dir in dirs.flatten().filter(|d| d.path().is_dir()) {
        let name = dir.file_name().to_string_lossy().into_owned();
        let yml = fixture(&name, "config.yml").unwrap();
        let out = toml(&yml, fixture(&name, "nginx.conf").as_deref());
        accepted(&out, tempfile::tempdir().unwrap().path());
        seen += 1;
    }
    assert!(seen >= 4, "fixtures: {seen}");
}

#[test]
fn the_image_default_is_a_plain_registry_on_5000() {
    let out = toml(&fixture("default", "config.yml").unwrap(), None);
    let c = accepted(&out, tempfile::tempdir().unwrap().path());
    assert_eq!(c.listeners[0].address.to_string(), "0.0.0.0:5000");
    assert!(c.storage.root.ends_with("var/lib/registry"));
    // wharf sends registry:2's stock header by itself.
    assert!(out.contains("registry:2's http.headers.X-Content-Type-Options: not needed"));
    assert!(!out.contains("NOT CARRIED OVER:"), "{out}");
    assert!(out.contains("health.storagedriver.enabled, health.storagedriver.interval"));
}

#[test]
fn registry_tls_and_htpasswd_carry_over() {
    let out = toml(&fixture("deploy-tls-htpasswd", "config.yml").unwrap(), None);
    let c = accepted(&out, tempfile::tempdir().unwrap().path());
    assert_eq!(c.listeners[0].tls, TlsMode::On);
    let auth = c.servers[0].auth.as_ref().unwrap();
    assert_eq!(auth.realm, "Registry Realm");
    assert_eq!(auth.access[0].actions, ["pull", "push", "delete"]);
    assert_eq!(c.registry.delete, Some(true));
    assert_eq!(c.admin_address.unwrap().to_string(), "127.0.0.1:5001");
    assert!(
        !out.contains("asecretforlocaldevelopment"),
        "http.secret is not copied"
    );
}

#[test]
fn nginx_in_front_replaces_the_registrys_address() {
    let out = toml(
        &fixture("nginx-auth-proxy", "config.yml").unwrap(),
        fixture("nginx-auth-proxy", "nginx.conf").as_deref(),
    );
    let c = accepted(&out, tempfile::tempdir().unwrap().path());
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address.to_string(), "0.0.0.0:443");
    let s = &c.servers[0];
    assert!(s.default, "nginx's first server is its default");
    assert_eq!(s.names[0].to_string(), "myregistrydomain.com");
    assert_eq!(s.auth.as_ref().unwrap().realm, "Registry realm");
    assert_eq!(s.routes[0].prefix, "/v2/");
    assert!(matches!(s.routes[0].target, RouteTarget::Registry { .. }));
    assert_eq!(
        s.routes[0].max_body_bytes, None,
        "client_max_body_size 0 is no limit"
    );
    assert!(out.contains("the user-agent check"), "{out}");
}

#[test]
fn a_ui_outside_registry_logins_stays_public_and_port_80_redirects() {
    let out = toml(
        &fixture("nginx-ui-s3", "config.yml").unwrap(),
        fixture("nginx-ui-s3", "nginx.conf").as_deref(),
    );
    let c = accepted(&out, tempfile::tempdir().unwrap().path());
    let addrs: Vec<String> = c.listeners.iter().map(|l| l.address.to_string()).collect();
    assert_eq!(addrs, ["0.0.0.0:443", "0.0.0.0:80"]);
    assert_eq!(
        c.listeners[1].plain,
        crate::config::PlainMode::Redirect { port: 443 }
    );
    let s = &c.servers[0];
    let ui = s.routes.iter().find(|r| r.prefix == "/").unwrap();
    assert!(
        ui.public,
        "registry:2 checked logins, nginx did not: the UI stays open"
    );
    assert!(
        matches!(&ui.target, RouteTarget::Upstream { url, .. } if *url == "http://127.0.0.1:8080/")
    );
    let docs = s.routes.iter().find(|r| r.prefix == "/docs/").unwrap();
    assert!(matches!(
        &docs.target,
        RouteTarget::Redirect { status: 302, .. }
    ));
    let StorageBackend::S3(s3) = &c.storage.backend else {
        panic!("not s3")
    };
    assert_eq!((s3.prefix.as_str(), s3.part_size), ("docker", 10485760));
    assert!(out.contains("nginx also listened on [::]:443"));
    // registry:2's endpoint, in its envelope, with every action as registry:2 sends them.
    let hook = &c.notifications.endpoints[0];
    assert_eq!(
        (hook.name.as_str(), hook.url.to_string().as_str()),
        ("ci-listener", "https://ci.example.com/registry-events")
    );
    assert_eq!(hook.format, crate::config::EventFormat::Distribution);
    assert!(hook.pulls && hook.actions.len() == 4);
    assert_eq!(hook.timeout, std::time::Duration::from_millis(500));
    assert!(out.contains("registry:2's notifications.endpoints.0.threshold: not needed"));
}

#[test]
fn logins_on_one_location_leave_the_others_public() {
    let nginx = "server {\n listen 80;\n location /v2/ { auth_basic \"r\"; auth_basic_user_file /etc/u; proxy_pass http://registry:5000; }\n location /status/ { proxy_pass http://10.0.0.9:81/; }\n}\n";
    let c = accepted(
        &toml("version: 0.1\n", Some(nginx)),
        tempfile::tempdir().unwrap().path(),
    );
    let status = c.servers[0]
        .routes
        .iter()
        .find(|r| r.prefix == "/status/")
        .unwrap();
    assert!(status.public);
}

#[test]
fn what_nginx_cannot_say_in_wharf_is_a_comment() {
    let nginx = "server {\n listen 80;\n gzip on;\n location ~ ^/v2/ { proxy_pass http://registry:5000; }\n location /v2/ { proxy_pass http://registry:5000; }\n}\n";
    let out = toml("version: 0.1\n", Some(nginx));
    assert!(
        out.contains("NOT CARRIED OVER: `gzip on` (line 3)"),
        "{out}"
    );
    assert!(
        out.contains("NOT CARRIED OVER: `location ~ ^/v2/` (line 4)"),
        "{out}"
    );
    accepted(&out, tempfile::tempdir().unwrap().path());
}

/// Found by the `nginx_site` fuzz target: a control character in an nginx line that a
/// note quotes made the written file unreadable (TOML forbids them even in comments).
#[test]
fn control_characters_quoted_in_notes_are_escaped() {
    let nginx = "server {\n listen 80;\n location /\u{1a}x { return 404; }\n location /v2/ { proxy_pass http://registry:5000; }\n}\n";
    let out = toml("version: 0.1\n", Some(nginx));
    assert!(out.contains("\\u{1a}"), "{out}");
    accepted(&out, tempfile::tempdir().unwrap().path());
}

#[test]
fn proxy_pass_without_a_path_keeps_the_location() {
    let nginx = "upstream ui { server 10.0.0.7:8080; }\nserver {\n listen 80;\n location /ui/ { proxy_pass http://ui; proxy_read_timeout 120; }\n}\n";
    let c = accepted(
        &toml("version: 0.1\n", Some(nginx)),
        tempfile::tempdir().unwrap().path(),
    );
    let RouteTarget::Upstream { url, timeout, .. } = &c.servers[0].routes[0].target else {
        panic!("not an upstream")
    };
    assert_eq!(url.to_string(), "http://10.0.0.7:8080/ui/");
    assert_eq!(*timeout, std::time::Duration::from_secs(120));
}

#[test]
fn broken_inputs_name_the_file() {
    let e = convert(&Inputs {
        registry_yml: ("config.yml", "storage: [\n"),
        nginx: None,
    })
    .err()
    .unwrap();
    assert!(e.to_string().starts_with("config.yml:"), "{e}");
    let e = convert(&Inputs {
        registry_yml: ("config.yml", "version: 0.1\n"),
        nginx: Some(("site.conf", "server { listen 80;\n")),
    })
    .err()
    .unwrap();
    assert!(e.to_string().starts_with("site.conf: line 1"), "{e}");
}
