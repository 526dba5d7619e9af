//! What a repository or the registry holds: tags, the catalog, and a subject's referrers.

use serde_json::Value;

use super::Service;
use crate::registry::access::Visibility;
use crate::registry::error::ApiResult;
use crate::registry::reference::{Digest, RepoName, Tag};

impl Service {
    /// Every tag of `repo`, sorted (`NAME_UNKNOWN` when there is no such repository).
    pub async fn list_tags(&self, repo: &RepoName) -> ApiResult<Vec<Tag>> {
        self.storage
            .list_tags(repo)
            .await?
            .ok_or_else(|| super::repositories::name_unknown(repo))
    }

    /// Every repository `visibility` lets the caller see, sorted by name: what `_catalog`
    /// and `/v1/search` list. Without a filter, nothing: a gateway that forgot to say who
    /// may see what must not show everything.
    pub async fn visible_repositories(
        &self,
        visibility: Option<&Visibility>,
    ) -> ApiResult<Vec<String>> {
        Ok(self
            .storage
            .list_repositories()
            .await?
            .into_iter()
            .map(|r| r.as_str().to_owned())
            .filter(|r| visibility.is_some_and(|v| v.allows(r)))
            .collect())
    }

    /// The descriptors of the manifests in `repo` whose subject is `subject`, those of
    /// `artifact_type` only when one is given. Empty for an unknown subject.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> ApiResult<Vec<Value>> {
        let mut manifests = Vec::new();
        for raw in self.storage.list_referrers(repo, subject).await? {
            let Ok(descriptor) = serde_json::from_slice::<Value>(&raw) else {
                tracing::error!(%repo, %subject, "skipping an unreadable referrer record");
                continue;
            };
            let kind = descriptor.get("artifactType").and_then(Value::as_str);
            if artifact_type.is_none_or(|f| kind == Some(f)) {
                manifests.push(descriptor);
            }
        }
        Ok(manifests)
    }
}
