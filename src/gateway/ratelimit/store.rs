//! Where a keyed limiter keeps its per-client state: governor's concurrent map, with a
//! bound on how many clients it holds.
//!
//! Keys come from the network (addresses, user names), so a flood from many addresses
//! would grow an unbounded map without limit. This store remembers at most `max_keys`
//! clients. When it is full, a client it does not know yet is judged as a new client
//! (its whole burst available) and not remembered, until the sweeper
//! ([`retain_recent`], every few seconds) drops the clients whose state is back to a full
//! bucket. So memory is bounded, clients already remembered keep being limited however
//! many new addresses appear, and a flood of new addresses fails open for them only; the
//! per-vhost key is the tool against floods from many addresses.
//!
//! (An LRU cache would also bound memory, but every read then updates shared recency
//! state, which cost ~4x governor's own map per check under contention here.)
//!
//! [`retain_recent`]: ShrinkableKeyedStateStore::retain_recent

use std::hash::Hash;

use dashmap::DashMap;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};

pub struct BoundedStore<K: Hash + Eq> {
    entries: DashMap<K, InMemoryState>,
    max_keys: usize,
}

impl<K: Hash + Eq + Clone> BoundedStore<K> {
    pub fn new(max_keys: u64) -> Self {
        Self {
            entries: DashMap::new(),
            max_keys: usize::try_from(max_keys).unwrap_or(usize::MAX),
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

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if let Some(state) = self.entries.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if self.entries.len() >= self.max_keys {
            return InMemoryState::default().measure_and_replace(&NotKeyed::NonKey, f);
        }
        let state = self.entries.entry(key.clone()).or_default();
        state.measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.entries
            .retain(|_, state| arrival_time(state).is_some_and(|t| t > drop_below));
    }

    fn shrink_to_fit(&self) {
        self.entries.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
