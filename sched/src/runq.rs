//! A P's local run queue: a fixed ring owned by one M, stolen from by others, plus `runnext`.
//!
//! The owner pushes at `tail` and pops at `head`; thieves take the older half at `head`.
//! `tail` is written only by the owner (Release, pairs with the Acquire loads in `pop` and
//! `steal_into`); `head` moves only by compare-and-swap, so each item is taken by exactly one
//! party. Slots are atomic pointers, so a thief that reads a slot the owner is recycling reads
//! a stale value, not torn memory, and then loses its CAS and discards what it read.

use crate::loom::{AtomicPtr, AtomicU32, Ordering};
use std::ptr::{self, NonNull};

/// Ring capacity (Go's 256); tiny under loom to reach the full and wrap-around states.
pub(crate) const CAPACITY: usize = if cfg!(loom) { 4 } else { 256 };

#[derive(Debug)]
pub(crate) struct RunQueue<T> {
    /// Next slot to take. CAS by the owner (`pop`) and thieves (`steal_into`).
    head: AtomicU32,
    /// Next slot to fill. Written only by the owner.
    tail: AtomicU32,
    /// The item to run next, ahead of the ring. Swapped by the owner; taken by thieves only
    /// when the ring is empty.
    runnext: AtomicPtr<T>,
    buf: Box<[AtomicPtr<T>]>,
}

// SAFETY: the queue only moves pointers between threads; ownership of what they point to is
// the caller's business (items are handed over exactly once, see the module docs).
unsafe impl<T> Send for RunQueue<T> {}
// SAFETY: as above; every shared field is atomic.
unsafe impl<T> Sync for RunQueue<T> {}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        RunQueue {
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            runnext: AtomicPtr::new(ptr::null_mut()),
            buf: (0..CAPACITY)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
        }
    }
}

impl<T> RunQueue<T> {
    #[inline]
    fn slot(&self, i: u32) -> &AtomicPtr<T> {
        &self.buf[i as usize % CAPACITY]
    }

    /// Owner only: appends at the tail. When the ring is full, takes the older half out of it
    /// and returns that batch plus `item`, for the caller to move to the global queue.
    #[inline]
    pub(crate) fn push_back(&self, item: NonNull<T>) -> Result<(), Vec<NonNull<T>>> {
        loop {
            // Acquire: pairs with the head CAS of `pop` / `steal_into`, so the slot we are
            // about to overwrite has been read by whoever took it.
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed);
            if (t.wrapping_sub(h) as usize) < CAPACITY {
                self.slot(t).store(item.as_ptr(), Ordering::Relaxed);
                // Release: publishes the slot to `pop` / `steal_into`'s Acquire tail load.
                self.tail.store(t.wrapping_add(1), Ordering::Release);
                return Ok(());
            }
            if let Some(batch) = self.take_half_for_overflow(h, t, item) {
                return Err(batch);
            }
        }
    }

    #[cold]
    fn take_half_for_overflow(&self, h: u32, t: u32, item: NonNull<T>) -> Option<Vec<NonNull<T>>> {
        let n = t.wrapping_sub(h) / 2;
        let mut batch = Vec::with_capacity(n as usize + 1);
        for i in 0..n {
            let p = self.slot(h.wrapping_add(i)).load(Ordering::Relaxed);
            batch.push(NonNull::new(p).expect("runtime: empty slot in a full run queue"));
        }
        // AcqRel: claims the batch against thieves (pairs with their head CAS).
        if self
            .head
            .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return None; // a thief took some; there is room now
        }
        batch.push(item);
        Some(batch)
    }

    /// Owner only: makes `item` the next to run; the previous `runnext`, if any, is returned
    /// for the caller to push at the tail.
    #[inline]
    pub(crate) fn put_next(&self, item: NonNull<T>) -> Option<NonNull<T>> {
        // Release publishes `item` to a thief's Acquire swap; Acquire takes ownership of the
        // displaced one. SeqCst besides: the swap is also the submitter's half of the
        // spinning handshake (`Spinning::try_claim_spinner_after_sc`), and costs no more
        // than AcqRel where it matters (x86's `xchg`).
        NonNull::new(self.runnext.swap(item.as_ptr(), Ordering::SeqCst))
    }

    /// Owner only: takes `runnext`, else the oldest item of the ring.
    #[inline]
    pub(crate) fn pop(&self) -> Option<NonNull<T>> {
        if !self.runnext.load(Ordering::Relaxed).is_null() {
            // Acquire: pairs with the Release half of `put_next`'s swap.
            if let Some(p) = NonNull::new(self.runnext.swap(ptr::null_mut(), Ordering::Acquire)) {
                return Some(p);
            }
        }
        self.pop_ring()
    }

    /// Owner only: where the ring's head is (Relaxed: a hint for fairness — whether the ring
    /// moved between two looks).
    #[inline]
    pub(crate) fn ring_head(&self) -> u32 {
        self.head.load(Ordering::Relaxed)
    }

    /// Owner only: takes the oldest item of the ring, leaving `runnext` alone (so that two
    /// goroutines handing the P to each other through `runnext` cannot starve the ring).
    #[inline]
    pub(crate) fn pop_ring(&self) -> Option<NonNull<T>> {
        loop {
            // Acquire: pairs with thieves' head CAS.
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Relaxed);
            if h == t {
                return None;
            }
            let p = self.slot(h).load(Ordering::Relaxed);
            // Release: tells `push_back` (Acquire head load) the slot may be reused.
            if self
                .head
                .compare_exchange(h, h.wrapping_add(1), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return Some(NonNull::new(p).expect("runtime: empty slot in a run queue"));
            }
        }
    }

    /// Thief: moves half of `self`'s ring into `dst` (which must be empty and owned by the
    /// caller) and returns one item to run at once. Takes `runnext` only when the ring is
    /// empty. (The scheduler steals in two steps, `steal_ring_into` then `steal_next`, to
    /// give the victim time between them.)
    #[cfg(test)]
    pub(crate) fn steal_into(&self, dst: &RunQueue<T>) -> Option<NonNull<T>> {
        self.steal_ring_into(dst)
            .or_else(|| self.steal_next(self.peek_next()?))
    }

    /// Thief: `runnext` as seen now (Relaxed: a hint; `steal_next`'s CAS decides).
    #[inline]
    pub(crate) fn peek_next(&self) -> Option<NonNull<T>> {
        NonNull::new(self.runnext.load(Ordering::Relaxed))
    }

    /// Thief: takes `runnext` if it still holds `seen` (whatever happened in between, an
    /// item in `runnext` is queued and not running, so taking it is sound).
    pub(crate) fn steal_next(&self, seen: NonNull<T>) -> Option<NonNull<T>> {
        // Acquire: pairs with `put_next`'s Release.
        self.runnext
            .compare_exchange(
                seen.as_ptr(),
                ptr::null_mut(),
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .ok()
            .and_then(NonNull::new)
    }

    /// Thief: as `steal_into`, from the ring only.
    pub(crate) fn steal_ring_into(&self, dst: &RunQueue<T>) -> Option<NonNull<T>> {
        self.steal_ring_upto(dst, CAPACITY as u32)
    }

    /// Owner only: free slots in the ring (a lower bound: thieves only make more).
    pub(crate) fn room(&self) -> u32 {
        // Acquire: pairs with the head CAS of `pop` / `steal_*`, as in `push_back`.
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Relaxed);
        CAPACITY as u32 - t.wrapping_sub(h)
    }

    /// Thief: moves half of `self`'s ring, but at most `max` items, into `dst` (owned by
    /// the caller, with at least `max` free slots: `room`) and returns one of them to run
    /// at once.
    pub(crate) fn steal_ring_upto(&self, dst: &RunQueue<T>, max: u32) -> Option<NonNull<T>> {
        let dt = dst.tail.load(Ordering::Relaxed);
        let n = loop {
            // Acquire on both: head pairs with other consumers' CAS, tail with the owner's
            // Release store, which publishes the slots we read below.
            let h = self.head.load(Ordering::Acquire);
            let t = self.tail.load(Ordering::Acquire);
            let len = t.wrapping_sub(h);
            let n = len - len / 2;
            if n as usize > CAPACITY / 2 {
                continue; // read head and tail at different moments; try again
            }
            let n = n.min(max);
            if n == 0 {
                return None;
            }
            for i in 0..n {
                let p = self.slot(h.wrapping_add(i)).load(Ordering::Relaxed);
                dst.slot(dt.wrapping_add(i)).store(p, Ordering::Relaxed);
            }
            // AcqRel: claims the items (pairs with the owner's pop CAS and other thieves).
            if self
                .head
                .compare_exchange(h, h.wrapping_add(n), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break n;
            }
        };
        let last = dst.slot(dt.wrapping_add(n - 1)).load(Ordering::Relaxed);
        if n > 1 {
            // Release: publishes the copied slots to `dst`'s own consumers.
            dst.tail.store(dt.wrapping_add(n - 1), Ordering::Release);
        }
        Some(NonNull::new(last).expect("runtime: stole an empty slot"))
    }

    /// Approximate number of queued items (including `runnext`); exact for the owner when no
    /// thief is active.
    pub(crate) fn len(&self) -> usize {
        let h = self.head.load(Ordering::Acquire);
        let t = self.tail.load(Ordering::Acquire);
        let ring = (t.wrapping_sub(h) as usize).min(CAPACITY);
        ring + usize::from(!self.runnext.load(Ordering::Acquire).is_null())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;
    use std::sync::Arc;

    fn item(v: usize) -> NonNull<usize> {
        NonNull::new(Box::into_raw(Box::new(v))).unwrap()
    }

    fn take(p: NonNull<usize>) -> usize {
        // SAFETY: every pointer in these models came from `item` and is taken exactly once.
        *unsafe { Box::from_raw(p.as_ptr()) }
    }

    /// Owner pushes (overflowing the ring) and pops while a thief steals: every item is taken
    /// exactly once.
    #[test]
    fn loom_runq_push_pop_steal() {
        loom::model(|| {
            let q = Arc::new(RunQueue::<usize>::default());
            let thief_q = Arc::new(RunQueue::<usize>::default());
            let th = {
                let (q, thief_q) = (q.clone(), thief_q.clone());
                thread::spawn(move || {
                    let mut got = Vec::new();
                    if let Some(p) = q.steal_into(&thief_q) {
                        got.push(take(p));
                    }
                    while let Some(p) = thief_q.pop() {
                        got.push(take(p));
                    }
                    got
                })
            };
            let mut got = Vec::new();
            let mut overflow = Vec::new();
            for v in 0..CAPACITY + 1 {
                if let Err(batch) = q.push_back(item(v)) {
                    overflow.extend(batch.into_iter().map(take));
                }
            }
            if let Some(p) = q.pop() {
                got.push(take(p));
            }
            let stolen = th.join().unwrap();
            while let Some(p) = q.pop() {
                got.push(take(p));
            }
            got.extend(stolen);
            got.extend(overflow);
            got.sort();
            assert_eq!(got, (0..CAPACITY + 1).collect::<Vec<_>>());
        });
    }

    /// A busy P's rescue (`M::rescue_queue`): it steals into its own ring, which already
    /// holds work, no more than that ring's room, while the victim pops from its own ring
    /// — nothing lost, nothing taken twice, nothing overwritten.
    #[test]
    fn loom_runq_bounded_steal_into_a_busy_queue() {
        loom::model(|| {
            let victim = Arc::new(RunQueue::<usize>::default());
            let busy = Arc::new(RunQueue::<usize>::default());
            for v in 0..3 {
                victim.push_back(item(v)).unwrap();
            }
            for v in 10..10 + CAPACITY - 1 {
                busy.push_back(item(v)).unwrap();
            }
            let th = {
                let (victim, busy) = (victim.clone(), busy.clone());
                thread::spawn(move || {
                    let mut got = Vec::new();
                    let room = busy.room();
                    assert_eq!(room, 1);
                    if let Some(p) = victim.steal_ring_upto(&busy, room) {
                        got.push(take(p));
                    }
                    while let Some(p) = busy.pop_ring() {
                        got.push(take(p));
                    }
                    got
                })
            };
            let mut got = Vec::new();
            if let Some(p) = victim.pop_ring() {
                got.push(take(p));
            }
            got.extend(th.join().unwrap());
            while let Some(p) = victim.pop() {
                got.push(take(p));
            }
            got.sort();
            let want: Vec<usize> = (0..3).chain(10..10 + CAPACITY - 1).collect();
            assert_eq!(got, want);
        });
    }

    /// `runnext` against a thief: the displaced and the stolen items are never lost nor
    /// duplicated.
    #[test]
    fn loom_runq_runnext_steal() {
        loom::model(|| {
            let q = Arc::new(RunQueue::<usize>::default());
            let thief_q = Arc::new(RunQueue::<usize>::default());
            assert!(q.put_next(item(1)).is_none());
            let th = {
                let (q, thief_q) = (q.clone(), thief_q.clone());
                thread::spawn(move || q.steal_into(&thief_q).map(take))
            };
            let mut got = Vec::new();
            if let Some(old) = q.put_next(item(2)) {
                q.push_back(old).unwrap();
            }
            while let Some(p) = q.pop() {
                got.push(take(p));
            }
            got.extend(th.join().unwrap());
            got.sort();
            assert_eq!(got, vec![1, 2]);
        });
    }

    /// A thief that saw `runnext` and takes it later, against an owner that pops it and
    /// puts another: the thief gets the item it saw only if it is still there, and no item
    /// is lost nor taken twice.
    #[test]
    fn loom_runq_steal_next_after_a_look() {
        loom::model(|| {
            let q = Arc::new(RunQueue::<usize>::default());
            assert!(q.put_next(item(1)).is_none());
            let th = {
                let q = q.clone();
                thread::spawn(move || {
                    let seen = q.peek_next()?;
                    thread::yield_now();
                    q.steal_next(seen).map(take)
                })
            };
            let mut got = Vec::new();
            got.extend(q.pop().map(take));
            if let Some(old) = q.put_next(item(2)) {
                q.push_back(old).unwrap();
            }
            while let Some(p) = q.pop() {
                got.push(take(p));
            }
            got.extend(th.join().unwrap());
            got.sort();
            assert_eq!(got, vec![1, 2]);
        });
    }

    /// Two thieves against each other and the owner.
    #[test]
    fn loom_runq_two_thieves() {
        loom::model(|| {
            let q = Arc::new(RunQueue::<usize>::default());
            for v in 0..3 {
                q.push_back(item(v)).unwrap();
            }
            let thieves: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    thread::spawn(move || {
                        let mine = RunQueue::<usize>::default();
                        let mut got = Vec::new();
                        if let Some(p) = q.steal_into(&mine) {
                            got.push(take(p));
                        }
                        while let Some(p) = mine.pop() {
                            got.push(take(p));
                        }
                        got
                    })
                })
                .collect();
            let mut got = Vec::new();
            while let Some(p) = q.pop() {
                got.push(take(p));
            }
            for t in thieves {
                got.extend(t.join().unwrap());
            }
            got.sort();
            assert_eq!(got, vec![0, 1, 2]);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A heap item, so that Miri checks every hand-over of a real allocation.
    fn item(v: usize) -> NonNull<usize> {
        NonNull::from(Box::leak(Box::new(v)))
    }

    fn take(p: NonNull<usize>) -> usize {
        // SAFETY: every pointer in these tests came from `item` and is taken exactly once.
        *unsafe { Box::from_raw(p.as_ptr()) }
    }

    fn drain(q: &RunQueue<usize>) -> Vec<usize> {
        std::iter::from_fn(|| q.pop()).map(take).collect()
    }

    #[test]
    fn push_pop_is_fifo_and_runnext_goes_first() {
        let q = RunQueue::<usize>::default();
        assert!(q.is_empty());
        for v in 0..5 {
            q.push_back(item(v)).unwrap();
        }
        assert!(q.put_next(item(10)).is_none());
        let old = q.put_next(item(11)).expect("runnext held 10");
        assert_eq!(take(old), 10);
        assert_eq!(q.len(), 6);
        assert_eq!(drain(&q), [11, 0, 1, 2, 3, 4]);
        assert!(q.is_empty());
        assert!(q.pop().is_none());
    }

    /// A full ring hands back its older half plus the new item, in order, and keeps the
    /// younger half.
    #[test]
    fn overflow_returns_the_older_half_and_the_new_item() {
        let q = RunQueue::<usize>::default();
        for v in 0..CAPACITY {
            q.push_back(item(v)).unwrap();
        }
        assert_eq!(q.len(), CAPACITY);
        let batch = q.push_back(item(CAPACITY)).unwrap_err();
        let batch: Vec<usize> = batch.into_iter().map(take).collect();
        let half = CAPACITY / 2;
        assert_eq!(batch, (0..half).chain([CAPACITY]).collect::<Vec<_>>());
        assert_eq!(drain(&q), (half..CAPACITY).collect::<Vec<_>>());
    }

    /// Head and tail wrap around `u32::MAX` and the ring's end without losing order.
    #[test]
    fn indexes_wrap_around() {
        let q = RunQueue::<usize>::default();
        let start = u32::MAX - 2;
        q.head.store(start, Ordering::Relaxed);
        q.tail.store(start, Ordering::Relaxed);
        for round in 0..3 {
            for v in 0..5 {
                q.push_back(item(round * 10 + v)).unwrap();
            }
            let want: Vec<usize> = (0..5).map(|v| round * 10 + v).collect();
            assert_eq!(drain(&q), want);
        }
        assert!(q.head.load(Ordering::Relaxed) < start);
    }

    /// A thief takes the older half (rounded up), runs the youngest of it at once and keeps
    /// the rest in its own queue; `runnext` is stolen only from an empty ring.
    #[test]
    fn steal_takes_half_then_runnext() {
        let q = RunQueue::<usize>::default();
        let mine = RunQueue::<usize>::default();
        for v in 0..5 {
            q.push_back(item(v)).unwrap();
        }
        assert!(q.put_next(item(9)).is_none());
        assert_eq!(take(q.steal_into(&mine).unwrap()), 2);
        assert_eq!(drain(&mine), [0, 1]);
        assert_eq!(take(q.steal_into(&mine).unwrap()), 3);
        assert!(mine.is_empty());
        assert_eq!(take(q.steal_into(&mine).unwrap()), 4);
        assert_eq!(take(q.steal_into(&mine).unwrap()), 9);
        assert!(q.steal_into(&mine).is_none());
        assert!(q.is_empty() && mine.is_empty());
    }

    /// The owner pushes (overflowing), uses `runnext` and pops while a thief steals boxed
    /// items and frees them on its own thread: each is taken exactly once, and Miri checks
    /// that no thread touches an item it does not own.
    #[test]
    fn two_threads_hand_over_boxed_items() {
        let n = if cfg!(miri) { 2 * CAPACITY } else { 20_000 };
        let q = Arc::new(RunQueue::<usize>::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thief = {
            let (q, stop) = (q.clone(), stop.clone());
            std::thread::spawn(move || {
                let mine = RunQueue::<usize>::default();
                let mut got = Vec::new();
                loop {
                    let done = stop.load(Ordering::Acquire);
                    got.extend(q.steal_into(&mine).map(take));
                    got.extend(drain(&mine));
                    if done {
                        return got;
                    }
                    std::thread::yield_now();
                }
            })
        };
        let mut got = Vec::new();
        let mut overflow = Vec::new();
        for v in 0..n {
            let pushed = if v % 3 == 0 {
                q.put_next(item(v)).map_or(Ok(()), |old| q.push_back(old))
            } else {
                q.push_back(item(v))
            };
            if let Err(batch) = pushed {
                overflow.extend(batch);
            }
            if v % 5 == 0 {
                got.extend(q.pop().map(take));
            }
        }
        stop.store(true, Ordering::Release);
        got.extend(thief.join().unwrap());
        got.extend(drain(&q));
        got.extend(overflow.into_iter().map(take));
        got.sort_unstable();
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    }

    /// The owner pushes and pops (overflowing into a "global" vector) while two thieves
    /// steal: every item is taken exactly once. Items are bare addresses, never
    /// dereferenced, so they need no provenance.
    #[test]
    fn smoke_runq_concurrent_steal() {
        let n = if cfg!(miri) { 1_000 } else { 200_000usize };
        let q = Arc::new(RunQueue::<usize>::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let (q, stop) = (q.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mine = RunQueue::<usize>::default();
                    let mut got = Vec::new();
                    loop {
                        let done = stop.load(Ordering::Acquire);
                        if let Some(p) = q.steal_into(&mine) {
                            got.push(p.addr().get());
                        }
                        while let Some(p) = mine.pop() {
                            got.push(p.addr().get());
                        }
                        if done {
                            return got;
                        }
                    }
                })
            })
            .collect();
        let mut got = Vec::new();
        let mut overflow = Vec::new();
        for v in 1..=n {
            let p = NonNull::new(ptr::without_provenance_mut::<usize>(v)).unwrap();
            if v % 3 == 0 {
                if let Some(old) = q.put_next(p)
                    && let Err(batch) = q.push_back(old)
                {
                    overflow.extend(batch);
                }
            } else if let Err(batch) = q.push_back(p) {
                overflow.extend(batch);
            }
            if v % 5 == 0
                && let Some(p) = q.pop()
            {
                got.push(p.addr().get());
            }
        }
        stop.store(true, Ordering::Release);
        for t in thieves {
            got.extend(t.join().unwrap());
        }
        while let Some(p) = q.pop() {
            got.push(p.addr().get());
        }
        got.extend(overflow.into_iter().map(|p| p.addr().get()));
        let mut vals = got;
        vals.sort_unstable();
        assert_eq!(vals, (1..=n).collect::<Vec<_>>());
    }
}
