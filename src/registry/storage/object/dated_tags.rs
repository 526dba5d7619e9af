//! A repository's tags with their digests and last push times, for retention: one listing
//! of the repository's `_manifests/tags/` keys, then for each tag the read a tag's page
//! makes (`read_tag_dated`: the digest its `current/link` holds, and when it was written).

use futures_util::TryStreamExt;

use super::{unavailable, ObjectStorage};
use crate::registry::reference::{RepoName, Tag};
use crate::registry::storage::{DatedTag, Storage, StorageResult};

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
        // The read dates the tag as a tag's page sees it (the same object's last-modified).
        let Some((digest, Some(pushed))) = s.read_tag_dated(repo, &tag).await? else {
            continue; // deleted since the listing
        };
        out.push(DatedTag {
            tag,
            digest,
            pushed,
        });
    }
    out.sort_by(|a, b| a.tag.as_str().cmp(b.tag.as_str()));
    Ok(out)
}
