//! The `/healthz` probe, shared. `/healthz` is anonymous and not rate limited (load
//! balancers call it), and a probe writes and fsyncs a file (on S3 or Azure: a PUT, a GET
//! and a DELETE), so each call must not make one. A result is reused for [`FRESH_FOR`], and
//! callers arriving while a probe runs wait for it and share its result.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a probe's result answers `/healthz`: short next to any monitor's interval,
/// long enough that a flood of calls costs one probe every few seconds.
pub const FRESH_FOR: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct HealthCache {
    /// The last probe: when it finished and whether storage was writable. The lock is held
    /// across a probe, which is what makes concurrent callers share it.
    last: Mutex<Option<(Instant, bool)>>,
}

impl HealthCache {
    /// Whether storage is writable, from a probe at most [`FRESH_FOR`] old.
    pub async fn check<F, Fut>(&self, probe: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, ok)) = *last {
            if at.elapsed() < FRESH_FOR {
                return ok;
            }
        }
        let ok = probe().await;
        *last = Some((Instant::now(), ok));
        ok
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_probe_until_it_is_stale() {
        let cache = Arc::new(HealthCache::default());
        let probes = Arc::new(AtomicUsize::new(0));
        let call = |healthy: bool| {
            let (cache, probes) = (cache.clone(), probes.clone());
            async move {
                cache
                    .check(|| async move {
                        probes.fetch_add(1, Ordering::SeqCst);
                        // A slow disk: the other callers arrive while this runs.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        healthy
                    })
                    .await
            }
        };
        let callers: Vec<_> = (0..50).map(|_| tokio::spawn(call(true))).collect();
        for c in callers {
            assert!(c.await.unwrap());
        }
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        tokio::time::advance(FRESH_FOR - Duration::from_millis(300)).await;
        assert!(call(false).await, "still the fresh result");
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(300)).await;
        assert!(!call(false).await, "a stale result is probed again");
        assert_eq!(probes.load(Ordering::SeqCst), 2);
        assert!(!call(true).await, "failures are cached too");
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }
}
