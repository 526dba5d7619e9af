//! Small records in the bucket, under `<prefix>/wharf/records/<key>` (see
//! `storage::records` for the contract). A create is a PUT with `If-None-Match: *`
//! (`PutMode::Create`), a replace a PUT with `If-Match` on the e-tag read
//! (`PutMode::Update`), so of several nodes racing for a lease exactly one wins. Without
//! conditional writes (`storage.s3.conditional_writes = false`) both fall back to
//! check-then-write, which two nodes can both pass.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{unavailable, ObjectStorage};
use crate::registry::storage::{RecordKey, RecordVersion, StorageResult};

const BASE: &str = "wharf/records";

impl ObjectStorage {
    fn record_key(&self, key: &RecordKey) -> Path {
        self.keys.at(&format!("{BASE}/{key}"))
    }

    pub(super) async fn put_record_object(
        &self,
        key: &RecordKey,
        bytes: Bytes,
    ) -> StorageResult<()> {
        self.write("write record", &self.record_key(key), bytes)
            .await
    }

    pub(super) async fn create_record_object(
        &self,
        key: &RecordKey,
        bytes: Bytes,
    ) -> StorageResult<bool> {
        let path = self.record_key(key);
        if !self.conditional_writes {
            if self.read_optional("create record", &path).await?.is_some() {
                return Ok(false);
            }
            return self
                .write("create record", &path, bytes)
                .await
                .map(|()| true);
        }
        self.put_mode("create record", &path, bytes, PutMode::Create)
            .await
    }

    pub(super) async fn replace_record_object(
        &self,
        key: &RecordKey,
        bytes: Bytes,
        expected: &RecordVersion,
    ) -> StorageResult<bool> {
        let path = self.record_key(key);
        if !self.conditional_writes {
            match self.read_record_object(key).await? {
                Some((_, now)) if now == *expected => {}
                _ => return Ok(false),
            }
            return self
                .write("replace record", &path, bytes)
                .await
                .map(|()| true);
        }
        let version = UpdateVersion {
            e_tag: expected.tag.clone(),
            version: expected.version.clone(),
        };
        self.put_mode("replace record", &path, bytes, PutMode::Update(version))
            .await
    }

    /// A conditional PUT: `false` when its condition failed.
    async fn put_mode(
        &self,
        op: &'static str,
        path: &Path,
        bytes: Bytes,
        mode: PutMode,
    ) -> StorageResult<bool> {
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(path, PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::Precondition { .. }
                | object_store::Error::AlreadyExists { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(false),
            Err(e) => Err(unavailable(op)(e)),
        }
    }

    pub(super) async fn read_record_object(
        &self,
        key: &RecordKey,
    ) -> StorageResult<Option<(Bytes, RecordVersion)>> {
        let op = "read record";
        let got = match self.store.get(&self.record_key(key)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(unavailable(op)(e)),
        };
        let version = RecordVersion {
            tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(unavailable(op))?;
        Ok(Some((bytes, version)))
    }

    pub(super) async fn list_record_objects(
        &self,
        prefix: &RecordKey,
    ) -> StorageResult<Vec<RecordKey>> {
        let base = self.record_key(prefix);
        let strip = format!("{base}/");
        let mut keys: Vec<RecordKey> = self
            .list_keys("list records", &base)
            .await?
            .iter()
            .filter_map(|p| p.as_ref().strip_prefix(&strip).map(str::to_owned))
            .filter_map(|rel| prefix.join_path(&rel))
            .collect();
        keys.sort();
        Ok(keys)
    }

    pub(super) async fn delete_record_object(&self, key: &RecordKey) -> StorageResult<bool> {
        self.remove("delete record", &self.record_key(key)).await
    }
}
