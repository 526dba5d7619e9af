//! Deleting a whole repository on disk: its `_manifests` (revisions and tags), `_layers`
//! and registry:2's `_uploads` under `repositories/<name>/`, and its referrer records
//! under `wharf/`. Blobs stay for garbage collection: other repositories may share them.
//!
//! A name's directory may hold other repositories (`team` and `team/app`), so only the
//! `_`-prefixed parts are removed, never the directory whole. Each part is first renamed
//! into `wharf/tmp` (one atomic step, so tags vanish at once and the repository leaves the
//! catalog as soon as `_manifests` and `_layers` are gone), then removed there; a crash in
//! between leaves the rest in `wharf/tmp`, cleared at the next start, or a repository with
//! fewer parts, which deleting again finishes.

use std::fs;
use std::io;
use std::path::Path;

use super::atomic;
use super::layout::Layout;
use crate::registry::reference::RepoName;

/// What makes a directory a repository (as the catalog walk sees it) goes last but one:
/// `_manifests` first, so no tag resolves once the delete has begun.
const PARTS: [&str; 3] = ["_manifests", "_layers", "_uploads"];

/// Removes `repo`; `false` when it did not exist.
pub(super) fn delete_repository(layout: &Layout, repo: &RepoName) -> io::Result<bool> {
    let dir = layout.repo(repo);
    if !(dir.join("_manifests").is_dir() || dir.join("_layers").is_dir()) {
        return Ok(false);
    }
    let tmp = layout.tmp();
    let mut doomed = Vec::new();
    for part in PARTS {
        if let Some(moved) = move_aside(&dir.join(part), &tmp)? {
            doomed.push(moved);
        }
    }
    atomic::sync_dir(&dir)?;
    if let Some(moved) = move_aside(&layout.repo_referrers(repo), &tmp)? {
        doomed.push(moved);
    }
    for path in doomed {
        fs::remove_dir_all(&path)?;
    }
    atomic::sync_dir(&tmp)?;
    remove_empty_up_to(&dir, &layout.repositories());
    if let Some(referrers) = layout.repo_referrers(repo).parent() {
        remove_empty_up_to(referrers, &layout.wharf().join("referrers"));
    }
    Ok(true)
}

/// Renames `path` to a fresh name in `tmp`; `None` when there was nothing there.
fn move_aside(path: &Path, tmp: &Path) -> io::Result<Option<std::path::PathBuf>> {
    let target = tmp.join(uuid::Uuid::new_v4().to_string());
    match fs::rename(path, &target) {
        Ok(()) => Ok(Some(target)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `dir` and its parents while they are empty, stopping below `top` (best effort:
/// a directory another push just filled stays, as registry:2 leaves empty ones anyway).
fn remove_empty_up_to(dir: &Path, top: &Path) {
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| d.starts_with(top) && *d != top) {
        if fs::remove_dir(d).is_err() {
            return;
        }
        at = d.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn touch(path: PathBuf) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    /// `team` and `team/app` are both repositories: deleting `team` leaves `team/app` whole.
    #[test]
    fn a_nested_repository_survives_its_parent_s_delete() {
        let root = tempfile::tempdir().unwrap();
        let layout = Layout::new(root.path().to_path_buf());
        fs::create_dir_all(layout.tmp()).unwrap();
        let (team, app) = (
            RepoName::parse("team").unwrap(),
            RepoName::parse("team/app").unwrap(),
        );
        for r in [&team, &app] {
            touch(layout.repo(r).join("_layers/sha256/aa/link"));
            touch(layout.tags(r).join("v1/current/link"));
            touch(layout.repo_referrers(r).join("sha256/bb/sha256-cc"));
        }
        touch(layout.repo(&team).join("_uploads/some-session/data"));
        assert!(delete_repository(&layout, &team).unwrap());
        for part in PARTS {
            assert!(!layout.repo(&team).join(part).exists(), "{part} is gone");
        }
        assert!(!layout.repo_referrers(&team).exists());
        assert!(layout.tags(&app).join("v1/current/link").is_file());
        assert!(layout.repo(&app).join("_layers/sha256/aa/link").is_file());
        assert!(layout.repo_referrers(&app).is_dir());
        assert_eq!(fs::read_dir(layout.tmp()).unwrap().count(), 0);
        assert!(!delete_repository(&layout, &team).unwrap(), "already gone");
        assert!(delete_repository(&layout, &app).unwrap());
        assert!(
            !layout.repositories().join("team").exists(),
            "empty directories go too"
        );
        assert!(layout.repositories().is_dir(), "never the top");
    }
}
