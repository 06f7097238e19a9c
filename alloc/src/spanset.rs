//! A span set: the lock-protected stack of spans that mcentral keeps per list.
//!
//! Go uses lock-free spanSets; a short mutex is enough here because sets are touched only on
//! cache refills and by sweepers, never on the allocation fast path. Generic over the element
//! so the loom models can use plain ids.

use crate::loom::Mutex;

/// A set of spans (or span ids in a model). Pushed and popped under its own lock.
#[derive(Debug)]
pub(crate) struct SpanSet<T> {
    items: Mutex<Vec<T>>,
}

impl<T> SpanSet<T> {
    pub(crate) fn new() -> Self {
        SpanSet {
            items: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn push(&self, t: T) {
        self.items
            .lock()
            .expect("runtime: span set lock poisoned")
            .push(t);
    }

    pub(crate) fn pop(&self) -> Option<T> {
        self.items
            .lock()
            .expect("runtime: span set lock poisoned")
            .pop()
    }

    #[allow(dead_code)] // used by tests
    pub(crate) fn len(&self) -> usize {
        self.items
            .lock()
            .expect("runtime: span set lock poisoned")
            .len()
    }
}
