//! Connections per client IP: a guard is taken before any work is done for a connection
//! (TLS included) and released when the connection ends, whatever the way it ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct ConnLimiter {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one connection slot of an IP; dropping it frees the slot.
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    /// `max` connections per IP; 0 means no limit.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `ip`, or `None` when it already holds `max` connections.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnGuard> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if self.max != 0 && *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnGuard {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Entries exist only for IPs with open connections, so the map stays bounded.
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_ip_and_freed_on_drop() {
        let l = ConnLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = l.try_acquire(a).unwrap();
        let _g2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none());
        assert!(l.try_acquire(b).is_some());
        drop(g1);
        assert!(l.try_acquire(a).is_some());
    }

    #[test]
    fn the_map_forgets_idle_ips() {
        let l = ConnLimiter::new(1);
        for i in 0..1000u32 {
            drop(l.try_acquire(IpAddr::from(i.to_be_bytes())).unwrap());
        }
        assert!(l.open.lock().unwrap().is_empty());
    }

    #[test]
    fn zero_means_unlimited() {
        let l = ConnLimiter::new(0);
        let ip: IpAddr = "::1".parse().unwrap();
        let guards: Vec<_> = (0..10_000).map(|_| l.try_acquire(ip).unwrap()).collect();
        assert_eq!(guards.len(), 10_000);
    }
}
