//! Garbage collection's view of the filesystem: every blob with its size and write time,
//! a repository's links, and deleting a blob. Walks registry:2's layout (`layout.rs`), so
//! it sees what registry:2 wrote as well as what wharf wrote.

use std::fs;
use std::io;
use std::time::SystemTime;

use super::layout::Layout;
use super::parallel;
use super::sorted_names;
use crate::registry::reference::{Digest, RepoName};
use crate::registry::storage::{BlobEntry, LinkEntry, LinkKind};

/// `blobs/<alg>/<xx>/<hex>/data` for every blob; a directory without `data` (a blob being
/// deleted, or a crash's leftover) or with a name that is no digest is skipped. The
/// `<alg>/<xx>` directories are read by several threads at once (`parallel.rs`).
pub(super) fn list_blobs(layout: &Layout) -> io::Result<Vec<BlobEntry>> {
    let base = layout.blobs();
    let mut prefixes = Vec::new();
    for alg in sorted_names(&base)? {
        for prefix in sorted_names(&base.join(&alg))? {
            prefixes.push((alg.clone(), prefix));
        }
    }
    parallel::for_each(&prefixes, |(alg, prefix), out| {
        let dir = base.join(alg).join(prefix);
        for hex in sorted_names(&dir)? {
            let Ok(digest) = Digest::parse(&format!("{alg}:{hex}")) else {
                continue;
            };
            match fs::metadata(dir.join(&hex).join("data")) {
                Ok(m) => out.push(BlobEntry {
                    digest,
                    size: m.len(),
                    modified: m.modified()?,
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
}

/// The digests of `repo`'s links of `kind`: `<alg>/<hex>/link` under `_layers` or
/// `_manifests/revisions`, as registry:2 walks them (a directory without a link is none).
pub(super) fn list_links(
    layout: &Layout,
    repo: &RepoName,
    kind: LinkKind,
) -> io::Result<Vec<Digest>> {
    Ok(links_of(layout, repo, kind)?
        .into_iter()
        .map(|l| l.digest)
        .collect())
}

/// Every link of `kinds` of every repository, with its write time; several repositories
/// are read at once (`parallel.rs`).
pub(super) fn list_all_links(
    layout: &Layout,
    repos: &[RepoName],
    kinds: &[LinkKind],
) -> io::Result<Vec<LinkEntry>> {
    parallel::for_each(repos, |repo, out| {
        for kind in kinds {
            out.extend(links_of(layout, repo, *kind)?);
        }
        Ok(())
    })
}

fn links_of(layout: &Layout, repo: &RepoName, kind: LinkKind) -> io::Result<Vec<LinkEntry>> {
    let base = match kind {
        LinkKind::Layer => layout.repo(repo).join("_layers"),
        LinkKind::Manifest => layout.repo(repo).join("_manifests").join("revisions"),
    };
    let mut out = Vec::new();
    for alg in sorted_names(&base)? {
        for hex in sorted_names(&base.join(&alg))? {
            let Ok(digest) = Digest::parse(&format!("{alg}:{hex}")) else {
                continue;
            };
            match fs::metadata(base.join(&alg).join(&hex).join("link")) {
                Ok(m) if m.is_file() => out.push(LinkEntry {
                    repo: repo.clone(),
                    kind,
                    digest,
                    modified: m.modified()?,
                }),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// Removes the blob's `data`, then its now empty directory (as registry:2's
/// `garbage-collect` removes the blob's directory; the `<xx>` prefix directory stays, as
/// registry:2 leaves it: with 256 of them they are seldom empty, and trying cost every
/// deletion a failing `rmdir` under the one lock of `blobs/<alg>`, which 16 deletions at a
/// time queued on). `false` when it was already gone.
///
/// Not synced: a deletion a crash undoes leaves an unreferenced blob, which the next run
/// collects (every link to it was removed, durably, before). Syncing each directory made
/// `scripts/bench --gc-only` (10,000 deletions) take 55 s instead of 21 s.
pub(super) fn delete_blob(layout: &Layout, digest: &Digest) -> io::Result<bool> {
    let data = layout.blob(digest);
    let removed = match fs::remove_file(&data) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    if let Some(dir) = data.parent() {
        // Best effort: a directory another writer just filled stays.
        let _ = fs::remove_dir(dir);
    }
    Ok(removed)
}

/// [`delete_blob`] if the blob's bytes were last written before `cutoff`, in one step: the
/// collector's re-check of the write time and the delete, with nothing in between.
pub(super) fn delete_blob_written_before(
    layout: &Layout,
    digest: &Digest,
    cutoff: SystemTime,
) -> io::Result<bool> {
    match fs::metadata(layout.blob(digest)) {
        Ok(m) if m.modified()? < cutoff => delete_blob(layout, digest),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
