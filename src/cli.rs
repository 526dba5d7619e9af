//! The command line: `wharf serve`, `wharf check-config`, `wharf events`, and the others below.

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use wharf::config::{Config, LogFormat, ServerTls, TlsMode};
use wharf::server::Server;

#[derive(Parser)]
#[command(
    name = "wharf",
    version,
    about = "A private container registry with its own front door"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry (default: 0.0.0.0:5000, storing under ./data).
    Serve {
        /// Config file; without it conf/wharf.toml is used when present, else the built-in default.
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// registry:2's config.yml, as `registry serve config.yml` takes it (or
        /// $REGISTRY_CONFIGURATION_PATH): its settings apply over the config file's, and
        /// REGISTRY_* variables over both. A setting wharf cannot carry over is an error.
        registry_yml: Option<PathBuf>,
    },
    /// Validate a config file and exit non-zero, naming the key and the fix, when it is wrong.
    CheckConfig {
        /// The file to check (default: what `serve` would use: $WHARF_CONFIG, else
        /// conf/wharf.toml when it exists, else the built-in default).
        file: Option<PathBuf>,
    },
    /// Manage wharf's own CA: create it, issue server certificates, show how to trust it.
    Cert {
        #[command(subcommand)]
        command: crate::cert_cmd::CertCommand,
    },
    /// Add, update, delete (--delete) or check (--verify) a bcrypt user in an htpasswd file.
    Htpasswd(crate::htpasswd_cmd::HtpasswdArgs),
    /// Convert a registry:2 config.yml (and the nginx site in front of it) to a wharf.toml,
    /// with a comment at each setting that could not be carried over.
    ImportConfig {
        /// registry:2's configuration file (usually /etc/docker/registry/config.yml).
        config_yml: PathBuf,
        /// The nginx site (server blocks) in front of the registry.
        #[arg(long)]
        nginx: Option<PathBuf>,
        /// Where to write the wharf.toml (default: standard output). An existing file is
        /// not overwritten.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// List notifications: pending deliveries with their attempts, recent deliveries and
    /// failures, per endpoint (safe while the server runs).
    Events {
        /// Config file (default: what `serve` would use).
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Repository operations (`wharf repo delete <name>`).
    Repo {
        #[command(subcommand)]
        command: crate::repo_cmd::RepoCommand,
    },
    /// Apply the `[[retention]]` policies: print the plan per repository (tag, digest,
    /// push time, which policy), then delete through the registry (events; immutable tags
    /// refused). On the filesystem, with the server stopped.
    Retention {
        /// Config file (default: what `serve` would use).
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// Print the plan, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Per repository: tags, manifests, bytes, and bytes only it links (what deleting it
    /// would free). On the filesystem, with the server stopped (or GET /wharf/api/v1/usage).
    Usage {
        /// Config file (default: what `serve` would use).
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// One JSON object per storage root instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Collect garbage: delete blobs no tag, manifest or layer link reaches and older than
    /// `[gc] grace` (and untagged manifests with `untagged = "delete"`), printing each and
    /// the bytes freed. Filesystem storage, with the server stopped, for now.
    Gc {
        /// Config file (default: what `serve` would use).
        #[arg(long, short, env = "WHARF_CONFIG")]
        config: Option<PathBuf>,
        /// Print what would go, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve {
                config,
                registry_yml,
            } => serve(config, registry_yml).await,
            Command::CheckConfig { file } => check_config(file).await,
            Command::Cert { command } => crate::cert_cmd::run(command),
            Command::Htpasswd(args) => crate::htpasswd_cmd::run(args).await,
            Command::ImportConfig {
                config_yml,
                nginx,
                output,
            } => import_config(&config_yml, nginx.as_deref(), output.as_deref()),
            Command::Events { config } => crate::events_cmd::run(config).await,
            Command::Gc { config, dry_run } => crate::gc_cmd::run(config, dry_run).await,
            Command::Repo { command } => crate::repo_cmd::run(command).await,
            Command::Usage { config, json } => crate::repo_cmd::usage(config, json).await,
            Command::Retention { config, dry_run } => {
                crate::repo_cmd::retention(config, dry_run).await
            }
        }
    }
}

async fn serve(path: Option<PathBuf>, registry_yml: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, origin) = Config::load_with(path.as_deref(), registry_yml.as_deref())?;
    init_logging(&config);
    tracing::info!(config = %origin, storage = %config.storage.root.display(), "starting wharf");
    for line in registry_env_report(&config) {
        tracing::info!("{line}");
    }
    let server = Server::bind(config.clone()).await?;
    // Signals are taken before saying we are up: until then, SIGHUP or SIGTERM would kill
    // the process instead of reloading or draining it.
    let reloads = reload_on_sighup(server.reloader(), path, registry_yml);
    let stop = shutdown_signal();
    // Before "listening on", so that whoever waits for that line has the hints too.
    print_trust_hints(&config, &server.local_addrs());
    for addr in server.local_addrs() {
        // Printed on stdout, one line per listener, so scripts and tests can read the port.
        // Never `println!`: it panics when stdout is gone (a reader that took the first
        // line and left, `| head -1`, a closed descriptor), and a server must not die of
        // that. This once killed wharf under a test that read only the first line.
        let _ = writeln!(std::io::stdout().lock(), "listening on {addr}");
    }
    tokio::spawn(reloads);
    server.run(stop).await;
    Ok(())
}

/// For servers with wharf-issued certificates, how to make clients trust wharf's CA: the
/// full commands for a person at a terminal; otherwise (a JSON log, journald, a file) one
/// event per address whose fields say the same, so every log line stays one record.
fn print_trust_hints(config: &Config, addrs: &[std::net::SocketAddr]) {
    use std::io::IsTerminal;
    use wharf::tls::ca::{trust_hint, write_trust_dir, TrustHint, CA_CERT};
    let self_signed = config
        .servers
        .iter()
        .filter(|s| s.tls == Some(ServerTls::SelfSigned));
    let mut wrote_trust_dir = false;
    let for_a_person = config.log.format == LogFormat::Text && std::io::stderr().is_terminal();
    let ca_cert = config.ca_dir.join(CA_CERT);
    for server in self_signed {
        let Some(name) = server.names.first() else {
            continue;
        };
        if !wrote_trust_dir {
            // For a CA made before wharf wrote this folder along with it.
            if let Err(error) = write_trust_dir(&config.ca_dir) {
                tracing::warn!(%error, "cannot write the folder for clients' --cert-dir");
            }
            wrote_trust_dir = true;
        }
        for (addr, l) in addrs.iter().zip(&config.listeners) {
            if l.tls == TlsMode::Off {
                continue;
            }
            let registry = format!("{name}:{}", addr.port());
            if for_a_person {
                eprintln!("{}", trust_hint(&ca_cert, &registry));
                continue;
            }
            let hint = TrustHint::new(&ca_cert, &registry);
            tracing::info!(
                %registry,
                ca = %hint.ca.display(),
                cert_dir = %hint.cert_dir.display(),
                certs_d = %hint.certs_d.join(" "),
                "clients must trust wharf's CA: copy it to certs.d/<certs_d>/ca.crt or pass --cert-dir <cert_dir>; `wharf cert trust {registry}` prints the commands"
            );
        }
    }
}

/// Re-reads the config file on SIGHUP and applies it; a broken file or certificate is
/// logged and the running configuration stays. The signal is taken at once; the returned
/// future serves it.
fn reload_on_sighup(
    reloader: wharf::server::Reloader,
    path: Option<PathBuf>,
    registry_yml: Option<PathBuf>,
) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let Ok(mut hup) = hup else {
                tracing::error!("cannot listen for SIGHUP; reloads are unavailable");
                return;
            };
            while hup.recv().await.is_some() {
                let outcome = match Config::load_with(path.as_deref(), registry_yml.as_deref()) {
                    Ok((config, origin)) => reloader
                        .reload(config)
                        .await
                        .map(|()| origin)
                        .map_err(anyhow::Error::from),
                    Err(e) => Err(anyhow::Error::from(e)),
                };
                match outcome {
                    Ok(origin) => tracing::info!(config = %origin, "configuration reloaded"),
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "reload rejected; the running configuration stays")
                    }
                }
            }
        }
        #[cfg(not(unix))]
        let _ = (reloader, path, registry_yml);
    }
}

async fn check_config(file: Option<PathBuf>) -> anyhow::Result<()> {
    let file = file.or_else(|| std::env::var_os("WHARF_CONFIG").map(PathBuf::from));
    // What `serve` would use: the file named, else conf/wharf.toml, else the built-in default.
    let (config, origin) = Config::load(file.as_deref())?;
    let place = |key: &str| match &file {
        Some(path) => Config::origin_of(path, key),
        None if origin == wharf::config::DEFAULT_PATH => {
            Config::origin_of(std::path::Path::new(&origin), key)
        }
        None => origin.clone(),
    };
    for (i, server) in config.servers.iter().enumerate() {
        if let Some(auth) = &server.auth {
            let warnings = wharf::gateway::authz::validate(auth).map_err(|e| {
                let key = auth_error_key(i, &e);
                anyhow::anyhow!("config {}: {key}: {e}", place(&key))
            })?;
            for w in warnings {
                eprintln!(
                    "warning: {}: server[{i}].auth.{w}",
                    place(&format!("server[{i}].auth"))
                );
            }
        }
    }
    let storage = check_storage(&config)
        .await
        .map_err(|e| anyhow::anyhow!("config {}: {e}", place("storage")))?;
    for line in registry_env_report(&config) {
        println!("{line}");
    }
    println!(
        "{origin}: ok ({} listener(s), storage at {storage})",
        config.listeners.len(),
    );
    Ok(())
}

/// `wharf import-config`: writes the converted file, and lists on stderr what was not
/// carried over, so nobody has to find it in the comments.
fn import_config(
    yml: &std::path::Path,
    nginx: Option<&std::path::Path>,
    output: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let yml_text = read(yml)?;
    let nginx_text = nginx.map(read).transpose()?;
    let (yml_name, nginx_name) = (
        yml.display().to_string(),
        nginx.map(|p| p.display().to_string()),
    );
    let converted = wharf::import_config::convert(&wharf::import_config::Inputs {
        registry_yml: (&yml_name, &yml_text),
        nginx: nginx_name.as_deref().zip(nginx_text.as_deref()),
    })?;
    match output {
        None => print!("{}", converted.toml),
        Some(path) => {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| {
                    format!("cannot create {} (it must not exist yet)", path.display())
                })?;
            file.write_all(converted.toml.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {}; check it with `wharf check-config {}`",
                path.display(),
                path.display()
            );
        }
    }
    for note in converted
        .notes
        .iter()
        .filter(|n| n.text.starts_with("NOT CARRIED OVER"))
    {
        eprintln!("{}", note.text.replace('\n', " "));
    }
    Ok(())
}

/// One line per registry:2 setting (`REGISTRY_*` variable): what it set, or why wharf
/// needs nothing for it. Values are never shown, only what they became (never a secret).
fn registry_env_report(config: &Config) -> Vec<String> {
    use wharf::config::registry_env::Effect;
    config
        .registry_env
        .iter()
        .map(|a| match &a.effect {
            Effect::Set { shown, .. } => format!("registry:2 setting {}: {shown}", a.label),
            Effect::NotNeeded(why) => format!("registry:2 setting {}: not needed ({why})", a.label),
            // The environment's unsupported settings are errors before this point.
            Effect::Unsupported { problem, .. } => {
                format!("registry:2 setting {}: {problem}", a.label)
            }
        })
        .collect()
}

/// The key an access-rule or provider error is about, for its line: the rule when the
/// error names one (`access[1]...`), else the server's `[server.auth]`.
fn auth_error_key(server: usize, e: &wharf::gateway::authz::AuthSetupError) -> String {
    use wharf::gateway::authz::AuthSetupError;
    let rule = match e {
        AuthSetupError::Policy(message) => message
            .split(['.', ' '])
            .next()
            .filter(|k| k.starts_with("access[")),
        _ => None,
    };
    match rule {
        Some(rule) => format!("server[{server}].auth.{rule}"),
        None => format!("server[{server}].auth"),
    }
}

/// An object store is only worth a config that reaches it: write, read and delete a probe
/// object under every registry's prefix. Returns where the storage is, for the summary.
async fn check_storage(config: &Config) -> anyhow::Result<String> {
    use wharf::config::StorageBackend;
    use wharf::server::{describe_root, open_storage};
    let backend = &config.storage.backend;
    let main = describe_root(backend, &config.storage.root);
    if *backend == StorageBackend::Filesystem {
        return Ok(main);
    }
    let mut roots: Vec<&std::path::Path> = Vec::new();
    for route in config.servers.iter().flat_map(|s| &s.routes) {
        if let Some(root) = route.target.root() {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
    }
    let (table, fix) = match backend {
        StorageBackend::Azure(_) => (
            "storage.azure",
            "check storage.azure.endpoint, account, container (it must exist) and the credentials",
        ),
        _ => (
            "storage.s3",
            "check storage.s3.endpoint, region, bucket (it must exist) and the credentials",
        ),
    };
    for root in roots {
        let at = describe_root(backend, root);
        let storage = open_storage(backend, root).await?;
        storage.check_writable().await.map_err(|e| {
            anyhow::anyhow!(
                "{table}: cannot write, read and delete a probe object at {at}: {e}; fix: {fix}"
            )
        })?;
    }
    Ok(main)
}

pub(crate) fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on SIGINT or SIGTERM. The handlers are installed at once, before the server
/// says it is up, so an early SIGTERM is a graceful shutdown too.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        match signals {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::error!(%error, "cannot listen for SIGINT/SIGTERM; stop with SIGKILL");
                std::future::pending::<()>().await
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    }
}
