//! Garbage collection metrics, in wharf's one Prometheus registry (prefix `wharf_`): runs
//! by result, what they freed, how long the last one took and when one last succeeded.
//! Summed over this process's storage roots (there is usually one); a node counts the runs
//! it made, so on shared storage the runs of all nodes add up to the storage's.

use std::sync::atomic::AtomicU64;
use std::time::UNIX_EPOCH;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::registry::service::gc_status::{LastRun, RunResult};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Default)]
pub struct GcMetrics {
    runs: Family<ResultLabel, Counter>,
    freed_bytes: Counter,
    freed_objects: Counter,
    duration_seconds: Gauge<f64, AtomicU64>,
    last_success: Gauge<f64, AtomicU64>,
}

impl GcMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gc_runs",
            "Garbage collections by result: success, failure, or skipped (another node held the GC lease)",
            self.runs.clone(),
        );
        registry.register(
            "gc_freed_bytes",
            "Bytes of blobs garbage collection deleted",
            self.freed_bytes.clone(),
        );
        registry.register(
            "gc_freed_objects",
            "Blobs (layers, configs, manifests) garbage collection deleted",
            self.freed_objects.clone(),
        );
        registry.register(
            "gc_duration_seconds",
            "How long the last garbage collection on this node took",
            self.duration_seconds.clone(),
        );
        registry.register(
            "gc_last_success_timestamp_seconds",
            "When the last successful garbage collection on this node ended (Unix time)",
            self.last_success.clone(),
        );
    }

    fn count(&self, result: RunResult) {
        let label = ResultLabel {
            result: result.as_str().to_owned(),
        };
        self.runs.get_or_create(&label).inc();
    }

    /// Another node held the lease.
    pub fn skipped(&self) {
        self.count(RunResult::Skipped);
    }

    /// A run this node made.
    pub fn finished(&self, run: &LastRun) {
        self.count(run.result);
        self.freed_bytes.inc_by(run.bytes_freed);
        self.freed_objects.inc_by(run.objects_freed as u64);
        let took = run.ended.duration_since(run.started).unwrap_or_default();
        self.duration_seconds.set(took.as_secs_f64());
        if run.result == RunResult::Success {
            let at = run.ended.duration_since(UNIX_EPOCH).unwrap_or_default();
            self.last_success.set(at.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use std::time::Duration;

    #[test]
    fn a_run_is_counted_with_what_it_freed() {
        let mut registry = Registry::with_prefix("wharf");
        let m = GcMetrics::default();
        m.register(&mut registry);
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        m.finished(&LastRun {
            started: t,
            ended: t + Duration::from_millis(1500),
            result: RunResult::Success,
            error: None,
            tags_deleted: 0,
            objects_freed: 2,
            bytes_freed: 2048,
            links_removed: 1,
        });
        m.skipped();
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "wharf_gc_runs_total{result=\"success\"} 1",
            "wharf_gc_runs_total{result=\"skipped\"} 1",
            "wharf_gc_freed_bytes_total 2048",
            "wharf_gc_freed_objects_total 2",
            "wharf_gc_duration_seconds 1.5",
            "wharf_gc_last_success_timestamp_seconds 1700000001.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
