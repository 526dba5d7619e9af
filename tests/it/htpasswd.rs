//! htpasswd files across tools: what `wharf htpasswd` writes, Apache's `htpasswd` (Debian
//! package apache2-utils) reads, and the other way round, through the library's provider.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use wharf::auth::htpasswd::Htpasswd;
use wharf::auth::{Credentials, Identity, Lookup, Provider};

use crate::support::have_program;

fn apache_present() -> bool {
    have_program("htpasswd", "apache2-utils")
}

/// Runs `wharf htpasswd <args>` with `stdin` piped in.
fn wharf(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("htpasswd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wharf");
    let mut input = child.stdin.take().unwrap();
    // A command that fails before reading stdin closes the pipe; that is its answer, not ours.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Apache's own check: `htpasswd -vb FILE USER PASSWORD`.
fn apache_accepts(file: &Path, user: &str, password: &str) -> bool {
    Command::new("htpasswd")
        .arg("-vb")
        .arg(file)
        .args([user, password])
        .output()
        .unwrap()
        .status
        .success()
}

fn apache(args: &[&str], file: &Path, user: &str, password: &str) {
    let out = Command::new("htpasswd")
        .args(args)
        .arg(file)
        .args([user, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "htpasswd {args:?}: {}",
        text(&out.stderr)
    );
}

#[test]
fn users_made_by_wharf_verify_with_apache_htpasswd() {
    if !apache_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    let f = file.to_str().unwrap();
    let out = wharf(&[f, "alice", "--password-stdin", "--cost", "5"], "s3cret\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("s3cret") && !text(&out.stderr).contains("s3cret"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a new file is private");
    }
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with("alice:$2y$05$"));
    assert!(apache_accepts(&file, "alice", "s3cret"));
    assert!(!apache_accepts(&file, "alice", "s3creT"));

    // Other lines stay as they were, in order, when a user is added or changed.
    let mut existing = std::fs::read_to_string(&file).unwrap();
    existing.insert_str(0, "# registry users\n");
    std::fs::write(&file, &existing).unwrap();
    let out = wharf(
        &[f, "bob", "--password-stdin", "--cost", "4"],
        "pw with spaces\r\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = wharf(&[f, "alice", "--password-stdin", "--cost", "4"], "n3w\n");
    assert!(
        text(&out.stdout).contains("updated"),
        "{}",
        text(&out.stdout)
    );
    let now = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = now.lines().collect();
    assert_eq!(lines.len(), 3, "{now}");
    assert_eq!(lines[0], "# registry users");
    assert!(lines[1].starts_with("alice:$2y$04$") && lines[2].starts_with("bob:$2y$04$"));
    assert!(apache_accepts(&file, "alice", "n3w"));
    assert!(!apache_accepts(&file, "alice", "s3cret"));
    assert!(apache_accepts(&file, "bob", "pw with spaces"));
}

#[test]
fn bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    let f = file.to_str().unwrap();
    for (args, stdin, expected) in [
        (vec![f, "alice", "--password-stdin"], "\n", "empty password"),
        (vec![f, "al:ice", "--password-stdin"], "pw\n", "`:`"),
        (
            vec![f, "alice", "--password-stdin", "--cost", "3"],
            "pw\n",
            "4..=31",
        ),
        (vec![f, "alice", "--delete"], "", "cannot read"),
    ] {
        let out = wharf(&args, stdin);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(expected),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!file.exists(), "nothing was written");
}

#[tokio::test]
async fn apache_made_files_load_and_verify_through_the_provider() {
    if !apache_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    apache(&["-B", "-b", "-c"], &file, "alice", "alice-pw");
    apache(&["-B", "-C", "5", "-b"], &file, "bob", "bob-pw");
    let users = Htpasswd::open(&file).unwrap();
    let provider: &dyn Provider = &*users;
    for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        let Ok(Lookup::Known { stored }) = provider.lookup(user).await else {
            panic!("{user} is in the file");
        };
        assert!(stored.starts_with("$2y$05$"), "Apache's bcrypt: {stored}");
        let creds = |password: &str| Credentials {
            user: user.into(),
            password: password.into(),
        };
        let identity = provider.verify(&creds(password), &stored).await.unwrap();
        assert_eq!(
            identity,
            Some(Identity {
                user: user.into(),
                groups: vec![]
            })
        );
        assert_eq!(
            provider.verify(&creds("nope"), &stored).await.unwrap(),
            None
        );
    }
    assert!(matches!(
        provider.lookup("carol").await,
        Ok(Lookup::UnknownUser)
    ));
}

#[test]
fn wharf_verifies_and_deletes_users_of_apache_made_files() {
    if !apache_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    let f = file.to_str().unwrap();
    apache(&["-B", "-b", "-c"], &file, "alice", "alice-pw");
    apache(&["-B", "-C", "5", "-b"], &file, "bob", "bob-pw");

    let out = wharf(&[f, "alice", "--verify", "--password-stdin"], "alice-pw\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "password ok");
    let out = wharf(&[f, "alice", "--verify", "--password-stdin"], "bob-pw\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("wrong password"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("bob-pw"));
    let out = wharf(&[f, "carol", "--verify", "--password-stdin"], "x\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no such user"),
        "{}",
        text(&out.stderr)
    );

    let out = wharf(&[f, "alice", "--delete"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!apache_accepts(&file, "alice", "alice-pw"));
    assert!(apache_accepts(&file, "bob", "bob-pw"));
    let out = wharf(&[f, "alice", "--delete"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no such user"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_md5_entry_is_refused_with_its_line_and_wharf_can_fix_it() {
    if !apache_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    let f = file.to_str().unwrap();
    apache(&["-B", "-C", "4", "-b", "-c"], &file, "alice", "alice-pw");
    apache(&["-m", "-b"], &file, "carol", "carol-pw");
    let md5_line = std::fs::read_to_string(&file).unwrap();
    assert!(md5_line.contains("carol:$apr1$"), "{md5_line}");

    let e = Htpasswd::open(&file).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{f}:2: ")), "{e}");
    assert!(
        e.contains("Apache MD5") && e.contains(&format!("wharf htpasswd {f} carol")),
        "{e}"
    );
    let out = wharf(&[f, "alice", "--verify", "--password-stdin"], "alice-pw\n");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("{f}:2: ")),
        "{}",
        text(&out.stderr)
    );

    // The fix the message names works on the refused file.
    let out = wharf(
        &[f, "carol", "--password-stdin", "--cost", "4"],
        "carol-pw\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let users = Htpasswd::open(&file).unwrap();
    assert_eq!(users.user_count(), 2);
    assert!(apache_accepts(&file, "carol", "carol-pw"));
}
