//! A repository's tags with their digests and last push times, for retention: one listing
//! of the repository's `_manifests/tags/` keys (their last-modified times), then one read
//! per tag for the digest its `current/link` holds.

use std::time::SystemTime;

use futures_util::TryStreamExt;

use super::{parse_digest, unavailable, ObjectStorage};
use crate::registry::reference::{RepoName, Tag};
use crate::registry::storage::{DatedTag, StorageResult};

const OP: &str = "list dated tags";

pub(super) async fn list_tags_dated(
    s: &ObjectStorage,
    repo: &RepoName,
) -> StorageResult<Vec<DatedTag>> {
    let base = s.keys.tags(repo);
    let listed: Vec<object_store::ObjectMeta> = s
        .store
        .list(Some(&base))
        .try_collect()
        .await
        .map_err(unavailable(OP))?;
    let mut out = Vec::new();
    for meta in listed {
        let Some(rest) = meta.location.prefix_match(&base) else {
            continue;
        };
        let parts: Vec<String> = rest.map(|p| p.as_ref().to_owned()).collect();
        let [tag, current, link] = parts.as_slice() else {
            continue; // a tag's index, or anything else
        };
        let Ok(tag) = Tag::parse(tag) else { continue };
        if (current.as_str(), link.as_str()) != ("current", "link") {
            continue;
        }
        let Some(bytes) = s.read_optional(OP, &meta.location).await? else {
            continue; // deleted since the listing
        };
        out.push(DatedTag {
            tag,
            digest: parse_digest(&meta.location, &bytes)?,
            pushed: SystemTime::from(meta.last_modified),
        });
    }
    out.sort_by(|a, b| a.tag.as_str().cmp(b.tag.as_str()));
    Ok(out)
}
