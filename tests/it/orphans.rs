//! Monolithic uploads (`POST ?digest=` with the whole blob) whose server was killed midway:
//! no client knows their session, so nobody can resume them. A restart must discard them
//! (and abort their multipart uploads), so a crash loop leaves bounded garbage.

use std::time::Duration;

use reqwest::{Client, StatusCode};

use crate::crash::stalled_body;
use crate::store_relay::StoreRelay;
use crate::support::{bytes_of, sha256, Backend, TestStore, WharfProcess};

const MIB: usize = 1 << 20;

/// Whether the store has received part of the body: on disk, a session file holding 8 MiB;
/// on an object store, a part of a multipart upload (S3) or a block (Azure).
fn under_way(store: &TestStore, relay: Option<&StoreRelay>) -> bool {
    match relay {
        Some(relay) => relay.requests().iter().any(|l| {
            l.starts_with("PUT ") && (l.contains("partNumber=") || l.contains("comp=block&"))
        }),
        None => std::fs::read_dir(store.root.join("wharf/uploads"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| std::fs::metadata(e.path().join("data")).is_ok_and(|m| m.len() >= 8 << 20)),
    }
}

/// What is left of upload sessions: entries under `wharf/uploads` (on disk), or keys under
/// `wharf/uploads/` and incomplete multipart uploads (S3), or blobs there (Azure,
/// whose uncommitted blocks nobody can list or abort; they expire in a week).
fn leftovers(store: &TestStore) -> Vec<String> {
    match store.backend {
        Backend::Fs => std::fs::read_dir(store.root.join("wharf/uploads"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().display().to_string())
            .collect(),
        Backend::S3 => {
            let moto = crate::moto::shared().unwrap();
            let keys = moto.get(&format!(
                "/{}?list-type=2&prefix=wharf/uploads/",
                store.bucket
            ));
            let uploads = moto.get(&format!("/{}?uploads", store.bucket));
            let mut left: Vec<String> = keys
                .split("<Key>")
                .skip(1)
                .map(|k| k.split('<').next().unwrap_or_default().to_owned())
                .collect();
            left.extend(uploads.split("<UploadId>").skip(1).map(|u| {
                format!(
                    "multipart upload {}",
                    u.split('<').next().unwrap_or_default()
                )
            }));
            left
        }
        Backend::Azure => crate::azurite::shared()
            .unwrap()
            .list(&store.bucket, "wharf/uploads/"),
    }
}

async fn monolithic_upload_killed_midway_is_discarded_at_restart(backend: Backend) {
    let Some(mut store) = TestStore::fresh(backend) else {
        return;
    };
    let relay = match backend {
        Backend::Fs => None,
        _ => {
            store.store_options = "part_size = 5242880\n".into();
            Some(StoreRelay::in_front_of(&mut store).await)
        }
    };
    let conf = tempfile::tempdir().unwrap();
    let http = Client::new();
    let blob = bytes_of(32 * MIB, 61);
    let digest = sha256(&blob);
    // Two crashes in a row: each restart clears what the last one left.
    for round in 0..2 {
        let mut wharf = WharfProcess::spawn_async(conf.path(), &store.config("")).await;
        let base = format!("http://{}", wharf.addr);
        if let Some(relay) = &relay {
            relay.reset();
        }
        let (body, _keep_open) = stalled_body(blob[..12 * MIB].to_vec());
        let post = tokio::spawn(
            http.post(format!("{base}/v2/team/app/blobs/uploads/?digest={digest}"))
                .body(body)
                .send(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !under_way(&store, relay.as_deref()) {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the upload never got going"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wharf.kill();
        let _ = post.await;
        if let Some(relay) = &relay {
            relay.reset();
        }
        // The restart: wharf is listening only after its start-up purge.
        let wharf = WharfProcess::spawn_async(conf.path(), &store.config("")).await;
        let left = leftovers(&store);
        assert!(
            left.is_empty(),
            "round {round}: garbage after the restart: {left:#?}"
        );
        let r = http
            .head(format!("http://{}/v2/team/app/blobs/{digest}", wharf.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "no partial blob");
    }
}

crate::on_every_backend!(monolithic_upload_killed_midway_is_discarded_at_restart);
