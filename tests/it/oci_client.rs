//! Push/pull round trips with the `oci-client` crate, a real OCI client.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageIndex, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::support::{bytes_of, Backend, TestServer};

fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    })
}

fn reference(s: &TestServer, repo_tag: &str) -> Reference {
    format!("{}/{repo_tag}", s.addr).parse().unwrap()
}

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

async fn multi_layer_image_round_trip(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let c = client();
    let layers = vec![
        ImageLayer::new(bytes_of(3 << 20, 1), LAYER.into(), None),
        ImageLayer::new(b"small layer".to_vec(), LAYER.into(), None),
        ImageLayer::new(bytes_of(100_000, 2), LAYER.into(), None),
    ];
    let config = Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
    let image = reference(&s, "team/app:v1");
    c.push(
        &image,
        &layers,
        config.clone(),
        &RegistryAuth::Anonymous,
        None,
    )
    .await
    .unwrap();

    let pulled = client()
        .pull(&image, &RegistryAuth::Anonymous, vec![LAYER])
        .await
        .unwrap();
    assert_eq!(pulled.layers.len(), 3);
    // oci-client returns layers in download-completion order.
    let mut got: Vec<&[u8]> = pulled.layers.iter().map(|l| &l.data[..]).collect();
    let mut sent: Vec<&[u8]> = layers.iter().map(|l| &l.data[..]).collect();
    got.sort();
    sent.sort();
    assert!(got == sent, "pulled layers equal pushed layers");
    assert_eq!(pulled.config.data, config.data);
    let tags = c
        .list_tags(&image, &RegistryAuth::Anonymous, None, None)
        .await
        .unwrap();
    assert_eq!(tags.tags, vec!["v1"]);
}

async fn index_round_trip(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let c = client();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let image = reference(&s, &format!("team/multi:{arch}"));
        let layers = vec![ImageLayer::new(
            arch.as_bytes().to_vec(),
            LAYER.into(),
            None,
        )];
        let config = Config::oci_v1(
            format!(r#"{{"architecture":"{arch}","os":"linux"}}"#).into_bytes(),
            None,
        );
        c.push(&image, &layers, config, &RegistryAuth::Anonymous, None)
            .await
            .unwrap();
        let (manifest, digest) = c
            .pull_manifest(&image, &RegistryAuth::Anonymous)
            .await
            .unwrap();
        let size = serde_json::to_vec(&manifest).unwrap().len();
        let raw = c
            .pull_manifest_raw(
                &image,
                &RegistryAuth::Anonymous,
                &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
            )
            .await
            .unwrap();
        assert_eq!(raw.0.len(), size.max(raw.0.len()));
        entries.push(serde_json::json!({
            "mediaType": oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
            "digest": digest, "size": raw.0.len(),
            "platform": {"architecture": arch, "os": "linux"}
        }));
    }
    let index: OciImageIndex = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci_client::manifest::OCI_IMAGE_INDEX_MEDIA_TYPE,
        "manifests": entries,
    }))
    .unwrap();
    let multi = reference(&s, "team/multi:latest");
    c.push_manifest_list(&multi, &RegistryAuth::Anonymous, index)
        .await
        .unwrap();
    let (pulled, _) = c
        .pull_manifest(&multi, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    match pulled {
        OciManifest::ImageIndex(i) => assert_eq!(i.manifests.len(), 2),
        other => panic!("expected an index, got {other:?}"),
    }
}

async fn artifact_with_subject_then_referrers(backend: Backend) {
    let Some((s, _store)) = TestServer::start_in(backend).await else {
        return;
    };
    let c = client();
    let image = reference(&s, "team/app:v1");
    let layers = vec![ImageLayer::new(b"app".to_vec(), LAYER.into(), None)];
    let config = Config::oci_v1(br#"{"os":"linux"}"#.to_vec(), None);
    c.push(&image, &layers, config, &RegistryAuth::Anonymous, None)
        .await
        .unwrap();
    let (_, image_digest) = c
        .pull_manifest(&image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    let (raw, _) = c
        .pull_manifest_raw(
            &image,
            &RegistryAuth::Anonymous,
            &[oci_client::manifest::OCI_IMAGE_MEDIA_TYPE],
        )
        .await
        .unwrap();

    let sig_layers = vec![ImageLayer::new(
        b"signature bytes".to_vec(),
        "application/vnd.example.sig.v1".into(),
        None,
    )];
    let empty = Config::new(
        b"{}".to_vec(),
        "application/vnd.oci.empty.v1+json".into(),
        None,
    );
    let mut manifest = OciImageManifest::build(&sig_layers, &empty, None);
    manifest.artifact_type = Some("application/vnd.example.signature".into());
    manifest.subject = Some(OciDescriptor {
        media_type: oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.into(),
        digest: image_digest.clone(),
        size: raw.len() as i64,
        ..Default::default()
    });
    let sig_ref = reference(&s, "team/app:sig");
    c.push(
        &sig_ref,
        &sig_layers,
        empty,
        &RegistryAuth::Anonymous,
        Some(manifest),
    )
    .await
    .unwrap();

    let by_digest = reference(&s, &format!("team/app@{image_digest}"));
    let referrers = c.pull_referrers(&by_digest, None).await.unwrap();
    assert_eq!(referrers.manifests.len(), 1);
    let (_, sig_digest) = c
        .pull_manifest(&sig_ref, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert_eq!(referrers.manifests[0].digest, sig_digest);
    let only_sigs = c
        .pull_referrers(&by_digest, Some("application/vnd.example.signature"))
        .await
        .unwrap();
    assert_eq!(only_sigs.manifests.len(), 1);
    let filtered = c
        .pull_referrers(&by_digest, Some("application/vnd.other"))
        .await
        .unwrap();
    assert!(filtered.manifests.is_empty());
}

crate::on_every_backend!(
    multi_layer_image_round_trip,
    index_round_trip,
    artifact_with_subject_then_referrers,
);
