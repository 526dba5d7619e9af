//! The repository index: right after this node's pushes and deletes without reading storage
//! again, and revalidated on shared storage once its figures are older than the TTL.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::catalog::{Catalog, SHARED_TTL};
use super::{target, Action, Caller, Service, TargetKind};
use crate::registry::reference::{Algorithm, Digest, Reference, RepoName, Tag};
use crate::registry::storage::fs::FsStorage;
use crate::registry::storage::{ByteStream, LinkKind, Storage};

fn repo(name: &str) -> RepoName {
    RepoName::parse(name).unwrap()
}

fn tag(name: &str) -> Reference {
    Reference::Tag(Tag::parse(name).unwrap())
}

fn body(bytes: &[u8]) -> ByteStream {
    let bytes = Bytes::copy_from_slice(bytes);
    Box::pin(futures_util::stream::once(async move { Ok(bytes) }))
}

/// Pushes a config, a layer and an image manifest naming them, tagged `reference`; the
/// manifest's length.
async fn push_image(service: &Service, r: &RepoName, reference: &Reference, layer: &[u8]) -> u64 {
    let caller = Caller::default();
    let mut sizes = Vec::new();
    for blob in [b"{}".as_slice(), layer] {
        let d = Digest::of(Algorithm::Sha256, blob);
        service.put_blob(&caller, r, &d, body(blob)).await.unwrap();
        sizes.push((d, blob.len()));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sizes[0].0.to_string(), "size": sizes[0].1 },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": sizes[1].0.to_string(), "size": sizes[1].1 }],
    }))
    .unwrap();
    let content_type = Some("application/vnd.oci.image.manifest.v1+json");
    service
        .put_manifest(&caller, r, reference, content_type, body(&manifest))
        .await
        .unwrap();
    manifest.len() as u64
}

fn names(list: &[RepoName]) -> Vec<&str> {
    list.iter().map(RepoName::as_str).collect()
}

#[tokio::test]
async fn this_nodes_pushes_and_deletes_reach_the_index_without_a_new_walk() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
    let service = Service::new(storage.clone(), 1 << 20, 1 << 20);
    let catalog = service.catalog().clone();
    let app = repo("team/app");
    assert!(catalog.names(&storage).await.unwrap().is_empty());

    let m1 = push_image(&service, &app, &tag("1"), b"layer one").await;
    // Written behind the service's back: a walk would find it, the index does not.
    storage
        .link(
            &repo("ghost/app"),
            LinkKind::Layer,
            &Digest::of(Algorithm::Sha256, b"{}"),
        )
        .await
        .unwrap();
    assert_eq!(names(&catalog.names(&storage).await.unwrap()), ["team/app"]);
    let figures = catalog
        .figures(&storage, std::slice::from_ref(&app))
        .await
        .unwrap();
    assert_eq!(figures[0].tags, 1);
    assert_eq!(figures[0].size, m1 + 2 + 9, "manifest, config and layer");
    assert!(figures[0].last_push.is_some());

    // A second tag on another image: counted, and its layer added to the size once.
    let m2 = push_image(&service, &app, &tag("2"), b"layer two!").await;
    let figures = catalog
        .figures(&storage, std::slice::from_ref(&app))
        .await
        .unwrap();
    assert_eq!(
        (figures[0].tags, figures[0].size),
        (2, m1 + m2 + 2 + 9 + 10)
    );

    service
        .delete_manifest(&Caller::default(), &app, &tag("1"))
        .await
        .unwrap();
    let figures = catalog
        .figures(&storage, std::slice::from_ref(&app))
        .await
        .unwrap();
    assert_eq!((figures[0].tags, figures[0].size), (1, m2 + 2 + 10));

    // A whole repository deleted (the event a repository delete emits).
    catalog.note(Action::Delete, &target(TargetKind::Repository, &app));
    assert!(catalog.names(&storage).await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn on_shared_storage_other_nodes_changes_show_once_the_ttl_passed() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
    // The service only asks storage whether it is shared; a shared index is what matters.
    let service =
        Service::new(storage.clone(), 1 << 20, 1 << 20).with_catalog(Arc::new(Catalog::new(true)));
    let catalog = service.catalog().clone();
    let app = repo("team/app");
    push_image(&service, &app, &tag("1"), b"layer one").await;
    assert_eq!(names(&catalog.names(&storage).await.unwrap()), ["team/app"]);
    assert_eq!(
        catalog
            .figures(&storage, std::slice::from_ref(&app))
            .await
            .unwrap()[0]
            .tags,
        1
    );

    // Another node pushes a repository and a tag: nothing this node's service hears of.
    let other = Service::new(storage.clone(), 1 << 20, 1 << 20);
    push_image(&other, &repo("team/new"), &tag("1"), b"layer new").await;
    push_image(&other, &app, &tag("2"), b"layer two").await;
    tokio::time::advance(SHARED_TTL - Duration::from_secs(1)).await;
    assert_eq!(names(&catalog.names(&storage).await.unwrap()), ["team/app"]);
    assert_eq!(
        catalog
            .figures(&storage, std::slice::from_ref(&app))
            .await
            .unwrap()[0]
            .tags,
        1
    );

    // Past the TTL: the stale answer once more, while storage is read again behind it.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(names(&catalog.names(&storage).await.unwrap()), ["team/app"]);
    assert_eq!(
        catalog
            .figures(&storage, std::slice::from_ref(&app))
            .await
            .unwrap()[0]
            .tags,
        1
    );
    catalog.settled().await;
    assert_eq!(
        names(&catalog.names(&storage).await.unwrap()),
        ["team/app", "team/new"]
    );
    assert_eq!(
        catalog
            .figures(&storage, std::slice::from_ref(&app))
            .await
            .unwrap()[0]
            .tags,
        2
    );
}

/// The figures `catalog` gives for `r` (kept, stale or read now).
async fn tags_of(catalog: &Arc<Catalog>, storage: &Arc<dyn Storage>, r: &RepoName) -> usize {
    let figures = catalog.figures(storage, std::slice::from_ref(r)).await;
    figures.unwrap()[0].tags
}

#[tokio::test]
async fn after_a_restart_the_saved_index_lists_at_once_and_a_walk_corrects_it() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage::open(dir.path()).unwrap());
    let before = Service::new(storage.clone(), 1 << 20, 1 << 20);
    let (app, old) = (repo("team/app"), repo("team/old"));
    push_image(&before, &app, &tag("1"), b"layer one").await;
    push_image(&before, &old, &tag("1"), b"layer old").await;
    let catalog = before.catalog().clone();
    assert_eq!(
        names(&catalog.names(&storage).await.unwrap()),
        ["team/app", "team/old"]
    );
    assert_eq!(tags_of(&catalog, &storage, &app).await, 1);
    catalog.settled().await;
    // As a stopping server does: with the figures learnt since the walk saved the names.
    catalog.save(storage.as_ref()).await.unwrap();

    // While wharf is down, registry:2 on the same root deletes a repository, creates one,
    // and pushes a tag to another.
    storage.delete_repository(&old).await.unwrap();
    let config = Digest::of(Algorithm::Sha256, b"{}");
    let ghost = repo("ghost/app");
    storage
        .link(&ghost, LinkKind::Layer, &config)
        .await
        .unwrap();
    push_image(&before, &app, &tag("2"), b"layer two").await;

    // Started again; a push comes before the first view.
    let after = Service::new(storage.clone(), 1 << 20, 1 << 20);
    let catalog = after.catalog().clone();
    push_image(&after, &repo("team/new"), &tag("1"), b"layer new").await;
    // The first view is the saved index (stale) with that push replayed over it...
    assert_eq!(
        names(&catalog.names(&storage).await.unwrap()),
        ["team/app", "team/new", "team/old"]
    );
    assert_eq!(tags_of(&catalog, &storage, &app).await, 1, "saved figures");
    // ...and the walk behind it, and a read of the stale figures, bring what storage has.
    catalog.settled().await;
    assert_eq!(
        names(&catalog.names(&storage).await.unwrap()),
        ["ghost/app", "team/app", "team/new"]
    );
    assert_eq!(tags_of(&catalog, &storage, &app).await, 2);

    // The walk saved what it found: the next start lists that at once.
    let again = Service::new(storage.clone(), 1 << 20, 1 << 20);
    assert_eq!(
        names(&again.catalog().names(&storage).await.unwrap()),
        ["ghost/app", "team/app", "team/new"]
    );
}
