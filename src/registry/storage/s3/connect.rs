//! Building the S3 client from `[storage.s3]`: endpoint, addressing, credentials and TLS.
//! Nothing here talks to the network; [`super::S3Storage::check_writable`] does.

use std::io;
use std::path::Path;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{Certificate, ClientOptions, RetryConfig};

use crate::config::{default_credentials_file, S3Config, S3Credentials, SecretSource};

/// An access key pair (and session token) read at start-up.
struct Keys {
    id: String,
    secret: String,
    token: Option<String>,
}

pub fn client(config: &S3Config) -> io::Result<AmazonS3> {
    let keys = keys(&config.credentials)?;
    // Only without keys of its own does wharf look at the AWS_* variables: a stray
    // AWS_SESSION_TOKEN must not be sent with a configured key.
    let builder = match keys {
        None => AmazonS3Builder::from_env(),
        Some(_) => AmazonS3Builder::new(),
    };
    let mut builder = builder
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_virtual_hosted_style_request(!config.path_style)
        .with_client_options(client_options(config)?)
        .with_retry(RetryConfig {
            // Retries hide a store's hiccup, but a store that is down must fail the request
            // in seconds (a 503 the client can retry), not minutes. They run inside each
            // operation's deadline (`deadline.rs`), so the total stays bounded by it:
            // `storage.s3.timeout` for most requests (a request sending a body, or a copy,
            // gets more), whatever the retries do. A store that refuses or fails fast is
            // given up on after `retry_timeout` or 3 retries, whichever comes first.
            max_retries: 3,
            retry_timeout: Duration::from_secs(20),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(keys) = keys {
        builder = builder
            .with_access_key_id(keys.id)
            .with_secret_access_key(keys.secret);
        if let Some(token) = keys.token {
            builder = builder.with_token(token);
        }
    }
    builder.build().map_err(io::Error::other)
}

fn client_options(config: &S3Config) -> io::Result<ClientOptions> {
    let mut options = ClientOptions::new()
        .with_allow_http(
            config
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        )
        .with_connect_timeout(Duration::from_secs(5))
        // The request timeout covers the whole body, and a blob download to a slow client
        // may rightly take an hour. A store that accepts connections but does not answer
        // is caught by the deadlines of `deadline.rs` instead: one per request, and an
        // idle limit between chunks of a streamed body.
        .with_timeout_disabled();
    if let Some(ca) = &config.ca_file {
        let pem = std::fs::read(ca).map_err(|e| named("storage.s3.ca_file", ca, e))?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| named("storage.s3.ca_file", ca, io::Error::other(e)))?;
        for cert in certs {
            options = options.with_root_certificate(cert);
        }
    }
    Ok(options)
}

/// The keys to sign with, or `None` to leave it to object_store's environment chain (web
/// identity, ECS container, EC2 instance metadata).
fn keys(credentials: &S3Credentials) -> io::Result<Option<Keys>> {
    match credentials {
        S3Credentials::Static {
            access_key_id,
            secret,
        } => Ok(Some(Keys {
            id: access_key_id.clone(),
            secret: secret_of(secret)?,
            token: None,
        })),
        S3Credentials::Profile { file, profile } => profile_keys(file, profile).map(Some),
        S3Credentials::Environment => {
            // object_store reads AWS_ACCESS_KEY_ID itself but knows no profiles; the SDKs'
            // next step is the shared credentials file, so take it here when it has the profile.
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
                return Ok(None);
            }
            let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
            match default_credentials_file().filter(|f| f.is_file()) {
                Some(file) => match profile_keys(&file, &profile) {
                    Ok(keys) => Ok(Some(keys)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e),
                },
                None => Ok(None),
            }
        }
    }
}

fn secret_of(source: &SecretSource) -> io::Result<String> {
    match source {
        SecretSource::Inline(s) => Ok(s.clone()),
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| named("storage.s3.secret_access_key_file", path, e)),
        SecretSource::Env(var) => std::env::var(var).map_err(|_| {
            io::Error::other(format!(
                "storage.s3.secret_access_key_env: {var} is not set"
            ))
        }),
    }
}

/// Reads `[profile]` (or `[profile NAME]`) from an AWS credentials file. `NotFound` when the
/// file lacks the profile.
fn profile_keys(file: &Path, profile: &str) -> io::Result<Keys> {
    let text =
        std::fs::read_to_string(file).map_err(|e| named("storage.s3.credentials_file", file, e))?;
    let fields = parse_profile(&text, profile).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "storage.s3.credentials_file {}: has no [{profile}] profile",
                file.display()
            ),
        )
    })?;
    let get = |k: &str| {
        fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Keys {
            id,
            secret,
            token: get("aws_session_token"),
        }),
        _ => Err(io::Error::other(format!(
            "storage.s3.credentials_file {}: profile [{profile}] lacks aws_access_key_id or aws_secret_access_key",
            file.display()
        ))),
    }
}

/// The `key = value` lines of one INI section, or `None` when the section is missing.
fn parse_profile(text: &str, profile: &str) -> Option<Vec<(String, String)>> {
    let mut fields = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = section.trim();
            let name = name.strip_prefix("profile ").unwrap_or(name).trim();
            if fields.is_some() {
                break; // the profile's section ended
            }
            if name == profile {
                fields = Some(Vec::new());
            }
            continue;
        }
        if let (Some(f), Some((k, v))) = (fields.as_mut(), line.split_once('=')) {
            f.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    fields
}

fn named(key: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{key} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_ini_sections() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n\
                    [profile ci]\n# comment\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n[other]\nx=y\n";
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        let k = profile_keys(f.path(), "default").unwrap();
        assert_eq!(
            (k.id.as_str(), k.secret.as_str(), k.token),
            ("A", "B", None)
        );
        let k = profile_keys(f.path(), "ci").unwrap();
        assert_eq!(
            (k.id.as_str(), k.secret.as_str(), k.token.as_deref()),
            ("C", "D", Some("T"))
        );
        let e = profile_keys(f.path(), "missing").err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = profile_keys(f.path(), "other").err().unwrap();
        assert!(e.to_string().contains("lacks aws_access_key_id"), "{e}");
    }
}
