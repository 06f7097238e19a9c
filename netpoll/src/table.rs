//! The descriptor table: descriptors in fixed chunks that never move or shrink, found by
//! index without a lock, recycled through a free list.
//!
//! A closed descriptor may still be named by events that a poll round fetched before the fd
//! was deregistered. Such a descriptor waits in `limbo`, tagged with the (odd) poll round that
//! was in flight when it was released, and is reused only once that round has finished, so a
//! stale event can never reach its next owner; the sequence number in every event guards the
//! remaining case of a kernel fd that outlives its registration (a dup'd fd).
//!
//! The round is read under the table's lock, so limbo is ordered by tag: reclaiming pops
//! finished entries off its front and never scans it. And it stays short: once
//! [`LIMBO_WAKE`] descriptors wait for the round in flight, `release` asks the poller to wake
//! that round's poll (which may be sleeping without a timeout), so a burst of closes on an
//! idle poller recycles descriptors instead of taking fresh ones.

use crate::desc::PollDesc;
use crate::loom::{AtomicPtr, AtomicU64, CHUNK, MAX_CHUNKS, Mutex, Ordering};
use std::collections::VecDeque;
use std::io;

/// Descriptors waiting for the round in flight beyond which `release` asks for a wake-up.
#[cfg(not(loom))]
pub(crate) const LIMBO_WAKE: usize = 64;
#[cfg(loom)]
pub(crate) const LIMBO_WAKE: usize = 2;

/// Descriptor storage and the free list.
#[derive(Debug)]
pub(crate) struct Table {
    /// Chunk `c` holds descriptors `c * CHUNK ..`. Each slot is written once (null → chunk,
    /// Release, under `alloc`'s lock) and read by `get` (Acquire, no lock); chunks are freed
    /// only by `Drop`, when no reference can remain.
    chunks: Box<[AtomicPtr<PollDesc>]>,
    /// Allocation state; `open` and `close` take it, polls never do.
    alloc: Mutex<Alloc>,
}

#[derive(Debug, Default)]
struct Alloc {
    /// Descriptors ever created (the next fresh index).
    created: u32,
    /// Indexes ready for reuse.
    free: Vec<u32>,
    /// Indexes released while poll round `tag` (odd) was in flight, in release order, hence
    /// ordered by tag (the round is read under the lock and never decreases).
    limbo: VecDeque<(u32, u64)>,
}

impl Alloc {
    /// Move the limbo entries whose round has finished (`round > tag`) to the free list.
    fn reclaim(&mut self, round: u64) {
        while let Some(&(index, tag)) = self.limbo.front() {
            if round <= tag {
                break;
            }
            self.limbo.pop_front();
            self.free.push(index);
        }
    }
}

impl Table {
    pub(crate) fn new() -> Self {
        let chunks = (0..MAX_CHUNKS)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect();
        Table {
            chunks,
            alloc: Mutex::new(Alloc::default()),
        }
    }

    /// The descriptor at `index`, if it was ever created.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&PollDesc> {
        let (c, i) = (index as usize / CHUNK, index as usize % CHUNK);
        // Acquire pairs with the Release store that published the chunk in `alloc`.
        let chunk = self.chunks.get(c)?.load(Ordering::Acquire);
        if chunk.is_null() {
            return None;
        }
        // SAFETY: a published chunk points to CHUNK initialised descriptors that stay alive
        // and in place until the table is dropped, which needs `&mut self`; `i < CHUNK`.
        Some(unsafe { &*chunk.add(i) })
    }

    /// Take a descriptor for a new owner. `round` is the poller's round counter: limbo
    /// entries whose round has finished become reusable.
    pub(crate) fn alloc(&self, round: &AtomicU64) -> io::Result<(u32, &PollDesc)> {
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        if !a.limbo.is_empty() {
            // Acquire: pairs with the poll's SeqCst increment that ended the round, after
            // which no event of that round is dispatched any more.
            a.reclaim(round.load(Ordering::Acquire));
        }
        let index = match a.free.pop() {
            Some(i) => i,
            None => {
                let index = a.created;
                let c = index as usize / CHUNK;
                if c >= MAX_CHUNKS {
                    return Err(io::Error::new(
                        io::ErrorKind::OutOfMemory,
                        format!(
                            "netpoll: all {} poll descriptors are in use; close some first",
                            CHUNK * MAX_CHUNKS
                        ),
                    ));
                }
                if (index as usize).is_multiple_of(CHUNK) {
                    let chunk: Box<[PollDesc]> = (0..CHUNK).map(|_| PollDesc::new()).collect();
                    let ptr = Box::into_raw(chunk) as *mut PollDesc;
                    // Release publishes the initialised chunk to `get`.
                    self.chunks[c].store(ptr, Ordering::Release);
                }
                a.created += 1;
                index
            }
        };
        drop(a);
        let desc = self
            .get(index)
            .expect("runtime: allocated poll descriptor missing");
        Ok((index, desc))
    }

    /// Give a descriptor back, after its fd was deregistered (or never registered).
    /// `round` is the poller's round counter: odd means a poll round is in flight and may
    /// still hold the descriptor's events. Returns `true` when the round in flight holds
    /// [`LIMBO_WAKE`] descriptors or more: the caller should wake the poll.
    pub(crate) fn release(&self, index: u32, round: &AtomicU64) -> bool {
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        // An RMW, not a load, read under the lock: a poll round that starts later increments
        // `round` after this in its modification order, so it is ordered after the
        // deregistration; and tags are pushed in non-decreasing order.
        let round = round.fetch_add(0, Ordering::SeqCst);
        a.reclaim(round);
        if round % 2 == 1 {
            a.limbo.push_back((index, round));
            a.limbo.len() >= LIMBO_WAKE
        } else {
            a.free.push(index);
            false
        }
    }

    /// Give back a descriptor that was never registered (no event can name it).
    pub(crate) fn release_unregistered(&self, index: u32) {
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        a.free.push(index);
    }

    /// Descriptors ever created (valid indexes are below this).
    pub(crate) fn created(&self) -> u32 {
        self.alloc.lock().unwrap_or_else(|e| e.into_inner()).created
    }

    /// Descriptors currently handed out or waiting in limbo (for tests).
    #[allow(dead_code)]
    pub(crate) fn in_use(&self) -> usize {
        let a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        a.created as usize - a.free.len()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        for slot in self.chunks.iter() {
            let ptr = slot.load(Ordering::Acquire);
            if !ptr.is_null() {
                let slice = std::ptr::slice_from_raw_parts_mut(ptr, CHUNK);
                // SAFETY: `ptr` came from `Box::into_raw` of a CHUNK-long boxed slice in
                // `alloc`, and `&mut self` proves no descriptor reference is still alive.
                drop(unsafe { Box::from_raw(slice) });
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round(r: u64) -> AtomicU64 {
        AtomicU64::new(r)
    }

    #[test]
    fn released_during_a_round_waits_in_limbo_until_it_ends() {
        let t = Table::new();
        let (a, _) = t.alloc(&round(0)).unwrap();
        let (b, _) = t.alloc(&round(0)).unwrap();
        // `b` released between rounds, then `a` while round 3 is in flight (odd).
        assert!(!t.release(b, &round(2)));
        assert!(!t.release(a, &round(3)));
        // Round 3 still in flight: only `b` comes back.
        assert_eq!(t.alloc(&round(3)).unwrap().0, b);
        let (c, _) = t.alloc(&round(3)).unwrap();
        assert_ne!(
            c, a,
            "descriptor reused while a round that saw its events was in flight"
        );
        // Round 3 finished: `a` is reusable.
        assert_eq!(t.alloc(&round(4)).unwrap().0, a);
    }

    /// Closes during one long round ask for a wake-up once LIMBO_WAKE descriptors wait, and
    /// the round's end frees them all (issue 13: limbo grew without bound and every open
    /// scanned it).
    #[test]
    fn limbo_asks_for_a_wake_up_and_drains_in_order() {
        let t = Table::new();
        let r = round(5);
        let idx: Vec<u32> = (0..LIMBO_WAKE + 3)
            .map(|_| t.alloc(&r).unwrap().0)
            .collect();
        for (k, &i) in idx.iter().enumerate() {
            assert_eq!(t.release(i, &r), k + 1 >= LIMBO_WAKE, "release {k}");
        }
        assert_eq!(t.in_use(), idx.len());
        // Still round 5: nothing is reusable, a fresh descriptor is created.
        let (fresh, _) = t.alloc(&r).unwrap();
        assert!(!idx.contains(&fresh));
        // Round 5 ended and 7 is in flight: everything from 5 comes back.
        r.store(7, Ordering::Relaxed);
        assert!(!t.release(fresh, &r), "limbo of the new round is short");
        assert_eq!(t.in_use(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc,
        /// Release the k-th live descriptor (modulo their number).
        Release(usize),
        /// Advance the round counter by one (start or end a round).
        Tick,
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Random alloc / release / round sequences: a descriptor is never handed out twice,
        /// never reused while a round that was in flight at its release is still running, and
        /// everything released is reusable once that round ends.
        #[test]
        fn table_matches_model(ops in prop::collection::vec(
            prop_oneof![Just(Op::Alloc), (0usize..8).prop_map(Op::Release), Just(Op::Tick)],
            0..80,
        )) {
            let t = Table::new();
            let r = round(0);
            let mut live: Vec<u32> = Vec::new();
            // Released index -> the round that must have ended before it comes back.
            let mut held: std::collections::BTreeMap<u32, Option<u64>> = Default::default();
            for op in ops {
                let now = r.load(Ordering::Relaxed);
                match op {
                    Op::Alloc => {
                        let (i, _) = t.alloc(&r).unwrap();
                        prop_assert!(!live.contains(&i), "handed out twice");
                        if let Some(Some(tag)) = held.get(&i) {
                            prop_assert!(now > *tag, "reused during round {}", tag);
                        }
                        held.remove(&i);
                        live.push(i);
                    }
                    Op::Release(k) if !live.is_empty() => {
                        let i = live.swap_remove(k % live.len());
                        let _ = t.release(i, &r);
                        held.insert(i, (now % 2 == 1).then_some(now));
                    }
                    Op::Release(_) => {}
                    Op::Tick => r.store(now + 1, Ordering::Relaxed),
                }
                let waiting = held.values().filter(|t| t.is_some_and(|t| t >= now)).count();
                prop_assert!(t.in_use() >= live.len());
                prop_assert!(t.in_use() <= live.len() + waiting + held.len());
            }
        }
    }

    #[test]
    fn indexes_span_chunks_and_stay_put() {
        let t = Table::new();
        let r = round(0);
        let mut seen = Vec::new();
        for _ in 0..(3 * CHUNK + 1) {
            let (i, d) = t.alloc(&r).unwrap();
            seen.push((i, d as *const PollDesc));
        }
        for &(i, p) in &seen {
            assert!(std::ptr::eq(t.get(i).unwrap(), p));
        }
        assert!(t.get(seen.len() as u32 + CHUNK as u32).is_none());
    }
}

/// Loom model of the reuse delay: a poll round that fetched an event for a descriptor races
/// the descriptor's close and reopen by a new owner. The kernel's interest list is a mutex
/// (a syscall orders like one). Whatever the interleaving, the event's readiness never lands
/// in the new owner's semaphore: either the round saw the close (sequence number, CLOSING),
/// or the descriptor waited in limbo until the round had recorded its events.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::desc::{CLOSING, Direction, info_seq};
    use crate::loom::{Arc, thread};
    use crate::sema::EMPTY;

    #[test]
    fn a_stale_event_never_reaches_the_next_owner() {
        loom::model(|| {
            let t = Arc::new(Table::new());
            let round = Arc::new(AtomicU64::new(0));
            // The first owner, sequence number 1, registered with the "kernel".
            let (i, d) = t.alloc(&round).unwrap();
            d.info.store(1 << 32, Ordering::Release);
            let registered = Arc::new(Mutex::new(true));
            let poller = {
                let (t, round, registered) =
                    (Arc::clone(&t), Arc::clone(&round), Arc::clone(&registered));
                thread::spawn(move || {
                    round.fetch_add(1, Ordering::SeqCst); // the round starts
                    let fetched = *registered.lock().unwrap(); // the kernel wait
                    if fetched {
                        let d = t.get(i).unwrap();
                        let info = d.info();
                        if info_seq(info) == 1 && info & CLOSING == 0 {
                            assert!(d.ready(Direction::Read).is_none());
                        }
                    }
                    round.fetch_add(1, Ordering::SeqCst); // every event recorded
                })
            };
            // Close: evict, deregister, release; then a new owner opens.
            let _ = d.flag_and_release(CLOSING, &[Direction::Read, Direction::Write]);
            *registered.lock().unwrap() = false;
            let _ = t.release(i, &round);
            let (j, d2) = t.alloc(&round).unwrap();
            if j == i {
                d2.read.reset();
                d2.write.reset();
                d2.info.store(2 << 32, Ordering::Release);
            }
            poller.join().unwrap();
            if j == i {
                assert_eq!(
                    d2.read.reset(),
                    EMPTY,
                    "the old owner's event reached the new owner"
                );
            }
        });
    }
}
