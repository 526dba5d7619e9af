//! The storage page: what each repository the viewer may pull uses (the figures
//! `GET /wharf/api/v1/usage` gives: tags, manifests, bytes, bytes only it links), the
//! totals, and the garbage collector's status when the server has one to show.
//!
//! Who sees it follows the usage API's rule: everyone, each viewer only the repositories
//! they may pull, while sharing is judged over every repository (a hidden repository's
//! links still make a blob shared, so "unique" never overstates what a delete frees).

use maud::{html, Markup};

use super::layout::{date, size, Frame};
use crate::registry::service::gc_status::Snapshot;
use crate::registry::service::usage::RepoUsage;

/// The collector's status as the page shows it: the engine's, for administrators (those
/// `GET /wharf/api/v1/gc` answers: delete by the rule for every repository).
pub type GcView = Snapshot;

pub fn render(frame: &Frame<'_>, usage: &[RepoUsage], gc: Option<&GcView>) -> Markup {
    super::layout::page(
        frame,
        html! {
            h1 { "Storage" }
            section aria-labelledby="usage" {
                h2 id="usage" { "Usage by repository" }
                (usage_table(usage))
            }
            section aria-labelledby="gc" {
                h2 id="gc" { "Garbage collection" }
                (gc_status(gc))
            }
        },
    )
}

fn usage_table(usage: &[RepoUsage]) -> Markup {
    let total = |f: fn(&RepoUsage) -> u64| usage.iter().map(f).sum::<u64>();
    html! {
        @if usage.is_empty() {
            p.empty { "No repositories you may pull." }
        } @else {
            p.muted {
                "Unique: the bytes no other repository links, which deleting the repository "
                "and a garbage collection would free."
            }
            div.scroll { table.usage {
                thead { tr {
                    th scope="col" { "Repository" } th.num scope="col" { "Tags" }
                    th.num scope="col" { "Manifests" } th.num scope="col" { "Size" }
                    th.num scope="col" { "Unique" }
                } }
                tbody {
                    @for r in usage {
                        tr {
                            td { a href={ "/ui/repo/" (r.repository) } { (r.repository) } }
                            td.num { (r.tags) } td.num { (r.manifests) }
                            td.num { (size(r.bytes)) } td.num { (size(r.unique_bytes)) }
                        }
                    }
                }
                tfoot { tr {
                    th scope="row" { (usage.len()) @if usage.len() == 1 { " repository" } @else { " repositories" } }
                    td.num { (total(|r| r.tags as u64)) } td.num { (total(|r| r.manifests as u64)) }
                    // No size total: repositories share blobs, so their sizes do not add
                    // up to what storage holds; unique bytes do.
                    td {} td.num { (size(total(|r| r.unique_bytes))) }
                } }
            } }
        }
    }
}

fn gc_status(gc: Option<&GcView>) -> Markup {
    let Some(gc) = gc else {
        return html! {
            p.empty role="status" {
                "The collector's status is shown to administrators (who may delete in every "
                "repository)."
            }
        };
    };
    html! {
        dl.facts {
            dt { "Schedule" }
            dd { @match gc.interval {
                Some(every) => { "every " (period(every)) }
                None => { "none (" code { "wharf gc" } " only)" }
            } }
            @if let Some(at) = gc.running_since { dt { "Running since" } dd { (date(at)) } }
            @if let Some(at) = gc.next_run { dt { "Next run" } dd { (date(at)) } }
            dt { "Last run" }
            dd { @match &gc.last_run {
                None => { "none yet" }
                Some(run) => {
                    (run.result.as_str()) ", ended " (date(run.ended)) ": "
                    (run.tags_deleted) " tags deleted, " (run.objects_freed) " blobs freed ("
                    (size(run.bytes_freed)) ")"
                    @if let Some(error) = &run.error { " — " (error) }
                }
            } }
        }
    }
}

/// A schedule's period as people say it ("day", "6 hours"); humantime's form otherwise.
fn period(every: std::time::Duration) -> String {
    let secs = every.as_secs();
    let units = [(86_400, "day"), (3_600, "hour"), (60, "minute")];
    match units.iter().find(|(unit, _)| secs > 0 && secs % unit == 0) {
        Some(&(unit, name)) if secs == unit => name.to_owned(),
        Some(&(unit, name)) => format!("{} {name}s", secs / unit),
        None => humantime::format_duration(every).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn periods_read_as_people_say_them() {
        let p = |s| super::period(Duration::from_secs(s));
        assert_eq!(p(86_400), "day");
        assert_eq!(p(2 * 86_400), "2 days");
        assert_eq!(p(6 * 3_600), "6 hours");
        assert_eq!(p(90 * 60), "90 minutes");
        assert_eq!(p(90), "1m 30s");
    }
}
