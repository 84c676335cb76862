//! `u64` order id -> `Copy` value, tuned for the common case of (roughly) increasing ids in
//! each id namespace.
//!
//! Ids are client-chosen, but generators and brokers almost always hand them out in increasing
//! order. The manager gives each broker a namespace (the id's top bits, see
//! `manager::core::global_order_id`), so the ids of a grid run are a few increasing runs, one
//! per broker, 2^40 apart. Each namespace's ids go into a paged direct table of its own: an
//! insert touches the namespace's newest (cache-hot) page, a lookup is one indexed load, there
//! is no hashing and no rehash pause, and a page is recycled once all its entries are gone.
//! Ids far beyond what a namespace has seen (sparse or random ids), and ids of namespaces past
//! the first [`MAX_SPACES`], go to a hash map ([`crate::splitmap::SplitMap`]), so memory stays
//! proportional to the number of ids stored, whatever the ids look like. A page left nearly
//! empty by removals (a few long-resting orders among thousands of finished ones) moves its
//! last entries to the hash map and is freed: a long day does not keep a 4096-slot page alive
//! per straggler.

use crate::splitmap::SplitMap;

const PAGE_BITS: u32 = 12;
const PAGE: usize = 1 << PAGE_BITS;
/// An id's namespace is its bits from this one up (a broker's, or 0 for exchange-wide ids).
const SPACE_BITS: u32 = 40;
const LOCAL_MASK: u64 = (1 << SPACE_BITS) - 1;
/// Namespaces with direct tables; ids of higher ones are hashed.
pub const MAX_SPACES: usize = 1024;
/// How far past a namespace's current direct range a new id may land and still extend it.
const SLACK: u64 = 1 << 20;
/// Spare pages kept for reuse instead of being freed and reallocated.
const MAX_SPARE: usize = 8;
/// A page below the newest whose live entries fall to this many moves them to the hash map.
const SPARSE: u32 = (PAGE / 64) as u32;
/// Pages a namespace may have beyond one per `SPARSE` entries.
const FREE_PAGES: u64 = 8;
/// A hash map this small is never shrunk (not worth the rehash).
const FAR_KEEP: usize = 1024;

#[derive(Clone, Debug)]
struct Page<V> {
    slots: Box<[V]>,
    live: u32,
}

/// One namespace's direct table.
#[derive(Clone, Debug)]
struct Space<V> {
    pages: Vec<Option<Page<V>>>,
    /// Local ids below this are stored in `pages`; only grows.
    limit: u64,
    /// Number of inserts into this direct table, ever: bounds how far `limit` may grow.
    inserts: u64,
    /// Entries in `pages`, and pages allocated: a new page is allocated only while pages hold
    /// 64 entries each on average (plus a few), so ids scattered one per page go to the hash
    /// map instead of costing a page each.
    live: u64,
    allocated: u64,
    /// Lowest and highest local id of this namespace ever put in the hash map (`far_low >
    /// far_high`: none). A lookup outside that range that misses the direct table is a miss,
    /// without hashing: a new id (above every id a page retired) costs no hash probe.
    far_low: u64,
    far_high: u64,
}

impl<V> Space<V> {
    fn note_far(&mut self, local: u64) {
        self.far_low = self.far_low.min(local);
        self.far_high = self.far_high.max(local);
    }
}

impl<V> Default for Space<V> {
    fn default() -> Self {
        Space {
            pages: Vec::new(),
            limit: 0,
            inserts: 0,
            live: 0,
            allocated: 0,
            far_low: u64::MAX,
            far_high: 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct IdMap<V: Copy + PartialEq> {
    empty: V,
    /// Indexed by namespace.
    spaces: Vec<Space<V>>,
    spare: Vec<Box<[V]>>,
    far: SplitMap<V>,
    len: usize,
}

/// Where an id lives: its namespace, page and slot.
#[derive(Clone, Copy)]
struct Place {
    space: usize,
    page: usize,
    slot: usize,
    local: u64,
}

/// Asks the CPU to start loading the cache line of `v`: a hint for a lookup about to come,
/// with no effect on any result (a no-op off x86-64).
#[inline(always)]
pub fn prefetch<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and changes nothing but the cache, and `v` is a valid
    // reference besides.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((v as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// The first id of page `page` of namespace `space`.
fn page_base(space: usize, page: usize) -> u64 {
    ((space as u64) << SPACE_BITS) | ((page as u64) << PAGE_BITS)
}

/// What an id table provides, and what it derives from that (shared by [`IdMap`] and the
/// tables built on it).
pub trait IdTable<V> {
    fn contains(&self, id: u64) -> bool;
    fn get_mut(&mut self, id: u64) -> Option<&mut V>;
    /// Inserts `id -> v` for an id that is not present (callers check first).
    fn insert_new(&mut self, id: u64, v: V);

    /// Inserts `id -> make()` unless `id` is present; returns whether it did.
    fn insert_if_absent(&mut self, id: u64, make: impl FnOnce() -> V) -> bool {
        if self.contains(id) {
            return false;
        }
        self.insert_new(id, make());
        true
    }

    /// Overwrites the value of a present id, or inserts it.
    fn set(&mut self, id: u64, v: V) {
        match self.get_mut(id) {
            Some(old) => *old = v,
            None => self.insert_new(id, v),
        }
    }
}

impl<V: Copy + PartialEq> IdMap<V> {
    /// `empty` is a sentinel value that is never stored.
    pub fn new(empty: V) -> Self {
        Self {
            empty,
            spaces: Vec::new(),
            spare: Vec::new(),
            far: SplitMap::default(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn place(id: u64) -> Place {
        let local = id & LOCAL_MASK;
        Place {
            space: (id >> SPACE_BITS) as usize,
            page: (local >> PAGE_BITS) as usize,
            slot: (local as usize) & (PAGE - 1),
            local,
        }
    }

    /// The direct slot of `id` if its page exists (it may hold `empty`; every id stored in a
    /// page is below the namespace's `limit`, so no separate check against it is needed).
    #[inline]
    fn direct(&self, at: Place) -> Option<&V> {
        let space = self.spaces.get(at.space)?;
        Some(&space.pages.get(at.page)?.as_ref()?.slots[at.slot])
    }

    #[inline]
    fn direct_mut(&mut self, at: Place) -> Option<&mut V> {
        let space = self.spaces.get_mut(at.space)?;
        Some(&mut space.pages.get_mut(at.page)?.as_mut()?.slots[at.slot])
    }

    #[inline]
    pub fn get(&self, id: u64) -> Option<V> {
        self.get_ref(id).copied()
    }

    /// Starts loading the direct slot of `id`, if its page exists ([`prefetch`]).
    #[inline]
    pub fn prefetch(&self, id: u64) {
        if let Some(v) = self.direct(Self::place(id)) {
            prefetch(v);
        }
    }

    /// The local ids namespace `space` may have in the hash map: all of them past the direct
    /// namespaces, none for a namespace never seen (an empty range if none was ever hashed).
    #[inline]
    fn far_range(&self, space: usize) -> Option<std::ops::RangeInclusive<u64>> {
        match self.spaces.get(space) {
            Some(s) => Some(s.far_low..=s.far_high),
            None => (space >= MAX_SPACES).then_some(0..=u64::MAX),
        }
    }

    /// Whether `id`, absent from the direct table, may be in the hash map.
    #[inline]
    fn may_be_far(&self, at: Place) -> bool {
        !self.far.is_empty()
            && self
                .far_range(at.space)
                .is_some_and(|r| r.contains(&at.local))
    }

    #[inline]
    pub fn get_ref(&self, id: u64) -> Option<&V> {
        let at = Self::place(id);
        if let Some(v) = self.direct(at) {
            if *v != self.empty {
                return Some(v);
            }
        }
        if !self.may_be_far(at) {
            return None;
        }
        self.far.get(id)
    }

    #[inline]
    pub fn remove(&mut self, id: u64) -> Option<V> {
        let at = Self::place(id);
        let empty = self.empty;
        if let Some(space) = self.spaces.get_mut(at.space) {
            let limit = space.limit;
            if let Some(slot) = space.pages.get_mut(at.page) {
                if let Some(page) = slot {
                    let v = page.slots[at.slot];
                    if v != empty {
                        page.slots[at.slot] = empty;
                        page.live -= 1;
                        space.live -= 1;
                        self.len -= 1;
                        let newest = ((at.page as u64 + 1) << PAGE_BITS) >= limit;
                        if page.live == 0 || (page.live <= SPARSE && !newest) {
                            if let Some(page) = slot.take() {
                                space.live -= u64::from(page.live);
                                space.allocated -= 1;
                                self.retire(at, page);
                            }
                        }
                        return Some(v);
                    }
                }
            }
        }
        if !self.may_be_far(at) {
            return None;
        }
        let v = self.far.remove(id);
        if v.is_some() {
            self.len -= 1;
        }
        v
    }

    /// A page leaves the direct table: its last entries move to the hash map, its slots are
    /// kept for reuse (a few) or freed.
    fn retire(&mut self, at: Place, page: Page<V>) {
        let base = page_base(at.space, at.page);
        for (k, &x) in page.slots.iter().enumerate() {
            if x != self.empty {
                let id = base + k as u64;
                self.spaces[at.space].note_far(id & LOCAL_MASK);
                self.far.insert(id, x);
            }
        }
        if self.spare.len() < MAX_SPARE {
            let mut slots = page.slots;
            slots.fill(self.empty);
            self.spare.push(slots);
        }
    }

    /// Gives the hash map's memory back once it holds a quarter of its capacity or less (a
    /// close expired most orders): otherwise the day's busiest moment stays allocated for the
    /// rest of the run. O(len) when it shrinks, which it does only after len quartered.
    pub fn shrink_if_sparse(&mut self) {
        let cap = self.far.capacity();
        if cap > FAR_KEEP && self.far.len() * 4 <= cap {
            self.far.shrink_to(self.far.len() * 2);
        }
    }

    /// Every entry: the direct tables namespace by namespace in id order, then the hash map
    /// (no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        (0..self.spaces.len())
            .flat_map(|s| self.direct_entries(s))
            .chain(self.far.iter())
    }

    /// Every entry of namespace `space` (an id's bits from 40 up): its direct table in id
    /// order, then its hashed entries. Costs that namespace's pages, plus one pass over the
    /// hash map only if the namespace ever had an id hashed; the other namespaces' direct
    /// tables are not read.
    pub fn iter_space(&self, space: u64) -> impl Iterator<Item = (u64, &V)> {
        let s = usize::try_from(space).unwrap_or(usize::MAX);
        let hashed = self.far_range(s).is_some_and(|r| !r.is_empty());
        let far = hashed.then(|| self.far.iter()).into_iter().flatten();
        self.direct_entries(s)
            .chain(far.filter(move |(id, _)| id >> SPACE_BITS == space))
    }

    /// The entries in namespace `s`'s direct table, in id order (none past the table).
    fn direct_entries(&self, s: usize) -> impl Iterator<Item = (u64, &V)> {
        let empty = self.empty;
        let pages = self.spaces.get(s).map_or(&[][..], |sp| &sp.pages[..]);
        pages
            .iter()
            .enumerate()
            .filter_map(|(p, page)| Some((p, page.as_ref()?)))
            .flat_map(move |(p, page)| {
                let base = page_base(s, p);
                page.slots
                    .iter()
                    .enumerate()
                    .filter(move |(_, v)| **v != empty)
                    .map(move |(k, v)| (base + k as u64, v))
            })
    }

    /// Slots the hash map has room for.
    #[cfg(test)]
    pub(crate) fn far_capacity(&self) -> usize {
        self.far.capacity()
    }

    /// Pages in the direct tables.
    #[cfg(test)]
    pub(crate) fn pages(&self) -> usize {
        self.spaces
            .iter()
            .map(|s| s.pages.iter().filter(|p| p.is_some()).count())
            .sum()
    }
}

impl<V: Copy + PartialEq> IdTable<V> for IdMap<V> {
    #[inline]
    fn contains(&self, id: u64) -> bool {
        self.get_ref(id).is_some()
    }

    #[inline]
    fn get_mut(&mut self, id: u64) -> Option<&mut V> {
        let empty = self.empty;
        let at = Self::place(id);
        // Two lookups of the slot keep the borrow checker content (one page index each).
        if self.direct(at).is_some_and(|v| *v != empty) {
            return self.direct_mut(at);
        }
        if !self.may_be_far(at) {
            return None;
        }
        self.far.get_mut(id)
    }

    #[inline]
    fn insert_new(&mut self, id: u64, v: V) {
        debug_assert!(v != self.empty && !self.contains(id));
        self.len += 1;
        let at = Self::place(id);
        if at.space >= MAX_SPACES {
            self.far.insert(id, v);
            return;
        }
        if self.spaces.len() <= at.space {
            self.spaces.resize_with(at.space + 1, Space::default);
        }
        let space = &mut self.spaces[at.space];
        let in_range = at.local < space.limit || at.local - space.limit < SLACK.max(space.inserts);
        let direct = in_range
            && (space.pages.get(at.page).is_some_and(Option::is_some)
                || space.allocated < FREE_PAGES + space.live / u64::from(SPARSE));
        if !direct {
            space.note_far(at.local);
            self.far.insert(id, v);
            return;
        }
        space.limit = space.limit.max(at.local + 1);
        space.inserts += 1;
        space.live += 1;
        if space.pages.len() <= at.page {
            space.pages.resize_with(at.page + 1, || None);
        }
        let empty = self.empty;
        let spare = &mut self.spare;
        let allocated = &mut space.allocated;
        let page = space.pages[at.page].get_or_insert_with(|| {
            *allocated += 1;
            Page {
                slots: match spare.pop() {
                    Some(s) => s,
                    None => vec![empty; PAGE].into_boxed_slice(),
                },
                live: 0,
            }
        });
        page.slots[at.slot] = v;
        page.live += 1;
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
            // Mostly increasing ids in a few namespaces (as brokers' ids are), some small,
            // some huge, some scattered a page apart, some in namespaces past the direct ones,
            // some reused.
            let space = (x >> 20) % 5
                + if x.is_multiple_of(97) {
                    MAX_SPACES as u64
                } else {
                    0
                };
            let local = match x % 10 {
                0 => x >> 3,
                1 => x % 5_000,
                2 => (x % 64) * (PAGE as u64 + 1),
                _ => u64::from(step) * 3 + (x % 7),
            };
            let id = if x.is_multiple_of(10) {
                local
            } else {
                (space << SPACE_BITS) | (local & LOCAL_MASK)
            };
            match (x >> 40) % 5 {
                0 | 1 => {
                    if let std::collections::hash_map::Entry::Vacant(e) = h.entry(id) {
                        e.insert(step);
                        m.insert_new(id, step);
                    }
                }
                2 => assert_eq!(m.remove(id), h.remove(&id)),
                3 => {
                    let fresh = m.insert_if_absent(id, || step);
                    assert_eq!(fresh, !h.contains_key(&id));
                    h.entry(id).or_insert(step);
                }
                _ => {
                    if let Some(v) = m.get_mut(id) {
                        *v = step;
                    }
                    if let Some(v) = h.get_mut(&id) {
                        *v = step;
                    }
                    m.set(id ^ 1, step);
                    h.insert(id ^ 1, step);
                }
            }
            assert_eq!(m.get(id), h.get(&id).copied());
            assert_eq!(m.get_ref(id ^ 1), h.get(&(id ^ 1)));
            assert_eq!(m.len(), h.len());
            assert_eq!(m.is_empty(), h.is_empty());
        }
        for (&k, &v) in &h {
            assert_eq!(m.get(k), Some(v));
        }
        let mut listed: Vec<(u64, u32)> = m.iter().map(|(k, v)| (k, *v)).collect();
        let mut expected: Vec<(u64, u32)> = h.into_iter().collect();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected, "iter lists every entry once");
        // Namespace by namespace (direct ones, hashed-only ones, one never used): each lists
        // exactly its own entries.
        let mut spaces: Vec<u64> = expected.iter().map(|(k, _)| k >> SPACE_BITS).collect();
        spaces.dedup();
        spaces.push(MAX_SPACES as u64 - 1);
        for space in spaces {
            let mut listed: Vec<(u64, u32)> = m.iter_space(space).map(|(k, v)| (k, *v)).collect();
            listed.sort_unstable();
            let own: Vec<(u64, u32)> = expected
                .iter()
                .copied()
                .filter(|(k, _)| k >> SPACE_BITS == space)
                .collect();
            assert_eq!(
                listed, own,
                "iter_space({space}) lists its namespace's entries once"
            );
        }
    }

    #[test]
    fn each_namespace_has_a_direct_table() {
        // Four brokers' increasing ids, 2^40 apart: all direct, a page per 4096 ids each.
        let mut m = IdMap::new(0u32);
        for local in 1..=20_000u64 {
            for space in 1..=4u64 {
                m.insert_new((space << SPACE_BITS) | local, local as u32);
            }
        }
        assert_eq!(m.far.len(), 0, "no id was hashed");
        assert_eq!(m.pages(), 4 * 20_001usize.div_ceil(PAGE));
        assert_eq!(m.get((3 << SPACE_BITS) | 777), Some(777));
        assert_eq!(m.get((5 << SPACE_BITS) | 777), None);
        let third: Vec<u64> = m.iter_space(3).map(|(k, _)| k & LOCAL_MASK).collect();
        assert_eq!(
            third,
            (1..=20_000).collect::<Vec<_>>(),
            "in id order, its own only"
        );
        assert_eq!(m.iter_space(5).count(), 0);
    }

    #[test]
    fn ids_scattered_a_page_apart_do_not_cost_a_page_each() {
        // A hostile client spacing its ids just over a page apart, within the slack: after a
        // few pages its ids are hashed, so memory stays proportional to the ids stored.
        let mut m = IdMap::new(0u8);
        for k in 0..10_000u64 {
            m.insert_new((1 << SPACE_BITS) | (k * (PAGE as u64 + 1)), 1);
        }
        assert!(
            m.pages() as u64 <= FREE_PAGES + 1,
            "{} pages for 10,000 scattered ids",
            m.pages()
        );
        assert_eq!(m.len(), 10_000);
        assert_eq!(
            m.get((1 << SPACE_BITS) | (9_999 * (PAGE as u64 + 1))),
            Some(1)
        );
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
        let pages = m.pages();
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
        assert!(m.pages() <= 2, "{} pages", m.pages());
        assert_eq!(m.len(), 1000);
    }
}
