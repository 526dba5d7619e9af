//! The command line: `wharf serve` and `wharf check-config`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use wharf::config::{Config, LogFormat};
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
    },
    /// Validate a config file and exit non-zero, naming the key and the fix, when it is wrong.
    CheckConfig {
        /// The file to check (default: $WHARF_CONFIG, else conf/wharf.toml).
        file: Option<PathBuf>,
    },
    /// Manage wharf's own CA: create it, issue server certificates, show how to trust it.
    Cert {
        #[command(subcommand)]
        command: crate::cert_cmd::CertCommand,
    },
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve { config } => serve(config).await,
            Command::CheckConfig { file } => check_config(file),
            Command::Cert { command } => crate::cert_cmd::run(command),
        }
    }
}

async fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    let (config, origin) = Config::load(path.as_deref())?;
    init_logging(&config);
    tracing::info!(config = %origin, storage = %config.storage.root.display(), "starting wharf");
    let server = Server::bind(config).await?;
    for addr in server.local_addrs() {
        // Printed on stdout, one line per listener, so scripts and tests can read the port.
        println!("listening on {addr}");
    }
    server.run(shutdown_signal()).await;
    Ok(())
}

fn check_config(file: Option<PathBuf>) -> anyhow::Result<()> {
    let file = file.or_else(|| std::env::var_os("WHARF_CONFIG").map(PathBuf::from));
    let path = file.unwrap_or_else(|| PathBuf::from(wharf::config::DEFAULT_PATH));
    let config = Config::from_file(&path)?;
    println!(
        "{}: ok ({} listener(s), storage at {})",
        path.display(),
        config.listeners.len(),
        config.storage.root.display()
    );
    Ok(())
}

fn init_logging(config: &Config) {
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

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
