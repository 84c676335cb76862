//! [`RecordTable`]: the projection's order records by id, as a dense slab of records behind an
//! [`IdMap`] of slot numbers.
//!
//! Why not the records in the id table itself: a broker's ids are increasing but interleaved
//! with the other brokers' (user-sim draws the broker of each order at random), so each
//! namespace's direct pages are a fraction full; 4-byte slot numbers keep those pages small,
//! while the 72-byte records stay dense. A NEW's record goes in the slot the last archived order
//! freed, or at the end of the newest chunk: both cache-warm. Chunks never move, so no insert
//! copies the table (the latency tail a doubling `Vec` would bring back).

use matching::idmap::{IdMap, IdTable};

/// Records per chunk.
const CHUNK: usize = 4096;
/// A table with at most this many slots is never compacted.
const KEEP_SLOTS: usize = 1 << 16;

/// Order id -> record, see the module doc.
pub(crate) struct RecordTable<V: Copy> {
    index: IdMap<u32>,
    chunks: Vec<Box<[V]>>,
    /// Slots given back, reused last-freed first.
    free: Vec<u32>,
    /// Slots ever handed out (the next new one is `used`).
    used: u32,
    /// What a fresh chunk is filled with (never read as a record).
    filler: V,
}

impl<V: Copy> RecordTable<V> {
    pub fn new(filler: V) -> Self {
        RecordTable {
            index: IdMap::new(u32::MAX),
            chunks: Vec::new(),
            free: Vec::new(),
            used: 0,
            filler,
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    #[inline]
    fn at(&self, slot: u32) -> &V {
        &self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }

    #[inline]
    fn at_mut(&mut self, slot: u32) -> &mut V {
        &mut self.chunks[slot as usize / CHUNK][slot as usize % CHUNK]
    }

    #[inline]
    pub fn get_ref(&self, id: u64) -> Option<&V> {
        self.index.get(id).map(|slot| self.at(slot))
    }

    /// Starts loading where `id`'s slot number is (the first of a lookup's two reads).
    #[inline]
    pub fn prefetch_slot(&self, id: u64) {
        self.index.prefetch(id);
    }

    /// Starts loading `id`'s record (the second read; the slot number is read now).
    #[inline]
    pub fn prefetch_record(&self, id: u64) {
        if let Some(slot) = self.index.get(id) {
            matching::idmap::prefetch(self.at(slot));
        }
    }

    fn alloc(&mut self, v: V) -> u32 {
        if let Some(slot) = self.free.pop() {
            *self.at_mut(slot) = v;
            return slot;
        }
        let slot = self.used;
        assert!(slot < u32::MAX, "more than 2^32 order records in memory");
        if slot as usize == self.chunks.len() * CHUNK {
            self.chunks
                .push(vec![self.filler; CHUNK].into_boxed_slice());
        }
        self.used += 1;
        *self.at_mut(slot) = v;
        slot
    }

    pub fn remove(&mut self, id: u64) -> Option<V> {
        let slot = self.index.remove(id)?;
        self.free.push(slot);
        Some(*self.at(slot))
    }

    /// Every record (no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        self.index.iter().map(|(id, &slot)| (id, self.at(slot)))
    }

    /// The records whose ids are in namespace `space` ([`IdMap::iter_space`]: the other
    /// namespaces' ids are not walked).
    pub fn iter_space(&self, space: u64) -> impl Iterator<Item = (u64, &V)> {
        self.index
            .iter_space(space)
            .map(|(id, &slot)| (id, self.at(slot)))
    }

    /// Gives memory back once a quarter or less of the slots hold records (archiving emptied
    /// the table): the records move to a fresh, dense slab. O(len), and only after len fell to
    /// a quarter of the slots, so amortised O(1) per removal.
    pub fn shrink_if_sparse(&mut self) {
        self.index.shrink_if_sparse();
        let slots = self.used as usize;
        if slots <= KEEP_SLOTS || self.len() * 4 > slots {
            return;
        }
        let live: Vec<(u64, V)> = self.iter().map(|(id, v)| (id, *v)).collect();
        self.chunks = Vec::new();
        self.free = Vec::new();
        self.used = 0;
        for (id, v) in live {
            let slot = self.alloc(v);
            self.index.set(id, slot);
        }
    }

    /// Slots allocated (live or free).
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.chunks.len() * CHUNK
    }
}

impl<V: Copy> IdTable<V> for RecordTable<V> {
    fn contains(&self, id: u64) -> bool {
        self.index.contains(id)
    }

    #[inline]
    fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        let slot = self.index.get(id)?;
        Some(self.at_mut(slot))
    }

    fn insert_new(&mut self, id: u64, v: V) {
        let slot = self.alloc(v);
        self.index.insert_new(id, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random operations against std's map, ids interleaved over several namespaces.
    #[test]
    fn behaves_like_a_hash_map() {
        let mut t = RecordTable::new((0u64, 0u32));
        let mut h: HashMap<u64, (u64, u32)> = HashMap::new();
        let mut x = 0x0bad_5eed_1234_5678u64;
        let mut next = [0u64; 5];
        for step in 0..300_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let space = (x % 5) as usize;
            let op = (x >> 8) % 10;
            let id = if op < 5 {
                next[space] += 1 + (x >> 20) % 3;
                ((space as u64 + 1) << 40) | next[space]
            } else {
                ((space as u64 + 1) << 40) | ((x >> 24) % (next[space] + 1))
            };
            let v = (id, step);
            // Prefetch hints for this id and for any u64 (absent, in no page, far out of every
            // namespace): they must neither panic nor change what the table holds.
            t.prefetch_slot(id);
            t.prefetch_record(id);
            t.prefetch_slot(x);
            t.prefetch_record(x.rotate_left(23));
            match op {
                0..=4 => {
                    assert_eq!(t.insert_if_absent(id, || v), !h.contains_key(&id));
                    h.entry(id).or_insert(v);
                }
                5..=7 => assert_eq!(t.remove(id), h.remove(&id)),
                8 => {
                    t.set(id, v);
                    h.insert(id, v);
                }
                _ => {
                    if let Some(r) = t.get_mut(id) {
                        r.1 = step;
                    }
                    if let Some(r) = h.get_mut(&id) {
                        r.1 = step;
                    }
                }
            }
            assert_eq!(t.get_ref(id), h.get(&id));
            assert_eq!(t.len(), h.len());
            if step % 50_000 == 0 {
                t.shrink_if_sparse();
            }
        }
        let mut listed: Vec<(u64, (u64, u32))> = t.iter().map(|(k, v)| (k, *v)).collect();
        let mut expected: Vec<(u64, (u64, u32))> = h.into_iter().collect();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected);
    }

    /// A busy moment's slab is given back once most records left, and what is left is intact.
    #[test]
    fn an_emptied_table_gives_its_memory_back() {
        let mut t = RecordTable::new(0u64);
        let n = 200_000u64;
        for id in 1..=n {
            t.insert_new((1 << 40) | id, id);
        }
        let peak = t.slots();
        assert!(peak >= n as usize);
        for id in 1..=n {
            if id % 100 != 0 {
                assert_eq!(t.remove((1 << 40) | id), Some(id));
            }
        }
        t.shrink_if_sparse();
        assert!(t.slots() <= 2 * CHUNK, "{} slots kept of {peak}", t.slots());
        for id in 1..=n {
            let expect = (id % 100 == 0).then_some(id);
            assert_eq!(t.get_ref((1 << 40) | id).copied(), expect);
        }
        // Freed slots are reused before the slab grows.
        let slots = t.slots();
        for id in n + 1..n + 1_000 {
            t.insert_new((1 << 40) | id, id);
        }
        assert_eq!(t.slots(), slots);
    }
}
