//! The converted configuration as wharf.toml text, laid out like `conf/wharf.toml`, with
//! each note as a comment above the section it is about.

use std::fmt::Write as _;

use crate::config::raw::{RawConfig, RawRoute, RawServer};

/// Where a note goes in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchor {
    Top,
    Listeners,
    Server(usize),
    Storage,
    Registry,
    Log,
}

/// A comment for the reader: something not carried over (and why), or not needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub at: Anchor,
    pub text: String,
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// Text a TOML comment may hold: notes quote the input files, and TOML forbids control
/// characters (a stray `\r` or `^Z` in an nginx file) even in comments, so those are
/// written escaped rather than making the written file unreadable.
fn commentable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.into();
    }
    text.chars()
        .map(|c| match c.is_control() && c != '\t' {
            true => c.escape_default().collect::<String>(),
            false => c.to_string(),
        })
        .collect::<String>()
        .into()
}

struct Out<'a> {
    text: String,
    notes: &'a [Note],
}

impl Out<'_> {
    fn notes(&mut self, at: &Anchor) {
        for n in self.notes.iter().filter(|n| n.at == *at) {
            let mut lines = n.text.lines();
            if let Some(first) = lines.next() {
                let _ = writeln!(self.text, "# {}", commentable(first));
            }
            for l in lines {
                let _ = writeln!(self.text, "#   {}", commentable(l));
            }
        }
    }

    fn key(&mut self, key: &str, value: Option<String>) {
        if let Some(v) = value {
            let _ = writeln!(self.text, "{key} = {v}");
        }
    }
}

pub fn write(raw: &RawConfig, notes: &[Note], header: &str) -> String {
    let mut o = Out {
        text: String::new(),
        notes,
    };
    for l in header.lines() {
        let _ = writeln!(o.text, "# {}", commentable(l));
    }
    o.text.push('\n');
    o.notes(&Anchor::Top);
    o.notes(&Anchor::Listeners);
    for l in &raw.listener {
        o.text.push_str("\n[[listener]]\n");
        o.key("address", Some(q(&l.address)));
        o.key("tls", l.tls.as_deref().map(q));
        o.key("plain", l.plain.as_deref().map(q));
        o.key("redirect_port", l.redirect_port.map(|p| p.to_string()));
    }
    for (i, s) in raw.server.iter().enumerate() {
        o.text.push('\n');
        o.notes(&Anchor::Server(i));
        server(&mut o, s);
    }
    o.text.push('\n');
    o.notes(&Anchor::Storage);
    storage(&mut o, raw);
    o.text.push('\n');
    o.notes(&Anchor::Registry);
    if let Some(delete) = raw.registry.delete {
        let _ = writeln!(o.text, "[registry]\ndelete = {delete}");
    }
    o.text.push('\n');
    o.notes(&Anchor::Log);
    let log = &raw.log;
    if log.level.is_some() || log.format.is_some() || log.access.is_some() {
        o.text.push_str("[log]\n");
        o.key("level", log.level.as_deref().map(q));
        o.key("format", log.format.as_deref().map(q));
        o.key("access", log.access.as_deref().map(q));
    }
    if let Some(a) = &raw.admin.address {
        let _ = write!(o.text, "\n[admin]\naddress = {}\n", q(a));
    }
    if let Some(g) = &raw.shutdown.grace {
        let _ = write!(o.text, "\n[shutdown]\ngrace = {}\n", q(g));
    }
    notifications(&mut o, raw);
    o.text
}

/// registry:2's endpoints, each with what it was converted to.
fn notifications(o: &mut Out<'_>, raw: &RawConfig) {
    for e in &raw.notifications.endpoint {
        o.text.push_str("\n[[notifications.endpoint]]\n");
        o.key("name", e.name.as_deref().map(q));
        o.key("url", e.url.as_deref().map(q));
        o.key("format", e.format.as_deref().map(q));
        o.key("timeout", e.timeout.as_deref().map(q));
        o.key("backoff", e.backoff.as_deref().map(q));
        o.key("pulls", e.pulls.map(|p| p.to_string()));
        o.key("actions", e.actions.as_deref().map(list));
        o.key(
            "ignore_media_types",
            e.ignore_media_types.as_deref().map(list),
        );
        for h in &e.header {
            o.text.push_str("\n[[notifications.endpoint.header]]\n");
            o.key("name", h.name.as_deref().map(q));
            if h.value.is_some() {
                o.text.push_str(
                    "# Copied from config.yml. Better kept out of the file: value_file = \"/run/secrets/hook-header\"\n",
                );
            }
            o.key("value", h.value.as_deref().map(q));
        }
    }
}

fn server(o: &mut Out<'_>, s: &RawServer) {
    o.text.push_str("[[server]]\n");
    if !s.names.is_empty() {
        o.key("names", Some(list(&s.names)));
    }
    o.key("default", s.default.map(|d| d.to_string()));
    if let Some(t) = &s.tls {
        if let (Some(cert), Some(key)) = (&t.cert, &t.key) {
            o.key(
                "tls",
                Some(format!("{{ cert = {}, key = {} }}", q(cert), q(key))),
            );
        }
    }
    if let Some(a) = &s.auth {
        o.text.push_str("\n[server.auth]\n");
        o.key("realm", a.realm.as_deref().map(q));
        let providers: Vec<String> = a
            .providers
            .iter()
            .filter_map(|p| p.htpasswd.as_deref())
            .map(|p| format!("{{ htpasswd = {} }}", q(p)))
            .collect();
        o.key("providers", Some(format!("[{}]", providers.join(", "))));
        let rules: Vec<String> = a
            .access
            .iter()
            .map(|r| {
                format!(
                    "  {{ repos = {}, who = {}, actions = {} }},",
                    q(&r.repos),
                    list(&r.who),
                    list(&r.actions)
                )
            })
            .collect();
        let _ = writeln!(o.text, "access = [\n{}\n]", rules.join("\n"));
    }
    for r in &s.route {
        route(o, r);
    }
}

fn route(o: &mut Out<'_>, r: &RawRoute) {
    o.text.push_str("\n[[server.route]]\n");
    o.key("path", Some(q(&r.path)));
    if let Some(reg) = &r.registry {
        let root = reg.root.as_deref().map(|r| format!(" root = {} ", q(r)));
        o.key(
            "registry",
            Some(format!("{{{}}}", root.unwrap_or_default())),
        );
    }
    o.key("upstream", r.upstream.as_deref().map(q));
    o.key("upstream_timeout", r.upstream_timeout.as_deref().map(q));
    o.key("redirect", r.redirect.as_deref().map(q));
    o.key("redirect_status", r.redirect_status.map(|s| s.to_string()));
    o.key("max_body_bytes", r.max_body_bytes.map(|b| b.to_string()));
    o.key("public", r.public.map(|p| p.to_string()));
}

fn storage(o: &mut Out<'_>, raw: &RawConfig) {
    let s = &raw.storage;
    o.text.push_str("[storage]\n");
    o.key("backend", s.backend.as_deref().map(q));
    o.key("root", s.root.as_deref().map(q));
    o.key("upload_max_age", s.upload_max_age.as_deref().map(q));
    if let Some(t) = &s.s3 {
        o.text.push_str("\n[storage.s3]\n");
        o.key("bucket", t.bucket.as_deref().map(q));
        o.key("prefix", t.prefix.as_deref().map(q));
        o.key("region", t.region.as_deref().map(q));
        o.key("endpoint", t.endpoint.as_deref().map(q));
        o.key("path_style", t.path_style.map(|p| p.to_string()));
        o.key("access_key_id", t.access_key_id.as_deref().map(q));
        if t.secret_access_key.is_some() {
            o.text.push_str(
                "# Copied from config.yml. Better kept out of the file: secret_access_key_file = \"/run/secrets/s3-secret\"\n",
            );
        }
        o.key("secret_access_key", t.secret_access_key.as_deref().map(q));
        o.key("part_size", t.part_size.map(|p| p.to_string()));
    }
}
