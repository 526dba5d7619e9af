//! The web UI under `/ui/`: server-rendered pages for browsing repositories, tags and
//! images, logging in with the server's logins, and deleting what the viewer may delete.
//!
//! The gateway routes `/ui/…` here on servers with `ui` on, after the same rate limits as
//! the API, and hands over an [`Access`]: the server's access rules and logins, so a viewer
//! sees exactly what `docker pull` would let them pull. Reads go through
//! [`browse`](crate::registry::service::browse). Pages are plain HTML with one stylesheet
//! and one script from `/ui/static/`; the Content-Security-Policy allows nothing else.

mod assets;
mod handlers;
pub mod pages;
pub mod session;

use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use maud::Markup;

use crate::auth::Identity;
use crate::http_util::{full, Body, Reply};
use crate::registry::access::Visibility;
use crate::registry::error::ApiResult;
use crate::registry::service::Caller;
use crate::registry::Registry;

/// Pages allow their own stylesheet and script and nothing else: no inline code, no other
/// origins, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The largest form body accepted (a login or a delete).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// What one viewer may see and do.
#[derive(Clone)]
pub struct Viewer {
    pub user: Option<String>,
    /// Repositories the viewer may pull: the only ones the UI shows.
    pub pull: Visibility,
    /// Repositories the viewer may delete tags and manifests in.
    pub delete: Visibility,
}

/// How a login from the form went.
#[derive(Debug)]
pub enum LoginOutcome {
    In(Identity),
    /// Wrong user name or password (counted against the failed-login limits).
    Wrong,
    /// Too many failed logins: refused without checking, for this long.
    Blocked(Duration),
    /// The login provider (LDAP) cannot be asked right now.
    Unavailable,
}

/// The server's logins and access rules, as the UI needs them (the gateway implements it).
#[async_trait::async_trait]
pub trait Access: Send + Sync {
    /// Whether the server has logins; without them everyone is the same anonymous viewer.
    fn logins(&self) -> bool;
    /// What `identity` (`None`: anonymous) may see and do.
    fn viewer(&self, identity: Option<&Identity>) -> Viewer;
    /// Checks a login from the form, counting failures like the API's.
    async fn login(&self, user: &str, password: &str) -> LoginOutcome;
}

/// The UI of one server block: its sessions.
#[derive(Default)]
pub struct Ui {
    sessions: session::Sessions,
}

/// What a UI request needs besides itself.
pub struct Context<'a> {
    pub registry: &'a Registry,
    pub access: &'a dyn Access,
    /// `host[:port]` the browser used: what pull commands name.
    pub host: &'a str,
    /// Whether the request came over TLS (the cookie is then `Secure`).
    pub tls: bool,
    /// Who is asking, for the events of what the UI changes (deletes).
    pub caller: Caller,
}

impl Ui {
    pub fn new() -> Self {
        Self::default()
    }

    /// The user logged in with the request's cookie, if any (for the access log and the
    /// per-user rate limits).
    pub fn identity_of(&self, headers: &http::HeaderMap) -> Option<Identity> {
        self.sessions.identity(&session::cookie_of(headers)?)
    }

    /// Serves one request for a path under `/ui` (the gateway checked the prefix).
    pub async fn handle(&self, req: Request<Body>, cx: &Context<'_>) -> ApiResult<Response<Body>> {
        let path = req.uri().path().to_owned();
        if let Some(asset) = path.strip_prefix("/ui/static/") {
            return Ok(match assets::serve(asset) {
                Some(r) => secured(r),
                None => handlers::not_found_plain(),
            });
        }
        let (cookie, fresh) = match session::cookie_of(req.headers()) {
            Some(c) => (c, false),
            None => (session::Sessions::new_id(), true),
        };
        let visit = handlers::Visit {
            ui: self,
            cx,
            identity: self.sessions.identity(&cookie),
            csrf: self.sessions.csrf(&cookie),
            cookie,
        };
        let mut response = handlers::route(&visit, req).await?;
        // A visitor without a cookie gets one, so the forms on this page carry a token that
        // the next request can be checked against.
        if fresh && !response.headers().contains_key(SET_COOKIE) {
            set_header(
                &mut response,
                SET_COOKIE,
                &session::set_cookie(&visit.cookie, cx.tls),
            );
        }
        Ok(secured(response))
    }
}

/// An HTML page with `status`.
fn html(status: StatusCode, markup: Markup) -> Response<Body> {
    let body = markup.into_string();
    Reply::new(status)
        .header(CONTENT_TYPE, "text/html; charset=utf-8")
        .header(CONTENT_LENGTH, body.len())
        // Pages depend on who is looking: never store them.
        .header(CACHE_CONTROL, "no-store")
        .body(full(body))
}

/// A `303 See Other` to `to` (after a form, so reloading does not resend it).
fn see_other(to: &str) -> Response<Body> {
    Reply::new(StatusCode::SEE_OTHER)
        .header(LOCATION, to)
        .header(CONTENT_LENGTH, 0)
        .empty()
}

/// The headers every UI response carries.
fn secured(mut response: Response<Body>) -> Response<Body> {
    let headers = [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ];
    for (name, value) in headers {
        set_header(&mut response, HeaderName::from_static(name), value);
    }
    response
}

fn set_header(response: &mut Response<Body>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// A form body's fields, read up to [`MAX_FORM_BYTES`].
async fn form(body: Body) -> Option<Vec<(String, String)>> {
    use http_body_util::BodyExt;
    let limited = http_body_util::Limited::new(body, MAX_FORM_BYTES);
    let bytes: Bytes = limited.collect().await.ok()?.to_bytes();
    Some(
        form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

#[cfg(test)]
mod perf_tests;
