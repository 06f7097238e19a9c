//! Grey work: per-worker buffers of objects to scan, a global pool of full buffers, and the
//! counting that lets mark termination say "no grey object anywhere".
//!
//! A grey object is an address whose mark bit is set and whose pointer slots are not scanned
//! yet (or an *oblet*: an interior address of a large object, standing for the 128 KiB piece
//! of it that starts there). Each marking party — a mark worker, a mutator flushing its
//! barrier buffer or scanning its roots — fills a buffer of its own and hands full buffers to
//! the pool. A worker takes a buffer from the pool and is *busy* until it hands back what it
//! produced and calls [`WorkPool::idle`]; both transitions happen under the pool's lock, as
//! does the check, so [`WorkPool::is_done`] is linearisable: when it says done, no buffer is
//! in the pool and no worker holds one. Parties that are not workers (mutators) only add
//! buffers; the collector makes them flush before its final check (every mutator flushes
//! when it parks for a stop of the world or enters a blocking region), so the check under a
//! stopped world sees everything (loom: `loom_termination_*`).
//!
//! Stealing: a worker whose buffer grows while others wait for work gives half of it to the
//! pool (`balance`), so one long list cannot stay on one thread.

use crate::loom::{AtomicBool, Condvar, Mutex, MutexGuard, Ordering};

/// Entries per grey buffer.
#[cfg(not(loom))]
pub(crate) const BUF_LEN: usize = 512;
#[cfg(loom)]
pub(crate) const BUF_LEN: usize = 2;

#[derive(Default)]
struct PoolState {
    /// Full (or partial, handed over) buffers waiting to be scanned.
    full: Vec<Vec<usize>>,
    /// Workers holding a buffer taken from `full` and not yet `idle`.
    busy: usize,
    /// Workers blocked in `wait_for_work` (they ask markers to hand work over).
    waiting: usize,
    /// Parties blocked in `wait_until` for the pool to be done or for a change of phase
    /// (they ask for nothing; `idle` wakes them when the last worker goes idle).
    watching: usize,
    /// A party (a mark assist) found the pool empty since a worker last gave work away.
    hungry: bool,
    /// Empty buffers kept for reuse (bounded).
    spare: Vec<Vec<usize>>,
    /// Marking is on: parties that are not mutators may shade (see `begin_foreign`). Set
    /// when a cycle's marking starts and cleared by `close_if_done`, both by the collector.
    open: bool,
}

/// The global grey list.
pub(crate) struct WorkPool {
    state: Mutex<PoolState>,
    cv: Condvar,
    /// Someone waits for work or found none (`waiting > 0 || hungry`), mirrored out of the
    /// lock so busy workers can look at it every few dozen objects for the price of a load.
    demand: AtomicBool,
}

impl WorkPool {
    pub(crate) fn new() -> WorkPool {
        WorkPool {
            state: Mutex::new(PoolState::default()),
            cv: Condvar::new(),
            demand: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty buffer with room for `BUF_LEN` entries (a reused one when there is).
    pub(crate) fn empty_buf(&self) -> Vec<usize> {
        self.lock()
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUF_LEN))
    }

    /// Hand over a buffer of grey objects (any party). Empty buffers are recycled.
    pub(crate) fn put(&self, buf: Vec<usize>) {
        let mut s = self.lock();
        if buf.is_empty() {
            if s.spare.len() < 64 {
                s.spare.push(buf);
            }
            return;
        }
        s.full.push(buf);
        if s.waiting > 0 {
            self.cv.notify_one();
        }
    }

    /// Take a buffer to scan; the caller is busy until `idle` (`already_busy`: it counts as
    /// busy from an earlier `take` or `enter`, and is not counted twice). `None` when the pool
    /// is empty (and the next worker that can will give some of its own away).
    pub(crate) fn take(&self, already_busy: bool) -> Option<Vec<usize>> {
        let mut s = self.lock();
        let Some(b) = s.full.pop() else {
            s.hungry = true;
            // Relaxed: a hint; the donation itself goes through the lock.
            self.demand.store(true, Ordering::Relaxed);
            return None;
        };
        if !already_busy {
            s.busy += 1;
        }
        Some(b)
    }

    /// A party holding grey objects it never published becomes busy (until `idle`).
    pub(crate) fn enter(&self) {
        self.lock().busy += 1;
    }

    /// A busy worker has handed back all it produced (with `put`) and holds no grey object.
    pub(crate) fn idle(&self) {
        let mut s = self.lock();
        assert!(s.busy > 0, "runtime: grey pool: idle without take");
        s.busy -= 1;
        if s.busy == 0 && s.full.is_empty() && (s.waiting > 0 || s.watching > 0) {
            // Waiters may be deciding termination.
            self.cv.notify_all();
        }
    }

    /// Whether a busy worker should give away half of its `local` buffer: others wait, or
    /// found nothing (clears the latter).
    pub(crate) fn wants_work(&self) -> bool {
        if !self.demand.load(Ordering::Relaxed) {
            return false;
        }
        let mut s = self.lock();
        let want = (s.waiting > 0 || s.hungry) && s.full.is_empty();
        s.hungry = false;
        self.demand.store(s.waiting > 0, Ordering::Relaxed);
        want
    }

    /// No grey object anywhere a worker can see: the pool is empty and no worker is busy.
    pub(crate) fn is_done(&self) -> bool {
        let s = self.lock();
        s.full.is_empty() && s.busy == 0
    }

    /// Marking starts: shading by any party is accepted until `close_if_done`.
    pub(crate) fn open(&self) {
        self.lock().open = true;
    }

    /// End marking if no grey object is anywhere (as `is_done`); atomically with the check,
    /// so a party that was not counted by it cannot start shading afterwards.
    pub(crate) fn close_if_done(&self) -> bool {
        let mut s = self.lock();
        if s.full.is_empty() && s.busy == 0 {
            s.open = false;
            true
        } else {
            false
        }
    }

    /// A party that is neither a worker nor a stopped mutator (a thread cloning a `Root`)
    /// wants to shade: while marking is open it becomes busy (call `idle` after handing over
    /// what it found) and true is returned; once closed, false — the cycle is over and the
    /// next one will find the object through its root.
    pub(crate) fn begin_foreign(&self) -> bool {
        let mut s = self.lock();
        if s.open {
            s.busy += 1;
            true
        } else {
            false
        }
    }

    /// Block until a buffer arrives, the pool is done, or `timeout` passes.
    #[cfg(not(loom))]
    pub(crate) fn wait_for_work(&self, timeout: std::time::Duration) {
        let mut s = self.lock();
        if !s.full.is_empty() {
            return;
        }
        s.waiting += 1;
        self.demand.store(true, Ordering::Relaxed);
        let (mut s, _) = self
            .cv
            .wait_timeout(s, timeout)
            .unwrap_or_else(|e| e.into_inner());
        s.waiting -= 1;
    }

    /// Under loom there is no timed wait: yield instead (the collector's loop retries).
    #[cfg(loom)]
    pub(crate) fn wait_for_work(&self, _timeout: std::time::Duration) {
        crate::loom::thread::yield_now();
    }

    /// Block until `ready(done, has_work)` holds — evaluated under the pool's lock, with
    /// `done` as [`is_done`](Self::is_done) and `has_work` saying a buffer is queued — or
    /// `timeout` passes. Whoever changes what `ready` reads from outside the pool (the
    /// collector opening or ending marking) calls [`wake_all`](Self::wake_all) afterwards:
    /// that takes this lock, so the change is either seen by the check or wakes the wait.
    /// With `want_work`, the wait also asks busy markers to hand work over, as
    /// `wait_for_work` does; without, it is woken when the last busy worker goes idle.
    #[cfg(not(loom))]
    pub(crate) fn wait_until(
        &self,
        want_work: bool,
        timeout: std::time::Duration,
        ready: impl Fn(bool, bool) -> bool,
    ) {
        let mut s = self.lock();
        if ready(s.full.is_empty() && s.busy == 0, !s.full.is_empty()) {
            return;
        }
        if want_work {
            s.waiting += 1;
            self.demand.store(true, Ordering::Relaxed);
        } else {
            s.watching += 1;
        }
        let (mut s, _) = self
            .cv
            .wait_timeout(s, timeout)
            .unwrap_or_else(|e| e.into_inner());
        if want_work {
            s.waiting -= 1;
        } else {
            s.watching -= 1;
        }
    }

    /// Loom: `wait_until` yields instead of blocking (its callers re-check in a loop).
    #[cfg(loom)]
    pub(crate) fn wait_until(
        &self,
        _want_work: bool,
        _timeout: std::time::Duration,
        _ready: impl Fn(bool, bool) -> bool,
    ) {
        crate::loom::thread::yield_now();
    }

    /// Wake everyone waiting for work (end of a phase).
    pub(crate) fn wake_all(&self) {
        let _s = self.lock();
        self.cv.notify_all();
    }
}

/// Give half of `local` to the pool when others wait for work or found none (work stealing by
/// donation). A depth-first walk of a tree keeps only a few grey objects at a time, so even a
/// handful is worth sharing.
pub(crate) fn balance(pool: &WorkPool, local: &mut Vec<usize>) {
    if local.len() >= 4 && pool.wants_work() {
        let mut half = pool.empty_buf();
        let n = local.len() / 2;
        half.extend(local.drain(..n));
        pool.put(half);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn done_only_when_empty_and_nobody_busy() {
        let p = WorkPool::new();
        assert!(p.is_done());
        p.put(vec![1, 2]);
        assert!(!p.is_done());
        let b = p.take(false).unwrap();
        assert!(!p.is_done(), "a busy worker holds grey objects");
        assert_eq!(b, vec![1, 2]);
        p.put(vec![3]);
        p.idle();
        assert!(!p.is_done());
        let _ = p.take(false).unwrap();
        p.idle();
        assert!(p.is_done());
        p.put(Vec::new());
        assert!(p.is_done(), "empty buffers are recycled, not queued");
    }

    #[test]
    fn balance_donates_half_to_waiters() {
        let p = std::sync::Arc::new(WorkPool::new());
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            while p2.take(false).is_none() {
                p2.wait_for_work(std::time::Duration::from_millis(5));
            }
            p2.idle();
        });
        let mut local: Vec<usize> = (0..100).collect();
        while local.len() == 100 {
            balance(&p, &mut local);
            std::thread::yield_now();
        }
        assert_eq!(local.len(), 50);
        t.join().unwrap();
        assert!(p.is_done());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::{Arc, thread};

    /// Two workers split a tree of grey objects (each scan of `n > 0` produces `n - 1` and,
    /// sometimes, a child buffer); a checker polling `is_done` may say done only when every
    /// object was scanned.
    #[test]
    fn loom_termination_never_early() {
        loom::model(|| {
            let pool = Arc::new(WorkPool::new());
            let scanned = Arc::new(crate::loom::AtomicUsize::new(0));
            pool.put(vec![2, 1]);
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    let (pool, scanned) = (pool.clone(), scanned.clone());
                    thread::spawn(move || {
                        // As `Marker::work`: busy from the first buffer to the last, one
                        // take / idle pair however many buffers it drains.
                        let mut busy = false;
                        while let Some(mut b) = pool.take(busy) {
                            busy = true;
                            while let Some(n) = b.pop() {
                                scanned.fetch_add(1, crate::loom::Ordering::Relaxed);
                                if n > 1 {
                                    pool.put(vec![n - 1]);
                                }
                            }
                        }
                        if busy {
                            pool.idle();
                        }
                    })
                })
                .collect();
            // The checker: done means every object (2, 1 from 2, 1) was scanned: 3.
            if pool.is_done() {
                let s = scanned.load(crate::loom::Ordering::Relaxed);
                // Done can be seen before a worker took anything only if the pool were
                // empty, which it is not; so it is seen after all work.
                assert_eq!(s, 3, "termination declared with grey objects left");
            }
            for w in workers {
                w.join().unwrap();
            }
            assert!(pool.is_done());
            assert_eq!(scanned.load(crate::loom::Ordering::Relaxed), 3);
        });
    }
}
