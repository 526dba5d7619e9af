//! A repository: its tags with digest, size, created and pushed dates and platforms, and copy buttons
//! for `docker pull`, `podman pull` and the digest-pinned reference.

use maud::{html, Markup};

use super::layout::{copyable, created, date, pager, short_digest, size, Frame};
use crate::registry::service::browse::{Page, TagRow};

/// What the page needs besides the tags.
pub struct Repo<'a> {
    pub name: &'a str,
    /// `host[:port]` as the browser reached the registry, for pull commands.
    pub host: &'a str,
    /// Whether the viewer may delete in this repository.
    pub may_delete: bool,
}

pub fn render(frame: &Frame<'_>, repo: &Repo<'_>, tags: &Page<TagRow>) -> Markup {
    let reference = format!("{}/{}", repo.host, repo.name);
    super::layout::page(
        frame,
        html! {
            nav.crumbs aria-label="Breadcrumb" { a href="/ui/" { "Repositories" } " / " }
            h1 { (repo.name) }
            p.count { (tags.total) @if tags.total == 1 { " tag" } @else { " tags" } }
            @if tags.items.is_empty() {
                p.empty { "This repository has no tags." }
            }
            @for t in &tags.items {
                (tag_card(repo, &reference, t))
            }
            (pager(&format!("/ui/repo/{}", repo.name), "", tags.page, tags.pages()))
            @if repo.may_delete {
                p { a.button.danger href={ "/ui/delete-repository?repo=" (repo.name) } { "Delete repository…" } }
            }
        },
    )
}

fn tag_card(repo: &Repo<'_>, reference: &str, t: &TagRow) -> Markup {
    let pinned = format!("{reference}@{}", t.digest);
    html! {
        article.tag id={ "tag-" (t.tag) } {
            h2 { a href={ "/ui/image/" (repo.name) ":" (t.tag) } { (t.tag) } }
            dl.facts {
                dt { "Digest" } dd { a href={ "/ui/image/" (repo.name) "@" (t.digest) } { code title=(t.digest) { (short_digest(&t.digest)) } } }
                dt { "Size" } dd { (size(t.size)) }
                dt { "Created" } dd { @match &t.created { Some(c) => (created(c)), None => "unknown" } }
                dt { "Pushed" } dd { @match t.pushed { Some(at) => (date(at)), None => "unknown" } }
                @if !t.platforms.is_empty() {
                    dt { "Platforms" } dd { (t.platforms.join(", ")) }
                }
                dt { "Type" } dd.muted { (t.media_type) }
            }
            div.pulls {
                (copyable(&format!("docker pull {reference}:{}", t.tag)))
                (copyable(&format!("podman pull {reference}:{}", t.tag)))
                (copyable(&pinned))
            }
            @if repo.may_delete {
                a.button.danger href={ "/ui/delete?repo=" (repo.name) "&ref=" (t.tag) } { "Delete tag…" }
            }
        }
    }
}
