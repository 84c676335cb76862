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

    /// `key`'s vector in `map`, taken from the pool when `key` gets its first item.
    pub fn vec_in<'a, K: Hash + Eq>(
        &self,
        map: &'a mut FxHashMap<K, Vec<T>>,
        key: K,
    ) -> &'a mut Vec<T> {
        map.entry(key).or_insert_with(|| self.take())
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
}
