//! Whole repositories: deleting one (its tags, manifests and links; blobs are left to
//! garbage collection, since other repositories may share them).

use super::{target, Action, Caller, Service, TargetKind};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::{RepoName, Tag};

/// What a repository delete removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepositoryDeleted {
    /// The tags it had, sorted.
    pub tags: Vec<Tag>,
}

impl Service {
    /// Deletes `repo`: it leaves the catalog and search at once, and nothing in it can be
    /// pulled. Refused with 409 `DENIED` while an `[[immutable]]` rule covers one of its
    /// tags, and `NAME_UNKNOWN` when there is no such repository.
    ///
    /// One event announces it: action `delete` on a target of kind repository with the
    /// repository's name and no digest (registry:2 has no such event; its consumers see a
    /// delete whose target has only a repository). Not one per tag or manifest: a
    /// repository of thousands of tags would flood every endpoint.
    pub async fn delete_repository(
        &self,
        caller: &Caller,
        repo: &RepoName,
    ) -> ApiResult<RepositoryDeleted> {
        let tags = self.list_tags(repo).await?;
        self.check_repository_removal(repo, &tags)?;
        if !self.storage.delete_repository(repo).await? {
            // Deleted by someone else since the listing.
            return Err(name_unknown(repo));
        }
        self.cache.forget_repo(repo);
        self.emit(caller, Action::Delete, target(TargetKind::Repository, repo))
            .await?;
        Ok(RepositoryDeleted { tags })
    }
}

pub(super) fn name_unknown(repo: &RepoName) -> ApiError {
    ApiError::new(Code::NameUnknown, format!("repository {repo} is unknown"))
}

/// The tags an error message names: a few, then how many more.
pub(super) fn some_tags(tags: &[&Tag]) -> String {
    const SHOWN: usize = 5;
    let mut text: Vec<String> = tags.iter().take(SHOWN).map(|t| t.to_string()).collect();
    if tags.len() > SHOWN {
        text.push(format!("and {} more", tags.len() - SHOWN));
    }
    text.join(", ")
}
