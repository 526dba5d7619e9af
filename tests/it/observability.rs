//! The access log as an operator reads it, and Prometheus metrics on the admin listener.

use reqwest::StatusCode;

use crate::pki::{https_client, Pki};
use crate::support::{TestServer, WharfProcess};

#[tokio::test]
async fn metrics_count_requests_bytes_latency_and_handshakes() {
    let pki = Pki::new();
    let leaf = pki.leaf("m", &["m.test"]);
    let toml = format!(
        "[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"auto\"\n[admin]\naddress = \"127.0.0.1:0\"\n[[server]]\nnames = [\"m.test\"]\ndefault = true\ntls = {{ cert = {:?}, key = {:?} }}\n",
        leaf.cert, leaf.key
    );
    let (s, addrs) = TestServer::start_config(&toml).await;
    for _ in 0..3 {
        assert_eq!(
            s.http.get(s.url("/v2/")).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        s.http
            .get(s.url("/v2/x/manifests/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let c = https_client(&pki.ca_pem, &["m.test"], addrs[0]);
    c.get(format!("https://m.test:{}/v2/", addrs[0].port()))
        .send()
        .await
        .unwrap();

    let admin = s.admin.expect("admin listener");
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(line("wharf_http_requests_total{vhost=\"m.test\",route=\"/\",status=\"200\"}") >= 4.0);
    assert_eq!(
        line("wharf_http_requests_total{vhost=\"m.test\",route=\"/\",status=\"404\"}"),
        1.0
    );
    assert!(line("wharf_http_response_bytes_total{vhost=\"m.test\",route=\"/\"}") >= 8.0);
    assert!(line("wharf_http_request_duration_seconds_count{vhost=\"m.test\",route=\"/\"}") >= 5.0);
    assert_eq!(line("wharf_tls_handshakes_total{outcome=\"ok\"}"), 1.0);
    // The registry's own port does not serve metrics.
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// nginx's combined line, then wharf's `vhost=`, `route=` and `rt=`, and nothing before it.
const COMBINED: &str = r#"^127\.0\.0\.1 - - \[\d\d/(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d\d:\d\d:\d\d \+0000\] "GET /v2/ HTTP/1\.1" 200 2 "-" "test-agent/1\.0" vhost=default route=/ rt=\d+\.\d{3}$"#;

/// Runs wharf with `log` as its `[log]` table, makes one request and stops it; returns
/// what it wrote to stderr.
async fn one_request_logged(conf: &std::path::Path, log: &str) -> String {
    let root = tempfile::tempdir().unwrap();
    let log_path = conf.join("stderr.log");
    let stderr = std::fs::File::create(&log_path).unwrap();
    let toml = format!(
        "[log]\n{log}\n[[listener]]\naddress = \"127.0.0.1:0\"\n[storage]\nroot = {:?}\n",
        root.path().display().to_string()
    );
    let mut wharf = WharfProcess::spawn_logging(conf, &toml, stderr);
    let http = reqwest::Client::builder()
        .user_agent("test-agent/1.0")
        .build()
        .unwrap();
    let r = http
        .get(format!("http://{}/v2/?secret=query", wharf.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap();
    wharf.terminate();
    std::fs::read_to_string(&log_path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_plain_nginx_combined_on_stderr() {
    let conf = tempfile::tempdir().unwrap();
    let text = one_request_logged(conf.path(), "").await;
    let combined = regex::Regex::new(COMBINED).unwrap();
    let lines: Vec<_> = text.lines().filter(|l| combined.is_match(l)).collect();
    assert_eq!(lines.len(), 1, "one plain combined line in\n{text}");
    assert!(
        !text.contains("secret=query"),
        "query strings are not logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_to_a_file_or_off() {
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("access.log");
    let text = one_request_logged(conf.path(), &format!("access = {file:?}")).await;
    let written = std::fs::read_to_string(&file).unwrap();
    let combined = regex::Regex::new(COMBINED).unwrap();
    assert_eq!(written.lines().count(), 1, "{written}");
    assert!(combined.is_match(written.trim_end()), "{written}");
    assert!(!text.contains("GET /v2/"), "not on stderr too:\n{text}");

    let text = one_request_logged(conf.path(), "access = \"off\"").await;
    assert!(!text.contains("GET /v2/"), "{text}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
}

/// With JSON logs, access lines are JSON objects too (unless `access_format` says otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_are_json_next_to_a_json_log() {
    let conf = tempfile::tempdir().unwrap();
    let text = one_request_logged(conf.path(), "format = \"json\"").await;
    let access: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &serde_json::Value| v["path"] == "/v2/")
        .collect();
    assert_eq!(access.len(), 1, "{text}");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["user_agent"], "test-agent/1.0");
    assert!(access[0]["time"].is_string(), "{}", access[0]);
}

/// With `log.format = "json"`, everything wharf writes to stderr is JSON, the start-up hints
/// on trusting wharf's CA included, so a log shipper can parse every line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_log_is_json_from_the_first_line() {
    let (root, conf, ca) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log_path = conf.path().join("wharf.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let toml = format!(
        "[log]\nformat = \"json\"\n[[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"on\"\n[storage]\nroot = {:?}\n[tls]\nca_dir = {:?}\n[[server]]\nnames = [\"localhost\"]\ndefault = true\ntls = {{ self_signed = true }}\n",
        root.path().display().to_string(),
        ca.path().display().to_string()
    );
    let mut wharf = WharfProcess::spawn_logging(conf.path(), &toml, log);
    wharf.terminate();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let mut hint = None;
    for line in text.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\nin\n{text}"));
        if event["fields"]["cert_dir"].is_string() {
            hint = Some(event);
        }
    }
    let hint = hint.unwrap_or_else(|| panic!("no trust hint event in\n{text}"));
    let port = wharf.addr.port();
    assert_eq!(hint["fields"]["registry"], format!("localhost:{port}"));
    let ca_dir = std::fs::canonicalize(ca.path()).unwrap();
    assert_eq!(
        hint["fields"]["cert_dir"],
        ca_dir.join("trust").display().to_string()
    );
}
