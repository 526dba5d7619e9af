//! Where the web UI meets the pipeline: `/ui/…` on servers with `ui` on, under the rate
//! limits of the registry route `/v2/` reaches, with the server's logins and access rules
//! (and `registry.delete`) handed to the UI as an [`ui::Access`].

use std::net::IpAddr;
use std::sync::Arc;

use http::{Request, Response};

use super::authz::ServerAuth;
use super::{ratelimit, Gateway, Target, Where};
use crate::auth::{Credentials, Identity};
use crate::config::RequestClass;
use crate::http_util::Body;
use crate::registry::access::{Action, Visibility};
use crate::registry::error::ApiResult;
use crate::registry::Registry;
use crate::ui::{self, LoginOutcome, Ui, Viewer};

/// The UI of one server block, and the registry route it shows.
pub(super) struct UiSite {
    ui: Ui,
    /// Index of the registry route that `/v2/` reaches, in the server's route table.
    route: usize,
    registry: Arc<Registry>,
}

impl UiSite {
    /// The UI for a server whose routes (longest prefix first) are `routes`, if `/v2/`
    /// reaches a registry among them (config validation made sure it does when `ui` is on).
    pub(super) fn new(routes: &[super::Route]) -> Option<Self> {
        let route = routes.iter().position(|r| "/v2/".starts_with(&r.prefix))?;
        match &routes[route].target {
            Target::Registry(registry) => Some(Self {
                ui: Ui::new(),
                route,
                registry: registry.clone(),
            }),
            Target::Upstream(_) | Target::Mirror(_) | Target::Redirect { .. } => None,
        }
    }
}

/// Whether `path` is the UI's.
pub(super) fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// Whether a request for `/` comes from a browser, which is better served by the UI than by
/// the API banner (`curl` and health checks accept `*/*`, not `text/html`).
pub(super) fn wants_html<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::GET
        && req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

/// `host[:port]` as the client reached this server, for the pull commands the UI shows.
pub(super) fn display_host<B>(req: &Request<B>, conn: &super::ConnInfo) -> String {
    req.headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| conn.local.to_string())
}

impl Gateway {
    /// Serves a UI request on `server` (whose UI is `site`), noting route and user in `at`.
    pub(super) async fn serve_ui(
        &self,
        req: Request<Body>,
        server: usize,
        site: &UiSite,
        host: &str,
        tls: bool,
        at: &mut Where,
    ) -> ApiResult<Response<Body>> {
        at.route = Some(site.route);
        let route = &self.routes[server][site.route];
        let auth = self.auth[server].as_ref();
        let identity = site.ui.identity_of(req.headers());
        at.user = identity.as_ref().map(|i| i.user.clone());
        let facts = ratelimit::Facts {
            client: at.client,
            user: at.user.as_deref(),
            server,
            class: Some(RequestClass::Manifests),
        };
        self.limits.check(&route.limits, &facts)?;
        let groups = match (auth, &identity) {
            (Some(auth), Some(identity)) => auth.groups_of(identity),
            _ => Vec::new(),
        };
        let caller = super::caller_of(&req, at, groups);
        let access = UiAccess {
            auth,
            deletes: self.delete.unwrap_or(auth.is_some()),
            client: at.client,
        };
        let cx = ui::Context {
            registry: &site.registry,
            access: &access,
            host,
            tls,
            caller,
        };
        site.ui.handle(req, &cx).await
    }
}

/// The server's logins and rules for one UI request.
struct UiAccess<'a> {
    auth: Option<&'a ServerAuth>,
    /// Whether deletes are granted at all (`registry.delete`, else: when there are logins).
    deletes: bool,
    client: IpAddr,
}

fn everything() -> Visibility {
    Visibility(Arc::new(|_| true))
}

fn nothing() -> Visibility {
    Visibility(Arc::new(|_| false))
}

#[async_trait::async_trait]
impl ui::Access for UiAccess<'_> {
    fn logins(&self) -> bool {
        self.auth.is_some()
    }

    fn viewer(&self, identity: Option<&Identity>) -> Viewer {
        let user = identity.map(|i| i.user.clone());
        let Some(auth) = self.auth else {
            // Without logins everyone may do everything the registry allows.
            return Viewer {
                user,
                pull: everything(),
                delete: if self.deletes {
                    everything()
                } else {
                    nothing()
                },
            };
        };
        Viewer {
            user,
            pull: auth.permitted(identity.cloned(), Action::Pull),
            delete: match self.deletes {
                true => auth.permitted(identity.cloned(), Action::Delete),
                false => nothing(),
            },
        }
    }

    async fn login(&self, user: &str, password: &str) -> LoginOutcome {
        let Some(auth) = self.auth else {
            return LoginOutcome::Wrong;
        };
        if user.is_empty() {
            return LoginOutcome::Wrong;
        }
        let creds = Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        };
        auth.check_login(&creds, self.client).await
    }
}
