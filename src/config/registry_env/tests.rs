//! The registry:2 settings' rules, one test each.

use super::{Applied, Effect, Setting, Unsupported};
use crate::config::raw::RawConfig;
use crate::config::{Config, ProviderConfig, RouteTarget, ServerTls, StorageBackend, TlsMode};

fn with(toml: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
    let settings = vars.iter().map(|(n, v)| Setting::variable(n, v)).collect();
    Config::from_toml_with(toml, "test", settings).map_err(|e| e.to_string())
}

fn env(vars: &[(&str, &str)]) -> Config {
    with("", vars).unwrap()
}

fn err(vars: &[(&str, &str)]) -> String {
    with("", vars).unwrap_err()
}

fn htpasswd() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().unwrap()
}

#[test]
fn http_addr_replaces_the_listeners() {
    let c = env(&[("REGISTRY_HTTP_ADDR", ":5001")]);
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address.to_string(), "0.0.0.0:5001");
    let file = "[[listener]]\naddress = \"127.0.0.1:1\"\n[[listener]]\naddress = \"127.0.0.1:2\"\n";
    let c = with(file, &[("REGISTRY_HTTP_ADDR", "localhost:5002")]).unwrap();
    assert_eq!(c.listeners.len(), 1);
    assert_eq!(c.listeners[0].address.to_string(), "127.0.0.1:5002");
    assert_eq!(
        env(&[("REGISTRY_HTTP_ADDR", "[::1]:5003")]).listeners[0]
            .address
            .to_string(),
        "[::1]:5003"
    );
}

#[test]
fn a_bad_http_addr_names_the_variable() {
    for bad in ["5000", "registry.example.com:5000", ":99999"] {
        let e = err(&[("REGISTRY_HTTP_ADDR", bad)]);
        assert!(
            e.contains("`REGISTRY_HTTP_ADDR`") && e.contains("fix:"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn an_unknown_registry_variable_is_an_error_naming_it() {
    let e = err(&[("REGISTRY_HTTP_ADRR", ":5000")]);
    assert!(
        e.contains("`REGISTRY_HTTP_ADRR`") && e.contains("fix: remove it"),
        "{e}"
    );
}

#[test]
fn a_known_unsupported_setting_says_what_to_do() {
    let e = err(&[(
        "REGISTRY_AUTH_TOKEN_REALM",
        "https://auth.example.com/token",
    )]);
    assert!(
        e.contains("`REGISTRY_AUTH_TOKEN_REALM`") && e.contains("htpasswd or LDAP"),
        "{e}"
    );
    let e = err(&[("REGISTRY_PROXY_REMOTEURL", "https://registry-1.docker.io")]);
    assert!(e.contains("pull-through"), "{e}");
    let e = err(&[("REGISTRY_STORAGE_S3_ENCRYPT", "true")]);
    assert!(
        e.contains("`REGISTRY_STORAGE_S3_ENCRYPT`") && e.contains("\"true\""),
        "{e}"
    );
}

#[test]
fn settings_wharf_needs_nothing_for_are_accepted_and_reported() {
    let c = env(&[
        ("REGISTRY_HTTP_SECRET", "s3cr3t-value"),
        ("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory"),
    ]);
    assert_eq!(c.registry_env.len(), 2);
    for a in &c.registry_env {
        assert!(matches!(a.effect, Effect::NotNeeded(_)), "{a:?}");
    }
    assert!(!format!("{:?}", c.registry_env).contains("s3cr3t-value"));
    assert!(err(&[("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "disk")]).contains("BLOBDESCRIPTOR"));
}

#[test]
fn kubernetes_service_links_are_not_settings() {
    let c = env(&[
        ("REGISTRY_PORT", "tcp://10.0.0.7:5000"),
        ("REGISTRY_PORT_5000_TCP_ADDR", "10.0.0.7"),
        ("REGISTRY_SERVICE_HOST", "10.0.0.7"),
        ("REGISTRY_SERVICE_PORT_HTTP", "5000"),
        ("REGISTRY_UI_SERVICE_PORT", "80"),
    ]);
    assert_eq!(c.registry_env.len(), 5);
    assert_eq!(c.listeners[0].address.to_string(), "0.0.0.0:5000");
}

#[test]
fn tls_needs_both_files_and_turns_the_listener_on() {
    let (cert, key) = (htpasswd(), htpasswd());
    let (cert, key) = (cert.path().to_str().unwrap(), key.path().to_str().unwrap());
    let c = env(&[
        ("REGISTRY_HTTP_TLS_CERTIFICATE", cert),
        ("REGISTRY_HTTP_TLS_KEY", key),
    ]);
    assert_eq!(c.listeners[0].tls, TlsMode::On);
    assert_eq!(
        c.servers[0].tls,
        Some(ServerTls::Files {
            cert: cert.into(),
            key: key.into()
        })
    );
    assert!(c.servers[0].default);
    let e = err(&[("REGISTRY_HTTP_TLS_CERTIFICATE", cert)]);
    assert!(
        e.contains("`REGISTRY_HTTP_TLS_CERTIFICATE`") && e.contains("REGISTRY_HTTP_TLS_KEY"),
        "{e}"
    );
}

#[test]
fn a_missing_certificate_file_is_blamed_on_the_variable() {
    let e = err(&[
        ("REGISTRY_HTTP_TLS_CERTIFICATE", "/no/such.crt"),
        ("REGISTRY_HTTP_TLS_KEY", "/no/such.key"),
    ]);
    assert!(
        e.contains("REGISTRY_HTTP_TLS_CERTIFICATE") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn settings_about_the_server_need_a_single_server_block() {
    let file = "[[server]]\nnames = [\"a.example\"]\n[[server]]\nnames = [\"b.example\"]\n";
    let e = with(file, &[("REGISTRY_HTTP_HOST", "https://a.example")]).unwrap_err();
    assert!(
        e.contains("`REGISTRY_HTTP_HOST`") && e.contains("2 [[server]] blocks"),
        "{e}"
    );
    let c = with(
        "[[server]]\nnames = [\"old.example\"]\n",
        &[("REGISTRY_HTTP_HOST", "https://registry.example.com:5000")],
    )
    .unwrap();
    assert_eq!(c.servers[0].names[0].to_string(), "registry.example.com");
    assert!(c.servers[0].default);
}

#[test]
fn htpasswd_auth_is_registry2s_rule_any_user_may_push() {
    let f = htpasswd();
    let path = f.path().to_str().unwrap();
    let c = env(&[
        ("REGISTRY_AUTH", "htpasswd"),
        ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
        ("REGISTRY_AUTH_HTPASSWD_PATH", path),
    ]);
    let auth = c.servers[0].auth.as_ref().unwrap();
    assert_eq!(auth.realm, "Registry Realm");
    assert_eq!(
        auth.providers,
        vec![ProviderConfig::Htpasswd { path: path.into() }]
    );
    assert_eq!(auth.access.len(), 1);
    assert_eq!(auth.access[0].who, vec!["authenticated"]);
    assert_eq!(auth.access[0].actions, vec!["pull", "push"]);
    let c = env(&[
        ("REGISTRY_AUTH_HTPASSWD_PATH", path),
        ("REGISTRY_STORAGE_DELETE_ENABLED", "true"),
    ]);
    assert_eq!(c.registry.delete, Some(true));
    let actions = &c.servers[0].auth.as_ref().unwrap().access[0].actions;
    assert_eq!(actions, &vec!["pull", "push", "delete"]);
}

#[test]
fn auth_other_than_htpasswd_or_without_a_file_is_an_error() {
    assert!(err(&[("REGISTRY_AUTH", "token")]).contains("`REGISTRY_AUTH`"));
    let e = err(&[("REGISTRY_AUTH", "htpasswd")]);
    assert!(e.contains("REGISTRY_AUTH_HTPASSWD_PATH"), "{e}");
    let e = err(&[("REGISTRY_AUTH_HTPASSWD_PATH", "/no/such/htpasswd")]);
    assert!(
        e.contains("REGISTRY_AUTH_HTPASSWD_PATH") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn the_filesystem_root_directory_is_the_storage_root() {
    let c = env(&[("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/srv/registry")]);
    assert_eq!(c.storage.root, std::path::PathBuf::from("/srv/registry"));
    assert!(
        matches!(&c.servers[0].routes[0].target, RouteTarget::Registry { root } if root.to_str() == Some("/srv/registry"))
    );
}

const S3_VARS: &[(&str, &str)] = &[
    ("REGISTRY_STORAGE", "s3"),
    ("REGISTRY_STORAGE_S3_BUCKET", "registry"),
    ("REGISTRY_STORAGE_S3_REGION", "eu-west-1"),
    ("REGISTRY_STORAGE_S3_REGIONENDPOINT", "minio:9000"),
    ("REGISTRY_STORAGE_S3_SECURE", "false"),
    ("REGISTRY_STORAGE_S3_ACCESSKEY", "AKIA"),
    ("REGISTRY_STORAGE_S3_SECRETKEY", "very-secret"),
    ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", "/team/registry/"),
    ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true"),
];

/// Found by the `registry_yml` fuzz target: a chunk size past TOML's integers was carried
/// into the wharf.toml `import-config` writes, which then could not be read.
#[test]
fn a_chunk_size_past_tomls_integers_is_refused_by_name() {
    let yml = "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: us-east-1\n    chunksize: 10486042061248173664\n";
    crate::invariants::registry_yml(yml);
    let e = Config::from_toml_with(
        "",
        "t",
        vec![Setting::variable(
            "REGISTRY_STORAGE_S3_CHUNKSIZE",
            "10486042061248173664",
        )],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("REGISTRY_STORAGE_S3_CHUNKSIZE"), "{e}");
}

#[test]
fn s3_settings_make_an_s3_backend_over_the_files_directory() {
    let mut raw: RawConfig = toml::from_str("[storage]\nroot = \"/var/lib/registry\"\n").unwrap();
    let settings = S3_VARS
        .iter()
        .map(|(n, v)| Setting::variable(n, v))
        .collect();
    let applied = super::apply(&mut raw, settings, Unsupported::Refuse).unwrap();
    assert_eq!(raw.storage.backend.as_deref(), Some("s3"));
    assert_eq!(raw.storage.root, None);
    let s3 = raw.storage.s3.unwrap();
    assert_eq!(s3.bucket.as_deref(), Some("registry"));
    assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s3.endpoint.as_deref(), Some("http://minio:9000"));
    assert_eq!(s3.prefix.as_deref(), Some("team/registry"));
    assert_eq!(s3.path_style, Some(true));
    assert_eq!(s3.access_key_id.as_deref(), Some("AKIA"));
    // The secret stays in its variable: the config names it, and nothing shows its value.
    assert_eq!(s3.secret_access_key, None);
    assert_eq!(
        s3.secret_access_key_env.as_deref(),
        Some("REGISTRY_STORAGE_S3_SECRETKEY")
    );
    assert!(!format!("{applied:?}").contains("very-secret"));
}

#[test]
fn the_s3_secret_variable_must_be_set_for_wharf() {
    // This process has no REGISTRY_STORAGE_S3_SECRETKEY, so validation finds it missing.
    let e = err(S3_VARS);
    assert!(
        e.contains("with REGISTRY_STORAGE_S3_SECRETKEY") && e.contains("not set"),
        "{e}"
    );
}

#[test]
fn s3_settings_alone_imply_s3_and_keys_come_in_pairs() {
    let c = env(&[("REGISTRY_STORAGE_S3_BUCKET", "registry")]);
    assert!(matches!(c.storage.backend, StorageBackend::S3(_)));
    let e = err(&[
        ("REGISTRY_STORAGE_S3_BUCKET", "registry"),
        ("REGISTRY_STORAGE_S3_ACCESSKEY", "AKIA"),
    ]);
    assert!(
        e.contains("`REGISTRY_STORAGE_S3_ACCESSKEY`") && e.contains("SECRETKEY"),
        "{e}"
    );
}

#[test]
fn storage_drivers_must_agree() {
    let e = err(&[
        ("REGISTRY_STORAGE", "filesystem"),
        ("REGISTRY_STORAGE_S3_BUCKET", "registry"),
    ]);
    assert!(e.contains("`REGISTRY_STORAGE`"), "{e}");
    let e = err(&[("REGISTRY_STORAGE", "gcs")]);
    assert!(
        e.contains("`REGISTRY_STORAGE`") && e.contains("\"gcs\""),
        "{e}"
    );
    let e = err(&[("REGISTRY_STORAGE_S3_BUCKET", "Bad_Bucket")]);
    assert!(
        e.contains("REGISTRY_STORAGE_S3_BUCKET") && e.contains("storage.s3.bucket"),
        "{e}"
    );
}

#[test]
fn delete_log_and_timing_settings_map_to_their_keys() {
    let c = env(&[
        ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
        ("REGISTRY_LOG_LEVEL", "warn"),
        ("REGISTRY_LOG_FORMATTER", "json"),
        ("REGISTRY_LOG_ACCESSLOG_DISABLED", "true"),
        ("REGISTRY_HTTP_DRAINTIMEOUT", "60s"),
        ("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "168h"),
        ("REGISTRY_HTTP_DEBUG_ADDR", "127.0.0.1:5001"),
    ]);
    assert_eq!(c.registry.delete, Some(false));
    assert_eq!(c.log.level, "warn");
    assert_eq!(c.log.format, crate::config::LogFormat::Json);
    assert_eq!(c.log.access, crate::config::AccessTarget::Off);
    assert_eq!(c.shutdown_grace, std::time::Duration::from_secs(60));
    assert_eq!(
        c.storage.upload_max_age,
        std::time::Duration::from_secs(168 * 3600)
    );
    assert_eq!(c.admin_address.unwrap().to_string(), "127.0.0.1:5001");
    assert!(err(&[("REGISTRY_LOG_LEVEL", "loud")]).contains("`REGISTRY_LOG_LEVEL`"));
    assert!(err(&[("REGISTRY_STORAGE_DELETE_ENABLED", "maybe")]).contains("true or false"));
    let e = err(&[("REGISTRY_HTTP_DRAINTIMEOUT", "soon")]);
    assert!(
        e.contains("REGISTRY_HTTP_DRAINTIMEOUT") && e.contains("shutdown.grace"),
        "{e}"
    );
}

#[test]
fn every_applied_setting_is_reported() {
    let c = env(&[
        ("REGISTRY_HTTP_ADDR", ":5000"),
        (
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            "/var/lib/registry",
        ),
    ]);
    let labels: Vec<&str> = c
        .registry_env
        .iter()
        .map(|a: &Applied| a.label.as_str())
        .collect();
    assert_eq!(
        labels,
        [
            "REGISTRY_HTTP_ADDR",
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"
        ]
    );
}

/// A config.yml's settings, then the variables, as `Config::load_with` puts them together.
fn yml_then_env(yml: &str, vars: &[(&str, &str)]) -> Result<Config, String> {
    let mut settings = super::yml::settings(yml).unwrap();
    settings.extend(vars.iter().map(|(n, v)| Setting::variable(n, v)));
    Config::from_toml_with("", "test", settings).map_err(|e| e.to_string())
}

#[test]
fn a_variable_wins_over_the_config_yml_key_of_the_same_name() {
    let yml = "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /from/yml\nhttp:\n  addr: :5001\n";
    let c = yml_then_env(yml, &[("REGISTRY_HTTP_ADDR", "127.0.0.1:5002")]).unwrap();
    assert_eq!(c.listeners[0].address.to_string(), "127.0.0.1:5002");
    assert_eq!(c.storage.root, std::path::PathBuf::from("/from/yml"));
}

#[test]
fn registry2s_stock_config_yml_is_taken_whole() {
    // What registry:2's image ships as /etc/docker/registry/config.yml.
    let stock = "version: 0.1\nlog:\n  fields:\n    service: registry\nstorage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: /var/lib/registry\nhttp:\n  addr: :5000\n  headers:\n    X-Content-Type-Options: [nosniff]\nhealth:\n  storagedriver:\n    enabled: true\n    interval: 10s\n    threshold: 3\n";
    let c = yml_then_env(stock, &[]).unwrap();
    assert_eq!(c.listeners[0].address.to_string(), "0.0.0.0:5000");
    assert_eq!(
        c.storage.root,
        std::path::PathBuf::from("/var/lib/registry")
    );
}

#[test]
fn every_setting_that_cannot_be_carried_over_is_named_at_once() {
    let yml = "version: 0.1\nhttp:\n  headers:\n    X-Frame-Options: [DENY]\nproxy:\n  remoteurl: https://registry-1.docker.io\n";
    let e = yml_then_env(yml, &[("REGISTRY_AUTH_TOKEN_REALM", "https://a/token")]).unwrap_err();
    assert!(e.starts_with("3 problems:"), "{e}");
    for named in [
        "`http.headers.X-Frame-Options`",
        "`proxy.remoteurl`",
        "`REGISTRY_AUTH_TOKEN_REALM`",
    ] {
        assert!(e.contains(named), "{named}: {e}");
    }
}

#[test]
fn a_secret_from_a_config_yml_is_copied_and_one_from_a_variable_is_not() {
    let yml = "storage:\n  s3:\n    bucket: b\n    region: us-east-1\n    accesskey: AKIA\n    secretkey: from-the-file\n";
    let mut raw = RawConfig::default();
    super::apply(
        &mut raw,
        super::yml::settings(yml).unwrap(),
        Unsupported::Refuse,
    )
    .unwrap();
    let s3 = raw.storage.s3.unwrap();
    assert_eq!(s3.secret_access_key.as_deref(), Some("from-the-file"));
    assert_eq!(s3.secret_access_key_env, None);
}

#[test]
fn notification_endpoints_become_wharf_endpoints_in_registry2s_envelope() {
    let yml = "notifications:\n  endpoints:\n    - name: Audit Log\n      url: https://audit.example.com/events\n      \
               headers:\n        X-Token: [abc]\n      ignore:\n        mediatypes: [application/octet-stream]\n        \
               actions: [pull, mount]\n    - name: off\n      disabled: true\n      url: https://off.example.com/\n";
    let c = yml_then_env(yml, &[]).unwrap();
    assert_eq!(
        c.notifications.endpoints.len(),
        1,
        "the disabled one is left out"
    );
    let e = &c.notifications.endpoints[0];
    assert_eq!(e.name, "audit-log");
    assert_eq!(e.format, crate::config::EventFormat::Distribution);
    assert_eq!(e.actions, ["push", "delete"]);
    assert!(!e.pulls);
    assert_eq!(e.ignore_media_types, ["application/octet-stream"]);
    assert_eq!(e.headers[0].0.as_str(), "x-token");
}

#[test]
fn an_unknown_notification_endpoint_key_is_named() {
    let yml = "notifications:\n  endpoints:\n    - name: a\n      url: https://a.example.com/\n      retries: 3\n";
    let e = yml_then_env(yml, &[]).unwrap_err();
    assert!(e.contains("`notifications.endpoints.0.retries`"), "{e}");
}

mod properties {
    use crate::invariants;
    use proptest::prelude::*;

    /// A registry:2 variable name: one wharf knows, a neighbour of one, or anything.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "HTTP_ADDR", "HTTP_HOST", "HTTP_SECRET", "HTTP_TLS_CERTIFICATE", "HTTP_TLS_KEY",
                "AUTH", "AUTH_HTPASSWD_PATH", "AUTH_HTPASSWD_REALM", "STORAGE",
                "STORAGE_FILESYSTEM_ROOTDIRECTORY", "STORAGE_S3_BUCKET", "STORAGE_S3_REGION",
                "STORAGE_S3_REGIONENDPOINT", "STORAGE_S3_ACCESSKEY", "STORAGE_S3_SECRETKEY",
                "STORAGE_S3_ROOTDIRECTORY", "STORAGE_S3_SECURE", "STORAGE_S3_CHUNKSIZE",
                "STORAGE_DELETE_ENABLED", "LOG_LEVEL", "LOG_FORMATTER", "HTTP_DEBUG_ADDR",
                "HTTP_DRAINTIMEOUT", "NOTIFICATIONS_ENDPOINTS_0_URL", "NOTIFICATIONS_ENDPOINTS_0_NAME",
                "NOTIFICATIONS_ENDPOINTS_0_TIMEOUT", "SERVICE_PORT_5000_TCP", "HTTP_HEADERS_X-CONTENT-TYPE-OPTIONS",
            ]).prop_map(str::to_owned),
            1 => "[A-Z0-9_-]{0,20}",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            ":[0-9]{1,5}|127.0.0.1:[0-9]{1,6}|\\[::1\\]:[0-9]{1,5}",
            "true|false|yes|0|s3|filesystem|htpasswd|inmemory|debug|json",
            "https?://[a-z.]{1,10}(:[0-9]{1,5})?/?",
            "/[a-z/]{0,12}",
            "[a-zA-Z0-9 ./:_-]{0,16}",
        ]
    }

    /// Puts `value` at `path`, unless something else is already on the way there.
    fn insert(map: &mut serde_yaml::Mapping, path: &[&str], value: &str) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let key = serde_yaml::Value::from(*first);
        if rest.is_empty() {
            map.entry(key).or_insert_with(|| value.into());
            return;
        }
        let inner = map
            .entry(key)
            .or_insert_with(|| serde_yaml::Mapping::new().into());
        if let serde_yaml::Value::Mapping(inner) = inner {
            insert(inner, rest, value);
        }
    }

    proptest! {
        #[test]
        fn registry_variables_are_taken_or_refused_by_name(
            vars in prop::collection::vec((name(), value()), 0..6),
        ) {
            let text: String = vars.iter().map(|(n, v)| format!("{n}={v}\n")).collect();
            invariants::registry_env(&text);
        }

        #[test]
        fn serving_a_config_yml_means_what_import_config_writes(
            vars in prop::collection::vec((name(), value()), 0..6),
        ) {
            // The variables' names as the config.yml keys they flatten from, nested.
            let mut root = serde_yaml::Mapping::new();
            for (n, v) in &vars {
                let key = n.to_ascii_lowercase();
                let path: Vec<&str> = key.split('_').filter(|p| !p.is_empty()).collect();
                insert(&mut root, &path, v);
            }
            let yml = serde_yaml::to_string(&root).unwrap();
            invariants::registry_yml(&yml);
        }
    }
}

// Found by the properties: errors about keys a setting made without setting them.
#[test]
fn s3_without_a_bucket_names_the_setting_that_chose_s3() {
    let e = err(&[("REGISTRY_STORAGE", "s3")]);
    assert!(
        e.contains("REGISTRY_STORAGE") && e.contains("storage.s3.bucket"),
        "{e}"
    );
}

#[test]
fn an_endpoint_without_a_name_or_url_names_its_settings() {
    let e = err(&[(
        "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL",
        "https://a.example.com/",
    )]);
    assert!(e.contains("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL"), "{e}");
    let e = err(&[("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME", "a")]);
    assert!(e.contains("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_NAME"), "{e}");
}
