//! Publishing a completed upload at its blob's key: one atomic server-side copy, or on S3,
//! for blobs larger than one CopyObject may be, a copy in parts (`part_copy.rs`).

use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::{unavailable, ObjectStorage};
use crate::registry::storage::StorageResult;

impl ObjectStorage {
    /// Copies the object `from` (of `size` bytes) to `to`. A concurrent publish of the same
    /// digest copies identical bytes, which is harmless.
    pub(super) async fn publish(&self, from: &Path, to: &Path, size: u64) -> StorageResult<()> {
        let copied = match &self.part_copier {
            Some(copier) if size > copier.part_size => {
                copier.copy(&self.store, from, to, size).await
            }
            _ => self.store.copy(from, to).await,
        };
        copied.map_err(unavailable("publish blob"))
    }
}
