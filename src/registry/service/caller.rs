//! Who is asking, as the gateway saw it: what every repository operation receives, and what
//! an event's actor and request fields are made of.
//!
//! Built once per registry request, so it holds only cheap clones (header values share the
//! request's buffer); the strings an event needs are made only when one is emitted.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use http::{HeaderValue, Method};

use super::event::{Actor, RequestInfo};
use crate::registry::reference::RepoName;
use crate::registry::storage::UploadOwner;

/// The caller of a repository operation. The gateway puts one in each registry request's
/// extensions; a request without one (a test calling the engine directly) is anonymous.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The logged-in user; `None` when anonymous or when the route has no logins.
    pub user: Option<String>,
    /// The user's groups (LDAP or the config's groups table).
    pub groups: Vec<String>,
    /// The client's address (after trusted proxies).
    pub addr: Option<IpAddr>,
    /// The `Host` the client asked for (the virtual host), or the URI's authority on h2.
    pub host: Option<HeaderValue>,
    pub method: Method,
    pub user_agent: Option<HeaderValue>,
    pub request_id: RequestId,
}

impl Caller {
    /// Who an upload session in `repo` belongs to: the repository and the logged-in user.
    pub fn owner(&self, repo: &RepoName) -> UploadOwner {
        UploadOwner {
            repo: repo.clone(),
            user: self.user.clone(),
        }
    }

    /// A command or background job (`wharf retention`, a scheduled run): no user and no
    /// address; `job` names it as the user agent of its events.
    pub fn job(job: &'static str) -> Self {
        Caller {
            method: Method::DELETE,
            user_agent: Some(HeaderValue::from_static(job)),
            request_id: RequestId::next(),
            ..Caller::default()
        }
    }

    pub(crate) fn actor(&self) -> Actor {
        Actor {
            name: self.user.clone(),
            groups: self.groups.clone(),
        }
    }

    pub(crate) fn request_info(&self) -> RequestInfo {
        let text = |v: &Option<HeaderValue>| {
            v.as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        RequestInfo {
            id: self.request_id.to_string(),
            addr: self.addr.map(|a| a.to_string()).unwrap_or_default(),
            host: text(&self.host),
            method: self.method.to_string(),
            user_agent: text(&self.user_agent),
        }
    }
}

/// A request's id: a random prefix per process and a counter, so ids are unique across
/// restarts and nodes without a random draw per request (the manifest fast path runs at
/// tens of thousands of requests a second). Shown as `<16 hex digits>-<counter>`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestId(u64);

/// This process's prefix of request ids.
static PROCESS: LazyLock<u64> = LazyLock::new(|| uuid::Uuid::new_v4().as_u64_pair().0);
static NEXT: AtomicU64 = AtomicU64::new(1);

impl RequestId {
    /// A new id, unique in this process.
    pub fn next() -> Self {
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", *PROCESS, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_differ_and_share_the_process_prefix() {
        let (a, b) = (RequestId::next().to_string(), RequestId::next().to_string());
        assert_ne!(a, b);
        assert_eq!(a.split_once('-').unwrap().0, b.split_once('-').unwrap().0);
        assert_eq!(a.split_once('-').unwrap().0.len(), 16);
    }

    #[test]
    fn request_info_carries_what_the_gateway_saw() {
        let caller = Caller {
            user: Some("alice".into()),
            groups: vec!["devs".into()],
            addr: Some("192.0.2.7".parse().unwrap()),
            host: Some(HeaderValue::from_static("registry.example")),
            method: Method::PUT,
            user_agent: Some(HeaderValue::from_static("containers/5.0")),
            request_id: RequestId::next(),
        };
        let info = caller.request_info();
        assert_eq!(info.addr, "192.0.2.7");
        assert_eq!(info.host, "registry.example");
        assert_eq!(info.method, "PUT");
        assert_eq!(info.user_agent, "containers/5.0");
        assert_eq!(info.id, caller.request_id.to_string());
        assert_eq!(caller.actor().name.as_deref(), Some("alice"));
        assert_eq!(caller.actor().groups, ["devs"]);
    }
}
