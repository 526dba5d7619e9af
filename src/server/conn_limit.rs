//! Open connections, per client and in all: a guard is taken before any work is done for a
//! connection (TLS included) and released when the connection ends, whatever the way it
//! ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::gateway::ratelimit::client_group;

/// What a limiter enforces; replaced on reload.
#[derive(Clone, Debug)]
pub struct Caps {
    /// Connections per client (an IPv4 address or an IPv6 /64); 0 means no limit.
    pub per_client: usize,
    /// Connections in all.
    pub total: usize,
    /// Clients without a per-client cap: a load balancer is many clients.
    pub exempt: Vec<ipnet::IpNet>,
}

pub struct ConnLimiter {
    open: Mutex<Open>,
}

struct Open {
    caps: Caps,
    total: usize,
    per_client: HashMap<IpAddr, usize>,
    /// Set while the total cap refuses connections, so that is logged once per episode.
    full: bool,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The client holds its share already.
    PerClient,
    /// The server holds `limits.max_connections`; `first` on the first refusal since
    /// there was room.
    Total { first: bool },
}

/// Holds one connection slot; dropping it frees the slot.
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    /// The client's group, when it is counted per client.
    client: Option<IpAddr>,
}

impl ConnLimiter {
    pub fn new(caps: Caps) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(Open {
                caps,
                total: 0,
                per_client: HashMap::new(),
                full: false,
            }),
        })
    }

    /// New caps for new connections (on reload); open ones keep their slots.
    pub fn set_caps(&self, caps: Caps) {
        self.lock().caps = caps;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `ip`, or why there is none.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let mut open = self.lock();
        if open.total >= open.caps.total {
            let first = !open.full;
            open.full = true;
            return Err(Refused::Total { first });
        }
        let exempt = open.caps.exempt.iter().any(|n| n.contains(&ip));
        let client = (!exempt).then(|| client_group(ip));
        if let Some(client) = client {
            let max = open.caps.per_client;
            let n = open.per_client.entry(client).or_insert(0);
            if max != 0 && *n >= max {
                return Err(Refused::PerClient);
            }
            *n += 1;
        }
        open.total += 1;
        Ok(ConnGuard {
            limiter: self.clone(),
            client,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut open = self.limiter.lock();
        open.total = open.total.saturating_sub(1);
        if open.total < open.caps.total {
            open.full = false;
        }
        let Some(client) = self.client else {
            return;
        };
        if let Some(n) = open.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                // Entries exist only for clients with open connections, so the map stays bounded.
                open.per_client.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_client: usize, total: usize, exempt: &[&str]) -> Arc<ConnLimiter> {
        ConnLimiter::new(Caps {
            per_client,
            total,
            exempt: exempt.iter().map(|n| n.parse().unwrap()).collect(),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_per_ip_and_freed_on_drop() {
        let l = limiter(2, 100, &[]);
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let g1 = l.try_acquire(a).unwrap();
        let _g2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).err(), Some(Refused::PerClient));
        assert!(l.try_acquire(b).is_ok());
        drop(g1);
        assert!(l.try_acquire(a).is_ok());
    }

    #[test]
    fn the_map_forgets_idle_ips() {
        let l = limiter(1, 100, &[]);
        for i in 0..1000u32 {
            drop(l.try_acquire(IpAddr::from(i.to_be_bytes())).unwrap());
        }
        assert!(l.lock().per_client.is_empty());
        assert_eq!(l.lock().total, 0);
    }

    #[test]
    fn zero_means_unlimited_per_client() {
        let l = limiter(0, 100_000, &[]);
        let guards: Vec<_> = (0..10_000)
            .map(|_| l.try_acquire(ip("::1")).unwrap())
            .collect();
        assert_eq!(guards.len(), 10_000);
    }

    #[test]
    fn the_total_cap_counts_every_client_and_says_when_it_is_first_hit() {
        let l = limiter(0, 2, &["10.9.0.0/16"]);
        let g1 = l.try_acquire(ip("10.0.0.1")).unwrap();
        let _g2 = l.try_acquire(ip("10.9.0.1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("10.0.0.3")).err(),
            Some(Refused::Total { first: true })
        );
        assert_eq!(
            l.try_acquire(ip("10.9.0.1")).err(),
            Some(Refused::Total { first: false }),
            "trusted proxies count towards the total"
        );
        drop(g1);
        let _g3 = l.try_acquire(ip("10.0.0.3")).unwrap();
        assert_eq!(
            l.try_acquire(ip("10.0.0.3")).err(),
            Some(Refused::Total { first: true })
        );
    }

    #[test]
    fn trusted_proxies_have_no_per_client_cap() {
        let l = limiter(1, 100, &["10.9.0.0/16"]);
        let proxy: Vec<_> = (0..10)
            .map(|_| l.try_acquire(ip("10.9.1.1")).unwrap())
            .collect();
        assert_eq!(proxy.len(), 10);
        let _c = l.try_acquire(ip("10.0.0.1")).unwrap();
        assert!(l.try_acquire(ip("10.0.0.1")).is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let l = limiter(2, 100, &[]);
        let _a = l.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        let _b = l.try_acquire(ip("2001:db8:1:2::ffff")).unwrap();
        assert_eq!(
            l.try_acquire(ip("2001:db8:1:2:abcd::1")).err(),
            Some(Refused::PerClient),
            "same /64"
        );
        assert!(l.try_acquire(ip("2001:db8:1:3::1")).is_ok(), "next /64");
    }
}
