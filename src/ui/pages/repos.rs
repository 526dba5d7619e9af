//! The repository list: search as you type (app.js re-fetches this page), each
//! repository's tag count, size and last push (from the repository index), pages.

use maud::{html, Markup};

use super::layout::{date, pager, size, Frame};
use crate::registry::service::browse::{Page, RepoSummary};

pub fn render(frame: &Frame<'_>, query: &str, repos: &Page<RepoSummary>) -> Markup {
    super::layout::page(
        frame,
        html! {
            h1 { "Repositories" }
            form.search role="search" method="get" action="/ui/" {
                label for="search" { "Search repositories" }
                input id="search" type="search" name="q" value=(query) autocomplete="off"
                    placeholder="Search by name" data-live-search="repo-list";
                noscript { button type="submit" { "Search" } }
            }
            section id="repo-list" aria-live="polite" {
                p.count { (repos.total) @if repos.total == 1 { " repository" } @else { " repositories" } }
                @if repos.items.is_empty() {
                    p.empty { "No repositories you may pull match." }
                } @else {
                    ul.cards {
                        @for r in &repos.items {
                            li {
                                a.repo href={ "/ui/repo/" (r.name) } { (r.name) }
                                span.muted.figures {
                                    span { (r.figures.tags) @if r.figures.tags == 1 { " tag" } @else { " tags" } }
                                    " · " span { (size(r.figures.size)) }
                                    @if let Some(at) = r.figures.last_push {
                                        " · " span { "pushed " (date(at)) }
                                    }
                                }
                            }
                        }
                    }
                }
                (pager("/ui/", query, repos.page, repos.pages()))
            }
        },
    )
}

/// While the repository names are read from storage for the first time on this root: says
/// so, and the browser asks again after `seconds` (a refresh, which the CSP allows: it is
/// not a script).
pub fn still_reading(frame: &Frame<'_>, seconds: u64) -> Markup {
    super::layout::page_refreshing(
        frame,
        seconds,
        html! {
            h1 { "Repositories" }
            p.empty role="status" {
                "Reading the list of repositories from storage for the first time. "
                "This page reloads itself in a moment; later visits, after restarts too, list at once."
            }
        },
    )
}
