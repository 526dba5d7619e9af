//! The upstream registry as a client sees it: requests to its `/v2/` API over the shared
//! https client ([`crate::http_client`]: system roots plus the route's `ca_file`), with its
//! login: anonymous, `Basic`, or the Docker token flow (`token.rs`), whichever its
//! `WWW-Authenticate` challenge asks for. The scheme it asked for is remembered, so later
//! requests carry credentials at once instead of collecting a 401 each time.

use std::io;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, LOCATION, USER_AGENT, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::challenge::{self, Challenge};
use super::token::Tokens;
use crate::config::MirrorConfig;
use crate::http_client::HttpClient;
use crate::http_util::Chain;

/// Requests per call at most: without credentials (or with cached ones), with what the
/// challenge asked for, and with a renewed token.
const MAX_SENDS: usize = 3;

/// Redirects followed per request (a CDN may add one of its own).
const MAX_REDIRECTS: usize = 3;

const WHARF_AGENT: &str = concat!("wharf/", env!("CARGO_PKG_VERSION"), " (mirror)");

/// Why the upstream could not answer. Logged where it happens; clients get a generic error.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("no answer in time")]
    Timeout,
    #[error("login refused: {0}")]
    Auth(String),
    #[error("answered {0}")]
    Status(StatusCode),
    /// The body broke off, or its bytes are not what their digest says.
    #[error("{0}")]
    Body(String),
}

/// One upstream registry with its login and token cache.
pub struct UpstreamRegistry {
    pub(super) client: HttpClient,
    /// `https://host[:port]`, no trailing slash.
    base: String,
    /// User and password (read from `password_file` at start-up and on reload).
    login: Option<(String, String)>,
    pub(super) tokens: Tokens,
    pub(super) timeout: Duration,
    /// The challenge the registry last answered with, so the next request can carry the
    /// right credentials at once.
    scheme: Mutex<Option<Challenge>>,
}

impl UpstreamRegistry {
    /// Reads the CA and password files: call it at start-up or reload.
    pub fn new(config: &MirrorConfig) -> io::Result<Self> {
        let login = match &config.login {
            None => None,
            Some(l) => {
                let text = std::fs::read_to_string(&l.password_file).map_err(|e| {
                    io::Error::other(format!("password_file {}: {e}", l.password_file.display()))
                })?;
                let password = text.trim_end_matches(['\r', '\n']).to_owned();
                Some((l.username.clone(), password))
            }
        };
        let base = config.url.to_string().trim_end_matches('/').to_owned();
        Ok(Self {
            client: HttpClient::new(config.ca_file.as_deref())?,
            base,
            login,
            tokens: Tokens::default(),
            timeout: config.timeout,
            scheme: Mutex::new(None),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub(super) fn basic_header(&self) -> Option<String> {
        let (user, password) = self.login.as_ref()?;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Some(format!("Basic {encoded}"))
    }

    /// Sends `method path` (`/v2/...`) for a pull of repository `remote`, logging in as the
    /// registry asks. Returns any answer but 401; the body streams.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        accept: &[&str],
        remote: &str,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let scope = format!("repository:{remote}:pull");
        let mut auth = self.known_auth(&scope).await?;
        // The answer to a challenge, then once more: a token the registry refuses (expired
        // early, revoked, or cached across a change) is replaced by a new one, once.
        for tries_left in (0..MAX_SENDS).rev() {
            let response = self.send(&method, path, accept, auth.as_deref()).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            if tries_left == 0 {
                break;
            }
            let challenges: Vec<Challenge> = response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(challenge::parse)
                .collect();
            let bearer = challenges.iter().find(|c| c.scheme == "bearer");
            let basic = challenges.iter().find(|c| c.scheme == "basic");
            auth = match (bearer, basic) {
                (Some(c), _) => {
                    // A cached token the registry refuses (expired early, revoked): renew.
                    self.tokens.forget(&scope);
                    let token = self.fetch_token(c, &scope).await?;
                    self.remember(c);
                    Some(format!("Bearer {token}"))
                }
                (None, Some(c)) => {
                    let basic = self.basic_header().ok_or_else(|| {
                        UpstreamError::Auth(format!(
                            "{} asks for a login; set username and password_file on the route",
                            self.base
                        ))
                    })?;
                    self.remember(c);
                    Some(basic)
                }
                (None, None) => {
                    return Err(UpstreamError::Auth(format!(
                        "{} answered 401 without a Basic or Bearer challenge",
                        self.base
                    )))
                }
            };
        }
        Err(UpstreamError::Auth(format!(
            "{} refused the credentials for {path}",
            self.base
        )))
    }

    fn remember(&self, c: &Challenge) {
        *self.scheme.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
    }

    /// Credentials for a request, from what the registry asked for last time.
    async fn known_auth(&self, scope: &str) -> Result<Option<String>, UpstreamError> {
        let known = self
            .scheme
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match known {
            None => Ok(None),
            Some(c) if c.scheme == "basic" => Ok(self.basic_header()),
            Some(c) => {
                let token = match self.tokens.get(scope) {
                    Some(t) => t,
                    None => self.fetch_token(&c, scope).await?,
                };
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        accept: &[&str],
        auth: Option<&str>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let url = format!("{}{path}", self.base);
        let response = self.send_url(method, &url, accept, auth).await?;
        self.follow(response, method, accept).await
    }

    /// Follows redirects: Docker Hub, ghcr.io and quay.io send blob GETs to a CDN or a
    /// presigned store URL. Those URLs carry their own authorization, so wharf's
    /// credentials stay with the registry.
    async fn follow(
        &self,
        mut response: Response<Incoming>,
        method: &Method,
        accept: &[&str],
    ) -> Result<Response<Incoming>, UpstreamError> {
        for _ in 0..MAX_REDIRECTS {
            if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED
            {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or(UpstreamError::Status(response.status()))?;
            let url = match location.starts_with('/') {
                true => format!("{}{location}", self.base),
                false => location.to_owned(),
            };
            response = self.send_url(method, &url, accept, None).await?;
        }
        Err(UpstreamError::Status(response.status()))
    }

    async fn send_url(
        &self,
        method: &Method,
        url: &str,
        accept: &[&str],
        auth: Option<&str>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(url)
            .header(USER_AGENT, WHARF_AGENT);
        if !accept.is_empty() {
            req = req.header(ACCEPT, accept.join(", "));
        }
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| UpstreamError::Unreachable(format!("{url}: {e}")))?;
        self.client
            .open(req, self.timeout)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::TimedOut => UpstreamError::Timeout,
                _ => UpstreamError::Unreachable(format!("{url}: {}", Chain(&e))),
            })
    }
}
