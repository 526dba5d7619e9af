//! Mark and sweep on a filesystem store in a tempdir, built link by link as pushes leave it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::json;

use super::collect_at;
use super::sweep::Swept;
use crate::config::{GcConfig, Untagged};
use crate::registry::manifest::{OCI_INDEX, OCI_MANIFEST};
use crate::registry::reference::{Algorithm, Digest, RepoName, Tag};
use crate::registry::storage::fs::FsStorage;
use crate::registry::storage::{LinkKind, Storage};

struct Store {
    _dir: tempfile::TempDir,
    s: FsStorage,
}

fn store() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let s = FsStorage::open(dir.path()).unwrap();
    Store { _dir: dir, s }
}

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).unwrap()
}

async fn blob(s: &FsStorage, bytes: &[u8]) -> Digest {
    let d = Digest::of(Algorithm::Sha256, bytes);
    s.put_small_blob(&d, Bytes::copy_from_slice(bytes))
        .await
        .unwrap();
    d
}

/// A layer (or config) blob pushed into `r`: stored and linked.
async fn layer(s: &FsStorage, r: &RepoName, bytes: &[u8]) -> Digest {
    let d = blob(s, bytes).await;
    s.link(r, LinkKind::Layer, &d).await.unwrap();
    d
}

fn desc(d: &Digest, media_type: &str) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": d.to_string(), "size": 1})
}

/// An image manifest over `config` and `layers`, stored and linked into `r`.
async fn image(
    s: &FsStorage,
    r: &RepoName,
    config: &Digest,
    layers: &[&Digest],
    subject: Option<&Digest>,
) -> Digest {
    let mut m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": desc(config, "application/vnd.oci.image.config.v1+json"),
        "layers": layers.iter().map(|l| desc(l, "application/vnd.oci.image.layer.v1.tar")).collect::<Vec<_>>(),
    });
    if let Some(subject) = subject {
        m["subject"] = desc(subject, OCI_MANIFEST);
    }
    manifest(s, r, &m).await
}

async fn manifest(s: &FsStorage, r: &RepoName, m: &serde_json::Value) -> Digest {
    let d = blob(s, m.to_string().as_bytes()).await;
    s.link(r, LinkKind::Manifest, &d).await.unwrap();
    d
}

async fn tag(s: &FsStorage, r: &RepoName, t: &str, d: &Digest) {
    s.write_tag(r, &Tag::parse(t).unwrap(), d).await.unwrap();
}

/// Everything written so far counts as older than the grace period.
fn later() -> SystemTime {
    SystemTime::now() + Duration::from_secs(60)
}

const GRACE: Duration = Duration::from_secs(1);

/// One collection whose `T0` is `at`.
async fn collect(s: &FsStorage, untagged: Untagged, at: SystemTime, dry_run: bool) -> Swept {
    let config = GcConfig {
        interval: None,
        grace: GRACE,
        untagged,
    };
    collect_at(s, &config, at, dry_run, super::Pace::BesideServers)
        .await
        .unwrap()
}

fn digests(swept: &Swept) -> Vec<Digest> {
    swept.blobs.iter().map(|b| b.digest.clone()).collect()
}

fn sorted(mut v: Vec<Digest>) -> Vec<Digest> {
    v.sort();
    v
}

#[tokio::test]
async fn a_deleted_images_own_blobs_go_and_everything_reached_stays() {
    let Store { s, _dir } = store();
    let (a, b) = (repo("team/a"), repo("team/b"));
    let shared = layer(&s, &a, b"shared base").await;
    s.link(&b, LinkKind::Layer, &shared).await.unwrap();
    let (ca, cb) = (
        layer(&s, &a, b"config a").await,
        layer(&s, &b, b"config b").await,
    );
    let ma = image(&s, &a, &ca, &[&shared], None).await;
    tag(&s, &a, "v1", &ma).await;
    // b's manifest was deleted: its link is gone, its bytes and b's layer links are not.
    let mb = image(&s, &b, &cb, &[&shared], None).await;
    s.unlink(&b, LinkKind::Manifest, &mb).await.unwrap();
    let orphan = blob(&s, b"uploaded, never linked, never named").await;

    // What registry:2's garbage-collect deletes too: every blob no manifest names.
    let want = sorted(vec![mb.clone(), orphan.clone(), cb.clone()]);
    let dry = collect(&s, Untagged::Keep, later(), true).await;
    assert_eq!(digests(&dry), want);
    assert!(
        s.blob_size(&orphan).await.unwrap().is_some()
            && s.is_linked(&b, LinkKind::Layer, &cb).await.unwrap(),
        "a dry run deletes nothing"
    );

    let swept = collect(&s, Untagged::Keep, later(), false).await;
    assert_eq!(digests(&swept), want);
    assert_eq!(swept.bytes, dry.bytes);
    // b's layer links stay, as registry:2's collector leaves them: the one to the shared
    // layer keeps nothing (a's manifest does), the one to b's config now names nothing.
    assert!(s.is_linked(&b, LinkKind::Layer, &cb).await.unwrap());
    for d in &want {
        assert!(s.blob_size(d).await.unwrap().is_none(), "{d} stayed");
    }
    for d in [&shared, &ca, &ma] {
        assert!(s.blob_size(d).await.unwrap().is_some(), "{d} was swept");
    }
    assert!(s.is_linked(&a, LinkKind::Layer, &shared).await.unwrap());
    let again = collect(&s, Untagged::Keep, later(), false).await;
    assert_eq!(again, Swept::default(), "the first run finished the job");
}

#[tokio::test]
async fn blobs_and_layer_links_younger_than_the_grace_period_stay() {
    let Store { s, _dir } = store();
    let fresh = blob(&s, b"a layer whose manifest is still coming").await;
    let linked = layer(&s, &repo("app"), b"uploaded into app, manifest coming").await;
    let swept = collect(&s, Untagged::Keep, SystemTime::now(), false).await;
    assert_eq!(swept, Swept::default());
    assert!(s.blob_size(&fresh).await.unwrap().is_some());
    assert!(s
        .is_linked(&repo("app"), LinkKind::Layer, &linked)
        .await
        .unwrap());
}

#[tokio::test]
async fn untagged_keep_keeps_every_revision_with_its_blobs() {
    let Store { s, _dir } = store();
    let r = repo("app");
    let c = layer(&s, &r, b"config of an untagged image").await;
    let m = image(&s, &r, &c, &[], None).await;
    let swept = collect(&s, Untagged::Keep, later(), false).await;
    assert_eq!(swept, Swept::default());
    assert!(s.blob_size(&m).await.unwrap().is_some() && s.blob_size(&c).await.unwrap().is_some());
}

#[tokio::test]
async fn untagged_delete_spares_index_children_and_referrers_of_tagged_manifests() {
    let Store { s, _dir } = store();
    let r = repo("app");
    // Configs stored but not layer-linked, so only the manifests keep them.
    let (c1, c2, c3) = (
        blob(&s, b"config 1").await,
        blob(&s, b"config 2").await,
        blob(&s, b"config 3").await,
    );
    let child = image(&s, &r, &c1, &[], None).await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [desc(&child, OCI_MANIFEST)]});
    let index = manifest(&s, &r, &index).await;
    tag(&s, &r, "latest", &index).await;
    let signature = image(&s, &r, &c2, &[], Some(&index)).await;
    let descriptor = json!({"mediaType": OCI_MANIFEST, "digest": signature.to_string(), "size": 1});
    s.add_referrer(&r, &index, &signature, descriptor.to_string().as_bytes())
        .await
        .unwrap();
    let stale = image(&s, &r, &c3, &[], None).await;

    let swept = collect(&s, Untagged::Delete, later(), false).await;
    assert_eq!(swept.manifests_unlinked, vec![(r.clone(), stale.clone())]);
    assert!(!s.is_linked(&r, LinkKind::Manifest, &stale).await.unwrap());
    assert_eq!(digests(&swept), sorted(vec![stale, c3]));
    for d in [&index, &child, &c1, &signature, &c2] {
        assert!(s.blob_size(d).await.unwrap().is_some(), "{d} was swept");
    }
}

#[tokio::test]
async fn an_untagged_revision_younger_than_the_grace_period_stays() {
    let Store { s, _dir } = store();
    let r = repo("app");
    // A child pushed by digest; its index (by tag) is still coming.
    let c = blob(&s, b"config of a child").await;
    let child = image(&s, &r, &c, &[], None).await;
    let swept = collect(&s, Untagged::Delete, SystemTime::now(), false).await;
    assert_eq!(swept, Swept::default());
    assert!(s.is_linked(&r, LinkKind::Manifest, &child).await.unwrap());
}

#[tokio::test]
async fn a_touched_blob_stays_linked_or_not() {
    let Store { s, _dir } = store();
    let r = repo("app");
    let d = layer(&s, &r, b"HEADed by a client about to push its manifest").await;
    let orphan = blob(&s, b"touched, linked nowhere: an upload's retry").await;
    let touches = crate::registry::service::touch::Touches::new(Duration::from_secs(60));
    // Touched "now", and T0 a little later: within the grace period.
    touches.touch(&s, &d).await.unwrap();
    touches.touch(&s, &orphan).await.unwrap();
    let t0 = SystemTime::now() + GRACE / 2;
    let swept = collect(&s, Untagged::Keep, t0, false).await;
    assert_eq!(swept, Swept::default(), "{swept:?}");
    assert!(s.blob_size(&d).await.unwrap().is_some());
    assert!(s.blob_size(&orphan).await.unwrap().is_some());
    // Once the touch is older than the grace period, both go, and so does the record.
    let swept = collect(&s, Untagged::Keep, later(), false).await;
    assert_eq!(digests(&swept), sorted(vec![d, orphan]));
    assert_eq!(swept.touches_cleared, 2);
}

#[tokio::test]
async fn a_blob_touched_after_the_mark_is_spared_by_the_re_check() {
    let Store { s, _dir } = store();
    let d = blob(&s, b"mounted while the mark ran").await;
    // Bytes stored long ago...
    let hex = d.hex();
    let data = s.root().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let old = SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&data)
        .unwrap()
        .set_modified(old)
        .unwrap();
    // ...and the mount's touch arrives after the mark (which found nothing naming the
    // blob) and before the sweep reaches it: simulated by an empty mark and a touch now.
    let marked = super::mark::Marked::default();
    let blobs = s.list_blobs().await.unwrap();
    let touches = crate::registry::service::touch::Touches::new(Duration::from_secs(60));
    touches.touch(&s, &d).await.unwrap();
    let cutoff = SystemTime::now() - GRACE;
    let swept = super::sweep::sweep(&s, &marked, blobs, cutoff, false, 16)
        .await
        .unwrap();
    assert!(swept.blobs.is_empty() && swept.spared == 1, "{swept:?}");
    assert!(s.blob_size(&d).await.unwrap().is_some());
}
