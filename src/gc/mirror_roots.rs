//! The pull-through cache's policy (`cache_max_age`, `cache_max_size` on a `mirror` route):
//! which cached images stay GC roots. Run before the mark, like retention: images the
//! policy no longer keeps are deleted through the repository service (their tags, then
//! the manifest, each announced as a delete), so the mark no longer reaches them and the
//! sweep frees their blobs after the grace period (their layer links stay, keeping
//! nothing). A blob a kept manifest of another repository (local or cached) names stays
//! live: that is the mark's own guarantee, nothing here weakens it.
//!
//! An image is a manifest revision in a cached repository (`<ns>/...`). Its last pull is
//! the latest pull record (`mirror::pulls`), or, with none, when it was fetched (its
//! revision link's write time). With `cache_max_age`, images not pulled for that long
//! go; then, with `cache_max_size`, the least recently pulled go until the distinct blobs
//! (and manifests) the remaining images name fit. Several routes mirroring one namespace
//! on one root share its cache: the strictest of their limits applies.
//!
//! Between the plan and a deletion a client may pull: each image's pull records are read
//! again right before it goes, and one pulled since the plan stays.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::retention::Outcome;
use crate::config::{CachePolicy, Config, RouteTarget};
use crate::mirror::pulls;
use crate::registry::error::{ApiResult, Code};
use crate::registry::manifest::Manifest;
use crate::registry::reference::{Digest, Reference, RepoName};
use crate::registry::service::{Caller, Service};
use crate::registry::storage::{LinkKind, RecordKey};

/// Pull records of images that no longer exist are removed once this old.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// One cached namespace (`docker.io/`) and what its cache keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsPolicy {
    pub prefix: String,
    pub policy: CachePolicy,
}

/// The policies of the mirror routes on `root` that set one.
pub fn policies(config: &Config, root: &Path) -> Vec<NsPolicy> {
    let mut out: Vec<NsPolicy> = Vec::new();
    let mirrors = config.servers.iter().flat_map(|s| &s.routes);
    for m in mirrors.filter_map(|r| match &r.target {
        RouteTarget::Mirror(m) if m.root == root => Some(m),
        _ => None,
    }) {
        let (age, size) = (m.cache.max_age, m.cache.max_size);
        if age.is_none() && size.is_none() {
            continue;
        }
        let prefix = crate::mirror::cache_namespace(&m.ns);
        match out.iter_mut().find(|p| p.prefix == prefix) {
            Some(p) => {
                p.policy.max_age = stricter(p.policy.max_age, age);
                p.policy.max_size = stricter(p.policy.max_size, size);
            }
            None => out.push(NsPolicy {
                prefix,
                policy: m.cache,
            }),
        }
    }
    out
}

fn stricter<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Why an image goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Not pulled for `cache_max_age`.
    Age,
    /// Among the least recently pulled while the cache was over `cache_max_size`.
    Size,
}

/// A cached image as the planner sees it.
#[derive(Clone, Debug)]
pub struct Image {
    pub repo: RepoName,
    pub digest: Digest,
    pub last_pulled: SystemTime,
    /// The manifest itself and every blob it names, with sizes (only read with a size cap).
    pub blobs: Vec<(Digest, u64)>,
}

/// Which images go, and why (indexes into `images`). Pure: `now` is given.
pub fn plan(images: &[Image], policy: &CachePolicy, now: SystemTime) -> Vec<(usize, Why)> {
    let mut out = Vec::new();
    let mut kept = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let idle = now.duration_since(image.last_pulled).unwrap_or_default();
        match policy.max_age {
            Some(age) if idle >= age => out.push((i, Why::Age)),
            _ => kept.push(i),
        }
    }
    let Some(cap) = policy.max_size else {
        return out;
    };
    // Each distinct blob counts once, however many kept images name it.
    let mut named: HashMap<&Digest, (u64, usize)> = HashMap::new();
    let mut total = 0u64;
    for &i in &kept {
        for (digest, size) in distinct(&images[i].blobs) {
            let entry = named.entry(digest).or_insert((size, 0));
            if entry.1 == 0 {
                total = total.saturating_add(size);
            }
            entry.1 += 1;
        }
    }
    kept.sort_by(|&a, &b| {
        let (a, b) = (&images[a], &images[b]);
        (a.last_pulled, &a.repo, &a.digest).cmp(&(b.last_pulled, &b.repo, &b.digest))
    });
    for i in kept {
        if total <= cap {
            break;
        }
        for (digest, size) in distinct(&images[i].blobs) {
            if let Some(entry) = named.get_mut(digest) {
                entry.1 -= 1;
                if entry.1 == 0 {
                    total -= size;
                }
            }
        }
        out.push((i, Why::Size));
    }
    out
}

fn distinct(blobs: &[(Digest, u64)]) -> impl Iterator<Item = (&Digest, u64)> {
    let mut seen = HashSet::new();
    blobs
        .iter()
        .filter(move |(d, _)| seen.insert(d))
        .map(|(d, s)| (d, *s))
}

/// One image the policy evicted (or, dry, would).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    pub repo: RepoName,
    pub digest: Digest,
    pub last_pulled: SystemTime,
    pub why: Why,
    pub outcome: Outcome,
}

/// Carries out `policies` on the service's storage as of `now`; with `dry_run`, plans only.
pub async fn evict(
    service: &Service,
    policies: &[NsPolicy],
    now: SystemTime,
    dry_run: bool,
) -> ApiResult<Vec<Eviction>> {
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    let storage = service.storage();
    let records = pulls::list_all(&**storage).await?;
    let mut pulled: HashMap<(RepoName, Digest), SystemTime> = HashMap::new();
    for p in &records {
        let at = pulled
            .entry((p.repo.clone(), p.digest.clone()))
            .or_insert(p.at);
        *at = (*at).max(p.at);
    }
    let mut images: Vec<(usize, Image)> = Vec::new();
    for link in storage.list_all_revisions().await? {
        let Some(ns) = policies
            .iter()
            .position(|p| link.repo.as_str().starts_with(&p.prefix))
        else {
            continue;
        };
        if link.kind != LinkKind::Manifest {
            continue;
        }
        let id = (link.repo.clone(), link.digest.clone());
        let last = pulled.get(&id).copied().unwrap_or(link.modified);
        let (repo, digest) = id;
        images.push((
            ns,
            Image {
                repo,
                digest,
                last_pulled: last.max(link.modified),
                blobs: Vec::new(),
            },
        ));
    }
    let mut out = Vec::new();
    for (ns, p) in policies.iter().enumerate() {
        let mut mine: Vec<Image> = images
            .iter()
            .filter(|(n, _)| *n == ns)
            .map(|(_, i)| i.clone())
            .collect();
        if p.policy.max_size.is_some() {
            for image in &mut mine {
                image.blobs = named_blobs(service, &image.digest).await?;
            }
        }
        for (i, why) in plan(&mine, &p.policy, now) {
            let image = &mine[i];
            let outcome = match dry_run {
                true => Outcome::Planned,
                false => evict_one(service, image).await,
            };
            out.push(Eviction {
                repo: image.repo.clone(),
                digest: image.digest.clone(),
                last_pulled: image.last_pulled,
                why,
                outcome,
            });
        }
    }
    if !dry_run {
        let present: HashSet<(&RepoName, &Digest)> =
            images.iter().map(|(_, i)| (&i.repo, &i.digest)).collect();
        let gone: HashSet<(&RepoName, &Digest)> = out
            .iter()
            .filter(|e| e.outcome == Outcome::Deleted)
            .map(|e| (&e.repo, &e.digest))
            .collect();
        let stale = records.iter().filter(|r| {
            let id = (&r.repo, &r.digest);
            let latest = pulled.get(&(r.repo.clone(), r.digest.clone())) == Some(&r.at);
            let orphan =
                !present.contains(&id) && now.duration_since(r.at).unwrap_or_default() > ORPHAN_AGE;
            !latest || gone.contains(&id) || orphan
        });
        forget(service, stale.map(|r| &r.key)).await;
    }
    Ok(out)
}

/// The manifest and what it names, with sizes. One that cannot be read counts as its own
/// bytes (it is evicted like any other image; the mark decides about its blobs).
async fn named_blobs(service: &Service, digest: &Digest) -> ApiResult<Vec<(Digest, u64)>> {
    let Some(bytes) = service.storage().read_small_blob(digest).await? else {
        return Ok(Vec::new());
    };
    let mut blobs = vec![(digest.clone(), bytes.len() as u64)];
    if let Ok(m) = Manifest::parse(&bytes, None) {
        blobs.extend(m.blobs);
    }
    Ok(blobs)
}

/// Deletes one image (its tags, then the manifest) unless it was pulled since the plan.
async fn evict_one(service: &Service, image: &Image) -> Outcome {
    let storage = service.storage();
    match pulls::latest(&**storage, &image.repo, &image.digest).await {
        Ok(Some(at)) if at > image.last_pulled => {
            return Outcome::Skipped("pulled since the plan".into())
        }
        Ok(_) => {}
        Err(e) => return Outcome::Skipped(crate::registry::error::ApiError::from(e).message),
    }
    let caller = Caller::job("wharf gc (mirror cache policy)");
    let reference = Reference::Digest(image.digest.clone());
    match service
        .delete_manifest(&caller, &image.repo, &reference)
        .await
    {
        Ok(()) => Outcome::Deleted,
        Err(e) if e.code == Code::ManifestUnknown => Outcome::Skipped("gone already".into()),
        Err(e) => Outcome::Skipped(e.message),
    }
}

/// Removes pull records nothing needs (superseded, or of images gone); failures only log.
async fn forget(service: &Service, keys: impl Iterator<Item = &RecordKey>) {
    for key in keys {
        if let Err(error) = service.storage().delete_record(key).await {
            tracing::warn!(%key, %error, "mirror cache policy: removing a pull record failed");
        }
    }
}

#[cfg(test)]
#[path = "mirror_roots_tests.rs"]
mod tests;
