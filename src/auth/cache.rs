//! The verified-login cache.
//!
//! `docker push` sends the same Basic credentials with every request, often dozens at once,
//! and checking a bcrypt hash (or binding to LDAP) costs milliseconds of CPU or a round
//! trip each time. This cache remembers a successful verification for a while, so one
//! `docker push` costs one bcrypt, and concurrent requests with the same credentials wait for
//! that one verification instead of starting their own.
//!
//! What is remembered is keyed by an HMAC, under a random per-process key, of the user, the
//! password, the provider and the provider's stored entry. So:
//! - no password is kept in memory after the request, and a memory dump of the cache does
//!   not allow an offline guess without the process key;
//! - a changed password hash or a deleted user can never match an old entry (the provider's
//!   `lookup` runs on every request and its answer is part of the key);
//! - only successes are remembered: a wrong password is verified (slowly) every time.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use moka::future::Cache;
use rand::RngCore;
use sha2::Sha256;
use tokio::time::Instant;

use super::{AuthError, Credentials, Identity, Lookup, Provider};

/// How long a verified login is remembered unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// How many distinct logins are remembered at most unless configured otherwise. An entry is
/// a few hundred bytes, so this bounds the cache to tens of MiB even under a flood of
/// distinct (valid) logins.
pub const DEFAULT_CAPACITY: u64 = 100_000;

/// Longer TTLs are cut to this: moka refuses absurd ones, and remembering a login for more
/// than a day is not a setting anyone means.
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

type HmacSha256 = Hmac<Sha256>;

/// A remembered login. The deadline is kept beside moka's own TTL because moka's clock
/// cannot be paused in tests, while `tokio::time::Instant` can; moka's TTL still reclaims
/// the memory.
#[derive(Clone)]
struct Entry {
    identity: Identity,
    fresh_until: Instant,
}

/// Why the shared verification did not produce an entry. Neither outcome is cached.
enum Miss {
    /// The provider said the password is wrong.
    Rejected,
    Failed(AuthError),
}

pub struct LoginCache {
    /// A MAC keyed once with this process's random key; cloned per login, so the key
    /// schedule is not recomputed each time.
    mac: HmacSha256,
    entries: Cache<[u8; 32], Entry>,
    ttl: Duration,
    /// Verifications actually run (cache misses that reached a provider's `verify`).
    verifications: AtomicU64,
}

impl Default for LoginCache {
    fn default() -> Self {
        Self::new(DEFAULT_TTL)
    }
}

impl LoginCache {
    pub fn new(ttl: Duration) -> Self {
        Self::with_capacity(ttl, DEFAULT_CAPACITY)
    }

    pub fn with_capacity(ttl: Duration, max_entries: u64) -> Self {
        let ttl = ttl.min(MAX_TTL);
        // 32 random bytes from the OS, zero-padded to SHA-256's 64-byte block: HMAC pads
        // short keys with zeros itself (RFC 2104), so this is exactly HMAC under the 32-byte
        // key, built without the fallible variable-length constructor.
        let mut key = Key::<HmacSha256>::default();
        rand::rngs::OsRng.fill_bytes(&mut key[..32]);
        let mac = <HmacSha256 as KeyInit>::new(&key);
        let entries = Cache::builder()
            .max_capacity(max_entries)
            .time_to_live(ttl)
            .build();
        Self {
            mac,
            entries,
            ttl,
            verifications: AtomicU64::new(0),
        }
    }

    /// Checks `creds` against `providers`, in order.
    ///
    /// The first provider whose `lookup` knows the user decides; its `verify` runs only on a
    /// cache miss, and concurrent misses with the same credentials share one verification.
    /// Returns `Ok(None)` for a wrong password or an unknown user.
    ///
    /// When no provider knows the user, `burn` is awaited before answering: it should cost
    /// what a real verification costs (e.g. a bcrypt of a dummy hash), so that response
    /// times do not tell which user names exist.
    ///
    /// A provider whose `lookup` fails is skipped; if no later provider knows the user, the
    /// first such error is returned, so the client is told "try again later" (503) rather
    /// than "wrong password" while, say, the LDAP server is down.
    pub async fn login<B, F>(
        &self,
        providers: &[Arc<dyn Provider>],
        creds: &Credentials,
        burn: B,
    ) -> Result<Option<Identity>, AuthError>
    where
        B: FnOnce() -> F,
        F: Future<Output = ()>,
    {
        let mut first_error = None;
        for provider in providers {
            match provider.lookup(&creds.user).await {
                Ok(Lookup::Known { stored }) => {
                    return self.verify_cached(provider.as_ref(), creds, &stored).await
                }
                Ok(Lookup::UnknownUser) => {}
                Err(e) => {
                    // Not a warning: the gateway logs the error if it decides the answer.
                    let provider = provider.name();
                    tracing::debug!(provider, error = %e, "lookup failed; trying the next");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                burn().await;
                Ok(None)
            }
        }
    }

    /// Forgets every remembered login (e.g. after a reload). Not needed for correctness,
    /// since keys include the stored entries, but it frees the memory at once.
    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }

    /// How many verifications have actually been run since start.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    async fn verify_cached(
        &self,
        provider: &dyn Provider,
        creds: &Credentials,
        stored: &str,
    ) -> Result<Option<Identity>, AuthError> {
        let key = self.key(creds, provider.name(), stored);
        if let Some(entry) = self.entries.get(&key).await {
            if Instant::now() < entry.fresh_until {
                return Ok(Some(entry.identity));
            }
            // Expired by our clock but not yet by moka's: drop it so the call below verifies.
            // Whatever is found below was inserted after this, so it is fresh.
            self.entries.invalidate(&key).await;
        }
        let verify = async {
            self.verifications.fetch_add(1, Ordering::Relaxed);
            match provider.verify(creds, stored).await {
                Ok(Some(identity)) => Ok(Entry {
                    identity,
                    fresh_until: Instant::now()
                        .checked_add(self.ttl)
                        .unwrap_or_else(Instant::now),
                }),
                Ok(None) => Err(Miss::Rejected),
                Err(e) => Err(Miss::Failed(e)),
            }
        };
        // `try_get_with` runs one `verify` per key at a time and hands its result to every
        // waiter; errors (our `Miss`) are shared but not stored.
        match self.entries.try_get_with(key, verify).await {
            Ok(entry) => Ok(Some(entry.identity)),
            Err(miss) => match miss.as_ref() {
                Miss::Rejected => Ok(None),
                Miss::Failed(e) => Err(copy_error(e)),
            },
        }
    }

    /// HMAC of the length-prefixed fields, so that no two different field lists (e.g.
    /// user "ab" + password "c" and user "a" + password "bc") give the same input.
    fn key(&self, creds: &Credentials, provider: &str, stored: &str) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for field in [
            creds.user.as_str(),
            creds.password.as_str(),
            provider,
            stored,
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }
}

/// Every waiter of a shared verification gets the same error behind an `Arc`; each caller
/// needs its own. No `_` arm: a new variant must decide how it is copied.
fn copy_error(e: &AuthError) -> AuthError {
    match e {
        AuthError::Unavailable { provider, reason } => AuthError::Unavailable {
            provider: provider.clone(),
            reason: reason.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use futures_util::future::join_all;

    use super::*;

    /// A provider whose "hash" is `plain$PASSWORD`, counting verifications, with an optional
    /// verification delay (in tokio time, which these tests pause).
    struct Fake {
        name: &'static str,
        users: Mutex<HashMap<String, String>>,
        down: AtomicBool,
        verify_fails: AtomicBool,
        verifies: AtomicU64,
        delay: Duration,
    }

    impl Fake {
        fn new(name: &'static str, users: &[(&str, &str)]) -> Arc<Self> {
            let fake = Self {
                name,
                users: Mutex::default(),
                down: AtomicBool::new(false),
                verify_fails: AtomicBool::new(false),
                verifies: AtomicU64::new(0),
                delay: Duration::from_millis(50),
            };
            for (user, password) in users {
                fake.set(user, Some(password));
            }
            Arc::new(fake)
        }

        /// Sets (or with `None` deletes) a user, as a reload of the user file would.
        fn set(&self, user: &str, password: Option<&str>) {
            let mut users = self.users.lock().unwrap();
            match password {
                Some(p) => users.insert(user.to_owned(), format!("plain${p}")),
                None => users.remove(user),
            };
        }

        fn verifies(&self) -> u64 {
            self.verifies.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Provider for Fake {
        fn name(&self) -> &str {
            self.name
        }

        async fn lookup(&self, user: &str) -> Result<Lookup, AuthError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(AuthError::Unavailable {
                    provider: self.name.into(),
                    reason: "down".into(),
                });
            }
            Ok(match self.users.lock().unwrap().get(user) {
                Some(stored) => Lookup::Known {
                    stored: stored.clone(),
                },
                None => Lookup::UnknownUser,
            })
        }

        async fn verify(
            &self,
            creds: &Credentials,
            stored: &str,
        ) -> Result<Option<Identity>, AuthError> {
            self.verifies.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.verify_fails.load(Ordering::SeqCst) {
                return Err(AuthError::Unavailable {
                    provider: self.name.into(),
                    reason: "bind failed".into(),
                });
            }
            let ok = stored == format!("plain${}", creds.password);
            Ok(ok.then(|| Identity {
                user: creds.user.clone(),
                groups: vec![self.name.to_owned()],
            }))
        }
    }

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials {
            user: user.into(),
            password: password.into(),
        }
    }

    fn providers(list: &[&Arc<Fake>]) -> Vec<Arc<dyn Provider>> {
        list.iter()
            .map(|p| Arc::clone(p) as Arc<dyn Provider>)
            .collect()
    }

    /// A `burn` that counts how often it was awaited.
    fn burner(count: &AtomicU64) -> impl FnOnce() -> std::future::Ready<()> + '_ {
        move || {
            count.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        }
    }

    async fn login(
        cache: &LoginCache,
        ps: &[Arc<dyn Provider>],
        user: &str,
        pw: &str,
    ) -> Result<Option<Identity>, AuthError> {
        cache.login(ps, &creds(user, pw), || async {}).await
    }

    #[tokio::test(start_paused = true)]
    async fn sequential_logins_verify_once() {
        let fake = Fake::new("file", &[("alice", "s3cret")]);
        let ps = providers(&[&fake]);
        let cache = LoginCache::default();
        for _ in 0..10 {
            let id = login(&cache, &ps, "alice", "s3cret")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(id.user, "alice");
        }
        assert_eq!(fake.verifies(), 1);
        assert_eq!(cache.verifications(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_logins_share_one_verification() {
        let fake = Fake::new("file", &[("alice", "s3cret")]);
        let ps = providers(&[&fake]);
        let cache = LoginCache::default();
        let results = join_all((0..20).map(|_| login(&cache, &ps, "alice", "s3cret"))).await;
        for r in results {
            assert_eq!(r.unwrap().unwrap().user, "alice");
        }
        assert_eq!(fake.verifies(), 1);
        assert_eq!(cache.verifications(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_passwords_are_verified_every_time() {
        let fake = Fake::new("file", &[("alice", "s3cret")]);
        let ps = providers(&[&fake]);
        let cache = LoginCache::default();
        for _ in 0..3 {
            assert_eq!(login(&cache, &ps, "alice", "guess").await.unwrap(), None);
        }
        assert_eq!(fake.verifies(), 3);
        // A cached success does not let a wrong password through.
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        assert_eq!(login(&cache, &ps, "alice", "guess").await.unwrap(), None);
        assert_eq!(fake.verifies(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn verification_errors_are_not_cached() {
        let fake = Fake::new("ldap", &[("alice", "s3cret")]);
        let ps = providers(&[&fake]);
        let cache = LoginCache::default();
        fake.verify_fails.store(true, Ordering::SeqCst);
        let err = login(&cache, &ps, "alice", "s3cret").await.unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { .. }));
        fake.verify_fails.store(false, Ordering::SeqCst);
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        assert_eq!(fake.verifies(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_hash_misses_the_cache() {
        let fake = Fake::new("file", &[("alice", "old")]);
        let ps = providers(&[&fake]);
        let cache = LoginCache::default();
        assert!(login(&cache, &ps, "alice", "old").await.unwrap().is_some());
        fake.set("alice", Some("new"));
        assert_eq!(
            login(&cache, &ps, "alice", "old").await.unwrap(),
            None,
            "old password after reload"
        );
        assert!(login(&cache, &ps, "alice", "new").await.unwrap().is_some());
        assert_eq!(fake.verifies(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_user_is_refused_despite_a_warm_cache() {
        let fake = Fake::new("file", &[("alice", "s3cret")]);
        let ps = providers(&[&fake]);
        let cache = LoginCache::default();
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        fake.set("alice", None);
        let burned = AtomicU64::new(0);
        let r = cache
            .login(&ps, &creds("alice", "s3cret"), burner(&burned))
            .await;
        assert_eq!(r.unwrap(), None);
        assert_eq!(
            burned.load(Ordering::SeqCst),
            1,
            "unknown users cost a dummy verification"
        );
        assert_eq!(fake.verifies(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let fake = Fake::new("file", &[("alice", "s3cret")]);
        let ps = providers(&[&fake]);
        let cache = LoginCache::new(Duration::from_secs(60));
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        assert_eq!(fake.verifies(), 1, "still fresh");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        assert_eq!(fake.verifies(), 2, "expired, so verified again");
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        assert_eq!(fake.verifies(), 2, "and remembered again");
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_all_forgets_logins() {
        let fake = Fake::new("file", &[("alice", "s3cret")]);
        let ps = providers(&[&fake]);
        let cache = LoginCache::default();
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        cache.invalidate_all();
        assert!(login(&cache, &ps, "alice", "s3cret")
            .await
            .unwrap()
            .is_some());
        assert_eq!(fake.verifies(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_provider_is_an_error_unless_another_knows_the_user() {
        let ldap = Fake::new("ldap", &[("alice", "s3cret")]);
        ldap.down.store(true, Ordering::SeqCst);
        let file = Fake::new("file", &[("bob", "hunter2")]);
        let ps = providers(&[&ldap, &file]);
        let cache = LoginCache::default();
        let burned = AtomicU64::new(0);

        let id = cache
            .login(&ps, &creds("bob", "hunter2"), burner(&burned))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(id.groups, ["file"], "the later provider decided");

        let err = cache
            .login(&ps, &creds("alice", "s3cret"), burner(&burned))
            .await
            .unwrap_err();
        assert!(matches!(err, AuthError::Unavailable { ref provider, .. } if provider == "ldap"));
        let err = cache
            .login(&ps, &creds("nobody", "x"), burner(&burned))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AuthError::Unavailable { .. }),
            "not \"wrong password\""
        );
        assert_eq!(burned.load(Ordering::SeqCst), 0);

        ldap.down.store(false, Ordering::SeqCst);
        assert!(cache
            .login(&ps, &creds("alice", "s3cret"), burner(&burned))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_provider_that_knows_the_user_decides() {
        let first = Fake::new("first", &[("alice", "one")]);
        let second = Fake::new("second", &[("alice", "two")]);
        let ps = providers(&[&first, &second]);
        let cache = LoginCache::default();
        assert_eq!(login(&cache, &ps, "alice", "two").await.unwrap(), None);
        assert_eq!(
            login(&cache, &ps, "alice", "one")
                .await
                .unwrap()
                .unwrap()
                .groups,
            ["first"]
        );
        assert_eq!(second.verifies(), 0);
    }

    #[test]
    fn keys_separate_fields_and_providers() {
        let cache = LoginCache::default();
        let k = |u: &str, p: &str, prov: &str, s: &str| cache.key(&creds(u, p), prov, s);
        assert_ne!(k("ab", "c", "file", "h"), k("a", "bc", "file", "h"));
        assert_ne!(k("a", "b", "file", "h"), k("a", "b", "ldap", "h"));
        assert_ne!(k("a", "b", "file", "h1"), k("a", "b", "file", "h2"));
        assert_eq!(k("a", "b", "file", "h"), k("a", "b", "file", "h"));
        // Another process (another random key) derives other keys.
        assert_ne!(
            k("a", "b", "file", "h"),
            LoginCache::default().key(&creds("a", "b"), "file", "h")
        );
    }
}
