//! Who is asking: Basic credentials, the providers that verify them (htpasswd, LDAP),
//! the verified-login cache, and the access rules that say what each principal may do.
//!
//! `auth` knows nothing of the registry: the gateway asks it "may this identity do this
//! action on this repository name?" with plain strings.

pub mod cache;
mod hashing;
pub mod htpasswd;
pub mod ldap;
pub mod policy;

use async_trait::async_trait;

/// Credentials from an `Authorization: Basic` header.
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

// Never print a password, not even in debug output.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// An `Authorization` header that is not Basic credentials wharf can read.
#[derive(Debug, PartialEq, Eq)]
pub struct NotBasic;

impl Credentials {
    /// Parses an `Authorization` header value. `Ok(None)` for empty credentials (no user and
    /// no password, `Basic Og==`): podman and skopeo send those after a `/v2/` challenge
    /// when they have none, so they mean anonymous. A password without a user is an error.
    pub fn from_basic(header: &str) -> Result<Option<Self>, NotBasic> {
        use base64::Engine as _;
        let (scheme, rest) = header.trim().split_once(' ').ok_or(NotBasic)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(NotBasic);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| NotBasic)?;
        let text = String::from_utf8(decoded).map_err(|_| NotBasic)?;
        let (user, password) = text.split_once(':').ok_or(NotBasic)?;
        match (user.is_empty(), password.is_empty()) {
            (true, true) => Ok(None),
            (true, false) => Err(NotBasic),
            (false, _) => Ok(Some(Self {
                user: user.to_owned(),
                password: password.to_owned(),
            })),
        }
    }
}

/// A verified user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// Group names (from LDAP, or the config's groups table), without the `group:` prefix.
    pub groups: Vec<String>,
}

/// What a provider found.
pub enum Lookup {
    /// The provider has no such user; the next provider may.
    UnknownUser,
    /// The provider knows the user; `stored` is what the password is checked against (the
    /// htpasswd hash, or the LDAP DN). It goes into the cache key, so a changed or deleted
    /// entry can never be matched by an old cache entry.
    Known { stored: String },
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The backend (e.g. an LDAP server) cannot be asked right now; the client gets 503.
    #[error("{provider} is unavailable: {reason}")]
    Unavailable { provider: String, reason: String },
}

/// A source of users. `lookup` must be cheap (no password hashing); `verify` does the
/// expensive part and is only called on a cache miss.
#[async_trait]
pub trait Provider: Send + Sync {
    fn name(&self) -> &str;
    async fn lookup(&self, user: &str) -> Result<Lookup, AuthError>;
    /// Checks `creds` against the entry `stored` that `lookup` returned. Implementations
    /// must take the same time for wrong passwords as for right ones.
    async fn verify(
        &self,
        creds: &Credentials,
        stored: &str,
    ) -> Result<Option<Identity>, AuthError>;
}

#[cfg(test)]
mod tests {
    use super::Credentials;

    #[test]
    fn basic_headers_parse() {
        let c = Credentials::from_basic("Basic YWxpY2U6czNjcjN0OndpdGg6Y29sb25z")
            .unwrap()
            .unwrap();
        assert_eq!(c.user, "alice");
        assert_eq!(c.password, "s3cr3t:with:colons");
        assert!(Credentials::from_basic("Bearer abc").is_err());
        assert!(Credentials::from_basic("Basic !!!").is_err());
        assert!(Credentials::from_basic("Basic OnB3").is_err(), "empty user");
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn empty_basic_credentials_are_anonymous() {
        // What podman and skopeo send after a challenge when they have no credentials.
        assert_eq!(
            Credentials::from_basic("Basic Og==").map(|c| c.is_none()),
            Ok(true)
        );
        assert_eq!(
            Credentials::from_basic("basic  Og== ").map(|c| c.is_none()),
            Ok(true)
        );
    }
}

#[cfg(test)]
mod properties {
    use crate::invariants;
    use base64::Engine as _;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn credentials_read_back_the_same_when_written_as_basic(
            scheme in "(Basic|basic|BASIC|Bearer|)",
            space in "[ \t]{0,2}",
            text in prop_oneof!["[a-z:]{0,4}:[ -~]{0,6}", any::<String>()],
            raw in proptest::option::of("[A-Za-z0-9+/= ]{0,12}"),
        ) {
            let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
            invariants::authorization(&format!("{scheme}{space} {}", raw.unwrap_or(encoded)));
        }
    }
}
