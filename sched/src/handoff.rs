//! Giving up a P whose holder is about to block: the check for queued work and the release
//! happen under the global queue's lock, so no goroutine queued meanwhile is stranded.
//!
//! The race it closes: `blocking` used to look at the global queue without its lock, find
//! it empty, and then put its P on the idle list. A goroutine queued between the two found
//! no idle P in its enqueuer's `wakep` (the P was not idle yet) and nobody looked at the
//! queue again; if the blocking call waited on that goroutine, the program hung. Under the
//! lock, an enqueuer either pushes before our look (we see the work and hand the P to an M)
//! or after the P is counted idle (its `wakep`, which follows the push, sees the idle P and
//! starts an M). `go_idle` follows the same order.

use crate::globalq::GlobalQueue;

/// Releases a P: when its local queue is empty and the global queue is empty, calls `idle`
/// (which puts the P on the idle list and counts it in `npidle`) while still holding the
/// global queue's lock, and returns `true`. Otherwise returns `false` and the caller hands
/// the P to an M to run the work.
pub(crate) fn release_p<T>(
    global: &GlobalQueue<T>,
    local_empty: bool,
    idle: impl FnOnce(),
) -> bool {
    let q = global.lock();
    if !local_empty || q.len() > 0 {
        return false;
    }
    idle();
    drop(q);
    true
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::Arc;
    use crate::spinning::Spinning;
    use loom::thread;
    use std::ptr::NonNull;

    /// A P released by `blocking` against a goroutine queued from another thread: either the
    /// releaser sees the goroutine (and hands the P to an M), or the enqueuer's `wakep` sees
    /// the idle P and claims a spinner. Never neither.
    #[test]
    fn loom_blocking_hand_off_never_strands_a_queued_goroutine() {
        loom::model(|| {
            let global = Arc::new(GlobalQueue::<u8>::default());
            let spin = Arc::new(Spinning::default());
            let enqueuer = {
                let (global, spin) = (global.clone(), spin.clone());
                thread::spawn(move || {
                    let g = NonNull::new(Box::into_raw(Box::new(7u8))).unwrap();
                    global.push(g);
                    spin.try_claim_spinner()
                })
            };
            let idled = release_p(&global, true, || spin.p_idled());
            let woke = enqueuer.join().unwrap();
            assert!(
                !idled || woke,
                "the P went idle without seeing the goroutine, and nobody was woken"
            );
            while let Some(g) = global.lock().pop() {
                // SAFETY: the only pointer to the box pushed above.
                drop(unsafe { Box::from_raw(g.as_ptr()) });
            }
        });
    }
}
