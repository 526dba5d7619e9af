//! One log line per phase of a collection, with its duration and how many things it
//! handled: where a slow run spends its time shows without a profiler (operators read the
//! same lines, `wharf gc` prints them at `info`).

use std::time::Instant;

/// A phase being timed; [`Phase::done`] logs it.
pub(super) struct Phase {
    name: &'static str,
    started: Instant,
}

impl Phase {
    pub(super) fn start(name: &'static str) -> Self {
        Self {
            name,
            started: Instant::now(),
        }
    }

    /// Logs the phase's duration and the number of `items` it handled.
    pub(super) fn done(self, items: usize) {
        let ms = self.started.elapsed().as_millis() as u64;
        tracing::info!(phase = self.name, ms, items, "gc phase done");
    }
}
