//! Reading an htpasswd file the way Apache and nginx do, but refusing every hash that is not
//! bcrypt instead of skipping it: a user who silently cannot log in is harder to debug than
//! a server that names the line at start-up.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;

use super::HtpasswdError;

/// The cost of the dummy hash when the file has no users to copy it from (also the CLI's default).
pub const DEFAULT_COST: u32 = 10;

/// The users of one file, as loaded.
pub struct Users {
    /// user → bcrypt hash.
    pub entries: HashMap<String, String>,
    /// A bcrypt hash of the cost most entries use, that no password is expected to match.
    /// Verifying against it costs what verifying a real user costs, so unknown users can be
    /// made as slow as known ones.
    pub dummy: String,
}

// Hashes stay out of debug output: they are what an offline guessing attack starts from.
impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// Parses a whole file. `path` is only used in error messages.
///
/// Lines are `user:hash`, optionally followed by `:anything` (nginx's comment field), with
/// surrounding whitespace ignored; blank lines and lines starting with `#` are skipped.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Users, HtpasswdError> {
    // user → (line number, hash)
    let mut seen: HashMap<String, (usize, String)> = HashMap::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let malformed = |reason: &str| HtpasswdError::Malformed {
            path: path.to_path_buf(),
            line: line_no,
            reason: reason.to_owned(),
        };
        let line = std::str::from_utf8(raw)
            .map_err(|_| malformed("the line is not valid UTF-8"))?
            .trim_ascii();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, rest) = line
            .split_once(':')
            .ok_or_else(|| malformed("expected `user:hash`, but the line has no `:`"))?;
        if user.is_empty() {
            return Err(malformed("the user name is empty"));
        }
        // Like Apache's mod_authn_file, the hash ends at the next `:`.
        let hash = rest.split(':').next().unwrap_or_default();
        check_hash(hash).map_err(|problem| problem.into_error(path, line_no, user))?;
        if let Some((first, _)) = seen.get(user) {
            return Err(HtpasswdError::Duplicate {
                path: path.to_path_buf(),
                user: user.to_owned(),
                first: *first,
                second: line_no,
            });
        }
        seen.insert(user.to_owned(), (line_no, hash.to_owned()));
    }
    let entries: HashMap<String, String> = seen
        .into_iter()
        .map(|(user, (_, hash))| (user, hash))
        .collect();
    let dummy = dummy_hash(usual_cost(entries.values()));
    Ok(Users { entries, dummy })
}

/// Why a hash was refused.
#[derive(Debug, PartialEq, Eq)]
enum HashProblem {
    /// Not bcrypt at all; the payload says which scheme it looks like.
    Unsupported(&'static str),
    /// Looks like bcrypt but would not verify; the payload says why.
    BadBcrypt(&'static str),
}

impl HashProblem {
    fn into_error(self, path: &Path, line: usize, user: &str) -> HtpasswdError {
        let (path, user) = (path.to_path_buf(), user.to_owned());
        match self {
            HashProblem::Unsupported(kind) => HtpasswdError::Unsupported {
                path,
                line,
                user,
                kind,
            },
            HashProblem::BadBcrypt(reason) => HtpasswdError::BadBcrypt {
                path,
                line,
                user,
                reason,
            },
        }
    }
}

/// Accepts exactly the bcrypt hashes `bcrypt::verify` can check, so that a file that loads
/// can never fail at login time.
fn check_hash(hash: &str) -> Result<(), HashProblem> {
    let Some(rest) = ["$2y$", "$2a$", "$2b$"]
        .iter()
        .find_map(|prefix| hash.strip_prefix(prefix))
    else {
        return Err(HashProblem::Unsupported(scheme_of(hash)));
    };
    let (cost, salt_and_hash) = rest
        .split_once('$')
        .ok_or(HashProblem::BadBcrypt("no `$` after the cost"))?;
    let cost_ok = cost.len() == 2 && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c));
    if !cost_ok {
        return Err(HashProblem::BadBcrypt(
            "the cost is not a number from 04 to 31",
        ));
    }
    if salt_and_hash.len() != 53 || !salt_and_hash.is_char_boundary(22) {
        return Err(HashProblem::BadBcrypt(
            "expected 53 characters of salt and hash",
        ));
    }
    let (salt, digest) = salt_and_hash.split_at(22);
    let decodes = |s: &str| bcrypt::BASE_64.decode(s).is_ok();
    if !decodes(salt) || !decodes(digest) {
        return Err(HashProblem::BadBcrypt(
            "the salt or hash is not bcrypt's base64",
        ));
    }
    Ok(())
}

/// Names the scheme of a hash that is not bcrypt, for the error message.
fn scheme_of(hash: &str) -> &'static str {
    const CRYPT_ALPHABET: &str = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let prefixes = [
        ("$apr1$", "Apache MD5 ($apr1$)"),
        ("{SHA}", "SHA-1 ({SHA})"),
        ("$1$", "MD5-crypt ($1$)"),
        ("$5$", "SHA-256-crypt ($5$)"),
        ("$6$", "SHA-512-crypt ($6$)"),
        (
            "$2x$",
            "bcrypt $2x$ (a variant for hashes from a buggy implementation)",
        ),
    ];
    if let Some((_, kind)) = prefixes.iter().find(|(p, _)| hash.starts_with(p)) {
        return kind;
    }
    if hash.is_empty() {
        "empty"
    } else if hash.starts_with('$') {
        "of an unknown $…$ type"
    } else if hash.len() == 13 && hash.chars().all(|c| CRYPT_ALPHABET.contains(c)) {
        "DES crypt"
    } else {
        "plain text (or of an unknown type)"
    }
}

/// The cost most entries use (the higher one on a tie), or [`DEFAULT_COST`].
fn usual_cost<'a>(hashes: impl Iterator<Item = &'a String>) -> u32 {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for hash in hashes {
        // Checked by `check_hash`: "$2?$NN$…".
        if let Some(cost) = hash.get(4..6).and_then(|c| c.parse().ok()) {
            *counts.entry(cost).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(cost, n)| (n, cost))
        .map_or(DEFAULT_COST, |(cost, _)| cost)
}

/// A well-formed bcrypt hash of `cost` with an all-zero salt and digest. It needs no hashing
/// to build (so even the first unknown user costs exactly one verification), and checking a
/// password against it runs the full key schedule of that cost.
fn dummy_hash(cost: u32) -> String {
    format!("$2y${cost:02}${}", ".".repeat(53))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hashes of "pw" made by Apache's `htpasswd -nbB -C 4|5` (the second relabelled $2b$); typed out so these tests do no hashing.
    const H4: &str = "$2y$04$AHJ87jIhXf1EH4deCNUaMOgpNlVhU.arhtJ3KNG.WslGmp3X5o3xy";
    const H5: &str = "$2b$05$ilC35DLEY8MQ6c2uSrsw/.3b6os03.c7yeAUUGnCSpCM8wtozKNBC";

    fn err(text: &str) -> String {
        parse(Path::new("users.htpasswd"), text.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bcrypt_lines_comments_and_blank_lines_load() {
        let text = format!(
            "# team\n\nalice:{H4}\r\n  bob:{H5}:nginx comment  \ncarol:{}\n",
            H4.replacen("$2y$", "$2a$", 1)
        );
        let users = parse(Path::new("f"), text.as_bytes()).unwrap();
        assert_eq!(users.entries.len(), 3);
        assert_eq!(users.entries["alice"], H4);
        assert_eq!(users.entries["bob"], H5);
        assert!(users.entries["carol"].starts_with("$2a$04$"));
        assert!(parse(Path::new("f"), b"").unwrap().entries.is_empty());
    }

    #[test]
    fn other_hash_types_are_refused_with_the_line_and_the_fix() {
        for (hash, kind) in [
            ("$apr1$abc$def", "Apache MD5"),
            ("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("$1$x$y", "MD5-crypt"),
            ("$6$x$y", "SHA-512-crypt"),
            ("abJnggxhB/yWI", "DES crypt"),
            ("secret", "plain text"),
            ("", "empty"),
        ] {
            let e = err(&format!("alice:{H4}\n# note\nbob:{hash}\n"));
            assert!(e.starts_with("users.htpasswd:3: "), "{e}");
            assert!(e.contains(kind) && e.contains("\"bob\""), "{e}");
            assert!(
                e.contains("`wharf htpasswd users.htpasswd bob`") && e.contains("`htpasswd -B"),
                "{e}"
            );
            assert!(
                hash.len() < 4 || !e.contains(hash),
                "the hash is not echoed: {e}"
            );
        }
    }

    #[test]
    fn malformed_bcrypt_is_refused() {
        for hash in [
            "$2y$4$AHJ87jIhXf1EH4deCNUaMOgpNlVhU.arhtJ3KNG.WslGmp3X5o3xu",
            "$2y$32$AHJ87jIhXf1EH4deCNUaMOgpNlVhU.arhtJ3KNG.WslGmp3X5o3xu",
            "$2y$04$AHJ87jIhXf1EH4deCNUaMOgpNlVhU.arhtJ3KNG.WslGmp3X5o3x",
            "$2y$04$AHJ87jIhXf1EH4deCNUaMOgpNlVhU.arhtJ3KNG.WslGmp3X5o3x!",
            "$2y$04",
        ] {
            let e = err(&format!("alice:{hash}"));
            assert!(
                e.starts_with("users.htpasswd:1: ") && e.contains("malformed bcrypt"),
                "{e}"
            );
        }
    }

    #[test]
    fn lines_that_are_not_entries_are_refused() {
        let e = err(&format!("alice:{H4}\njust words\n"));
        assert!(
            e.starts_with("users.htpasswd:2: ") && e.contains("no `:`"),
            "{e}"
        );
        assert!(err(&format!(":{H4}")).contains("user name is empty"));
        let e = parse(Path::new("f"), b"\nalice:\xff\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f:2: ") && e.contains("UTF-8"), "{e}");
    }

    #[test]
    fn duplicate_users_name_both_lines() {
        let e = err(&format!("alice:{H4}\nbob:{H5}\nalice:{H5}\n"));
        assert!(
            e.contains("\"alice\"") && e.contains("lines 1 and 3"),
            "{e}"
        );
    }

    #[test]
    fn the_dummy_uses_the_usual_cost_of_the_file() {
        let users = |text: String| parse(Path::new("f"), text.as_bytes()).unwrap();
        assert!(users(String::new()).dummy.starts_with("$2y$10$"));
        let mostly_4 = format!("a:{H4}\nb:{H4}\nc:{H5}\n");
        assert!(users(mostly_4).dummy.starts_with("$2y$04$"));
        let tie = format!("a:{H4}\nc:{H5}\n");
        assert!(users(tie).dummy.starts_with("$2y$05$"));
        check_hash(&dummy_hash(31)).unwrap();
    }
}

#[cfg(test)]
mod properties {
    use crate::invariants;
    use proptest::prelude::*;

    /// Lines of the kinds a file holds: bcrypt entries (some broken), other hashes, nginx
    /// comments, comments, blank lines, garbage.
    fn line() -> impl Strategy<Value = String> {
        let hash = prop_oneof![
            Just("$2y$04$AHJ87jIhXf1EH4deCNUaMOgpNlVhU.arhtJ3KNG.WslGmp3X5o3xy".to_owned()),
            Just("$2b$05$ilC35DLEY8MQ6c2uSrsw/.3b6os03.c7yeAUUGnCSpCM8wtozKNBC".to_owned()),
            "\\$2[abxy]\\$[0-9]{1,3}\\$[./A-Za-z0-9]{50,55}",
            "(\\$apr1\\$|\\{SHA\\}|\\$6\\$)?[ -~]{0,15}",
        ];
        prop_oneof![
            (
                "[ \t]{0,1}",
                "[a-z#]{0,3}[ :]?",
                hash,
                "(:[ -~]{0,5})?",
                "[ \t\r]{0,1}"
            )
                .prop_map(|(a, user, hash, rest, z)| format!("{a}{user}:{hash}{rest}{z}")),
            "#[ -~]{0,10}",
            "[ \t\r]{0,2}",
            any::<String>(),
        ]
    }

    proptest! {
        #[test]
        fn a_file_that_loads_keeps_loading_after_a_user_is_set(
            lines in proptest::collection::vec(line(), 0..5),
            user in "[a-z#: ]{0,4}",
        ) {
            invariants::htpasswd(lines.join("\n").as_bytes(), &user);
        }
    }
}
