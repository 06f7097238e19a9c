//! The drop-glue protocol: the finalize / queued bit pair of each object, changed so that no
//! object is queued twice and none that was queued is refused.
//!
//! | finalize | queued | meaning                                                       |
//! |----------|--------|---------------------------------------------------------------|
//! | 0        | 0      | an ordinary object                                            |
//! | 1        | 0      | has drop glue, not queued: a sweep that finds it dead queues it |
//! | 1        | 1      | queued: kept, whatever its mark, until released               |
//! | 0        | 1      | released: an ordinary object again (the next sweep that finds it dead frees it; any sweep clears `queued`) |
//!
//! Each word kind has one kind of writer: `finalize` bits are set by the allocating cache
//! (`fetch_or`) and cleared only by [`release`] (`fetch_and`); `queued` bits are written only
//! by the sweep that owns the span. `queued` goes 1 → 0 only once `finalize` is 0, so while
//! `finalize` is 1 a `queued` bit read as 1 stays 1: `release`'s one `fetch_and` is the
//! atomic transition `(1, 1) → (0, 1)`, and no sweep, whichever value of `finalize` it
//! reads, can queue the object again (that needs `queued == 0`). A sweep *records* `queued`
//! before the object is handed to the drop queue, so the consumer's `release` always finds
//! it. Loom checks both claims in this file's model.

use crate::loom::Ordering;

/// The atomic operations the protocol uses on a bitmap word: std's `AtomicU64` for the
/// heap's mapped bitmaps, loom's in the model.
pub(crate) trait BitWord {
    fn load(&self, o: Ordering) -> u64;
    fn store(&self, v: u64, o: Ordering);
    fn fetch_and(&self, v: u64, o: Ordering) -> u64;
}

impl BitWord for std::sync::atomic::AtomicU64 {
    #[inline]
    fn load(&self, o: Ordering) -> u64 {
        std::sync::atomic::AtomicU64::load(self, o)
    }
    #[inline]
    fn store(&self, v: u64, o: Ordering) {
        std::sync::atomic::AtomicU64::store(self, v, o)
    }
    #[inline]
    fn fetch_and(&self, v: u64, o: Ordering) -> u64 {
        std::sync::atomic::AtomicU64::fetch_and(self, v, o)
    }
}

#[cfg(loom)]
impl BitWord for loom::sync::atomic::AtomicU64 {
    fn load(&self, o: Ordering) -> u64 {
        loom::sync::atomic::AtomicU64::load(self, o)
    }
    fn store(&self, v: u64, o: Ordering) {
        loom::sync::atomic::AtomicU64::store(self, v, o)
    }
    fn fetch_and(&self, v: u64, o: Ordering) -> u64 {
        loom::sync::atomic::AtomicU64::fetch_and(self, v, o)
    }
}

/// What a sweep decided for one word of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WordSweep {
    /// Objects that stay allocated (the new alloc bits).
    pub(crate) keep: u64,
    /// Objects freed.
    pub(crate) dead: u64,
    /// Objects whose `queued` bit this sweep set: the caller hands them to the drop queue.
    pub(crate) queued: u64,
}

/// Sweep the finalize / queued pair of one word of a span the caller owns (won its sweep
/// claim): given the word's alloc and mark bits, record `queued` for dead objects with drop
/// glue and return what survives. `room(bits, record)` returns the subset of `bits` the
/// caller can hand to the drop queue; the others stay allocated and unqueued until a later
/// sweep. If the hand-off can become visible to another thread before `room` returns (the
/// heap's shared list of deferred drops, drained by whichever thread pushes next), `room`
/// must call `record(taken)` first, while the objects are not yet visible: the record
/// must precede every hand-off, or the consumer's `release` finds no `queued` bit and refuses
/// the object. A `room` that does not call it gets the record made after it returns.
#[inline]
pub(crate) fn sweep_word(
    alloc: u64,
    mark: u64,
    finalize: &impl BitWord,
    queued: &impl BitWord,
    room: impl FnOnce(u64, &dyn Fn(u64)) -> u64,
) -> WordSweep {
    let live = alloc & mark;
    // Acquire: pairs with `release`'s AcqRel, so a released object's drop has happened
    // before we free its slot.
    let fin = finalize.load(Ordering::Acquire) & alloc;
    // Relaxed: only sweeps (us, owning the span) write `queued`.
    let q = queued.load(Ordering::Relaxed);
    let recorded = std::cell::Cell::new(false);
    let record = |to_queue: u64| {
        recorded.set(true);
        let new_q = (q & fin) | to_queue;
        if new_q != q {
            // Release: the record precedes the hand-off to the drop queue, so the
            // consumer's `release` (Acquire) finds it.
            queued.store(new_q, Ordering::Release);
        }
    };
    let candidates = fin & !q & !live;
    let to_queue = if candidates != 0 {
        room(candidates, &record)
    } else {
        0
    };
    if !recorded.get() {
        record(to_queue);
    }
    // Objects with drop glue are never freed while `finalize` is set: queued ones wait for
    // their release, unqueued ones were live or are queued now (or later, for lack of room).
    let keep = live | fin;
    WordSweep {
        keep,
        dead: alloc & !keep,
        queued: to_queue,
    }
}

/// Declare the drop glue of object `bit` of this word pair run: true when the object was
/// queued and not yet released (this call released it), false otherwise.
#[inline]
pub(crate) fn release(finalize: &impl BitWord, queued: &impl BitWord, bit: u64) -> bool {
    // Acquire: pairs with the sweep's Release store of the record.
    if queued.load(Ordering::Acquire) & bit == 0 {
        return false;
    }
    // The one transition (1, 1) → (0, 1): `queued` cannot drop while `finalize` is set.
    finalize.fetch_and(!bit, Ordering::AcqRel) & bit != 0
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn the_pair_moves_through_its_four_states() {
        let (f, q) = (AtomicU64::new(0b0110), AtomicU64::new(0));
        // Objects 0..3 allocated; 1 and 2 have drop glue; only 3 is marked.
        let s = sweep_word(0b1111, 0b1000, &f, &q, |b, _| b);
        assert_eq!(s.queued, 0b0110);
        assert_eq!(s.keep, 0b1110);
        assert_eq!(s.dead, 0b0001);
        assert_eq!(q.load(Ordering::Relaxed), 0b0110);
        // Queued objects are kept and not queued again.
        let s = sweep_word(0b1110, 0, &f, &q, |b, _| b);
        assert_eq!((s.queued, s.keep), (0, 0b0110));
        assert!(release(&f, &q, 0b0010));
        assert!(!release(&f, &q, 0b0010), "released once");
        assert!(!release(&f, &q, 0b1000), "never queued");
        // The released object is freed by the next sweep, the other still waits.
        let s = sweep_word(0b0110, 0, &f, &q, |b, _| b);
        assert_eq!((s.keep, s.dead, s.queued), (0b0100, 0b0010, 0));
        assert_eq!(q.load(Ordering::Relaxed), 0b0100);
        // No room: the object stays allocated and unqueued.
        let (f, q) = (AtomicU64::new(1), AtomicU64::new(0));
        let s = sweep_word(1, 0, &f, &q, |_, _| 0);
        assert_eq!((s.keep, s.queued, q.load(Ordering::Relaxed)), (1, 0, 0));
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! A finalizer thread releasing a queued object while another sweep of its span runs
    //! (after a flip), and a consumer releasing an object as soon as the sweep hands it over.
    use super::*;
    use crate::loom::{Arc, AtomicUsize, thread};
    use loom::sync::atomic::AtomicU64;

    #[test]
    fn release_against_a_sweep_never_queues_twice() {
        loom::model(|| {
            // Object 0 is queued (1, 1); the finalizer releases it while a sweep (of the next
            // cycle) finds it unmarked.
            let w = Arc::new((AtomicU64::new(1), AtomicU64::new(1)));
            let w2 = w.clone();
            let fin = thread::spawn(move || release(&w2.0, &w2.1, 1));
            let s = sweep_word(1, 0, &w.0, &w.1, |b, _| b);
            assert!(fin.join().unwrap(), "a queued object is released");
            assert_eq!(s.queued, 0, "queued twice");
            // Whatever the sweep saw, the object is freed by this sweep or the next one.
            let s2 = sweep_word(s.keep, 0, &w.0, &w.1, |b, _| b);
            assert_eq!(s.dead | s2.dead, 1);
            assert_eq!(s2.queued, 0);
        });
    }

    #[test]
    fn a_queued_object_is_never_refused() {
        loom::model(|| {
            // The sweep queues object 0 and hands it over (a flag standing in for the drop
            // queue); the consumer releases it as soon as it sees it.
            let w = Arc::new((AtomicU64::new(1), AtomicU64::new(0)));
            let handed = Arc::new(AtomicUsize::new(0));
            let (w2, h2) = (w.clone(), handed.clone());
            let consumer = thread::spawn(move || {
                if h2.load(Ordering::Acquire) == 1 {
                    assert!(release(&w2.0, &w2.1, 1), "a queued object was refused");
                }
            });
            let s = sweep_word(1, 0, &w.0, &w.1, |b, _| b);
            if s.queued != 0 {
                handed.store(1, Ordering::Release);
            }
            consumer.join().unwrap();
            assert_eq!(s.queued, 1);
        });
    }

    /// The heap's hand-off: the sweep appends the object to a list that another thread
    /// drains, and the drainer releases what it pops at once. `record` runs under the list's
    /// lock before the append, so a popped object is always found queued (the heap once
    /// recorded after the append and its lock, and refused such objects).
    #[test]
    fn an_object_handed_over_through_a_shared_list_is_never_refused() {
        loom::model(|| {
            let w = Arc::new((AtomicU64::new(1), AtomicU64::new(0)));
            let list = Arc::new(crate::loom::Mutex::new(Vec::<u64>::new()));
            let drainer = {
                let (w, list) = (w.clone(), list.clone());
                thread::spawn(move || {
                    let popped = list.lock().unwrap().pop();
                    if let Some(bit) = popped {
                        assert!(release(&w.0, &w.1, bit), "a handed-over object was refused");
                    }
                })
            };
            let s = sweep_word(1, 0, &w.0, &w.1, |bits, record| {
                let mut l = list.lock().unwrap();
                record(bits);
                l.push(bits);
                bits
            });
            assert_eq!(s.queued, 1);
            drainer.join().unwrap();
        });
    }
}
