//! One keyed GCRA limiter (governor's) over a bounded store, generic over the clock so tests
//! can drive it with governor's fake clock.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use governor::middleware::NoOpMiddleware;
use governor::{Quota, RateLimiter};

use super::store::BoundedStore;
use crate::config::Rate;

pub struct Limiter<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock = QuantaClock> {
    inner: RateLimiter<K, BoundedStore<K>, C, NoOpMiddleware<C::Instant>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static, C: Clock> Limiter<K, C> {
    pub fn with_clock(rate: Rate, max_keys: u64, clock: C) -> Self {
        Self {
            inner: RateLimiter::new(quota(rate), BoundedStore::new(max_keys), clock),
        }
    }

    /// Takes one request from `key`'s budget, or says how long until one is available.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.inner
            .check_key(key)
            .map(drop)
            .map_err(|not_until| not_until.wait_time_from(self.inner.clock().now()))
    }

    /// Forgets clients whose budget is full again (they are indistinguishable from new ones).
    pub fn sweep(&self) {
        self.inner.retain_recent();
        self.inner.shrink_to_fit();
    }

    /// How many clients are remembered.
    pub fn len(&self) -> usize {
        self.inner.len()
    }
}

fn quota(rate: Rate) -> Quota {
    // The config allows at most a million requests a second, so the period is never zero;
    // the fallback only keeps this total.
    Quota::with_period(rate.per_request)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(rate.burst)
}

/// A wait as `Retry-After` wants it: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn rate(per_ms: u64, burst: u32) -> Rate {
        Rate {
            per_request: Duration::from_millis(per_ms),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_and_recovers() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(rate(500, 3), 100, clock.clone());
        for _ in 0..3 {
            assert_eq!(l.check(&"a"), Ok(()));
        }
        let wait = l.check(&"a").unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(l.check(&"b"), Ok(()), "other keys have their own budget");
        clock.advance(Duration::from_millis(499));
        assert_eq!(l.check(&"a"), Err(Duration::from_millis(1)));
        clock.advance(Duration::from_millis(1));
        assert_eq!(l.check(&"a"), Ok(()), "one request per period");
        assert!(l.check(&"a").is_err());
        clock.advance(Duration::from_millis(1500));
        for _ in 0..3 {
            assert_eq!(l.check(&"a"), Ok(()), "the whole burst is back");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(rate(6000, 1), 100, clock);
        l.check(&1).unwrap();
        assert_eq!(retry_after_secs(l.check(&1).unwrap_err()), 6);
    }

    #[test]
    fn quiet_keys_are_swept_and_busy_ones_kept() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(rate(1000, 2), 100, clock.clone());
        l.check(&"quiet").unwrap();
        // governor forgets a key one period after its bucket is full again.
        clock.advance(Duration::from_millis(2500));
        l.check(&"busy").unwrap();
        l.check(&"busy").unwrap();
        l.sweep();
        assert_eq!(
            l.len(),
            1,
            "the quiet key's bucket is full again, so it goes"
        );
        assert!(l.check(&"busy").is_err(), "the busy key kept its state");
        clock.advance(Duration::from_secs(5));
        l.sweep();
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn a_million_keys_stay_within_the_bound() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(rate(1000, 1), 10_000, clock.clone());
        assert_eq!(l.check(&u32::MAX), Ok(()));
        for i in 0..1_000_000u32 {
            let _ = l.check(&i);
        }
        assert_eq!(l.len(), 10_000, "only the bound is remembered");
        assert!(
            l.check(&u32::MAX).is_err(),
            "a client remembered before the flood is still limited"
        );
        assert!(
            l.check(&5).is_err(),
            "so are the first clients of the flood"
        );
        assert_eq!(l.check(&999_999), Ok(()), "the rest are judged as new");
        // Once their buckets are full again, the sweep makes room.
        clock.advance(Duration::from_secs(3));
        l.sweep();
        assert_eq!(l.len(), 0);
        assert_eq!(l.check(&999_999), Ok(()));
        assert!(
            l.check(&999_999).is_err(),
            "and new clients are remembered again"
        );
    }
}
