//! What the repository ships besides the code: `.gitignore`, the systemd unit and the docs,
//! checked the way a new user meets them.

use std::path::Path;
use std::process::Command;

use crate::support::have_program;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `wharf cert ca` and `wharf cert issue` write private keys under `certs/` in the checkout
/// (the default `--dir`), and the README puts users in `conf/users.htpasswd`: none of it may
/// be one `git add -A` away from a commit.
#[test]
fn private_keys_and_password_files_are_ignored_by_git() {
    if !have_program("git", "git") {
        return;
    }
    let ignored = |path: &str| {
        Command::new("git")
            .args(["check-ignore", "--no-index", "-q", path])
            .current_dir(repo())
            .status()
            .unwrap()
            .success()
    };
    for secret in [
        "certs/ca.key",
        "certs/registry.internal.key",
        "certs/127.0.0.1.key",
        "conf/users.htpasswd",
        "conf/ldap.pw",
        "server.key",
    ] {
        assert!(ignored(secret), "{secret} is not ignored");
    }
    for kept in ["certs/README.md", "conf/wharf.toml", "src/main.rs"] {
        assert!(!ignored(kept), "{kept} is ignored");
    }
}
