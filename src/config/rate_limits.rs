//! Validation of `[rate_limit.NAME]` tables, `[failed_logins]` and the trusted proxies
//! whose `X-Forwarded-For` names the client.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use ipnet::IpNet;

use super::raw::{RawFailedLogins, RawRateLimit, RawRateOverride};
use super::{Check, ConfigError};

/// The limits every server gets unless it lists its own `rate_limits`. The arithmetic
/// behind the numbers is in the README ("Rate limits").
pub const DEFAULT_LIMITS: [&str; 2] = ["manifests_per_ip", "blobs_per_ip"];

/// The built-in tables; a `[rate_limit.NAME]` of the same name changes only the keys it sets.
fn builtin(name: &str) -> Option<RawRateLimit> {
    let (requests, rate, burst) = match name {
        "manifests_per_ip" => ("manifests", "30/s", 300),
        "blobs_per_ip" => ("blobs", "100/s", 1000),
        _ => return None,
    };
    Some(RawRateLimit {
        key: Some("ip".into()),
        requests: Some(requests.into()),
        rate: Some(rate.into()),
        burst: Some(burst),
        ..RawRateLimit::default()
    })
}

/// How many clients each limit remembers unless `limits.rate_limit_keys` says otherwise.
/// An entry costs roughly 100 bytes, so this bounds a limit to a few MiB however many
/// addresses a flood comes from.
pub const DEFAULT_MAX_KEYS: u64 = 50_000;

/// A sustained rate (one request per `per_request`) with room for `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_request: Duration,
    pub burst: NonZeroU32,
}

/// What a limit counts requests by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKey {
    /// The client address (IPv6 clients by their /64, which one host usually owns whole).
    Ip,
    /// The logged-in user; anonymous requests are counted by client address.
    User,
    /// The server block: one budget shared by every client.
    Vhost,
}

/// Which requests a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestClass {
    All,
    /// Registry API requests other than blobs: manifests, tags, catalog, referrers, search,
    /// the `/v2/` check.
    Manifests,
    /// Blob reads, deletes and uploads.
    Blobs,
}

/// Clients named by address range or user name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clients {
    pub ips: Vec<IpNet>,
    pub users: Vec<String>,
}

impl Clients {
    pub fn contains(&self, ip: IpAddr, user: Option<&str>) -> bool {
        self.ips.iter().any(|net| net.contains(&ip))
            || user.is_some_and(|u| self.users.iter().any(|x| x == u))
    }

    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.users.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub name: String,
    pub key: LimitKey,
    pub requests: RequestClass,
    pub rate: Rate,
    /// Never limited by this limit.
    pub exempt: Clients,
    /// Other rates for some clients; the first match wins.
    pub overrides: Vec<(Clients, Rate)>,
}

/// Wrong passwords allowed per client address and per user name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailedLoginsConfig {
    pub rate: Rate,
    /// Also count failures per user name (stops guessing from many addresses, at the price
    /// that a guesser can lock a user out for the window).
    pub per_user: bool,
}

/// Every defined limit: the built-in ones and the config's `[rate_limit.NAME]` tables.
pub(super) fn validate(
    check: &Check<'_>,
    raw: &BTreeMap<String, RawRateLimit>,
) -> Result<Vec<RateLimitConfig>, ConfigError> {
    let mut names: Vec<&str> = DEFAULT_LIMITS.to_vec();
    names.extend(
        raw.keys()
            .map(String::as_str)
            .filter(|n| builtin(n).is_none()),
    );
    names
        .into_iter()
        .map(|name| {
            let table = merge(builtin(name), raw.get(name));
            limit(check, name, &table)
        })
        .collect()
}

/// The built-in table with the config's keys laid over it.
fn merge(base: Option<RawRateLimit>, over: Option<&RawRateLimit>) -> RawRateLimit {
    let base = base.unwrap_or_default();
    let Some(over) = over.cloned() else {
        return base;
    };
    RawRateLimit {
        key: over.key.or(base.key),
        requests: over.requests.or(base.requests),
        rate: over.rate.or(base.rate),
        burst: over.burst.or(base.burst),
        exempt_ips: over.exempt_ips.or(base.exempt_ips),
        exempt_users: over.exempt_users.or(base.exempt_users),
        overrides: over.overrides.or(base.overrides),
    }
}

fn limit(
    check: &Check<'_>,
    name: &str,
    raw: &RawRateLimit,
) -> Result<RateLimitConfig, ConfigError> {
    let key = |k: &str| format!("rate_limit.{name}.{k}");
    let limit_key = match raw.key.as_deref() {
        None | Some("ip") => LimitKey::Ip,
        Some("user") => LimitKey::User,
        Some("vhost") => LimitKey::Vhost,
        Some(other) => {
            return Err(check.invalid(
                key("key"),
                format!("is {other:?}"),
                "use \"ip\", \"user\" or \"vhost\"",
            ))
        }
    };
    let requests = match raw.requests.as_deref() {
        None | Some("all") => RequestClass::All,
        Some("manifests") => RequestClass::Manifests,
        Some("blobs") => RequestClass::Blobs,
        Some(other) => {
            return Err(check.invalid(
                key("requests"),
                format!("is {other:?}"),
                "use \"all\", \"manifests\" or \"blobs\"",
            ))
        }
    };
    let Some(rate_text) = raw.rate.as_deref() else {
        return Err(check.invalid(
            key("rate"),
            "is missing",
            "set a rate like \"30/s\" or \"600/m\"",
        ));
    };
    let rate = rate(check, &key("rate"), rate_text, raw.burst)?;
    let exempt = clients(
        check,
        &key("exempt_ips"),
        raw.exempt_ips.as_deref().unwrap_or_default(),
        raw.exempt_users.as_deref().unwrap_or_default(),
    )?;
    let overrides = raw
        .overrides
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, o)| override_of(check, &format!("rate_limit.{name}.override[{i}]"), o))
        .collect::<Result<_, _>>()?;
    Ok(RateLimitConfig {
        name: name.to_owned(),
        key: limit_key,
        requests,
        rate,
        exempt,
        overrides,
    })
}

fn override_of(
    check: &Check<'_>,
    key: &str,
    raw: &RawRateOverride,
) -> Result<(Clients, Rate), ConfigError> {
    let who = clients(check, &format!("{key}.ips"), &raw.ips, &raw.users)?;
    if who.is_empty() {
        return Err(check.invalid(
            key,
            "names no ips and no users",
            "list the clients it applies to in ips or users",
        ));
    }
    Ok((
        who,
        rate(check, &format!("{key}.rate"), &raw.rate, raw.burst)?,
    ))
}

/// Parses "N/s", "N/m" or "N/h"; the burst defaults to N.
fn rate(check: &Check<'_>, key: &str, text: &str, burst: Option<u32>) -> Result<Rate, ConfigError> {
    const FIX: &str = "write it like \"30/s\", \"600/m\" or \"1000/h\"";
    let bad = |why: &str| check.invalid(key, format!("is {text:?}: {why}"), FIX);
    let (count, unit) = text.split_once('/').ok_or_else(|| bad("no \"/\""))?;
    let count: u32 = count
        .trim()
        .parse()
        .map_err(|_| bad("the count is not a whole number"))?;
    let unit = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad("the unit is not s, m or h")),
    };
    if count == 0 || count > 1_000_000 {
        return Err(bad("the count must be between 1 and 1000000"));
    }
    let burst = NonZeroU32::new(burst.unwrap_or(count)).ok_or_else(|| {
        check.invalid(
            key.replace(".rate", ".burst"),
            "is 0, which would refuse every request",
            "use at least 1 (the default is the rate's count)",
        )
    })?;
    Ok(Rate {
        per_request: unit / count,
        burst,
    })
}

fn clients(
    check: &Check<'_>,
    ips_key: &str,
    ips: &[String],
    users: &[String],
) -> Result<Clients, ConfigError> {
    Ok(Clients {
        ips: networks(check, ips_key, ips)?,
        users: users.to_vec(),
    })
}

/// Addresses or CIDR ranges; a bare address is a range of one.
pub(super) fn networks(
    check: &Check<'_>,
    key: &str,
    raw: &[String],
) -> Result<Vec<IpNet>, ConfigError> {
    raw.iter()
        .map(|text| {
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    check.invalid(
                        key,
                        format!("{text:?} is not an address or CIDR range"),
                        "write addresses like \"10.0.0.5\" or ranges like \"10.0.0.0/8\"",
                    )
                })
        })
        .collect()
}

pub(super) fn failed_logins(
    check: &Check<'_>,
    raw: &RawFailedLogins,
) -> Result<FailedLoginsConfig, ConfigError> {
    let text = raw.rate.as_deref().unwrap_or("10/m");
    Ok(FailedLoginsConfig {
        rate: rate(check, "failed_logins.rate", text, raw.burst.or(Some(10)))?,
        per_user: raw.per_user.unwrap_or(true),
    })
}

/// The limits attached at `key`: every name must be defined.
pub(super) fn attached(
    check: &Check<'_>,
    key: &str,
    names: &[String],
    defined: &[RateLimitConfig],
) -> Result<Vec<String>, ConfigError> {
    for n in names {
        if !defined.iter().any(|l| &l.name == n) {
            let known: Vec<&str> = defined.iter().map(|l| l.name.as_str()).collect();
            return Err(check.invalid(
                key,
                format!("names {n:?}, which is not a [rate_limit.NAME] table"),
                format!("define [rate_limit.{n}] or use one of {known:?}"),
            ));
        }
    }
    Ok(names.to_vec())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::from_toml(text, "t").unwrap_err().to_string()
    }

    fn limits(text: &str) -> Vec<super::RateLimitConfig> {
        Config::from_toml(text, "t").unwrap().rate_limits
    }

    #[test]
    fn the_defaults_are_defined_and_attached() {
        let c = Config::builtin();
        let names: Vec<_> = c.rate_limits.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, super::DEFAULT_LIMITS);
        assert_eq!(c.servers[0].routes[0].rate_limits, super::DEFAULT_LIMITS);
        assert_eq!(c.failed_logins.rate.burst.get(), 10);
    }

    #[test]
    fn rates_parse_with_units_and_default_bursts() {
        let l =
            limits("[rate_limit.a]\nrate = \"600/m\"\n[rate_limit.b]\nrate = \"4/s\"\nburst = 9\n");
        let a = l.iter().find(|l| l.name == "a").unwrap();
        assert_eq!(a.rate.per_request, std::time::Duration::from_millis(100));
        assert_eq!(a.rate.burst.get(), 600);
        let b = l.iter().find(|l| l.name == "b").unwrap();
        assert_eq!(b.rate.per_request, std::time::Duration::from_millis(250));
        assert_eq!(b.rate.burst.get(), 9);
    }

    #[test]
    fn bad_rates_name_the_key() {
        for bad in ["\"30\"", "\"x/s\"", "\"0/s\"", "\"5/fortnight\""] {
            let e = err(&format!("[rate_limit.a]\nrate = {bad}\n"));
            assert!(e.contains("rate_limit.a.rate"), "{e}");
        }
        assert!(err("[rate_limit.a]\nrate = \"1/s\"\nburst = 0\n").contains("rate_limit.a.burst"));
        assert!(err("[rate_limit.a]\nburst = 3\n").contains("rate_limit.a.rate` is missing"));
    }

    #[test]
    fn builtins_can_be_tuned_key_by_key() {
        let l = limits("[rate_limit.blobs_per_ip]\nrate = \"5/s\"\n");
        let b = l.iter().find(|l| l.name == "blobs_per_ip").unwrap();
        assert_eq!(b.requests, super::RequestClass::Blobs);
        assert_eq!(b.key, super::LimitKey::Ip);
        assert_eq!(b.rate.burst.get(), 1000, "the built-in burst stays");
    }

    #[test]
    fn keys_classes_and_clients_are_checked() {
        assert!(
            err("[rate_limit.a]\nrate = \"1/s\"\nkey = \"country\"\n").contains("rate_limit.a.key")
        );
        assert!(err("[rate_limit.a]\nrate = \"1/s\"\nrequests = \"tags\"\n")
            .contains("rate_limit.a.requests"));
        assert!(
            err("[rate_limit.a]\nrate = \"1/s\"\nexempt_ips = [\"10.0.0.0/33\"]\n")
                .contains("rate_limit.a.exempt_ips")
        );
        assert!(
            err("[rate_limit.a]\nrate = \"1/s\"\n[[rate_limit.a.override]]\nrate = \"2/s\"\n")
                .contains("rate_limit.a.override[0]")
        );
        let l = limits(
            "[rate_limit.a]\nrate = \"1/s\"\nkey = \"user\"\nexempt_ips = [\"10.0.0.0/8\", \"::1\"]\n\
             [[rate_limit.a.override]]\nusers = [\"ci\"]\nrate = \"100/s\"\n",
        );
        let a = l.iter().find(|l| l.name == "a").unwrap();
        assert!(a.exempt.contains("10.1.2.3".parse().unwrap(), None));
        assert!(a.exempt.contains("::1".parse().unwrap(), None));
        assert!(!a.exempt.contains("11.0.0.1".parse().unwrap(), Some("ci")));
        assert!(a.overrides[0]
            .0
            .contains("11.0.0.1".parse().unwrap(), Some("ci")));
    }

    #[test]
    fn attaching_an_unknown_limit_is_an_error() {
        let e = err("[[server]]\ndefault = true\nrate_limits = [\"nope\"]\n");
        assert!(
            e.contains("server[0].rate_limits") && e.contains("\"nope\""),
            "{e}"
        );
        let e = err("[[server]]\ndefault = true\n[[server.route]]\npath = \"/\"\nregistry = {}\nrate_limits = [\"x\"]\n");
        assert!(e.contains("server[0].route[0].rate_limits"), "{e}");
    }

    #[test]
    fn routes_add_to_the_server_limits_and_an_empty_list_turns_them_off() {
        let c = Config::from_toml(
            "[rate_limit.push]\nrate = \"1/s\"\n[[server]]\ndefault = true\nrate_limits = []\n\
             [[server.route]]\npath = \"/\"\nregistry = {}\nrate_limits = [\"push\"]\n\
             [[server.route]]\npath = \"/x/\"\nredirect = \"http://e/\"\n",
            "t",
        )
        .unwrap();
        let routes = &c.servers[0].routes;
        assert!(routes[0].rate_limits.is_empty(), "/x/ has none");
        assert_eq!(routes[1].rate_limits, ["push"]);
    }

    #[test]
    fn trusted_proxies_are_checked() {
        let c = Config::from_toml(
            "[limits]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.limits.trusted_proxies.len(), 2);
        assert!(err("[limits]\ntrusted_proxies = [\"proxy.local\"]\n")
            .contains("limits.trusted_proxies"));
    }
}
