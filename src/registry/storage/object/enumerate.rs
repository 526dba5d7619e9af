//! Garbage collection's view of a bucket: every blob with its size and last-modified time,
//! the repositories' links, and deleting a blob. It lists registry:2's keys (`keys.rs`), so
//! it sees what registry:2's s3 driver wrote as well as what wharf wrote. Listings are
//! paginated by the store (a thousand keys a page on S3, five thousand on Azure), so a run
//! costs one request per page of objects, never one per blob and repository.

use std::time::SystemTime;

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::ObjectMeta;

use super::{unavailable, ObjectStorage};
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{BlobEntry, LinkEntry, LinkKind, StorageResult};

impl ObjectStorage {
    async fn list_meta(&self, op: &'static str, prefix: &Path) -> StorageResult<Vec<ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(unavailable(op))
    }

    /// `blobs/<alg>/<xx>/<hex>/data` for every blob; keys of any other shape are skipped.
    pub(super) async fn list_blob_objects(&self) -> StorageResult<Vec<BlobEntry>> {
        let listed = self.list_meta("list blobs", &self.keys.blobs()).await?;
        let mut out: Vec<BlobEntry> = listed
            .into_iter()
            .filter_map(|m| {
                let digest = blob_digest(self.keys.under_v2(&m.location)?)?;
                Some(BlobEntry {
                    digest,
                    size: m.size,
                    modified: SystemTime::from(m.last_modified),
                })
            })
            .collect();
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// The links under `prefix` (all repositories, or one repository's `_layers` or
    /// `revisions`); tags' keys and anything else are skipped.
    pub(super) async fn list_link_objects(&self, prefix: &Path) -> StorageResult<Vec<LinkEntry>> {
        let listed = self.list_meta("list links", prefix).await?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let (repo, kind, digest) = link_of(self.keys.under_v2(&m.location)?)?;
                Some(LinkEntry {
                    repo,
                    kind,
                    digest,
                    modified: SystemTime::from(m.last_modified),
                })
            })
            .collect())
    }

    pub(super) async fn delete_blob_object(&self, digest: &Digest) -> StorageResult<bool> {
        let removed = self.remove("delete blob", &self.keys.blob(digest)).await?;
        // After the delete: a size cached before it must not vouch for the blob again.
        self.sizes.invalidate(digest);
        Ok(removed)
    }
}

/// The digest of `blobs/<alg>/<xx>/<hex>/data` (relative to `docker/registry/v2`).
pub(crate) fn blob_digest(rel: &str) -> Option<Digest> {
    let mut parts = rel.strip_prefix("blobs/")?.split('/');
    let (alg, xx, hex, data) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if data != "data" || parts.next().is_some() || !hex.starts_with(xx) || xx.len() != 2 {
        return None;
    }
    Digest::parse(&format!("{alg}:{hex}")).ok()
}

/// The link `repositories/<name>/_layers/<alg>/<hex>/link` or
/// `repositories/<name>/_manifests/revisions/<alg>/<hex>/link`. A repository name has no
/// component starting with `_`, so the first such segment ends the name.
pub(crate) fn link_of(rel: &str) -> Option<(RepoName, LinkKind, Digest)> {
    let segments: Vec<&str> = rel.strip_prefix("repositories/")?.split('/').collect();
    let at = segments.iter().position(|s| s.starts_with('_'))?;
    let (kind, rest) = match &segments[at..] {
        ["_layers", rest @ ..] => (LinkKind::Layer, rest),
        ["_manifests", "revisions", rest @ ..] => (LinkKind::Manifest, rest),
        _ => return None,
    };
    let [alg, hex, "link"] = rest else {
        return None;
    };
    let repo = RepoName::parse(&segments[..at].join("/")).ok()?;
    Some((repo, kind, Digest::parse(&format!("{alg}:{hex}")).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registry2_shaped_keys_are_blobs_and_links() {
        let hex = "ab".repeat(32);
        let d = format!("sha256:{hex}");
        assert_eq!(
            blob_digest(&format!("blobs/sha256/ab/{hex}/data")).map(|d| d.to_string()),
            Some(d.clone())
        );
        for bad in [
            format!("blobs/sha256/cd/{hex}/data"),
            format!("blobs/sha256/ab/{hex}/data/x"),
            format!("blobs/sha256/ab/{hex}/other"),
            "blobs/sha256/ab/nothex/data".to_owned(),
        ] {
            assert!(blob_digest(&bad).is_none(), "{bad}");
        }
        let layer = link_of(&format!("repositories/team/app/_layers/sha256/{hex}/link")).unwrap();
        assert_eq!(
            (layer.0.as_str(), layer.1, layer.2.to_string()),
            ("team/app", LinkKind::Layer, d.clone())
        );
        let rev = format!("repositories/app/_manifests/revisions/sha256/{hex}/link");
        assert_eq!(link_of(&rev).unwrap().1, LinkKind::Manifest);
        for bad in [
            "repositories/app/_manifests/tags/v1/current/link".to_owned(),
            format!("repositories/app/_manifests/tags/v1/index/sha256/{hex}/link"),
            format!("repositories/app/_layers/sha256/{hex}"),
            format!("repositories/_layers/sha256/{hex}/link"),
        ] {
            assert!(link_of(&bad).is_none(), "{bad}");
        }
    }
}
