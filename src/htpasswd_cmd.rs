//! `wharf htpasswd FILE USER`: add, update, delete or check a user of an htpasswd file,
//! writing bcrypt (`$2y$`) entries that Apache's `htpasswd` and wharf both read.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use subtle::ConstantTimeEq as _;

use wharf::auth::htpasswd::edit::{self, check_new_password, check_user_name};
use wharf::auth::htpasswd::{Htpasswd, DEFAULT_COST};

#[derive(Args)]
pub struct HtpasswdArgs {
    /// The htpasswd file; created (mode 0600) when missing.
    file: PathBuf,
    /// The user to add or update (or delete, or check).
    user: String,
    /// Read the password from the first line of stdin instead of asking twice on the terminal.
    #[arg(long)]
    password_stdin: bool,
    /// bcrypt cost: each step doubles the time a login check takes.
    #[arg(long, default_value_t = DEFAULT_COST, value_parser = clap::value_parser!(u32).range(4..=31))]
    cost: u32,
    /// Remove the user (an error when there is none).
    #[arg(long, conflicts_with_all = ["verify", "password_stdin", "cost"])]
    delete: bool,
    /// Check the user's password: exit 0 with "password ok", else 1.
    #[arg(long, conflicts_with = "cost")]
    verify: bool,
}

/// Runs on the blocking pool: it waits on the terminal and hashes on purpose slowly.
pub async fn run(args: HtpasswdArgs) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(args))
        .await
        .context("the htpasswd command did not finish")?
}

fn run_blocking(args: HtpasswdArgs) -> anyhow::Result<()> {
    check_user_name(&args.user)?;
    let (file, user) = (&args.file, &args.user);
    if args.delete {
        let text = read_existing(file)?;
        let Some(text) = edit::remove_user(&text, user) else {
            bail!("no such user {user:?} in {}", file.display());
        };
        edit::write_atomic(file, &text)?;
        println!("deleted user {user:?} from {}", file.display());
    } else if args.verify {
        // Loaded as the server loads it, so a file the server would refuse is refused here too.
        let users = Htpasswd::open(file)?;
        let Some(hash) = users.hash_of(user) else {
            bail!("no such user {user:?} in {}", file.display());
        };
        let password = read_password(args.password_stdin, false)?;
        if !bcrypt::verify(&password, &hash).context("cannot check the password")? {
            bail!("wrong password for {user:?}");
        }
        println!("password ok");
    } else {
        let password = read_password(args.password_stdin, true)?;
        check_new_password(&password)?;
        let hash = edit::hash_password(&password, args.cost)?;
        let text = match std::fs::read(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let (text, existed) = edit::set_user(&text, user, &hash);
        edit::write_atomic(file, &text)?;
        let done = if existed { "updated" } else { "added" };
        println!("{done} user {user:?} in {}", file.display());
    }
    Ok(())
}

fn read_existing(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

/// The password from stdin (one line, its line ending removed) or the terminal (asked
/// twice when `confirm`). Never echoed or printed.
fn read_password(from_stdin: bool, confirm: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin (it must be UTF-8)")?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        let password = password.strip_suffix('\r').unwrap_or(password);
        return non_empty(password.to_owned());
    }
    let no_terminal =
        "cannot read the password from the terminal; pipe it in with --password-stdin";
    let password = rpassword::prompt_password("Password: ").context(no_terminal)?;
    if confirm {
        let again = rpassword::prompt_password("Re-type password: ").context(no_terminal)?;
        // Not secret from the person typing, but there is no reason to leak timing either.
        if !bool::from(password.as_bytes().ct_eq(again.as_bytes())) {
            bail!("the passwords do not match; nothing was changed");
        }
    }
    non_empty(password)
}

fn non_empty(password: String) -> anyhow::Result<String> {
    if password.is_empty() {
        bail!("empty password refused");
    }
    Ok(password)
}
