//! The deadline heap: an indexed binary min-heap of (when, key), one key per descriptor
//! direction, so moving a deadline re-sifts its entry in place instead of leaving stale ones.
//!
//! Plain data: the poller keeps it under its timer lock. `pos[key]` is the key's heap slot
//! plus one (0 = no deadline). Both vectors grow only when descriptors are opened or
//! deadlines set, never while a poll round expires entries.

/// A min-heap of deadlines in nanoseconds since the poller's base instant.
#[derive(Debug, Default)]
pub(crate) struct DeadlineHeap {
    heap: Vec<(u64, u32)>,
    pos: Vec<u32>,
}

impl DeadlineHeap {
    /// Make room for `key` so later `set`s of it do not grow `pos`.
    pub(crate) fn reserve_key(&mut self, key: u32) {
        let need = key as usize + 1;
        if self.pos.len() < need {
            self.pos.resize(need, 0);
        }
        // One heap slot per key that can hold a deadline.
        self.heap.reserve(need.saturating_sub(self.heap.len()));
    }

    /// The earliest deadline, if any.
    #[inline]
    pub(crate) fn peek(&self) -> Option<u64> {
        self.heap.first().map(|&(when, _)| when)
    }

    /// Whether `key` has a deadline.
    #[allow(dead_code)]
    pub(crate) fn contains(&self, key: u32) -> bool {
        self.pos.get(key as usize).is_some_and(|&p| p != 0)
    }

    /// Set (or move) `key`'s deadline. Returns whether it is now the earliest.
    pub(crate) fn set(&mut self, key: u32, when: u64) -> bool {
        self.reserve_key(key);
        let p = self.pos[key as usize];
        let i = if p == 0 {
            self.heap.push((when, key));
            let i = self.heap.len() - 1;
            self.pos[key as usize] = i as u32 + 1;
            i
        } else {
            let i = p as usize - 1;
            self.heap[i].0 = when;
            self.sift_down(i)
        };
        self.sift_up(i) == 0
    }

    /// Remove `key`'s deadline, if it has one.
    pub(crate) fn remove(&mut self, key: u32) {
        let Some(&p) = self.pos.get(key as usize) else {
            return;
        };
        if p == 0 {
            return;
        }
        self.remove_at(p as usize - 1);
    }

    /// Remove and return a key whose deadline is at or before `now`.
    #[inline]
    pub(crate) fn pop_expired(&mut self, now: u64) -> Option<u32> {
        match self.heap.first() {
            Some(&(when, key)) if when <= now => {
                self.remove_at(0);
                Some(key)
            }
            _ => None,
        }
    }

    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    fn remove_at(&mut self, i: usize) {
        let (_, key) = self.heap.swap_remove(i);
        self.pos[key as usize] = 0;
        if i < self.heap.len() {
            self.pos[self.heap[i].1 as usize] = i as u32 + 1;
            let j = self.sift_down(i);
            self.sift_up(j);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.pos[self.heap[a].1 as usize] = a as u32 + 1;
        self.pos[self.heap[b].1 as usize] = b as u32 + 1;
    }

    fn sift_up(&mut self, mut i: usize) -> usize {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].0 <= self.heap[i].0 {
                break;
            }
            self.swap(parent, i);
            i = parent;
        }
        i
    }

    fn sift_down(&mut self, mut i: usize) -> usize {
        loop {
            let l = 2 * i + 1;
            if l >= self.heap.len() {
                return i;
            }
            let r = l + 1;
            let c = if r < self.heap.len() && self.heap[r].0 < self.heap[l].0 {
                r
            } else {
                l
            };
            if self.heap[i].0 <= self.heap[c].0 {
                return i;
            }
            self.swap(i, c);
            i = c;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        // No failure file: Miri's isolation forbids the file system.
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Random set / move / remove / expire sequences against a map.
        #[test]
        fn heap_matches_model(ops in prop::collection::vec((0u8..4, 0u32..16, 0u64..100), 0..200)) {
            let mut h = DeadlineHeap::default();
            let mut model: BTreeMap<u32, u64> = BTreeMap::new();
            for (op, key, when) in ops {
                match op {
                    0 | 1 => {
                        h.set(key, when);
                        model.insert(key, when);
                    }
                    2 => {
                        h.remove(key);
                        model.remove(&key);
                    }
                    _ => {
                        let mut got = Vec::new();
                        while let Some(k) = h.pop_expired(when) {
                            got.push(k);
                        }
                        got.sort_unstable();
                        let want: Vec<u32> =
                            model.iter().filter(|&(_, &w)| w <= when).map(|(&k, _)| k).collect();
                        for k in &want {
                            model.remove(k);
                        }
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(h.peek(), model.values().min().copied());
                prop_assert_eq!(h.len(), model.len());
                for k in 0..16 {
                    prop_assert_eq!(h.contains(k), model.contains_key(&k));
                }
            }
        }
    }
}
