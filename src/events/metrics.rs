//! Per-endpoint delivery metrics, registered in wharf's one Prometheus registry. The label
//! is the endpoint's configured name, so the number of series is bounded by the config.
//! Queue depth and age are what the node delivering the endpoint last saw.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: String,
}

#[derive(Clone, Default)]
pub struct EventMetrics {
    pub sent: Family<EndpointLabel, Counter>,
    pub failed: Family<EndpointLabel, Counter>,
    pub retries: Family<EndpointLabel, Counter>,
    pub queue_depth: Family<EndpointLabel, Gauge>,
    pub oldest_age_seconds: Family<EndpointLabel, Gauge>,
}

impl EventMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "notifications_sent",
            "Events delivered to an endpoint (answered 2xx)",
            self.sent.clone(),
        );
        registry.register(
            "notifications_failed",
            "Events given up after the endpoint's retry policy",
            self.failed.clone(),
        );
        registry.register(
            "notifications_retries",
            "Delivery attempts that failed and will be tried again",
            self.retries.clone(),
        );
        registry.register(
            "notifications_queue_depth",
            "Events waiting for delivery to an endpoint",
            self.queue_depth.clone(),
        );
        registry.register(
            "notifications_oldest_pending_seconds",
            "Age of the oldest event waiting for delivery to an endpoint",
            self.oldest_age_seconds.clone(),
        );
    }

    pub fn label(endpoint: &str) -> EndpointLabel {
        EndpointLabel {
            endpoint: endpoint.to_owned(),
        }
    }
}
