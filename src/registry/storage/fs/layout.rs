//! Where each thing lives under the storage root. Every path is built from validated
//! names, tags, digests and upload ids, so none can leave the root.
//!
//! ```text
//! blobs/<alg>/<hex[..2]>/<hex>                       blob bytes
//! repositories/<name>/_layers/<alg>/<hex>            blob membership (empty)
//! repositories/<name>/_manifests/revisions/<alg>/<hex>  manifest membership (media type)
//! repositories/<name>/_manifests/tags/<tag>          tag -> digest
//! repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>  referrer descriptor JSON
//! _uploads/<uuid>/{data,owner}                       upload sessions
//! _tmp/                                              staging for atomic small writes
//! _lock                                              the root's lock (see `root_lock`)
//! ```
//!
//! Repository name components start with `[a-z0-9]`, so they never collide with the
//! `_`-prefixed directories.

use std::path::{Path, PathBuf};

use crate::registry::reference::{Digest, RepoName, Tag};
use crate::registry::storage::{LinkKind, UploadId};

#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().as_str())
            .join(&d.hex()[..2])
            .join(d.hex())
    }

    pub fn repositories(&self) -> PathBuf {
        self.root.join("repositories")
    }

    pub fn repo(&self, repo: &RepoName) -> PathBuf {
        self.repositories().join(repo.as_str())
    }

    pub fn link(&self, repo: &RepoName, kind: LinkKind, d: &Digest) -> PathBuf {
        let base = match kind {
            LinkKind::Layer => self.repo(repo).join("_layers"),
            LinkKind::Manifest => self.repo(repo).join("_manifests").join("revisions"),
        };
        base.join(d.algorithm().as_str()).join(d.hex())
    }

    pub fn tags(&self, repo: &RepoName) -> PathBuf {
        self.repo(repo).join("_manifests").join("tags")
    }

    pub fn tag(&self, repo: &RepoName, tag: &Tag) -> PathBuf {
        self.tags(repo).join(tag.as_str())
    }

    pub fn referrers(&self, repo: &RepoName, subject: &Digest) -> PathBuf {
        self.repo(repo)
            .join("_referrers")
            .join(subject.algorithm().as_str())
            .join(subject.hex())
    }

    pub fn referrer(&self, repo: &RepoName, subject: &Digest, referrer: &Digest) -> PathBuf {
        self.referrers(repo, subject).join(format!(
            "{}-{}",
            referrer.algorithm().as_str(),
            referrer.hex()
        ))
    }

    pub fn uploads(&self) -> PathBuf {
        self.root.join("_uploads")
    }

    pub fn upload_dir(&self, id: UploadId) -> PathBuf {
        self.uploads().join(id.to_string())
    }

    pub fn tmp(&self) -> PathBuf {
        self.root.join("_tmp")
    }
}
