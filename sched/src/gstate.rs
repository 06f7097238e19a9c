//! A goroutine's park state: a one-token protocol between the G parking and its readiers.
//!
//! The word holds `generation << 2 | status`. Status is RUNNING (on a CPU or queued, no
//! token), NOTIFIED (not parked, a token waiting), PARKED (switched out, waiting) or
//! SCANNING (parked and held still by a scanner).
//!
//! * `park` (the G, before switching out) consumes a token if one is there and does not park.
//! * Otherwise the G switches to its M, and the M — only once the G's registers are saved and
//!   its stack is no longer in use — commits RUNNING → PARKED. If a readier slipped a token in
//!   meanwhile, the commit fails and the M runs the G again: a G is never readied while its
//!   stack is still live on some thread.
//! * `ready` turns PARKED into RUNNING (the caller then enqueues the G: exactly one readier
//!   wins that CAS) or RUNNING into NOTIFIED.
//! * Recycling a dead G bumps the generation, so a stale handle's `ready` does nothing.
//! * A scanner may hold a parked G still (PARKED → SCANNING, `begin_scan`) to read its
//!   stack; `ready` waits until it lets go (`end_scan`), so the G never runs while its stack
//!   is read.

use crate::loom::{AtomicU64, Ordering};

const RUNNING: u64 = 0;
const NOTIFIED: u64 = 1;
const PARKED: u64 = 2;
/// Parked, and held still by a scanner (`begin_scan`): readiers wait until `end_scan`.
const SCANNING: u64 = 3;
const STATUS: u64 = 3;

#[derive(Debug, Default)]
pub(crate) struct GState {
    /// Written by the G (token consume), its M (park commit, retire) and readiers (any thread).
    word: AtomicU64,
}

impl GState {
    /// The current generation; read by the running G itself to make handles.
    pub(crate) fn generation(&self) -> u64 {
        self.word.load(Ordering::Relaxed) >> 2
    }

    /// The G, before switching out to park: consumes a pending token. `true`: do not park.
    #[inline]
    pub(crate) fn try_consume_token(&self) -> bool {
        let cur = self.word.load(Ordering::Relaxed);
        cur & STATUS == NOTIFIED
            // Acquire: pairs with `ready`'s Release, so the readier's writes are visible.
            && self
                .word
                .compare_exchange(cur, cur & !STATUS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// The M, after the G switched out to park: `true` if the G is now parked; `false` if a
    /// token arrived since, in which case the G is RUNNING again and must be run.
    #[inline]
    pub(crate) fn commit_park(&self) -> bool {
        let cur = self.word.load(Ordering::Relaxed);
        let generation = cur & !STATUS;
        // Release: publishes the G's saved context to the readier's Acquire CAS in `ready`,
        // which then hands the G to another M.
        match self.word.compare_exchange(
            generation | RUNNING,
            generation | PARKED,
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => true,
            Err(actual) => {
                debug_assert_eq!(actual, generation | NOTIFIED, "runtime: bad park state");
                // Acquire: pairs with `ready`'s Release.
                self.word.swap(generation | RUNNING, Ordering::Acquire);
                false
            }
        }
    }

    /// Any thread: readies the G of generation `generation`. Returns `true` when the G was
    /// parked and the caller must now enqueue it (exactly one caller gets `true` per park).
    pub(crate) fn ready(&self, generation: u64) -> bool {
        // Acquire: pairs with `commit_park`'s Release.
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            if cur >> 2 != generation {
                return false; // a stale handle: that goroutine has exited
            }
            let (next, enqueue) = match cur & STATUS {
                RUNNING => ((cur & !STATUS) | NOTIFIED, false),
                PARKED => (cur & !STATUS, true),
                SCANNING => {
                    // A scanner reads the parked G's stack: wait until it lets go (a scan
                    // is a walk of a few frames; the scanner never waits for us).
                    crate::loom::spin_loop();
                    // Acquire: as the load above.
                    cur = self.word.load(Ordering::Acquire);
                    continue;
                }
                _ => return false, // a token is already waiting
            };
            // AcqRel: Release publishes the readier's writes to the G (paired with the Acquire
            // in `try_consume_token` / `commit_park`); Acquire takes ownership of a parked G.
            match self
                .word
                .compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return enqueue,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Any thread: takes the G of generation `generation` only if it is parked (PARKED →
    /// RUNNING); the caller must then enqueue it, exactly as after `ready` returned `true`.
    /// Otherwise changes nothing and returns `false` (the caller falls back to `ready`).
    #[inline]
    pub(crate) fn ready_if_parked(&self, generation: u64) -> bool {
        let parked = (generation << 2) | PARKED;
        // AcqRel, as in `ready`: Acquire takes ownership of the parked G (pairs with
        // `commit_park`'s Release); Release publishes the readier's earlier writes.
        self.word
            .compare_exchange(
                parked,
                parked & !STATUS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Whether the G is parked now (Relaxed: for goroutine dumps).
    pub(crate) fn is_parked(&self) -> bool {
        matches!(
            self.word.load(Ordering::Relaxed) & STATUS,
            PARKED | SCANNING
        )
    }

    /// A scanner: holds a parked G still (PARKED → SCANNING) so that its stack and saved
    /// context can be read; `ready` waits until `end_scan`. Returns false when the G is not
    /// parked. Acquire: pairs with `commit_park`'s Release (the saved context is visible).
    pub(crate) fn begin_scan(&self) -> bool {
        let cur = self.word.load(Ordering::Relaxed);
        cur & STATUS == PARKED
            && self
                .word
                .compare_exchange(
                    cur,
                    (cur & !STATUS) | SCANNING,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// The scanner lets go (SCANNING → PARKED). Release: its reads of the G's stack happen
    /// before a readier's Acquire sees PARKED and hands the G to an M.
    pub(crate) fn end_scan(&self) {
        let cur = self.word.load(Ordering::Relaxed);
        assert_eq!(
            cur & STATUS,
            SCANNING,
            "runtime: end_scan without begin_scan"
        );
        self.word.store((cur & !STATUS) | PARKED, Ordering::Release);
    }

    /// The M, when the G has exited: invalidates every handle to this incarnation.
    pub(crate) fn retire(&self) {
        let cur = self.word.load(Ordering::Relaxed);
        // Release: pairs with `ready`'s Acquire load, which then sees the new generation.
        self.word.store(((cur >> 2) + 1) << 2, Ordering::Release);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::{Arc, AtomicUsize};
    use loom::thread;

    /// A G parks while two readiers race: it runs again exactly when woken, is enqueued at
    /// most once per park, and no wake-up is lost.
    #[test]
    fn loom_gstate_park_vs_ready() {
        loom::model(|| {
            let s = Arc::new(GState::default());
            let enqueued = Arc::new(AtomicUsize::new(0));
            let readiers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, enqueued) = (s.clone(), enqueued.clone());
                    thread::spawn(move || {
                        if s.ready(0) {
                            enqueued.fetch_add(1, Ordering::AcqRel);
                        }
                    })
                })
                .collect();
            // The G parks once.
            let resumed_by_queue = if s.try_consume_token() {
                false
            } else if s.commit_park() {
                // Parked: wait to be enqueued (the M would pick it up from a run queue).
                while enqueued.load(Ordering::Acquire) == 0 {
                    thread::yield_now();
                }
                true
            } else {
                false
            };
            for r in readiers {
                r.join().unwrap();
            }
            assert_eq!(
                enqueued.load(Ordering::Relaxed),
                usize::from(resumed_by_queue)
            );
        });
    }

    /// A readier that first tries `ready_if_parked` and falls back to `ready` (the channel
    /// hand-off) against a G parking: the G is enqueued exactly when it parked, once.
    #[test]
    fn loom_gstate_ready_if_parked_then_ready() {
        loom::model(|| {
            let s = Arc::new(GState::default());
            let enqueued = Arc::new(AtomicUsize::new(0));
            let readier = {
                let (s, enqueued) = (s.clone(), enqueued.clone());
                thread::spawn(move || {
                    if s.ready_if_parked(0) || s.ready(0) {
                        enqueued.fetch_add(1, Ordering::AcqRel);
                    }
                })
            };
            let parked = !s.try_consume_token() && s.commit_park();
            if parked {
                while enqueued.load(Ordering::Acquire) == 0 {
                    thread::yield_now();
                }
            }
            readier.join().unwrap();
            assert_eq!(enqueued.load(Ordering::Relaxed), usize::from(parked));
            assert_ne!(s.word.load(Ordering::Relaxed) & STATUS, PARKED);
        });
    }

    /// A scanner holds a parked G still while a readier readies it and the G, once run,
    /// writes its stack: the scanner's read of the stack never overlaps the G running, and
    /// the G is enqueued exactly once.
    #[test]
    fn loom_gstate_scan_vs_ready() {
        use crate::loom::UnsafeCell;
        loom::model(|| {
            let s = Arc::new(GState::default());
            let stack = Arc::new(UnsafeCell::new(0u32));
            let scanner = {
                let (s, stack) = (s.clone(), stack.clone());
                thread::spawn(move || {
                    if s.begin_scan() {
                        // SAFETY: held still: the G cannot run until `end_scan`.
                        stack.with(|v| unsafe { *v });
                        s.end_scan();
                    }
                })
            };
            let readier = {
                let s = s.clone();
                thread::spawn(move || s.ready(0))
            };
            // The G writes its stack and parks once; it runs again (writing its stack) only
            // once the readier enqueued it, which the join stands for. No spinning here:
            // under bounded preemptions two spinners exhaust loom's branch budget.
            // SAFETY: the G's own stack while it runs; loom checks the claim.
            stack.with_mut(|v| unsafe { *v = 1 });
            let parked = !s.try_consume_token() && s.commit_park();
            let enqueued = readier.join().unwrap();
            assert_eq!(enqueued, parked, "enqueued exactly when it parked");
            // SAFETY: as above.
            stack.with_mut(|v| unsafe { *v = 2 });
            scanner.join().unwrap();
        });
    }

    /// A stale handle cannot ready a recycled G.
    #[test]
    fn loom_gstate_stale_handle() {
        loom::model(|| {
            let s = Arc::new(GState::default());
            s.retire();
            let th = {
                let s = s.clone();
                thread::spawn(move || s.ready(0))
            };
            assert!(s.commit_park());
            assert!(!th.join().unwrap());
            assert!(s.ready(1));
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn status(s: &GState) -> u64 {
        s.word.load(Ordering::Relaxed) & STATUS
    }

    /// Every transition of the token protocol, one thread.
    #[test]
    fn token_state_machine() {
        let s = GState::default();
        assert_eq!((s.generation(), status(&s)), (0, RUNNING));
        // No token: the G switches out and the M parks it.
        assert!(!s.try_consume_token());
        assert!(s.commit_park());
        assert_eq!(status(&s), PARKED);
        // The first readier enqueues it; the next one leaves a token.
        assert!(s.ready(0));
        assert_eq!(status(&s), RUNNING);
        assert!(!s.ready(0));
        assert_eq!(status(&s), NOTIFIED);
        // The token is binary.
        assert!(!s.ready(0));
        assert_eq!(status(&s), NOTIFIED);
        // The G consumes it and does not park.
        assert!(s.try_consume_token());
        assert_eq!(status(&s), RUNNING);
        assert!(!s.try_consume_token());
        // `ready_if_parked` takes only a parked G.
        assert!(!s.ready_if_parked(0));
        assert!(s.commit_park());
        assert!(!s.ready_if_parked(1));
        assert!(s.ready_if_parked(0));
        assert_eq!(status(&s), RUNNING);
        // A token that arrives after the G switched out cancels the park commit.
        assert!(!s.ready(0));
        assert!(!s.commit_park());
        assert_eq!(status(&s), RUNNING);
        assert_eq!(s.generation(), 0);
    }

    /// After `retire`, handles of the old generation do nothing, in any state.
    #[test]
    fn stale_generations_are_ignored() {
        let s = GState::default();
        s.retire();
        assert_eq!((s.generation(), status(&s)), (1, RUNNING));
        assert!(!s.ready(0));
        assert_eq!(status(&s), RUNNING);
        assert!(s.commit_park());
        assert!(!s.ready(0));
        assert!(!s.ready(2));
        assert_eq!(status(&s), PARKED);
        assert!(s.ready(1));
        // Retiring drops a pending token too.
        assert!(!s.ready(1));
        assert_eq!(status(&s), NOTIFIED);
        s.retire();
        assert_eq!((s.generation(), status(&s)), (2, RUNNING));
        assert!(!s.try_consume_token());
    }

    /// Readiers on other threads race the park: per round, the G is enqueued exactly when
    /// it parked, by exactly one readier, and never misses the wake-up.
    #[test]
    fn racing_readiers_enqueue_once_per_park() {
        let rounds = if cfg!(miri) { 20 } else { 2_000 };
        for _ in 0..rounds {
            let s = Arc::new(GState::default());
            let enqueued = Arc::new(AtomicUsize::new(0));
            let readiers: Vec<_> = (0..2)
                .map(|_| {
                    let (s, enqueued) = (s.clone(), enqueued.clone());
                    std::thread::spawn(move || {
                        if s.ready(0) {
                            enqueued.fetch_add(1, Ordering::AcqRel);
                        }
                    })
                })
                .collect();
            let parked = !s.try_consume_token() && s.commit_park();
            for r in readiers {
                r.join().unwrap();
            }
            assert_eq!(enqueued.load(Ordering::Acquire), usize::from(parked));
            // Parked or not, the G ends up running: a parked G was readied, and a G that
            // did not park consumed or cancelled on a token (one may be left over).
            assert_ne!(status(&s), PARKED);
        }
    }
}
