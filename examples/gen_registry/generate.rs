//! Writes a registry straight onto disk in registry:2's layout (distribution's
//! `registry/storage/paths.go`), for the garbage-collection benchmark (`scripts/bench
//! --gc-only`) and its test (`tests/it/gen_registry.rs`, which includes this file).
//!
//! Pushing 20,000 blobs through the API would take most of an hour; writing the files takes
//! seconds. What is written is what registry:2's own pushes leave behind:
//!
//! - every blob under `blobs/sha256/<2 hex>/<hex>/data` (manifests included), with the
//!   digest of its bytes;
//! - live images: an OCI or Docker schema 2 image manifest (config, layers of varied small
//!   sizes, some base layers shared across repositories), its config and layers linked in
//!   the repository's `_layers`, the manifest in `_manifests/revisions`, and most tagged
//!   (`_manifests/tags/<tag>/current/link` and `index/`); about one in ten is untagged
//!   (registry:2 and wharf both keep those by default);
//! - garbage, the half of the blobs nothing references: images whose manifest was deleted
//!   (registry:2's delete removes the revision and its tags, and leaves the blobs and their
//!   layer links), uploads no manifest ever named (a layer link only), and blobs no
//!   repository links at all (what deleting a repository leaves).
//!
//! The same seed gives the same bytes. Every file is dated `age` ago, so the garbage is
//! older than any grace period a collector waits for.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub repos: usize,
    /// Every blob under `blobs/`, manifests included; half are garbage.
    pub blobs: usize,
    pub seed: u64,
    /// How long ago every file was written.
    pub age: Duration,
}

/// A blob written: `sha256:<hex>` and its size.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
}

/// What was written.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub repos: Vec<String>,
    /// Every tag: repository, tag, manifest digest.
    pub tags: Vec<(String, String, String)>,
    /// Untagged manifests that stay (repository, digest).
    pub untagged: Vec<(String, String)>,
    /// Blobs something references.
    pub live: Vec<Blob>,
    /// Blobs nothing references: what a full collection deletes (sorted by digest).
    pub garbage: Vec<Blob>,
}

impl Summary {
    pub fn bytes(blobs: &[Blob]) -> u64 {
        blobs.iter().map(|b| b.size).sum()
    }
}

/// splitmix64: a tiny generator whose sequence never changes with a crate's version, so a
/// seed means the same data for ever.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A descriptor as a manifest names it.
#[derive(Clone)]
struct Desc {
    media_type: &'static str,
    blob: Blob,
}

struct Gen {
    rng: Rng,
    v2: PathBuf,
    mtime: SystemTime,
    /// Images made so far: each config says its number, so no two are the same blob.
    images: usize,
    summary: Summary,
}

/// Writes the registry under `root` (which must not hold one yet) and says what it wrote.
pub fn generate(root: &Path, spec: &Spec) -> io::Result<Summary> {
    let v2 = root.join("docker/registry/v2");
    if v2.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already holds a registry", root.display()),
        ));
    }
    let garbage = spec.blobs / 2;
    let live = spec.blobs - garbage;
    let pool = (live / 20).max(1);
    let plan = plan_images(&mut Rng(spec.seed ^ 0x5eed), live - pool.min(live));
    if plan.len() < spec.repos || spec.repos == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} blobs make {} live images, too few for {} repositories (each needs one): \
                 give more blobs or fewer repositories",
                spec.blobs,
                plan.len(),
                spec.repos
            ),
        ));
    }
    let mut g = Gen {
        rng: Rng(spec.seed),
        v2,
        mtime: SystemTime::now() - spec.age,
        images: 0,
        summary: Summary::default(),
    };
    g.summary.repos = (0..spec.repos).map(repo_name).collect();
    let shared: Vec<Desc> = (0..pool)
        .map(|_| g.layer(true))
        .collect::<io::Result<_>>()?;
    g.live_images(&plan, &shared)?;
    g.garbage(garbage, &shared)?;
    g.summary.live.sort();
    g.summary.garbage.sort();
    Ok(g.summary)
}

fn repo_name(i: usize) -> String {
    format!("team{:02}/app{i:05}", i % 50)
}

/// How many blobs of its own (manifest, config, layers) each live image has: 2 to 5, adding
/// up to exactly `budget`.
fn plan_images(rng: &mut Rng, mut budget: usize) -> Vec<usize> {
    let mut plan = Vec::new();
    while budget > 0 {
        let mut n = (2 + rng.below(4)).min(budget);
        if budget - n < 2 {
            n = budget;
        }
        plan.push(n);
        budget -= n;
    }
    plan
}

impl Gen {
    fn live_images(&mut self, plan: &[usize], shared: &[Desc]) -> io::Result<()> {
        let repos = self.summary.repos.len();
        let mut tags_in_repo = vec![0usize; repos];
        for (i, &own) in plan.iter().enumerate() {
            let r = i % repos;
            let repo = self.summary.repos[r].clone();
            // Every shared layer is used by some image, and every image uses one or two.
            let mut bases: Vec<Desc> = (0..shared.len())
                .filter(|j| j % plan.len() == i)
                .map(|j| shared[j].clone())
                .collect();
            let extra = &shared[self.rng.below(shared.len())];
            let wanted = bases.is_empty() || self.rng.below(2) == 0;
            if wanted && !bases.iter().any(|b| b.blob == extra.blob) {
                bases.push(extra.clone());
            }
            let manifest = self.image(&repo, own, &bases, true)?;
            self.link(&repo, "_manifests/revisions", &manifest.digest)?;
            // The first image of a repository is always `latest`; a tenth of the others
            // stay untagged.
            if i < repos {
                self.tag(&repo, "latest", &manifest.digest)?;
            } else if self.rng.below(10) == 0 {
                self.summary.untagged.push((repo, manifest.digest));
                continue;
            }
            tags_in_repo[r] += 1;
            self.tag(&repo, &format!("v{}", tags_in_repo[r]), &manifest.digest)?;
        }
        Ok(())
    }

    /// `count` blobs nothing references, in three kinds (module docs).
    fn garbage(&mut self, mut count: usize, shared: &[Desc]) -> io::Result<()> {
        let repos = self.summary.repos.len();
        while count > 0 {
            let repo = self.summary.repos[self.rng.below(repos)].clone();
            match self.rng.below(4) {
                0 | 1 if count >= 2 => {
                    let own = (2 + self.rng.below(4)).min(count);
                    let base = [shared[self.rng.below(shared.len())].clone()];
                    self.image(&repo, own, &base, false)?;
                    count -= own;
                }
                2 => {
                    let layer = self.layer(false)?;
                    self.link(&repo, "_layers", &layer.blob.digest)?;
                    count -= 1;
                }
                _ => {
                    self.layer(false)?;
                    count -= 1;
                }
            }
        }
        Ok(())
    }

    /// One image with `own` blobs of its own (manifest, config, `own - 2` layers) plus
    /// `bases`; its config and layers linked in `repo`. Returns the manifest.
    fn image(&mut self, repo: &str, own: usize, bases: &[Desc], live: bool) -> io::Result<Blob> {
        let mut layers = bases.to_vec();
        for _ in 2..own {
            layers.push(self.layer(live)?);
        }
        let oci = self.rng.below(2) == 0;
        self.images += 1;
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.blob.digest.as_str()).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": { "Env": ["PATH=/usr/bin"], "Labels": { "repo": repo, "image": self.images.to_string() } },
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = Desc {
            media_type: if oci {
                "application/vnd.oci.image.config.v1+json"
            } else {
                "application/vnd.docker.container.image.v1+json"
            },
            blob: self.blob(&serde_json::to_vec(&config)?, live)?,
        };
        for d in std::iter::once(&config).chain(&layers) {
            self.link(repo, "_layers", &d.blob.digest)?;
        }
        let descriptor = |d: &Desc| serde_json::json!({ "mediaType": d.media_type, "digest": d.blob.digest, "size": d.blob.size });
        let media_type = if oci {
            "application/vnd.oci.image.manifest.v1+json"
        } else {
            "application/vnd.docker.distribution.manifest.v2+json"
        };
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(&config),
            "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
        });
        self.blob(&serde_json::to_vec_pretty(&manifest)?, live)
    }

    /// A layer of random bytes, from 32 bytes to 16 KiB (more small ones than large).
    fn layer(&mut self, live: bool) -> io::Result<Desc> {
        let scale = 32usize << self.rng.below(10);
        let len = scale + self.rng.below(scale);
        let bytes = self.rng.bytes(len);
        Ok(Desc {
            // Uncompressed, so that a config's diff_ids are the layers' digests.
            media_type: "application/vnd.oci.image.layer.v1.tar",
            blob: self.blob(&bytes, live)?,
        })
    }

    fn blob(&mut self, bytes: &[u8], live: bool) -> io::Result<Blob> {
        let hex = hex::encode(Sha256::digest(bytes));
        let dir = self.v2.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
        // The same bytes twice would be one blob, and the counts would be wrong.
        if dir.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("sha256:{hex} was generated twice"),
            ));
        }
        self.write(&dir, "data", bytes)?;
        let blob = Blob {
            digest: format!("sha256:{hex}"),
            size: bytes.len() as u64,
        };
        match live {
            true => self.summary.live.push(blob.clone()),
            false => self.summary.garbage.push(blob.clone()),
        }
        Ok(blob)
    }

    /// A link file under `repositories/<repo>/<kind>/sha256/<hex>/link`.
    fn link(&self, repo: &str, kind: &str, digest: &str) -> io::Result<()> {
        let hex = digest.trim_start_matches("sha256:");
        let dir = self
            .v2
            .join(format!("repositories/{repo}/{kind}/sha256/{hex}"));
        self.write(&dir, "link", digest.as_bytes())
    }

    fn tag(&mut self, repo: &str, tag: &str, digest: &str) -> io::Result<()> {
        let hex = digest.trim_start_matches("sha256:");
        let tags = format!("repositories/{repo}/_manifests/tags/{tag}");
        self.write(
            &self.v2.join(format!("{tags}/current")),
            "link",
            digest.as_bytes(),
        )?;
        let index = self.v2.join(format!("{tags}/index/sha256/{hex}"));
        self.write(&index, "link", digest.as_bytes())?;
        let entry = (repo.to_owned(), tag.to_owned(), digest.to_owned());
        self.summary.tags.push(entry);
        Ok(())
    }

    fn write(&self, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut file = File::create(dir.join(name))?;
        file.write_all(bytes)?;
        file.set_modified(self.mtime)
    }
}
