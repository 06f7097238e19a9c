//! The runtime-wide scheduler state (Go's `schedt`): Ps, idle lists, spinning count, wake-ups.
//!
//! Lock order: the global queue's lock before `sched`; code holding `sched` never takes the
//! global queue's lock.

use crate::g::G;
use crate::globalq::GlobalQueue;
use crate::idle::IdleHook;
use crate::m::{self, MNote};
use crate::p::{P, SPARE_PS, is_spare};
use crate::spinning::Spinning;
use crate::stack::StackPool;
use crate::timer::{Action, FOREIGN_HEAP, TimerCell, TimerHome};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

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
    /// A spare P waiting in `spare_pool`.
    Spare,
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
    /// The note of every M ever started, kept for the runtime's life: a readier may still
    /// hold a pointer to a note's parker (a pinned waiter) after its M exited. Notes of
    /// exited Ms are reused by new Ms (`free_notes`), so the list stays as long as the peak
    /// number of Ms; a stale unpark of a reused note is a spurious wake-up, which every
    /// parker loop tolerates.
    pub(crate) notes: Vec<Arc<MNote>>,
    /// Notes of exited Ms, for the next M started.
    pub(crate) free_notes: Vec<Arc<MNote>>,
    /// Ms alive now (running, idle, polling, inside `blocking`).
    pub(crate) nm: usize,
    /// Ps at or beyond GOMAXPROCS still held by an M.
    pub(crate) retiring: usize,
    /// Spare Ps not lent out (`p.rs`, `SPARE_PS`); sysmon activates them.
    pub(crate) spare_pool: Vec<usize>,
    /// A stop of the world is pending or in force (`stw.rs`): no P is taken from the idle
    /// list or the spare pool, and Ps given up go to the idle list (not to pinned waiters)
    /// until the world starts again.
    pub(crate) stw: bool,
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
    /// Idle Ps and spinning Ms, and the no-lost-wake-up handshake on them. On its own cache
    /// line: read by every `wakep` (each channel hand-off), written only when an M starts or
    /// stops spinning or a P idles — not whenever a neighbouring lock is taken.
    pub(crate) spin: CachePadded<Spinning>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) hook: Box<dyn IdleHook>,
    /// Called by the holder of a P it is about to give up for good or for a while: a spare
    /// going back to the pool, a P beyond GOMAXPROCS retiring (`Builder::on_p_retire`).
    pub(crate) on_p_retire: Option<crate::runtime::PRetireHook>,
    /// Every timer of this runtime (per-P heaps; `timer/home.rs`).
    pub(crate) timers: Arc<TimerHome>,
    pub(crate) stacks: ManuallyDrop<StackPool>,
    pub(crate) next_goid: AtomicU64,
    /// Goroutines alive: incremented when a G is created, decremented when it has exited and
    /// switched off its stack. One word, so `num_goroutine` is a single linearizable read.
    /// Read-modify-writes only (Relaxed: a count, it orders nothing); on its own cache line.
    pub(crate) ngoroutines: CachePadded<AtomicUsize>,
    /// One past the highest P slot ever created (only grows, under `sched`). Scans over Ps
    /// (stealing, deadlock checks, resizing) stop here, not at `MAX_PROCS`; stealing covers
    /// Ps beyond GOMAXPROCS whose holders have not retired them yet. Release store, Acquire
    /// loads: a P slot below it is initialised.
    pub(crate) nps: AtomicUsize,
    /// Cap on live Ms (`Builder::max_threads`).
    pub(crate) max_threads: usize,
    /// How long an idle M beyond the reserve waits for a P before exiting
    /// (`Builder::idle_thread_exit`).
    pub(crate) idle_m_exit_after: Duration,
    /// Free Gs beyond the per-P caches.
    pub(crate) free_gs: Mutex<Vec<Arc<G>>>,
    /// Every G object, for goroutine dumps and the deadlock report (Go's `allgs`). Lock
    /// order: after `sched`; nothing holding it takes another scheduler lock.
    pub(crate) allgs: crate::g::AllGs,
    /// State of the idle memory release (`release.rs`).
    pub(crate) release: crate::release::IdleRelease,
    pub(crate) next_mid: AtomicUsize,
    /// Set by `run(main)`: only there is "nothing can ever run again" a deadlock (a plain
    /// `Runtime` may be fed by its owner's thread at any time).
    pub(crate) detect_deadlock: AtomicBool,
    /// Live `ForeignThread` guards: threads that may ready goroutines from outside, and
    /// goroutines of this runtime waiting on another runtime (a cross-runtime join).
    pub(crate) foreign_threads: AtomicUsize,
    /// Set when `run`'s main goroutine ended through `goexit`: once no goroutine is left,
    /// that is Go's "no goroutines (main called runtime.Goexit)" deadlock.
    pub(crate) main_goexited: AtomicBool,
    /// The monitor thread's shared state (`sysmon.rs`).
    pub(crate) sysmon: Arc<crate::sysmon::SysmonState>,
    /// Serialises stops of the world (`stw.rs`); held from stop to start.
    pub(crate) stw_lock: crate::stw::StwLock,
}

/// How many Ms a runtime may run, and how long a surplus idle one lingers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadLimits {
    pub(crate) max: usize,
    pub(crate) idle_exit_after: Duration,
}

/// A value on its own 128-byte line (two 64-byte lines: adjacent-line prefetch), so a hot
/// counter does not share a line with read-mostly fields.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
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

/// A no-preempt window (`suspend::NoPreempt`) for stretches that must not be suspended by
/// a stop of the world but hold no scheduler lock (see `lock`); nothing under loom, which
/// does not model the signal. Keep the result alive for the stretch.
#[inline(always)]
#[must_use = "the window ends when the guard is dropped"]
pub(crate) fn no_preempt() -> impl Sized {
    #[cfg(not(loom))]
    return crate::suspend::NoPreempt::enter();
    #[cfg(loom)]
    ()
}

/// Takes one of the scheduler's locks. The guard also holds a no-preempt window
/// (`suspend::NoPreempt`), so the thread is never suspended by signal while it holds the
/// lock: a stop of the world's coordinator takes the scheduler lock while threads are
/// suspended, and would wait forever on one suspended inside it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> Locked<'_, T> {
    #[cfg(not(loom))]
    let np = crate::suspend::NoPreempt::enter();
    Locked {
        guard: m.lock().unwrap_or_else(|p| p.into_inner()),
        #[cfg(not(loom))]
        _np: np,
    }
}

/// A scheduler lock's guard (`lock`). Fields drop in order: the lock is released before the
/// no-preempt window ends (which may let a deferred suspension in).
pub(crate) struct Locked<'a, T> {
    guard: MutexGuard<'a, T>,
    #[cfg(not(loom))]
    _np: crate::suspend::NoPreempt,
}

impl<T> std::ops::Deref for Locked<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for Locked<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<'a, T> Locked<'a, T> {
    /// Waits on `cv` (releasing the lock meanwhile, as `Condvar::wait`). The no-preempt
    /// window stays open while the thread sleeps: it runs no goroutine then.
    pub(crate) fn wait(self, cv: &Condvar) -> Locked<'a, T> {
        let Locked {
            guard,
            #[cfg(not(loom))]
            _np,
        } = self;
        Locked {
            guard: cv.wait(guard).unwrap_or_else(|p| p.into_inner()),
            #[cfg(not(loom))]
            _np,
        }
    }
}

impl Shared {
    pub(crate) fn new(
        procs: usize,
        stack_size: usize,
        threads: ThreadLimits,
        hook: Box<dyn IdleHook>,
        on_p_retire: Option<crate::runtime::PRetireHook>,
    ) -> Shared {
        let shared = Shared {
            on_p_retire,
            ps: (0..MAX_PROCS + SPARE_PS).map(|_| OnceLock::new()).collect(),
            gomaxprocs: AtomicUsize::new(0),
            global: GlobalQueue::default(),
            sched: Mutex::new(SchedState {
                idle_ps: Vec::new(),
                pstatus: (0..MAX_PROCS + SPARE_PS)
                    .map(|id| {
                        if is_spare(id) {
                            PStatus::Spare
                        } else {
                            PStatus::Retired
                        }
                    })
                    .collect(),
                idle_ms: Vec::new(),
                p_waiters: Vec::new(),
                poller: None,
                polling: false,
                notes: Vec::new(),
                free_notes: Vec::new(),
                nm: 0,
                retiring: 0,
                spare_pool: (MAX_PROCS..MAX_PROCS + SPARE_PS).rev().collect(),
                stw: false,
            }),
            retired: Condvar::new(),
            spin: CachePadded(Spinning::default()),
            shutdown: AtomicBool::new(false),
            hook,
            timers: Arc::new(TimerHome::new()),
            stacks: ManuallyDrop::new(StackPool::new(stack_size)),
            next_goid: AtomicU64::new(1),
            ngoroutines: CachePadded(AtomicUsize::new(0)),
            nps: AtomicUsize::new(0),
            max_threads: threads.max,
            idle_m_exit_after: threads.idle_exit_after,
            free_gs: Mutex::new(Vec::new()),
            allgs: crate::g::AllGs::default(),
            release: crate::release::IdleRelease::default(),
            next_mid: AtomicUsize::new(1),
            detect_deadlock: AtomicBool::new(false),
            foreign_threads: AtomicUsize::new(0),
            main_goexited: AtomicBool::new(false),
            sysmon: Arc::new(crate::sysmon::SysmonState::new()),
            stw_lock: crate::stw::StwLock::default(),
        };
        #[cfg(not(loom))]
        crate::suspend::install();
        for id in MAX_PROCS..MAX_PROCS + SPARE_PS {
            shared.ps[id].get_or_init(|| Box::new(P::new(id)));
        }
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
        let nps = self.nps.load(Ordering::Relaxed).max(n);
        for id in 0..nps {
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
        // Release: pairs with the Acquire in `nps()`; the new slots were initialised above.
        self.nps.store(nps, Ordering::Release);
        s.retiring = (n..nps)
            .filter(|&i| s.pstatus[i] == PStatus::Running)
            .count();
        // A grow can cancel a pending retirement (the P is within GOMAXPROCS again, so its
        // holder will never give it up for that reason): whoever waits must look again.
        self.retired.notify_all();
        old
    }

    /// One past the highest P slot ever created: the bound of every scan over Ps.
    #[inline]
    pub(crate) fn nps(&self) -> usize {
        // Acquire: pairs with the Release store in `set_procs`.
        self.nps.load(Ordering::Acquire)
    }

    /// The Ps created so far (some may be beyond GOMAXPROCS, still held or retired).
    pub(crate) fn created_ps(&self) -> impl Iterator<Item = &P> {
        self.ps[..self.nps()]
            .iter()
            .filter_map(|p| p.get().map(|b| &**b))
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
                drop(s.wait(&self.retired));
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

    /// Takes an idle P; none while the world is stopped. Caller holds `sched`. Wakes sysmon
    /// if it sleeps (it sleeps while every P is idle).
    pub(crate) fn pidleget(&self, s: &mut SchedState) -> Option<usize> {
        if s.stw {
            return None;
        }
        // A P stopped on its own (`for_each_p`) stays idle until it is released.
        let i = s
            .idle_ps
            .iter()
            .rposition(|&id| self.p(id).stop.is_clear())?;
        let id = s.idle_ps.swap_remove(i);
        s.pstatus[id] = PStatus::Running;
        self.spin.p_taken();
        self.sysmon.p_taken(s);
        Some(id)
    }

    /// Gives back a P whose run queue is empty: to a pinned M waiting for one, to the idle
    /// list, or into retirement when it is beyond GOMAXPROCS. Caller holds `sched` and was
    /// the P's holder.
    pub(crate) fn pidleput(&self, s: &mut SchedState, id: usize) {
        // A P given up while a stop of the world asks its holder to stop has answered: it
        // stays idle (`pidleget` refuses while `stw`) until the restart.
        if self.p(id).stop.answer() {
            #[cfg(not(loom))]
            crate::suspend::progress::announce();
        }
        if is_spare(id) {
            // A spare goes back to the pool; its caches stay with it for the next loan.
            s.pstatus[id] = PStatus::Spare;
            s.spare_pool.push(id);
            return;
        }
        if id >= self.gomaxprocs.load(Ordering::Relaxed) {
            // SAFETY: the caller held the P until now and holds the scheduler lock.
            unsafe { self.drain_p_caches(id) };
            s.pstatus[id] = PStatus::Retired;
            s.retiring = s.retiring.saturating_sub(1);
            self.retired.notify_all();
            return;
        }
        if !s.stw
            && let Some(note) = s.p_waiters.pop()
        {
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

    /// `wakep` after work was published by `RunQueue::put_next` (a SeqCst swap, which
    /// stands in for the handshake's fence: `Spinning::try_claim_spinner_after_sc`).
    #[inline]
    pub(crate) fn wakep_after_put_next(self: &Arc<Self>) {
        if self.spin.try_claim_spinner_after_sc() {
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
        // From taking the P to the M running with it, one no-preempt window (past the
        // scheduler lock's own): a caller suspended for a stop of the world in between
        // would hold a P that is neither idle nor with a running M, and the stop would wait
        // for an answer nobody can give — a stop racing a `wakep` hung that way, its caller
        // suspended inside `pthread_create`.
        let _window = no_preempt();
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
        if s.nm >= self.max_threads {
            drop(s);
            m::thread_exhaustion(self.max_threads);
        }
        let note = match s.free_notes.pop() {
            Some(note) => note,
            None => {
                let note = Arc::new(MNote::default());
                s.notes.push(note.clone());
                note
            }
        };
        s.nm += 1;
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
        // SeqCst: `run`'s main goroutine disarms detection (SeqCst store) before its value
        // is handed back; the scheduler lock we hold orders us after any M that went idle
        // after that store.
        if !self.detect_deadlock.load(Ordering::SeqCst)
            || self.foreign_threads.load(Ordering::SeqCst) != 0
            || crate::runtime::BLOCKED_THREADS.load(Ordering::SeqCst) != 0
            || self.timers.armed.load(Ordering::SeqCst) != 0
        {
            return;
        }
        let idle_ms = s.idle_ms.len() + usize::from(s.polling);
        if idle_ms + 1 != s.nm
            || self.spin.npidle() != self.procs()
            || self.global.len() != 0
            || self
                .created_ps()
                .chain(self.spares())
                .any(|p| !p.runq.is_empty())
            || self.hook.has_waiters()
        {
            return;
        }
        let n = self.num_goroutine();
        if n == 0 {
            if self.main_goexited.load(Ordering::SeqCst) {
                crate::m::fatal("no goroutines (main called runtime.Goexit) - deadlock!");
            }
            return;
        }
        crate::m::fatal(&format!(
            "all goroutines are asleep - deadlock!\n\n{}",
            crate::dump::parked_dump(self)
        ));
    }

    /// Arms (or re-arms) `cell` to fire at `when`, on the calling M's P's heap (or the
    /// foreign heap off this runtime's Ps), and makes sure some M will run it in time.
    /// Returns whether the timer was already armed.
    pub(crate) fn arm_timer(self: &Arc<Self>, cell: &Arc<TimerCell>, when: u64) -> bool {
        let m = m::current_m();
        // SAFETY: a non-null current M is this thread's live M; the borrow ends here.
        let heap = (!m.is_null())
            .then(|| unsafe { &*m })
            .filter(|m| m.has_p() && Arc::ptr_eq(&m.shared, self))
            .map_or(FOREIGN_HEAP, |m| crate::p::timer_heap(m.p_ref().id));
        let (seq, was) = cell.arm();
        self.timers.push(heap, when, seq, cell.clone());
        self.timer_armed(when);
        was
    }

    /// A timer due at `when` was pushed (and fenced, see `TimerHome::push`): wake the
    /// polling M if it sleeps past `when`; with no M polling, start one (a spinning M that
    /// finds nothing ends up polling with the new deadline). With every P busy, the Ms check
    /// their timers at their next scheduling point.
    fn timer_armed(self: &Arc<Self>, when: u64) {
        let until = self.timers.poll_until.load(Ordering::SeqCst);
        if until == crate::timer::NOT_POLLING {
            self.wakep();
        } else if when < until {
            self.hook.wake();
        }
    }

    /// Runs the due timers of heap `h`. Returns how many fired.
    pub(crate) fn run_timers(self: &Arc<Self>, h: usize, now: u64) -> usize {
        let mut fired = 0;
        while let Some(e) = self.timers.pop_due(h, now) {
            let Some(next) = e.cell.fire(e.seq, e.when, now) else {
                continue; // stale: stopped or re-armed since
            };
            if let Some((seq, when)) = next {
                self.timers.push(h, when, seq, e.cell.clone());
            }
            fired += 1;
            match &e.cell.action {
                Action::Ready(g) => g.ready(),
                Action::Send(tx) => {
                    let _ = tx.try_send(std::time::Instant::now());
                }
                Action::Func(f) => {
                    let f = f.clone();
                    let _ = crate::spawn::start(self, crate::entry::Entry::new(move || f()));
                }
            }
        }
        fired
    }

    /// Runs the due timers of the heaps `hs`; the clock is read only when one of them holds
    /// a timer. Returns how many fired.
    pub(crate) fn run_due_timers(
        self: &Arc<Self>,
        hs: impl Iterator<Item = usize> + Clone,
    ) -> usize {
        if !hs.clone().any(|h| self.timers.has_timers(h)) {
            return 0;
        }
        let now = self.timers.now();
        hs.filter(|&h| self.timers.due(h, now))
            .map(|h| self.run_timers(h, now))
            .sum()
    }

    /// Runs the due timers of every heap (the polling M, after its poll).
    pub(crate) fn run_all_timers(self: &Arc<Self>) -> usize {
        self.run_due_timers(TimerHome::heap_ids(self.nps()))
    }

    /// Goroutines alive now (Go's `NumGoroutine`): exact, one atomic read.
    pub(crate) fn num_goroutine(&self) -> usize {
        self.ngoroutines.load(Ordering::Relaxed)
    }

    /// Stops the runtime: Ms exit at their next scheduling point; idle ones are woken now.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let s = lock(&self.sched);
        for note in s
            .idle_ms
            .iter()
            .chain(s.p_waiters.iter())
            .chain(s.notes.iter())
        {
            note.parker.unpark();
        }
        let polling = s.polling;
        drop(s);
        self.retired.notify_all();
        self.sysmon.kick();
        self.wake_stopped();
        if polling {
            self.hook.wake();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Preempt requests still pending on Ps whose Ms left at shutdown: withdraw them, or
        // the process-wide count would send every safepoint to its slow path for good.
        for p in self.created_ps().chain(self.spares()) {
            crate::preempt::clear(p);
        }
        // Gs still queued will never run: release their scheduling references.
        while let Some(g) = self.global.lock().pop() {
            // SAFETY: a queued pointer owns one scheduling reference (`Arc::into_raw`).
            drop(unsafe { Arc::from_raw(g.as_ptr()) });
        }
        for p in self.created_ps() {
            while let Some(g) = p.runq.pop() {
                // SAFETY: as above; no M holds this P any more (every M has exited, since
                // each holds an `Arc<Shared>`).
                drop(unsafe { Arc::from_raw(g.as_ptr()) });
            }
        }
        // Armed timers point back at the timer home through their cells: drop them.
        self.timers.clear();
        if self.num_goroutine() == 0 {
            // SAFETY: dropped once, here; no goroutine is alive, so no stack is in use.
            unsafe { ManuallyDrop::drop(&mut self.stacks) };
        }
        // Otherwise goroutines are still parked (a runtime shut down while they waited, as a
        // Go program exits with goroutines blocked): their stacks stay mapped, because memory
        // they lent out (a wait-queue node on a stack) might still be reachable.
    }
}
