//! nginx's configuration syntax, as far as a site file in front of a registry uses it:
//! directives `name args;` and blocks `name args { ... }`, `#` comments, quoted arguments.

/// One directive, with its block when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub block: Option<Vec<Directive>>,
    /// 1-based, for messages.
    pub line: usize,
}

impl Directive {
    /// The directive as written, for comments: `name arg arg`.
    pub fn text(&self) -> String {
        std::iter::once(self.name.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Word(String, usize),
    Semicolon(usize),
    Open(usize),
    Close(usize),
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            ';' => out.push(Token::Semicolon(line)),
            '{' => out.push(Token::Open(line)),
            '}' => out.push(Token::Close(line)),
            '"' | '\'' => {
                let (start, mut word) = (line, String::new());
                loop {
                    match chars.next() {
                        None => return Err(format!("line {start}: a quote is never closed")),
                        Some('\\') => word.extend(chars.next()),
                        Some(q) if q == c => break,
                        Some(ch) => {
                            line += usize::from(ch == '\n');
                            word.push(ch);
                        }
                    }
                }
                out.push(Token::Word(word, start));
            }
            c => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, ';' | '{' | '}') {
                        break;
                    }
                    word.push(n);
                    chars.next();
                }
                out.push(Token::Word(word, line));
            }
        }
    }
    Ok(out)
}

/// Parses a whole file into its top-level directives.
pub fn parse(text: &str) -> Result<Vec<Directive>, String> {
    let tokens = tokens(text)?;
    let mut at = 0;
    let directives = block(&tokens, &mut at)?;
    match tokens.get(at) {
        None => Ok(directives),
        Some(Token::Close(line)) => Err(format!("line {line}: `}}` without a block to close")),
        Some(_) => Err("unexpected text at the end".into()),
    }
}

fn block(tokens: &[Token], at: &mut usize) -> Result<Vec<Directive>, String> {
    let mut out = Vec::new();
    while let Some(token) = tokens.get(*at) {
        let (name, line) = match token {
            Token::Close(_) => return Ok(out),
            Token::Word(w, line) => (w.clone(), *line),
            Token::Semicolon(line) | Token::Open(line) => {
                return Err(format!("line {line}: expected a directive name"))
            }
        };
        *at += 1;
        let mut args = Vec::new();
        loop {
            match tokens.get(*at) {
                Some(Token::Word(w, _)) => args.push(w.clone()),
                Some(Token::Semicolon(_)) => {
                    *at += 1;
                    out.push(Directive {
                        name,
                        args,
                        block: None,
                        line,
                    });
                    break;
                }
                Some(Token::Open(_)) => {
                    *at += 1;
                    let inner = block(tokens, at)?;
                    match tokens.get(*at) {
                        Some(Token::Close(_)) => *at += 1,
                        _ => {
                            return Err(format!(
                                "line {line}: the block of `{name}` is never closed"
                            ))
                        }
                    }
                    out.push(Directive {
                        name,
                        args,
                        block: Some(inner),
                        line,
                    });
                    break;
                }
                Some(Token::Close(l)) => return Err(format!("line {l}: `{name}` needs a `;`")),
                None => return Err(format!("line {line}: `{name}` needs a `;`")),
            }
            *at += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_blocks_comments_and_quotes() {
        let d = parse(
            "upstream docker-registry { server registry:5000; }\n# a comment\nserver {\n  listen 443 ssl; # trailing\n  add_header 'Docker-Distribution-Api-Version' 'registry/2.0' always;\n  location /v2/ {\n    if ($http_user_agent ~ \"^(docker\\/1\\.(3|4|5(?!\\.[0-9]-dev))|Go ).*$\" ) { return 404; }\n  }\n}\n",
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].children()[0].args, ["registry:5000"]);
        let server = d[1].children();
        assert_eq!(server[0].text(), "listen 443 ssl");
        assert_eq!(server[0].line, 4);
        assert_eq!(server[1].args[0], "Docker-Distribution-Api-Version");
        let location = &server[2];
        assert_eq!(location.args, ["/v2/"]);
        assert_eq!(location.children()[0].name, "if");
        assert_eq!(location.children()[0].children()[0].text(), "return 404");
    }

    #[test]
    fn broken_files_say_where() {
        assert!(parse("server {\n listen 80;\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse("listen 80\n}").unwrap_err().contains("needs a `;`"));
        assert!(parse("x 'open;").unwrap_err().contains("quote"));
    }
}
