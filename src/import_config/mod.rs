//! `wharf import-config`: a registry:2 `config.yml`, and optionally the nginx site in
//! front of it, as the equivalent wharf.toml, with a comment at each setting that could
//! not be carried over (and why) or that wharf needs nothing for.
//!
//! registry:2's keys go through the same rules as its `REGISTRY_*` variables
//! (`config::registry_env`), flattened to those names as registry:2 relates them.

mod nginx_front;
mod nginx_parse;
mod write;

use crate::config::raw::RawConfig;
use crate::config::registry_env::{self, Effect, Unsupported};
pub use write::{Anchor, Note};

/// The inputs, as text, with the names to give them in messages.
pub struct Inputs<'a> {
    pub registry_yml: (&'a str, &'a str),
    pub nginx: Option<(&'a str, &'a str)>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ImportError {
    pub file: String,
    pub message: String,
}

/// The converted configuration: the wharf.toml text and the notes it carries as comments.
pub struct Converted {
    pub toml: String,
    pub notes: Vec<Note>,
}

pub fn convert(inputs: &Inputs<'_>) -> Result<Converted, ImportError> {
    let (yml_name, yml) = inputs.registry_yml;
    let fail = |file: &str, message: String| ImportError {
        file: file.to_owned(),
        message,
    };
    let settings = registry_env::yml::settings(yml).map_err(|m| fail(yml_name, m))?;
    let mut raw = RawConfig::default();
    let applied = registry_env::apply(&mut raw, settings, Unsupported::Report)
        .map_err(|e| fail(yml_name, e.to_string().replace("registry:2 setting: ", "")))?;
    let mut notes = grouped_notes(&applied);
    if let Some((nginx_name, nginx)) = inputs.nginx {
        behind_nginx(&mut raw, &mut notes, nginx).map_err(|m| fail(nginx_name, m))?;
    }
    let header = header(inputs);
    Ok(Converted {
        toml: write::write(&raw, &notes, &header),
        notes,
    })
}

/// nginx in front: its listeners and server blocks replace registry:2's own address.
fn behind_nginx(raw: &mut RawConfig, notes: &mut Vec<Note>, text: &str) -> Result<(), String> {
    let directives = nginx_parse::parse(text)?;
    let port = raw
        .listener
        .first()
        .and_then(|l| l.address.rsplit(':').next())
        .and_then(|p| p.parse().ok());
    let own = raw.server.pop();
    let registry = nginx_front::Registry {
        port: port.or(Some(5000)),
        auth: own.as_ref().and_then(|s| s.auth.as_ref()).map(clone_auth),
        delete: raw.registry.delete == Some(true),
    };
    let front = nginx_front::convert(&directives, &registry)?;
    if let Some(addr) = raw.listener.first() {
        notes.push(Note {
            at: Anchor::Listeners,
            text: format!(
                "registry:2 listened on {} behind nginx; wharf answers on nginx's addresses instead",
                addr.address
            ),
        });
    }
    if own.as_ref().is_some_and(|s| s.tls.is_some()) {
        notes.push(Note {
            at: Anchor::Listeners,
            text:
                "registry:2's own TLS (http.tls) was behind nginx; wharf uses nginx's certificates"
                    .into(),
        });
    }
    raw.listener = front.listeners;
    raw.server = front.servers;
    notes.extend(front.notes);
    Ok(())
}

pub(super) fn clone_auth(a: &crate::config::raw::RawAuth) -> crate::config::raw::RawAuth {
    use crate::config::raw::{RawAccessRule, RawAuth, RawProvider};
    RawAuth {
        realm: a.realm.clone(),
        providers: a
            .providers
            .iter()
            .map(|p| RawProvider {
                htpasswd: p.htpasswd.clone(),
                ldap: None,
            })
            .collect(),
        access: a
            .access
            .iter()
            .map(|r| RawAccessRule {
                repos: r.repos.clone(),
                who: r.who.clone(),
                actions: r.actions.clone(),
            })
            .collect(),
        ..RawAuth::default()
    }
}

/// One note per reason: the keys wharf needs nothing for, or cannot carry over, for the
/// same reason share it (`health.storagedriver.enabled, interval, threshold`).
fn grouped_notes(applied: &[registry_env::Applied]) -> Vec<Note> {
    let mut groups: Vec<(Anchor, String, Vec<&str>)> = Vec::new();
    for a in applied {
        let reason = match &a.effect {
            Effect::Set { .. } => continue,
            Effect::NotNeeded(why) => format!("not needed: {why}"),
            Effect::Unsupported { problem, .. } => format!(
                "NOT CARRIED OVER: {}",
                problem.strip_prefix("is ").unwrap_or(problem)
            ),
        };
        let at = anchor_of(&a.label);
        match groups.iter_mut().find(|(x, r, _)| *x == at && *r == reason) {
            Some((_, _, labels)) => labels.push(&a.label),
            None => groups.push((at, reason, vec![&a.label])),
        }
    }
    groups
        .into_iter()
        .map(|(at, reason, labels)| {
            let keys = labels.join(", ");
            let text = match reason.strip_prefix("NOT CARRIED OVER: ") {
                Some(problem) => format!("NOT CARRIED OVER: registry:2's {keys}: {problem}"),
                None => format!("registry:2's {keys}: {reason}"),
            };
            Note { at, text }
        })
        .collect()
}

/// Which section a registry:2 key's note belongs to.
fn anchor_of(label: &str) -> Anchor {
    let top = label.split('.').next().unwrap_or_default();
    match top {
        "storage" => Anchor::Storage,
        "log" | "loglevel" => Anchor::Log,
        "http" if label.starts_with("http.addr") || label.starts_with("http.net") => {
            Anchor::Listeners
        }
        _ => Anchor::Top,
    }
}

fn header(inputs: &Inputs<'_>) -> String {
    let mut from = format!("registry:2's {}", inputs.registry_yml.0);
    if let Some((nginx, _)) = inputs.nginx {
        from.push_str(&format!(" and the nginx site {nginx}"));
    }
    format!(
        "wharf configuration converted by `wharf import-config` from {from}.\n\
         Check it with `wharf check-config FILE`; README \"Switching from registry:2\" explains the mapping.\n\
         Comments marked NOT CARRIED OVER name what has no equivalent here, and why."
    )
}

#[cfg(test)]
mod tests;
