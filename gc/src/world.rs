//! The standalone world: each attached thread's state word and the stop-the-world handshake.
//!
//! A mutator is in one of five states. Only its own thread moves it out of `RUNNING` or
//! `PARKED`; the collector moves it between `BLOCKING` and `HELD`, always by compare-and-swap,
//! so the two never both believe they own the mutator's roots:
//!
//! ```text
//!   RUNNING  --scope exit / blocking region-->  BLOCKING  <--collector CAS-->  HELD
//!      ^  |                                       |  (CAS by the mutator; waits while HELD)
//!      |  +--safepoint with STOP set--> PARKED     +--> RUNNING
//!      +-----------world started----------+
//! ```
//!
//! *Stopping* (`World::stop`): under the world lock set `STOP` in the poll word, then, per
//! registered mutator, take `BLOCKING` ones to `HELD` and wait for `RUNNING` ones to park.
//! A mutator entering a blocking region stores `BLOCKING` and then reads the poll word; the
//! coordinator stores `STOP` and then reads the state: a store-then-load handshake on both
//! sides, with `fence(SeqCst)` (loom models SeqCst accesses as acquire/release only, loom#180,
//! but models the fence), so either the coordinator sees `BLOCKING` or the mutator sees
//! `STOP` and notifies it under the lock. A parked mutator leaves `PARKED` only under the
//! world lock and after reading `STOP` clear there, so a stop that begins just as the previous
//! one ends either finds it still parked (its buffers were flushed when it parked, nothing has
//! run since) or finds it `RUNNING` and waits for it.
//!
//! The registry of mutators is locked for the whole stop, so no thread attaches or detaches
//! while the world is stopped; detaching waits while the collector holds the mutator.

use crate::loom::{Arc, Condvar, Mutex, MutexGuard, Ordering, fence};
use crate::mutator::MutatorShared;

/// Inside a scope: may touch the heap; reaches a safepoint eventually.
pub(crate) const RUNNING: u32 = 0;
/// Outside every scope, or in a blocking region: touches nothing of the heap; its barrier
/// buffer is empty and its roots are frozen.
pub(crate) const BLOCKING: u32 = 1;
/// Blocking, and the collector holds it there (to scan its roots, or the world is stopped).
pub(crate) const HELD: u32 = 2;
/// Stopped at a safepoint for a stopped world, buffers flushed.
pub(crate) const PARKED: u32 = 3;
/// Gone; its registry entry is about to be removed.
pub(crate) const DETACHED: u32 = 4;

/// Poll-word bit: a stop of the world is requested or in force.
pub(crate) const POLL_STOP: u32 = 1;
/// Poll-word bit: marking is on and some mutator's roots are not scanned yet.
pub(crate) const POLL_SCAN: u32 = 2;

/// The standalone world: attached OS threads, each a mutator and a processor.
pub(crate) struct World {
    /// The word every safepoint tests first (`POLL_*` bits). `STOP` is set and cleared under
    /// `lock` by the coordinator; `SCAN` by the collector. Read by every mutator.
    pub(crate) poll: crate::loom::AtomicU32,
    /// Attached mutators. Locked by attach / detach, and by a coordinator for a whole stop.
    pub(crate) registry: Mutex<Vec<Arc<MutatorShared>>>,
    /// Guards the sleeping side of every transition above (parking, waiting for a park,
    /// waiting to leave `HELD`); `cv` is notified after each.
    lock: Mutex<()>,
    cv: Condvar,
}

/// The world stopped: every registered mutator is `PARKED`, `HELD` or `DETACHED` until this
/// is passed to [`World::start`]. Holds the registry, so the coordinator can visit each
/// mutator's state.
pub(crate) struct Stopped<'w> {
    pub(crate) mutators: MutexGuard<'w, Vec<Arc<MutatorShared>>>,
}

impl World {
    pub(crate) fn new() -> World {
        World {
            poll: crate::loom::AtomicU32::new(0),
            registry: Mutex::new(Vec::new()),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        }
    }

    fn sleep_lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop every mutator. Only one coordinator at a time (the collector thread).
    pub(crate) fn stop(&self) -> Stopped<'_> {
        let mutators = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        {
            let _g = self.sleep_lock();
            // Relaxed under the lock; the fence below orders it before the state loads.
            self.poll.fetch_or(POLL_STOP, Ordering::Relaxed);
        }
        // Pairs with the fence in `enter_blocking`: either we see BLOCKING below, or the
        // mutator sees STOP and notifies us under the lock.
        fence(Ordering::SeqCst);
        for m in mutators.iter() {
            self.hold(m);
        }
        Stopped { mutators }
    }

    /// Wait until `m` is stopped: parked, held, or detached.
    fn hold(&self, m: &MutatorShared) {
        #[cfg(not(loom))]
        let since = std::time::Instant::now();
        #[cfg(not(loom))]
        let mut warned = false;
        loop {
            // Acquire: pairs with the Release stores of PARKED / BLOCKING, so what the
            // mutator did before (flushing its buffers) is visible to the coordinator.
            match m.state.load(Ordering::Acquire) {
                BLOCKING => {
                    if m.state
                        .compare_exchange(BLOCKING, HELD, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        return;
                    }
                }
                PARKED | DETACHED => return,
                _ => {
                    let g = self.sleep_lock();
                    let s = m.state.load(Ordering::Acquire);
                    if s == RUNNING || s == HELD {
                        // HELD: a root scan by this same collector cannot be in progress
                        // (it runs on the coordinator's thread), but waiting is harmless.
                        #[cfg(not(loom))]
                        {
                            let (g, _) = self
                                .cv
                                .wait_timeout(g, std::time::Duration::from_secs(1))
                                .unwrap_or_else(|e| e.into_inner());
                            drop(g);
                            if !warned && since.elapsed() >= std::time::Duration::from_secs(1) {
                                warned = true;
                                // Nothing is stopped yet that could hold stderr's lock: the
                                // parked mutators stopped at safepoints.
                                eprintln!(
                                    "gc: waiting over 1s for mutator thread {} to reach a \
                                     safepoint to stop the world: a thread that blocks inside \
                                     a scope (a lock, I/O, a channel, a barrier) must do it in \
                                     Scope::blocking",
                                    m.name
                                );
                            }
                        }
                        #[cfg(loom)]
                        drop(self.cv.wait(g).unwrap_or_else(|e| e.into_inner()));
                    }
                }
            }
        }
    }

    /// Restart the world.
    ///
    /// States and the poll word change under the lock; the wake-up comes after both locks
    /// are released: a woken mutator needs the sleep lock to return from its wait, and on a
    /// busy machine the kernel may run it at once, in place of a coordinator still holding
    /// the lock (which measured as stops of milliseconds).
    ///
    /// Returns when the world was released (the poll word cleared): the end of the pause.
    /// The wake-ups come after it, and the coordinator may lose its CPU to the first mutator
    /// it wakes, for a scheduler time slice; the mutators are running then.
    pub(crate) fn start(&self, stopped: Stopped<'_>) -> std::time::Instant {
        let released;
        {
            let _g = self.sleep_lock();
            for m in stopped.mutators.iter() {
                // Only the coordinator moves HELD back; Release pairs with the mutator's CAS.
                if m.state.load(Ordering::Relaxed) == HELD {
                    m.state.store(BLOCKING, Ordering::Release);
                }
            }
            self.poll.fetch_and(!POLL_STOP, Ordering::Relaxed);
            released = std::time::Instant::now();
        }
        drop(stopped);
        // Waiters test their condition under the lock, which they cannot have seen
        // unchanged since we released it: none misses this.
        self.cv.notify_all();
        released
    }

    /// The mutator's side of a safepoint that found `STOP` set: park until the world
    /// restarts. The caller has flushed its barrier buffer and grey work.
    #[cold]
    pub(crate) fn park(&self, m: &MutatorShared) {
        let mut g = self.sleep_lock();
        // Release: publishes the flushes to the coordinator's Acquire load in `hold`.
        m.state.store(PARKED, Ordering::Release);
        self.cv.notify_all();
        while self.poll.load(Ordering::Relaxed) & POLL_STOP != 0 {
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
        m.state.store(RUNNING, Ordering::Relaxed);
    }

    /// The mutator leaves `RUNNING` for `BLOCKING` (scope exit, blocking region). The caller
    /// has flushed its barrier buffer and grey work.
    pub(crate) fn enter_blocking(&self, m: &MutatorShared) {
        // Release: publishes the flushes and the handle block to whoever takes it to HELD.
        m.state.store(BLOCKING, Ordering::Release);
        // Pairs with the fence in `stop` (store-then-load on both sides).
        fence(Ordering::SeqCst);
        if self.poll.load(Ordering::Relaxed) & POLL_STOP != 0 {
            let _g = self.sleep_lock();
            self.cv.notify_all();
        }
    }

    /// The mutator leaves `BLOCKING` for `RUNNING`, waiting while the collector holds it.
    pub(crate) fn leave_blocking(&self, m: &MutatorShared) {
        loop {
            // Acquire: pairs with the collector's Release when it hands the mutator back.
            match m
                .state
                .compare_exchange(BLOCKING, RUNNING, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(HELD) => {
                    let g = self.sleep_lock();
                    if m.state.load(Ordering::Acquire) == HELD {
                        drop(self.cv.wait(g).unwrap_or_else(|e| e.into_inner()));
                    }
                }
                Err(s) => panic!("runtime: mutator leaving a blocking region in state {s}"),
            }
        }
    }

    /// The collector takes a blocking mutator to `HELD` (to scan its roots); false when it
    /// is not blocking.
    pub(crate) fn try_hold(&self, m: &MutatorShared) -> bool {
        m.state
            .compare_exchange(BLOCKING, HELD, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// The collector hands back a mutator it took with `try_hold`.
    pub(crate) fn release(&self, m: &MutatorShared) {
        let _g = self.sleep_lock();
        m.state.store(BLOCKING, Ordering::Release);
        self.cv.notify_all();
    }

    /// The mutator detaches: from `BLOCKING` (never inside a scope) to `DETACHED`, waiting
    /// while held; then it leaves the registry.
    pub(crate) fn detach(&self, m: &Arc<MutatorShared>, under_registry_lock: impl FnOnce()) {
        loop {
            match m
                .state
                .compare_exchange(BLOCKING, DETACHED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(HELD) => {
                    let g = self.sleep_lock();
                    if m.state.load(Ordering::Acquire) == HELD {
                        drop(self.cv.wait(g).unwrap_or_else(|e| e.into_inner()));
                    }
                }
                Err(s) => panic!("runtime: mutator detaching in state {s}"),
            }
        }
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|x| !Arc::ptr_eq(x, m));
        under_registry_lock();
    }
}

/// The collector's view of the standalone world, for one cycle: the stop (`stop` / `start`)
/// keeps the registry locked, so the trait's stop keeps its guard here.
pub(crate) struct Standalone<'w> {
    pub(crate) world: &'w World,
    pub(crate) stopped: std::cell::RefCell<Option<Stopped<'w>>>,
}

impl<'w> Standalone<'w> {
    pub(crate) fn new(world: &'w World) -> Standalone<'w> {
        Standalone {
            world,
            stopped: std::cell::RefCell::new(None),
        }
    }
}

impl World {
    /// The mutators' private state of a stopped world or a held mutator.
    ///
    /// # Safety
    /// `m` must be stopped (parked, held or detached) for the duration of the borrow.
    unsafe fn roots_of(m: &MutatorShared) -> &crate::embedder::MutatorRoots {
        // SAFETY: the caller's contract: the mutator's thread does not touch `local` while
        // it is stopped, and the stop's handshake acquired what it wrote.
        unsafe { &(*m.local.get()).roots }
    }
}

// SAFETY: `stop` returns only when every registered mutator is parked at a safepoint (after
// flushing its barrier buffer and grey work) or held in a blocking region (flushed on
// entry), and keeps the registry locked so none attaches; `scan_blocked` passes a mutator's
// roots only while it holds it (`try_hold` .. `release`) and marks it scanned once per cycle.
unsafe impl<'w> crate::embedder::Embedder for Standalone<'w> {
    fn stop_the_world(&self) {
        let s = self.world.stop();
        *self.stopped.borrow_mut() = Some(s);
    }

    fn start_the_world(&self) -> std::time::Instant {
        let s = self
            .stopped
            .borrow_mut()
            .take()
            .expect("runtime: start_the_world without a stop");
        self.world.start(s)
    }

    fn mutator_count(&self) -> usize {
        self.stopped
            .borrow()
            .as_ref()
            .map_or(0, |s| s.mutators.len())
    }

    fn scan_blocked(
        &self,
        cycle: u64,
        scan: &mut dyn FnMut(&crate::embedder::MutatorRoots),
    ) -> usize {
        let list: Vec<_> = self
            .world
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut n = 0;
        for m in list {
            use std::sync::atomic::Ordering as O;
            if m.scanned.load(O::Relaxed) == cycle || !self.world.try_hold(&m) {
                continue;
            }
            if m.scanned.load(O::Relaxed) != cycle {
                // SAFETY: held: its thread waits before touching `local`.
                scan(unsafe { World::roots_of(&m) });
                m.scanned.store(cycle, O::Relaxed);
                n += 1;
            }
            self.world.release(&m);
        }
        n
    }

    fn running_mutators(&self) -> usize {
        let reg = self
            .world
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        reg.iter()
            .filter(|m| m.state.load(Ordering::Relaxed) == RUNNING)
            .count()
    }

    fn for_each_stopped(&self, f: &mut dyn FnMut(&crate::embedder::MutatorRoots)) {
        let g = self.stopped.borrow();
        let s = g
            .as_ref()
            .expect("runtime: for_each_stopped outside a stop");
        for m in s.mutators.iter() {
            // SAFETY: the world is stopped: every mutator is parked, held or detached.
            f(unsafe { World::roots_of(m) });
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::loom::{AtomicUsize, thread};

    fn world_with_one() -> (Arc<World>, Arc<MutatorShared>) {
        let w = Arc::new(World::new());
        let m = Arc::new(MutatorShared::new(None, 0));
        w.registry.lock().unwrap().push(m.clone());
        (w, m)
    }

    /// A mutator that runs, polls, leaves its scope (entering BLOCKING without a safepoint)
    /// and comes back, against a coordinator stopping the world: while the world is stopped
    /// the mutator never mutates.
    #[test]
    fn loom_stopped_world_runs_no_mutator() {
        loom::model(|| {
            let (w, m) = world_with_one();
            let mutations = Arc::new(AtomicUsize::new(0));
            let t = {
                let (w, m, mutations) = (w.clone(), m.clone(), mutations.clone());
                thread::spawn(move || {
                    for _ in 0..2 {
                        w.leave_blocking(&m);
                        mutations.fetch_add(1, Ordering::Relaxed);
                        if w.poll.load(Ordering::Relaxed) & POLL_STOP != 0 {
                            w.park(&m);
                        }
                        mutations.fetch_add(1, Ordering::Relaxed);
                        w.enter_blocking(&m);
                    }
                })
            };
            let s = w.stop();
            let a = mutations.load(Ordering::Relaxed);
            thread::yield_now();
            let b = mutations.load(Ordering::Relaxed);
            assert_eq!(a, b, "a mutator ran while the world was stopped");
            w.start(s);
            t.join().unwrap();
            assert_eq!(mutations.load(Ordering::Relaxed), 4);
        });
    }

    /// The collector holding a blocked mutator to scan it, against the mutator leaving its
    /// blocking region: the mutator never runs while held.
    #[test]
    fn loom_held_mutator_waits_to_leave_blocking() {
        loom::model(|| {
            let (w, m) = world_with_one();
            let running = Arc::new(AtomicUsize::new(0));
            let t = {
                let (w, m, running) = (w.clone(), m.clone(), running.clone());
                thread::spawn(move || {
                    w.leave_blocking(&m);
                    running.store(1, Ordering::Relaxed);
                    running.store(0, Ordering::Relaxed);
                    w.enter_blocking(&m);
                })
            };
            if w.try_hold(&m) {
                assert_eq!(running.load(Ordering::Relaxed), 0, "held while running");
                thread::yield_now();
                assert_eq!(running.load(Ordering::Relaxed), 0, "ran while held");
                w.release(&m);
            }
            t.join().unwrap();
        });
    }
}

#[cfg(all(test, loom))]
mod loom_barrier {
    use super::*;
    use crate::loom::{AtomicBool, AtomicUsize, thread};

    const B: usize = 2;

    /// The write barrier against a concurrent marker, through a whole cycle: the collector
    /// stops the world to turn marking on, scans object A (whose slot points to B) while a
    /// mutator, already scanned, moves B out of A into C — an object born black that nobody
    /// scans — then stops the world again to terminate. The mutator's deletion barrier and
    /// its flush when it parks or blocks must leave B marked: either the marker read B from
    /// A, or the swap that removed it shaded it.
    #[test]
    fn loom_barrier_against_marker_keeps_the_moved_object() {
        loom::model(|| {
            let w = Arc::new(World::new());
            let m = Arc::new(MutatorShared::new(None, 0));
            w.registry.lock().unwrap().push(m.clone());
            let marking = Arc::new(AtomicBool::new(false));
            let slot_a = Arc::new(AtomicUsize::new(B));
            let slot_c = Arc::new(AtomicUsize::new(0));
            let marked_b = Arc::new(AtomicBool::new(false));
            let t = {
                let (w, m) = (w.clone(), m.clone());
                let (marking, slot_a, slot_c, marked_b) = (
                    marking.clone(),
                    slot_a.clone(),
                    slot_c.clone(),
                    marked_b.clone(),
                );
                thread::spawn(move || {
                    let mut wbuf: Vec<usize> = Vec::new();
                    let flush = |wbuf: &mut Vec<usize>| {
                        for v in wbuf.drain(..) {
                            if v == B {
                                marked_b.store(true, Ordering::Relaxed);
                            }
                        }
                    };
                    w.leave_blocking(&m);
                    // Run until marking is on (polling safepoints), then move B.
                    loop {
                        if w.poll.load(Ordering::Relaxed) & POLL_STOP != 0 {
                            flush(&mut wbuf);
                            w.park(&m);
                        }
                        if marking.load(Ordering::Relaxed) {
                            break;
                        }
                        thread::yield_now();
                    }
                    // Slot::set while marking: swap, shade the old value.
                    let old = slot_a.swap(0, Ordering::AcqRel);
                    if old != 0 {
                        wbuf.push(old);
                    }
                    slot_c.store(old, Ordering::Release);
                    // Poll once more, then leave the scope (flush, blocking).
                    if w.poll.load(Ordering::Relaxed) & POLL_STOP != 0 {
                        flush(&mut wbuf);
                        w.park(&m);
                    }
                    flush(&mut wbuf);
                    w.enter_blocking(&m);
                })
            };
            // Sweep termination: marking on with the world stopped.
            let s = w.stop();
            marking.store(true, Ordering::Relaxed);
            w.start(s);
            // Concurrent mark: scan A.
            if slot_a.load(Ordering::Relaxed) == B {
                marked_b.store(true, Ordering::Relaxed);
            }
            // Mark termination: with the world stopped every buffer is flushed; B, reachable
            // from A or C, must be marked.
            let s = w.stop();
            assert!(
                marked_b.load(Ordering::Relaxed),
                "reachable object left white"
            );
            w.start(s);
            t.join().unwrap();
        });
    }
}
