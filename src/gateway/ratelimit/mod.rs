//! Request-rate limits: named limits (a rate, a burst, what to count by) attached to servers
//! and routes, and the failed-login limit. GCRA from governor, per-client state in a bounded
//! store, and a sweeper that forgets clients gone quiet.

mod failed_logins;
mod limiter;
mod store;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use http::header::RETRY_AFTER;

pub use self::failed_logins::FailedLogins;
use self::limiter::{retry_after_secs, Limiter};
use super::metrics::Metrics;
use crate::config::{Config, LimitKey, RateLimitConfig, RequestClass};
use crate::registry::error::{ApiError, Code};

/// How often clients whose budgets are full again are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What a request is counted by.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    Ip(IpAddr),
    User(String),
    Vhost(usize),
}

/// What the limits need to know of a request.
pub struct Facts<'a> {
    pub client: IpAddr,
    pub user: Option<&'a str>,
    /// The server block's index.
    pub server: usize,
    /// `None` for requests outside the registry API, which only `requests = "all"` counts.
    pub class: Option<RequestClass>,
}

/// One `[rate_limit.NAME]`: a limiter for everyone, and one per override.
struct Named<C: Clock = QuantaClock> {
    config: RateLimitConfig,
    normal: Limiter<Key, C>,
    overrides: Vec<Limiter<Key, C>>,
}

impl<C: Clock + Clone> Named<C> {
    fn new(config: &RateLimitConfig, max_keys: u64, clock: C) -> Self {
        Self {
            normal: Limiter::with_clock(config.rate, max_keys, clock.clone()),
            overrides: config
                .overrides
                .iter()
                .map(|(_, rate)| Limiter::with_clock(*rate, max_keys, clock.clone()))
                .collect(),
            config: config.clone(),
        }
    }

    /// Takes the request from its budget, or says how long to wait.
    fn check(&self, f: &Facts<'_>) -> Result<(), Duration> {
        let counted = match (self.config.requests, f.class) {
            (RequestClass::All, _) => true,
            (wanted, Some(class)) => wanted == class,
            (_, None) => false,
        };
        if !counted || self.config.exempt.contains(f.client, f.user) {
            return Ok(());
        }
        let key = match (self.config.key, f.user) {
            (LimitKey::User, Some(user)) => Key::User(user.to_owned()),
            (LimitKey::Ip | LimitKey::User, _) => Key::Ip(client_group(f.client)),
            (LimitKey::Vhost, _) => Key::Vhost(f.server),
        };
        let limiter = self
            .config
            .overrides
            .iter()
            .position(|(who, _)| who.contains(f.client, f.user))
            .map_or(&self.normal, |i| &self.overrides[i]);
        limiter.check(&key)
    }

    /// Forgets quiet clients; returns how many are remembered.
    fn sweep(&self) -> usize {
        self.normal.sweep();
        self.overrides.iter().for_each(Limiter::sweep);
        self.normal.len() + self.overrides.iter().map(Limiter::len).sum::<usize>()
    }
}

/// The address a client is counted by. One IPv6 host usually owns a whole /64, so counting
/// single IPv6 addresses would let it use 2^64 budgets.
pub(crate) fn client_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

/// Every configured limit, plus the failed-login limit, for one gateway (one config).
pub struct RateLimits {
    limits: Arc<Vec<Named>>,
    failed_logins: Arc<FailedLogins>,
    metrics: Arc<Metrics>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for RateLimits {
    fn drop(&mut self) {
        // A reload builds new limits; the old sweeper must stop with the old state.
        if let Some(s) = &self.sweeper {
            s.abort();
        }
    }
}

impl RateLimits {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let max_keys = config.limits.rate_limit_keys;
        let limits: Arc<Vec<Named>> = Arc::new(
            config
                .rate_limits
                .iter()
                .map(|c| Named::new(c, max_keys, QuantaClock::default()))
                .collect(),
        );
        let failed_logins = Arc::new(FailedLogins::new(&config.failed_logins, max_keys));
        // Outside a runtime (never in the server) the store's size bound still holds.
        let sweeper = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (limits, failed) = (limits.clone(), failed_logins.clone());
            let metrics = metrics.clone();
            rt.spawn(async move {
                let mut tick = tokio::time::interval(SWEEP_EVERY);
                loop {
                    tick.tick().await;
                    for l in limits.iter() {
                        metrics.rate_limit_clients(&l.config.name, l.sweep());
                    }
                    metrics.rate_limit_clients("failed_logins", failed.sweep());
                }
            })
        });
        Self {
            limits,
            failed_logins,
            metrics,
            sweeper,
        }
    }

    pub fn failed_logins(&self) -> &Arc<FailedLogins> {
        &self.failed_logins
    }

    /// The positions of the named limits, for [`RateLimits::check`].
    pub fn positions(&self, names: &[String]) -> Vec<usize> {
        names
            .iter()
            .filter_map(|n| self.limits.iter().position(|l| &l.config.name == n))
            .collect()
    }

    /// Counts the request against the limits at `which`; the first one over its budget
    /// refuses it with 429.
    pub fn check(&self, which: &[usize], facts: &Facts<'_>) -> Result<(), ApiError> {
        for &i in which {
            let limit = &self.limits[i];
            if let Err(wait) = limit.check(facts) {
                self.metrics.rate_limited(&limit.config.name);
                return Err(too_many(
                    &format!("too many requests (limit {:?})", limit.config.name),
                    wait,
                ));
            }
        }
        Ok(())
    }
}

/// 429 with `Retry-After` in whole seconds.
pub fn too_many(what: &str, wait: Duration) -> ApiError {
    let secs = retry_after_secs(wait);
    ApiError::new(Code::TooManyRequests, format!("{what}; retry in {secs} s"))
        .with_header(RETRY_AFTER, secs.to_string())
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::clock::FakeRelativeClock;

    use super::*;
    use crate::config::{Clients, Rate};

    fn rate(per_ms: u64, burst: u32) -> Rate {
        Rate {
            per_request: Duration::from_millis(per_ms),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    fn named(key: LimitKey, requests: RequestClass) -> RateLimitConfig {
        RateLimitConfig {
            name: "t".into(),
            key,
            requests,
            rate: rate(1000, 2),
            exempt: Clients {
                ips: vec!["10.9.0.0/16".parse().unwrap()],
                users: vec!["robot".into()],
            },
            overrides: vec![(
                Clients {
                    ips: vec![],
                    users: vec!["ci".into()],
                },
                rate(100, 5),
            )],
        }
    }

    fn facts<'a>(ip: &str, user: Option<&'a str>, class: Option<RequestClass>) -> Facts<'a> {
        Facts {
            client: ip.parse().unwrap(),
            user,
            server: 0,
            class,
        }
    }

    fn passes(l: &Named<FakeRelativeClock>, f: &Facts<'_>) -> usize {
        (0..100).take_while(|_| l.check(f).is_ok()).count()
    }

    const M: Option<RequestClass> = Some(RequestClass::Manifests);
    const B: Option<RequestClass> = Some(RequestClass::Blobs);

    #[test]
    fn only_the_chosen_requests_count() {
        let clock = FakeRelativeClock::default();
        let l = Named::new(&named(LimitKey::Ip, RequestClass::Blobs), 100, clock);
        assert_eq!(
            passes(&l, &facts("1.1.1.1", None, M)),
            100,
            "manifests pass"
        );
        assert_eq!(
            passes(&l, &facts("1.1.1.1", None, None)),
            100,
            "non-API passes"
        );
        assert_eq!(
            passes(&l, &facts("1.1.1.1", None, B)),
            2,
            "blobs are limited"
        );
    }

    #[test]
    fn exemptions_and_overrides() {
        let clock = FakeRelativeClock::default();
        let l = Named::new(&named(LimitKey::Ip, RequestClass::All), 100, clock.clone());
        assert_eq!(passes(&l, &facts("10.9.3.4", None, M)), 100, "exempt range");
        assert_eq!(
            passes(&l, &facts("1.1.1.1", Some("robot"), M)),
            100,
            "exempt user"
        );
        assert_eq!(
            passes(&l, &facts("1.1.1.2", Some("ci"), M)),
            5,
            "override burst"
        );
        clock.advance(Duration::from_millis(100));
        assert_eq!(
            passes(&l, &facts("1.1.1.2", Some("ci"), M)),
            1,
            "override rate"
        );
        assert_eq!(
            passes(&l, &facts("1.1.1.2", None, M)),
            2,
            "others: normal budget"
        );
    }

    #[test]
    fn user_limits_count_users_and_anonymous_callers_by_address() {
        let clock = FakeRelativeClock::default();
        let l = Named::new(&named(LimitKey::User, RequestClass::All), 100, clock);
        assert_eq!(passes(&l, &facts("1.1.1.1", Some("alice"), M)), 2);
        assert_eq!(
            passes(&l, &facts("1.1.1.9", Some("alice"), M)),
            0,
            "same user"
        );
        assert_eq!(
            passes(&l, &facts("1.1.1.1", Some("bob"), M)),
            2,
            "other user"
        );
        assert_eq!(
            passes(&l, &facts("1.1.1.1", None, M)),
            2,
            "anonymous by address"
        );
    }

    #[test]
    fn vhost_limits_share_one_budget() {
        let clock = FakeRelativeClock::default();
        let l = Named::new(&named(LimitKey::Vhost, RequestClass::All), 100, clock);
        assert_eq!(passes(&l, &facts("1.1.1.1", None, M)), 2);
        assert_eq!(passes(&l, &facts("2.2.2.2", None, M)), 0);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let clock = FakeRelativeClock::default();
        let l = Named::new(&named(LimitKey::Ip, RequestClass::All), 100, clock);
        assert_eq!(passes(&l, &facts("2001:db8::1", None, M)), 2);
        assert_eq!(
            passes(&l, &facts("2001:db8::ffff:2", None, M)),
            0,
            "same /64"
        );
        assert_eq!(
            passes(&l, &facts("2001:db8:0:1::1", None, M)),
            2,
            "next /64"
        );
        assert_eq!(passes(&l, &facts("::ffff:1.2.3.4", None, M)), 2);
        assert_eq!(passes(&l, &facts("1.2.3.4", None, M)), 0, "v4-mapped is v4");
    }

    #[test]
    fn refusals_are_429_with_whole_second_retry_after() {
        let e = too_many("too many requests", Duration::from_millis(1200));
        assert_eq!(e.code, Code::TooManyRequests);
        assert_eq!(e.headers[0].1, "2");
    }
}
