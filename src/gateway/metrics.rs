//! Prometheus metrics, served as text on the admin listener's `/metrics`. Label values come
//! from the config (server labels, route prefixes) and status codes, so their number is
//! bounded whatever clients send.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub vhost: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub vhost: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub limit: String,
}

/// What `server/window_budget.rs` reports; clones share the values.
#[derive(Clone, Default)]
pub struct Http2WindowMetrics {
    pub leased_bytes: Gauge,
    pub reduced: Counter,
}

/// Every metric wharf keeps. Lives as long as the process: reloads keep counting.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    response_bytes: Family<RouteLabels, Counter>,
    request_bytes: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<RouteLabels, Counter>,
    tls_handshakes: Family<OutcomeLabels, Counter>,
    connections_refused: Family<LimitLabels, Counter>,
    login_verifications: Counter,
    rate_limited: Family<LimitLabels, Counter>,
    rate_limit_clients: Family<LimitLabels, Gauge>,
    /// The HTTP/2 window budget: bytes leased, and connections given less than they asked.
    pub http2_windows: Http2WindowMetrics,
    /// The pull-through cache's counters, shared by every mirror route.
    pub mirror: std::sync::Arc<crate::mirror::MirrorMetrics>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s: manifest HEADs at the bottom, big layers at the top.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wharf");
        let requests = Family::default();
        let response_bytes = Family::default();
        let request_bytes = Family::default();
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let upstream_errors = Family::default();
        let tls_handshakes = Family::default();
        let connections_refused = Family::default();
        let login_verifications = Counter::default();
        let rate_limited = Family::default();
        let rate_limit_clients = Family::default();
        registry.register(
            "http_requests",
            "Requests answered, by server, route and status",
            requests.clone(),
        );
        registry.register(
            "http_response_bytes",
            "Response body bytes sent",
            response_bytes.clone(),
        );
        registry.register(
            "http_request_bytes",
            "Request body bytes received (announced lengths)",
            request_bytes.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to the end of the response body",
            latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Proxied requests that failed (502/504)",
            upstream_errors.clone(),
        );
        registry.register(
            "tls_handshakes",
            "TLS handshakes by outcome (ok, failed, timeout, no_server)",
            tls_handshakes.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once, by the limit they hit (per_ip: limits.max_connections_per_ip, total: limits.max_connections)",
            connections_refused.clone(),
        );
        registry.register(
            "login_verifications",
            "Password verifications actually run (bcrypt); cached logins do not count",
            login_verifications.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429, by limit (failed_logins for blocked logins)",
            rate_limited.clone(),
        );
        registry.register(
            "rate_limit_clients",
            "Clients each rate limit remembers (bounded by limits.rate_limit_keys)",
            rate_limit_clients.clone(),
        );
        let http2_windows = Http2WindowMetrics::default();
        registry.register(
            "http2_window_leased_bytes",
            "HTTP/2 connection windows leased from limits.http2_window_budget by open connections",
            http2_windows.leased_bytes.clone(),
        );
        registry.register(
            "http2_windows_reduced",
            "HTTP/2 connections given smaller windows than configured, the budget being spent",
            http2_windows.reduced.clone(),
        );
        let mirror = std::sync::Arc::new(crate::mirror::MirrorMetrics::default());
        mirror.register(&mut registry);
        Self {
            mirror,
            http2_windows,
            login_verifications,
            rate_limited,
            rate_limit_clients,
            registry,
            requests,
            response_bytes,
            request_bytes,
            latency,
            upstream_errors,
            tls_handshakes,
            connections_refused,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn request_done(
        &self,
        vhost: &str,
        route: &str,
        status: u16,
        sent: u64,
        received: u64,
        seconds: f64,
    ) {
        let route_labels = RouteLabels {
            vhost: vhost.to_owned(),
            route: route.to_owned(),
        };
        self.requests
            .get_or_create(&RequestLabels {
                vhost: vhost.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.response_bytes
            .get_or_create(&route_labels)
            .inc_by(sent);
        self.request_bytes
            .get_or_create(&route_labels)
            .inc_by(received);
        self.latency.get_or_create(&route_labels).observe(seconds);
        if status == 502 || status == 504 {
            self.upstream_errors.get_or_create(&route_labels).inc();
        }
    }

    pub fn tls_handshake(&self, outcome: &'static str) {
        self.tls_handshakes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn login_verification(&self) {
        self.login_verifications.inc();
    }

    pub fn rate_limited(&self, limit: &str) {
        self.rate_limited
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .inc();
    }

    pub fn rate_limit_clients(&self, limit: &str, clients: usize) {
        self.rate_limit_clients
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .set(i64::try_from(clients).unwrap_or(i64::MAX));
    }

    /// The registry, for other modules' metrics (the notifications'), before sharing.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// `limit` is `per_ip` or `total`.
    pub fn connection_refused(&self, limit: &'static str) {
        self.connections_refused
            .get_or_create(&LimitLabels {
                limit: limit.to_owned(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
