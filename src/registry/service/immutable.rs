//! Immutable tags (`[[immutable]]`): a covered tag, once pushed, names its manifest for
//! good. Pushing it again with other content, deleting it, or deleting the manifest it names
//! is refused with 409 `DENIED`; the same content again (a retried push) is fine. Pushes by
//! digest never move a tag, so signatures and other referrers are never blocked.
//!
//! Two first pushes of one covered tag racing each other can both pass the check (storage
//! has no create-if-absent for tags); the later one wins, as without the rule.

use super::repositories::some_tags;
use super::Service;
use crate::config::ImmutableRule;
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::{Digest, RepoName, Tag};

impl Service {
    /// The `[[immutable]]` rules this service enforces (retention plans around them).
    pub fn immutable_rules(&self) -> &[ImmutableRule] {
        &self.immutable
    }

    fn is_immutable(&self, repo: &RepoName, tag: &Tag) -> bool {
        self.immutable
            .iter()
            .any(|rule| rule.covers(repo.as_str(), tag.as_str()))
    }

    /// Refuses a push of `tag` naming `digest` when the tag is immutable and already names
    /// another manifest.
    pub(super) async fn check_tag_push(
        &self,
        repo: &RepoName,
        tag: &Tag,
        digest: &Digest,
    ) -> ApiResult<()> {
        if !self.is_immutable(repo, tag) {
            return Ok(());
        }
        match self.storage.read_tag(repo, tag).await? {
            Some(current) if current != *digest => Err(ApiError::new(
                Code::TagImmutable,
                format!(
                    "tag {tag} of {repo} is immutable and already names {current}; \
                     push under a new tag"
                ),
            )),
            Some(_) | None => Ok(()),
        }
    }

    /// Refuses to remove `tag` when it is immutable and exists (deleting one that does
    /// not exist stays a 404).
    pub(super) async fn check_tag_removal(&self, repo: &RepoName, tag: &Tag) -> ApiResult<()> {
        if !self.is_immutable(repo, tag) {
            return Ok(());
        }
        match self.storage.read_tag(repo, tag).await?.is_some() {
            true => Err(ApiError::new(
                Code::TagImmutable,
                format!("tag {tag} of {repo} is immutable, so it cannot be deleted"),
            )),
            false => Ok(()),
        }
    }

    /// Refuses to delete a whole repository while a rule covers one of its `tags`.
    pub(super) fn check_repository_removal(&self, repo: &RepoName, tags: &[Tag]) -> ApiResult<()> {
        let covered: Vec<&Tag> = tags.iter().filter(|t| self.is_immutable(repo, t)).collect();
        match covered.is_empty() {
            true => Ok(()),
            false => Err(ApiError::new(
                Code::TagImmutable,
                format!(
                    "repository {repo} has immutable tags ({}), so it cannot be deleted",
                    some_tags(&covered)
                ),
            )),
        }
    }
}
