//! Publishing a completed upload at its blob's key: one atomic server-side copy.

use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::{unavailable, ObjectStorage};
use crate::registry::storage::StorageResult;

impl ObjectStorage {
    /// Copies the object `from` (of `size` bytes) to `to`. A concurrent publish of the same
    /// digest copies identical bytes, which is harmless.
    pub(super) async fn publish(&self, from: &Path, to: &Path, _size: u64) -> StorageResult<()> {
        self.store
            .copy(from, to)
            .await
            .map_err(unavailable("publish blob"))
    }
}
