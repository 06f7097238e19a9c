//! A 4-ary min-heap of timer entries ordered by deadline (Go keeps its timers in one too:
//! shallower than a binary heap, and a sift touches fewer cache lines).

/// One armed timer: fires at `when` (nanoseconds on the runtime's clock) if its cell is still
/// armed with `seq` by then.
#[derive(Debug)]
pub(crate) struct Entry<C> {
    pub(crate) when: u64,
    pub(crate) seq: u64,
    pub(crate) cell: C,
}

/// Entries with the earliest `when` on top.
#[derive(Debug)]
pub(crate) struct Heap<C> {
    items: Vec<Entry<C>>,
}

impl<C> Default for Heap<C> {
    fn default() -> Self {
        Heap { items: Vec::new() }
    }
}

const ARITY: usize = 4;

impl<C> Heap<C> {
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// The earliest deadline, or `u64::MAX` when empty.
    pub(crate) fn earliest(&self) -> u64 {
        self.items.first().map_or(u64::MAX, |e| e.when)
    }

    pub(crate) fn push(&mut self, e: Entry<C>) {
        self.items.push(e);
        self.sift_up(self.items.len() - 1);
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<Entry<C>> {
        if self.items.first()?.when > now {
            return None;
        }
        let last = self.items.len() - 1;
        self.items.swap(0, last);
        let e = self.items.pop();
        if !self.items.is_empty() {
            self.sift_down(0);
        }
        e
    }

    /// Takes every entry (a runtime shutting down drops its timers).
    pub(crate) fn drain(&mut self) -> Vec<Entry<C>> {
        std::mem::take(&mut self.items)
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if self.items[parent].when <= self.items[i].when {
                break;
            }
            self.items.swap(parent, i);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.items.len();
        loop {
            let first = i * ARITY + 1;
            if first >= n {
                break;
            }
            let last = (first + ARITY).min(n);
            let mut min = first;
            for c in first + 1..last {
                if self.items[c].when < self.items[min].when {
                    min = c;
                }
            }
            if self.items[i].when <= self.items[min].when {
                break;
            }
            self.items.swap(i, min);
            i = min;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Against a sorted model: `pop_due` yields due entries in deadline order and leaves
        /// the others; `earliest` is the model's minimum.
        #[test]
        fn heap_matches_a_sorted_model(
            ops in prop::collection::vec((any::<bool>(), 0u64..1000), 1..200)
        ) {
            let mut heap = Heap::default();
            let mut model: Vec<u64> = Vec::new();
            for (i, (push, t)) in ops.into_iter().enumerate() {
                if push {
                    heap.push(Entry { when: t, seq: i as u64, cell: () });
                    model.push(t);
                } else {
                    model.sort_unstable();
                    let due: Vec<u64> = model.iter().copied().take_while(|&w| w <= t).collect();
                    model.drain(..due.len());
                    let mut got = Vec::new();
                    while let Some(e) = heap.pop_due(t) {
                        got.push(e.when);
                    }
                    prop_assert_eq!(got, due);
                }
                prop_assert_eq!(heap.len(), model.len());
                prop_assert_eq!(heap.earliest(), model.iter().copied().min().unwrap_or(u64::MAX));
            }
        }
    }
}
