//! Carrying out `[[retention]]`: for each repository some policy matches, read its tags
//! (with their last push times, `Storage::list_tags_dated`) and, when a policy deletes
//! untagged manifests, its manifest revisions (push time: the revision link's write time,
//! from one enumeration of every link), plan with the pure [`plan`](super::plan), and
//! delete through the repository service, so every deletion is an event and immutable tags
//! are refused there too.
//!
//! `wharf retention` calls [`run`]; the server is to call it before each scheduled
//! collection on `[gc] interval`, once the collector's scheduler exists (not built yet).
//!
//! Between the plan and a deletion a client may push: a tag is deleted only while it still
//! names the digest planned, and a manifest only while no tag names it; otherwise it is
//! skipped, and the next run plans again.

use std::collections::HashMap;
use std::time::SystemTime;

use super::{plan, ManifestInfo, TagInfo};
use crate::config::RetentionPolicy;
use crate::registry::error::ApiResult;
use crate::registry::manifest::Manifest;
use crate::registry::reference::{Digest, Reference, RepoName, Tag};
use crate::registry::service::{Caller, Service};
use crate::registry::storage::LinkKind;

/// What retention did (or, dry, would do) in one repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoRetention {
    pub repo: RepoName,
    /// Tags first, then untagged manifests.
    pub entries: Vec<Entry>,
}

/// One tag or untagged manifest retention deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The tag, or `None` for an untagged manifest.
    pub tag: Option<Tag>,
    pub digest: Digest,
    pub pushed: SystemTime,
    /// The position of the policy that deletes it in the config's `[[retention]]` list.
    pub rule: usize,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A dry run: nothing was changed.
    Planned,
    Deleted,
    /// Not deleted, and why (moved or tagged since the plan, refused, storage failing).
    Skipped(String),
}

/// Runs the policies over every repository; with `dry_run`, only plans.
pub async fn run(
    service: &Service,
    policies: &[RetentionPolicy],
    dry_run: bool,
) -> ApiResult<Vec<RepoRetention>> {
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    let storage = service.storage();
    let untagged_rules = policies
        .iter()
        .any(|p| p.delete_untagged_older_than.is_some());
    // One enumeration of every revision link, only when some policy looks at untagged manifests.
    let mut revisions: HashMap<RepoName, Vec<(Digest, SystemTime)>> = HashMap::new();
    if untagged_rules {
        for link in storage.list_all_revisions().await? {
            if link.kind == LinkKind::Manifest {
                let entry = revisions.entry(link.repo).or_default();
                entry.push((link.digest, link.modified));
            }
        }
    }
    let caller = Caller::job("wharf retention");
    let mut out = Vec::new();
    for repo in storage.list_repositories().await? {
        if !policies.iter().any(|p| p.repos.matches(repo.as_str())) {
            continue;
        }
        let revs = revisions.remove(&repo).unwrap_or_default();
        let entries = run_repo(service, &caller, policies, &repo, revs, dry_run).await?;
        if !entries.is_empty() {
            out.push(RepoRetention { repo, entries });
        }
    }
    Ok(out)
}

async fn run_repo(
    service: &Service,
    caller: &Caller,
    policies: &[RetentionPolicy],
    repo: &RepoName,
    revisions: Vec<(Digest, SystemTime)>,
    dry_run: bool,
) -> ApiResult<Vec<Entry>> {
    let storage = service.storage();
    let tags: Vec<TagInfo> = storage
        .list_tags_dated(repo)
        .await?
        .into_iter()
        .map(|t| TagInfo {
            name: t.tag.as_str().to_owned(),
            digest: t.digest,
            pushed: t.pushed,
        })
        .collect();
    let mut manifests = Vec::with_capacity(revisions.len());
    for (digest, pushed) in revisions {
        manifests.push(manifest_info(service, repo, digest, pushed).await?);
    }
    let now = SystemTime::now();
    let p = plan(
        policies,
        service.immutable_rules(),
        repo.as_str(),
        &tags,
        &manifests,
        now,
    );
    let mut entries = Vec::new();
    for t in tags.iter().filter(|t| p.tags.contains(&t.name)) {
        let Ok(tag) = Tag::parse(&t.name) else {
            continue;
        };
        let outcome = match dry_run {
            true => Outcome::Planned,
            false => delete_tag(service, caller, repo, &tag, &t.digest).await,
        };
        let rule = p.rules.get(&t.name).copied().unwrap_or_default();
        entries.push(Entry {
            tag: Some(tag),
            digest: t.digest.clone(),
            pushed: t.pushed,
            rule,
            outcome,
        });
    }
    for m in manifests.iter().filter(|m| p.manifests.contains(&m.digest)) {
        let outcome = match dry_run {
            true => Outcome::Planned,
            false => match service
                .delete_untagged_manifest(caller, repo, &m.digest)
                .await
            {
                Ok(true) => Outcome::Deleted,
                Ok(false) => Outcome::Skipped("a tag names it since the plan".into()),
                Err(e) => Outcome::Skipped(e.message),
            },
        };
        let rule = p.rules.get(&m.digest.to_string()).copied();
        entries.push(Entry {
            tag: None,
            digest: m.digest.clone(),
            pushed: m.pushed,
            rule: rule.unwrap_or_default(),
            outcome,
        });
    }
    Ok(entries)
}

/// Deletes `tag` only while it still names `planned` (a push since the plan keeps it).
async fn delete_tag(
    service: &Service,
    caller: &Caller,
    repo: &RepoName,
    tag: &Tag,
    planned: &Digest,
) -> Outcome {
    match service.storage().read_tag(repo, tag).await {
        Ok(Some(now)) if now == *planned => {}
        Ok(_) => return Outcome::Skipped("pushed or deleted since the plan".into()),
        Err(e) => return Outcome::Skipped(crate::registry::error::ApiError::from(e).message),
    }
    let reference = Reference::Tag(tag.clone());
    match service.delete_manifest(caller, repo, &reference).await {
        Ok(()) => Outcome::Deleted,
        Err(e) => Outcome::Skipped(e.message),
    }
}

/// A revision as the planner sees it: its index children and its subject. One that cannot
/// be read is planned as a leaf (it names nothing the planner must keep for it).
async fn manifest_info(
    service: &Service,
    repo: &RepoName,
    digest: Digest,
    pushed: SystemTime,
) -> ApiResult<ManifestInfo> {
    let bytes = service.storage().read_small_blob(&digest).await?;
    let parsed = bytes.and_then(|b| Manifest::parse(&b, None).ok());
    if parsed.is_none() {
        tracing::warn!(%repo, %digest, "retention: a manifest revision cannot be read");
    }
    let (children, subject) = parsed
        .map(|m| (m.children.into_iter().map(|(d, _)| d).collect(), m.subject))
        .unwrap_or_default();
    Ok(ManifestInfo {
        digest,
        pushed,
        children,
        subject,
    })
}
