//! Where a keyed limiter keeps its per-client state: a bounded cache instead of governor's
//! unbounded map.
//!
//! Keys come from the network (addresses, user names), so a flood from many addresses
//! would grow an unbounded map without limit. This store holds at most `max_keys` clients,
//! evicting the least recently seen one when full (LRU, so every new client is admitted
//! and a busy client is never the one evicted). [`retain_recent`] drops clients whose state
//! is back to a fresh bucket, so quiet clients cost nothing; forgetting one loses nothing.
//!
//! [`retain_recent`]: ShrinkableKeyedStateStore::retain_recent

use std::hash::Hash;
use std::sync::Arc;

use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

pub struct BoundedStore<K> {
    entries: Cache<K, Arc<InMemoryState>>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> BoundedStore<K> {
    pub fn new(max_keys: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_keys)
                .eviction_policy(EvictionPolicy::lru())
                .build(),
        }
    }
}

/// The theoretical arrival time a state holds (`None` for a state never used), read
/// through the only public access governor gives: a measurement that declines to update.
fn arrival_time(state: &InMemoryState) -> Option<Nanos> {
    match state.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>) {
        Ok(()) => None,
        Err(prev) => prev,
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let state = self.entries.get_with_by_ref(key, Default::default);
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> ShrinkableKeyedStateStore<K>
    for BoundedStore<K>
{
    fn retain_recent(&self, drop_below: Nanos) {
        for (key, state) in self.entries.iter() {
            if arrival_time(&state).is_none_or(|t| t <= drop_below) {
                self.entries.invalidate(&*key);
            }
        }
        self.entries.run_pending_tasks();
    }

    fn len(&self) -> usize {
        self.entries.run_pending_tasks();
        usize::try_from(self.entries.entry_count()).unwrap_or(usize::MAX)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
