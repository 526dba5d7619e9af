//! Finishing an upload on S3 and Azure when wharf was killed (SIGKILL) right after one of
//! the finish's requests reached the store and before its answer came back: the client's
//! retry of `PUT ?digest=` must succeed, whichever step was cut, and leave one intact blob.

use std::time::Duration;

use reqwest::{Client, StatusCode};

use crate::store_relay::StoreRelay;
use crate::support::{bytes_of, sha256, Backend, TestServer, TestStore, WharfProcess};

const MIB: usize = 1 << 20;

/// The steps of a finish of a blob of several parts, as the store sees them.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The last (short) part is uploaded.
    LastPart,
    /// The multipart upload is completed (S3) or the block list committed (Azure).
    Complete,
    /// The assembled object is copied to the blob's key.
    Publish,
    /// The blob is linked into the repository.
    Link,
    /// The session's objects are deleted.
    Cleanup,
}

fn is_step(backend: Backend, step: Step, line: &str) -> bool {
    let (s3, azure) = (backend == Backend::S3, backend == Backend::Azure);
    let put = line.starts_with("PUT ");
    match step {
        Step::LastPart => {
            put && ((s3 && line.contains("partNumber=")) || (azure && line.contains("comp=block&")))
        }
        Step::Complete => {
            (s3 && line.starts_with("POST ") && line.contains("uploadId="))
                || (azure && put && line.contains("comp=blocklist"))
        }
        Step::Publish => line.ends_with(" copy"),
        Step::Link => put && line.contains("/_layers/"),
        Step::Cleanup => {
            (line.starts_with("DELETE ") && line.contains("/wharf/uploads/"))
                || (line.starts_with("POST ")
                    && (line.contains("?delete") || line.contains("comp=batch")))
        }
    }
}

async fn killed_during_finish(backend: Backend, step: Step) {
    let Some(mut store) = TestStore::fresh(backend) else {
        return;
    };
    store.store_options = "part_size = 5242880\n".into();
    let relay = StoreRelay::in_front_of(&mut store).await;
    let conf = tempfile::tempdir().unwrap();
    let mut wharf = WharfProcess::spawn_async(conf.path(), &store.config("")).await;
    let http = Client::new();
    let base = format!("http://{}", wharf.addr);
    // Two full parts and a short one.
    let blob = bytes_of(12 * MIB + 12345, 51);
    let digest = sha256(&blob);
    let r = http
        .post(format!("{base}/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let session = r.headers()["location"].to_str().unwrap().to_owned();
    let r = http
        .patch(format!("{base}{session}"))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let hit = relay.trap(move |line| is_step(backend, step, line));
    let finish = tokio::spawn(http.put(format!("{base}{session}?digest={digest}")).send());
    let line = tokio::time::timeout(Duration::from_secs(60), hit)
        .await
        .unwrap_or_else(|_| panic!("the finish never reached {step:?}: {:#?}", relay.requests()))
        .unwrap();
    wharf.kill();
    let _ = finish.await;

    let wharf = WharfProcess::spawn_async(conf.path(), &store.config("")).await;
    let base = format!("http://{}", wharf.addr);
    let r = http
        .put(format!("{base}{session}?digest={digest}"))
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the retry after a kill at {step:?} ({line}): {}",
        r.text().await.unwrap()
    );
    let r = http
        .get(format!("{base}/v2/team/app/blobs/{digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        sha256(&r.bytes().await.unwrap()),
        digest,
        "the blob is intact"
    );
    let r = http.get(format!("{base}{session}")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the session is gone");
}

async fn finish_resumes_after_a_kill_at_the_last_part(backend: Backend) {
    killed_during_finish(backend, Step::LastPart).await
}

async fn finish_resumes_after_a_kill_at_completion(backend: Backend) {
    killed_during_finish(backend, Step::Complete).await
}

async fn finish_resumes_after_a_kill_at_publishing(backend: Backend) {
    killed_during_finish(backend, Step::Publish).await
}

async fn finish_resumes_after_a_kill_at_linking(backend: Backend) {
    killed_during_finish(backend, Step::Link).await
}

async fn finish_resumes_after_a_kill_at_cleanup(backend: Backend) {
    killed_during_finish(backend, Step::Cleanup).await
}

crate::on_object_stores!(
    finish_resumes_after_a_kill_at_the_last_part,
    finish_resumes_after_a_kill_at_completion,
    finish_resumes_after_a_kill_at_publishing,
    finish_resumes_after_a_kill_at_linking,
    finish_resumes_after_a_kill_at_cleanup,
);

/// A blob larger than one CopyObject may be (5 GiB on AWS; `copy_part_size` lowers the
/// limit here) is published by copying it in parts (UploadPartCopy), never with one copy.
#[tokio::test]
async fn a_blob_larger_than_one_copy_is_published_in_parts() {
    let Some(mut store) = TestStore::fresh(Backend::S3) else {
        return;
    };
    store.store_options = "part_size = 5242880\ncopy_part_size = 5242880\n".into();
    let relay = StoreRelay::in_front_of(&mut store).await;
    let s = TestServer::start_on_store(&store, "").await;
    let blob = bytes_of(12 * MIB + 12345, 52);
    let digest = sha256(&blob);
    let r = s
        .http
        .post(s.url("/v2/team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let session = r.headers()["location"].to_str().unwrap().to_owned();
    let r = s
        .http
        .patch(s.url(&session))
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = s
        .http
        .put(s.url(&format!("{session}?digest={digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let copies: Vec<String> = (relay.requests().into_iter())
        .filter(|l| l.ends_with(" copy"))
        .collect();
    assert_eq!(copies.len(), 3, "three parts of at most 5 MiB: {copies:#?}");
    assert!(
        copies
            .iter()
            .all(|l| l.contains("partNumber=") && l.contains("/blobs/")),
        "every copy is a part of an upload at the blob's key: {copies:#?}"
    );
    let r = s
        .http
        .get(s.url(&format!("/v2/team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        sha256(&r.bytes().await.unwrap()),
        digest,
        "the blob is intact"
    );
}
