//! Where each thing lives in the bucket: the filesystem backend's layout, as object keys
//! under the registry's prefix. Every key is built from validated names, tags, digests and
//! upload ids, so none can leave the prefix.
//!
//! ```text
//! blobs/<alg>/<hex[..2]>/<hex>                          blob bytes
//! repositories/<name>/_layers/<alg>/<hex>               blob membership (empty)
//! repositories/<name>/_manifests/revisions/<alg>/<hex>  manifest membership (media type)
//! repositories/<name>/_manifests/tags/<tag>             tag -> digest
//! repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>  referrer descriptor JSON
//! _uploads/<uuid>/state                                 session state (JSON, see uploads.rs)
//! _uploads/<uuid>/data                                  multipart upload target
//! _uploads/<uuid>/tail/<nonce>                          bytes not yet in a part
//! _health/<uuid>                                        write probes
//! ```

use object_store::path::Path;

use crate::registry::reference::{Digest, RepoName, Tag};
use crate::registry::storage::{LinkKind, UploadId};

#[derive(Clone, Debug)]
pub struct Keys {
    /// Empty, or the prefix without a trailing `/`.
    prefix: String,
}

impl Keys {
    pub fn new(prefix: String) -> Self {
        Self { prefix }
    }

    /// A key from a relative path (already made of valid segments).
    pub fn at(&self, rel: &str) -> Path {
        match self.prefix.is_empty() {
            true => Path::from(rel),
            false => Path::from(format!("{}/{rel}", self.prefix)),
        }
    }

    pub fn blob(&self, d: &Digest) -> Path {
        self.at(&format!(
            "blobs/{}/{}/{}",
            d.algorithm().as_str(),
            &d.hex()[..2],
            d.hex()
        ))
    }

    pub fn repositories(&self) -> Path {
        self.at("repositories")
    }

    pub fn repo(&self, repo: &RepoName) -> Path {
        self.at(&format!("repositories/{repo}"))
    }

    pub fn link(&self, repo: &RepoName, kind: LinkKind, d: &Digest) -> Path {
        let base = match kind {
            LinkKind::Layer => "_layers",
            LinkKind::Manifest => "_manifests/revisions",
        };
        self.at(&format!(
            "repositories/{repo}/{base}/{}/{}",
            d.algorithm().as_str(),
            d.hex()
        ))
    }

    pub fn tags(&self, repo: &RepoName) -> Path {
        self.at(&format!("repositories/{repo}/_manifests/tags"))
    }

    pub fn tag(&self, repo: &RepoName, tag: &Tag) -> Path {
        self.at(&format!("repositories/{repo}/_manifests/tags/{tag}"))
    }

    pub fn referrers(&self, repo: &RepoName, subject: &Digest) -> Path {
        self.at(&format!(
            "repositories/{repo}/_referrers/{}/{}",
            subject.algorithm().as_str(),
            subject.hex()
        ))
    }

    pub fn referrer(&self, repo: &RepoName, subject: &Digest, referrer: &Digest) -> Path {
        self.at(&format!(
            "repositories/{repo}/_referrers/{}/{}/{}-{}",
            subject.algorithm().as_str(),
            subject.hex(),
            referrer.algorithm().as_str(),
            referrer.hex()
        ))
    }

    pub fn uploads(&self) -> Path {
        self.at("_uploads")
    }

    pub fn upload_dir(&self, id: UploadId) -> Path {
        self.at(&format!("_uploads/{id}"))
    }

    pub fn upload_state(&self, id: UploadId) -> Path {
        self.at(&format!("_uploads/{id}/state"))
    }

    pub fn upload_data(&self, id: UploadId) -> Path {
        self.at(&format!("_uploads/{id}/data"))
    }

    pub fn upload_tail(&self, id: UploadId, nonce: &str) -> Path {
        self.at(&format!("_uploads/{id}/tail/{nonce}"))
    }

    pub fn health_probe(&self) -> Path {
        self.at(&format!("_health/{}", UploadId::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_prefix() {
        let d = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let k = Keys::new("reg/prod".into());
        assert_eq!(
            k.blob(&d).as_ref(),
            format!("reg/prod/blobs/sha256/ab/{}", "ab".repeat(32))
        );
        let repo = RepoName::parse("team/app").unwrap();
        let tag = Tag::parse("v1.0").unwrap();
        assert_eq!(
            k.tag(&repo, &tag).as_ref(),
            "reg/prod/repositories/team/app/_manifests/tags/v1.0"
        );
        assert_eq!(Keys::new(String::new()).uploads().as_ref(), "_uploads");
    }
}
