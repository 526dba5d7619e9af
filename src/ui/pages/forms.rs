//! The pages with forms that change something: logging in, and confirming a delete. Each
//! form carries the CSRF token of the visitor's cookie.

use maud::{html, Markup};

use super::layout::{size, Frame};
use crate::registry::service::catalog::RepoStats;

/// The login form; `error` says why the last attempt failed.
pub fn login(frame: &Frame<'_>, user: &str, error: Option<&str>) -> Markup {
    super::layout::page(
        frame,
        html! {
            h1 { "Log in" }
            p.muted { "The same user name and password as for " code { "docker login" } "." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.stacked method="post" action="/ui/login" {
                input type="hidden" name="csrf" value=(frame.csrf);
                label for="user" { "User name" }
                input id="user" name="user" value=(user) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input id="password" type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
        },
    )
}

/// What a delete confirmation names.
pub struct DeleteTarget<'a> {
    pub repo: &'a str,
    /// A tag or a digest.
    pub reference: &'a str,
    pub is_tag: bool,
    /// For a digest: the tags that go with it.
    pub tags: &'a [String],
}

pub fn confirm_delete(frame: &Frame<'_>, target: &DeleteTarget<'_>) -> Markup {
    super::layout::page(
        frame,
        html! {
            h1 { "Delete?" }
            @if target.is_tag {
                p { "Delete the tag " code { (target.repo) ":" (target.reference) } "? "
                    "The image stays, reachable by its digest and any other tags." }
            } @else {
                p { "Delete the manifest " code { (target.repo) "@" (target.reference) } "?" }
                @if !target.tags.is_empty() {
                    p { "These tags point at it and go with it: " (target.tags.join(", ")) }
                }
                p.muted { "Its layers stay in storage until a garbage collection removes what no manifest uses." }
            }
            form.inline method="post" action="/ui/delete" {
                input type="hidden" name="csrf" value=(frame.csrf);
                input type="hidden" name="repo" value=(target.repo);
                input type="hidden" name="ref" value=(target.reference);
                button.danger type="submit" { "Delete" }
            }
            " "
            a.button href={ "/ui/repo/" (target.repo) } { "Cancel" }
        },
    )
}

/// The confirmation of a whole repository's delete, saying what it holds: `tags` tags
/// reaching `figures.size` bytes of blobs.
pub fn confirm_delete_repository(
    frame: &Frame<'_>,
    repo: &str,
    tags: usize,
    figures: &RepoStats,
) -> Markup {
    super::layout::page(
        frame,
        html! {
            h1 { "Delete the repository?" }
            p { "Delete the repository " code { (repo) } " with its "
                (tags) @if tags == 1 { " tag" } @else { " tags" } " and every manifest in it?"
                " Nothing in it can be pulled afterwards." }
            p { "Its tags reach " strong { (size(figures.size)) " of blobs" }
                " (manifests, configs and layers). The next garbage collection frees those no
                other repository uses; shared ones stay." }
            form.inline method="post" action="/ui/delete-repository" {
                input type="hidden" name="csrf" value=(frame.csrf);
                input type="hidden" name="repo" value=(repo);
                button.danger type="submit" { "Delete repository" }
            }
            " "
            a.button href={ "/ui/repo/" (repo) } { "Cancel" }
        },
    )
}

/// A page that says what went wrong (not found, forbidden, …).
pub fn error(frame: &Frame<'_>, heading: &str, message: &str) -> Markup {
    super::layout::page(
        frame,
        html! {
            h1 { (heading) }
            p role="alert" { (message) }
            p { a href="/ui/" { "Back to the repositories" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame<'static> {
        Frame {
            title: "t",
            user: None,
            logins: true,
            csrf: "c0ffee",
        }
    }

    /// The login form echoes the user name typed; a delete confirmation names tags.
    #[test]
    fn echoed_values_stay_text() {
        let hostile = "\"><script>alert(1)</script>";
        let page = login(&frame(), hostile, Some(hostile)).into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;"), "{page}");
        assert!(page.contains("name=\"csrf\" value=\"c0ffee\""));
        let tags = vec![hostile.to_owned()];
        let target = DeleteTarget {
            repo: "team/app",
            reference: "sha256:abc",
            is_tag: false,
            tags: &tags,
        };
        let page = confirm_delete(&frame(), &target).into_string();
        assert!(!page.contains("<script>alert") && page.contains("&lt;script&gt;"));
        assert!(page.contains("name=\"csrf\" value=\"c0ffee\""));
        let figures = RepoStats {
            tags: 2,
            size: 2_500,
            last_push: None,
        };
        let page = confirm_delete_repository(&frame(), "team/app", 2, &figures).into_string();
        for part in [
            "team/app",
            "2 tags",
            "2.5 kB of blobs",
            "name=\"csrf\" value=\"c0ffee\"",
        ] {
            assert!(page.contains(part), "{part} in {page}");
        }
        let page = error(&frame(), "Not found", hostile).into_string();
        assert!(!page.contains("<script>alert"));
    }
}
