//! The HTTP client and retry policy every object store gets, whatever its API: the same
//! timeouts, the same trusted CAs, the same bounded retries.

use std::io;
use std::path::Path;
use std::time::Duration;

use object_store::{Certificate, ClientOptions, RetryConfig};

use crate::config::SecretSource;

/// Retries hide a store's hiccup, but a store that is down must fail the request in
/// seconds (a 503 the client can retry), not minutes. They run inside each operation's
/// deadline (`deadline.rs`), so the total stays bounded by it: `timeout` for most requests
/// (a request sending a body, or a copy, gets more), whatever the retries do. A store that
/// refuses or fails fast is given up on after `retry_timeout` or 3 retries, whichever
/// comes first.
pub fn retry() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
        ..RetryConfig::default()
    }
}

/// `table` is the config table (`s3`, `azure`) the endpoint and CA file came from, for
/// error messages.
pub fn options(
    table: &str,
    endpoint: Option<&str>,
    ca_file: Option<&Path>,
) -> io::Result<ClientOptions> {
    let mut options = ClientOptions::new()
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
        .with_connect_timeout(Duration::from_secs(5))
        // The request timeout covers the whole body, and a blob download to a slow client
        // may rightly take an hour. A store that accepts connections but does not answer
        // is caught by the deadlines of `deadline.rs` instead: one per request, and an
        // idle limit between chunks of a streamed body.
        .with_timeout_disabled();
    if let Some(ca) = ca_file {
        let key = format!("storage.{table}.ca_file");
        let pem = std::fs::read(ca).map_err(|e| named(&key, ca, e))?;
        let certs =
            Certificate::from_pem_bundle(&pem).map_err(|e| named(&key, ca, io::Error::other(e)))?;
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    Ok(options)
}

/// An I/O error about the file `path` given as config key `key`.
pub fn named(key: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{key} {}: {e}", path.display()))
}

/// Reads a secret given as config key `key` (inline, `key_file` or `key_env`).
pub fn secret(key: &str, source: &SecretSource) -> io::Result<String> {
    match source {
        SecretSource::Inline(s) => Ok(s.clone()),
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| named(&format!("{key}_file"), path, e)),
        SecretSource::Env(var) => {
            std::env::var(var).map_err(|_| io::Error::other(format!("{key}_env: {var} is not set")))
        }
    }
}
