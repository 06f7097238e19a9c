//! The runtime-wide scheduler state (Go's `schedt`): Ps, idle lists, spinning count, wake-ups.
//!
//! Lock order: the global queue's lock before `sched`; code holding `sched` never takes the
//! global queue's lock.

use crate::g::G;
use crate::globalq::GlobalQueue;
use crate::idle::IdleHook;
use crate::m::{self, MNote};
use crate::p::P;
use crate::spinning::Spinning;
use crate::stack::StackPool;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// Most Ps a runtime can have; `gomaxprocs` clamps larger requests to this.
pub const MAX_PROCS: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PStatus {
    /// Beyond GOMAXPROCS (or never used).
    Retired,
    /// In `idle_ps`.
    Idle,
    /// Held by an M.
    Running,
}

/// State under the scheduler lock.
#[derive(Debug)]
pub(crate) struct SchedState {
    pub(crate) idle_ps: Vec<usize>,
    pub(crate) pstatus: Vec<PStatus>,
    /// Ms parked waiting to be handed a P.
    pub(crate) idle_ms: Vec<Arc<MNote>>,
    /// Ms that must keep their goroutine (a panic is unwinding on it) waiting for any P; they
    /// are served before `idle_ps`.
    pub(crate) p_waiters: Vec<Arc<MNote>>,
    /// The M blocked in the idle hook's `poll`, until a waker claims it.
    pub(crate) poller: Option<Arc<MNote>>,
    /// Whether some M is inside `poll` (claimed or not).
    pub(crate) polling: bool,
    /// Every M ever started; keeps their notes alive for pinned-waiter pointers.
    pub(crate) all_ms: Vec<Arc<MNote>>,
    /// Ps at or beyond GOMAXPROCS still held by an M.
    pub(crate) retiring: usize,
}

/// One runtime's shared state. Owned through `Arc` by the `Runtime` handle, every M, and
/// every `Goroutine` handle.
pub(crate) struct Shared {
    /// P slots; a P is created the first time GOMAXPROCS reaches its index and lives as long
    /// as the runtime.
    pub(crate) ps: Box<[OnceLock<Box<P>>]>,
    /// Written under `sched`; read anywhere (Relaxed: a P notices a shrink at its next
    /// scheduling point, and all decisions are rechecked under `sched`).
    pub(crate) gomaxprocs: AtomicUsize,
    pub(crate) global: GlobalQueue<G>,
    pub(crate) sched: Mutex<SchedState>,
    pub(crate) retired: Condvar,
    /// Idle Ps and spinning Ms, and the no-lost-wake-up handshake on them.
    pub(crate) spin: Spinning,
    pub(crate) shutdown: AtomicBool,
    pub(crate) hook: Box<dyn IdleHook>,
    pub(crate) stacks: ManuallyDrop<StackPool>,
    pub(crate) next_goid: AtomicU64,
    /// Goroutines created or exited by a thread holding no P (a foreign `Runtime::spawn`).
    pub(crate) foreign_created: AtomicU64,
    /// Free Gs beyond the per-P caches.
    pub(crate) free_gs: Mutex<Vec<Arc<G>>>,
    /// State of the idle memory release (`release.rs`).
    pub(crate) release: crate::release::IdleRelease,
    pub(crate) next_mid: AtomicUsize,
    /// Set by `run(main)`: only there is "nothing can ever run again" a deadlock (a plain
    /// `Runtime` may be fed by its owner's thread at any time).
    pub(crate) detect_deadlock: AtomicBool,
    /// Live `ForeignThread` guards: threads that may ready goroutines from outside.
    pub(crate) foreign_threads: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("gomaxprocs", &self.gomaxprocs.load(Ordering::Relaxed))
            .field("npidle", &self.spin.npidle())
            .field("nmspinning", &self.spin.nmspinning())
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn new(procs: usize, stack_size: usize, hook: Box<dyn IdleHook>) -> Shared {
        let shared = Shared {
            ps: (0..MAX_PROCS).map(|_| OnceLock::new()).collect(),
            gomaxprocs: AtomicUsize::new(0),
            global: GlobalQueue::default(),
            sched: Mutex::new(SchedState {
                idle_ps: Vec::new(),
                pstatus: vec![PStatus::Retired; MAX_PROCS],
                idle_ms: Vec::new(),
                p_waiters: Vec::new(),
                poller: None,
                polling: false,
                all_ms: Vec::new(),
                retiring: 0,
            }),
            retired: Condvar::new(),
            spin: Spinning::default(),
            shutdown: AtomicBool::new(false),
            hook,
            stacks: ManuallyDrop::new(StackPool::new(stack_size)),
            next_goid: AtomicU64::new(1),
            foreign_created: AtomicU64::new(0),
            free_gs: Mutex::new(Vec::new()),
            release: crate::release::IdleRelease::default(),
            next_mid: AtomicUsize::new(1),
            detect_deadlock: AtomicBool::new(false),
            foreign_threads: AtomicUsize::new(0),
        };
        shared.set_procs(procs);
        shared
    }

    #[inline]
    pub(crate) fn p(&self, id: usize) -> &P {
        self.ps[id].get().expect("runtime: P used before creation")
    }

    pub(crate) fn procs(&self) -> usize {
        self.gomaxprocs.load(Ordering::Relaxed)
    }

    /// Changes GOMAXPROCS. Growing makes the new Ps idle at once; shrinking retires idle Ps at
    /// once and leaves held ones to be retired by their Ms at their next scheduling point.
    /// Returns the previous value.
    pub(crate) fn set_procs(&self, n: usize) -> usize {
        let n = n.clamp(1, MAX_PROCS);
        let mut s = lock(&self.sched);
        let old = self.gomaxprocs.load(Ordering::Relaxed);
        self.gomaxprocs.store(n, Ordering::SeqCst);
        for id in 0..MAX_PROCS {
            let status = s.pstatus[id];
            if id < n && status == PStatus::Retired {
                self.ps[id].get_or_init(|| Box::new(P::new(id)));
                s.pstatus[id] = PStatus::Idle;
                s.idle_ps.push(id);
                self.spin.p_idled();
            } else if id >= n && status == PStatus::Idle {
                s.pstatus[id] = PStatus::Retired;
                s.idle_ps.retain(|&i| i != id);
                self.spin.p_taken();
                // SAFETY: an idle P has no holder; the scheduler lock makes us its holder.
                unsafe { self.drain_p_caches(id) };
            }
        }
        s.retiring = (n..MAX_PROCS)
            .filter(|&i| s.pstatus[i] == PStatus::Running)
            .count();
        old
    }

    /// Waits until every P at or beyond GOMAXPROCS has been given up by its M.
    pub(crate) fn wait_retired(&self, in_goroutine: bool) {
        loop {
            let s = lock(&self.sched);
            if s.retiring == 0 || self.shutdown.load(Ordering::Relaxed) {
                return;
            }
            if in_goroutine {
                drop(s);
                // Our own P may be one of them: yielding lets our M retire it.
                crate::park::gosched();
            } else {
                drop(self.retired.wait(s).unwrap_or_else(|p| p.into_inner()));
            }
        }
    }

    /// Hands a retiring P's free stacks and Gs back to the runtime-wide pools.
    ///
    /// # Safety
    /// The caller must be the P's holder (or hold `sched` while the P has none).
    unsafe fn drain_p_caches(&self, id: usize) {
        // SAFETY: exclusive by the caller's contract.
        let owned = unsafe { self.p(id).owned() };
        self.stacks.put_batch(owned.stacks.drain(..));
        lock(&self.free_gs).append(&mut owned.free_gs);
    }

    /// Takes an idle P. Caller holds `sched`.
    pub(crate) fn pidleget(&self, s: &mut SchedState) -> Option<usize> {
        let id = s.idle_ps.pop()?;
        s.pstatus[id] = PStatus::Running;
        self.spin.p_taken();
        Some(id)
    }

    /// Gives back a P whose run queue is empty: to a pinned M waiting for one, to the idle
    /// list, or into retirement when it is beyond GOMAXPROCS. Caller holds `sched` and was
    /// the P's holder.
    pub(crate) fn pidleput(&self, s: &mut SchedState, id: usize) {
        if id >= self.gomaxprocs.load(Ordering::Relaxed) {
            // SAFETY: the caller held the P until now and holds the scheduler lock.
            unsafe { self.drain_p_caches(id) };
            s.pstatus[id] = PStatus::Retired;
            s.retiring = s.retiring.saturating_sub(1);
            self.retired.notify_all();
            return;
        }
        if let Some(note) = s.p_waiters.pop() {
            note.hand_off(id, false);
            return;
        }
        s.pstatus[id] = PStatus::Idle;
        s.idle_ps.push(id);
        self.spin.p_idled();
    }

    /// Go's `wakep`: if there is an idle P and no M is spinning, starts one spinning M to look
    /// for the work just made available. Called after every enqueue (see `spinning.rs` for
    /// why no wake-up is lost).
    #[inline]
    pub(crate) fn wakep(self: &Arc<Self>) {
        if self.spin.try_claim_spinner() {
            self.wakep_slow();
        }
    }

    #[cold]
    fn wakep_slow(self: &Arc<Self>) {
        if !self.start_m(None, true) {
            self.spin.stop_spinning();
        }
    }

    /// Runs an M with a P: `p` if given (the caller's P, handed off), else an idle one.
    /// Prefers a parked M, then the poller, then a new thread. Returns false when no P was
    /// available.
    pub(crate) fn start_m(self: &Arc<Self>, p: Option<usize>, spinning: bool) -> bool {
        let mut s = lock(&self.sched);
        if self.shutdown.load(Ordering::Relaxed) {
            if let Some(id) = p {
                self.pidleput(&mut s, id);
            }
            return false;
        }
        let Some(id) = p.or_else(|| self.pidleget(&mut s)) else {
            return false;
        };
        if let Some(note) = s.idle_ms.pop() {
            drop(s);
            note.hand_off(id, spinning);
            return true;
        }
        if let Some(note) = s.poller.take() {
            drop(s);
            note.hand_off_quietly(id, spinning);
            self.hook.wake();
            return true;
        }
        let note = Arc::new(MNote::default());
        s.all_ms.push(note.clone());
        drop(s);
        note.hand_off_quietly(id, spinning);
        m::spawn_m(self.clone(), note);
        true
    }

    /// Called (under `sched`) by an M about to block with no P. If every other M is idle,
    /// every P is idle with an empty queue, the idle hook has no waiters and no foreign thread
    /// is registered, nothing can ever run again: under `run(main)` that is Go's fatal
    /// deadlock. Ms inside `blocking` or waiting for a P are not idle, so they prevent the
    /// report (no false positives, at the price of missing some deadlocks).
    pub(crate) fn check_deadlock(&self, s: &SchedState) {
        if !self.detect_deadlock.load(Ordering::Relaxed)
            || self.foreign_threads.load(Ordering::SeqCst) != 0
        {
            return;
        }
        let idle_ms = s.idle_ms.len() + usize::from(s.polling);
        if idle_ms + 1 != s.all_ms.len()
            || self.spin.npidle() != self.procs()
            || self.global.len() != 0
            || self.num_goroutine() == 0
            || self
                .ps
                .iter()
                .any(|p| p.get().is_some_and(|p| !p.runq.is_empty()))
            || self.hook.has_waiters()
        {
            return;
        }
        crate::m::fatal(&format!(
            "all goroutines are asleep - deadlock!\n\n{} goroutine(s) parked forever",
            self.num_goroutine()
        ));
    }

    /// Goroutines alive now (a snapshot, as Go's `NumGoroutine`).
    pub(crate) fn num_goroutine(&self) -> usize {
        let mut created = self.foreign_created.load(Ordering::Relaxed) as i64;
        for slot in self.ps.iter() {
            if let Some(p) = slot.get() {
                created += p.created.load(Ordering::Relaxed) as i64;
                created -= p.exited.load(Ordering::Relaxed) as i64;
            }
        }
        created.max(0) as usize
    }

    /// Stops the runtime: Ms exit at their next scheduling point; idle ones are woken now.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let s = lock(&self.sched);
        for note in s
            .idle_ms
            .iter()
            .chain(s.p_waiters.iter())
            .chain(s.all_ms.iter())
        {
            note.parker.unpark();
        }
        let polling = s.polling;
        drop(s);
        self.retired.notify_all();
        if polling {
            self.hook.wake();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Gs still queued will never run: release their scheduling references.
        while let Some(g) = self.global.lock().pop() {
            // SAFETY: a queued pointer owns one scheduling reference (`Arc::into_raw`).
            drop(unsafe { Arc::from_raw(g.as_ptr()) });
        }
        for slot in self.ps.iter() {
            if let Some(p) = slot.get() {
                while let Some(g) = p.runq.pop() {
                    // SAFETY: as above; no M holds this P any more (every M has exited,
                    // since each holds an `Arc<Shared>`).
                    drop(unsafe { Arc::from_raw(g.as_ptr()) });
                }
            }
        }
        if self.num_goroutine() == 0 {
            // SAFETY: dropped once, here; no goroutine is alive, so no stack is in use.
            unsafe { ManuallyDrop::drop(&mut self.stacks) };
        }
        // Otherwise goroutines are still parked (a runtime shut down while they waited, as a
        // Go program exits with goroutines blocked): their stacks stay mapped, because memory
        // they lent out (a wait-queue node on a stack) might still be reachable.
    }
}
