//! The idle / spinning counts and the handshake that keeps a wake-up from being lost.
//!
//! Work submission (a spawn, a ready, a spill to the global queue) does: make the work
//! visible, a StoreLoad barrier, then look at the counts — if a P is idle and no M is
//! spinning, start a spinning M. A spinning M that found nothing does: leave the spinning
//! count, a StoreLoad barrier, then look at every queue once more. The two SeqCst fences make
//! it impossible for both sides to miss each other (Go's proc.go describes the same
//! pattern). They are fences rather than SeqCst accesses because the work itself is published
//! with weaker orderings (a run queue's Release tail store), and because loom models fences
//! but treats SeqCst accesses as AcqRel (loom#180).

use crate::loom::{AtomicUsize, Ordering, fence};

#[derive(Debug, Default)]
pub(crate) struct Spinning {
    /// Idle Ps. Changed under the scheduler lock; read lock-free by submitters.
    npidle: AtomicUsize,
    /// Spinning Ms (holding a P, looking for work). Changed by Ms starting or stopping to
    /// spin and by `try_claim_spinner`; read lock-free.
    nmspinning: AtomicUsize,
}

impl Spinning {
    pub(crate) fn npidle(&self) -> usize {
        self.npidle.load(Ordering::SeqCst)
    }

    pub(crate) fn nmspinning(&self) -> usize {
        self.nmspinning.load(Ordering::SeqCst)
    }

    /// A P went idle (caller holds the scheduler lock).
    pub(crate) fn p_idled(&self) {
        self.npidle.fetch_add(1, Ordering::SeqCst);
    }

    /// An idle P was taken (caller holds the scheduler lock).
    pub(crate) fn p_taken(&self) {
        self.npidle.fetch_sub(1, Ordering::SeqCst);
    }

    /// Submitter, after making work visible: whether the caller must start a spinning M. On
    /// `true` the spinning count already includes that M; give it back with `stop_spinning`
    /// if no M can be started.
    #[inline]
    pub(crate) fn try_claim_spinner(&self) -> bool {
        // StoreLoad: pairs with the fence in `stop_spinning`.
        fence(Ordering::SeqCst);
        if self.npidle.load(Ordering::Relaxed) == 0 || self.nmspinning.load(Ordering::Relaxed) != 0
        {
            return false;
        }
        self.nmspinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// As [`try_claim_spinner`](Self::try_claim_spinner), for a submitter whose work was
    /// published by a SeqCst read-modify-write (`RunQueue::put_next`'s swap): that RMW and
    /// SeqCst loads of the counts take the place of the fence. Suppose both sides missed:
    /// the submitter's count load L read before the spinner's decrement D, and the
    /// spinner's look at the queue, after its fence Y, read before the submitter's swap A.
    /// In the single total order S of SeqCst operations and fences, C++20's coherence rules
    /// (which Rust follows) then put L before D (both SeqCst) and Y before A (a SeqCst fence
    /// happens before a read that is coherence-ordered before the SeqCst A); program order
    /// puts A before L and D before Y. So Y < A < L < D < Y: a cycle, hence no lost
    /// wake-up. (The same holds against a P going idle: its count change happens before its
    /// own fence.) The fence saved is a `lock or` on every ready; under loom, which treats
    /// SeqCst accesses as AcqRel, the fence stays.
    #[inline]
    pub(crate) fn try_claim_spinner_after_sc(&self) -> bool {
        #[cfg(loom)]
        fence(Ordering::SeqCst);
        if self.npidle.load(Ordering::SeqCst) == 0 || self.nmspinning.load(Ordering::SeqCst) != 0 {
            return false;
        }
        self.nmspinning
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// An M starts spinning on its own (it holds a P and found no local work).
    pub(crate) fn start_spinning(&self) {
        self.nmspinning.fetch_add(1, Ordering::SeqCst);
    }

    /// An M stops spinning. Returns how many were spinning before. A caller that found no
    /// work must look at every queue again after this (the fence orders that look after the
    /// decrement; it pairs with the one in `try_claim_spinner`).
    pub(crate) fn stop_spinning(&self) -> usize {
        let before = self.nmspinning.fetch_sub(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        before
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::Arc;
    use loom::thread;

    /// A submitter publishes work while the last spinning M gives up: either the submitter
    /// claims a new spinner, or the M sees the work on its final look. Never neither.
    #[test]
    fn loom_no_lost_wakeup_between_submit_and_spinner_exit() {
        loom::model(|| {
            let s = Arc::new(Spinning::default());
            s.p_idled(); // the spinner's P, about to be idle, is already counted
            s.start_spinning();
            let queue = Arc::new(AtomicUsize::new(0));
            let submitter = {
                let (s, queue) = (s.clone(), queue.clone());
                thread::spawn(move || {
                    // Published with Release, as a run queue's tail.
                    queue.store(1, Ordering::Release);
                    s.try_claim_spinner()
                })
            };
            s.stop_spinning();
            let seen = queue.load(Ordering::Acquire) == 1;
            let woke = submitter.join().unwrap();
            assert!(seen || woke, "lost wake-up: work queued, nobody looking");
        });
    }
}
