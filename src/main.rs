mod cert_cmd;
mod cli;
mod events_cmd;
mod gc_cmd;
mod htpasswd_cmd;
mod repo_cmd;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    raise_open_file_limit();
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

/// Every connection is a file descriptor, and the usual soft limit (1024) is far below the
/// hard one; like Go programs and nginx's worker_rlimit_nofile, take what is allowed.
/// `limits.max_connections` defaults to half of the result.
fn raise_open_file_limit() {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
                && limit.rlim_cur < limit.rlim_max
            {
                limit.rlim_cur = limit.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            }
        }
    }
}
