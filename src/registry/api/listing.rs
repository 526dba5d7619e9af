//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, both paginated with `n` and `last`
//! and a `Link` header pointing at the next page.

use http::header::LINK;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::json;

use crate::http_util::{query_param, Body, Reply};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::reference::RepoName;
use crate::registry::Registry;

/// The most entries one page returns, whatever `n` asks for.
const MAX_PAGE: usize = 10_000;

impl Registry {
    pub(super) async fn tags(&self, repo: &RepoName, req: &Parts) -> ApiResult<Response<Body>> {
        let tags = self.service().list_tags(repo).await?;
        let names: Vec<String> = tags.iter().map(|t| t.as_str().to_owned()).collect();
        let page = Page::of(req.uri.query(), names)?;
        let link = page.next_link(&format!("/v2/{repo}/tags/list"));
        let reply = Reply::new(StatusCode::OK);
        let reply = match link {
            Some(l) => reply.header(LINK, l),
            None => reply,
        };
        Ok(reply.json(&json!({ "name": repo.as_str(), "tags": page.items })))
    }

    pub(super) async fn catalog(&self, req: &Parts) -> ApiResult<Response<Body>> {
        let names = self.visible_repositories(req).await?;
        let page = Page::of(req.uri.query(), names)?;
        let reply = Reply::new(StatusCode::OK);
        let reply = match page.next_link("/v2/_catalog") {
            Some(l) => reply.header(LINK, l),
            None => reply,
        };
        Ok(reply.json(&json!({ "repositories": page.items })))
    }
}

/// One page of a sorted list.
struct Page {
    items: Vec<String>,
    n: usize,
    more: bool,
}

impl Page {
    /// Takes the entries after `last`, at most `n` of them, from `sorted`.
    fn of(query: Option<&str>, sorted: Vec<String>) -> ApiResult<Self> {
        let n = match query_param(query, "n") {
            None => MAX_PAGE,
            Some(n) => n.parse::<usize>().map_err(|_| {
                ApiError::new(
                    Code::PaginationNumberInvalid,
                    "n must be a non-negative integer",
                )
            })?,
        }
        .min(MAX_PAGE);
        let last = query_param(query, "last");
        let mut rest: Vec<String> = match &last {
            Some(last) => sorted.into_iter().filter(|s| s > last).collect(),
            None => sorted,
        };
        let more = rest.len() > n;
        rest.truncate(n);
        Ok(Self {
            items: rest,
            n,
            more,
        })
    }

    fn next_link(&self, path: &str) -> Option<String> {
        let last = self.items.last().filter(|_| self.more)?;
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
        Some(format!("<{path}?n={}&last={last}>; rel=\"next\"", self.n))
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    fn list() -> Vec<String> {
        ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pages_follow_last_and_n() {
        let p = Page::of(Some("n=2"), list()).unwrap();
        assert_eq!(p.items, ["a", "b"]);
        assert_eq!(p.next_link("/x").unwrap(), "</x?n=2&last=b>; rel=\"next\"");
        let p = Page::of(Some("n=2&last=b"), list()).unwrap();
        assert_eq!(p.items, ["c", "d"]);
        assert!(p.next_link("/x").is_none());
        assert!(Page::of(Some("n=0"), list()).unwrap().items.is_empty());
        assert!(Page::of(Some("n=-1"), list()).is_err());
    }
}
