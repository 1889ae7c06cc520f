//! [`Chunks`]: a sorted multimap kept as a list of shared chunks, the persistent structure of
//! the index's maps (Services by name, reverse names by address).
//!
//! A snapshot clones the list of chunks (one reference count per chunk, a few hundred for
//! 100,000 entries), and an update copies only the chunks it touches: one pod's change copies
//! a chunk or two instead of the whole map, and the new snapshot shares every other chunk with
//! the old one. Entries are stored flat, 16 to 32 bytes each, where a tree of nodes would add
//! its node overhead to every entry. Lookups are two binary searches: the chunk by its first
//! key, then the entry in the chunk.

use std::sync::Arc;

/// Entries per chunk after a bulk build; a chunk is split in two above twice this.
const CHUNK: usize = 256;

/// Entries sorted by key (equal keys kept in insertion order), in shared chunks.
#[derive(Debug)]
pub struct Chunks<K, V> {
    chunks: Vec<Arc<Vec<(K, V)>>>,
    len: usize,
}

impl<K, V> Clone for Chunks<K, V> {
    fn clone(&self) -> Self {
        Chunks {
            chunks: self.chunks.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for Chunks<K, V> {
    fn default() -> Self {
        Chunks {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Clone, V: Clone> Chunks<K, V> {
    /// A map of `entries`, sorted here (stable: equal keys keep their order).
    pub fn from_vec(mut entries: Vec<(K, V)>) -> Chunks<K, V> {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let len = entries.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut rest = entries.into_iter();
        loop {
            let chunk: Vec<(K, V)> = rest.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(Arc::new(chunk));
        }
        Chunks { chunks, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Index of the first chunk that may hold `key`: the last chunk whose first key is below
    /// it (equal keys may end that chunk and go on in the next), or 0.
    fn first_chunk(&self, key: &K) -> usize {
        self.chunks
            .partition_point(|c| c.first().is_some_and(|(k, _)| k < key))
            .saturating_sub(1)
    }

    /// The entries whose key is `key`, in insertion order.
    pub fn get_all(&self, key: &K) -> impl Iterator<Item = &V> + '_ {
        let start = self.first_chunk(key).min(self.chunks.len());
        let (from, until) = (key.clone(), key.clone());
        self.chunks[start..]
            .iter()
            .flat_map(move |c| {
                let at = c.partition_point(|(k, _)| *k < from);
                c[at..].iter()
            })
            .take_while(move |(k, _)| *k == until)
            .map(|(_, v)| v)
    }

    /// The first entry whose key is `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.get_all(key).next()
    }

    /// The first entry with a key in `[lo, hi]`.
    pub fn first_in(&self, lo: &K, hi: &K) -> Option<&(K, V)> {
        let start = self.first_chunk(lo);
        self.chunks[start.min(self.chunks.len())..]
            .iter()
            .find_map(|c| {
                let from = c.partition_point(|(k, _)| k < lo);
                c.get(from)
            })
            .filter(|(k, _)| k <= hi)
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// Adds an entry after those with an equal key; copies the one chunk it goes in if that
    /// chunk is shared.
    pub fn insert(&mut self, key: K, value: V) {
        self.len += 1;
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![(key, value)]));
            return;
        }
        // The last chunk whose first key is not above `key`.
        let i = self
            .chunks
            .partition_point(|c| c.first().is_some_and(|(k, _)| *k <= key))
            .saturating_sub(1);
        let chunk = Arc::make_mut(&mut self.chunks[i]);
        let at = chunk.partition_point(|(k, _)| *k <= key);
        chunk.insert(at, (key, value));
        if chunk.len() > 2 * CHUNK {
            let tail = chunk.split_off(chunk.len() / 2);
            chunk.shrink_to_fit();
            self.chunks.insert(i + 1, Arc::new(tail));
        }
    }

    /// Removes the entries whose key is `key` and for which `remove` says so; returns how
    /// many went. Copies only the chunks that change.
    pub fn remove_where(&mut self, key: &K, mut remove: impl FnMut(&V) -> bool) -> usize {
        let mut removed = 0;
        let mut i = self.first_chunk(key);
        while i < self.chunks.len() {
            let c = &self.chunks[i];
            let from = c.partition_point(|(k, _)| k < key);
            let to = c.partition_point(|(k, _)| k <= key);
            let past = to < c.len();
            let gone: Vec<usize> = (from..to).filter(|&j| remove(&c[j].1)).collect();
            if !gone.is_empty() {
                let chunk = Arc::make_mut(&mut self.chunks[i]);
                for j in gone.iter().rev() {
                    chunk.remove(*j);
                }
                removed += gone.len();
                if chunk.capacity() > chunk.len() + chunk.len() / 4 + 4 {
                    chunk.shrink_to_fit();
                }
            }
            if self.chunks[i].is_empty() {
                self.chunks.remove(i);
            } else {
                i += 1;
            }
            if past {
                break;
            }
        }
        self.len -= removed;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(c: &Chunks<u32, u32>) -> Vec<u32> {
        c.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn a_bulk_build_is_sorted_and_found() {
        let c = Chunks::from_vec((0..10_000u32).rev().map(|k| (k * 3, k)).collect());
        assert_eq!(c.len(), 10_000);
        assert_eq!(c.get(&2997), Some(&999));
        assert_eq!(c.get(&2998), None);
        assert_eq!(c.first_in(&10, &12), Some(&(12, 4)));
        assert_eq!(c.first_in(&13, &14), None);
        assert!(keys(&c).windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn inserts_and_removals_keep_order_and_split_chunks() {
        let mut c = Chunks::default();
        // Out of order, with equal keys, enough to split chunks several times.
        for i in 0..5_000u32 {
            c.insert((i * 7919) % 1_000, i);
        }
        assert_eq!(c.len(), 5_000);
        assert!(keys(&c).windows(2).all(|w| w[0] <= w[1]));
        assert!(c.chunks.iter().all(|ch| ch.len() <= 2 * CHUNK));
        // Equal keys come back in insertion order.
        let all: Vec<u32> = c.get_all(&0).copied().collect();
        assert_eq!(all, [0, 1000, 2000, 3000, 4000]);
        assert_eq!(c.remove_where(&0, |v| *v >= 2000), 3);
        assert_eq!(c.get_all(&0).copied().collect::<Vec<_>>(), [0, 1000]);
        assert_eq!(c.remove_where(&0, |_| true), 2);
        assert_eq!(c.get(&0), None);
        assert_eq!(c.len(), 4_995);
    }

    /// Equal keys across a chunk boundary are all found and all removed.
    #[test]
    fn a_run_of_equal_keys_across_chunks() {
        let mut c = Chunks::from_vec((0..CHUNK as u32 - 2).map(|k| (k, k)).collect());
        for v in 0..10 {
            c.insert(500, v);
        }
        for v in 0..3 * CHUNK as u32 {
            c.insert(600, v);
        }
        assert!(c.chunks.len() >= 2);
        assert_eq!(c.get_all(&600).count(), 3 * CHUNK);
        assert_eq!(c.remove_where(&600, |v| v % 2 == 0), 3 * CHUNK / 2);
        assert_eq!(c.get_all(&600).count(), 3 * CHUNK / 2);
        assert_eq!(c.get_all(&500).count(), 10);
    }

    /// A clone shares every chunk; an update copies the one it touches.
    #[test]
    fn an_update_copies_only_the_chunk_it_touches() {
        let mut c = Chunks::from_vec((0..100_000u32).map(|k| (k, k)).collect());
        let before = c.clone();
        c.insert(50_000, 7);
        let shared = c
            .chunks
            .iter()
            .zip(&before.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, before.chunks.len() - 1);
        assert_eq!(before.get_all(&50_000).count(), 1);
        assert_eq!(c.get_all(&50_000).count(), 2);
    }
}
