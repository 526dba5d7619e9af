//! The Docker token flow: a `Bearer` challenge names a token service (`realm`, `service`,
//! `scope`); wharf asks it for a token (with the upstream login as Basic credentials, or
//! anonymously), keeps the token per scope until shortly before it expires, and asks again
//! when the registry refuses it (a 401 on a cached token).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

use super::challenge::Challenge;
use super::upstream::{UpstreamError, UpstreamRegistry};

/// Tokens without `expires_in` last 60 s (the token spec's default).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// A token is renewed this long before it expires, so it does not die on the way.
const MARGIN: Duration = Duration::from_secs(10);
/// Token answers are small JSON documents.
const MAX_TOKEN_ANSWER: usize = 64 << 10;

/// Tokens by scope.
#[derive(Default)]
pub struct Tokens {
    by_scope: Mutex<HashMap<String, (String, Instant)>>,
}

impl Tokens {
    /// A cached token for `scope` that has not expired.
    pub fn get(&self, scope: &str) -> Option<String> {
        let map = self.by_scope.lock().unwrap_or_else(|p| p.into_inner());
        map.get(scope)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    pub fn forget(&self, scope: &str) {
        let mut map = self.by_scope.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(scope);
    }

    fn put(&self, scope: &str, token: String, lifetime: Duration) {
        let until = Instant::now() + lifetime.saturating_sub(MARGIN);
        let mut map = self.by_scope.lock().unwrap_or_else(|p| p.into_inner());
        // Expired entries go whenever one is added, so the map stays as small as the set
        // of repositories pulled within a token's lifetime.
        let now = Instant::now();
        map.retain(|_, (_, u)| *u > now);
        map.insert(scope.to_owned(), (token, until));
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl UpstreamRegistry {
    /// Fetches a token for `scope` from the service a `Bearer` challenge names, caches it
    /// and returns it.
    pub(super) async fn fetch_token(
        &self,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let realm = challenge
            .param("realm")
            .ok_or_else(|| UpstreamError::Auth("the Bearer challenge has no realm".into()))?;
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = challenge.param("service") {
                query.append_pair("service", service);
            }
            // The scope asked for, not the challenge's: the challenge of `/v2/` has none.
            query.append_pair("scope", scope);
            query.finish()
        };
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{query}");
        let mut req = http::Request::get(&url);
        if let Some(basic) = self.basic_header() {
            req = req.header(http::header::AUTHORIZATION, basic);
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| UpstreamError::Auth(format!("token realm {realm:?}: {e}")))?;
        let response = self
            .client
            .open(req, self.timeout)
            .await
            .map_err(|e| UpstreamError::Unreachable(format!("token service {realm}: {e}")))?;
        let status = response.status();
        let body = tokio::time::timeout(
            self.timeout,
            http_body_util::Limited::new(response.into_body(), MAX_TOKEN_ANSWER).collect(),
        )
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(|e| UpstreamError::Unreachable(format!("token service {realm}: {e}")))?
        .to_bytes();
        if !status.is_success() {
            return Err(UpstreamError::Auth(format!(
                "token service {realm} answered {status}"
            )));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| UpstreamError::Auth(format!("token service {realm}: {e}")))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UpstreamError::Auth(format!("token service {realm} sent no token")))?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        self.tokens.put(scope, token.clone(), lifetime);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokens_last_until_shortly_before_they_expire() {
        let tokens = Tokens::default();
        tokens.put("repository:a:pull", "t1".into(), Duration::from_secs(300));
        assert_eq!(tokens.get("repository:a:pull").as_deref(), Some("t1"));
        assert_eq!(tokens.get("repository:b:pull"), None);
        tokio::time::advance(Duration::from_secs(289)).await;
        assert_eq!(tokens.get("repository:a:pull").as_deref(), Some("t1"));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(tokens.get("repository:a:pull"), None);
        tokens.put("repository:a:pull", "t2".into(), Duration::from_secs(60));
        tokens.forget("repository:a:pull");
        assert_eq!(tokens.get("repository:a:pull"), None);
    }
}
