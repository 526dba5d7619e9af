//! Mark and sweep on a filesystem store in a tempdir, built link by link as pushes leave it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde_json::json;

use super::mark::mark;
use super::sweep::sweep;
use crate::config::Untagged;
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

#[tokio::test]
async fn a_blob_nothing_reaches_goes_and_everything_reached_stays() {
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

    let marked = mark(&s, Untagged::Keep).await.unwrap();
    for d in [&shared, &ca, &cb, &ma] {
        assert!(marked.live.contains(d), "{d} must be live");
    }
    assert!(!marked.live.contains(&mb) && !marked.live.contains(&orphan));

    let dry = sweep(&s, &marked, later(), GRACE, true).await.unwrap();
    let mut gone: Vec<_> = dry.blobs.iter().map(|b| b.digest.clone()).collect();
    gone.sort();
    let mut want = vec![mb.clone(), orphan.clone()];
    want.sort();
    assert_eq!(gone, want);
    assert!(
        s.blob_size(&orphan).await.unwrap().is_some(),
        "a dry run deletes nothing"
    );

    let swept = sweep(&s, &marked, later(), GRACE, false).await.unwrap();
    assert_eq!(swept.blobs.len(), 2);
    assert_eq!(swept.bytes, dry.bytes);
    assert!(s.blob_size(&orphan).await.unwrap().is_none());
    assert!(s.blob_size(&mb).await.unwrap().is_none());
    for d in [&shared, &ca, &cb, &ma] {
        assert!(s.blob_size(d).await.unwrap().is_some(), "{d} was swept");
    }
}

#[tokio::test]
async fn blobs_younger_than_the_grace_period_stay() {
    let Store { s, _dir } = store();
    let fresh = blob(&s, b"a layer whose manifest is still coming").await;
    let marked = mark(&s, Untagged::Keep).await.unwrap();
    let swept = sweep(
        &s,
        &marked,
        SystemTime::now(),
        Duration::from_secs(3600),
        false,
    )
    .await
    .unwrap();
    assert!(swept.blobs.is_empty());
    assert!(s.blob_size(&fresh).await.unwrap().is_some());
}

#[tokio::test]
async fn untagged_keep_keeps_every_revision_with_its_blobs() {
    let Store { s, _dir } = store();
    let r = repo("app");
    let c = blob(&s, b"config of an untagged image").await;
    let m = image(&s, &r, &c, &[], None).await;
    let marked = mark(&s, Untagged::Keep).await.unwrap();
    assert!(marked.live.contains(&m) && marked.live.contains(&c));
    assert!(marked.untagged.is_empty());
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

    let marked = mark(&s, Untagged::Delete).await.unwrap();
    for d in [&index, &child, &c1, &signature, &c2] {
        assert!(marked.live.contains(d), "{d} must be live");
    }
    assert_eq!(marked.untagged, vec![(r.clone(), stale.clone())]);

    let swept = sweep(&s, &marked, later(), GRACE, false).await.unwrap();
    assert_eq!(swept.manifests_unlinked, vec![(r.clone(), stale.clone())]);
    assert!(!s.is_linked(&r, LinkKind::Manifest, &stale).await.unwrap());
    let mut gone: Vec<_> = swept.blobs.iter().map(|b| b.digest.clone()).collect();
    gone.sort();
    let mut want = vec![stale, c3];
    want.sort();
    assert_eq!(gone, want);
}

#[tokio::test]
async fn a_blob_linked_after_the_mark_is_spared_by_the_recheck() {
    let Store { s, _dir } = store();
    let d = blob(&s, b"mounted while the mark ran").await;
    let marked = mark(&s, Untagged::Keep).await.unwrap();
    assert!(!marked.live.contains(&d));
    s.link(&repo("late"), LinkKind::Layer, &d).await.unwrap();
    let swept = sweep(&s, &marked, later(), GRACE, false).await.unwrap();
    assert!(swept.blobs.is_empty() && swept.spared == 1);
    assert!(s.blob_size(&d).await.unwrap().is_some());
}
