mod cert_cmd;
mod cli;
mod htpasswd_cmd;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = cli::Cli::parse();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates its own malloc arena; with blob chunks of up to a
/// MiB moving between the reactor and the blocking pool, freed memory then sits in many
/// arenas at once. Two arenas keep peak memory flat at no measurable speed cost.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
