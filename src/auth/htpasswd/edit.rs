//! Changing one user of an htpasswd file for `wharf htpasswd`, leaving every other line
//! (comments, other users, even lines wharf would refuse) byte-for-byte as it was, in order.
//!
//! The scan here is deliberately lenient: re-creating a user is the fix the loader
//! recommends for a refused line, so it must work on a file the loader refuses.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::HtpasswdError;

/// bcrypt ignores everything after the 72nd byte of a password.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// A user name the file format can hold and the loader will read back unchanged.
pub fn check_user_name(user: &str) -> Result<(), HtpasswdError> {
    let reason = if user.is_empty() {
        Some("it is empty")
    } else if user.contains(':') {
        Some("it contains `:`, which separates the user from the hash")
    } else if user.chars().any(char::is_control) {
        Some("it contains a newline or another control character")
    } else if user.starts_with('#') {
        Some("a line starting with `#` is a comment")
    } else if user.trim_ascii() != user {
        Some("it starts or ends with white space")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(HtpasswdError::BadUserName {
            user: user.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Refuses passwords that would not protect anything, or not all of what was typed.
pub fn check_new_password(password: &str) -> Result<(), HtpasswdError> {
    if password.is_empty() {
        return Err(HtpasswdError::BadPassword("it is empty"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(HtpasswdError::BadPassword(
            "it is longer than 72 bytes, and bcrypt would ignore the rest",
        ));
    }
    Ok(())
}

/// A bcrypt hash with Apache's `$2y$` prefix. Blocking: it takes as long as a login check.
pub fn hash_password(password: &str, cost: u32) -> Result<String, HtpasswdError> {
    Ok(bcrypt::hash_with_result(password, cost)
        .map_err(HtpasswdError::Hash)?
        .format_for_version(bcrypt::Version::TwoY))
}

/// Whether `line` is an entry of `user` (as the loader would read it).
fn is_entry_of(line: &[u8], user: &str) -> bool {
    let line = line.trim_ascii();
    !line.starts_with(b"#")
        && line
            .iter()
            .position(|&b| b == b':')
            .is_some_and(|colon| &line[..colon] == user.as_bytes())
}

/// `text` with `user`'s entry set to `hash`: the first entry of the user is replaced in place,
/// any later ones (duplicates, which the loader refuses) are dropped, and a new user is
/// appended. Returns the text and whether the user existed.
pub fn set_user(text: &[u8], user: &str, hash: &str) -> (Vec<u8>, bool) {
    let entry = format!("{user}:{hash}");
    let mut out = Vec::with_capacity(text.len() + entry.len() + 1);
    let mut found = false;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if !is_entry_of(line, user) {
            out.extend_from_slice(line);
        } else if !found {
            found = true;
            out.extend_from_slice(entry.as_bytes());
            out.extend_from_slice(line_ending(line));
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(entry.as_bytes());
        out.push(b'\n');
    }
    (out, found)
}

/// `text` without any entry of `user`; `None` when there is none.
pub fn remove_user(text: &[u8], user: &str) -> Option<Vec<u8>> {
    let mut found = false;
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        if is_entry_of(line, user) {
            found = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    found.then_some(out)
}

/// The line's own ending, so a CRLF file stays CRLF; a last line without one gets `\n`.
fn line_ending(line: &[u8]) -> &'static [u8] {
    if line.ends_with(b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// Replaces the file at `path` (following a symlink) with `bytes`: a temporary file in the
/// same directory, with the old file's permissions or 0600 for a new one, is written,
/// fsynced and renamed over it, so a crash or a reader sees the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HtpasswdError> {
    let write_err = |cause| HtpasswdError::Write {
        path: path.to_path_buf(),
        cause,
    };
    let target = match std::fs::canonicalize(path) {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(write_err(e)),
    };
    let mode = existing_mode(&target).map_err(write_err)?.unwrap_or(0o600);
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut file = create_new(&tmp, mode)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    // Make the rename durable; a directory that cannot be opened (some filesystems) is not
    // worth failing over, the file itself is complete.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn existing_mode(path: &Path) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt as _;
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.permissions().mode() & 0o7777)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn existing_mode(_path: &Path) -> std::io::Result<Option<u32>> {
    Ok(None)
}

/// Creates the file with `mode` from the start, so it is never readable by others, not
/// even between create and chmod. (The umask may clear bits; it cannot add any.)
#[cfg(unix)]
fn create_new(path: &Path, mode: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // Keep an existing file's mode exactly, whatever the umask says.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

#[cfg(not(unix))]
fn create_new(path: &Path, _mode: u32) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &[u8] = b"# team\nalice:OLD\n\n  bob:$apr1$x$y:note\r\nbroken line\xff\ncarol:C";

    #[test]
    fn user_names_are_checked() {
        for bad in ["", "a:b", "a\nb", "a\rb", "#a", " a", "a "] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        check_user_name("alice.o'brien@example.com").unwrap();
    }

    #[test]
    fn passwords_are_checked() {
        assert!(check_new_password("").is_err());
        assert!(check_new_password(&"x".repeat(73)).is_err());
        check_new_password(&"x".repeat(72)).unwrap();
    }

    #[test]
    fn setting_a_user_keeps_every_other_byte() {
        let (out, existed) = set_user(TEXT, "bob", "NEW");
        assert!(existed);
        assert_eq!(
            out,
            b"# team\nalice:OLD\n\nbob:NEW\r\nbroken line\xff\ncarol:C"
        );
        let (out, existed) = set_user(TEXT, "dave", "D");
        assert!(!existed);
        assert_eq!(out, [TEXT, b"\ndave:D\n"].concat());
        let (out, _) = set_user(b"", "dave", "D");
        assert_eq!(out, b"dave:D\n");
        let (out, _) = set_user(b"carol:1\nx:2\ncarol:3\n", "carol", "N");
        assert_eq!(out, b"carol:N\nx:2\n", "duplicates are dropped");
        let (out, _) = set_user(b"#alice:1\nalicex:2\n", "alice", "N");
        assert_eq!(out, b"#alice:1\nalicex:2\nalice:N\n");
    }

    #[test]
    fn removing_a_user_keeps_every_other_byte() {
        let out = remove_user(TEXT, "alice").unwrap();
        assert_eq!(
            out,
            b"# team\n\n  bob:$apr1$x$y:note\r\nbroken line\xff\ncarol:C"
        );
        assert_eq!(remove_user(TEXT, "carol").unwrap(), &TEXT[..TEXT.len() - 7]);
        assert!(remove_user(TEXT, "dave").is_none());
        assert!(remove_user(TEXT, "team").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn writes_are_atomic_and_keep_or_restrict_the_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        write_atomic(&path, b"a:1\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        write_atomic(&link, b"b:2\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"b:2\n");
        assert_eq!(mode(&path), 0o640);
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }
}
