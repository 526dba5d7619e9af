//! Validation of `[server.auth]`: login providers and access rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawAuth;
use super::{Check, ConfigError};

mod ldap;
pub use self::ldap::{GroupSource, LdapConfig, PasswordSource};

/// Logins and access rules of one server block.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The `realm` of the `WWW-Authenticate: Basic` challenge.
    pub realm: String,
    pub providers: Vec<ProviderConfig>,
    /// How long a verified login is remembered.
    pub cache_ttl: Duration,
    pub access: Vec<AccessRule>,
    pub groups: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderConfig {
    Htpasswd { path: PathBuf },
    Ldap(Box<LdapConfig>),
}

/// One access rule, checked for shape here and compiled by `auth::policy`.
#[derive(Clone, Debug)]
pub struct AccessRule {
    pub repos: String,
    pub who: Vec<String>,
    pub actions: Vec<String>,
}

pub fn validate(check: &Check<'_>, i: usize, raw: &RawAuth) -> Result<AuthConfig, ConfigError> {
    let key = |k: &str| format!("server[{i}].auth.{k}");
    let realm = raw.realm.clone().unwrap_or_else(|| "wharf".into());
    if realm.contains('"') || realm.is_empty() {
        return Err(check.invalid(
            key("realm"),
            format!("is {realm:?}"),
            "use a non-empty name without quotes",
        ));
    }
    if raw.providers.is_empty() {
        return Err(check.invalid(
            key("providers"),
            "is empty, so nobody could log in",
            "add providers = [{ htpasswd = \"conf/users.htpasswd\" }]",
        ));
    }
    let mut providers = Vec::new();
    for (j, p) in raw.providers.iter().enumerate() {
        let at = format!("server[{i}].auth.providers[{j}]");
        let provider = match (&p.htpasswd, &p.ldap) {
            (Some(path), None) => {
                if !Path::new(path).is_file() {
                    return Err(check.invalid(
                        format!("{at}.htpasswd"),
                        format!("names {path:?}, which does not exist"),
                        "create it with `wharf htpasswd FILE USER`",
                    ));
                }
                ProviderConfig::Htpasswd { path: path.into() }
            }
            (None, Some(l)) => ProviderConfig::Ldap(Box::new(ldap::validate(check, &at, l)?)),
            (Some(_), Some(_)) => {
                return Err(check.invalid(
                    at,
                    "names two providers",
                    "write each provider as its own entry: [{ htpasswd = \"FILE\" }, { ldap = { ... } }]",
                ))
            }
            (None, None) => {
                return Err(check.invalid(
                    at,
                    "names no provider",
                    "write { htpasswd = \"FILE\" } or { ldap = { url = \"ldap://HOST\", ... } }",
                ))
            }
        };
        providers.push(provider);
    }
    let cache_ttl = check.duration(
        &key("cache_ttl"),
        raw.cache_ttl.as_deref(),
        Duration::from_secs(300),
    )?;
    let mut access = Vec::new();
    for (j, r) in raw.access.iter().enumerate() {
        let k = |f: &str| format!("server[{i}].auth.access[{j}].{f}");
        let pattern_ok = {
            let base = r.repos.strip_suffix('*').unwrap_or(&r.repos);
            !r.repos.is_empty() && !base.contains('*') && !base.contains("..")
        };
        if !pattern_ok {
            return Err(check.invalid(
                k("repos"),
                format!("is {:?}", r.repos),
                "use a name, a prefix ending in * like \"team-a/*\", or \"*\"",
            ));
        }
        if r.who.is_empty() {
            return Err(check.invalid(
                k("who"),
                "is empty",
                "list user names, \"group:NAME\", \"authenticated\" or \"anonymous\"",
            ));
        }
        for w in &r.who {
            // Groups may also come from a provider (LDAP), so they need not be in the table.
            let bad_group = w.strip_prefix("group:").is_some_and(str::is_empty);
            if w.is_empty() || bad_group {
                return Err(check.invalid(
                    k("who"),
                    format!("contains {w:?}"),
                    "list user names, \"group:NAME\", \"authenticated\" or \"anonymous\"",
                ));
            }
        }
        if r.actions.is_empty()
            || r.actions
                .iter()
                .any(|a| !matches!(a.as_str(), "pull" | "push" | "delete"))
        {
            return Err(check.invalid(
                k("actions"),
                format!("is {:?}", r.actions),
                "use some of \"pull\", \"push\", \"delete\"",
            ));
        }
        access.push(AccessRule {
            repos: r.repos.clone(),
            who: r.who.clone(),
            actions: r.actions.clone(),
        });
    }
    if access.is_empty() {
        return Err(check.invalid(
            key("access"),
            "is empty, so every request would be denied",
            "for \"any logged-in user may do anything\": access = [{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\", \"delete\"] }]",
        ));
    }
    Ok(AuthConfig {
        realm,
        providers,
        cache_ttl,
        access,
        groups: raw.groups.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(auth: &str) -> String {
        let text = format!("[[server]]\ndefault = true\n[server.auth]\n{auth}\n");
        Config::from_toml(&text, "test").unwrap_err().to_string()
    }

    fn htpasswd() -> tempfile::NamedTempFile {
        tempfile::NamedTempFile::new().unwrap()
    }

    #[test]
    fn providers_are_required_and_must_exist() {
        assert!(err("access = []").contains("auth.providers"));
        assert!(err("providers = [{ htpasswd = \"/no/such\" }]").contains("providers[0].htpasswd"));
        assert!(err("providers = [{}]").contains("providers[0]"));
    }

    #[test]
    fn access_rules_are_checked() {
        let f = htpasswd();
        let p = format!("providers = [{{ htpasswd = {:?} }}]\n", f.path());
        assert!(err(&p).contains("auth.access") && err(&p).contains("\"authenticated\""));
        let bad_action = format!(
            "{p}access = [{{ repos = \"*\", who = [\"anonymous\"], actions = [\"read\"] }}]"
        );
        assert!(err(&bad_action).contains("access[0].actions"));
        let bad_repo = format!(
            "{p}access = [{{ repos = \"a*b\", who = [\"anonymous\"], actions = [\"pull\"] }}]"
        );
        assert!(err(&bad_repo).contains("access[0].repos"));
        let no_who = format!("{p}access = [{{ repos = \"*\", who = [], actions = [\"pull\"] }}]");
        assert!(err(&no_who).contains("access[0].who"));
        let bad_group =
            format!("{p}access = [{{ repos = \"*\", who = [\"group:\"], actions = [\"pull\"] }}]");
        assert!(err(&bad_group).contains("access[0].who"));
        let ok = format!("[[server]]\ndefault = true\n[server.auth]\n{p}access = [{{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\", \"push\", \"delete\"] }}]\n");
        let c = Config::from_toml(&ok, "test").unwrap();
        let auth = c.servers[0].auth.as_ref().unwrap();
        assert_eq!(auth.realm, "wharf");
        assert_eq!(auth.cache_ttl, std::time::Duration::from_secs(300));
    }

    #[test]
    fn realm_cannot_break_the_challenge_header() {
        assert!(err("realm = \"a\\\"b\"").contains("auth.realm"));
    }

    #[test]
    fn a_provider_entry_names_one_provider() {
        let pw = htpasswd();
        let e = err(&format!(
            "providers = [{{ htpasswd = {:?}, ldap = {{ url = \"ldap://h\" }} }}]",
            pw.path()
        ));
        assert!(
            e.contains("providers[0]") && e.contains("two providers"),
            "{e}"
        );
    }
}
