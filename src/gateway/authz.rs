//! Logins and permissions for a server block: where `auth` (who is asking, what they may
//! do) meets the registry (what a request needs).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};

use super::metrics::Metrics;
use super::ratelimit::{too_many, FailedLogins};
use crate::auth::cache::LoginCache;
use crate::auth::htpasswd::Htpasswd;
use crate::auth::ldap::{Ldap, LdapSetupError};
use crate::auth::policy::{Action, Policy, RuleSpec};
use crate::auth::{AuthError, Credentials, Identity, Lookup, NotBasic, Provider};
use crate::config::{AuthConfig, ProviderConfig};
use crate::registry::access::{self, Need};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::ui::LoginOutcome;

/// How often htpasswd files are checked for changes.
const HTPASSWD_POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("{0}")]
    Htpasswd(String),
    #[error(transparent)]
    Ldap(#[from] LdapSetupError),
    #[error("access rules: {0}")]
    Policy(String),
}

/// The logins and rules of one server block, built from its config.
pub struct ServerAuth {
    challenge: String,
    providers: Vec<Arc<dyn Provider>>,
    /// Used to spend a bcrypt's worth of time on unknown users.
    htpasswd: Vec<Arc<Htpasswd>>,
    cache: LoginCache,
    policy: Arc<Policy>,
    failed_logins: Arc<FailedLogins>,
    metrics: Arc<Metrics>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ServerAuth {
    fn drop(&mut self) {
        // A reload builds a new ServerAuth; the old one's file watchers must stop.
        self.watchers.iter().for_each(|w| w.abort());
    }
}

/// A provider whose verifications (the expensive part) are counted in the metrics.
struct Counted {
    inner: Arc<dyn Provider>,
    metrics: Arc<Metrics>,
}

#[async_trait::async_trait]
impl Provider for Counted {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn lookup(&self, user: &str) -> Result<Lookup, AuthError> {
        self.inner.lookup(user).await
    }

    async fn verify(
        &self,
        creds: &Credentials,
        stored: &str,
    ) -> Result<Option<Identity>, AuthError> {
        self.metrics.login_verification();
        self.inner.verify(creds, stored).await
    }
}

impl ServerAuth {
    pub fn new(
        config: &AuthConfig,
        metrics: &Arc<Metrics>,
        failed_logins: Arc<FailedLogins>,
    ) -> Result<Self, AuthSetupError> {
        let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
        let mut htpasswd = Vec::new();
        let mut watchers = Vec::new();
        for p in &config.providers {
            match p {
                ProviderConfig::Htpasswd { path } => {
                    let file = Htpasswd::open(path)
                        .map_err(|e| AuthSetupError::Htpasswd(e.to_string()))?;
                    watchers.push(file.clone().watch(HTPASSWD_POLL));
                    htpasswd.push(file.clone());
                    providers.push(Arc::new(Counted {
                        inner: file,
                        metrics: metrics.clone(),
                    }));
                }
                ProviderConfig::Ldap(ldap) => {
                    providers.push(Arc::new(Counted {
                        inner: Arc::new(Ldap::new(ldap)?),
                        metrics: metrics.clone(),
                    }));
                }
            }
        }
        let policy = policy_of(config)?;
        for warning in policy.narrowing_warnings() {
            tracing::warn!(realm = %config.realm, "access rules: {warning}");
        }
        Ok(Self {
            challenge: format!("Basic realm=\"{}\"", config.realm),
            providers,
            htpasswd,
            cache: LoginCache::new(config.cache_ttl),
            policy: Arc::new(policy),
            failed_logins,
            metrics: metrics.clone(),
            watchers,
        })
    }

    /// Decides whether `who` (None: anonymous) may do what the request needs. Returns the
    /// mount decision, or the error to answer with.
    pub fn authorize(&self, who: Option<&Identity>, guard: &Guard) -> ApiResult<MountDecision> {
        let need = match guard {
            Guard::Open => return Ok(MountDecision::NotAsked),
            Guard::Login => {
                return match who {
                    Some(_) => Ok(MountDecision::NotAsked),
                    None => Err(self.unauthorized("authentication required")),
                }
            }
            Guard::Unfilterable => {
                return Err(ApiError::new(
                    Code::Denied,
                    "listings through an upstream cannot be filtered by the access rules, so \
                     they are refused; mark the route public = true if everyone may see them",
                ))
            }
            Guard::Rules(need) => need,
        };
        let mut mount = MountDecision::NotAsked;
        let allowed = match need {
            Need::Base => who.is_some() || !self.policy.any_needs_login(),
            Need::Listing => true,
            Need::Repo { repo, action } => self.policy.allows(who, repo, map(*action)),
            Need::Mount { repo, from } => {
                // Push on the target is required; without pull on the source the mount is
                // simply not done and an ordinary upload starts (nothing leaks).
                mount = match self.policy.allows(who, from, Action::Pull) {
                    true => MountDecision::Allowed,
                    false => MountDecision::Refused,
                };
                self.policy.allows(who, repo, Action::Push)
            }
        };
        match (allowed, who) {
            (true, _) => Ok(mount),
            (false, None) => Err(self.unauthorized("authentication required")),
            (false, Some(id)) => Err(ApiError::new(Code::Denied, denial(&id.user, need))),
        }
    }

    /// Every group of a logged-in user (the provider's and the config's table), for the
    /// registry's events.
    pub fn groups_of(&self, identity: &Identity) -> Vec<String> {
        self.policy.groups_of(identity)
    }

    /// What the caller may see in `_catalog` and `/v1/search`: repositories it may pull.
    pub fn visibility(&self, identity: Option<Identity>) -> access::Visibility {
        self.permitted(identity, access::Action::Pull)
    }

    /// The repositories where `identity` (None: anonymous) may do `action`.
    pub fn permitted(
        &self,
        identity: Option<Identity>,
        action: access::Action,
    ) -> access::Visibility {
        let policy = self.policy.clone();
        access::Visibility(Arc::new(move |repo| {
            policy.allows(identity.as_ref(), repo, map(action))
        }))
    }

    /// Checks the request's credentials, if any: `None` for an anonymous request.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        client: IpAddr,
    ) -> ApiResult<Option<Identity>> {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let creds = match value.to_str().map(Credentials::from_basic) {
            Ok(Ok(Some(creds))) => creds,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(NotBasic)) | Err(_) => {
                return Err(
                    self.unauthorized("the Authorization header is not valid Basic credentials")
                )
            }
        };
        match self.check_login(&creds, client).await {
            LoginOutcome::In(identity) => Ok(Some(identity)),
            LoginOutcome::Wrong => Err(self.unauthorized("invalid username or password")),
            LoginOutcome::Blocked(wait) => Err(too_many("too many failed logins", wait)),
            LoginOutcome::Unavailable => Err(ApiError::new(
                Code::Unavailable,
                "the login service is unavailable; try again shortly",
            )),
        }
    }

    /// Checks a user name and password (from a `Basic` header or the UI's form): refused
    /// while the failed-login limits block them, then verified (cache first), failures
    /// counted.
    pub async fn check_login(&self, creds: &Credentials, client: IpAddr) -> LoginOutcome {
        if let Some(wait) = self.failed_logins.refused(client, &creds.user) {
            tracing::warn!(%client, user = %creds.user, retry_after = ?wait, "login refused: too many failed logins");
            self.metrics.rate_limited("failed_logins");
            return LoginOutcome::Blocked(wait);
        }
        let burn_with = self.htpasswd.first().cloned();
        let password = creds.password.clone();
        let burn = move || async move {
            if let Some(h) = burn_with {
                h.verify_unknown(&password).await;
            }
        };
        match self.cache.login(&self.providers, creds, burn).await {
            Ok(Some(identity)) => {
                self.failed_logins.succeeded(client, &creds.user);
                LoginOutcome::In(identity)
            }
            Ok(None) => match self.failed_logins.failed(client, &creds.user) {
                None => {
                    tracing::warn!(%client, user = %creds.user, "login failed");
                    LoginOutcome::Wrong
                }
                Some(wait) => {
                    tracing::warn!(%client, user = %creds.user, block = ?wait, "login failed; too many failed logins, refusing logins for a while");
                    self.metrics.rate_limited("failed_logins");
                    LoginOutcome::Blocked(wait)
                }
            },
            Err(AuthError::Unavailable { provider, reason }) => {
                tracing::error!(%client, user = %creds.user, provider, reason, "login provider unavailable");
                LoginOutcome::Unavailable
            }
        }
    }

    fn unauthorized(&self, message: &str) -> ApiError {
        ApiError::new(Code::Unauthorized, message).with_header(WWW_AUTHENTICATE, &self.challenge)
    }
}

/// Checks what the server would load for `config` (htpasswd files, access rules) without
/// starting anything: what `wharf check-config` reports beyond the config file itself.
/// Returns warnings about rules that are valid but probably not meant.
pub fn validate(config: &AuthConfig) -> Result<Vec<String>, AuthSetupError> {
    for p in &config.providers {
        match p {
            ProviderConfig::Htpasswd { path } => {
                Htpasswd::open(path).map_err(|e| AuthSetupError::Htpasswd(e.to_string()))?;
            }
            // Reads the password and CA file; the directory itself is not contacted.
            ProviderConfig::Ldap(ldap) => drop(Ldap::new(ldap)?),
        }
    }
    policy_of(config).map(|p| p.narrowing_warnings())
}

fn policy_of(config: &AuthConfig) -> Result<Policy, AuthSetupError> {
    let rules = config
        .access
        .iter()
        .map(|r| RuleSpec {
            repos: r.repos.clone(),
            who: r.who.clone(),
            actions: r.actions.clone(),
        })
        .collect();
    let groups: HashMap<String, Vec<String>> = config.groups.clone().into_iter().collect();
    Policy::new(rules, groups).map_err(|e| AuthSetupError::Policy(e.to_string()))
}

/// Why a logged-in user was refused: the action and the repository, so the operator
/// reading the client's error knows which rule to look for.
fn denial(user: &str, need: &Need) -> String {
    match need {
        Need::Repo { repo, action } => {
            format!(
                "{user} may not {} on repository {repo:?}",
                map(*action).as_str()
            )
        }
        Need::Mount { repo, .. } => format!("{user} may not push on repository {repo:?}"),
        Need::Base | Need::Listing => format!("{user} may not do this"),
    }
}

/// What a request needs on a server with logins. Logins belong to the route, not to the
/// `/v2/` grammar: everything is protected unless known to be safe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Guard {
    /// Safe for anyone: the registry engine's banner, health check and `/v1/_ping`.
    Open,
    /// Any logged-in user: upstream and redirect paths that are not registry API paths, and
    /// any path nothing else claims.
    Login,
    /// A listing (`_catalog`, `/v1/search`) answered by an upstream, which wharf cannot
    /// filter by the access rules: refused.
    Unfilterable,
    /// A registry API path (on the engine, an upstream or a redirect): the access rules.
    Rules(Need),
}

/// What to do with a cross-repository mount request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountDecision {
    NotAsked,
    Allowed,
    /// The caller may not pull the source: start an ordinary upload instead.
    Refused,
}

fn map(a: access::Action) -> Action {
    match a {
        access::Action::Pull => Action::Pull,
        access::Action::Push => Action::Push,
        access::Action::Delete => Action::Delete,
    }
}
