//! A span set: the lock-protected stack of spans that mcentral keeps per list.
//!
//! Go uses lock-free spanSets; a short mutex is enough here because sets are touched only on
//! cache refills and by sweepers, never on the allocation fast path. Generic over the element
//! so the loom models can use plain ids.

use crate::loom::{AtomicUsize, Mutex, Ordering};

/// A set of spans (or span ids in a model). Pushed and popped under its own lock.
#[derive(Debug)]
pub(crate) struct SpanSet<T> {
    items: Mutex<Vec<T>>,
    /// Length, written under the lock, read without it so that sweepers and refills skip
    /// empty sets without locking. A stale zero is harmless: a set becomes non-empty only by
    /// a push that is ordered before any pop that must see it (by the stop-the-world flip,
    /// or by program order on the pushing thread).
    len: AtomicUsize,
}

impl<T> SpanSet<T> {
    pub(crate) fn new() -> Self {
        SpanSet {
            items: Mutex::new(Vec::new()),
            len: AtomicUsize::new(0),
        }
    }

    pub(crate) fn push(&self, t: T) {
        let mut v = self.items.lock().expect("runtime: span set lock poisoned");
        v.push(t);
        // Relaxed: the lock orders the items; the length is only a hint (see the field).
        self.len.store(v.len(), Ordering::Relaxed);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut v = self.items.lock().expect("runtime: span set lock poisoned");
        let t = v.pop();
        self.len.store(v.len(), Ordering::Relaxed);
        t
    }
}
