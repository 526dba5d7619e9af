//! registry:2's `notifications.endpoints`, as `[[notifications.endpoint]]`s in registry:2's
//! envelope (`format = "distribution"`). Its keys arrive flattened like every other one:
//! `notifications.endpoints.0.url` is `NOTIFICATIONS_ENDPOINTS_0_URL`.

use std::collections::BTreeMap;

use super::apply::{boolean, Record};
use super::{Applied, Effect, Setting};
use crate::config::notifications::{RawEndpoint, RawHeader};
use crate::config::raw::RawConfig;
use crate::config::ConfigError;

/// registry:2's endpoints by their place in its list.
#[derive(Debug, Default)]
pub(super) struct Endpoints(BTreeMap<usize, Endpoint>);

/// One endpoint's settings, as written.
#[derive(Debug, Default)]
struct Endpoint {
    name: Option<Setting>,
    disabled: Option<Setting>,
    url: Option<Setting>,
    timeout: Option<Setting>,
    backoff: Option<Setting>,
    threshold: Option<Setting>,
    headers: Vec<Setting>,
    /// `ignoredmediatypes` and `ignore.mediatypes` (lists, comma-joined).
    ignored_media_types: Vec<Setting>,
    ignored_actions: Option<Setting>,
}

const ACTIONS: [&str; 4] = ["push", "pull", "mount", "delete"];

impl Endpoints {
    /// Takes `NOTIFICATIONS_ENDPOINTS_<n>_<KEY>`; `Err` with the problem for an unknown key.
    pub fn take(&mut self, rest: &str, setting: Setting) -> Result<(), String> {
        let unknown = || "is not a notification endpoint setting registry:2 has".to_owned();
        let (n, key) = rest.split_once('_').ok_or_else(unknown)?;
        let n: usize = n.parse().map_err(|_| unknown())?;
        let e = self.0.entry(n).or_default();
        let slot = match key {
            "NAME" => &mut e.name,
            "DISABLED" => &mut e.disabled,
            "URL" => &mut e.url,
            "TIMEOUT" => &mut e.timeout,
            "BACKOFF" => &mut e.backoff,
            "THRESHOLD" => &mut e.threshold,
            "IGNORE_ACTIONS" => &mut e.ignored_actions,
            "IGNOREDMEDIATYPES" | "IGNORE_MEDIATYPES" => {
                e.ignored_media_types.push(setting);
                return Ok(());
            }
            k if k.starts_with("HEADERS_") => {
                e.headers.push(setting);
                return Ok(());
            }
            _ => return Err(unknown()),
        };
        *slot = Some(setting);
        Ok(())
    }
}

/// Adds one `[[notifications.endpoint]]` per endpoint that is not disabled.
pub(super) fn apply(
    raw: &mut RawConfig,
    w: &Endpoints,
    rec: &mut Record,
) -> Result<(), ConfigError> {
    for e in w.0.values() {
        if let Some(d) = &e.disabled {
            if boolean(d)? {
                let why = "the endpoint is disabled, so it is left out";
                for s in e.all() {
                    rec.0.push(Applied {
                        label: s.label.clone(),
                        effect: Effect::NotNeeded(why.into()),
                    });
                }
                continue;
            }
        }
        let at = raw.notifications.endpoint.len();
        let key = |k: &str| format!("notifications.endpoint[{at}].{k}");
        let mut out = RawEndpoint {
            format: Some("distribution".into()),
            ..RawEndpoint::default()
        };
        out.name = e.name.as_ref().map(|s| endpoint_name(&s.value));
        // The whole table is the endpoint's doing, so an error about any key of it (a
        // name or url missing) names one of its settings.
        if let Some(s) = e.name.as_ref().or(e.all().next()) {
            let shown = format!(
                "[[notifications.endpoint]] name = {:?}, format = \"distribution\"",
                out.name.as_deref().unwrap_or_default()
            );
            rec.set(s, &format!("notifications.endpoint[{at}]"), shown);
        }
        if let Some(s) = &e.url {
            out.url = Some(s.value.trim().to_owned());
            rec.set(s, &key("url"), format!("url = {:?}", s.value.trim()));
        }
        for (s, k, field) in [
            (&e.timeout, "timeout", &mut out.timeout),
            (&e.backoff, "backoff", &mut out.backoff),
        ] {
            if let Some(s) = s {
                *field = Some(s.value.trim().to_owned());
                rec.set(s, &key(k), format!("{k} = {:?}", s.value.trim()));
            }
        }
        if let Some(s) = &e.threshold {
            let why = "wharf retries a failed event with a doubling backoff until it is a day old, without a failure count";
            rec.0.push(Applied {
                label: s.label.clone(),
                effect: Effect::NotNeeded(why.into()),
            });
        }
        actions(e, &mut out, &key("actions"), rec);
        let mut ignored: Vec<String> = Vec::new();
        for s in &e.ignored_media_types {
            ignored.extend(list(&s.value));
            rec.set(
                s,
                &key("ignore_media_types"),
                format!("ignore_media_types = {ignored:?}"),
            );
        }
        if !ignored.is_empty() {
            out.ignore_media_types = Some(ignored);
        }
        for s in &e.headers {
            // The header's name as the file spells it (the variable's is upper-cased).
            let name = s
                .label
                .rsplit_once(".headers.")
                .map(|(_, h)| h)
                .or_else(|| s.name.split_once("_HEADERS_").map(|(_, h)| h))
                .unwrap_or_default()
                .to_owned();
            rec.set(
                s,
                &key("header"),
                format!("[[notifications.endpoint.header]] name = {name:?}"),
            );
            out.header.push(RawHeader {
                name: Some(name),
                value: Some(s.value.clone()),
                ..RawHeader::default()
            });
        }
        raw.notifications.endpoint.push(out);
    }
    Ok(())
}

/// registry:2 sends every action, pulls included, unless `ignore.actions` names it.
fn actions(e: &Endpoint, out: &mut RawEndpoint, key: &str, rec: &mut Record) {
    let ignored = e
        .ignored_actions
        .as_ref()
        .map(|s| list(&s.value))
        .unwrap_or_default();
    let kept: Vec<String> = ACTIONS
        .iter()
        .filter(|a| !ignored.iter().any(|i| i.eq_ignore_ascii_case(a)))
        .map(|a| a.to_string())
        .collect();
    out.pulls = Some(kept.iter().any(|a| a == "pull"));
    let shown = format!(
        "actions = {kept:?}, pulls = {}",
        kept.iter().any(|a| a == "pull")
    );
    out.actions = Some(kept);
    match (&e.ignored_actions, &e.name) {
        (Some(s), _) => rec.set(s, key, shown),
        (None, Some(s)) => rec.set(s, key, format!("{shown} (registry:2 sends every action)")),
        (None, None) => {}
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// registry:2 takes any name; wharf's names a queue in storage: 1 to 64 of `a-z0-9-_`.
fn endpoint_name(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_') => c,
            _ => '-',
        })
        .take(64)
        .collect();
    match cleaned.trim_matches('-') {
        "" => "endpoint".into(),
        n => n.to_owned(),
    }
}

impl Endpoint {
    fn all(&self) -> impl Iterator<Item = &Setting> {
        [
            &self.name,
            &self.disabled,
            &self.url,
            &self.timeout,
            &self.backoff,
            &self.threshold,
            &self.ignored_actions,
        ]
        .into_iter()
        .flatten()
        .chain(&self.headers)
        .chain(&self.ignored_media_types)
    }
}

#[cfg(test)]
mod tests {
    use super::endpoint_name;

    #[test]
    fn names_become_queue_names() {
        assert_eq!(endpoint_name("alistener"), "alistener");
        assert_eq!(endpoint_name("My Listener!"), "my-listener");
        assert_eq!(endpoint_name("***"), "endpoint");
        assert_eq!(endpoint_name(&"x".repeat(100)).len(), 64);
    }
}
