//! UI sessions: a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS),
//! looked up in a server-side table with an absolute expiry; and CSRF tokens.
//!
//! Every visitor's cookie value is random. A logged-in visitor's value is also a key of
//! the table; an anonymous visitor's is not (so anonymous traffic cannot fill the table).
//! The CSRF token of a form is an HMAC of the cookie value under a per-process key: a
//! page from another origin can neither read the cookie nor compute the token, and
//! `SameSite=Strict` keeps the cookie off cross-site requests in the first place.
//! Logging in issues a fresh value (no session fixation); logging out removes it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use sha2::Sha256;
use tokio::time::Instant;

use crate::auth::Identity;

pub const COOKIE: &str = "wharf_ui";
/// How long a login lasts, whatever happens: the login is not re-checked against the
/// provider meanwhile (a removed user stays logged in until then).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);
/// The most logged-in sessions kept; the oldest go first beyond it.
const MAX_SESSIONS: u64 = 100_000;

#[derive(Clone, Debug)]
struct Session {
    identity: Identity,
    expires: Instant,
}

pub struct Sessions {
    table: Cache<String, Session>,
    key: [u8; 32],
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    pub fn new() -> Self {
        Self {
            table: Cache::builder()
                .max_capacity(MAX_SESSIONS)
                .time_to_live(SESSION_TTL)
                .build(),
            key: rand::random(),
        }
    }

    /// A new random cookie value, for an anonymous visitor.
    pub fn new_id() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    /// Logs `identity` in under a fresh cookie value, which it returns.
    pub fn login(&self, identity: Identity) -> String {
        let id = Self::new_id();
        let session = Session {
            identity,
            expires: Instant::now() + SESSION_TTL,
        };
        self.table.insert(id.clone(), session);
        id
    }

    /// The user logged in under cookie value `id`, if the session exists and has not expired.
    pub fn identity(&self, id: &str) -> Option<Identity> {
        let session = self.table.get(id)?;
        match Instant::now() < session.expires {
            true => Some(session.identity),
            false => {
                self.table.invalidate(id);
                None
            }
        }
    }

    pub fn logout(&self, id: &str) {
        self.table.invalidate(id);
    }

    /// The CSRF token that forms of the visitor with cookie value `id` carry.
    pub fn csrf(&self, id: &str) -> String {
        hex::encode(self.mac(id).finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token for cookie value `id` (compared in constant time).
    pub fn csrf_ok(&self, id: &str, token: &str) -> bool {
        match hex::decode(token) {
            Ok(bytes) => self.mac(id).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    fn mac(&self, id: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"wharf-ui-csrf\0");
        mac.update(id.as_bytes());
        mac
    }
}

/// The `Set-Cookie` value for `id`: `Secure` on TLS connections.
pub fn set_cookie(id: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/ui/; HttpOnly; SameSite=Strict{secure}")
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The UI cookie's value in a request, if it has a well-formed one.
pub fn cookie_of(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            user: "alice".into(),
            groups: vec![],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_after_their_ttl() {
        let sessions = Sessions::new();
        let id = sessions.login(alice());
        assert_eq!(sessions.identity(&id), Some(alice()));
        tokio::time::advance(SESSION_TTL - Duration::from_secs(1)).await;
        assert!(sessions.identity(&id).is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(sessions.identity(&id), None);
    }

    #[test]
    fn logout_ends_the_session_and_ids_are_fresh() {
        let sessions = Sessions::new();
        let a = sessions.login(alice());
        let b = sessions.login(alice());
        assert_ne!(a, b);
        sessions.logout(&a);
        assert_eq!(sessions.identity(&a), None);
        assert!(sessions.identity(&b).is_some());
        assert_eq!(sessions.identity(&Sessions::new_id()), None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_cookie_and_one_process() {
        let sessions = Sessions::new();
        let (a, b) = (Sessions::new_id(), Sessions::new_id());
        let token = sessions.csrf(&a);
        assert!(sessions.csrf_ok(&a, &token));
        assert!(!sessions.csrf_ok(&b, &token));
        assert!(!sessions.csrf_ok(&a, ""));
        assert!(!sessions.csrf_ok(&a, "zz"));
        assert!(
            !Sessions::new().csrf_ok(&a, &token),
            "another process's key"
        );
    }

    #[test]
    fn cookies_are_strict_http_only_and_secure_over_tls() {
        let c = set_cookie("ab", true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie("ab", false).contains("Secure"));
        let id = Sessions::new_id();
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("other=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(cookie_of(&headers), Some(id));
        headers.insert(
            http::header::COOKIE,
            format!("{COOKIE}=short").parse().unwrap(),
        );
        assert_eq!(cookie_of(&headers), None);
    }
}
