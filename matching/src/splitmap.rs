//! [`SplitMap`]: a `u64`-keyed hash map in [`PARTS`] parts that grow on their own, so no insert
//! pays for rehashing the whole table at once.
//!
//! Why: a table of every order of the day doubles at 2^17, 2^18, 2^19... entries, and the
//! insert that triggers a doubling moves every entry (and faults in fresh pages) while the
//! caller waits. With one `FxHashMap` of 1M order-sized values the worst insert took about
//! 100 ms, which is the whole latency tail of a thread that serves every order. Split in 256
//! parts, a doubling moves a 256th of the entries (worst insert about 0.4 ms) and the parts
//! reach their thresholds at different moments. Amortised cost is the same, lookups pay one
//! multiply and one more indirection. (`griddle`, which spreads one table's resize over later
//! inserts, measured 4 ms worst and slower inserts on the same test.)

use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

/// Number of parts: a power of two.
pub const PARTS: usize = 256;

/// A `u64`-keyed map in [`PARTS`] independently growing parts (see the module doc).
#[derive(Clone, Debug)]
pub struct SplitMap<V> {
    parts: Box<[FxHashMap<u64, V>]>,
    len: usize,
}

impl<V> Default for SplitMap<V> {
    fn default() -> Self {
        SplitMap {
            parts: (0..PARTS).map(|_| FxHashMap::default()).collect(),
            len: 0,
        }
    }
}

impl<V> SplitMap<V> {
    /// The part of `key`: the top bits of a multiplicative hash with another constant than
    /// the Fx hash the part's own table buckets and tags by, so the keys of one part do not
    /// all share a tag.
    #[inline]
    fn part(key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - PARTS.trailing_zeros())) as usize
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn get(&self, key: u64) -> Option<&V> {
        self.parts[Self::part(key)].get(&key)
    }

    #[inline]
    pub fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        self.parts[Self::part(key)].get_mut(&key)
    }

    pub fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: u64, value: V) -> Option<V> {
        let old = self.parts[Self::part(key)].insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: u64) -> Option<V> {
        let old = self.parts[Self::part(key)].remove(&key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Inserts `value` unless `key` is present; returns whether it did.
    pub fn insert_new(&mut self, key: u64, value: impl FnOnce() -> V) -> bool {
        match self.parts[Self::part(key)].entry(key) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(value());
                self.len += 1;
                true
            }
        }
    }

    /// Entries the parts have room for, together.
    pub fn capacity(&self) -> usize {
        self.parts.iter().map(|p| p.capacity()).sum()
    }

    /// Shrinks every part to about its share of `min_capacity` (and never below its length).
    pub fn shrink_to(&mut self, min_capacity: usize) {
        let share = min_capacity.div_ceil(PARTS);
        for p in self.parts.iter_mut() {
            p.shrink_to(share.max(p.len()));
        }
    }

    /// Every entry, part by part (no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.parts
            .iter()
            .flat_map(|p| p.iter().map(|(k, v)| (*k, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random operations against std's map: same answers, same length, every step.
    #[test]
    fn behaves_like_a_hash_map() {
        let mut split = SplitMap::default();
        let mut model: HashMap<u64, u64> = HashMap::new();
        let mut x = 0x1234_5678_9abc_def1u64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Dense ids, ids in a broker's namespace far above them, and a few huge ones.
            let key = match x % 3 {
                0 => x % 5_000,
                1 => ((x % 4) << 40) | ((x >> 8) % 5_000),
                _ => x | 1 << 63,
            };
            match (x >> 32) % 5 {
                0 | 1 => assert_eq!(split.insert(key, step), model.insert(key, step)),
                2 => assert_eq!(split.remove(key), model.remove(&key)),
                3 => {
                    let fresh = !model.contains_key(&key);
                    if fresh {
                        model.insert(key, step);
                    }
                    assert_eq!(split.insert_new(key, || step), fresh);
                }
                _ => {
                    if let (Some(a), Some(b)) = (split.get_mut(key), model.get_mut(&key)) {
                        *a += 1;
                        *b += 1;
                    }
                }
            }
            assert_eq!(split.get(key), model.get(&key));
            assert_eq!(split.contains_key(key), model.contains_key(&key));
            assert_eq!(split.len(), model.len());
        }
        let mut all: Vec<(u64, u64)> = split.iter().map(|(k, v)| (k, *v)).collect();
        all.sort_unstable();
        let mut expected: Vec<(u64, u64)> = model.into_iter().collect();
        expected.sort_unstable();
        assert_eq!(all, expected);
        assert_eq!(split.is_empty(), all.is_empty());
    }

    #[test]
    fn keys_spread_over_the_parts_and_shrinking_gives_memory_back() {
        let mut split = SplitMap::default();
        // A broker's namespaced, consecutive ids: the worst case for a poor part hash.
        for i in 0..(PARTS as u64 * 1_000) {
            split.insert((3 << 40) | i, i);
        }
        let sizes: Vec<usize> = split.parts.iter().map(|p| p.len()).collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        assert!(
            *min > 800 && *max < 1_200,
            "parts unevenly filled: {min}..{max}"
        );
        let full = split.capacity();
        for i in 0..(PARTS as u64 * 990) {
            split.remove((3 << 40) | i);
        }
        split.shrink_to(2 * split.len());
        assert!(
            split.capacity() * 10 < full,
            "{} of {full} kept",
            split.capacity()
        );
        assert_eq!(split.len(), PARTS * 10);
        assert_eq!(
            split.get((3 << 40) | (PARTS as u64 * 1_000 - 1)),
            Some(&(PARTS as u64 * 1_000 - 1))
        );
    }
}
