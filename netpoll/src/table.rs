//! The descriptor table: descriptors in fixed chunks that never move or shrink, found by
//! index without a lock, recycled through a free list.
//!
//! A closed descriptor may still be named by events that a poll round fetched before the fd
//! was deregistered. Such a descriptor waits in `limbo`, tagged with the (odd) poll round that
//! was in flight when it was released, and is reused only once that round has finished, so a
//! stale event can never reach its next owner; the sequence number in every event guards the
//! remaining case of a kernel fd that outlives its registration (a dup'd fd).

use crate::desc::PollDesc;
use crate::loom::{AtomicPtr, CHUNK, MAX_CHUNKS, Mutex, Ordering};
use std::io;

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
    /// Indexes released while poll round `tag` (odd) was in flight.
    limbo: Vec<(u32, u64)>,
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

    /// Take a descriptor for a new owner. `round` is the poller's current round counter:
    /// limbo entries whose round has finished become reusable.
    pub(crate) fn alloc(&self, round: u64) -> io::Result<(u32, &PollDesc)> {
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        if !a.limbo.is_empty() {
            let Alloc { free, limbo, .. } = &mut *a;
            limbo.retain(|&(index, tag)| {
                let done = round > tag;
                if done {
                    free.push(index);
                }
                !done
            });
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

    /// Give a descriptor back. `round` is the poller's round counter read after the fd was
    /// deregistered: odd means a poll round was in flight and may still hold its events.
    pub(crate) fn release(&self, index: u32, round: u64) {
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        if round % 2 == 1 {
            a.limbo.push((index, round));
        } else {
            a.free.push(index);
        }
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

    #[test]
    fn released_during_a_round_waits_in_limbo_until_it_ends() {
        let t = Table::new();
        let (a, _) = t.alloc(0).unwrap();
        let (b, _) = t.alloc(0).unwrap();
        // `a` released while round 3 is in flight (odd), `b` between rounds.
        t.release(a, 3);
        t.release(b, 4);
        // Round 3 still in flight: only `b` comes back.
        assert_eq!(t.alloc(3).unwrap().0, b);
        let (c, _) = t.alloc(3).unwrap();
        assert_ne!(
            c, a,
            "descriptor reused while a round that saw its events was in flight"
        );
        // Round 3 finished: `a` is reusable.
        assert_eq!(t.alloc(4).unwrap().0, a);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "three full chunks take about 3 minutes under Miri; the limbo test covers chunk access"
    )]
    fn indexes_span_chunks_and_stay_put() {
        let t = Table::new();
        let mut seen = Vec::new();
        for _ in 0..(3 * CHUNK + 1) {
            let (i, d) = t.alloc(0).unwrap();
            seen.push((i, d as *const PollDesc));
        }
        for &(i, p) in &seen {
            assert!(std::ptr::eq(t.get(i).unwrap(), p));
        }
        assert!(t.get(seen.len() as u32 + CHUNK as u32).is_none());
    }
}
