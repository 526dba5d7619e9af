//! Building the S3 client from `[storage.s3]`: endpoint, addressing and credentials (the
//! HTTP client and retries are `client.rs`'s, shared with Azure). Nothing here talks to
//! the network; [`super::ObjectStorage::check_writable`] does.

use std::io;
use std::path::Path;

use object_store::aws::{AmazonS3, AmazonS3Builder};

use super::client::{self, named};

use crate::config::{default_credentials_file, S3Config, S3Credentials};

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
        .with_client_options(client::options(
            "s3",
            config.endpoint.as_deref(),
            config.ca_file.as_deref(),
        )?)
        .with_retry(client::retry());
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

/// The keys to sign with, or `None` to leave it to object_store's environment chain (web
/// identity, ECS container, EC2 instance metadata).
fn keys(credentials: &S3Credentials) -> io::Result<Option<Keys>> {
    match credentials {
        S3Credentials::Static {
            access_key_id,
            secret,
        } => Ok(Some(Keys {
            id: access_key_id.clone(),
            secret: client::secret("storage.s3.secret_access_key", secret)?,
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
