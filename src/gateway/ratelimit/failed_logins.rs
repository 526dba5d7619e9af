//! The failed-login limit: guessing passwords is throttled, but nobody is locked out by
//! someone else's failures.
//!
//! Three budgets of wrong passwords, each of `[failed_logins] rate` and `burst`:
//!
//! - **per address and user name**: one client guessing one user's password. When it runs
//!   out, that pair is blocked: its logins are refused with 429 *before* the password is
//!   checked, so the guesser learns nothing, not even from a right guess, and spends no
//!   bcrypt.
//! - **per address, counting distinct user names**: one client trying many names (password
//!   spraying). A name counts once however often it fails, so one person's typos do not
//!   block the other users behind the same NAT; a sprayer's address is blocked for every
//!   name.
//! - **per user name, across addresses** (`per_user`): many clients guessing one name.
//!   When it runs out, the name is blocked, but only for addresses it has not recently
//!   logged in from.
//!
//! Why the last exception: a block on a name is a block on its owner. Without it, anyone
//! could keep alice locked out everywhere just by sending wrong passwords for her. So an
//! (address, user) pair that logged in successfully within [`KNOWN_FOR`] is spared the
//! collective blocks (address and user name); from there, guessing her password is still
//! bounded by the pair's own budget. The cost: while her name is under attack, alice on an
//! address she never logged in from waits like the guessers (until one period of the rate
//! after the guessing stops). A right password from an unknown address cannot be told from
//! a lucky guess without checking it, and not checking it is the point of the block. (A
//! login that merely matches the verified-login cache is not exempted for the same reason:
//! that lookup would be a free oracle for blocked guessers.)

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock, Reference};
use moka::sync::Cache;

use super::limiter::Limiter;
use crate::config::FailedLoginsConfig;

/// How long a successful login keeps its (address, user) pair exempt from collective blocks.
pub const KNOWN_FOR: Duration = Duration::from_secs(7 * 24 * 60 * 60);

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Blocked {
    Pair(IpAddr, String),
    Ip(IpAddr),
    User(String),
}

pub struct FailedLogins<C: Clock = QuantaClock> {
    by_pair: Limiter<(IpAddr, String), C>,
    /// Charged once per user name failing from the address within `name_window`.
    by_ip: Limiter<IpAddr, C>,
    by_user: Option<Limiter<String, C>>,
    /// When each (address, name) pair was last charged to its address's budget.
    names_seen: Cache<(IpAddr, String), C::Instant>,
    /// How long a failing name counts once: until a full budget would have refilled.
    name_window: Duration,
    /// When each (address, user) pair last logged in successfully.
    known: Cache<(IpAddr, String), C::Instant>,
    /// Until when logins are refused, per pair, address or user name.
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
        let name_window = config.rate.per_request * config.rate.burst.get();
        Self {
            by_pair: Limiter::with_clock(config.rate, max_keys, clock.clone()),
            by_ip: Limiter::with_clock(config.rate, max_keys, clock.clone()),
            by_user: config
                .per_user
                .then(|| Limiter::with_clock(config.rate, max_keys, clock.clone())),
            names_seen: expiring(max_keys, name_window),
            name_window,
            known: expiring(max_keys, KNOWN_FOR),
            // A block never outlasts one period of the rate (then one more try is allowed).
            blocked: expiring(max_keys, config.rate.per_request),
            clock: clock.clone(),
        }
    }

    /// How long logins from `ip` as `user` stay refused, if they are.
    pub fn refused(&self, ip: IpAddr, user: &str) -> Option<Duration> {
        let user = user.to_lowercase();
        let now = self.clock.now();
        let pair = Blocked::Pair(ip, user.clone());
        // Someone who logged in from here recently is spared blocks others caused.
        let collective = match self.is_known(ip, &user, now) {
            true => vec![],
            false => {
                let by_user = self.by_user.is_some().then(|| Blocked::User(user.clone()));
                std::iter::once(Blocked::Ip(ip)).chain(by_user).collect()
            }
        };
        std::iter::once(pair)
            .chain(collective)
            .filter_map(|k| self.blocked.get(&k))
            .filter(|until| *until > now)
            .map(|until| Duration::from(until.duration_since(now)))
            .max()
    }

    /// Counts a wrong password. Returns how long this client is now refused, if it is.
    pub fn failed(&self, ip: IpAddr, user: &str) -> Option<Duration> {
        let user = user.to_lowercase();
        let now = self.clock.now();
        let pair = (ip, user.clone());
        let pair_wait = self.by_pair.check(&pair).err();
        let new_name = self
            .names_seen
            .get(&pair)
            .is_none_or(|at| Duration::from(now.duration_since(at)) >= self.name_window);
        let ip_wait = match new_name {
            true => {
                self.names_seen.insert(pair.clone(), now);
                self.by_ip.check(&ip).err()
            }
            false => None,
        };
        let user_wait = self.by_user.as_ref().and_then(|l| l.check(&user).err());
        for (key, wait) in [
            (Blocked::Pair(ip, user.clone()), pair_wait),
            (Blocked::Ip(ip), ip_wait),
            (Blocked::User(user.clone()), user_wait),
        ] {
            if let Some(wait) = wait {
                self.blocked.insert(key, now + wait.into());
            }
        }
        self.refused(ip, &user)
    }

    /// Remembers a successful login of `user` from `ip`.
    pub fn succeeded(&self, ip: IpAddr, user: &str) {
        let user = user.to_lowercase();
        let now = self.clock.now();
        // Every request of a push logs in; refresh the entry only now and then.
        let fresh = |at: C::Instant| Duration::from(now.duration_since(at)) < KNOWN_FOR / 2;
        if !self.known.get(&(ip, user.clone())).is_some_and(fresh) {
            self.known.insert((ip, user), now);
        }
    }

    /// Forgets budgets that are full again; returns how many are remembered.
    pub fn sweep(&self) -> usize {
        self.by_pair.sweep();
        self.by_ip.sweep();
        self.by_user.iter().for_each(Limiter::sweep);
        self.by_pair.len() + self.by_ip.len() + self.by_user.as_ref().map_or(0, Limiter::len)
    }

    fn is_known(&self, ip: IpAddr, user: &str, now: C::Instant) -> bool {
        self.known
            .get(&(ip, user.to_owned()))
            .is_some_and(|at| Duration::from(now.duration_since(at)) < KNOWN_FOR)
    }
}

/// A bounded map whose entries expire a little after `ttl`. The instants stored in it are
/// what decide (moka's own clock cannot be faked in tests); the expiry frees the memory.
fn expiring<K, V>(max_keys: u64, ttl: Duration) -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(max_keys)
        .time_to_live(ttl + Duration::from_secs(1))
        .build()
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

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, last))
    }

    const SIX: Option<Duration> = Some(Duration::from_secs(6));

    #[test]
    fn the_failure_past_the_burst_blocks_until_a_period_passes() {
        let (g, clock) = guard(true);
        for _ in 0..3 {
            assert_eq!(g.failed(ip(1), "alice"), None);
            assert_eq!(g.refused(ip(1), "alice"), None);
        }
        assert_eq!(g.failed(ip(1), "alice"), SIX);
        assert_eq!(g.refused(ip(1), "alice"), SIX);
        assert_eq!(g.refused(ip(1), "bob"), None, "bob behind the same address");
        assert_eq!(
            g.refused(ip(2), "ALICE"),
            SIX,
            "the user name is blocked from unknown addresses, whatever its case"
        );
        assert_eq!(g.refused(ip(2), "bob"), None);
        clock.advance(Duration::from_secs(4));
        assert_eq!(g.refused(ip(1), "alice"), Some(Duration::from_secs(2)));
        clock.advance(Duration::from_secs(2));
        assert_eq!(g.refused(ip(1), "alice"), None, "the window passed");
        assert_eq!(g.failed(ip(1), "alice"), None, "one more try is allowed");
        assert!(g.failed(ip(1), "alice").is_some(), "and then blocked again");
    }

    #[test]
    fn where_a_user_logged_in_others_cannot_lock_her_out() {
        let (g, _clock) = guard(true);
        g.succeeded(ip(1), "alice");
        for _ in 0..3 {
            assert_eq!(g.failed(ip(2), "alice"), None);
        }
        assert_eq!(g.failed(ip(2), "alice"), SIX, "the guesser is blocked");
        assert_eq!(g.refused(ip(3), "alice"), SIX, "so is her name elsewhere");
        assert_eq!(g.refused(ip(1), "Alice"), None, "but not where she logs in");
        // Guessing from her own address is still bounded by that pair's budget.
        for _ in 0..3 {
            assert_eq!(g.failed(ip(1), "alice"), None);
        }
        assert_eq!(g.failed(ip(1), "alice"), SIX);
    }

    #[test]
    fn an_address_failing_for_many_names_is_blocked_for_all() {
        let (g, _clock) = guard(true);
        g.succeeded(ip(1), "carol");
        for name in ["alice", "alice", "alice", "bob"] {
            g.failed(ip(1), name);
        }
        assert_eq!(
            g.refused(ip(1), "dave"),
            None,
            "two names, typos counted once"
        );
        assert_eq!(g.failed(ip(1), "eve"), None, "a third name");
        assert_eq!(g.failed(ip(1), "frank"), SIX, "a fourth is past the burst");
        assert_eq!(g.refused(ip(1), "dave"), SIX, "the address is blocked");
        assert_eq!(
            g.refused(ip(1), "carol"),
            None,
            "except for who logged in there"
        );
        assert_eq!(g.refused(ip(2), "dave"), None);
    }

    #[test]
    fn without_per_user_names_are_not_blocked_across_addresses() {
        let (g, _clock) = guard(false);
        for last in 1..=10u8 {
            for _ in 0..4 {
                g.failed(ip(last), "alice");
            }
        }
        assert_eq!(g.refused(ip(11), "alice"), None);
        assert_eq!(g.refused(ip(1), "alice"), SIX);
    }

    #[test]
    fn quiet_keys_are_swept() {
        let (g, clock) = guard(true);
        g.failed(ip(1), "alice");
        clock.advance(Duration::from_secs(60));
        assert_eq!(g.sweep(), 0);
    }
}
