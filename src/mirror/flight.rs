//! Single flight: one upstream fetch per blob or manifest however many clients ask at once.
//! The first to ask leads (fetches and stores); the others follow, waiting for the leader's
//! outcome and then reading what it stored. A leader that goes away without saying how it
//! ended (its task dropped) counts as failed, so followers never wait forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// How a transfer is going.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// Stored: read it locally.
    Done,
    /// Nothing was stored.
    Failed(Failure),
}

/// Why a transfer stored nothing: what the client is told, and (in `message`) the log's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailKind {
    /// The upstream does not have it (404).
    NotFound,
    /// The upstream did not answer in time.
    Timeout,
    /// Unreachable, refused, broken off, or sent something wrong.
    Upstream,
    /// Storing failed (wharf's own storage).
    Storage,
}

impl Failure {
    pub fn new(kind: FailKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// Transfers in progress, by key (`blob <repo> <digest>`, `manifest <repo>:<tag>`).
#[derive(Default)]
pub struct Flights {
    running: Mutex<HashMap<String, watch::Receiver<State>>>,
}

/// What joining a key made of the caller.
pub enum Joined {
    /// Nobody was fetching this: the caller must, and report through the guard.
    Leader(Leader),
    /// Someone is: wait for them.
    Follower(watch::Receiver<State>),
}

impl Flights {
    pub fn join(self: &Arc<Self>, key: &str) -> Joined {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = running.get(key) {
            return Joined::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(State::Running);
        running.insert(key.to_owned(), rx);
        Joined::Leader(Leader {
            key: key.to_owned(),
            flights: self.clone(),
            tx,
            ended: false,
        })
    }

    /// How many transfers are running.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The leader's side: says how the transfer ended, once. Dropped without [`Leader::end`],
/// the transfer counts as failed.
pub struct Leader {
    key: String,
    flights: Arc<Flights>,
    tx: watch::Sender<State>,
    ended: bool,
}

impl Leader {
    /// A receiver for the leader's own outcome (a leader that hands its transfer to a task).
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.tx.subscribe()
    }

    pub fn end(mut self, state: State) {
        self.finish(state);
    }

    fn finish(&mut self, state: State) {
        if self.ended {
            return;
        }
        self.ended = true;
        // Removed first: whoever asks after this finds the result in storage, or leads anew.
        let mut running = self
            .flights
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        running.remove(&self.key);
        drop(running);
        self.tx.send_replace(state);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let why = Failure::new(FailKind::Upstream, "the transfer was abandoned");
        self.finish(State::Failed(why));
    }
}

/// Waits until a transfer has ended.
pub async fn outcome(mut rx: watch::Receiver<State>) -> State {
    let ended = rx
        .wait_for(|s| *s != State::Running)
        .await
        .map(|state| state.clone());
    // An error means the sender is gone, only possible after `finish` sent the final state.
    ended.unwrap_or_else(|_| rx.borrow().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_and_followers_see_its_outcome() {
        let flights = Arc::new(Flights::default());
        let Joined::Leader(leader) = flights.join("k") else {
            panic!("the first is the leader")
        };
        let followers: Vec<_> = (0..3)
            .map(|_| match flights.join("k") {
                Joined::Follower(rx) => tokio::spawn(outcome(rx)),
                Joined::Leader(_) => panic!("only one leader"),
            })
            .collect();
        assert!(matches!(flights.join("other"), Joined::Leader(_)));
        leader.end(State::Done);
        for f in followers {
            assert_eq!(f.await.unwrap(), State::Done);
        }
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join("k"), Joined::Leader(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_fails_its_followers() {
        let flights = Arc::new(Flights::default());
        let leader = flights.join("k");
        let Joined::Follower(rx) = flights.join("k") else {
            panic!("follower")
        };
        drop(leader);
        assert!(matches!(outcome(rx).await, State::Failed(_)));
        assert_eq!(flights.len(), 0);
    }
}
