//! One function per UI endpoint: check who is asking, read through `browse`, render.

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};

use super::pages::forms::{self, DeleteTarget};
use super::pages::layout::{page_param, Frame};
use super::pages::storage::{self as storage_page, GcView};
use super::pages::{image as image_page, repo as repo_page, repos as repos_page};
use super::{form, html, see_other, session, Context, LoginOutcome, Ui, Viewer};
use crate::auth::Identity;
use crate::http_util::{query_param, Body, Reply};
use crate::registry::error::{ApiResult, Code};
use crate::registry::reference::{Digest, Reference, RepoName, Tag};
use crate::registry::service::browse;

/// Repositories per page of the listing.
const REPOS_PER_PAGE: usize = 50;
/// Tags per page of a repository.
const TAGS_PER_PAGE: usize = 30;
/// How long the list waits for the repository names on the first view after the first
/// start on a root (nothing saved to list from), before saying they are still being read.
/// A small root's walk always fits, even on a loaded machine; a cold walk of 10,000
/// repositories may not, but happens once: later starts list from the saved index.
const NAMES_WAIT: Duration = Duration::from_secs(1);
/// When a browser shown that asks again.
const RETRY_SECONDS: u64 = 1;

/// One request's visitor: who they are and the CSRF token for their forms.
pub(super) struct Visit<'a> {
    pub ui: &'a Ui,
    pub cx: &'a Context<'a>,
    pub identity: Option<Identity>,
    /// The session cookie's value (a logged-in session's id, or an anonymous nonce).
    pub cookie: String,
    pub csrf: String,
}

impl Visit<'_> {
    fn viewer(&self) -> Viewer {
        self.cx.access.viewer(self.identity.as_ref())
    }

    fn frame<'a>(&'a self, title: &'a str) -> Frame<'a> {
        Frame {
            title,
            user: self.identity.as_ref().map(|i| i.user.as_str()),
            logins: self.cx.access.logins(),
            csrf: &self.csrf,
        }
    }

    fn error(&self, status: StatusCode, heading: &str, message: &str) -> Response<Body> {
        html(status, forms::error(&self.frame(heading), heading, message))
    }

    /// The same answer for a repository that does not exist and one the viewer may not
    /// pull, so the UI does not tell which names exist.
    fn unknown(&self, what: &str) -> Response<Body> {
        let hint = match (self.identity.is_none(), self.cx.access.logins()) {
            (true, true) => " Logging in may show more.",
            _ => "",
        };
        self.error(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("There is no {what} that you may see.{hint}"),
        )
    }
}

pub(super) async fn route(v: &Visit<'_>, req: Request<Body>) -> ApiResult<Response<Body>> {
    let (parts, body) = req.into_parts();
    let (path, query) = (parts.uri.path(), parts.uri.query());
    let read = matches!(parts.method, Method::GET | Method::HEAD);
    match (read, &parts.method, path) {
        (true, _, "/ui") => Ok(see_other("/ui/")),
        (true, _, "/ui/") => repos(v, query).await,
        (true, _, "/ui/login") => Ok(login_form(v)),
        (true, _, "/ui/storage") => storage(v).await,
        (true, _, "/ui/delete") => confirm_delete(v, query).await,
        (true, _, "/ui/delete-repository") => confirm_delete_repository(v, query).await,
        (true, _, p) if p.starts_with("/ui/repo/") => repo(v, &p["/ui/repo/".len()..], query).await,
        (true, _, p) if p.starts_with("/ui/image/") => image(v, &p["/ui/image/".len()..]).await,
        (false, &Method::POST, "/ui/login") => login(v, body).await,
        (false, &Method::POST, "/ui/logout") => logout(v, body).await,
        (false, &Method::POST, "/ui/delete") => delete(v, body).await,
        (false, &Method::POST, "/ui/delete-repository") => delete_repository(v, body).await,
        _ => Ok(v.error(StatusCode::NOT_FOUND, "Not found", "There is no such page.")),
    }
}

/// What each repository the viewer may pull uses (the usage API's figures and rule), and
/// the collector's status.
async fn storage(v: &Visit<'_>) -> ApiResult<Response<Body>> {
    let viewer = v.viewer();
    let usage = v.cx.registry.service().usage(Some(&viewer.pull)).await?;
    let gc = gc_view(v, &viewer);
    Ok(html(
        StatusCode::OK,
        storage_page::render(&v.frame("Storage"), &usage, gc.as_ref()),
    ))
}

/// The collector's status for the storage page, shown to whom `GET /wharf/api/v1/gc`
/// answers: a viewer the rule for every repository (`*`) lets delete.
fn gc_view(v: &Visit<'_>, viewer: &Viewer) -> Option<GcView> {
    viewer
        .delete
        .allows("*")
        .then(|| v.cx.registry.service().gc_status().snapshot())
}

pub(super) fn not_found_plain() -> Response<Body> {
    Reply::new(StatusCode::NOT_FOUND)
        .header(http::header::CONTENT_LENGTH, 0)
        .empty()
}

async fn repos(v: &Visit<'_>, query: Option<&str>) -> ApiResult<Response<Body>> {
    let q = query_param(query, "q").unwrap_or_default();
    let viewer = v.viewer();
    let visible = move |r: &str| viewer.pull.allows(r);
    let at = (page_param(query), REPOS_PER_PAGE);
    let Some(page) = browse::repositories(v.cx.registry, &visible, &q, at, NAMES_WAIT).await?
    else {
        let mut r = html(
            StatusCode::SERVICE_UNAVAILABLE,
            repos_page::still_reading(&v.frame("Repositories"), RETRY_SECONDS),
        );
        super::set_header(
            &mut r,
            http::header::RETRY_AFTER,
            &RETRY_SECONDS.to_string(),
        );
        return Ok(r);
    };
    Ok(html(
        StatusCode::OK,
        repos_page::render(&v.frame("Repositories"), &q, &page),
    ))
}

async fn repo(v: &Visit<'_>, name: &str, query: Option<&str>) -> ApiResult<Response<Body>> {
    let viewer = v.viewer();
    let Some(repo) = RepoName::parse(name)
        .ok()
        .filter(|r| viewer.pull.allows(r.as_str()))
    else {
        return Ok(v.unknown("such repository"));
    };
    let Some(tags) = browse::tags(v.cx.registry, &repo, page_param(query), TAGS_PER_PAGE).await?
    else {
        return Ok(v.unknown("such repository"));
    };
    let at = repo_page::Repo {
        name: repo.as_str(),
        host: v.cx.host,
        may_delete: viewer.delete.allows(repo.as_str()),
    };
    Ok(html(
        StatusCode::OK,
        repo_page::render(&v.frame(repo.as_str()), &at, &tags),
    ))
}

/// `name@digest` or `name:tag` (repository names contain neither `@` nor `:`).
fn split_image(path: &str) -> Option<(RepoName, Reference)> {
    let (repo, reference) = match path.split_once('@') {
        Some((repo, digest)) => (repo, Reference::Digest(Digest::parse(digest).ok()?)),
        None => {
            let (repo, tag) = path.rsplit_once(':')?;
            (repo, Reference::Tag(Tag::parse(tag).ok()?))
        }
    };
    Some((RepoName::parse(repo).ok()?, reference))
}

async fn image(v: &Visit<'_>, path: &str) -> ApiResult<Response<Body>> {
    let viewer = v.viewer();
    let Some((repo, reference)) = split_image(path).filter(|(r, _)| viewer.pull.allows(r.as_str()))
    else {
        return Ok(v.unknown("such image"));
    };
    let Some(img) = browse::image(v.cx.registry, &repo, &reference).await? else {
        return Ok(v.unknown("such image"));
    };
    let at = image_page::Target {
        repo: repo.as_str(),
        host: v.cx.host,
        may_delete: viewer.delete.allows(repo.as_str()),
    };
    let title = format!("{repo}@{}", img.manifest.digest);
    Ok(html(
        StatusCode::OK,
        image_page::render(&v.frame(&title), &at, &img),
    ))
}

fn login_form(v: &Visit<'_>) -> Response<Body> {
    match v.cx.access.logins() {
        true => html(StatusCode::OK, forms::login(&v.frame("Log in"), "", None)),
        false => see_other("/ui/"),
    }
}

/// The form's fields, if its CSRF token is this visitor's.
async fn checked_form(v: &Visit<'_>, body: Body) -> Option<Vec<(String, String)>> {
    let fields = form(body).await?;
    let token = field(&fields, "csrf");
    v.ui.sessions.csrf_ok(&v.cookie, token).then_some(fields)
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn expired_form(v: &Visit<'_>) -> Response<Body> {
    v.error(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form was not sent from this session's page. Reload the page and try again.",
    )
}

async fn login(v: &Visit<'_>, body: Body) -> ApiResult<Response<Body>> {
    let Some(fields) = checked_form(v, body).await else {
        return Ok(expired_form(v));
    };
    if !v.cx.access.logins() {
        return Ok(see_other("/ui/"));
    }
    let user = field(&fields, "user");
    let again = |status, message: &str| {
        html(
            status,
            forms::login(&v.frame("Log in"), user, Some(message)),
        )
    };
    Ok(
        match v.cx.access.login(user, field(&fields, "password")).await {
            LoginOutcome::In(identity) => {
                // A fresh id: whoever knew the anonymous cookie learns nothing of the session.
                let id = v.ui.sessions.login(identity);
                let mut r = see_other("/ui/");
                super::set_header(
                    &mut r,
                    http::header::SET_COOKIE,
                    &session::set_cookie(&id, v.cx.tls),
                );
                r
            }
            LoginOutcome::Wrong => {
                again(StatusCode::UNAUTHORIZED, "Invalid user name or password.")
            }
            LoginOutcome::Blocked(wait) => {
                let mut r = again(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "Too many failed logins. Try again in {} seconds.",
                        wait.as_secs().max(1)
                    ),
                );
                super::set_header(
                    &mut r,
                    http::header::RETRY_AFTER,
                    &wait.as_secs().max(1).to_string(),
                );
                r
            }
            LoginOutcome::Unavailable => again(
                StatusCode::SERVICE_UNAVAILABLE,
                "The login service is unavailable; try again shortly.",
            ),
        },
    )
}

async fn logout(v: &Visit<'_>, body: Body) -> ApiResult<Response<Body>> {
    if checked_form(v, body).await.is_none() {
        return Ok(expired_form(v));
    }
    v.ui.sessions.logout(&v.cookie);
    let mut r = see_other("/ui/");
    super::set_header(
        &mut r,
        http::header::SET_COOKIE,
        &session::clear_cookie(v.cx.tls),
    );
    Ok(r)
}

/// The repository and reference a delete names, if the viewer may pull and delete there;
/// otherwise the page that says why not.
fn delete_target(
    v: &Visit<'_>,
    repo: &str,
    reference: &str,
) -> Result<(RepoName, Reference), Box<Response<Body>>> {
    let Ok((repo, reference)) = browse::parse_target(repo, reference) else {
        return Err(Box::new(v.unknown("such image")));
    };
    Ok((deletable(v, repo, "such image")?, reference))
}

/// `repo`, if the viewer may pull and delete there; otherwise the page that says why not
/// (not found, for `what`, when they may not even pull).
fn deletable(v: &Visit<'_>, repo: RepoName, what: &str) -> Result<RepoName, Box<Response<Body>>> {
    let viewer = v.viewer();
    if !viewer.pull.allows(repo.as_str()) {
        return Err(Box::new(v.unknown(what)));
    }
    if !viewer.delete.allows(repo.as_str()) {
        return Err(Box::new(v.error(
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!("You may not delete in {repo}."),
        )));
    }
    Ok(repo)
}

async fn confirm_delete(v: &Visit<'_>, query: Option<&str>) -> ApiResult<Response<Body>> {
    let (repo, reference) = (query_param(query, "repo"), query_param(query, "ref"));
    let (repo, reference) = match delete_target(
        v,
        repo.as_deref().unwrap_or(""),
        reference.as_deref().unwrap_or(""),
    ) {
        Ok(t) => t,
        Err(page) => return Ok(*page),
    };
    let Some(m) = browse::read_manifest(v.cx.registry, &repo, &reference).await? else {
        return Ok(v.unknown("such image"));
    };
    let tags = match &reference {
        Reference::Tag(_) => Vec::new(),
        Reference::Digest(_) => browse::tags_of(v.cx.registry, &repo, &m.digest).await?,
    };
    let target = DeleteTarget {
        repo: repo.as_str(),
        reference: &reference.to_string(),
        is_tag: matches!(reference, Reference::Tag(_)),
        tags: &tags,
    };
    Ok(html(
        StatusCode::OK,
        forms::confirm_delete(&v.frame("Delete"), &target),
    ))
}

async fn delete(v: &Visit<'_>, body: Body) -> ApiResult<Response<Body>> {
    let Some(fields) = checked_form(v, body).await else {
        return Ok(expired_form(v));
    };
    let (repo, reference) = match delete_target(v, field(&fields, "repo"), field(&fields, "ref")) {
        Ok(t) => t,
        Err(page) => return Ok(*page),
    };
    match browse::delete(v.cx.registry, &v.cx.caller, &repo, &reference).await {
        Ok(()) => {
            tracing::info!(user = ?v.identity.as_ref().map(|i| &i.user), %repo, %reference, "deleted through the UI");
            Ok(see_other(&format!("/ui/repo/{repo}")))
        }
        Err(e) if e.code == Code::ManifestUnknown => Ok(v.unknown("such image")),
        Err(e) => Err(e),
    }
}

/// The repository a whole-repository delete names, if the viewer may delete it.
fn repository_target(v: &Visit<'_>, name: &str) -> Result<RepoName, Box<Response<Body>>> {
    match RepoName::parse(name) {
        Ok(repo) => deletable(v, repo, "such repository"),
        Err(_) => Err(Box::new(v.unknown("such repository"))),
    }
}

async fn confirm_delete_repository(
    v: &Visit<'_>,
    query: Option<&str>,
) -> ApiResult<Response<Body>> {
    let name = query_param(query, "repo").unwrap_or_default();
    let repo = match repository_target(v, &name) {
        Ok(r) => r,
        Err(page) => return Ok(*page),
    };
    let Some(tags) = browse::tags(v.cx.registry, &repo, 0, 0).await? else {
        return Ok(v.unknown("such repository"));
    };
    let figures = browse::repository_figures(v.cx.registry, &repo).await?;
    Ok(html(
        StatusCode::OK,
        forms::confirm_delete_repository(&v.frame("Delete"), repo.as_str(), tags.total, &figures),
    ))
}

async fn delete_repository(v: &Visit<'_>, body: Body) -> ApiResult<Response<Body>> {
    let Some(fields) = checked_form(v, body).await else {
        return Ok(expired_form(v));
    };
    let repo = match repository_target(v, field(&fields, "repo")) {
        Ok(r) => r,
        Err(page) => return Ok(*page),
    };
    match browse::delete_repository(v.cx.registry, &v.cx.caller, &repo).await {
        Ok(()) => {
            tracing::info!(user = ?v.identity.as_ref().map(|i| &i.user), %repo, "repository deleted through the UI");
            Ok(see_other("/ui/"))
        }
        Err(e) if e.code == Code::NameUnknown => Ok(v.unknown("such repository")),
        Err(e) if e.code == Code::TagImmutable => {
            Ok(v.error(StatusCode::CONFLICT, "Not deleted", &e.message))
        }
        Err(e) => Err(e),
    }
}
