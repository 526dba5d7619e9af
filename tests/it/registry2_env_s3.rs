//! registry:2's S3 variables, as its deployment docs set them, given unchanged to `wharf
//! serve` and then to the real registry:2 (Debian's `docker-registry`): both must find the
//! one registry in the bucket (moto), under the same `rootdirectory`.

use crate::registry2_env::{spawn, wharf_run};
use crate::registry2_interop::{
    expected_listing, listing, pull_and_compare, push_all, source_layout, Registry2,
};
use crate::support::{have_program, Backend, TestStore};

/// Where the registry lives in the bucket, written as registry:2's docs write it.
const ROOT: &str = "/team/registry";

/// registry:2's S3 settings for the test bucket: the endpoint without a scheme and
/// `secure=false` (so http), path-style addressing, keys, and a root directory.
fn s3_variables(store: &TestStore) -> Vec<(&'static str, String)> {
    let endpoint = store.endpoint.trim_start_matches("http://").to_owned();
    vec![
        ("REGISTRY_STORAGE_S3_BUCKET", store.bucket.clone()),
        ("REGISTRY_STORAGE_S3_REGION", "us-east-1".into()),
        ("REGISTRY_STORAGE_S3_REGIONENDPOINT", endpoint),
        ("REGISTRY_STORAGE_S3_SECURE", "false".into()),
        ("REGISTRY_STORAGE_S3_FORCEPATHSTYLE", "true".into()),
        ("REGISTRY_STORAGE_S3_ACCESSKEY", "testing".into()),
        ("REGISTRY_STORAGE_S3_SECRETKEY", "testing".into()),
        ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", ROOT.into()),
        ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true".into()),
        ("REGISTRY_STORAGE_DELETE_ENABLED", "true".into()),
        ("REGISTRY_LOG_LEVEL", "warn".into()),
    ]
}

#[tokio::test]
async fn the_same_s3_variables_give_wharf_and_registry2_one_bucket() {
    if !have_program("docker-registry", "docker-registry")
        || !have_program("skopeo", "skopeo")
        || !have_program("podman", "podman")
    {
        return;
    }
    let Some(store) = TestStore::fresh(Backend::S3) else {
        return;
    };
    let (cwd, work) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pushed = source_layout(work.path());
    let mut vars = s3_variables(&store);

    // wharf: no config file at all, only the variables (and a port of the test's own).
    vars.push(("REGISTRY_HTTP_ADDR", "127.0.0.1:0".into()));
    let mut wharf = spawn(&mut wharf_run(cwd.path(), &["serve"], &vars));
    push_all(wharf.addr, work.path());
    assert_eq!(listing(wharf.addr).await, expected_listing());
    wharf.terminate();
    let keys = crate::moto::shared()
        .unwrap()
        .get(&format!("/{}?list-type=2&prefix=", store.bucket));
    let under_root = format!("<Key>{}/docker/registry/v2/", ROOT.trim_start_matches('/'));
    assert!(
        keys.contains(&under_root) && !keys.contains("<Key>docker/"),
        "the registry is under the root directory in the bucket:\n{keys}"
    );

    // registry:2: the same variables over a config.yml that says nothing about storage.
    let addr = Registry2::free_addr();
    vars.pop();
    vars.push(("REGISTRY_HTTP_ADDR", addr.to_string()));
    let yml = cwd.path().join("config.yml");
    std::fs::write(&yml, "version: 0.1\n").unwrap();
    let registry2 = Registry2::start_with(&yml, addr, &vars, cwd.path()).await;
    assert_eq!(
        listing(registry2.addr).await,
        expected_listing(),
        "registry:2 lists what wharf stored"
    );
    pull_and_compare(registry2.addr, work.path(), &pushed);
}
