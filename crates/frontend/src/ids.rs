//! The IDs machines use to address each other, a deterministic hasher for ID-keyed maps,
//! and the seeded generator the machines draw from.
//!
//! Deterministic hashing matters for replay: two [`Frontend`](crate::Frontend)s fed the
//! same inputs iterate their maps in the same order and so emit the same outputs.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// A client connection, numbered by the shell (never reused within one front-end run).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ConnId(pub u64);

/// A game-server connection, numbered by the shell (a reconnect gets a new id).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct GameId(pub u64);

/// A fast, deterministic hasher for small integer IDs (multiply-rotate, like FxHash).
///
/// Not resistant to chosen keys: use it only for keys the front-end picks itself or that
/// are random (connection ids, game ids, session ids).
#[derive(Debug, Clone, Copy, Default)]
pub struct IdHasher(u64);

const MIX: u64 = 0x517c_c1b7_2722_0a95;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(MIX);
    }
}

/// The `BuildHasher` of [`IdHasher`], for `HashMap<ConnId, _, IdBuildHasher>`.
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// A keyed hasher for IDs that come from outside, such as session ids read from tokens:
/// each value is xored with a secret key and passed through a full 64-bit avalanche
/// (SplitMix64's finalizer), so without the key colliding ids cannot be chosen. Still
/// deterministic for a given key (replay).
#[derive(Debug, Clone, Copy)]
pub struct KeyedIdHasher {
    state: u64,
    key: u64,
}

/// SplitMix64's finalizer: every input bit flips about half the output bits.
fn avalanche(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hasher for KeyedIdHasher {
    fn finish(&self) -> u64 {
        avalanche(self.state ^ self.key.rotate_left(32))
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.state = avalanche(self.state ^ value ^ self.key);
    }
}

/// The `BuildHasher` of [`KeyedIdHasher`] with its key.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyedIdBuildHasher {
    key: u64,
}

impl KeyedIdBuildHasher {
    /// Hashers keyed with `key` (draw it from the front-end's seed).
    pub fn new(key: u64) -> Self {
        Self { key }
    }

    /// The key.
    pub fn key(&self) -> u64 {
        self.key
    }
}

impl BuildHasher for KeyedIdBuildHasher {
    type Hasher = KeyedIdHasher;

    fn build_hasher(&self) -> KeyedIdHasher {
        KeyedIdHasher {
            state: self.key,
            key: self.key,
        }
    }
}

/// A small seeded generator (SplitMix64): session ids, tokens, epochs, ping nonces.
///
/// Deterministic for a given seed, which is what replay needs; the shell seeds it from
/// the operating system's random source.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SeededRng(u64);

impl SeededRng {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn rng_is_deterministic_per_seed_and_differs_across_seeds() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut rng = SeededRng::new(1);
                move |_| rng.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut rng = SeededRng::new(1);
                move |_| rng.next_u64()
            })
            .collect();
        let mut other = SeededRng::new(2);
        assert_eq!(a, b);
        assert_ne!(a[0], other.next_u64());
        assert_eq!(a.iter().collect::<HashSet<_>>().len(), 4);
    }

    #[test]
    fn keyed_hasher_depends_on_its_key() {
        let hash = |key: u64, id: u64| {
            let mut hasher = KeyedIdBuildHasher::new(key).build_hasher();
            hasher.write_u64(id);
            hasher.finish()
        };
        assert_eq!(hash(1, 42), hash(1, 42));
        assert_ne!(hash(1, 42), hash(2, 42));
        // Ids that collide in the top bits under one key do not under another.
        let colliding: Vec<u64> = (0..10_000u64)
            .filter(|id| hash(1, *id) >> 57 == hash(1, 0) >> 57)
            .collect();
        let still: usize = colliding
            .iter()
            .filter(|id| hash(2, **id) >> 57 == hash(2, 0) >> 57)
            .count();
        assert!(
            still * 10 < colliding.len(),
            "{still} of {}",
            colliding.len()
        );
    }

    #[test]
    fn id_hasher_spreads_sequential_ids_in_the_top_bits() {
        let tops: HashSet<u64> = (0..1000u64)
            .map(|id| {
                let mut hasher = IdHasher::default();
                hasher.write_u64(id);
                hasher.finish() >> 57
            })
            .collect();
        assert!(
            tops.len() > 100,
            "only {} distinct top-7-bit values",
            tops.len()
        );
    }
}
