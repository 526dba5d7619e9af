//! Crash safety: `wharf serve` killed with SIGKILL in the middle of large uploads, then
//! restarted on the same storage root.

use std::path::Path;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::support::{bytes_of, sha256, WharfProcess};

/// Every blob's `data` file must hash to the digest its path names.
fn assert_blobs_verified(root: &Path) {
    let base = root.join("docker/registry/v2/blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&base) else {
        return;
    };
    for prefix in prefixes.flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            let bytes = std::fs::read(blob.path().join("data")).unwrap();
            let name = blob.file_name().into_string().unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                name,
                "blob file {name} holds other bytes"
            );
        }
    }
}

/// Starts a streaming request whose body is fed `first` and then stalls until dropped.
pub fn stalled_body(
    first: Vec<u8>,
) -> (reqwest::Body, mpsc::Sender<Result<Vec<u8>, std::io::Error>>) {
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let feeder = tx.clone();
    tokio::spawn(async move {
        for chunk in first.chunks(1 << 20) {
            if feeder.send(Ok(chunk.to_vec())).await.is_err() {
                return;
            }
        }
    });
    (reqwest::Body::wrap_stream(stream), tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_upload_leaves_no_partial_blob_and_keeps_finished_content() {
    let root = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let http = Client::new();
    let mut wharf = WharfProcess::spawn(root.path(), conf.path());
    let base = format!("http://{}", wharf.addr);

    // Finished content before the crash.
    let done = bytes_of(5 << 20, 11);
    let done_digest = sha256(&done);
    let r = http
        .post(format!(
            "{base}/v2/team/app/blobs/uploads/?digest={done_digest}"
        ))
        .body(done.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // A large chunked upload, 24 MiB sent of a 64 MiB blob when the server dies.
    let big = bytes_of(64 << 20, 12);
    let big_digest = sha256(&big);
    let r = http
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let session = r.headers()["location"].to_str().unwrap().to_owned();
    let (body, _keep_open) = stalled_body(big[..24 << 20].to_vec());
    let patch = tokio::spawn(http.patch(format!("{base}{session}")).body(body).send());

    // And a monolithic upload of the same blob, also cut off.
    let (mono_body, _keep_mono) = stalled_body(big[..8 << 20].to_vec());
    let mono = tokio::spawn(
        http.post(format!(
            "{base}/v2/team/app/blobs/uploads/?digest={big_digest}"
        ))
        .body(mono_body)
        .send(),
    );

    // Wait until the server has written part of the chunk, then kill it.
    let mut received = 0u64;
    for _ in 0..500 {
        let r = http.get(format!("{base}{session}")).send().await.unwrap();
        let range = r.headers()["range"].to_str().unwrap();
        received = range.split_once('-').unwrap().1.parse().unwrap();
        if received >= 8 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        received >= 8 << 20,
        "the upload was under way before the kill"
    );
    wharf.kill();
    let _ = patch.await;
    let _ = mono.await;

    // Restart on the same root.
    let wharf = WharfProcess::spawn(root.path(), conf.path());
    let base = format!("http://{}", wharf.addr);
    let r = http
        .head(format!("{base}/v2/team/app/blobs/{big_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "no partial blob is visible"
    );
    let r = http
        .get(format!("{base}/v2/team/app/blobs/{done_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        sha256(&r.bytes().await.unwrap()),
        done_digest,
        "finished content is intact"
    );
    assert_blobs_verified(root.path());

    // The interrupted session resumes from what reached the disk and finishes correctly.
    let r = http.get(format!("{base}{session}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let range = r.headers()["range"].to_str().unwrap();
    let have: usize = range.split_once('-').unwrap().1.parse::<usize>().unwrap() + 1;
    assert!(have <= 24 << 20);
    let r = http
        .put(format!("{base}{session}?digest={big_digest}"))
        .header("Content-Range", format!("{}-{}", have, big.len() - 1))
        .body(big[have..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    let r = http
        .get(format!("{base}/v2/team/app/blobs/{big_digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256(&r.bytes().await.unwrap()), big_digest);
    assert_blobs_verified(root.path());
}
