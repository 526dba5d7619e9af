//! Where each thing lives under the storage root: Distribution's (registry:2's) layout,
//! path for path and byte for byte, so a registry:2 volume is served as is and what wharf
//! writes, registry:2 reads. The root plays registry:2's `rootdirectory`: its data is under
//! `<root>/docker/registry/v2`. Every path is built from validated names, tags, digests and
//! upload ids, so none can leave the root.
//!
//! ```text
//! docker/registry/v2/blobs/<alg>/<hex[..2]>/<hex>/data                  blob bytes
//! docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link      blob membership
//! .../<name>/_manifests/revisions/<alg>/<hex>/link                     manifest membership
//! .../<name>/_manifests/tags/<tag>/current/link                        tag -> digest
//! .../<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link              digests the tag has had
//! wharf/referrers/<name>/_subjects/<alg>/<hex>/<alg>-<hex>             referrer descriptor JSON
//! wharf/uploads/<uuid>/{data,owner,monolithic}                         upload sessions
//! wharf/tmp/                                                           staging for atomic writes
//! wharf/lock                                                           the root's lock (`root_lock`)
//! wharf/records/<key>                                                  small records (`records.rs`: the notifications outbox)
//! ```
//!
//! Every link file holds the digest it links (`sha256:…`, no newline), as registry:2
//! writes it. wharf's own state is under `wharf/`, beside `docker/`, where registry:2's
//! catalog and `garbage-collect` never look; `wharf/tmp` is on the volume itself, so a
//! rename from it into `docker/` is atomic. Repository name components start with
//! `[a-z0-9]`, so they never collide with the `_`-prefixed directories.

use std::path::{Path, PathBuf};

use crate::registry::reference::{Digest, RepoName, Tag};
use crate::registry::storage::{LinkKind, UploadId};

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
    /// `<root>/docker/registry/v2`: everything registry:2 also reads.
    v2: PathBuf,
    /// `<root>/wharf`: what only wharf keeps.
    wharf: PathBuf,
    /// Staging for atomic writes: `wharf/tmp`, which the process holding the root clears
    /// when it opens it, or a directory of its own for a process beside it (`wharf gc`).
    tmp: PathBuf,
}

/// `<alg>/<hex>`, the directory registry:2 names a digest by under `_layers`, `revisions`
/// and a tag's `index`.
fn digest_dir(base: PathBuf, d: &Digest) -> PathBuf {
    base.join(d.algorithm().as_str()).join(d.hex())
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Self {
            v2: root.join("docker").join("registry").join("v2"),
            wharf: root.join("wharf"),
            tmp: root.join("wharf").join("tmp"),
            root,
        }
    }

    /// The layout with staging in `wharf/<name>` instead of `wharf/tmp`.
    pub fn staging_in(mut self, name: &str) -> Self {
        self.tmp = self.wharf.join(name);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs(&self) -> PathBuf {
        self.v2.join("blobs")
    }

    pub fn blob(&self, d: &Digest) -> PathBuf {
        self.blobs()
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
            .join("data")
    }

    pub fn repositories(&self) -> PathBuf {
        self.v2.join("repositories")
    }

    pub fn repo(&self, repo: &RepoName) -> PathBuf {
        self.repositories().join(repo.as_str())
    }

    pub fn link(&self, repo: &RepoName, kind: LinkKind, d: &Digest) -> PathBuf {
        let base = match kind {
            LinkKind::Layer => self.repo(repo).join("_layers"),
            LinkKind::Manifest => self.repo(repo).join("_manifests").join("revisions"),
        };
        digest_dir(base, d).join("link")
    }

    pub fn tags(&self, repo: &RepoName) -> PathBuf {
        self.repo(repo).join("_manifests").join("tags")
    }

    /// The tag's directory: registry:2 deletes a tag by deleting it whole.
    pub fn tag_dir(&self, repo: &RepoName, tag: &Tag) -> PathBuf {
        self.tags(repo).join(tag.as_str())
    }

    /// The link naming the digest the tag points at.
    pub fn tag(&self, repo: &RepoName, tag: &Tag) -> PathBuf {
        self.tag_dir(repo, tag).join("current").join("link")
    }

    /// The tag's record of having pointed at `d` (registry:2 keeps one per digest).
    pub fn tag_index(&self, repo: &RepoName, tag: &Tag, d: &Digest) -> PathBuf {
        digest_dir(self.tag_dir(repo, tag).join("index"), d).join("link")
    }

    pub fn wharf(&self) -> &Path {
        &self.wharf
    }

    pub fn referrers(&self, repo: &RepoName, subject: &Digest) -> PathBuf {
        digest_dir(self.repo_referrers(repo), subject)
    }

    /// Every referrer record of a repository (`wharf/referrers/<name>/_subjects`).
    pub fn repo_referrers(&self, repo: &RepoName) -> PathBuf {
        self.wharf
            .join("referrers")
            .join(repo.as_str())
            .join("_subjects")
    }

    pub fn referrer(&self, repo: &RepoName, subject: &Digest, referrer: &Digest) -> PathBuf {
        self.referrers(repo, subject).join(format!(
            "{}-{}",
            referrer.algorithm().as_str(),
            referrer.hex()
        ))
    }

    pub fn uploads(&self) -> PathBuf {
        self.wharf.join("uploads")
    }

    pub fn upload_dir(&self, id: UploadId) -> PathBuf {
        self.uploads().join(id.to_string())
    }

    pub fn tmp(&self) -> PathBuf {
        self.tmp.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths registry:2's `paths.go` gives, for a root it calls `rootdirectory`.
    #[test]
    fn paths_are_registry2s() {
        let hex = "ab".repeat(32);
        let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
        let (repo, tag) = (
            RepoName::parse("team/app").unwrap(),
            Tag::parse("v1").unwrap(),
        );
        let l = Layout::new(PathBuf::from("/var/lib/registry"));
        let v2 = "/var/lib/registry/docker/registry/v2";
        let at = |p: PathBuf| p.display().to_string();
        assert_eq!(at(l.blob(&d)), format!("{v2}/blobs/sha256/ab/{hex}/data"));
        let r = format!("{v2}/repositories/team/app");
        assert_eq!(
            at(l.link(&repo, LinkKind::Layer, &d)),
            format!("{r}/_layers/sha256/{hex}/link")
        );
        assert_eq!(
            at(l.link(&repo, LinkKind::Manifest, &d)),
            format!("{r}/_manifests/revisions/sha256/{hex}/link")
        );
        assert_eq!(
            at(l.tag(&repo, &tag)),
            format!("{r}/_manifests/tags/v1/current/link")
        );
        assert_eq!(
            at(l.tag_index(&repo, &tag, &d)),
            format!("{r}/_manifests/tags/v1/index/sha256/{hex}/link")
        );
        assert!(l.uploads().starts_with("/var/lib/registry/wharf"));
        assert!(l.tmp().starts_with("/var/lib/registry/wharf"));
        assert!(l
            .referrers(&repo, &d)
            .starts_with("/var/lib/registry/wharf"));
    }
}
