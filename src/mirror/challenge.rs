//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1), as registries send them:
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`
//! or `Basic realm="Registry Realm"`. One header may hold several challenges; commas
//! separate both parameters and challenges, so a name followed by `=` is a parameter and
//! anything else starts the next challenge.

/// One challenge: its scheme (lower case) and parameters (names lower case, values unquoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// A parameter's value by (case-insensitive) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The challenge as a header value, every value quoted (for tests and round trips).
    pub fn render(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        match params.is_empty() {
            true => self.scheme.clone(),
            false => format!("{} {}", self.scheme, params.join(",")),
        }
    }
}

/// Every challenge in a header value; what cannot be read is skipped, never an error (a
/// registry's odd header must not stop the pull; without a usable challenge it fails on
/// its own).
pub fn parse(value: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip(|b| b == b' ' || b == b'\t' || b == b',');
        if p.done() {
            return out;
        }
        let Some(scheme) = p.token() else {
            // Not a token: skip to the next comma and try again.
            p.skip(|b| b != b',');
            continue;
        };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        // Parameters until a name that has no `=` after it (the next challenge's scheme).
        loop {
            p.skip(|b| b == b' ' || b == b'\t' || b == b',');
            let mark = p.i;
            let Some(name) = p.token() else { break };
            p.skip(|b| b == b' ' || b == b'\t');
            if !p.eat(b'=') {
                p.i = mark;
                break;
            }
            // token68 (`Basic dXNlcg==`) ends in `=` too: nothing after it is a value.
            p.skip(|b| b == b' ' || b == b'\t');
            let value = match p.peek() {
                Some(b'"') => p.quoted(),
                _ => p.token().map(str::to_owned).unwrap_or_default(),
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        out.push(challenge);
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    fn skip(&mut self, mut while_: impl FnMut(u8) -> bool) {
        while self.peek().is_some_and(&mut while_) {
            self.i += 1;
        }
    }

    /// An RFC 9110 token (tchar run).
    fn token(&mut self) -> Option<&'a str> {
        let start = self.i;
        self.skip(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&b));
        // `/` and `:` are not tchars, but unquoted realms and scopes carry them in the wild.
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .filter(|t| !t.is_empty())
    }

    /// A quoted string from its opening quote; an unterminated one runs to the end.
    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                b => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hubs_challenge() {
        let c = parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("Service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/alpine:pull"));
    }

    #[test]
    fn basic_and_several_challenges() {
        let c = parse(r#"Basic realm="Registry Realm", Bearer realm=https://a/t , service=x"#);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));
        assert_eq!(c[1].param("realm"), Some("https://a/t"));
        assert_eq!(c[1].param("service"), Some("x"));
    }

    #[test]
    fn quotes_escapes_and_junk() {
        let c = parse(r#"Bearer realm="a \"b\" \\ c",scope="x,y""#);
        assert_eq!(c[0].param("realm"), Some(r#"a "b" \ c"#));
        assert_eq!(c[0].param("scope"), Some("x,y"));
        assert!(parse("").is_empty());
        assert_eq!(parse("Bearer")[0].params, vec![]);
        assert_eq!(
            parse(r#"Bearer realm="unterminated"#)[0].param("realm"),
            Some("unterminated")
        );
        assert_eq!(parse("Negotiate dXNlcg==")[0].scheme, "negotiate");
        assert_eq!(parse("\u{7f}=,Basic realm=x")[0].scheme, "basic");
    }
}

#[cfg(test)]
mod properties {
    use crate::invariants;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_header_parses_and_what_it_reads_renders_back(value in ".{0,200}") {
            invariants::challenge(&value);
        }

        #[test]
        fn rendered_challenges_read_back_whole(
            scheme in "[A-Za-z][A-Za-z0-9]{0,10}",
            params in proptest::collection::vec(("[a-z][a-z_]{0,8}", "[ -~]{0,30}"), 0..5),
        ) {
            let c = super::Challenge { scheme: scheme.to_ascii_lowercase(), params };
            let back = super::parse(&c.render());
            prop_assert_eq!(back, vec![c]);
        }
    }
}
