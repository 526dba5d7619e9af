//! The walk of `repositories/` that lists every repository (`_catalog`, the UI's index), as
//! registry:2's catalog walks it: a directory holding `_layers` or `_manifests` is a
//! repository, `_`-prefixed directories are skipped, and names nest (`team` may hold
//! `team/app` and be a repository itself).
//!
//! It is the one walk of every repository, so it is kept cheap: each directory is read
//! once (whether it is a repository shows in its own entries, so no `stat` per candidate,
//! and entry types come from the directory listing itself), and the top-level directories
//! are walked by several threads at once (`parallel.rs`), which keeps a cold disk's queue
//! busy instead of waiting for one read at a time.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::parallel;
use crate::registry::reference::RepoName;

/// Every repository under `base` (registry:2's `repositories/`), sorted.
pub(super) fn list_repositories(base: &Path) -> io::Result<Vec<RepoName>> {
    let top = match subdirectories(base)? {
        Some(listing) => listing.dirs,
        None => return Ok(Vec::new()),
    };
    let mut out = parallel::for_each(&top, |name, out| walk(&base.join(name), name, out))?;
    out.sort();
    Ok(out)
}

/// A directory's subdirectories not starting with `_`, and whether it is a repository.
struct Listing {
    dirs: Vec<String>,
    repository: bool,
}

/// Reads `dir` once; `None` when it is gone (deleted during the walk).
fn subdirectories(dir: &Path) -> io::Result<Option<Listing>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut listing = Listing {
        dirs: Vec::new(),
        repository: false,
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // The listing's own type, without a stat (a symlink counts as what it points at,
        // as `is_dir` saw it before).
        let is_dir = match entry.file_type()? {
            t if t.is_symlink() => entry.path().is_dir(),
            t => t.is_dir(),
        };
        if !is_dir {
            continue;
        }
        match name.as_str() {
            "_layers" | "_manifests" => listing.repository = true,
            n if n.starts_with('_') => {}
            _ => listing.dirs.push(name),
        }
    }
    Ok(Some(listing))
}

/// Adds `dir` (named `name`) and the repositories under it to `out`.
fn walk(dir: &Path, name: &str, out: &mut Vec<RepoName>) -> io::Result<()> {
    let Some(listing) = subdirectories(dir)? else {
        return Ok(());
    };
    if listing.repository {
        if let Ok(repo) = RepoName::parse(name) {
            out.push(repo);
        }
    }
    for sub in listing.dirs {
        let path: PathBuf = dir.join(&sub);
        walk(&path, &format!("{name}/{sub}"), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_repositories_as_registry2_does() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for d in [
            "a/_layers",
            "team/_manifests",
            "team/app/_layers",
            "team/app/_manifests",
            "team/app/_uploads",
            "team/empty",
            "deep/er/still/_layers",
            "_hidden/x/_layers",
            "z/_uploads",
        ] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        // A file named like a repository's marker is not one.
        fs::create_dir_all(base.join("file")).unwrap();
        fs::write(base.join("file/_layers"), b"").unwrap();
        let names: Vec<_> = list_repositories(base)
            .unwrap()
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect();
        assert_eq!(names, ["a", "deep/er/still", "team", "team/app"]);
        assert!(list_repositories(&base.join("missing")).unwrap().is_empty());
    }
}
