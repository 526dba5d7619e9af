//! The referrers API: artifacts whose `subject` is an image.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{sha256, Backend, TestServer, OCI_INDEX, OCI_MANIFEST};

const EMPTY: &str = "application/vnd.oci.empty.v1+json";

async fn push_artifact(
    s: &TestServer,
    subject: &str,
    subject_size: usize,
    artifact_type: &str,
    payload: &[u8],
) -> String {
    let config = s.push_blob("team/app", b"{}").await;
    let layer = s.push_blob("team/app", payload).await;
    let m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": config, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": payload.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
        "annotations": {"org.example.kind": artifact_type},
    });
    let r = s
        .put_manifest(
            "team/app",
            &sha256(&serde_json::to_vec(&m).unwrap()),
            OCI_MANIFEST,
            &m,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["oci-subject"], subject);
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn referrers_list_filter_and_delete(backend: Backend) {
    let Some((s, _store)) = TestServer::start_with_in(backend, "[registry]\ndelete = true\n").await
    else {
        return;
    };
    let (image, bytes, _) = s.push_image("team/app", "v1", b"layer").await;
    let sig = push_artifact(
        &s,
        &image,
        bytes.len(),
        "application/vnd.example.sig",
        b"signature",
    )
    .await;
    let sbom = push_artifact(
        &s,
        &image,
        bytes.len(),
        "application/vnd.example.sbom",
        b"sbom",
    )
    .await;

    let url = s.url(&format!("/v2/team/app/referrers/{image}"));
    let r = s.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    assert!(r.headers().get("oci-filters-applied").is_none());
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["schemaVersion"], 2);
    let listed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    let mut expected = vec![sig.as_str(), sbom.as_str()];
    expected.sort();
    assert_eq!(listed, expected);
    let d = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["digest"] == sig)
        .unwrap();
    assert_eq!(d["artifactType"], "application/vnd.example.sig");
    assert_eq!(d["mediaType"], OCI_MANIFEST);
    assert_eq!(
        d["annotations"]["org.example.kind"],
        "application/vnd.example.sig"
    );

    let r = s
        .http
        .get(format!("{url}?artifactType=application/vnd.example.sbom"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], sbom.as_str());

    let r = s
        .http
        .delete(s.url(&format!("/v2/team/app/manifests/{sig}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let index: Value = s.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
}

async fn unknown_subject_is_an_empty_index_not_404(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let r = s
        .http
        .get(s.url(&format!("/v2/team/app/referrers/{}", sha256(b"nothing"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["manifests"], json!([]));
}

async fn subject_need_not_exist_yet(backend: Backend) {
    // Signatures can be pushed before the image they sign (the spec allows it).
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let ghost = sha256(b"future image");
    push_artifact(&s, &ghost, 100, "application/vnd.example.sig", b"early").await;
    let index: Value = s
        .http
        .get(s.url(&format!("/v2/team/app/referrers/{ghost}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
}

crate::on_every_backend!(
    subject_need_not_exist_yet,
    referrers_list_filter_and_delete,
    unknown_subject_is_an_empty_index_not_404,
);
