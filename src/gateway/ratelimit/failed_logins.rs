//! The failed-login limit: wrong passwords per client address and per user name.
//!
//! Each wrong password takes from the address's and the user name's budgets. A wrong
//! password that finds a budget empty starts a block: until the budget has room again,
//! every login from that address (or for that user) is refused with 429 *before* the
//! password is checked, so a guesser learns nothing, not even from a right guess, and
//! spends no bcrypt.

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock, Reference};
use moka::sync::Cache;

use super::limiter::Limiter;
use crate::config::FailedLoginsConfig;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Blocked {
    Ip(IpAddr),
    User(String),
}

pub struct FailedLogins<C: Clock = QuantaClock> {
    by_ip: Limiter<IpAddr, C>,
    by_user: Option<Limiter<String, C>>,
    /// Until when logins are refused, per address or user name.
    blocked: Cache<Blocked, C::Instant>,
    clock: C,
}

impl FailedLogins {
    pub fn new(config: &FailedLoginsConfig, max_keys: u64) -> Self {
        Self::with_clock(config, max_keys, QuantaClock::default())
    }
}

impl<C: Clock + Clone> FailedLogins<C>
where
    C::Instant: 'static,
{
    pub fn with_clock(config: &FailedLoginsConfig, max_keys: u64, clock: C) -> Self {
        Self {
            by_ip: Limiter::with_clock(config.rate, max_keys, clock.clone()),
            by_user: config
                .per_user
                .then(|| Limiter::with_clock(config.rate, max_keys, clock.clone())),
            // A block never outlasts one period of the rate (then one more try is allowed),
            // so entries can expire then; the deadline stored is what decides.
            blocked: Cache::builder()
                .max_capacity(max_keys)
                .time_to_live(config.rate.per_request + Duration::from_secs(1))
                .build(),
            clock: clock.clone(),
        }
    }

    /// How long logins from `ip` or as `user` stay refused, if they are.
    pub fn refused(&self, ip: IpAddr, user: &str) -> Option<Duration> {
        let now = self.clock.now();
        self.keys(ip, user)
            .filter_map(|k| self.blocked.get(&k))
            .filter(|until| *until > now)
            .map(|until| Duration::from(until.duration_since(now)))
            .max()
    }

    /// Counts a wrong password. Returns the block it starts, if the budget was empty.
    pub fn failed(&self, ip: IpAddr, user: &str) -> Option<Duration> {
        let ip_wait = self.by_ip.check(&ip).err();
        let user_wait = self
            .by_user
            .as_ref()
            .and_then(|l| l.check(&user.to_lowercase()).err());
        let now = self.clock.now();
        for (key, wait) in [
            (Blocked::Ip(ip), ip_wait),
            (Blocked::User(user.to_lowercase()), user_wait),
        ] {
            if let Some(wait) = wait {
                self.blocked.insert(key, now + wait.into());
            }
        }
        ip_wait.max(user_wait)
    }

    /// Forgets addresses and user names whose budgets are full again; returns how many
    /// are remembered.
    pub fn sweep(&self) -> usize {
        self.by_ip.sweep();
        self.by_user.iter().for_each(Limiter::sweep);
        self.by_ip.len() + self.by_user.as_ref().map_or(0, Limiter::len)
    }

    fn keys(&self, ip: IpAddr, user: &str) -> impl Iterator<Item = Blocked> {
        let user = self
            .by_user
            .is_some()
            .then(|| Blocked::User(user.to_lowercase()));
        std::iter::once(Blocked::Ip(ip)).chain(user)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::config::Rate;

    fn guard(per_user: bool) -> (FailedLogins<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let config = FailedLoginsConfig {
            rate: Rate {
                per_request: Duration::from_secs(6),
                burst: NonZeroU32::new(3).unwrap(),
            },
            per_user,
        };
        (
            FailedLogins::with_clock(&config, 1000, clock.clone()),
            clock,
        )
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn the_failure_past_the_burst_blocks_until_a_period_passes() {
        let (g, clock) = guard(true);
        for _ in 0..3 {
            assert_eq!(g.failed(A, "alice"), None);
            assert_eq!(g.refused(A, "alice"), None);
        }
        assert_eq!(g.failed(A, "alice"), Some(Duration::from_secs(6)));
        assert_eq!(g.refused(A, "alice"), Some(Duration::from_secs(6)));
        assert_eq!(
            g.refused(A, "bob"),
            Some(Duration::from_secs(6)),
            "the address is blocked for every user"
        );
        assert_eq!(
            g.refused(B, "ALICE"),
            Some(Duration::from_secs(6)),
            "the user name is blocked from every address, whatever its case"
        );
        assert_eq!(g.refused(B, "bob"), None);
        clock.advance(Duration::from_secs(4));
        assert_eq!(g.refused(A, "alice"), Some(Duration::from_secs(2)));
        clock.advance(Duration::from_secs(2));
        assert_eq!(g.refused(A, "alice"), None, "the window passed");
        assert_eq!(g.failed(A, "alice"), None, "one more try is allowed");
        assert!(g.failed(A, "alice").is_some(), "and then blocked again");
    }

    #[test]
    fn without_per_user_only_the_address_counts() {
        let (g, _clock) = guard(false);
        for ip in 1..=10u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, ip));
            for _ in 0..3 {
                assert_eq!(g.failed(ip, "alice"), None);
            }
        }
        assert_eq!(g.refused(B, "alice"), None);
    }

    #[test]
    fn quiet_keys_are_swept() {
        let (g, clock) = guard(true);
        g.failed(A, "alice");
        clock.advance(Duration::from_secs(60));
        g.sweep();
        assert_eq!(g.by_ip.len(), 0);
        assert_eq!(g.by_user.as_ref().map(|l| l.len()), Some(0));
    }
}
