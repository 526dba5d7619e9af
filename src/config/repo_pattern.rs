//! Patterns naming repositories and tags, shared by the access rules (`auth/policy.rs`),
//! retention policies and immutable tags, so that one pattern means the same thing in
//! every part of the config.

/// Repositories named by an exact name, a prefix ending in `*`, or `*` for all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoPattern {
    Exact(String),
    /// Any name starting with this; `*` is the empty prefix.
    Prefix(String),
}

impl RepoPattern {
    /// Parses a pattern; the error says what is wrong with it, to be put after its key.
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let (literal, prefix) = match s.strip_suffix('*') {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        if s.is_empty() {
            return Err("is empty");
        }
        if literal.contains('*') {
            return Err("has a * that is not at the end");
        }
        let name_char = |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-' | '/');
        if !literal.chars().all(name_char) {
            return Err(
                "has characters no repository name has (names are lowercase letters, \
                        digits, '.', '_', '-' and '/')",
            );
        }
        // `team-a/` (exact) or `a//b` could never match a repository name.
        if literal.starts_with('/') || literal.contains("//") || (!prefix && literal.ends_with('/'))
        {
            return Err("has an empty path component, so it matches no repository name");
        }
        Ok(match prefix {
            true => RepoPattern::Prefix(literal.to_owned()),
            false => RepoPattern::Exact(literal.to_owned()),
        })
    }

    pub fn matches(&self, repo: &str) -> bool {
        match self {
            RepoPattern::Exact(name) => repo == name,
            RepoPattern::Prefix(prefix) => repo.starts_with(prefix.as_str()),
        }
    }

    /// Specificity: longer literal text first; on a tie (`team-a` vs `team-a*`, which both
    /// match "team-a") the exact name. Two different patterns that match the same name never
    /// tie, so "the most specific match" is always one pattern.
    pub fn rank(&self) -> (usize, bool) {
        match self {
            RepoPattern::Exact(name) => (name.len(), true),
            RepoPattern::Prefix(prefix) => (prefix.len(), false),
        }
    }
}

/// Tags named by a glob: `*` stands for any run of characters (`v*`, `*-rc*`, `latest`).
/// Tags are short (at most 128 characters), so the simple backtracking match is cheap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagPattern(String);

impl TagPattern {
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let tag_char = |c: char| c == '*' || c.is_ascii_alphanumeric() || "._-".contains(c);
        if s.is_empty() {
            return Err("is empty");
        }
        if !s.chars().all(tag_char) {
            return Err("has characters no tag has (tags are letters, digits, '.', '_' and '-'; * for any run of them)");
        }
        Ok(TagPattern(s.to_owned()))
    }

    pub fn matches(&self, tag: &str) -> bool {
        glob(self.0.as_bytes(), tag.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_patterns_match_exact_names_and_prefixes() {
        let p = RepoPattern::parse("team-a/*").unwrap();
        assert!(p.matches("team-a/app") && !p.matches("team-b/app"));
        assert!(RepoPattern::parse("*").unwrap().matches("anything"));
        assert!(RepoPattern::parse("a").unwrap().matches("a"));
        assert!(!RepoPattern::parse("a").unwrap().matches("ab"));
        assert!(RepoPattern::parse("a*b").is_err());
        assert!(RepoPattern::parse("A").is_err());
        assert!(RepoPattern::parse("").is_err());
    }

    #[test]
    fn tag_patterns_are_globs() {
        let p = TagPattern::parse("v*").unwrap();
        assert!(p.matches("v1.2") && p.matches("v") && !p.matches("latest"));
        let p = TagPattern::parse("*-rc*").unwrap();
        assert!(p.matches("1.0-rc1") && !p.matches("1.0"));
        assert!(TagPattern::parse("latest").unwrap().matches("latest"));
        assert!(!TagPattern::parse("latest").unwrap().matches("latest2"));
        assert!(TagPattern::parse("a/b").is_err());
        assert!(TagPattern::parse("").is_err());
    }
}
