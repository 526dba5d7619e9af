//! Deleting a whole repository from the bucket: every key under its `_manifests`,
//! `_layers` and `_uploads` (registry:2's) and its referrer records under `wharf/`, in bulk
//! deletes. Blobs stay for garbage collection. Only the `_`-prefixed parts are listed, so
//! a repository nested under the name (`team/app` when `team` goes) is not touched.
//!
//! The tags' `current/link` keys go in the first bulk delete, so no pull by tag resolves
//! once the delete has begun; the rest follows. A bucket has no rename, so a delete cut off
//! half way leaves some keys: the repository is still listed, and deleting again finishes.

use object_store::path::Path;

use super::ObjectStorage;
use crate::registry::reference::RepoName;
use crate::registry::storage::StorageResult;

const OP: &str = "delete repository";

pub(super) async fn delete_repository(s: &ObjectStorage, repo: &RepoName) -> StorageResult<bool> {
    let mut keys = Vec::new();
    for part in ["_manifests", "_layers", "_uploads"] {
        keys.extend(s.list_keys(OP, &s.keys.repo_part(repo, part)).await?);
    }
    if keys.is_empty() {
        return Ok(false);
    }
    let (tags, rest): (Vec<Path>, Vec<Path>) = keys
        .into_iter()
        .partition(|k| k.as_ref().ends_with("/current/link"));
    s.delete_all(OP, tags).await?;
    s.delete_all(OP, rest).await?;
    let referrers = s.list_keys(OP, &s.keys.repo_referrers(repo)).await?;
    s.delete_all(OP, referrers).await?;
    Ok(true)
}
