//! `limits.http2_window_budget`: the receive windows of all HTTP/2 connections together.
//!
//! A client may send a whole connection window before wharf reads a byte, and the h2 crate
//! keeps what arrived in memory until the upload's handler takes it, so windows large
//! enough for a long round trip (see `config/http2.rs`) are also large amounts of memory.
//! Each HTTP/2 connection leases its connection window from this budget when it starts and
//! gives it back when it ends; one that finds the budget short gets what is left, and one
//! that finds less than [`FLOOR`] gets the floor without a lease. So what uploads hold in
//! memory stays under the budget plus `limits.max_connections` floors, and a burst of
//! clients slows the later ones down rather than growing the server.
//!
//! Windows are settled when a connection starts (hyper cannot change them later), so an
//! idle connection holds its lease until it closes (`limits.keepalive_timeout`), and so
//! does one that only pulls. `wharf_http2_window_leased_bytes` shows what is held, and
//! `wharf_http2_windows_reduced` counts connections that got less than configured.

use std::sync::{Arc, Mutex};

use crate::gateway::metrics::Http2WindowMetrics;

/// The windows given without a lease once the budget is spent: hyper's own default for
/// the stream, twice that for the connection (25 MB/s at a 40 ms round trip).
pub const FLOOR: Windows = Windows {
    stream: 1 << 20,
    connection: 2 << 20,
};

/// The receive windows of one connection, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    pub stream: u32,
    pub connection: u32,
}

/// `wanted`, but no larger than [`FLOOR`]: what needs no lease.
pub fn at_most_the_floor(wanted: Windows) -> Windows {
    Windows {
        stream: wanted.stream.min(FLOOR.stream),
        connection: wanted.connection.min(FLOOR.connection),
    }
}

pub struct WindowBudget {
    state: Mutex<State>,
    metrics: Http2WindowMetrics,
}

struct State {
    total: u64,
    leased: u64,
    /// Set while connections get less than they asked, so that is logged once per episode.
    short: bool,
}

/// A connection's share of the budget; dropping it gives the share back.
pub struct Lease {
    budget: Arc<WindowBudget>,
    bytes: u64,
}

impl WindowBudget {
    pub fn new(total: u64, metrics: Http2WindowMetrics) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                total,
                leased: 0,
                short: false,
            }),
            metrics,
        })
    }

    /// A reload's new total; leases already given stand, and count against it.
    pub fn set_total(&self, total: u64) {
        self.lock().total = total;
    }

    /// The windows a new connection gets, out of `wanted`, and its lease.
    pub fn lease(self: &Arc<Self>, wanted: Windows) -> (Windows, Lease) {
        let mut state = self.lock();
        let left = state.total.saturating_sub(state.leased);
        let connection = u64::from(wanted.connection).min(left);
        let (granted, bytes) = if wanted.connection <= FLOOR.connection {
            // No larger than the floor: no lease needed.
            (wanted, 0)
        } else if connection >= u64::from(FLOOR.connection) {
            // Both fit in u32: `connection` is at most the wanted connection window.
            let windows = Windows {
                connection: connection as u32,
                stream: wanted.stream.min(connection as u32),
            };
            (windows, connection)
        } else {
            (at_most_the_floor(wanted), 0)
        };
        state.leased += bytes;
        self.metrics.leased_bytes.set(gauge(state.leased));
        let short = granted != wanted;
        if short {
            self.metrics.reduced.inc();
        }
        if short && !state.short {
            tracing::info!(
                budget = state.total,
                leased = state.leased,
                "limits.http2_window_budget is spent: new HTTP/2 connections get smaller \
                 windows (slower uploads over long round trips) until others close"
            );
        }
        state.short = short;
        drop(state);
        let lease = Lease {
            budget: self.clone(),
            bytes,
        };
        (granted, lease)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        state.leased -= self.bytes;
        self.budget.metrics.leased_bytes.set(gauge(state.leased));
    }
}

fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;
    const WANT: Windows = Windows {
        stream: 48 * MIB,
        connection: 96 * MIB,
    };

    fn budget(total: u64) -> Arc<WindowBudget> {
        WindowBudget::new(total, Http2WindowMetrics::default())
    }

    fn leased(b: &WindowBudget) -> u64 {
        let leased = b.lock().leased;
        assert_eq!(
            b.metrics.leased_bytes.get(),
            leased as i64,
            "the gauge follows"
        );
        leased
    }

    #[test]
    fn connections_get_full_windows_while_the_budget_lasts() {
        let b = budget(2 * u64::from(WANT.connection));
        let (w1, _l1) = b.lease(WANT);
        let (w2, _l2) = b.lease(WANT);
        assert_eq!((w1, w2), (WANT, WANT));
        assert_eq!(leased(&b), 2 * u64::from(WANT.connection));
    }

    #[test]
    fn a_short_budget_gives_what_is_left_then_the_floor() {
        let b = budget(u64::from(WANT.connection) + 40 * u64::from(MIB));
        let (_, _l1) = b.lease(WANT);
        let (w2, _l2) = b.lease(WANT);
        assert_eq!(
            w2,
            Windows {
                stream: 40 * MIB,
                connection: 40 * MIB
            }
        );
        let (w3, l3) = b.lease(WANT);
        assert_eq!(w3, FLOOR);
        assert_eq!(l3.bytes, 0, "the floor is not leased");
        assert_eq!(leased(&b), u64::from(WANT.connection) + 40 * u64::from(MIB));
        assert_eq!(
            b.metrics.reduced.get(),
            2,
            "the second and third were reduced"
        );
    }

    #[test]
    fn a_closed_connection_gives_its_share_back() {
        let b = budget(u64::from(WANT.connection));
        let (_, l1) = b.lease(WANT);
        assert_eq!(b.lease(WANT).0, FLOOR);
        drop(l1);
        assert_eq!(leased(&b), 0);
        assert_eq!(b.lease(WANT).0, WANT);
    }

    #[test]
    fn wanted_windows_under_the_floor_stay_as_they_are() {
        let b = budget(0);
        for small in [
            Windows {
                stream: 65_535,
                connection: 65_535,
            },
            // A stream window over the floor's, within a connection window under its.
            Windows {
                stream: 3 * MIB / 2,
                connection: 3 * MIB / 2,
            },
        ] {
            let (windows, lease) = b.lease(small);
            assert_eq!((windows, lease.bytes), (small, 0));
        }
        assert_eq!(b.metrics.reduced.get(), 0);
    }

    #[test]
    fn a_lower_total_after_a_reload_counts_the_leases_already_given() {
        let b = budget(4 * u64::from(WANT.connection));
        let (_, _l1) = b.lease(WANT);
        b.set_total(u64::from(WANT.connection));
        assert_eq!(b.lease(WANT).0, FLOOR);
    }
}
