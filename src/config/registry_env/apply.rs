//! The registry:2 settings wharf takes, applied to the raw config: each checked for its
//! shape here (so the error names the setting) and validated with the rest afterwards.

use super::collect::Registry2;
use super::{env_error, Applied, Effect, Origin, Setting};
use crate::config::raw::{
    RawAccessRule, RawAuth, RawConfig, RawListener, RawProvider, RawS3, RawServer, RawServerTls,
};
use crate::config::ConfigError;

/// What `apply` records as it goes.
pub(super) struct Record(pub Vec<Applied>);

impl Record {
    pub fn set(&mut self, s: &Setting, key: &str, shown: impl Into<String>) {
        self.0.push(Applied {
            label: s.label.clone(),
            effect: Effect::Set {
                key: key.to_owned(),
                shown: shown.into(),
            },
        });
    }
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

pub(super) fn apply(raw: &mut RawConfig, w: Registry2) -> Result<Vec<Applied>, ConfigError> {
    let mut rec = Record(Vec::new());
    http(raw, &w, &mut rec)?;
    storage(raw, &w, &mut rec)?;
    if let Some(s) = &w.delete_enabled {
        let on = boolean(s)?;
        raw.registry.delete = Some(on);
        rec.set(s, "registry.delete", format!("registry.delete = {on}"));
    }
    auth(raw, &w, &mut rec)?;
    log(raw, &w, &mut rec)?;
    super::notifications::apply(raw, &w.endpoints, &mut rec)?;
    Ok(rec.0)
}

/// YAML's booleans, as registry:2 reads every value.
pub(super) fn boolean(s: &Setting) -> Result<bool, ConfigError> {
    match s.value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" => Ok(true),
        "false" | "no" | "off" | "n" => Ok(false),
        _ => Err(env_error(
            &s.label,
            &format!("is {:?}, not true or false", s.value),
            "set it to true or false",
        )),
    }
}

/// Go's listen address: `:5000` is every IPv4 address, `localhost:5000` the loopback.
fn listen_address(s: &Setting) -> Result<String, ConfigError> {
    let v = s.value.trim();
    let bad = || {
        env_error(
            &s.label,
            &format!("is {v:?}, not an address wharf can listen on"),
            "write it like \":5000\", \"0.0.0.0:5000\", \"127.0.0.1:5000\" or \"[::]:5000\"",
        )
    };
    let (host, port) = v.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = match host {
        "" => "0.0.0.0",
        "localhost" => "127.0.0.1",
        h => h,
    };
    let addr = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    addr.parse::<std::net::SocketAddr>().map_err(|_| bad())?;
    Ok(addr)
}

fn http(raw: &mut RawConfig, w: &Registry2, rec: &mut Record) -> Result<(), ConfigError> {
    if let Some(s) = &w.addr {
        let address = listen_address(s)?;
        // registry:2 has one address: it replaces the file's listeners, keeping the TLS
        // mode of the first.
        let tls = raw.listener.first().and_then(|l| l.tls.clone());
        raw.listener = vec![listener(&address, tls)];
        rec.set(
            s,
            "listener[0].address",
            format!("one [[listener]] address = {}", quoted(&address)),
        );
    }
    if let Some(s) = &w.host {
        let uri: http::Uri = s.value.trim().parse().map_err(|_| host_error(s))?;
        let host = match (uri.scheme(), uri.host()) {
            (Some(_), Some(h)) => h.trim_start_matches('[').trim_end_matches(']').to_owned(),
            _ => return Err(host_error(s)),
        };
        let server = the_server(raw, s)?;
        server.names = vec![host.clone()];
        server.default = Some(true);
        rec.set(
            s,
            "server[0].names",
            format!("server names = [{}], default = true", quoted(&host)),
        );
    }
    if let Some(s) = &w.drain_timeout {
        raw.shutdown.grace = Some(s.value.trim().to_owned());
        rec.set(
            s,
            "shutdown.grace",
            format!("shutdown.grace = {}", quoted(s.value.trim())),
        );
    }
    if let Some(s) = &w.debug_addr {
        let address = listen_address(s)?;
        raw.admin.address = Some(address.clone());
        rec.set(
            s,
            "admin.address",
            format!(
                "admin.address = {} (serves /metrics only)",
                quoted(&address)
            ),
        );
    }
    tls(raw, w, rec)
}

fn host_error(s: &Setting) -> ConfigError {
    env_error(
        &s.label,
        &format!("is {:?}, not a URL", s.value),
        "write it like \"https://registry.example.com:5000\"",
    )
}

fn listener(address: &str, tls: Option<String>) -> RawListener {
    RawListener {
        address: address.to_owned(),
        tls,
        plain: None,
        redirect_port: None,
    }
}

/// The server block a setting about "the server" is for: the file's only one, or a new
/// default one when the file has none.
fn the_server<'a>(raw: &'a mut RawConfig, s: &Setting) -> Result<&'a mut RawServer, ConfigError> {
    if raw.server.is_empty() {
        raw.server.push(RawServer {
            default: Some(true),
            ..RawServer::default()
        });
    }
    match raw.server.as_mut_slice() {
        [one] => Ok(one),
        many => Err(env_error(
            &s.label,
            &format!("is set, but the config file has {} [[server]] blocks, so it is unclear which one it is for", many.len()),
            "set it in the right [[server]] block of the file and unset the variable",
        )),
    }
}

fn tls(raw: &mut RawConfig, w: &Registry2, rec: &mut Record) -> Result<(), ConfigError> {
    let (cert, key) = match (&w.tls_certificate, &w.tls_key) {
        (None, None) => return Ok(()),
        (Some(c), Some(k)) => (c, k),
        (Some(c), None) => {
            return Err(env_error(
                &c.label,
                "is set without the key",
                &format!(
                    "set {} too",
                    c.label
                        .replace("CERTIFICATE", "KEY")
                        .replace("certificate", "key")
                ),
            ))
        }
        (None, Some(k)) => {
            return Err(env_error(
                &k.label,
                "is set without the certificate",
                &format!(
                    "set {} too",
                    k.label
                        .replace("KEY", "CERTIFICATE")
                        .replace("key", "certificate")
                ),
            ))
        }
    };
    let server = the_server(raw, cert)?;
    server.tls = Some(RawServerTls {
        cert: Some(cert.value.trim().to_owned()),
        key: Some(key.value.trim().to_owned()),
        self_signed: None,
    });
    rec.set(
        cert,
        "server[0].tls.cert",
        format!("server tls.cert = {}", quoted(cert.value.trim())),
    );
    rec.set(
        key,
        "server[0].tls.key",
        format!("server tls.key = {}", quoted(key.value.trim())),
    );
    // registry:2 serves TLS on its one address.
    if raw.listener.is_empty() {
        raw.listener.push(listener("0.0.0.0:5000", None));
    }
    let tls_on = |l: &RawListener| matches!(l.tls.as_deref(), Some("on" | "auto"));
    match raw.listener.as_mut_slice() {
        [one] => {
            if !tls_on(one) {
                one.tls = Some("on".into());
                rec.set(cert, "listener[0].tls", format!("listener {} tls = \"on\"", one.address));
            }
            Ok(())
        }
        many if many.iter().any(tls_on) => Ok(()),
        many => Err(env_error(
            &cert.label,
            &format!("is set, but the config file has {} listeners and none with TLS, so it is unclear which should serve it", many.len()),
            "add tls = \"on\" to the right [[listener]] in the file, or set REGISTRY_HTTP_ADDR",
        )),
    }
}

fn auth(raw: &mut RawConfig, w: &Registry2, rec: &mut Record) -> Result<(), ConfigError> {
    if let Some(s) = &w.auth {
        if s.value.trim() != "htpasswd" {
            return Err(env_error(
                &s.label,
                &format!("is {:?}; wharf's logins are htpasswd or LDAP", s.value),
                "use REGISTRY_AUTH=htpasswd with REGISTRY_AUTH_HTPASSWD_PATH, or LDAP in [server.auth] of wharf.toml",
            ));
        }
    }
    let Some(path) = &w.htpasswd_path else {
        return match w.auth.as_ref().or(w.htpasswd_realm.as_ref()) {
            Some(s) => Err(env_error(&s.label, "asks for htpasswd logins without the file", "set REGISTRY_AUTH_HTPASSWD_PATH to the htpasswd file (bcrypt entries, as registry:2 requires)")),
            None => Ok(()),
        };
    };
    // registry:2's htpasswd: any user who logs in may pull and push, and delete when
    // deletes are enabled. An access list in the file stays.
    let delete = raw.registry.delete == Some(true);
    let server = the_server(raw, path)?;
    let auth = server.auth.get_or_insert_with(RawAuth::default);
    auth.providers = vec![RawProvider {
        htpasswd: Some(path.value.trim().to_owned()),
        ldap: None,
    }];
    rec.set(
        path,
        "server[0].auth.providers",
        format!(
            "server auth.providers = [{{ htpasswd = {} }}]",
            quoted(path.value.trim())
        ),
    );
    if let Some(realm) = &w.htpasswd_realm {
        auth.realm = Some(realm.value.clone());
        rec.set(
            realm,
            "server[0].auth.realm",
            format!("server auth.realm = {}", quoted(&realm.value)),
        );
    }
    if auth.access.is_empty() {
        let mut actions = vec!["pull".to_owned(), "push".to_owned()];
        if delete {
            actions.push("delete".into());
        }
        let shown = format!("server auth.access = [{{ repos = \"*\", who = [\"authenticated\"], actions = {actions:?} }}] (registry:2's rule)");
        auth.access = vec![RawAccessRule {
            repos: "*".into(),
            who: vec!["authenticated".into()],
            actions,
        }];
        rec.set(path, "server[0].auth.access", shown);
    }
    Ok(())
}

fn log(raw: &mut RawConfig, w: &Registry2, rec: &mut Record) -> Result<(), ConfigError> {
    if let Some(s) = &w.log_level {
        let level = match s.value.trim().to_ascii_lowercase().as_str() {
            "panic" | "fatal" | "error" => "error",
            "warn" | "warning" => "warn",
            "info" => "info",
            "debug" => "debug",
            "trace" => "trace",
            other => {
                return Err(env_error(
                    &s.label,
                    &format!("is {other:?}"),
                    "use error, warn, info, debug or trace",
                ))
            }
        };
        raw.log.level = Some(level.into());
        rec.set(s, "log.level", format!("log.level = {}", quoted(level)));
    }
    if let Some(s) = &w.log_formatter {
        let format = match s.value.trim() {
            "text" => "text",
            "json" => "json",
            other => {
                return Err(env_error(
                    &s.label,
                    &format!("is {other:?}"),
                    "use text or json (wharf has no logstash format; json is close)",
                ))
            }
        };
        raw.log.format = Some(format.into());
        rec.set(s, "log.format", format!("log.format = {}", quoted(format)));
    }
    if let Some(s) = &w.access_log_disabled {
        let access = if boolean(s)? { "off" } else { "stderr" };
        raw.log.access = Some(access.into());
        raw.log.access_log = None;
        rec.set(s, "log.access", format!("log.access = {}", quoted(access)));
    }
    Ok(())
}

/// `storage`: the filesystem or S3, and what the rest of `storage.*` says.
fn storage(raw: &mut RawConfig, w: &Registry2, rec: &mut Record) -> Result<(), ConfigError> {
    if let Some(s) = &w.upload_max_age {
        raw.storage.upload_max_age = Some(s.value.trim().to_owned());
        rec.set(
            s,
            "storage.upload_max_age",
            format!("storage.upload_max_age = {}", quoted(s.value.trim())),
        );
    }
    let s3_first = [
        &w.s3.bucket,
        &w.s3.region,
        &w.s3.region_endpoint,
        &w.s3.access_key,
        &w.s3.secret_key,
        &w.s3.root_directory,
        &w.s3.force_path_style,
        &w.s3.secure,
        &w.s3.chunk_size,
    ]
    .into_iter()
    .flatten()
    .next();
    let backend = match (&w.storage, &w.fs_root, s3_first) {
        (None, None, None) => return Ok(()),
        (Some(s), _, _) => match s.value.trim() {
            b @ ("filesystem" | "s3") => (b, s),
            other => {
                return Err(env_error(
                    &s.label,
                    &format!("is {other:?}; wharf's storage drivers here are filesystem and s3"),
                    "use filesystem or s3 (Azure: [storage.azure] in wharf.toml)",
                ))
            }
        },
        (None, Some(fs), None) => ("filesystem", fs),
        (None, None, Some(s3)) => ("s3", s3),
        (None, Some(fs), Some(_)) => {
            return Err(env_error(
                &fs.label,
                "is set together with S3 settings",
                "set REGISTRY_STORAGE=filesystem or s3, and only that driver's settings",
            ))
        }
    };
    let (name, by) = backend;
    if name == "filesystem" && w.s3.any() {
        return Err(env_error(
            &by.label,
            "says filesystem, but S3 settings are set too",
            "unset the REGISTRY_STORAGE_S3_* settings, or use s3",
        ));
    }
    if name == "s3" {
        if let Some(fs) = &w.fs_root {
            return Err(env_error(
                &fs.label,
                "is set, but the storage is s3",
                "unset it; REGISTRY_STORAGE_S3_ROOTDIRECTORY places the registry in the bucket",
            ));
        }
    }
    let was = raw
        .storage
        .backend
        .clone()
        .unwrap_or_else(|| "filesystem".into());
    raw.storage.backend = Some(name.into());
    if name == "s3" && (was != name || raw.storage.s3.is_none()) {
        // The table is this setting's doing: an error about a key in it (a bucket
        // missing) names the setting.
        rec.set(
            by,
            "storage.s3",
            "[storage.s3] from the REGISTRY_STORAGE_S3_* settings",
        );
    }
    if was != name {
        // The file's tables for another backend do not apply any more.
        raw.storage.s3 = None;
        raw.storage.azure = None;
        raw.storage.root = None;
        rec.set(
            by,
            "storage.backend",
            format!("storage.backend = {}", quoted(name)),
        );
    }
    if let Some(fs) = &w.fs_root {
        // registry:2's rootdirectory holds docker/registry/v2; wharf's root means the same.
        raw.storage.root = Some(fs.value.trim().to_owned());
        rec.set(
            fs,
            "storage.root",
            format!("storage.root = {}", quoted(fs.value.trim())),
        );
    }
    if name == "s3" {
        s3(raw.storage.s3.get_or_insert_with(RawS3::default), w, rec)?;
    }
    Ok(())
}

fn s3(t: &mut RawS3, w: &Registry2, rec: &mut Record) -> Result<(), ConfigError> {
    let s = &w.s3;
    let text = |s: &Setting| s.value.trim().to_owned();
    if let Some(v) = &s.bucket {
        t.bucket = Some(text(v));
        rec.set(
            v,
            "storage.s3.bucket",
            format!("storage.s3.bucket = {}", quoted(&text(v))),
        );
    }
    if let Some(v) = &s.region {
        t.region = Some(text(v));
        rec.set(
            v,
            "storage.s3.region",
            format!("storage.s3.region = {}", quoted(&text(v))),
        );
    }
    let secure = s.secure.as_ref().map(boolean).transpose()?.unwrap_or(true);
    if let Some(v) = &s.region_endpoint {
        // registry:2 adds the scheme when the endpoint has none: https unless secure is false.
        let endpoint = match text(v) {
            e if e.contains("://") => e,
            e if secure => format!("https://{e}"),
            e => format!("http://{e}"),
        };
        rec.set(
            v,
            "storage.s3.endpoint",
            format!("storage.s3.endpoint = {}", quoted(&endpoint)),
        );
        t.endpoint = Some(endpoint);
    }
    if let Some(v) = &s.secure {
        let why = if s.region_endpoint.is_some() {
            "it gave the endpoint's scheme"
        } else {
            "AWS is reached over https"
        };
        rec.0.push(Applied {
            label: v.label.clone(),
            effect: Effect::NotNeeded(why.into()),
        });
    }
    if let Some(v) = &s.root_directory {
        // The same key prefix: registry:2's rootdirectory holds docker/registry/v2, and so does wharf's prefix.
        let prefix = v.value.trim().trim_matches('/').to_owned();
        rec.set(
            v,
            "storage.s3.prefix",
            format!("storage.s3.prefix = {}", quoted(&prefix)),
        );
        t.prefix = Some(prefix);
    }
    if let Some(v) = &s.force_path_style {
        let on = boolean(v)?;
        t.path_style = Some(on);
        rec.set(
            v,
            "storage.s3.path_style",
            format!("storage.s3.path_style = {on}"),
        );
    }
    if let Some(v) = &s.chunk_size {
        // Parsed as TOML's integer (i64): a larger number could be neither a part size
        // nor written into the wharf.toml `import-config` makes of it.
        let size: u64 = match v.value.trim().parse::<i64>() {
            Ok(n) if n >= 0 => n as u64,
            _ => {
                return Err(env_error(
                    &v.label,
                    &format!("is {:?}, not a number of bytes", v.value),
                    "write the part size in bytes, e.g. 10485760",
                ))
            }
        };
        t.part_size = Some(size);
        rec.set(
            v,
            "storage.s3.part_size",
            format!("storage.s3.part_size = {size}"),
        );
    }
    credentials(t, s, rec)
}

fn credentials(
    t: &mut RawS3,
    s: &super::collect::S3Settings,
    rec: &mut Record,
) -> Result<(), ConfigError> {
    match (&s.access_key, &s.secret_key) {
        (None, None) => Ok(()),
        (Some(k), None) => Err(env_error(
            &k.label,
            "is set without the secret key",
            "set REGISTRY_STORAGE_S3_SECRETKEY too (or neither, for the AWS credential chain)",
        )),
        (None, Some(k)) => Err(env_error(
            &k.label,
            "is set without the access key",
            "set REGISTRY_STORAGE_S3_ACCESSKEY too (or neither, for the AWS credential chain)",
        )),
        (Some(id), Some(secret)) => {
            t.access_key_id = Some(id.value.trim().to_owned());
            rec.set(
                id,
                "storage.s3.access_key_id",
                format!("storage.s3.access_key_id = {}", quoted(id.value.trim())),
            );
            (
                t.secret_access_key,
                t.secret_access_key_file,
                t.secret_access_key_env,
            ) = (None, None, None);
            (t.credentials_file, t.profile) = (None, None);
            match secret.origin {
                // The secret stays in its variable: the config only names it.
                Origin::Environment => {
                    t.secret_access_key_env = Some(secret.name.clone());
                    rec.set(
                        secret,
                        "storage.s3.secret_access_key_env",
                        format!(
                            "storage.s3.secret_access_key_env = {}",
                            quoted(&secret.name)
                        ),
                    );
                }
                Origin::File => {
                    t.secret_access_key = Some(secret.value.trim().to_owned());
                    rec.set(
                        secret,
                        "storage.s3.secret_access_key",
                        "storage.s3.secret_access_key (copied from the file)",
                    );
                }
            }
            Ok(())
        }
    }
}
