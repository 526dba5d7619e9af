//! `[storage]`: where registries keep their data. The filesystem (the default), an
//! S3-compatible object store (`backend = "s3"` with a `[storage.s3]` table) or Azure Blob
//! Storage (`backend = "azure"` with `[storage.azure]`, validated in `azure.rs`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use super::azure::{AzureConfig, AzureCredentials};
use super::raw::{RawS3, RawStorage};
use super::{Check, ConfigError};

mod reload;

#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// The filesystem backend's directory, and the root of routes that name none. With
    /// `s3` it is empty: the registry lives at `storage.s3.prefix` itself.
    pub root: PathBuf,
    /// Upload sessions untouched this long are deleted.
    pub upload_max_age: Duration,
    pub backend: StorageBackend,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageBackend {
    /// Each route's `root` is a directory.
    Filesystem,
    /// Each route's `root` is a key prefix under `s3.prefix` in one bucket.
    S3(Box<S3Config>),
    /// Each route's `root` is a blob name prefix under `azure.prefix` in one container.
    Azure(Box<AzureConfig>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Prepended to every key, without leading or trailing `/`; may be empty.
    pub prefix: String,
    pub region: String,
    /// For MinIO, Ceph RGW, Garage and other non-AWS services; `None` means AWS.
    pub endpoint: Option<String>,
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    pub path_style: bool,
    pub credentials: S3Credentials,
    /// Extra CA certificates (PEM) to trust for a private endpoint.
    pub ca_file: Option<PathBuf>,
    /// Size of the parts of multipart uploads, and so the most an upload buffers.
    pub part_size: u64,
    /// The largest blob published with one CopyObject (AWS allows 5 GiB); larger ones are
    /// copied in parts (UploadPartCopy) of this size.
    pub copy_part_size: u64,
    /// Whether the store honours `If-Match` on PUT (AWS, MinIO, Ceph RGW since Squid).
    /// Without it, two nodes appending to one upload session at once are not detected.
    pub conditional_writes: bool,
    /// The deadline of one request to the store, and the longest stall allowed while a
    /// body streams from it (see `registry::storage::object::deadline`).
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum S3Credentials {
    /// An access key from the config, with its secret from the config, a file or a variable.
    Static {
        access_key_id: String,
        secret: SecretSource,
    },
    /// A profile of an AWS shared credentials file (`~/.aws/credentials` format).
    Profile { file: PathBuf, profile: String },
    /// What the AWS SDKs look at: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
    /// `AWS_SESSION_TOKEN`, then `AWS_PROFILE` in `~/.aws/credentials`, then web identity,
    /// ECS container and EC2 instance credentials.
    Environment,
}

#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(String),
    File(PathBuf),
    Env(String),
}

/// Never prints the secret itself, so configs can be logged with `{:?}`.
impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretSource::File(p) => f.debug_tuple("File").field(p).finish(),
            SecretSource::Env(v) => f.debug_tuple("Env").field(v).finish(),
        }
    }
}

/// S3 refuses parts under 5 MiB (except the last one).
const MIN_PART: u64 = 5 << 20;
const DEFAULT_PART: u64 = 8 << 20;
const MAX_PART: u64 = 512 << 20;
/// Generous for real S3, whose slow requests take seconds; a store that does not answer
/// in this long is treated as down.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn validate(check: &Check<'_>, raw: &RawStorage) -> Result<StorageConfig, ConfigError> {
    let upload_max_age = check.duration(
        "storage.upload_max_age",
        raw.upload_max_age.as_deref(),
        Duration::from_secs(24 * 3600),
    )?;
    if upload_max_age < Duration::from_secs(60) {
        return Err(check.invalid(
            "storage.upload_max_age",
            "is under a minute, which would delete uploads in progress",
            "use at least \"1m\"; the default is \"24h\"",
        ));
    }
    let backend = backend(check, raw)?;
    let root = match (&backend, raw.root.as_deref()) {
        (StorageBackend::Filesystem, None) => PathBuf::from("./data"),
        (StorageBackend::Filesystem, Some(r)) if r.trim().is_empty() => {
            return Err(check.invalid(
                "storage.root",
                "is empty",
                "name a directory, for example \"./data\" or \"/var/lib/wharf\"",
            ))
        }
        (StorageBackend::Filesystem, Some(r)) => PathBuf::from(r),
        (_, None) => PathBuf::new(),
        (StorageBackend::S3(_), Some(_)) => {
            return Err(check.invalid(
                "storage.root",
                "is a directory, but storage.backend is \"s3\"",
                "remove storage.root; use storage.s3.prefix to place the registry in the bucket",
            ))
        }
        (StorageBackend::Azure(_), Some(_)) => return Err(check.invalid(
            "storage.root",
            "is a directory, but storage.backend is \"azure\"",
            "remove storage.root; use storage.azure.prefix to place the registry in the container",
        )),
    };
    Ok(StorageConfig {
        root,
        upload_max_age,
        backend,
    })
}

/// `storage.backend` and the one table it needs; a table of another backend is a mistake.
fn backend(check: &Check<'_>, raw: &RawStorage) -> Result<StorageBackend, ConfigError> {
    let name = raw.backend.as_deref().unwrap_or("filesystem");
    let tables = [("s3", raw.s3.is_some()), ("azure", raw.azure.is_some())];
    if let Some((table, _)) = tables.iter().find(|(t, set)| *set && *t != name) {
        return Err(check.invalid(
            format!("storage.{table}"),
            format!("is set but storage.backend is not \"{table}\""),
            format!("add backend = \"{table}\" to [storage], or remove [storage.{table}]"),
        ));
    }
    let missing = |table: &str, needs: &str| {
        check.invalid(
            format!("storage.{table}"),
            "is missing",
            format!("add a [storage.{table}] table with at least {needs}"),
        )
    };
    match name {
        "filesystem" => Ok(StorageBackend::Filesystem),
        "s3" => match &raw.s3 {
            Some(s3) => Ok(StorageBackend::S3(Box::new(s3_config(check, s3)?))),
            None => Err(missing("s3", "bucket = \"NAME\"")),
        },
        "azure" => match &raw.azure {
            Some(a) => Ok(StorageBackend::Azure(Box::new(super::azure::validate(
                check, a,
            )?))),
            None => Err(missing(
                "azure",
                "account = \"ACCOUNT\" and container = \"NAME\"",
            )),
        },
        other => Err(check.invalid(
            "storage.backend",
            format!("is {other:?}"),
            "use \"filesystem\" (the default), \"s3\" or \"azure\"",
        )),
    }
}

fn s3_config(check: &Check<'_>, raw: &RawS3) -> Result<S3Config, ConfigError> {
    let bucket = raw.bucket.clone().unwrap_or_default();
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !bucket_ok {
        return Err(check.invalid(
            "storage.s3.bucket",
            format!("is {bucket:?}, not a bucket name"),
            "name an existing bucket: 3 to 63 lower-case letters, digits, '-' and '.'",
        ));
    }
    let common = Common::validate(
        check,
        "s3",
        Fields {
            prefix: raw.prefix.as_deref(),
            endpoint: raw.endpoint.as_deref(),
            endpoint_example: "\"https://minio.internal:9000\" (no bucket in it)",
            part_size: raw.part_size,
            ca_file: raw.ca_file.as_deref(),
            timeout: raw.timeout.as_deref(),
        },
    )?;
    let endpoint = common.endpoint;
    Ok(S3Config {
        timeout: common.timeout,
        bucket,
        prefix: common.prefix,
        region: raw.region.clone().unwrap_or_else(|| "us-east-1".into()),
        path_style: raw.path_style.unwrap_or(endpoint.is_some()),
        endpoint,
        credentials: credentials(check, raw)?,
        ca_file: common.ca_file,
        part_size: common.part_size,
        copy_part_size: copy_part_size(check, raw.copy_part_size)?,
        conditional_writes: raw.conditional_writes.unwrap_or(true),
    })
}

/// S3's bounds for one CopyObject or one UploadPartCopy: 5 MiB to 5 GiB.
fn copy_part_size(check: &Check<'_>, raw: Option<u64>) -> Result<u64, ConfigError> {
    const MAX_COPY: u64 = 5 << 30;
    let size = raw.unwrap_or(MAX_COPY);
    if !(MIN_PART..=MAX_COPY).contains(&size) {
        return Err(check.invalid(
            "storage.s3.copy_part_size",
            format!("is {size}"),
            "use 5242880 (5 MiB) to 5368709120 (5 GiB, AWS's limit for one copy, the default)",
        ));
    }
    Ok(size)
}

/// The keys every object store table has, as written.
pub(super) struct Fields<'a> {
    pub prefix: Option<&'a str>,
    pub endpoint: Option<&'a str>,
    /// How an endpoint of this store looks, for the error message.
    pub endpoint_example: &'a str,
    pub part_size: Option<u64>,
    pub ca_file: Option<&'a str>,
    pub timeout: Option<&'a str>,
}

/// The keys every object store table has, validated: one set of rules for S3 and Azure.
pub(super) struct Common {
    pub prefix: String,
    pub endpoint: Option<String>,
    pub part_size: u64,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

impl Common {
    /// `table` is the key below `storage` (`s3`, `azure`), for error messages.
    pub(super) fn validate(
        check: &Check<'_>,
        table: &str,
        raw: Fields<'_>,
    ) -> Result<Self, ConfigError> {
        let prefix = raw.prefix.unwrap_or("").trim_matches('/');
        if !prefix.is_empty() && !is_key_prefix(prefix) {
            return Err(check.invalid(
                format!("storage.{table}.prefix"),
                format!("is {prefix:?}"),
                "use path segments of letters, digits, '.', '_' and '-', like \"registry/prod\"",
            ));
        }
        if let Some(e) = raw.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(check.invalid(
                    format!("storage.{table}.endpoint"),
                    format!("is {e:?}, not an http(s) URL"),
                    format!("write it like {}", raw.endpoint_example),
                ));
            }
        }
        let part_size = raw.part_size.unwrap_or(DEFAULT_PART);
        if !(MIN_PART..=MAX_PART).contains(&part_size) {
            return Err(check.invalid(
                format!("storage.{table}.part_size"),
                format!("is {part_size}"),
                "use 5242880 (5 MiB, S3's minimum) to 536870912; the default is 8388608",
            ));
        }
        let ca_file = raw.ca_file.map(PathBuf::from);
        if let Some(f) = ca_file.as_ref().filter(|f| !f.is_file()) {
            return Err(check.invalid(
                format!("storage.{table}.ca_file"),
                format!("names {:?}, which does not exist", f.display().to_string()),
                "point it at the PEM certificate of the CA that signed the endpoint's certificate",
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            endpoint: raw.endpoint.map(str::to_owned),
            part_size,
            ca_file,
            timeout: timeout(check, table, raw.timeout)?,
        })
    }
}

fn timeout(check: &Check<'_>, table: &str, raw: Option<&str>) -> Result<Duration, ConfigError> {
    let key = &format!("storage.{table}.timeout");
    let timeout = check.duration(key, raw, DEFAULT_TIMEOUT)?;
    let bounds = Duration::from_secs(1)..=Duration::from_secs(600);
    if !bounds.contains(&timeout) {
        return Err(check.invalid(
            key,
            format!("is {:?}, outside 1s to 10m", raw.unwrap_or_default()),
            "use a duration like \"30s\" (the default): shorter fails a healthy store's slow requests, longer keeps clients waiting on a dead one",
        ));
    }
    Ok(timeout)
}

fn credentials(check: &Check<'_>, raw: &RawS3) -> Result<S3Credentials, ConfigError> {
    let secret = secret_source(
        check,
        "storage.s3.secret_access_key",
        "the secret access key",
        [
            &raw.secret_access_key,
            &raw.secret_access_key_file,
            &raw.secret_access_key_env,
        ],
    )?;
    let static_key = raw.access_key_id.is_some() || secret.is_some();
    let profile = raw.credentials_file.is_some() || raw.profile.is_some();
    match (raw.access_key_id.clone(), secret) {
        _ if static_key && profile => Err(check.invalid(
            "storage.s3.credentials_file",
            "is set together with access_key_id/secret_access_key",
            "use either an access key or a credentials file profile",
        )),
        (Some(access_key_id), Some(secret)) => Ok(S3Credentials::Static {
            access_key_id,
            secret,
        }),
        (Some(_), None) => Err(check.invalid(
            "storage.s3.secret_access_key_file",
            "is missing for access_key_id",
            "set secret_access_key_file (or secret_access_key_env, or secret_access_key)",
        )),
        (None, Some(_)) => Err(check.invalid(
            "storage.s3.access_key_id",
            "is missing for the secret access key",
            "set access_key_id to the key the secret belongs to",
        )),
        (None, None) if profile => {
            let file = match &raw.credentials_file {
                Some(f) => PathBuf::from(f),
                None => default_credentials_file().ok_or_else(|| {
                    check.invalid(
                        "storage.s3.credentials_file",
                        "is not set and HOME is unknown",
                        "name the credentials file, like \"/etc/wharf/aws-credentials\"",
                    )
                })?,
            };
            if !file.is_file() {
                return Err(check.invalid(
                    "storage.s3.credentials_file",
                    format!("names {:?}, which does not exist", file.display().to_string()),
                    "point it at an AWS credentials file ([profile] with aws_access_key_id and aws_secret_access_key)",
                ));
            }
            let profile = raw.profile.clone().unwrap_or_else(|| "default".into());
            Ok(S3Credentials::Profile { file, profile })
        }
        (None, None) => Ok(S3Credentials::Environment),
    }
}

/// A secret given inline (`key`), in a file (`key_file`) or in a variable (`key_env`): at
/// most one of them. `what` names the secret in the fix.
pub(super) fn secret_source(
    check: &Check<'_>,
    key: &str,
    what: &str,
    [inline, file, env]: [&Option<String>; 3],
) -> Result<Option<SecretSource>, ConfigError> {
    match (inline, file, env) {
        (None, None, None) => Ok(None),
        (Some(s), None, None) => Ok(Some(SecretSource::Inline(s.clone()))),
        (None, Some(f), None) if Path::new(f).is_file() => Ok(Some(SecretSource::File(f.into()))),
        (None, Some(f), None) => Err(check.invalid(
            format!("{key}_file"),
            format!("names {f:?}, which does not exist"),
            format!("create it with {what} (mode 0600)"),
        )),
        (None, None, Some(v)) if std::env::var_os(v).is_some() => {
            Ok(Some(SecretSource::Env(v.clone())))
        }
        (None, None, Some(v)) => Err(check.invalid(
            format!("{key}_env"),
            format!("names {v:?}, which is not set"),
            format!("set that environment variable for wharf, or use {key}_file"),
        )),
        _ => Err(check.invalid(
            key,
            "is given more than once (inline, _file and _env)",
            format!("keep one of {key}, {key}_file, {key}_env"),
        )),
    }
}

/// `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`.
pub fn default_credentials_file() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        return Some(f.into());
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".aws").join("credentials"))
}

/// Slash-separated segments of `[A-Za-z0-9._-]`, none of them `.` or `..`.
pub fn is_key_prefix(s: &str) -> bool {
    s.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    })
}

/// With an object store, a route's registry `root` is a key prefix below `storage.s3.prefix`, so it
/// must be one.
pub(super) fn check_route_roots(
    check: &Check<'_>,
    storage: &StorageConfig,
    servers: &[super::ServerConfig],
) -> Result<(), ConfigError> {
    if storage.backend == StorageBackend::Filesystem {
        return Ok(());
    }
    for (i, s) in servers.iter().enumerate() {
        for (j, r) in s.routes.iter().enumerate() {
            let Some(root) = r.target.root() else {
                continue;
            };
            let ok = root.as_os_str().is_empty() || root.to_str().is_some_and(is_key_prefix);
            if !ok {
                return Err(check.invalid(
                    format!("server[{i}].route[{j}].registry.root"),
                    format!(
                        "is {:?}, but with an object store backend it is a key prefix",
                        root.display().to_string()
                    ),
                    "use a relative prefix like \"mirror\", or leave it out for the backend's prefix itself",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
