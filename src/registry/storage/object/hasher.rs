//! The sha256 state of an upload session, stored in the bucket with the session.
//!
//! Why a stored state, rather than reading the assembled object back at finish: a session
//! may be continued and finished on another node, and reading a multi-GiB blob back from
//! the store doubles the transfer and the push's latency. sha2 0.11 can serialise its state
//! (digest's `SerializableState`), so every node carries on hashing where the last append
//! stopped, and finish knows the digest without reading anything. (sha512 pushes are rare;
//! they are verified by reading the object back.)

use sha2_resumable::digest::common::hazmat::SerializableState;
use sha2_resumable::{Digest as _, Sha256};

use crate::registry::reference::{Algorithm, Digest};

#[derive(Clone, Default)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn digest(self) -> Digest {
        Digest::from_hash(Algorithm::Sha256, &self.0.finalize())
    }

    /// The state as hex, to store in the session.
    pub fn save(&self) -> String {
        hex::encode(self.0.serialize().as_slice())
    }

    /// A state made by [`Hasher::save`]; `None` when it is not one.
    pub fn load(saved: &str) -> Option<Self> {
        let bytes = hex::decode(saved).ok()?;
        let state = bytes.as_slice().try_into().ok()?;
        Sha256::deserialize(state).ok().map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_continues_where_it_stopped() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        for cut in [0, 1, 63, 64, 65, 100_000, 200_000] {
            let mut h = Hasher::default();
            h.update(&data[..cut]);
            let mut resumed = Hasher::load(&h.save()).unwrap();
            resumed.update(&data[cut..]);
            assert_eq!(resumed.digest(), Digest::of(Algorithm::Sha256, &data));
        }
        assert!(Hasher::load("nothex").is_none());
        assert!(Hasher::load("abcd").is_none());
    }
}
