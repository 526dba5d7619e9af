//! Validation of an `ldap = { ... }` login provider.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::raw::RawLdap;
use crate::config::{Check, ConfigError};

/// An LDAP directory: users are found with a service bind + search, then verified by
/// binding as their DN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LdapConfig {
    /// `ldap://` or `ldaps://`, kept as written (ldap3 parses it).
    pub url: String,
    pub starttls: bool,
    /// Extra CA certificates (PEM) for ldaps/StartTLS; None: the system's roots.
    pub ca_file: Option<PathBuf>,
    pub bind_dn: String,
    pub bind_password: PasswordSource,
    pub base_dn: String,
    /// Contains `{user}`, replaced by the filter-escaped user name.
    pub user_filter: String,
    pub groups: GroupSource,
    pub connect_timeout: Duration,
    /// For each operation (bind, search) once connected.
    pub timeout: Duration,
}

/// Where the service account's password is read from at start-up (never the config itself,
/// which is often world-readable or committed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupSource {
    None,
    /// An attribute of the user's entry holding group DNs (`memberOf`); the group's name is
    /// the DN's first CN.
    Attribute(String),
    /// A search for group entries; `filter` contains `{dn}` and/or `{user}`.
    Search {
        base_dn: String,
        filter: String,
        name_attribute: String,
    },
}

pub(super) fn validate(
    check: &Check<'_>,
    at: &str,
    raw: &RawLdap,
) -> Result<LdapConfig, ConfigError> {
    let key = |k: &str| format!("{at}.ldap.{k}");
    let required = |k: &str, v: &Option<String>, example: &str| match v {
        Some(v) if !v.trim().is_empty() => Ok(v.clone()),
        _ => Err(check.invalid(key(k), "is missing or empty", example)),
    };
    let url = required(
        "url",
        &raw.url,
        "write url = \"ldap://HOST:389\" or \"ldaps://HOST:636\"",
    )?;
    let lower = url.to_ascii_lowercase();
    let ldaps = lower.starts_with("ldaps://");
    if !ldaps && !lower.starts_with("ldap://") {
        return Err(check.invalid(
            key("url"),
            format!("is {url:?}"),
            "write url = \"ldap://HOST:389\" or \"ldaps://HOST:636\"",
        ));
    }
    let starttls = raw.starttls.unwrap_or(false);
    if starttls && ldaps {
        return Err(check.invalid(
            key("starttls"),
            "is true with an ldaps:// url, which is already encrypted",
            "remove starttls, or use an ldap:// url",
        ));
    }
    let ca_file = match &raw.ca_file {
        None => None,
        Some(f) if !ldaps && !starttls => {
            return Err(check.invalid(
                key("ca_file"),
                format!("is {f:?}, but the connection is not encrypted"),
                "use an ldaps:// url or starttls = true, or remove ca_file",
            ))
        }
        Some(f) if !Path::new(f).is_file() => {
            return Err(check.invalid(
                key("ca_file"),
                format!("names {f:?}, which does not exist"),
                "point it at the PEM file of the CA that signed the LDAP server's certificate",
            ))
        }
        Some(f) => Some(PathBuf::from(f)),
    };
    let bind_dn = required(
        "bind_dn",
        &raw.bind_dn,
        "write the service account's DN, like bind_dn = \"cn=wharf,ou=services,dc=example,dc=org\"",
    )?;
    let bind_password = match (&raw.bind_password_file, &raw.bind_password_env) {
        (Some(f), None) if Path::new(f).is_file() => PasswordSource::File(f.into()),
        (Some(f), None) => {
            return Err(check.invalid(
                key("bind_password_file"),
                format!("names {f:?}, which does not exist"),
                "create it with the service account's password (mode 0600)",
            ))
        }
        (None, Some(v)) if std::env::var_os(v).is_some() => PasswordSource::Env(v.clone()),
        (None, Some(v)) => {
            return Err(check.invalid(
                key("bind_password_env"),
                format!("names {v:?}, which is not set"),
                "set that environment variable for wharf, or use bind_password_file",
            ))
        }
        _ => {
            return Err(check.invalid(
                key("bind_password_file"),
                "and bind_password_env: exactly one must be set",
                "write bind_password_file = \"FILE\" or bind_password_env = \"VAR\" (passwords never go in the config)",
            ))
        }
    };
    let base_dn = required(
        "base_dn",
        &raw.base_dn,
        "write the subtree holding the users, like base_dn = \"ou=people,dc=example,dc=org\"",
    )?;
    let user_filter = raw
        .user_filter
        .clone()
        .unwrap_or_else(|| "(uid={user})".into());
    if !user_filter.contains("{user}")
        || !user_filter.starts_with('(')
        || !user_filter.ends_with(')')
    {
        return Err(check.invalid(
            key("user_filter"),
            format!("is {user_filter:?}"),
            "write a parenthesized filter containing {user}, like \"(uid={user})\" or \"(sAMAccountName={user})\"",
        ));
    }
    let groups = match (&raw.group_attribute, &raw.group_search) {
        (None, None) => GroupSource::None,
        (Some(a), None) if !a.trim().is_empty() => GroupSource::Attribute(a.clone()),
        (Some(_), None) => {
            return Err(check.invalid(key("group_attribute"), "is empty", "write group_attribute = \"memberOf\", or remove it"))
        }
        (None, Some(g)) => {
            let gkey = |k: &str| key(&format!("group_search.{k}"));
            let gbase = match &g.base_dn {
                Some(b) if !b.trim().is_empty() => b.clone(),
                _ => return Err(check.invalid(gkey("base_dn"), "is missing or empty", "write the subtree holding the groups, like \"ou=groups,dc=example,dc=org\"")),
            };
            let filter = g.filter.clone().unwrap_or_else(|| "(member={dn})".into());
            let has_placeholder = filter.contains("{dn}") || filter.contains("{user}");
            if !has_placeholder || !filter.starts_with('(') || !filter.ends_with(')') {
                return Err(check.invalid(
                    gkey("filter"),
                    format!("is {filter:?}"),
                    "write a parenthesized filter containing {dn} or {user}, like \"(member={dn})\" or \"(memberUid={user})\"",
                ));
            }
            GroupSource::Search {
                base_dn: gbase,
                filter,
                name_attribute: g.name_attribute.clone().unwrap_or_else(|| "cn".into()),
            }
        }
        (Some(_), Some(_)) => {
            return Err(check.invalid(
                key("group_attribute"),
                "and group_search are both set",
                "use one: group_attribute = \"memberOf\" when the directory keeps it, else group_search",
            ))
        }
    };
    let connect_timeout = check.duration(
        &key("connect_timeout"),
        raw.connect_timeout.as_deref(),
        Duration::from_secs(5),
    )?;
    let timeout = check.duration(
        &key("timeout"),
        raw.timeout.as_deref(),
        Duration::from_secs(5),
    )?;
    for (k, d) in [("connect_timeout", connect_timeout), ("timeout", timeout)] {
        if d.is_zero() {
            return Err(check.invalid(key(k), "is zero", "write a duration like \"5s\""));
        }
    }
    Ok(LdapConfig {
        url,
        starttls,
        ca_file,
        bind_dn,
        bind_password,
        base_dn,
        user_filter,
        groups,
        connect_timeout,
        timeout,
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

    /// An `ldap = {...}` provider with a valid base plus `extra` keys; the password file is
    /// `pw` (kept alive by the caller).
    fn ldap_err(pw: &tempfile::NamedTempFile, extra: &str) -> String {
        let access =
            "access = [{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\"] }]";
        err(&format!(
            "providers = [{{ ldap = {{ bind_dn = \"cn=svc,dc=example,dc=org\", base_dn = \"dc=example,dc=org\", bind_password_file = {:?}, {extra} }} }}]\n{access}",
            pw.path()
        ))
    }

    fn ldap_ok(extra: &str) -> crate::config::LdapConfig {
        let pw = htpasswd();
        let text = format!(
            "[[server]]\ndefault = true\n[server.auth]\nproviders = [{{ ldap = {{ bind_dn = \"cn=svc,dc=example,dc=org\", base_dn = \"dc=example,dc=org\", bind_password_file = {:?}, {extra} }} }}]\naccess = [{{ repos = \"*\", who = [\"authenticated\"], actions = [\"pull\"] }}]\n",
            pw.path()
        );
        let c = Config::from_toml(&text, "test").unwrap();
        match &c.servers[0].auth.as_ref().unwrap().providers[0] {
            crate::config::ProviderConfig::Ldap(l) => (**l).clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ldap_defaults_are_filled_in() {
        let l = ldap_ok("url = \"ldap://127.0.0.1:389\"");
        assert_eq!(l.user_filter, "(uid={user})");
        assert_eq!(l.timeout, std::time::Duration::from_secs(5));
        assert_eq!(l.groups, crate::config::GroupSource::None);
        let l = ldap_ok("url = \"ldap://h\", group_search = { base_dn = \"ou=groups,dc=x\" }");
        assert!(
            matches!(l.groups, crate::config::GroupSource::Search { ref filter, ref name_attribute, .. } if filter == "(member={dn})" && name_attribute == "cn")
        );
    }

    #[test]
    fn ldap_url_must_be_ldap_or_ldaps() {
        let pw = htpasswd();
        assert!(ldap_err(&pw, "starttls = false").contains("ldap.url"));
        assert!(ldap_err(&pw, "url = \"http://h\"").contains("ldap.url"));
    }

    #[test]
    fn ldap_starttls_is_not_for_ldaps() {
        let pw = htpasswd();
        assert!(ldap_err(&pw, "url = \"ldaps://h\", starttls = true").contains("ldap.starttls"));
    }

    #[test]
    fn ldap_ca_file_must_exist_and_be_used() {
        let pw = htpasswd();
        assert!(
            ldap_err(&pw, "url = \"ldaps://h\", ca_file = \"/no/such\"").contains("ldap.ca_file")
        );
        let e = ldap_err(
            &pw,
            &format!("url = \"ldap://h\", ca_file = {:?}", pw.path()),
        );
        assert!(e.contains("ldap.ca_file") && e.contains("not encrypted"));
    }

    #[test]
    fn ldap_bind_dn_and_base_dn_are_required() {
        let pw = htpasswd();
        let e = err(&format!("providers = [{{ ldap = {{ url = \"ldap://h\", base_dn = \"dc=x\", bind_password_file = {:?} }} }}]", pw.path()));
        assert!(e.contains("ldap.bind_dn"), "{e}");
        let e = err(&format!("providers = [{{ ldap = {{ url = \"ldap://h\", bind_dn = \"cn=a\", base_dn = \"\", bind_password_file = {:?} }} }}]", pw.path()));
        assert!(e.contains("ldap.base_dn"), "{e}");
    }

    #[test]
    fn ldap_password_comes_from_exactly_one_existing_place() {
        let none = err("providers = [{ ldap = { url = \"ldap://h\", bind_dn = \"cn=a\", base_dn = \"dc=x\" } }]");
        assert!(none.contains("bind_password_env: exactly one"), "{none}");
        let pw = htpasswd();
        let both = ldap_err(&pw, "url = \"ldap://h\", bind_password_env = \"HOME\"");
        assert!(both.contains("exactly one"), "{both}");
        let missing = err("providers = [{ ldap = { url = \"ldap://h\", bind_dn = \"cn=a\", base_dn = \"dc=x\", bind_password_file = \"/no/such\" } }]");
        assert!(missing.contains("ldap.bind_password_file"), "{missing}");
        let unset = err("providers = [{ ldap = { url = \"ldap://h\", bind_dn = \"cn=a\", base_dn = \"dc=x\", bind_password_env = \"WHARF_TEST_SURELY_UNSET\" } }]");
        assert!(unset.contains("ldap.bind_password_env"), "{unset}");
    }

    #[test]
    fn ldap_inline_passwords_are_rejected() {
        let pw = htpasswd();
        assert!(
            ldap_err(&pw, "url = \"ldap://h\", bind_password = \"x\"").contains("bind_password")
        );
    }

    #[test]
    fn ldap_user_filter_needs_the_placeholder() {
        let pw = htpasswd();
        assert!(
            ldap_err(&pw, "url = \"ldap://h\", user_filter = \"(uid=alice)\"")
                .contains("ldap.user_filter")
        );
        assert!(
            ldap_err(&pw, "url = \"ldap://h\", user_filter = \"uid={user}\"")
                .contains("ldap.user_filter")
        );
    }

    #[test]
    fn ldap_groups_come_from_one_source() {
        let pw = htpasswd();
        let both = ldap_err(&pw, "url = \"ldap://h\", group_attribute = \"memberOf\", group_search = { base_dn = \"dc=x\" }");
        assert!(
            both.contains("ldap.group_attribute") && both.contains("both"),
            "{both}"
        );
    }

    #[test]
    fn ldap_group_search_needs_a_base_and_a_placeholder() {
        let pw = htpasswd();
        assert!(ldap_err(
            &pw,
            "url = \"ldap://h\", group_search = { filter = \"(member={dn})\" }"
        )
        .contains("group_search.base_dn"));
        assert!(ldap_err(
            &pw,
            "url = \"ldap://h\", group_search = { base_dn = \"dc=x\", filter = \"(cn=all)\" }"
        )
        .contains("group_search.filter"));
    }

    #[test]
    fn ldap_timeouts_are_durations_above_zero() {
        let pw = htpasswd();
        assert!(ldap_err(&pw, "url = \"ldap://h\", timeout = \"soon\"").contains("ldap.timeout"));
        assert!(
            ldap_err(&pw, "url = \"ldap://h\", connect_timeout = \"0s\"")
                .contains("ldap.connect_timeout")
        );
    }
}
