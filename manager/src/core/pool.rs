//! [`VecPool`]: emptied vectors handed back across threads to be filled again.
//!
//! The core's output leaves in vectors that another thread consumes and used to free: each
//! session's reports (encoded by the session's writer), each batch of orders to an executor
//! (encoded by the executor's writer), each feed batch (applied by the feed task), and the
//! commands the sequencing thread hands to the core thread. Allocated afresh each flush, those
//! vectors grew by doubling into fresh memory: copies and page faults on the two threads every
//! acknowledgement waits for. The consumers give the emptied vectors back to a pool and the
//! producer fills them again, their pages still mapped.
//!
//! Every vector taken has room for at least the pool's `min_capacity` items (about a flush's
//! worth), so pushes land in memory already mapped instead of growing the vector; room never
//! written costs no memory. Bounded both ways, so a burst does not stay pinned for the rest
//! of the day: at most `kept` vectors are kept (about as many as circulate: one per session
//! for reports, a few for the hand-overs), none with room for more than twice `min_capacity`.

use std::hash::Hash;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

/// A shared stack of empty vectors (cloning shares it).
pub struct VecPool<T> {
    kept: Arc<Mutex<Vec<Vec<T>>>>,
    min_capacity: usize,
    max_kept: usize,
}

impl<T> Clone for VecPool<T> {
    fn clone(&self) -> Self {
        VecPool {
            kept: self.kept.clone(),
            min_capacity: self.min_capacity,
            max_kept: self.max_kept,
        }
    }
}

impl<T> VecPool<T> {
    /// A pool whose vectors have room for at least `min_capacity` items, keeping at most
    /// `max_kept` of them.
    pub fn new(min_capacity: usize, max_kept: usize) -> Self {
        VecPool {
            kept: Arc::new(Mutex::new(Vec::new())),
            min_capacity,
            max_kept,
        }
    }

    /// An empty vector with room for at least `min_capacity` items: one given back if there is
    /// one.
    pub fn take(&self) -> Vec<T> {
        let mut v = self.lock().pop().unwrap_or_default();
        v.reserve_exact(self.min_capacity);
        v
    }

    /// Hands `v` back, emptied, unless the pool is full or `v` is too small or too big to
    /// keep (then it is freed).
    pub fn give(&self, mut v: Vec<T>) {
        if v.capacity() < self.min_capacity || v.capacity() > 2 * self.min_capacity {
            return;
        }
        v.clear();
        let mut kept = self.lock();
        if kept.len() < self.max_kept {
            kept.push(v);
        }
    }

    /// Room every vector taken has: also the most items a [`Frames`] vector holds.
    pub fn min_capacity(&self) -> usize {
        self.min_capacity
    }

    /// Vectors kept now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<T>>> {
        // A thread that panicked holding the lock left a valid stack of empty vectors.
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Items per key (each session's reports) in frames of at most the pool's `min_capacity`.
///
/// A key's vector that fills up is set aside whole and the key's next items go into another
/// vector from the pool. So no vector grows past the room it was taken with (a doubling copy
/// into fresh pages, then too big for the pool to keep), and the consumer sends each vector as
/// one frame, never splitting one (which copied the rest of a large flush again per frame).
pub struct Frames<K, T> {
    filling: FxHashMap<K, Vec<T>>,
    /// Full vectors, in the order they filled.
    full: Vec<(K, Vec<T>)>,
}

impl<K, T> Default for Frames<K, T> {
    fn default() -> Self {
        Frames {
            filling: FxHashMap::default(),
            full: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Copy, T> Frames<K, T> {
    /// Appends `item` to `key`'s frames, taking vectors from `pool`.
    pub fn push(&mut self, pool: &VecPool<T>, key: K, item: T) {
        let frame = self.filling.entry(key).or_insert_with(|| pool.take());
        frame.push(item);
        if frame.len() >= pool.min_capacity() {
            if let Some(full) = self.filling.remove(&key) {
                self.full.push((key, full));
            }
        }
    }

    /// Takes out every frame of `key`, in order.
    pub fn remove(&mut self, key: K) -> Vec<Vec<T>> {
        let mut frames = Vec::new();
        self.full.retain_mut(|(k, v)| {
            if *k == key {
                frames.push(std::mem::take(v));
            }
            *k != key
        });
        frames.extend(self.filling.remove(&key));
        frames
    }

    /// `key`'s items, in order.
    pub fn of(&self, key: K) -> impl Iterator<Item = &T> {
        let full = self.full.iter().filter(move |(k, _)| *k == key);
        full.flat_map(|(_, v)| v)
            .chain(self.filling.get(&key).into_iter().flatten())
    }

    /// Every item, each key's in order.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        let full = self.full.iter().map(|(_, v)| v);
        full.chain(self.filling.values()).flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.full.is_empty() && self.filling.is_empty()
    }
}

impl<K, T> IntoIterator for Frames<K, T> {
    type Item = (K, Vec<T>);
    type IntoIter = std::iter::Chain<
        std::vec::IntoIter<(K, Vec<T>)>,
        std::collections::hash_map::IntoIter<K, Vec<T>>,
    >;

    /// Every frame; a key's frames in order (its full ones, then the one it was filling).
    fn into_iter(self) -> Self::IntoIter {
        self.full.into_iter().chain(self.filling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_given_back_is_taken_again_empty_with_its_capacity() {
        let pool = VecPool::new(1000, 4);
        let fresh: Vec<u64> = pool.take();
        assert!(
            fresh.is_empty() && fresh.capacity() >= 1000,
            "room for a frame from the start"
        );
        let mut v: Vec<u64> = Vec::with_capacity(1500);
        v.extend(0..1200);
        let at = v.as_ptr();
        pool.clone().give(v);
        assert_eq!(pool.len(), 1);
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!((again.as_ptr(), again.capacity()), (at, 1500));
        assert!(pool.is_empty());
    }

    #[test]
    fn the_pool_keeps_neither_too_many_nor_too_small_nor_too_big_vectors() {
        let pool = VecPool::new(64, 5);
        pool.give(Vec::<u8>::with_capacity(129));
        pool.give(Vec::<u8>::with_capacity(63));
        pool.give(Vec::new());
        assert!(pool.is_empty(), "such vectors are freed");
        for _ in 0..9 {
            pool.give(Vec::<u8>::with_capacity(128));
        }
        assert_eq!(pool.len(), 5);
    }

    #[test]
    fn frames_never_grow_past_the_pools_room_and_keep_each_keys_order() {
        let pool = VecPool::new(4, 16);
        let mut frames: Frames<u8, u32> = Frames::default();
        // Two keys interleaved, one far past a frame.
        for i in 0..11 {
            frames.push(&pool, 1, i);
            if i % 3 == 0 {
                frames.push(&pool, 2, 100 + i);
            }
        }
        assert_eq!(
            frames.of(1).copied().collect::<Vec<_>>(),
            (0..11).collect::<Vec<_>>()
        );
        assert_eq!(
            frames.of(2).copied().collect::<Vec<_>>(),
            [100, 103, 106, 109]
        );
        assert_eq!(frames.items().count(), 15);
        let mut seen: FxHashMap<u8, Vec<u32>> = FxHashMap::default();
        let mut sizes = Vec::new();
        for (key, frame) in frames {
            assert!(frame.len() <= 4 && frame.capacity() == 4, "no frame grew");
            sizes.push((key, frame.len()));
            seen.entry(key).or_default().extend(frame);
        }
        assert_eq!(
            seen[&1],
            (0..11).collect::<Vec<_>>(),
            "a key's frames come in order"
        );
        assert_eq!(seen[&2], [100, 103, 106, 109]);
        sizes.sort();
        assert_eq!(sizes, [(1, 3), (1, 4), (1, 4), (2, 4)]);
    }

    #[test]
    fn removing_a_key_takes_all_its_frames_and_leaves_the_others() {
        let pool = VecPool::new(2, 16);
        let mut frames: Frames<u8, u32> = Frames::default();
        for i in 0..5 {
            frames.push(&pool, 7, i);
            frames.push(&pool, 8, 10 + i);
        }
        let removed = frames.remove(7);
        assert_eq!(removed, [vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(frames.of(7).count(), 0);
        assert_eq!(
            frames.of(8).copied().collect::<Vec<_>>(),
            [10, 11, 12, 13, 14]
        );
        assert!(!frames.is_empty());
        assert!(frames.remove(8).len() == 3 && frames.is_empty());
    }
}
