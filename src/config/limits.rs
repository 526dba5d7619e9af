//! `[limits]`: deadlines and caps on connections and request heads.

use std::time::Duration;

use super::raw::RawLimits;
use super::{http2, rate_limits, Check, ConfigError};

/// Connection-level limits.
#[derive(Clone, Debug)]
pub struct Limits {
    pub tls_handshake_timeout: Duration,
    /// How long a client may take to send a request's headers (slowloris protection):
    /// the first request's from accept (or from the end of the TLS handshake), later
    /// ones' from their first byte.
    pub header_read_timeout: Duration,
    /// How long a connection may wait, with no request in progress, for the next request
    /// to begin (HTTP/1.1 keep-alive and idle h2 connections alike).
    pub keepalive_timeout: Duration,
    /// Request line plus headers larger than this get 431.
    pub max_header_bytes: usize,
    /// Open connections one client may hold (IPv6 clients counted per /64); 0 means no
    /// limit. `trusted_proxies` are exempt.
    pub max_connections_per_ip: usize,
    /// Open connections in all, across listeners; further ones are closed at once.
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` header names the client (for rate limits and logs).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How many clients each rate limit remembers at most.
    pub rate_limit_keys: u64,
    /// How many bytes an HTTP/2 client may send on one stream ahead of what wharf has read
    /// (its upload speed is at most this per round trip), and on all of a connection's.
    pub http2_stream_window: u32,
    pub http2_connection_window: u32,
    /// The most the connection windows of all HTTP/2 connections may add up to: what
    /// uploads may hold in memory in all (`server/window_budget.rs`).
    pub http2_window_budget: u64,
}

pub(super) fn validate(check: &Check, raw: &RawLimits) -> Result<Limits, ConfigError> {
    let http2 = http2::windows(check, raw)?;
    let limits = Limits {
        tls_handshake_timeout: check.duration(
            "limits.tls_handshake_timeout",
            raw.tls_handshake_timeout.as_deref(),
            Duration::from_secs(10),
        )?,
        header_read_timeout: check.duration(
            "limits.header_read_timeout",
            raw.header_read_timeout.as_deref(),
            Duration::from_secs(30),
        )?,
        keepalive_timeout: check.duration(
            "limits.keepalive_timeout",
            raw.keepalive_timeout.as_deref(),
            Duration::from_secs(75),
        )?,
        max_header_bytes: raw.max_header_bytes.unwrap_or(64 * 1024),
        max_connections_per_ip: raw.max_connections_per_ip.unwrap_or(256),
        max_connections: raw.max_connections.unwrap_or_else(default_max_connections),
        trusted_proxies: rate_limits::networks(
            check,
            "limits.trusted_proxies",
            &raw.trusted_proxies,
        )?,
        rate_limit_keys: raw.rate_limit_keys.unwrap_or(rate_limits::DEFAULT_MAX_KEYS),
        http2_stream_window: http2.stream,
        http2_connection_window: http2.connection,
        http2_window_budget: http2.budget,
    };
    for (key, value) in [
        ("limits.header_read_timeout", limits.header_read_timeout),
        ("limits.keepalive_timeout", limits.keepalive_timeout),
        ("limits.tls_handshake_timeout", limits.tls_handshake_timeout),
    ] {
        if value.is_zero() {
            return Err(check.invalid(
                key,
                "is 0, which would close every connection at once",
                "use a duration like \"30s\"",
            ));
        }
    }
    if limits.rate_limit_keys < 100 {
        return Err(check.invalid(
            "limits.rate_limit_keys",
            format!(
                "is {}, too few to tell clients apart",
                limits.rate_limit_keys
            ),
            "use at least 100; the default is 50000",
        ));
    }
    // Registry clients send bearer tokens and long paths; smaller heads refuse real clients.
    if limits.max_header_bytes < 8192 {
        return Err(check.invalid(
            "limits.max_header_bytes",
            format!("is {}, below 8192", limits.max_header_bytes),
            "use at least 8192; the default is 65536",
        ));
    }
    if limits.max_connections == 0 {
        return Err(check.invalid(
            "limits.max_connections",
            "is 0, which would refuse every connection",
            "leave it out for a default from the open-file limit, or give a number",
        ));
    }
    Ok(limits)
}

/// Half of the open-file limit: every connection is a descriptor, and a request in
/// progress may hold a blob file or an upstream connection too.
fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let files = match ok {
        true => usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX),
        false => 1024,
    };
    (files / 2).clamp(64, 1 << 20)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(text: &str) -> String {
        Config::from_toml(text, "t").unwrap_err().to_string()
    }

    fn limits(text: &str) -> super::Limits {
        Config::from_toml(text, "t").unwrap().limits
    }

    #[test]
    fn defaults() {
        let l = limits("");
        assert_eq!(l.header_read_timeout.as_secs(), 30);
        assert_eq!(l.keepalive_timeout.as_secs(), 75);
        assert!(l.max_connections >= 64, "{}", l.max_connections);
    }

    #[test]
    fn tiny_header_limit_is_an_error() {
        assert!(err("[limits]\nmax_header_bytes = 100").contains("limits.max_header_bytes"));
        assert!(err("[limits]\nheader_read_timeout = \"x\"").contains("limits.header_read_timeout"));
    }

    #[test]
    fn zero_deadlines_and_caps_are_errors() {
        assert!(err("[limits]\nkeepalive_timeout = \"0s\"").contains("limits.keepalive_timeout"));
        assert!(err("[limits]\nmax_connections = 0").contains("limits.max_connections"));
    }

    #[test]
    fn max_connections_is_taken_as_given() {
        assert_eq!(limits("[limits]\nmax_connections = 10").max_connections, 10);
    }
}
