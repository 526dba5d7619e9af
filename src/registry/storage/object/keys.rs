//! Where each thing lives in the bucket: registry:2's layout (see the filesystem backend's
//! `layout.rs`), as its s3 driver maps it to keys: `<prefix>/docker/registry/v2/...`,
//! where the prefix is registry:2's `rootdirectory` without its slashes. wharf's own state
//! lives beside it under `<prefix>/wharf/`, which registry:2 never lists. Every key is
//! built from validated names, tags, digests and upload ids, so none can leave the prefix.
//!
//! ```text
//! docker/registry/v2/blobs/<alg>/<hex[..2]>/<hex>/data              blob bytes
//! docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link  blob membership
//! .../<name>/_manifests/revisions/<alg>/<hex>/link                 manifest membership
//! .../<name>/_manifests/tags/<tag>/current/link                    tag -> digest
//! .../<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link          digests the tag has had
//! wharf/referrers/<name>/_subjects/<alg>/<hex>/<alg>-<hex>         referrer descriptor JSON
//! wharf/uploads/<uuid>/state                                       session state (JSON, see uploads.rs)
//! wharf/uploads/<uuid>/data                                        multipart upload target
//! wharf/uploads/<uuid>/tail/<nonce>                                bytes not yet in a part
//! wharf/health/<uuid>                                              write probes
//! wharf/records/<key>                                               small records (`records.rs`: the notifications outbox)
//! ```

use object_store::path::Path;

use crate::registry::reference::{Digest, RepoName, Tag};
use crate::registry::storage::{LinkKind, UploadId};

/// registry:2's data under the prefix.
const V2: &str = "docker/registry/v2";

#[derive(Clone, Debug)]
pub struct Keys {
    /// Empty, or the prefix without a trailing `/`.
    prefix: String,
    /// The prefix as the store lists it: `Path` percent-encodes characters a key may not
    /// hold (a `%` in the prefix comes back as `%25`), so listings are matched on this.
    listed_prefix: String,
}

/// `<alg>/<hex>`: how registry:2 names a digest under `_layers`, `revisions` and `index`.
fn digest_dir(d: &Digest) -> String {
    format!("{}/{}", d.algorithm().as_str(), d.hex())
}

impl Keys {
    pub fn new(prefix: String) -> Self {
        let listed_prefix = Path::from(prefix.as_str()).as_ref().to_owned();
        Self {
            prefix,
            listed_prefix,
        }
    }

    /// A key from a relative path (already made of valid segments).
    pub fn at(&self, rel: &str) -> Path {
        match self.prefix.is_empty() {
            true => Path::from(rel),
            false => Path::from(format!("{}/{rel}", self.prefix)),
        }
    }

    /// Where every blob is, for listing them.
    pub fn blobs(&self) -> Path {
        self.at(&format!("{V2}/blobs"))
    }

    /// A listed key relative to `docker/registry/v2/`; `None` for a key outside it.
    pub fn under_v2<'a>(&self, key: &'a Path) -> Option<&'a str> {
        let key = key.as_ref();
        let key = match self.prefix.is_empty() {
            true => key,
            false => key
                .strip_prefix(self.listed_prefix.as_str())?
                .strip_prefix('/')?,
        };
        key.strip_prefix(V2)?.strip_prefix('/')
    }

    /// One repository's links of `kind`, for listing them.
    pub fn links(&self, repo: &RepoName, kind: LinkKind) -> Path {
        let base = match kind {
            LinkKind::Layer => "_layers",
            LinkKind::Manifest => "_manifests/revisions",
        };
        self.at(&format!("{V2}/repositories/{repo}/{base}"))
    }

    pub fn blob(&self, d: &Digest) -> Path {
        self.at(&format!(
            "{V2}/blobs/{}/{}/{}/data",
            d.algorithm().as_str(),
            &d.hex()[..2],
            d.hex()
        ))
    }

    pub fn repositories(&self) -> Path {
        self.at(&format!("{V2}/repositories"))
    }

    /// A repository, or (for `""`) the root of all of them.
    pub fn repo_named(&self, name: &str) -> Path {
        match name.is_empty() {
            true => self.repositories(),
            false => self.at(&format!("{V2}/repositories/{name}")),
        }
    }

    pub fn repo(&self, repo: &RepoName) -> Path {
        self.repo_named(repo.as_str())
    }

    /// One `_`-prefixed part of a repository (`_manifests`, `_layers`, `_uploads`): a
    /// repository is its parts, since its name's prefix may hold others (`team/app`).
    pub fn repo_part(&self, repo: &RepoName, part: &str) -> Path {
        self.at(&format!("{V2}/repositories/{repo}/{part}"))
    }

    /// Every referrer record of a repository.
    pub fn repo_referrers(&self, repo: &RepoName) -> Path {
        self.at(&format!("wharf/referrers/{repo}/_subjects"))
    }

    pub fn link(&self, repo: &RepoName, kind: LinkKind, d: &Digest) -> Path {
        Path::from(format!("{}/{}/link", self.links(repo, kind), digest_dir(d)))
    }

    pub fn tags(&self, repo: &RepoName) -> Path {
        self.at(&format!("{V2}/repositories/{repo}/_manifests/tags"))
    }

    /// Everything of one tag: registry:2 deletes a tag by deleting this whole prefix.
    pub fn tag_dir(&self, repo: &RepoName, tag: &Tag) -> Path {
        self.at(&format!("{V2}/repositories/{repo}/_manifests/tags/{tag}"))
    }

    /// The link naming the digest the tag points at.
    pub fn tag(&self, repo: &RepoName, tag: &Tag) -> Path {
        self.at(&format!(
            "{V2}/repositories/{repo}/_manifests/tags/{tag}/current/link"
        ))
    }

    /// The tag's record of having pointed at `d`.
    pub fn tag_index(&self, repo: &RepoName, tag: &Tag, d: &Digest) -> Path {
        self.at(&format!(
            "{V2}/repositories/{repo}/_manifests/tags/{tag}/index/{}/link",
            digest_dir(d)
        ))
    }

    pub fn referrers(&self, repo: &RepoName, subject: &Digest) -> Path {
        self.at(&format!(
            "wharf/referrers/{repo}/_subjects/{}",
            digest_dir(subject)
        ))
    }

    pub fn referrer(&self, repo: &RepoName, subject: &Digest, referrer: &Digest) -> Path {
        self.at(&format!(
            "wharf/referrers/{repo}/_subjects/{}/{}-{}",
            digest_dir(subject),
            referrer.algorithm().as_str(),
            referrer.hex()
        ))
    }

    pub fn uploads(&self) -> Path {
        self.at("wharf/uploads")
    }

    pub fn upload_dir(&self, id: UploadId) -> Path {
        self.at(&format!("wharf/uploads/{id}"))
    }

    pub fn upload_state(&self, id: UploadId) -> Path {
        self.at(&format!("wharf/uploads/{id}/state"))
    }

    pub fn upload_data(&self, id: UploadId) -> Path {
        self.at(&format!("wharf/uploads/{id}/data"))
    }

    pub fn upload_tail(&self, id: UploadId, nonce: &str) -> Path {
        self.at(&format!("wharf/uploads/{id}/tail/{nonce}"))
    }

    pub fn health_probe(&self) -> Path {
        self.at(&format!("wharf/health/{}", UploadId::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `registry2_layout` fuzz target: a prefix holding a character a key
    /// may not (here `%`) is listed back encoded, and every listed key must still be
    /// recognised as under it (or the collector and usage would see an empty store).
    #[test]
    fn a_prefix_the_store_encodes_still_matches_its_listings() {
        let k = Keys::new("reg%EF/prod".into());
        let hex = "ab".repeat(32);
        let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
        let blob = k.blob(&d);
        assert!(blob.as_ref().starts_with("reg%25EF/prod/"), "{blob}");
        assert_eq!(
            k.under_v2(&blob),
            Some(format!("blobs/sha256/ab/{hex}/data").as_str())
        );
    }

    /// The keys registry:2's s3 driver uses with `rootdirectory: /reg/prod`.
    #[test]
    fn keys_are_registry2s_under_the_prefix() {
        let hex = "ab".repeat(32);
        let d = Digest::parse(&format!("sha256:{hex}")).unwrap();
        let k = Keys::new("reg/prod".into());
        let v2 = "reg/prod/docker/registry/v2";
        assert_eq!(
            k.blob(&d).as_ref(),
            format!("{v2}/blobs/sha256/ab/{hex}/data")
        );
        let repo = RepoName::parse("team/app").unwrap();
        let tag = Tag::parse("v1.0").unwrap();
        let r = format!("{v2}/repositories/team/app");
        assert_eq!(
            k.tag(&repo, &tag).as_ref(),
            format!("{r}/_manifests/tags/v1.0/current/link")
        );
        assert_eq!(
            k.tag_index(&repo, &tag, &d).as_ref(),
            format!("{r}/_manifests/tags/v1.0/index/sha256/{hex}/link")
        );
        assert_eq!(
            k.link(&repo, LinkKind::Layer, &d).as_ref(),
            format!("{r}/_layers/sha256/{hex}/link")
        );
        assert_eq!(
            k.link(&repo, LinkKind::Manifest, &d).as_ref(),
            format!("{r}/_manifests/revisions/sha256/{hex}/link")
        );
        assert_eq!(Keys::new(String::new()).uploads().as_ref(), "wharf/uploads");
        let listed = k.blob(&d);
        assert_eq!(
            k.under_v2(&listed),
            Some(format!("blobs/sha256/ab/{hex}/data").as_str())
        );
        assert_eq!(Keys::new("reg".into()).under_v2(&listed), None);
        assert!(k
            .health_probe()
            .as_ref()
            .starts_with("reg/prod/wharf/health/"));
    }
}
