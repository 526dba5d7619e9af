//! What a request needs to be allowed: the registry's side of authorization. The gateway
//! maps these to its access rules; the registry sees who is asking only as the
//! [`Caller`](super::service::Caller) of its operations and the [`Visibility`] filter for
//! listings.

use std::sync::Arc;

use http::Method;

use super::route::Route;
use crate::http_util::query_param;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

/// The permission a request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Need {
    /// `GET /v2/`: the login check docker does first.
    Base,
    /// A listing (`_catalog`, `/v1/search`): allowed, filtered by [`Visibility`].
    Listing,
    /// `action` on repository `repo`.
    Repo { repo: String, action: Action },
    /// A cross-repository mount: push on `repo` and pull on `from`.
    Mount { repo: String, from: String },
}

/// Decides what `method` on `route` needs; `query` is the request's query string.
pub fn needed(route: &Route, method: &Method, query: Option<&str>) -> Need {
    let Some(repo) = route.repo() else {
        return match route {
            Route::Catalog => Need::Listing,
            _ => Need::Base,
        };
    };
    let repo = repo.as_str().to_owned();
    if let (Route::UploadStart(_), Some(from)) = (route, query_param(query, "from")) {
        if query_param(query, "mount").is_some() {
            return Need::Mount { repo, from };
        }
    }
    let action = match (route, method) {
        (_, &Method::GET | &Method::HEAD) => Action::Pull,
        // Cancelling an upload is part of pushing, not deleting content.
        (Route::Upload(..), &Method::DELETE) => Action::Push,
        (_, &Method::DELETE) => Action::Delete,
        _ => Action::Push,
    };
    Need::Repo { repo, action }
}

/// Which repositories a caller may see in listings; put in the request's extensions by the
/// gateway. Without it, everything is visible.
#[derive(Clone)]
pub struct Visibility(pub Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl Visibility {
    pub fn allows(&self, repo: &str) -> bool {
        (self.0)(repo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::route::parse;

    fn need(method: Method, path: &str, query: Option<&str>) -> Need {
        needed(&parse(path).unwrap(), &method, query)
    }

    #[test]
    fn methods_map_to_actions() {
        let d = format!("sha256:{}", "a".repeat(64));
        let repo = |action| Need::Repo {
            repo: "t/a".into(),
            action,
        };
        assert_eq!(need(Method::GET, "/v2/", None), Need::Base);
        assert_eq!(need(Method::GET, "/v2/_catalog", None), Need::Listing);
        assert_eq!(
            need(Method::HEAD, "/v2/t/a/manifests/1", None),
            repo(Action::Pull)
        );
        assert_eq!(
            need(Method::GET, &format!("/v2/t/a/blobs/{d}"), None),
            repo(Action::Pull)
        );
        assert_eq!(
            need(Method::PUT, "/v2/t/a/manifests/1", None),
            repo(Action::Push)
        );
        assert_eq!(
            need(Method::POST, "/v2/t/a/blobs/uploads/", None),
            repo(Action::Push)
        );
        assert_eq!(
            need(Method::DELETE, "/v2/t/a/manifests/1", None),
            repo(Action::Delete)
        );
        let id = uuid::Uuid::new_v4();
        assert_eq!(
            need(Method::DELETE, &format!("/v2/t/a/blobs/uploads/{id}"), None),
            repo(Action::Push)
        );
        assert_eq!(
            need(Method::GET, "/v2/t/a/tags/list", None),
            repo(Action::Pull)
        );
        let q = format!("mount={d}&from=t/b");
        assert_eq!(
            need(Method::POST, "/v2/t/a/blobs/uploads/", Some(&q)),
            Need::Mount {
                repo: "t/a".into(),
                from: "t/b".into()
            }
        );
    }
}
