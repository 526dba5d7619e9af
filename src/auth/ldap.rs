//! LDAP logins (OpenLDAP, Active Directory, …) with ldap3.
//!
//! `lookup` binds as the service account and searches for the user's entry (cheap: no
//! password is checked); `verify` binds as that entry's DN with the user's password on a
//! connection of its own, then reads the user's groups with the service account. A backend
//! that cannot be reached in time is `AuthError::Unavailable` (503), never "wrong password".

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};

use super::{AuthError, Credentials, Identity, Lookup, Provider};
use crate::config::{GroupSource, LdapConfig, PasswordSource};

/// Service-bound connections kept for reuse; more concurrent lookups open extra ones.
const POOL_MAX: usize = 4;

/// LDAP result codes that mean "these credentials are not good" rather than "the directory
/// has a problem": invalidCredentials (49), inappropriateAuthentication (48, e.g. a DN
/// without a password), and AD's unwillingToPerform (53) for disabled accounts.
const REJECTED: [u32; 3] = [48, 49, 53];

#[derive(Debug, thiserror::Error)]
pub enum LdapSetupError {
    #[error(
        "ldap bind_password_file {path:?} cannot be read ({cause}); fix its path or permissions"
    )]
    PasswordFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "ldap bind_password_env {var:?} is not set (or not UTF-8); set it in wharf's environment"
    )]
    PasswordEnv { var: String },
    #[error("ldap ca_file {path:?}: {reason}; give a PEM file with the CA certificate(s)")]
    CaFile { path: PathBuf, reason: String },
}

pub struct Ldap {
    name: String,
    config: LdapConfig,
    /// The service account's password, read once at start-up; never logged.
    password: String,
    /// Set when `ca_file` is; otherwise ldap3 uses the system's roots.
    tls: Option<Arc<rustls::ClientConfig>>,
    pool: Mutex<Vec<ldap3::Ldap>>,
    /// User name → (DN, when it was found). Fresh entries spare a search per request (a
    /// 30-layer pull is 60 requests); older ones are used only while the directory is
    /// unreachable, so users whose logins are still cached keep working through an outage.
    known: moka::sync::Cache<String, (String, Instant)>,
}

/// How long a found DN is used without asking the directory again.
const LOOKUP_FRESH: Duration = Duration::from_secs(60);
/// How long a found DN may stand in during an outage: the default login-cache TTL, past
/// which the login would need a bind (and so the directory) anyway.
const LOOKUP_STALE: Duration = Duration::from_secs(300);

impl Ldap {
    pub fn new(config: &LdapConfig) -> Result<Self, LdapSetupError> {
        let password = match &config.bind_password {
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map_err(|cause| LdapSetupError::PasswordFile {
                    path: path.clone(),
                    cause,
                })?
                // Editors and `echo` add a newline that is not part of the password.
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            PasswordSource::Env(var) => {
                std::env::var(var).map_err(|_| LdapSetupError::PasswordEnv { var: var.clone() })?
            }
        };
        let tls = config.ca_file.as_deref().map(tls_config).transpose()?;
        Ok(Self {
            name: format!("ldap {}", config.url),
            config: config.clone(),
            password,
            tls,
            pool: Mutex::new(Vec::new()),
            known: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LOOKUP_STALE)
                .build(),
        })
    }

    /// A new connection (not yet bound), under the connect timeout as a whole: TCP, TLS and
    /// StartTLS included.
    async fn connect(&self) -> Result<ldap3::Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.connect_timeout)
            .set_starttls(self.config.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let connecting = LdapConnAsync::with_settings(settings, &self.config.url);
        let (conn, ldap) = tokio::time::timeout(self.config.connect_timeout, connecting).await??;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    async fn service_connection(&self) -> Result<ldap3::Ldap, LdapError> {
        let mut ldap = self.connect().await?;
        ldap.with_timeout(self.config.timeout)
            .simple_bind(&self.config.bind_dn, &self.password)
            .await?
            .success()?;
        Ok(ldap)
    }

    /// Runs `op` on a service-bound connection. A pooled connection may have died (server
    /// restart, idle timeout), so a failure on one is retried once on a fresh connection.
    async fn with_service<T, F, Fut>(&self, op: F) -> Result<T, LdapError>
    where
        F: Fn(ldap3::Ldap) -> Fut,
        Fut: Future<Output = Result<T, LdapError>>,
    {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        if let Some(conn) = pooled {
            match op(conn.clone()).await {
                Ok(v) => {
                    self.give_back(conn);
                    return Ok(v);
                }
                Err(e) => {
                    tracing::debug!(provider = %self.name, error = %e, "pooled LDAP connection failed; retrying on a new one")
                }
            }
        }
        let conn = self.service_connection().await?;
        let v = op(conn.clone()).await?;
        self.give_back(conn);
        Ok(v)
    }

    fn give_back(&self, conn: ldap3::Ldap) {
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < POOL_MAX {
                pool.push(conn);
            }
        }
    }

    /// Searches `base` (subtree) with `filter`, returning the entries (not referrals).
    async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, LdapError> {
        let timeout = self.config.timeout;
        self.with_service(|mut ldap| async move {
            let (entries, _) = ldap
                .with_timeout(timeout)
                .search(base, Scope::Subtree, filter, attrs.to_vec())
                .await?
                .success()?;
            Ok(entries
                .into_iter()
                .filter(|e| !e.is_ref() && !e.is_intermediate())
                .map(SearchEntry::construct)
                .collect())
        })
        .await
    }

    async fn groups(&self, user: &str, dn: &str) -> Result<Vec<String>, LdapError> {
        let mut names = match &self.config.groups {
            GroupSource::None => Vec::new(),
            GroupSource::Attribute(attr) => {
                let timeout = self.config.timeout;
                let entries = self
                    .with_service(|mut ldap| async move {
                        let (entries, _) = ldap
                            .with_timeout(timeout)
                            .search(dn, Scope::Base, "(objectClass=*)", vec![attr.as_str()])
                            .await?
                            .success()?;
                        Ok(entries)
                    })
                    .await?;
                entries
                    .into_iter()
                    .map(SearchEntry::construct)
                    .flat_map(|e| {
                        // Attribute names are case-insensitive (memberOf, memberof).
                        e.attrs
                            .into_iter()
                            .filter(|(k, _)| k.eq_ignore_ascii_case(attr))
                            .flat_map(|(_, v)| v)
                    })
                    .filter_map(|group_dn| first_rdn_value(&group_dn))
                    .collect()
            }
            GroupSource::Search {
                base_dn,
                filter,
                name_attribute,
            } => {
                let filter = fill_filter(filter, &[("{dn}", dn), ("{user}", user)]);
                self.search(base_dn, &filter, &[name_attribute.as_str()])
                    .await?
                    .into_iter()
                    .filter_map(|e| {
                        e.attrs
                            .into_iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name_attribute))
                            .and_then(|(_, v)| v.into_iter().next())
                    })
                    .collect()
            }
        };
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn unavailable(&self, e: LdapError) -> AuthError {
        AuthError::Unavailable {
            provider: self.name.clone(),
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl Provider for Ldap {
    fn name(&self) -> &str {
        &self.name
    }

    async fn lookup(&self, user: &str) -> Result<Lookup, AuthError> {
        // Escaping makes `*`, `(`, `)` and `\` literal, so a name like `*)(uid=*` cannot
        // widen the filter to match someone else.
        let filter = fill_filter(&self.config.user_filter, &[("{user}", user)]);
        let known = self.known.get(user);
        if let Some((dn, at)) = &known {
            if at.elapsed() < LOOKUP_FRESH {
                return Ok(Lookup::Known { stored: dn.clone() });
            }
        }
        // "1.1" asks for no attributes: only the DN is needed.
        let mut found = match self.search(&self.config.base_dn, &filter, &["1.1"]).await {
            Ok(found) => found,
            Err(e) => {
                let error = self.unavailable(e);
                return match known {
                    // The login cache may still vouch for this user; a login it does not
                    // hold needs a bind, which fails as unavailable in `verify`.
                    Some((dn, _)) => {
                        tracing::warn!(provider = %self.name, user, %error, "directory unreachable; using the user's last known entry");
                        Ok(Lookup::Known { stored: dn })
                    }
                    None => Err(error),
                };
            }
        };
        if found.len() != 1 {
            self.known.invalidate(user);
        }
        match found.len() {
            0 => Ok(Lookup::UnknownUser),
            1 => {
                let dn = found.remove(0).dn;
                self.known
                    .insert(user.to_owned(), (dn.clone(), Instant::now()));
                Ok(Lookup::Known { stored: dn })
            }
            n => {
                // Guessing which entry is meant could log someone in as the wrong person.
                tracing::warn!(provider = %self.name, user, entries = n, "LDAP user filter matches several entries; refusing the login");
                Ok(Lookup::UnknownUser)
            }
        }
    }

    async fn verify(
        &self,
        creds: &Credentials,
        stored: &str,
    ) -> Result<Option<Identity>, AuthError> {
        // A simple bind with an empty password is an unauthenticated bind, which servers
        // answer with success (RFC 4513 5.1.2).
        if creds.password.is_empty() {
            return Ok(None);
        }
        // A bind changes the connection's identity, so the user never borrows a pooled one.
        let mut ldap = self.connect().await.map_err(|e| self.unavailable(e))?;
        let bound = ldap
            .with_timeout(self.config.timeout)
            .simple_bind(stored, &creds.password)
            .await;
        // Best effort: the connection is dropped either way.
        let _ = ldap.unbind().await;
        let result = bound.map_err(|e| self.unavailable(e))?;
        if REJECTED.contains(&result.rc) {
            return Ok(None);
        }
        result.success().map_err(|e| self.unavailable(e))?;
        let groups = self
            .groups(&creds.user, stored)
            .await
            .map_err(|e| self.unavailable(e))?;
        Ok(Some(Identity {
            user: creds.user.clone(),
            groups,
        }))
    }
}

/// rustls settings trusting the CA certificates in `path` (and only those).
fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, LdapSetupError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let err = |reason: String| LdapSetupError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(err("it holds no certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The value of a DN's first RDN: `cn=pushers,ou=groups,dc=example,dc=org` → `pushers`.
/// `template` with each placeholder replaced by its value, escaped. One pass over the
/// template: a value is never searched for placeholders, so a DN that holds the text
/// `{user}` (a legal DN) stays the DN it is.
pub(crate) fn fill_filter(template: &str, values: &[(&str, &str)]) -> String {
    let mut filter = String::with_capacity(template.len());
    let mut rest = template;
    while !rest.is_empty() {
        let next = values
            .iter()
            .filter_map(|(placeholder, value)| Some((rest.find(placeholder)?, placeholder, value)))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, placeholder, value)) = next else {
            break;
        };
        filter.push_str(&rest[..at]);
        filter.push_str(&ldap_escape(*value));
        rest = &rest[at + placeholder.len()..];
    }
    filter.push_str(rest);
    filter
}

fn first_rdn_value(dn: &str) -> Option<String> {
    let mut value = String::new();
    let mut in_value = false;
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    if in_value {
                        value.push(next);
                    }
                }
            }
            ',' | '+' => break,
            '=' if !in_value => in_value = true,
            _ if in_value => value.push(c),
            _ => {}
        }
    }
    let value = value.trim().to_owned();
    (in_value && !value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{first_rdn_value, Ldap, LdapSetupError};
    use crate::config::{GroupSource, LdapConfig, PasswordSource};

    fn config(password: PasswordSource, ca_file: Option<std::path::PathBuf>) -> LdapConfig {
        LdapConfig {
            url: "ldaps://127.0.0.1:1".into(),
            starttls: false,
            ca_file,
            bind_dn: "cn=svc".into(),
            bind_password: password,
            base_dn: "dc=x".into(),
            user_filter: "(uid={user})".into(),
            groups: GroupSource::None,
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_service_password_file_loses_its_trailing_newline_only() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), " pass word \n").unwrap();
        let l = Ldap::new(&config(PasswordSource::File(f.path().into()), None)).unwrap();
        assert_eq!(l.password, " pass word ");
    }

    #[test]
    fn setup_errors_name_the_key() {
        let missing = PasswordSource::File("/no/such/pw".into());
        let e = Ldap::new(&config(missing, None)).err().unwrap();
        assert!(matches!(e, LdapSetupError::PasswordFile { .. }));
        assert!(e.to_string().contains("bind_password_file"));
        let unset = PasswordSource::Env("WHARF_TEST_SURELY_UNSET".into());
        let e = Ldap::new(&config(unset, None)).err().unwrap();
        assert!(e.to_string().contains("bind_password_env"));
        let pw = tempfile::NamedTempFile::new().unwrap();
        let not_pem = PasswordSource::File(pw.path().into());
        let e = Ldap::new(&config(not_pem, Some(pw.path().into())))
            .err()
            .unwrap();
        assert!(e.to_string().contains("ca_file"), "{e}");
    }

    #[test]
    fn group_names_come_from_the_first_rdn() {
        assert_eq!(
            first_rdn_value("cn=pushers,ou=groups,dc=example,dc=org").as_deref(),
            Some("pushers")
        );
        assert_eq!(
            first_rdn_value("CN=Dev\\, Ops,OU=Groups,DC=corp").as_deref(),
            Some("Dev, Ops")
        );
        assert_eq!(first_rdn_value("nonsense"), None);
    }

    #[test]
    fn user_names_are_escaped_in_filters() {
        let f = "(uid={user})".replace("{user}", &ldap3::ldap_escape("*)(uid=*"));
        assert_eq!(f, "(uid=\\2a\\29\\28uid=\\2a)");
    }
}

#[cfg(test)]
mod properties {
    use crate::invariants;
    use proptest::prelude::*;

    /// Found by the property: a DN holding the text `{user}` (a legal DN) had the user name
    /// put into it when the group filter was filled, so the search asked for another DN.
    #[test]
    fn placeholders_inside_values_stay_as_they_are() {
        let filled = super::fill_filter(
            "(&(member={dn})(uid={user}))",
            &[("{dn}", "uid={user},dc=org"), ("{user}", "{dn}")],
        );
        assert_eq!(filled, "(&(member=uid={user},dc=org)(uid={dn}))");
        invariants::ldap_filter("{dn}", "uid={user},dc=org");
    }

    proptest! {
        #[test]
        fn filled_filters_hold_the_values_escaped(
            user in prop_oneof!["[a-z*()\\\\\0{}=,]{0,10}", "[a-z]{0,3}\\{(user|dn)\\}[a-z]{0,3}", any::<String>()],
            dn in prop_oneof!["[a-z*()\\\\\0{}=,]{0,12}", "uid=[a-z]{0,3}\\{(user|dn)\\}[a-z]{0,3},dc=org", any::<String>()],
        ) {
            invariants::ldap_filter(&user, &dn);
        }
    }
}
