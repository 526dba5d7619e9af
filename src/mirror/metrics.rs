//! The cache's counters, by mirrored registry (`ns`, from the config, so the label set is
//! bounded): served from the cache, fetched on a miss, bytes and errors upstream, and
//! stale answers given while the upstream was failing.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MirrorLabels {
    pub ns: String,
}

#[derive(Default)]
pub struct MirrorMetrics {
    hits: Family<MirrorLabels, Counter>,
    misses: Family<MirrorLabels, Counter>,
    upstream_bytes: Family<MirrorLabels, Counter>,
    upstream_errors: Family<MirrorLabels, Counter>,
    stale: Family<MirrorLabels, Counter>,
}

impl MirrorMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let all = [
            (
                "mirror_hits",
                "Mirror requests served from the cache",
                &self.hits,
            ),
            (
                "mirror_misses",
                "Mirror requests that went upstream",
                &self.misses,
            ),
            (
                "mirror_upstream_bytes",
                "Blob and manifest bytes fetched from upstream registries",
                &self.upstream_bytes,
            ),
            (
                "mirror_upstream_errors",
                "Upstream requests that failed (unreachable, timeout, refused, broken off)",
                &self.upstream_errors,
            ),
            (
                "mirror_stale_serves",
                "Cached tags served without revalidation because the upstream failed",
                &self.stale,
            ),
        ];
        for (name, help, family) in all {
            registry.register(name, help, family.clone());
        }
    }

    fn labels(ns: &str) -> MirrorLabels {
        MirrorLabels { ns: ns.to_owned() }
    }

    pub fn hit(&self, ns: &str) {
        self.hits.get_or_create(&Self::labels(ns)).inc();
    }

    pub fn miss(&self, ns: &str) {
        self.misses.get_or_create(&Self::labels(ns)).inc();
    }

    pub fn upstream_bytes(&self, ns: &str, n: u64) {
        self.upstream_bytes
            .get_or_create(&Self::labels(ns))
            .inc_by(n);
    }

    pub fn upstream_error(&self, ns: &str) {
        self.upstream_errors.get_or_create(&Self::labels(ns)).inc();
    }

    pub fn stale(&self, ns: &str) {
        self.stale.get_or_create(&Self::labels(ns)).inc();
    }
}
