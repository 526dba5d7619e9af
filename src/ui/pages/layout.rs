//! The frame around every page, and small pieces several pages share. maud escapes every
//! interpolated value, so whatever an image says (labels, env, history, tags) is text.

use std::time::SystemTime;

use maud::{html, Markup, DOCTYPE};

/// What every page's frame needs to know about the request.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The logged-in user, if any.
    pub user: Option<&'a str>,
    /// Whether the server has logins at all (else no login link).
    pub logins: bool,
    /// The CSRF token for the logout form.
    pub csrf: &'a str,
}

pub fn page(frame: &Frame<'_>, content: Markup) -> Markup {
    frame_with(frame, None, content)
}

/// A page that the browser loads again after `seconds`.
pub fn page_refreshing(frame: &Frame<'_>, seconds: u64, content: Markup) -> Markup {
    frame_with(frame, Some(seconds), content)
}

fn frame_with(frame: &Frame<'_>, refresh: Option<u64>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (frame.title) " · wharf" }
                link rel="stylesheet" href="/ui/static/style.css";
                script src="/ui/static/app.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "wharf" }
                    nav { a href="/ui/storage" { "Storage" } (account(frame)) }
                }
                main id="main" { (content) }
            }
        }
    }
}

fn account(frame: &Frame<'_>) -> Markup {
    html! {
        @if let Some(user) = frame.user {
            span.user { "Signed in as " strong { (user) } }
            form.inline method="post" action="/ui/logout" {
                input type="hidden" name="csrf" value=(frame.csrf);
                button type="submit" { "Log out" }
            }
        } @else if frame.logins {
            span.user { "Anonymous" }
            a.button href="/ui/login" { "Log in" }
        }
    }
}

/// A value with a button that copies it (app.js; without JavaScript the value is still
/// selectable text).
pub fn copyable(value: &str) -> Markup {
    html! {
        span.copy {
            code { (value) }
            button.copy-button type="button" data-copy=(value) aria-label={ "Copy " (value) } { "Copy" }
        }
    }
}

/// `1.2 MB`-style sizes (decimal units, as registries and docker print them).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// A moment as `2026-11-30 21:41 UTC`, in a `<time>` element carrying the exact instant.
pub fn date(at: SystemTime) -> Markup {
    let exact = humantime::format_rfc3339_seconds(at).to_string();
    // `2026-11-30T21:41:05Z` → `2026-11-30 21:41 UTC`.
    let shown = format!("{} {} UTC", &exact[..10], &exact[11..16]);
    html! { time datetime=(exact) { (shown) } }
}

/// An image's own `created` string: as a date when it is RFC 3339 (in UTC, with or
/// without fractions), otherwise as the image says it.
pub fn created(value: &str) -> Markup {
    match humantime::parse_rfc3339_weak(value) {
        Ok(at) => date(at),
        Err(_) => html! { (value) },
    }
}

/// `sha256:0123456789ab`: enough of a digest to tell images apart at a glance.
pub fn short_digest(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// Links to the pages before and after `page` (zero-based) of `pages`, keeping `query`.
pub fn pager(base: &str, query: &str, page: usize, pages: usize) -> Markup {
    let href = |p: usize| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if !query.is_empty() {
            s.append_pair("q", query);
        }
        s.append_pair("page", &(p + 1).to_string());
        format!("{base}?{}", s.finish())
    };
    html! {
        @if pages > 1 {
            nav.pager aria-label="Pages" {
                @if page > 0 { a rel="prev" href=(href(page - 1)) { "← Previous" } }
                span { "Page " (page + 1) " of " (pages) }
                @if page + 1 < pages { a rel="next" href=(href(page + 1)) { "Next →" } }
            }
        }
    }
}

/// The page a `?page=N` (one-based) asks for, zero-based; anything odd is the first.
pub fn page_param(query: Option<&str>) -> usize {
    crate::http_util::query_param(query, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .map_or(0, |p| p.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker_prints_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1_500), "1.5 kB");
        assert_eq!(size(3_400_000), "3.4 MB");
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(page_param(Some("page=3")), 2);
        assert_eq!(page_param(Some("page=x")), 0);
        assert_eq!(page_param(None), 0);
    }

    #[test]
    fn dates_show_minutes_in_utc_and_keep_the_instant() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_323_045);
        assert_eq!(
            date(at).into_string(),
            "<time datetime=\"2026-01-02T03:04:05Z\">2026-01-02 03:04 UTC</time>"
        );
        assert_eq!(
            created("2026-01-02T03:04:05.123456789Z").into_string(),
            "<time datetime=\"2026-01-02T03:04:05Z\">2026-01-02 03:04 UTC</time>"
        );
        assert_eq!(
            created("yesterday <b>").into_string(),
            "yesterday &lt;b&gt;",
            "anything else as text"
        );
    }
}
