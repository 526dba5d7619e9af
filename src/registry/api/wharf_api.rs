//! wharf's own HTTP API, beside the registry's, under `/wharf/api/v1/`: what the OCI
//! Distribution spec has no endpoint for. A prefix of its own, not `/v2/<name>/`, because
//! every path under `/v2/` may be a repository name's (a repository may be called
//! `team/repositories`), and a future version of the spec may claim more of `/v2/`.
//!
//! - `DELETE /wharf/api/v1/repositories/<name>`: deletes a whole repository (needs the
//!   `delete` permission on it, and deletes being on, as for a manifest delete). Answers
//!   200 with `{"repository": name, "tags": [...]}`, the tags it had.
//! - `GET /wharf/api/v1/usage`: per repository the caller may pull (like `_catalog`), its
//!   tags, manifests, bytes and unique bytes (`{"repositories": [...]}`).
//! - `GET /wharf/api/v1/gc`: the storage's garbage collection: the schedule, the next run,
//!   whether one is running here, who holds the GC lease, and the last run (start, end, result, tags deleted, objects
//!   and bytes freed). An operator's view, so it needs what deleting in every repository
//!   does: the `delete` permission of the rule for `*`, and deletes being on.
//!
//! Errors are the registry's JSON envelope, with the same codes (401 with a challenge,
//! 403 `DENIED`, 404 `NAME_UNKNOWN`, 405 `UNSUPPORTED` when deletes are off).

use http::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::http_util::{Body, Reply};
use crate::registry::access::{Action, Need, Visibility};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::RepoName;
use crate::registry::service::Caller;
use crate::registry::Registry;

const PREFIX: &str = "/wharf/api/";
const REPOSITORIES: &str = "/wharf/api/v1/repositories/";
const USAGE: &str = "/wharf/api/v1/usage";
const GC: &str = "/wharf/api/v1/gc";

/// A parsed path of wharf's API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminRoute {
    /// `/wharf/api/v1/repositories/<name>`
    Repository(RepoName),
    /// `/wharf/api/v1/usage`
    Usage,
    /// `/wharf/api/v1/gc`
    Gc,
}

/// Whether `path` belongs to wharf's API (its errors are JSON, like the registry's).
pub fn is_api_path(path: &str) -> bool {
    path.starts_with(PREFIX)
}

/// Parses a path under `/wharf/api/` (still percent-encoded).
pub fn parse(path: &str) -> ApiResult<AdminRoute> {
    match path.trim_end_matches('/') {
        USAGE => return Ok(AdminRoute::Usage),
        GC => return Ok(AdminRoute::Gc),
        _ => {}
    }
    if let Some(name) = path.strip_prefix(REPOSITORIES) {
        let name = percent_encoding::percent_decode_str(name.trim_end_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        return RepoName::parse(&name)
            .map(AdminRoute::Repository)
            .map_err(|why| ApiError::new(Code::NameInvalid, why));
    }
    Err(ApiError::new(
        Code::NotFound,
        format!("no API endpoint at {path:?}"),
    ))
}

/// What `method` on `route` needs of the access rules.
pub fn needed(route: &AdminRoute, method: &Method) -> Need {
    match route {
        AdminRoute::Repository(repo) => Need::Repo {
            repo: repo.as_str().to_owned(),
            action: match *method {
                Method::GET | Method::HEAD => Action::Pull,
                _ => Action::Delete,
            },
        },
        // Filtered like the catalog: only what the caller may pull.
        AdminRoute::Usage => Need::Listing,
        // Only the rule for every repository (`*`) can grant it: no name matches "*"
        // except that pattern.
        AdminRoute::Gc => Need::Repo {
            repo: "*".to_owned(),
            action: Action::Delete,
        },
    }
}

impl Registry {
    /// Serves one request under `/wharf/api/`.
    pub async fn handle_wharf_api<B>(&self, req: Request<B>) -> ApiResult<Response<Body>> {
        let route = parse(req.uri().path())?;
        let caller = req
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_default();
        match (route, req.method()) {
            (AdminRoute::Repository(repo), &Method::DELETE) => {
                let gone = self.service().delete_repository(&caller, &repo).await?;
                let tags: Vec<&str> = gone.tags.iter().map(|t| t.as_str()).collect();
                Ok(Reply::new(StatusCode::OK).json(&json!({
                    "repository": repo.as_str(),
                    "tags": tags,
                })))
            }
            (AdminRoute::Usage, &Method::GET) => {
                // Without the gateway's filter, nothing: fail closed, like the catalog.
                let usage = match req.extensions().get::<Visibility>() {
                    Some(visible) => self.service().usage(Some(visible)).await?,
                    None => Vec::new(),
                };
                Ok(Reply::new(StatusCode::OK).json(&json!({ "repositories": usage })))
            }
            (AdminRoute::Gc, &Method::GET) => {
                let service = self.service();
                let report = service.gc_status().report(&**service.storage()).await?;
                Ok(Reply::new(StatusCode::OK).json(&report))
            }
            (_, method) => Err(ApiError::new(
                Code::MethodNotAllowed,
                format!("{method} is not supported on this endpoint"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_paths_parse_and_need_delete() {
        let r = parse("/wharf/api/v1/repositories/team/app").unwrap();
        assert_eq!(
            r,
            AdminRoute::Repository(RepoName::parse("team/app").unwrap())
        );
        assert_eq!(parse("/wharf/api/v1/repositories/team%2Fapp/").unwrap(), r);
        assert_eq!(
            needed(&r, &Method::DELETE),
            Need::Repo {
                repo: "team/app".into(),
                action: Action::Delete
            }
        );
        let code = |p: &str| parse(p).unwrap_err().code;
        assert_eq!(code("/wharf/api/v1/repositories/../etc"), Code::NameInvalid);
        assert_eq!(code("/wharf/api/v1/repositories/"), Code::NameInvalid);
        assert_eq!(code("/wharf/api/v1/other"), Code::NotFound);
        assert!(is_api_path("/wharf/api/v1/usage") && !is_api_path("/wharf/apiary"));
        assert_eq!(parse("/wharf/api/v1/usage").unwrap(), AdminRoute::Usage);
        assert_eq!(needed(&AdminRoute::Usage, &Method::GET), Need::Listing);
        assert_eq!(parse("/wharf/api/v1/gc/").unwrap(), AdminRoute::Gc);
        assert_eq!(
            needed(&AdminRoute::Gc, &Method::GET),
            Need::Repo {
                repo: "*".into(),
                action: Action::Delete
            }
        );
    }
}
