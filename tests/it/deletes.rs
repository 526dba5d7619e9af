//! Deletes are off unless the configuration grants them (as on registry:2): an anonymous
//! caller on the quick-start server must not be able to remove images.

use reqwest::StatusCode;

use crate::support::{assert_error, image_manifest, sha256, TestServer, OCI_MANIFEST};

/// DELETE of the manifest and of the layer; returns both statuses.
async fn delete_both(s: &TestServer, repo: &str, user: Option<(&str, &str)>) -> [StatusCode; 2] {
    let (digest, layer) = push_as(s, repo, user).await;
    let mut out = [StatusCode::OK; 2];
    for (i, path) in [
        format!("/v2/{repo}/manifests/{digest}"),
        format!("/v2/{repo}/blobs/{layer}"),
    ]
    .iter()
    .enumerate()
    {
        let r = s.http.delete(s.url(path));
        let r = match user {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        };
        out[i] = r.send().await.unwrap().status();
    }
    out
}

/// A one-layer image pushed by `user`; returns the manifest's and the layer's digests.
async fn push_as(s: &TestServer, repo: &str, user: Option<(&str, &str)>) -> (String, String) {
    let auth = |r: reqwest::RequestBuilder| match user {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    let (config, layer) = (b"{}".to_vec(), format!("layer of {repo}").into_bytes());
    for blob in [&config, &layer] {
        let d = sha256(blob);
        let url = s.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}"));
        let r = auth(s.http.post(url))
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "push blob");
    }
    let m = image_manifest(
        &sha256(&config),
        config.len(),
        &[(&sha256(&layer), layer.len())],
    );
    let bytes = serde_json::to_vec(&m).unwrap();
    let r = auth(s.http.put(s.url(&format!("/v2/{repo}/manifests/v1"))))
        .header("Content-Type", OCI_MANIFEST)
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "push manifest");
    (sha256(&bytes), sha256(&layer))
}

#[tokio::test]
async fn deletes_are_refused_unless_granted() {
    let s = TestServer::start().await;
    let (digest, _, _) = s.push_image("team/app", "v1", b"kept").await;
    let r = s
        .http
        .delete(s.url(&format!("/v2/team/app/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    let r = s
        .http
        .get(s.url("/v2/team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the image is still there");
    assert_eq!(
        delete_both(&s, "team/other", None).await,
        [StatusCode::METHOD_NOT_ALLOWED; 2]
    );
    // Cancelling one's own upload is part of pushing, not a delete.
    let r = s
        .http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let r = s.http.delete(s.url(&location)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    let granted = TestServer::start_with("[registry]\ndelete = true\n").await;
    assert_eq!(
        delete_both(&granted, "team/app", None).await,
        [StatusCode::ACCEPTED; 2]
    );
}

/// With logins, an access rule naming `delete` is the grant; `delete = false` still wins.
#[tokio::test]
async fn with_logins_rules_grant_deletes_unless_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    std::fs::write(
        &users,
        format!(
            "alice:{}\nbob:{}\n",
            bcrypt::hash("a-pass", 4).unwrap(),
            bcrypt::hash("b-pass", 4).unwrap()
        ),
    )
    .unwrap();
    let config = |registry: &str| {
        format!(
            "{registry}\n[[server]]\ndefault = true\n[server.auth]\nproviders = [{{ htpasswd = {users:?} }}]\naccess = [\n  {{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\"] }},\n  {{ repos = \"*\", who = [\"alice\"], actions = [\"delete\"] }},\n]\n",
            users = users.display().to_string()
        )
    };
    let s = TestServer::start_with(&config("")).await;
    assert_eq!(
        delete_both(&s, "team/app", Some(("alice", "a-pass"))).await,
        [StatusCode::ACCEPTED; 2]
    );
    assert_eq!(
        delete_both(&s, "team/app", Some(("bob", "b-pass"))).await,
        [StatusCode::FORBIDDEN; 2]
    );
    let off = TestServer::start_with(&config("[registry]\ndelete = false")).await;
    assert_eq!(
        delete_both(&off, "team/app", Some(("alice", "a-pass"))).await,
        [StatusCode::METHOD_NOT_ALLOWED; 2]
    );
}
