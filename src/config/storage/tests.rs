//! The `[storage]` rules, one test each.

use crate::config::Config;

use super::*;

fn s3(extra: &str) -> Result<Config, String> {
    Config::from_toml(
        &format!("[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"reg\"\n{extra}"),
        "test",
    )
    .map_err(|e| e.to_string())
}

fn backend(c: &Config) -> &S3Config {
    match &c.storage.backend {
        StorageBackend::S3(s) => s,
        _ => panic!("not s3"),
    }
}

#[test]
fn filesystem_is_the_default() {
    let c = Config::from_toml("", "test").unwrap();
    assert_eq!(c.storage.backend, StorageBackend::Filesystem);
}

#[test]
fn s3_defaults() {
    let c = s3("").unwrap();
    let b = backend(&c);
    assert_eq!((b.region.as_str(), b.path_style), ("us-east-1", false));
    assert_eq!(b.credentials, S3Credentials::Environment);
    assert_eq!(b.part_size, 8 << 20);
    assert!(c.storage.root.as_os_str().is_empty());
}

#[test]
fn an_endpoint_implies_path_style_and_must_be_a_url() {
    let c = s3("endpoint = \"http://127.0.0.1:9000\"").unwrap();
    assert!(backend(&c).path_style);
    let c = s3("endpoint = \"http://h:9\"\npath_style = false").unwrap();
    assert!(!backend(&c).path_style);
    assert!(s3("endpoint = \"minio:9000\"")
        .unwrap_err()
        .contains("storage.s3.endpoint"));
}

#[test]
fn bucket_is_required_and_checked() {
    let e = Config::from_toml("[storage]\nbackend = \"s3\"\n[storage.s3]\n", "t").unwrap_err();
    assert!(e.to_string().contains("storage.s3.bucket"), "{e}");
    assert!(s3("").is_ok());
    let e = Config::from_toml(
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"Bad_Name\"",
        "t",
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a bucket name"), "{e}");
}

#[test]
fn backend_and_table_must_agree() {
    let e = Config::from_toml("[storage]\nbackend = \"s3\"", "t").unwrap_err();
    assert!(e.to_string().contains("[storage.s3]"), "{e}");
    let e = Config::from_toml("[storage.s3]\nbucket = \"reg\"", "t").unwrap_err();
    assert!(e.to_string().contains("add backend = \"s3\""), "{e}");
    let e = Config::from_toml("[storage]\nbackend = \"gcs\"", "t").unwrap_err();
    assert!(e.to_string().contains("storage.backend"), "{e}");
}

#[test]
fn root_is_refused_with_s3() {
    let e = Config::from_toml(
        "[storage]\nbackend = \"s3\"\nroot = \"./data\"\n[storage.s3]\nbucket = \"reg\"",
        "t",
    )
    .unwrap_err();
    assert!(e.to_string().contains("storage.root"), "{e}");
}

#[test]
fn prefix_is_trimmed_and_checked() {
    assert_eq!(backend(&s3("prefix = \"/a/b/\"").unwrap()).prefix, "a/b");
    assert!(s3("prefix = \"a/../b\"")
        .unwrap_err()
        .contains("storage.s3.prefix"));
}

#[test]
fn copy_part_size_has_s3_bounds() {
    assert!(s3("copy_part_size = 1024")
        .unwrap_err()
        .contains("storage.s3.copy_part_size"));
    assert!(s3("copy_part_size = 5368709121").is_err());
    let c = s3("copy_part_size = 5242880").unwrap();
    assert_eq!(backend(&c).copy_part_size, 5 << 20);
    assert_eq!(backend(&s3("").unwrap()).copy_part_size, 5 << 30);
}

#[test]
fn part_size_has_s3_bounds() {
    assert!(s3("part_size = 1024")
        .unwrap_err()
        .contains("storage.s3.part_size"));
    assert_eq!(
        backend(&s3("part_size = 5242880").unwrap()).part_size,
        5 << 20
    );
}

#[test]
fn timeout_is_a_duration_within_bounds() {
    assert_eq!(backend(&s3("").unwrap()).timeout, Duration::from_secs(30));
    assert_eq!(
        backend(&s3("timeout = \"2s\"").unwrap()).timeout,
        Duration::from_secs(2)
    );
    for bad in ["0s", "500ms", "1h", "soon"] {
        let e = s3(&format!("timeout = {bad:?}")).unwrap_err();
        assert!(e.contains("storage.s3.timeout"), "{bad}: {e}");
    }
}

#[test]
fn static_credentials_need_both_halves() {
    let c = s3("access_key_id = \"AK\"\nsecret_access_key = \"s\"").unwrap();
    assert!(matches!(
        &backend(&c).credentials,
        S3Credentials::Static { access_key_id, secret: SecretSource::Inline(_) } if access_key_id == "AK"
    ));
    assert!(s3("access_key_id = \"AK\"")
        .unwrap_err()
        .contains("secret_access_key_file"));
    assert!(s3("secret_access_key = \"s\"")
        .unwrap_err()
        .contains("storage.s3.access_key_id"));
    let e = s3("access_key_id = \"AK\"\nsecret_access_key = \"s\"\nsecret_access_key_env = \"X\"")
        .unwrap_err();
    assert!(e.contains("more than once"), "{e}");
    assert!(
        s3("access_key_id = \"AK\"\nsecret_access_key_file = \"/no/such\"")
            .unwrap_err()
            .contains("does not exist")
    );
    assert!(
        s3("access_key_id = \"AK\"\nsecret_access_key_env = \"WHARF_SURELY_UNSET\"")
            .unwrap_err()
            .contains("not set")
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let c = s3("access_key_id = \"AK\"\nsecret_access_key = \"hunter2\"").unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn profiles_need_an_existing_file() {
    let f = tempfile::NamedTempFile::new().unwrap();
    let path = f.path().display().to_string();
    let c = s3(&format!("credentials_file = {path:?}\nprofile = \"ci\"")).unwrap();
    assert_eq!(
        backend(&c).credentials,
        S3Credentials::Profile {
            file: f.path().into(),
            profile: "ci".into()
        }
    );
    assert!(s3("credentials_file = \"/no/such\"")
        .unwrap_err()
        .contains("storage.s3.credentials_file"));
    let e = s3(&format!(
        "credentials_file = {path:?}\naccess_key_id = \"AK\"\nsecret_access_key = \"s\""
    ))
    .unwrap_err();
    assert!(e.contains("either"), "{e}");
}

#[test]
fn ca_file_must_exist() {
    assert!(s3("ca_file = \"/no/such.pem\"")
        .unwrap_err()
        .contains("storage.s3.ca_file"));
}

#[test]
fn route_roots_are_key_prefixes_with_s3() {
    let base =
        "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"reg\"\n[[server]]\ndefault = true\n";
    let ok = format!("{base}[[server.route]]\npath = \"/\"\nregistry = {{ root = \"mirror\" }}\n");
    Config::from_toml(&ok, "t").unwrap();
    let bad = format!("{base}[[server.route]]\npath = \"/\"\nregistry = {{ root = \"/var/x\" }}\n");
    let e = Config::from_toml(&bad, "t").unwrap_err().to_string();
    assert!(e.contains("server[0].route[0].registry.root"), "{e}");
}
