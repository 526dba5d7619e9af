//! Read operations for people browsing a registry (the web UI): repositories with their tag
//! counts, a repository's tags with what each points at, and one image taken apart
//! (manifest, index platforms, layers, config, referrers). Plus the UI's deletes, which go
//! through the registry's own delete so its manifest cache stays true.
//!
//! Everything here reads through [`Storage`](crate::registry::storage::Storage) and
//! [`manifest`](crate::registry::manifest); nothing is written. Work is bounded by what one
//! page shows: a listing of 10,000 repositories takes the names from the repository index
//! (`catalog.rs`) and asks storage at most for the figures of one page.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::catalog::RepoStats;
use super::Caller;
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::manifest::media_type_of;
use crate::registry::reference::{Digest, Reference, RepoName, Tag};
use crate::registry::storage::LinkKind;
use crate::registry::Registry;

/// How many storage reads one page runs at once (one tag or repository each).
const CONCURRENT_READS: usize = 8;
/// Referrers of referrers are followed this deep, no further (signatures of SBOMs).
const REFERRER_DEPTH: usize = 3;

/// One page of a sorted list, and how many entries the whole list has.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: usize,
    /// The zero-based page number shown.
    pub page: usize,
    pub per_page: usize,
}

impl<T> Page<T> {
    pub fn pages(&self) -> usize {
        self.total.div_ceil(self.per_page.max(1)).max(1)
    }
}

/// A repository as the listing shows it.
#[derive(Debug)]
pub struct RepoSummary {
    pub name: String,
    /// Tag count, size and last push, from the repository index.
    pub figures: Arc<RepoStats>,
}

/// Repositories `visible` allows whose name contains `query` (case-insensitive), sorted,
/// page `page` of `per_page`. Names and figures come from the repository index
/// (`catalog.rs`), so storage is read only for what the index does not hold yet.
///
/// `None` when the names are not known within `wait`: only on the first view after the
/// first start on a root (nothing saved), while the walk of storage runs on without it.
pub async fn repositories(
    registry: &Registry,
    visible: &(dyn Fn(&str) -> bool + Send + Sync),
    query: &str,
    (page, per_page): (usize, usize),
    wait: Duration,
) -> ApiResult<Option<Page<RepoSummary>>> {
    let query = query.trim().to_lowercase();
    let (catalog, storage) = (registry.service().catalog(), registry.storage());
    let Ok(all) = tokio::time::timeout(wait, catalog.names(storage)).await else {
        return Ok(None);
    };
    let all = all?;
    let mut total = 0;
    let mut shown = Vec::with_capacity(per_page);
    for name in all.iter() {
        if !(name.as_str().contains(&query) && visible(name.as_str())) {
            continue;
        }
        if total >= page * per_page && shown.len() < per_page {
            shown.push(name.clone());
        }
        total += 1;
    }
    let figures = catalog.figures(storage, &shown).await?;
    let items = shown
        .into_iter()
        .zip(figures)
        .map(|(name, figures)| RepoSummary {
            name: name.as_str().to_owned(),
            figures,
        })
        .collect();
    Ok(Some(Page {
        items,
        total,
        page,
        per_page,
    }))
}

/// A tag as a repository's page shows it.
#[derive(Debug)]
pub struct TagRow {
    pub tag: String,
    pub digest: String,
    pub media_type: String,
    /// The manifest, its config and layers; for an index, the index itself plus each
    /// child manifest's own size (their layers are on the image pages).
    pub size: u64,
    /// The config's `created`, as the image says (not verified by anyone).
    pub created: Option<String>,
    /// When the tag was last pushed: its link's write time in storage (registry:2's layout
    /// has no other record, and this one dates registry:2's pushes too).
    pub pushed: Option<SystemTime>,
    /// `os/architecture[/variant]` of an index's images, or of the image itself.
    pub platforms: Vec<String>,
}

/// The tags of `repo`, page `page` of `per_page`; `None` when the repository is unknown.
pub async fn tags(
    registry: &Registry,
    repo: &RepoName,
    page: usize,
    per_page: usize,
) -> ApiResult<Option<Page<TagRow>>> {
    let Some(all) = registry.storage().list_tags(repo).await? else {
        return Ok(None);
    };
    let total = all.len();
    let shown = all.into_iter().skip(page * per_page).take(per_page);
    let rows = futures_util::stream::iter(shown)
        .map(|tag| async move { tag_row(registry, repo, tag).await })
        .buffered(CONCURRENT_READS)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Some(Page {
        items: rows.into_iter().flatten().collect(),
        total,
        page,
        per_page,
    }))
}

/// One tag's row; `None` when it vanished (deleted) since the listing.
async fn tag_row(registry: &Registry, repo: &RepoName, tag: Tag) -> ApiResult<Option<TagRow>> {
    let Some((digest, pushed)) = registry.storage().read_tag_dated(repo, &tag).await? else {
        return Ok(None);
    };
    let Some(m) = read_manifest(registry, repo, &Reference::Digest(digest)).await? else {
        return Ok(None);
    };
    let config = match &m.body {
        Body::Image { config, .. } => read_config(registry, config).await?,
        _ => None,
    };
    let platforms = match (&m.body, &config) {
        (Body::Index { manifests }, _) => manifests.iter().filter_map(|c| c.platform()).collect(),
        (_, Some(c)) => c.platform().into_iter().collect(),
        _ => Vec::new(),
    };
    Ok(Some(TagRow {
        tag: tag.as_str().to_owned(),
        digest: m.digest.to_string(),
        media_type: m.media_type.clone(),
        size: m.total_size(),
        created: config.and_then(|c| c.created),
        pushed,
        platforms,
    }))
}

/// A descriptor as the pages show it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    pub platform: Option<Platform>,
    pub artifact_type: Option<String>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Descriptor {
    fn platform(&self) -> Option<String> {
        self.platform.as_ref().map(Platform::to_string)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// What a manifest holds, as far as the pages care.
#[derive(Debug)]
pub enum Body {
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    Index {
        manifests: Vec<Descriptor>,
    },
    /// Not something wharf could parse (it was accepted when pushed, so rare).
    Unknown,
}

/// A stored manifest with its parsed shape.
#[derive(Debug)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub raw: Bytes,
    pub body: Body,
    pub subject: Option<Descriptor>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl StoredManifest {
    fn total_size(&self) -> u64 {
        let own = self.raw.len() as u64;
        match &self.body {
            Body::Image { config, layers } => {
                own + config.size + layers.iter().map(|l| l.size).sum::<u64>()
            }
            Body::Index { manifests } => own + manifests.iter().map(|m| m.size).sum::<u64>(),
            Body::Unknown => own,
        }
    }
}

/// The raw shape shared by image manifests and indexes; fields a kind lacks stay empty.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct RawManifest {
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    pub manifests: Option<Vec<Descriptor>>,
    pub subject: Option<Descriptor>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// The manifest `reference` names in `repo`, or `None`: the same lookup as a pull (tag,
/// then the repository's link, then the bytes), without the cache.
pub async fn read_manifest(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
) -> ApiResult<Option<StoredManifest>> {
    let storage = registry.storage();
    let digest = match reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(t) => match storage.read_tag(repo, t).await? {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    if !storage.is_linked(repo, LinkKind::Manifest, &digest).await? {
        return Ok(None);
    }
    let Some(raw) = storage.read_small_blob(&digest).await? else {
        return Ok(None);
    };
    // Derived from the bytes, as the pull path does; a manifest it cannot place (accepted
    // long ago, say) is shown raw with what its JSON claims.
    let media_type = match media_type_of(&raw) {
        Ok(m) => m.to_owned(),
        Err(_) => claimed_media_type(&raw),
    };
    let parsed: RawManifest = serde_json::from_slice(&raw).unwrap_or_default();
    let body = match (parsed.config, parsed.manifests) {
        (Some(config), _) => Body::Image {
            config,
            layers: parsed.layers,
        },
        (None, Some(manifests)) => Body::Index { manifests },
        (None, None) => Body::Unknown,
    };
    Ok(Some(StoredManifest {
        digest,
        media_type,
        raw,
        body,
        subject: parsed.subject,
        annotations: parsed.annotations,
    }))
}

/// The `mediaType` a manifest's JSON names, or "unknown".
fn claimed_media_type(raw: &[u8]) -> String {
    serde_json::from_slice::<Value>(raw)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// What an image's config says, as far as the pages show it. Docker and OCI configs share
/// these names.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    pub created: Option<String>,
    pub author: Option<String>,
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
    pub config: RunConfig,
    pub history: Vec<History>,
}

impl ImageConfig {
    fn platform(&self) -> Option<String> {
        (!self.os.is_empty()).then(|| {
            Platform {
                os: self.os.clone(),
                architecture: self.architecture.clone(),
                variant: self.variant.clone(),
            }
            .to_string()
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RunConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: Option<std::collections::BTreeMap<String, String>>,
    pub exposed_ports: Option<std::collections::BTreeMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct History {
    pub created: Option<String>,
    pub created_by: Option<String>,
    pub comment: Option<String>,
    pub empty_layer: bool,
}

/// Reads and parses a config blob, if it is small enough to be a config (the manifest
/// limit) and is JSON of that shape; an artifact's config may be anything.
async fn read_config(registry: &Registry, config: &Descriptor) -> ApiResult<Option<ImageConfig>> {
    let Ok(digest) = Digest::parse(&config.digest) else {
        return Ok(None);
    };
    let storage = registry.storage();
    match storage.blob_size(&digest).await? {
        Some(size) if size <= registry.options().max_manifest_bytes => {}
        _ => return Ok(None),
    }
    let bytes = storage.read_small_blob(&digest).await?;
    Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
}

/// A manifest that refers to another (a signature, an SBOM), with its own referrers.
#[derive(Debug)]
pub struct Referrer {
    pub descriptor: Descriptor,
    pub children: Vec<Referrer>,
}

/// Everything the image page shows.
#[derive(Debug)]
pub struct Image {
    pub manifest: StoredManifest,
    pub config: Option<ImageConfig>,
    pub referrers: Vec<Referrer>,
    /// Tags of the repository that point at this manifest.
    pub tags: Vec<String>,
}

/// The image `reference` names in `repo`, or `None` when there is none.
pub async fn image(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
) -> ApiResult<Option<Image>> {
    let Some(manifest) = read_manifest(registry, repo, reference).await? else {
        return Ok(None);
    };
    let config = match &manifest.body {
        Body::Image { config, .. } => read_config(registry, config).await?,
        _ => None,
    };
    let referrers = referrer_tree(registry, repo, &manifest.digest, REFERRER_DEPTH).await?;
    let tags = tags_of(registry, repo, &manifest.digest).await?;
    Ok(Some(Image {
        manifest,
        config,
        referrers,
        tags,
    }))
}

/// The referrers of `subject`, and theirs, `depth` levels deep.
async fn referrer_tree(
    registry: &Registry,
    repo: &RepoName,
    subject: &Digest,
    depth: usize,
) -> ApiResult<Vec<Referrer>> {
    let mut out = Vec::new();
    if depth == 0 {
        return Ok(out);
    }
    for raw in registry.storage().list_referrers(repo, subject).await? {
        let Ok(descriptor) = serde_json::from_slice::<Descriptor>(&raw) else {
            continue;
        };
        let children = match Digest::parse(&descriptor.digest) {
            Ok(d) => Box::pin(referrer_tree(registry, repo, &d, depth - 1)).await?,
            Err(_) => Vec::new(),
        };
        out.push(Referrer {
            descriptor,
            children,
        });
    }
    Ok(out)
}

/// The tags of `repo` that point at `digest`.
pub async fn tags_of(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
) -> ApiResult<Vec<String>> {
    let storage = registry.storage();
    let all = storage.list_tags(repo).await?.unwrap_or_default();
    let found = futures_util::stream::iter(all)
        .map(|tag| async move {
            let at = storage.read_tag(repo, &tag).await?;
            ApiResult::Ok((at.as_ref() == Some(digest)).then(|| tag.as_str().to_owned()))
        })
        .buffered(CONCURRENT_READS)
        .collect::<Vec<_>>()
        .await;
    Ok(found
        .into_iter()
        .collect::<ApiResult<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect())
}

/// Deletes a tag, or a manifest with its tags, through the service's delete (as
/// `DELETE /v2/<repo>/manifests/<ref>` does): the manifest cache forgets it and each
/// removal is announced as an event with `caller` as its actor. `ManifestUnknown` when it
/// was not there.
pub async fn delete(
    registry: &Registry,
    caller: &Caller,
    repo: &RepoName,
    reference: &Reference,
) -> ApiResult<()> {
    registry
        .service()
        .delete_manifest(caller, repo, reference)
        .await
}

/// Deletes `repo` whole through the service (one repository event, `caller` its actor;
/// refused while an immutable tag is in it).
pub async fn delete_repository(
    registry: &Registry,
    caller: &Caller,
    repo: &RepoName,
) -> ApiResult<()> {
    let service = registry.service();
    service.delete_repository(caller, repo).await.map(drop)
}

/// `repo`'s tag count, size and last push, from the repository index.
pub async fn repository_figures(registry: &Registry, repo: &RepoName) -> ApiResult<Arc<RepoStats>> {
    let catalog = registry.service().catalog();
    let figures = catalog
        .figures(registry.storage(), std::slice::from_ref(repo))
        .await?;
    Ok(figures.into_iter().next().unwrap_or_default())
}

/// Parses the UI's `repo` and `reference` strings the way the API does.
pub fn parse_target(repo: &str, reference: &str) -> ApiResult<(RepoName, Reference)> {
    let repo = RepoName::parse(repo).map_err(|why| ApiError::new(Code::NameInvalid, why))?;
    let reference = Reference::parse(reference)
        .map_err(|why| ApiError::new(Code::ManifestUnknown, format!("{reference:?}: {why}")))?;
    Ok((repo, reference))
}
