//! A reload (SIGHUP) keeps each mirror route whose sources did not change: its config, the
//! contents of the files it reads (upstream password, CA) and its engine. Kept, its
//! state lives on: the upstream's tokens and remembered login scheme (a reload does not
//! cost a token request per repository), the transfers in flight (a pull that starts
//! after the reload follows the one begun before it instead of fetching again), the
//! tags' revalidation times (a tag checked a minute ago is not checked again) and the
//! pull recorder. A route whose sources changed starts afresh: a new password must not
//! ride on tokens issued for the old one.

use std::io;
use std::sync::Arc;

use super::{Mirror, MirrorMetrics};
use crate::config::MirrorConfig;
use crate::registry::Registry;

/// What a mirror is built from.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Sources {
    config: MirrorConfig,
    /// The bytes of `password_file` and `ca_file`, as read when the mirror was built
    /// (`None`: not set, or unreadable, which building then reports).
    files: [Option<Vec<u8>>; 2],
}

impl Sources {
    pub(super) fn read(config: &MirrorConfig) -> Self {
        let password = config.login.as_ref().map(|l| &l.password_file);
        let read = |p: Option<&std::path::PathBuf>| p.and_then(|p| std::fs::read(p).ok());
        Self {
            config: config.clone(),
            files: [read(password), read(config.ca_file.as_ref())],
        }
    }
}

impl Mirror {
    /// The mirror for `config` after a reload: one of `kept` (the running mirrors) when
    /// built from the same sources on the same engine, else a new one.
    pub fn reuse_or_new(
        config: &MirrorConfig,
        registry: Arc<Registry>,
        metrics: Arc<MirrorMetrics>,
        kept: &[Arc<Mirror>],
    ) -> io::Result<Arc<Mirror>> {
        let sources = Sources::read(config);
        let same = kept
            .iter()
            .find(|m| m.sources == sources && Arc::ptr_eq(&m.registry, &registry));
        if let Some(mirror) = same {
            tracing::info!(mirror = %config.url, "mirror route unchanged: its state is kept");
            return Ok(mirror.clone());
        }
        if !kept.is_empty() {
            tracing::info!(mirror = %config.url, "mirror route new or changed: it starts afresh");
        }
        Ok(Arc::new(Mirror::with_sources(
            config, registry, metrics, sources,
        )?))
    }
}
