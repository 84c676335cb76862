//! `u64` order id -> small `Copy` value, tuned for the common case of (roughly) increasing ids.
//!
//! Ids are client-chosen, but generators and brokers almost always hand them out in increasing
//! order. Those ids go into a paged direct table: an insert touches the newest (cache-hot) page,
//! there is no hashing and no rehash pause, and a page is recycled once all its entries are
//! gone. Ids far beyond what has been seen (sparse or random ids) go to a hash map
//! ([`crate::splitmap::SplitMap`]), so memory stays proportional to the number of ids stored,
//! whatever the ids look like. A page left nearly empty by removals (a few long-resting orders
//! among thousands of finished ones) moves its last entries to the hash map and is freed: a long
//! day does not keep a 4096-slot page alive per straggler.

use crate::splitmap::SplitMap;

const PAGE_BITS: u32 = 12;
const PAGE: usize = 1 << PAGE_BITS;
/// How far past the current direct range a new id may land and still extend it.
const SLACK: u64 = 1 << 20;
/// Spare pages kept for reuse instead of being freed and reallocated.
const MAX_SPARE: usize = 8;
/// A page below the newest whose live entries fall to this many moves them to the hash map.
const SPARSE: u32 = (PAGE / 64) as u32;
/// A hash map this small is never shrunk (not worth the rehash).
const FAR_KEEP: usize = 1024;

#[derive(Clone, Debug)]
struct Page<V> {
    slots: Box<[V]>,
    live: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct IdMap<V: Copy + PartialEq> {
    empty: V,
    pages: Vec<Option<Page<V>>>,
    spare: Vec<Box<[V]>>,
    /// Ids below this are stored in `pages`; only grows.
    limit: u64,
    /// Number of inserts into the direct table, ever: bounds how far `limit` may grow.
    direct_inserts: u64,
    far: SplitMap<V>,
    len: usize,
}

impl<V: Copy + PartialEq> IdMap<V> {
    /// `empty` is a sentinel value that is never stored.
    pub(crate) fn new(empty: V) -> Self {
        Self {
            empty,
            pages: Vec::new(),
            spare: Vec::new(),
            limit: 0,
            direct_inserts: 0,
            far: SplitMap::default(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn split(id: u64) -> (usize, usize) {
        ((id >> PAGE_BITS) as usize, (id as usize) & (PAGE - 1))
    }

    #[inline]
    pub(crate) fn get(&self, id: u64) -> Option<V> {
        if id < self.limit {
            let (p, i) = Self::split(id);
            if let Some(Some(page)) = self.pages.get(p) {
                let v = page.slots[i];
                if v != self.empty {
                    return Some(v);
                }
            }
            if self.far.is_empty() {
                return None;
            }
        }
        self.far.get(id).copied()
    }

    #[inline]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    /// Inserts `id -> v` for an id that is not present (callers check first).
    #[inline]
    pub(crate) fn insert_new(&mut self, id: u64, v: V) {
        debug_assert!(v != self.empty && !self.contains(id));
        self.len += 1;
        if id >= self.limit {
            if id - self.limit < SLACK.max(self.direct_inserts) {
                self.limit = id + 1;
            } else {
                self.far.insert(id, v);
                return;
            }
        }
        self.direct_inserts += 1;
        let (p, i) = Self::split(id);
        if self.pages.len() <= p {
            self.pages.resize_with(p + 1, || None);
        }
        let page = self.pages[p].get_or_insert_with(|| Page {
            slots: match self.spare.pop() {
                Some(s) => s,
                None => vec![self.empty; PAGE].into_boxed_slice(),
            },
            live: 0,
        });
        page.slots[i] = v;
        page.live += 1;
    }

    /// Overwrites the value of a present id, or inserts it.
    pub(crate) fn set(&mut self, id: u64, v: V) {
        if id < self.limit {
            let (p, i) = Self::split(id);
            if let Some(Some(page)) = self.pages.get_mut(p) {
                if page.slots[i] != self.empty {
                    page.slots[i] = v;
                    return;
                }
            }
        }
        if let Some(old) = self.far.get_mut(id) {
            *old = v;
            return;
        }
        self.insert_new(id, v);
    }

    #[inline]
    pub(crate) fn remove(&mut self, id: u64) -> Option<V> {
        if id < self.limit {
            let (p, i) = Self::split(id);
            if let Some(slot) = self.pages.get_mut(p) {
                if let Some(page) = slot {
                    let v = page.slots[i];
                    if v != self.empty {
                        page.slots[i] = self.empty;
                        page.live -= 1;
                        self.len -= 1;
                        let newest = (p + 1) << PAGE_BITS >= self.limit as usize;
                        if page.live == 0 || (page.live <= SPARSE && !newest) {
                            if let Some(page) = slot.take() {
                                let base = (p as u64) << PAGE_BITS;
                                for (k, &x) in page.slots.iter().enumerate() {
                                    if x != self.empty {
                                        self.far.insert(base + k as u64, x);
                                    }
                                }
                                if self.spare.len() < MAX_SPARE {
                                    let mut slots = page.slots;
                                    slots.fill(self.empty);
                                    self.spare.push(slots);
                                }
                            }
                        }
                        return Some(v);
                    }
                }
            }
        }
        let v = self.far.remove(id);
        if v.is_some() {
            self.len -= 1;
        }
        v
    }

    /// Gives the hash map's memory back once it holds a quarter of its capacity or less (a
    /// close expired most orders): otherwise the day's busiest moment stays allocated for the
    /// rest of the run. O(len) when it shrinks, which it does only after len quartered.
    pub(crate) fn shrink_if_sparse(&mut self) {
        let cap = self.far.capacity();
        if cap > FAR_KEEP && self.far.len() * 4 <= cap {
            self.far.shrink_to(self.far.len() * 2);
        }
    }

    /// Slots the hash map has room for.
    #[cfg(test)]
    pub(crate) fn far_capacity(&self) -> usize {
        self.far.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn behaves_like_a_hash_map() {
        let mut m = IdMap::new(u32::MAX);
        let mut h: HashMap<u64, u32> = HashMap::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly increasing ids, some small, some huge, some reused.
            let id = match x % 10 {
                0 => x >> 3,
                1 => x % 5_000,
                _ => u64::from(step) * 3 + (x % 7),
            };
            match (x >> 40) % 4 {
                0 | 1 => {
                    if let std::collections::hash_map::Entry::Vacant(e) = h.entry(id) {
                        e.insert(step);
                        m.insert_new(id, step);
                    }
                }
                2 => assert_eq!(m.remove(id), h.remove(&id)),
                _ => {
                    m.set(id, step);
                    h.insert(id, step);
                }
            }
            assert_eq!(m.get(id), h.get(&id).copied());
            assert_eq!(m.len(), h.len());
        }
        for (&k, &v) in &h {
            assert_eq!(m.get(k), Some(v));
        }
    }

    #[test]
    fn stragglers_do_not_keep_pages_alive() {
        // 1M increasing ids, all removed but one in every 5,000: the survivors end up in the
        // hash map and (almost) every page is freed, and every lookup still answers.
        let mut m = IdMap::new(0u32);
        let n = 1_000_000u64;
        for id in 0..n {
            m.insert_new(id, id as u32 + 1);
        }
        for id in 0..n {
            if id % 5_000 != 0 {
                assert_eq!(m.remove(id), Some(id as u32 + 1));
            }
        }
        let pages = m.pages.iter().filter(|p| p.is_some()).count();
        assert!(pages <= 1, "{pages} pages kept for {} ids", m.len());
        assert_eq!(m.len(), (n / 5_000) as usize);
        for id in (0..n).step_by(2_500) {
            let expect = (id % 5_000 == 0).then_some(id as u32 + 1);
            assert_eq!(m.get(id), expect, "id {id}");
        }
        // Old ranges can still be written and removed.
        m.set(7, 99);
        assert_eq!(m.get(7), Some(99));
        assert_eq!(m.remove(5_000), Some(5_001));
        assert_eq!(m.get(5_000), None);
    }

    #[test]
    fn random_ids_stay_sparse() {
        let mut m = IdMap::new(0u8);
        for i in 0..1000u64 {
            m.insert_new(i.wrapping_mul(0x9e37_79b9_7f4a_7c15), 1);
        }
        assert!(m.pages.len() <= 2, "{} pages", m.pages.len());
        assert_eq!(m.len(), 1000);
    }
}
