//! The small-record primitives under wharf's own state, on every backend: the contract
//! leases and the notifications outbox rely on (`registry/storage/records.rs`).

use std::sync::Arc;

use bytes::Bytes;

use crate::support::{Backend, TestStore};
use wharf::config::Config;
use wharf::registry::storage::{RecordKey, Storage};

async fn open(store: &TestStore) -> Arc<dyn Storage> {
    let config = Config::from_toml(&store.config(""), "test").unwrap();
    wharf::server::open_storage(&config.storage.backend, &config.storage.root)
        .await
        .unwrap()
}

fn key(k: &str) -> RecordKey {
    RecordKey::new(k).unwrap()
}

async fn records_keep_their_contract(backend: Backend) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    let s = open(&store).await;
    let lease = key("events/hook/lease");
    assert!(s.read_record(&lease).await.unwrap().is_none());
    assert!(s.create_record(&lease, Bytes::from("a")).await.unwrap());
    assert!(
        !s.create_record(&lease, Bytes::from("b")).await.unwrap(),
        "create-if-absent refuses an existing key"
    );
    let (bytes, v1) = s.read_record(&lease).await.unwrap().unwrap();
    assert_eq!(bytes, "a");
    assert!(s
        .replace_record(&lease, Bytes::from("c"), &v1)
        .await
        .unwrap());
    assert!(
        !s.replace_record(&lease, Bytes::from("d"), &v1)
            .await
            .unwrap(),
        "a replace at a version that changed loses"
    );
    assert_eq!(s.read_record(&lease).await.unwrap().unwrap().0, "c");

    for name in ["003-c", "001-a", "002-b"] {
        let k = key(&format!("events/hook/pending/{name}"));
        s.put_record(&k, Bytes::from(name)).await.unwrap();
    }
    let listed = s.list_records(&key("events/hook/pending")).await.unwrap();
    let names: Vec<_> = listed.iter().map(RecordKey::name).collect();
    assert_eq!(
        names,
        ["001-a", "002-b", "003-c"],
        "sorted, only the prefix"
    );
    let everything = s.list_records(&key("events/hook")).await.unwrap();
    assert_eq!(everything.len(), 4, "any depth: {everything:?}");
    assert!(s.delete_record(&listed[0]).await.unwrap());
    assert!(!s.delete_record(&listed[0]).await.unwrap());
    assert!(s
        .list_records(&key("nothing/here"))
        .await
        .unwrap()
        .is_empty());
}

async fn of_racing_creators_exactly_one_wins(backend: Backend) {
    let Some(store) = TestStore::fresh(backend) else {
        return;
    };
    let (a, b) = (open(&store).await, open(&store).await);
    let k = key("events/hook/lease");
    let tries = (0..8).map(|i| {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let k = k.clone();
        tokio::spawn(async move { s.create_record(&k, Bytes::from(format!("{i}"))).await })
    });
    let mut won = 0;
    for t in tries {
        won += usize::from(t.await.unwrap().unwrap());
    }
    assert_eq!(won, 1);
}

crate::on_every_backend!(
    records_keep_their_contract,
    of_racing_creators_exactly_one_wins
);
