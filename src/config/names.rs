//! Server names as `server_name` in nginx: exact host names, wildcards (`*.example.com`),
//! and IP literals. One matcher serves both the TLS handshake (SNI) and request routing
//! (`Host`), so the two can never disagree about which server a name belongs to.

use std::net::IpAddr;

/// One name a server block answers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerName {
    /// `registry.example.com` (stored lowercase).
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com`, at any depth (stored as the
    /// suffix `.example.com`).
    Wildcard(String),
    Ip(IpAddr),
}

/// How well a name matched; higher is better. Exact names beat wildcards, and longer
/// wildcards beat shorter ones, as in nginx.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchRank {
    Wildcard(usize),
    Exact,
}

impl ServerName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Ok(ServerName::Ip(ip));
        }
        let lower = s.to_ascii_lowercase();
        let (wild, host) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if !valid_dns_name(host) {
            return Err(format!(
                "{s:?} is not a host name, a wildcard like \"*.example.com\", or an IP address"
            ));
        }
        Ok(match wild {
            true => ServerName::Wildcard(format!(".{host}")),
            false => ServerName::Exact(host.to_owned()),
        })
    }

    /// How `host` (a bare host name or IP, no port) matches this name, if at all.
    pub fn rank(&self, host: &str) -> Option<MatchRank> {
        match self {
            ServerName::Exact(n) => n.eq_ignore_ascii_case(host).then_some(MatchRank::Exact),
            ServerName::Wildcard(suffix) => {
                let h = host.to_ascii_lowercase();
                (h.len() > suffix.len() && h.ends_with(suffix.as_str()))
                    .then_some(MatchRank::Wildcard(suffix.len()))
            }
            ServerName::Ip(ip) => {
                let h = host.trim_start_matches('[').trim_end_matches(']');
                (h.parse::<IpAddr>().ok() == Some(*ip)).then_some(MatchRank::Exact)
            }
        }
    }
}

impl std::fmt::Display for ServerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerName::Exact(n) => f.write_str(n),
            ServerName::Wildcard(s) => write!(f, "*{s}"),
            ServerName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The host part of a `Host` header value: `example.com:443` → `example.com`,
/// `[::1]:5000` → `::1`.
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

/// Picks the best match for `host` among `(index, names)` entries; ties go to the first.
pub fn best_match<'a>(
    host: &str,
    servers: impl Iterator<Item = (usize, &'a [ServerName])>,
) -> Option<usize> {
    let mut best: Option<(MatchRank, usize)> = None;
    for (i, names) in servers {
        for rank in names.iter().filter_map(|n| n.rank(host)) {
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, i));
            }
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<ServerName> {
        list.iter().map(|n| ServerName::parse(n).unwrap()).collect()
    }

    #[test]
    fn exact_beats_wildcard_and_longer_wildcard_beats_shorter() {
        let a = names(&["*.example.com"]);
        let b = names(&["*.eu.example.com"]);
        let c = names(&["api.eu.example.com"]);
        let all = [(0, &a[..]), (1, &b[..]), (2, &c[..])];
        assert_eq!(best_match("x.example.com", all.into_iter()), Some(0));
        assert_eq!(best_match("x.eu.example.com", all.into_iter()), Some(1));
        assert_eq!(best_match("API.eu.example.com", all.into_iter()), Some(2));
        assert_eq!(best_match("example.com", all.into_iter()), None);
        assert_eq!(best_match("other.org", all.into_iter()), None);
    }

    #[test]
    fn ip_literals_match_with_and_without_brackets() {
        let v = names(&["10.0.0.5", "::1"]);
        assert_eq!(best_match("10.0.0.5", [(0, &v[..])].into_iter()), Some(0));
        assert_eq!(best_match("::1", [(0, &v[..])].into_iter()), Some(0));
        assert_eq!(best_match("[::1]", [(0, &v[..])].into_iter()), Some(0));
    }

    #[test]
    fn bad_names_are_rejected() {
        for bad in ["", "a..b", "-a.com", "a_b.com", "*.", "**.a.com", "a.*.com"] {
            assert!(ServerName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_are_stripped_from_host_headers() {
        assert_eq!(host_without_port("example.com:443"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:5000"), "::1");
        assert_eq!(host_without_port("10.0.0.1:80"), "10.0.0.1");
    }
}
