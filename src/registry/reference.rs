//! Repository names, tags and digests, validated against the distribution-spec grammar.
//!
//! Every value that reaches storage went through one of these constructors, which is what
//! keeps request paths from ever naming a file outside the storage root: none of the
//! accepted alphabets contains `/` (except name separators between valid components),
//! `..`, or NUL.

use std::fmt;

/// The longest repository name accepted. The spec lets registries pick a limit; clients
/// commonly cap `host/name` at 255 characters, so a longer name could never be pulled.
pub const MAX_NAME_LEN: usize = 255;

/// A repository name such as `team/app`: `/`-separated components of `[a-z0-9]` joined by
/// `.`, `_`, `__` or runs of `-`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.is_empty() {
            return Err("repository name is empty");
        }
        if s.len() > MAX_NAME_LEN {
            return Err("repository name is longer than 255 characters");
        }
        if !s.split('/').all(valid_name_component) {
            return Err("repository name must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_name_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-", always followed by alnum.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let b = s.as_bytes();
        let first_ok = b
            .first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
        let rest_ok = b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if !first_ok || !rest_ok || b.len() > 128 {
            return Err("tag must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The digest algorithms wharf can verify. sha256 is what every client uses; sha512 is
/// accepted because the spec registers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A content digest `algorithm:hex`, with the hex part lowercase and of the algorithm's length.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or("digest must look like sha256:<64 lowercase hex digits>")?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err("unsupported digest algorithm (sha256 and sha512 are supported)"),
        };
        let lower_hex = hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        if hex.len() != algorithm.hex_len() || !lower_hex {
            return Err("digest encoding must be lowercase hex of the algorithm's length");
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// Builds a digest from a finished hash; the bytes are the raw hash output.
    pub fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Self {
        Self {
            algorithm,
            hex: hex::encode(hash),
        }
    }

    /// The digest of bytes already in memory (manifests).
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        match algorithm {
            Algorithm::Sha256 => Self::from_hash(algorithm, &sha2::Sha256::digest(bytes)),
            Algorithm::Sha512 => Self::from_hash(algorithm, &sha2::Sha512::digest(bytes)),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for ok in ["a", "team/app", "a.b_c__d---e/f0", "x/y/z", "0"] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "../x", "x/..", "Team/app", "a//b", "/a", "a/", "a___b", "a.", "-a", "a..b",
            "a/./b", "a\0b", "a b",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RepoName::parse(&"a".repeat(255)).is_ok());
        assert!(RepoName::parse(&"a".repeat(300)).is_err());
    }

    #[test]
    fn tags_follow_the_grammar() {
        assert!(Tag::parse("v1.0_rc-1").is_ok());
        assert!(Tag::parse("_x").is_ok());
        assert!(Tag::parse(&"a".repeat(128)).is_ok());
        for bad in ["", ".x", "-x", "a/b", "..", &"a".repeat(129)] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digests_are_checked_for_algorithm_and_length() {
        let h = "a".repeat(64);
        assert!(Digest::parse(&format!("sha256:{h}")).is_ok());
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        for bad in [
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("md5:{h}"),
            format!("sha256:../{}", "a".repeat(61)),
            h.clone(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_pick_tag_or_digest() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        let d = format!("sha256:{}", "b".repeat(64));
        assert!(matches!(Reference::parse(&d), Ok(Reference::Digest(_))));
        assert!(Reference::parse("sha256:xyz").is_err());
    }

    mod properties {
        use crate::invariants::{self, strategies};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn accepted_names_tags_and_digests_print_back_unchanged(
                s in prop_oneof![
                    strategies::name_text(),
                    strategies::digest_text(),
                    "[a-zA-Z0-9_.:/-]{0,130}",
                    any::<String>(),
                ]
            ) {
                invariants::reference(&s);
            }
        }
    }
}
