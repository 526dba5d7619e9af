//! registry:2's settings, given the way registry:2 takes them: `REGISTRY_*` environment
//! variables (`REGISTRY_HTTP_ADDR`, `REGISTRY_STORAGE_S3_BUCKET`, ...), or the keys of its
//! `config.yml` flattened to the same names (`yml.rs`; for `wharf serve <config.yml>`,
//! `REGISTRY_CONFIGURATION_PATH` and `wharf import-config`).
//!
//! They are applied to the raw config before validation: over the file's keys, or over the
//! built-in default when there is no file; a config.yml's settings come first and the
//! variables after them, so a variable always wins, as on registry:2. Every setting ends up
//! as something applied, something wharf needs nothing for (with the reason), or an error
//! naming it and what to do: none is silently ignored.

mod apply;
mod collect;
mod notifications;
#[cfg(test)]
mod tests;
pub mod yml;

/// registry:2's variable naming its config.yml (when `registry serve` is given no file).
pub const CONFIGURATION_PATH: &str = "REGISTRY_CONFIGURATION_PATH";

use super::raw::RawConfig;
use super::ConfigError;

/// Where a setting comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The process environment: secrets stay in their variables (the config names the
    /// variable, never the value), and Kubernetes service links are passed over.
    Environment,
    /// A registry:2 `config.yml`: secrets are copied from it.
    File,
}

/// What [`apply`] does with settings wharf cannot carry over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// Refuse the whole configuration, naming every one of them (`wharf serve`).
    Refuse,
    /// Report them as [`Effect::Unsupported`], to become comments (`wharf import-config`).
    Report,
}

/// One registry:2 setting.
#[derive(Clone, Debug)]
pub struct Setting {
    /// The variable's name, e.g. `REGISTRY_STORAGE_S3_BUCKET`.
    pub name: String,
    /// What to call it in messages: the variable, or the `config.yml` key (`storage.s3.bucket`).
    pub label: String,
    pub value: String,
    pub origin: Origin,
}

impl Setting {
    /// A variable of the environment, named by itself.
    pub fn variable(name: &str, value: &str) -> Self {
        Self {
            name: name.to_owned(),
            label: name.to_owned(),
            value: value.to_owned(),
            origin: Origin::Environment,
        }
    }
}

/// What became of one setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The setting's label.
    pub label: String,
    pub effect: Effect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// These wharf.toml keys were set; `key` names the first, so that a validation error
    /// about it can name the setting, and `shown` says what was set (never a secret).
    Set { key: String, shown: String },
    /// Accepted, with no effect: the reason wharf needs nothing for it.
    NotNeeded(String),
    /// Not supported (only from a file; from the environment this is an error).
    Unsupported { problem: String, fix: String },
}

/// The `REGISTRY_*` variables of this process, sorted by name.
pub fn from_environment() -> Result<Vec<Setting>, ConfigError> {
    let mut settings = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Some(name) = name.to_str().filter(|n| n.starts_with("REGISTRY_")) else {
            continue;
        };
        let value = value.into_string().map_err(|_| {
            env_error(
                name,
                "is not valid UTF-8",
                "set it to a UTF-8 value, or unset it",
            )
        })?;
        settings.push(Setting::variable(name, &value));
    }
    settings.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(settings)
}

/// Applies the settings to `raw`, in order (a later one replaces an earlier one of the same
/// name), and says what became of each.
pub fn apply(
    raw: &mut RawConfig,
    settings: Vec<Setting>,
    unsupported: Unsupported,
) -> Result<Vec<Applied>, ConfigError> {
    let mut wanted = collect::Registry2::default();
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for setting in settings {
        let Some(rest) = setting.name.strip_prefix("REGISTRY_").map(str::to_owned) else {
            continue;
        };
        let label = setting.label.clone();
        if collect::kubernetes_service_link(&setting.name, setting.origin) {
            let why = "a Kubernetes service link, made for a Service named registry; not a setting";
            out.push(Applied {
                label,
                effect: Effect::NotNeeded(why.into()),
            });
            continue;
        }
        match wanted.take(&rest, setting) {
            collect::Kind::Taken => {}
            collect::Kind::NotNeeded(why) => out.push(Applied {
                label,
                effect: Effect::NotNeeded(why.into()),
            }),
            collect::Kind::Unsupported(problem, fix) => match unsupported {
                Unsupported::Refuse => refused.push(env_error(&label, &problem, &fix)),
                Unsupported::Report => out.push(Applied {
                    label,
                    effect: Effect::Unsupported { problem, fix },
                }),
            },
        }
    }
    // Every setting that cannot be carried over at once, so one try lists them all.
    match refused.len() {
        0 => {}
        1 => return Err(refused.remove(0)),
        _ => return Err(ConfigError::Several(refused)),
    }
    out.extend(apply::apply(raw, wanted)?);
    // In the settings' order (the environment's is sorted by name), each one's lines together.
    out.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(out)
}

/// An error about one setting; its origin says it is registry:2's.
pub(super) fn env_error(label: &str, problem: &str, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        origin: "registry:2 setting".into(),
        key: label.to_owned(),
        problem: problem.to_owned(),
        fix: fix.to_owned(),
    }
}

/// The setting that set `key` (or the table holding it), for a validation error about it.
pub(super) fn setter_of<'a>(applied: &'a [Applied], key: &str) -> Option<&'a str> {
    let set = |exact: bool| {
        applied.iter().find_map(|a| match &a.effect {
            Effect::Set { key: set, .. }
                if key == set
                    || (!exact
                        && key
                            .strip_prefix(set.as_str())
                            .is_some_and(|rest| rest.starts_with(['.', '[']))) =>
            {
                Some(a.label.as_str())
            }
            _ => None,
        })
    };
    set(true).or_else(|| set(false))
}
