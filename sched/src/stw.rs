//! Stopping the world: every P's holder answers at a safepoint or is suspended by signal.
//!
//! A stop (`stop_world`) runs in three steps, serialised by `StwLock`:
//!
//! 1. **Request.** Under the scheduler lock it sets `SchedState::stw` — from then on no P
//!    leaves the idle list or the spare pool, a P given up goes to the idle list, and Ms
//!    leaving `blocking` queue their goroutine instead of taking a P — and sets `P::stop` to
//!    `REQUESTED` on every P that has a holder, counting each in `preempt::PENDING` so that
//!    `safepoint()` and the direct-switch fast path notice.
//! 2. **Answer.** A holder answers by moving its P's word `REQUESTED → STOPPED` and waiting
//!    for the restart: at a safepoint (the goroutine stays on its stack, its frame recorded
//!    for a stack walk), or at the top of `find_runnable` (no goroutine running). A P given
//!    up while a stop is requested is marked `STOPPED` by `Shared::pidleput` under the
//!    scheduler lock, and stays idle. A P in transit to a new M (a `blocking` hand-off) is
//!    answered by that M before it runs anything.
//! 3. **Suspend the rest.** A holder that has not answered after a short spin — a goroutine
//!    in a loop without safepoints, or in a blocking call nobody annotated — is suspended
//!    by signal (`suspend/`): its handler records the interrupted registers, general and
//!    vector, where a stack scan finds them, and waits. The handler defers while its thread
//!    is inside runtime code (`NoPreempt`, which `sched::lock` holds with every scheduler
//!    lock); the coordinator re-signals deferred threads until they suspend.
//!
//! `start_world` clears every request (under the lock the answering holders wait on, so no
//! wake-up is lost), resumes suspended threads, clears `stw`, hands idle Ps to Ms waiting for
//! one, and wakes an M if work is queued.
//!
//! While the world is stopped the coordinator neither allocates with the system allocator
//! nor prints: a stopped thread may hold malloc's or stdout's lock. Everything it needs is
//! allocated before step 1; a dump's text is formatted after the restart.
//!
//! The caller may be a goroutine of the runtime: its own P is left running (it is the
//! coordinator's), and it must not park or yield until it restarts the world, or other
//! goroutines would run on that P.

use crate::m::{M, MNote};
use crate::p::P;
use crate::sched::{PStatus, Shared, lock};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// `P::stop`: no stop requested.
pub(crate) const NONE: u32 = 0;
/// `P::stop`: the coordinator asks the holder to stop.
pub(crate) const REQUESTED: u32 = 1;
/// `P::stop`: the holder answered (or the P was given up) and waits for the restart.
pub(crate) const STOPPED: u32 = 2;

/// How long the coordinator waits for holders to answer at a safepoint before suspending
/// them by signal. Short: a goroutine that has a safepoint in its loop answers within
/// nanoseconds; the rest would only add their wait to the pause.
const GRACE: Duration = Duration::from_micros(2);
/// How often a deferred thread (inside runtime code) is signalled again.
const RETRY: Duration = Duration::from_micros(5);

/// Serialises stops of the world, and is what answering holders wait on until the restart.
#[derive(Debug, Default)]
pub(crate) struct StwLock {
    /// `true` while a stop is in progress or in force.
    busy: Mutex<bool>,
    /// Signalled when `busy` clears and when the world restarts (holders waiting in
    /// `wait_restart` recheck their P's word).
    cv: Condvar,
}

/// Whether the coordinator asks `p`'s holder to stop.
#[inline]
pub(crate) fn stop_requested(p: &P) -> bool {
    // Relaxed: a hint; the answer is a CAS.
    p.stop.load(Ordering::Relaxed) == REQUESTED
}

/// The goroutine running on `m` answers a stop request at a safepoint: records where it is
/// (for a stack walk) and waits for the restart, keeping its P.
#[cold]
pub(crate) fn stop_at_safepoint(m: &M, p: &P) {
    let (pc, fp) = crate::trace::current_start();
    m.note.record_safepoint(pc, fp);
    answer(&m.shared, p);
    m.note.record_safepoint(0, 0);
}

/// The M holding `p`, between goroutines, answers a stop request and waits for the restart.
#[cold]
pub(crate) fn stop_in_scheduler(m: &M, p: &P) {
    answer(&m.shared, p);
}

/// Moves `p`'s word `REQUESTED → STOPPED` and waits until the coordinator clears it (or the
/// runtime shuts down).
fn answer(shared: &Shared, p: &P) {
    // AcqRel: Release publishes everything this holder did before stopping to the
    // coordinator's Acquire load in `wait_stopped`; Acquire pairs with the coordinator's
    // request store.
    if p.stop
        .compare_exchange(REQUESTED, STOPPED, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let mut busy = lock(&shared.stw_lock.busy);
    // Acquire: pairs with the Release store of NONE in `start_world`.
    while p.stop.load(Ordering::Acquire) == STOPPED && !shared.shutdown.load(Ordering::Relaxed) {
        busy = shared
            .stw_lock
            .cv
            .wait(busy)
            .unwrap_or_else(|e| e.into_inner());
    }
}

impl MNote {
    /// Records the frame at which this M's goroutine answered a stop (zeros: none).
    fn record_safepoint(&self, pc: usize, fp: usize) {
        self.safepoint_pc.store(pc, Ordering::Relaxed);
        self.safepoint_fp.store(fp, Ordering::Relaxed);
    }
}

/// A stopped world: what `start_world` must undo.
pub(crate) struct Stopped {
    /// Ps asked to stop.
    requested: Vec<usize>,
    /// Notes of the Ms suspended by signal.
    suspended: Vec<Arc<MNote>>,
    /// When the stop began.
    pub(crate) began: Instant,
    /// When every P had answered.
    pub(crate) stopped_at: Instant,
}

impl Shared {
    /// Takes the stop lock; a goroutine waiting for it keeps answering stop requests aimed
    /// at its own P (another coordinator may be stopping the world right now).
    fn acquire_stw_lock(&self, own: Option<&P>) {
        loop {
            {
                let mut busy = lock(&self.stw_lock.busy);
                if !*busy {
                    *busy = true;
                    return;
                }
                if own.is_none() {
                    while *busy {
                        busy = self
                            .stw_lock
                            .cv
                            .wait(busy)
                            .unwrap_or_else(|e| e.into_inner());
                    }
                    *busy = true;
                    return;
                }
            }
            if let Some(p) = own
                && stop_requested(p)
            {
                answer(self, p);
            }
            std::thread::yield_now();
        }
    }

    /// Stops the world (see the module docs). `own` is the caller's P when the caller is a
    /// goroutine of this runtime holding one; it keeps running.
    pub(crate) fn stop_world(self: &Arc<Self>, own: Option<usize>) -> Stopped {
        let began = Instant::now();
        self.acquire_stw_lock(own.map(|id| self.p(id)));
        // Allocated now: nothing is allocated once Ps start stopping.
        let total = self.nps() + crate::p::SPARE_PS;
        let mut requested = Vec::with_capacity(total);
        let mut suspended: Vec<Arc<MNote>> = Vec::with_capacity(total);
        {
            let mut s = lock(&self.sched);
            s.stw = true;
            self.sysmon.world_stopped.store(true, Ordering::Relaxed);
            let ids = (0..self.nps())
                .chain(crate::sched::MAX_PROCS..crate::sched::MAX_PROCS + crate::p::SPARE_PS);
            for id in ids {
                if Some(id) == own || s.pstatus[id] != PStatus::Running {
                    continue;
                }
                // SeqCst: the holder's answer (a CAS) and our later loads of the word and of
                // `holder` are ordered after this store.
                self.p(id).stop.store(REQUESTED, Ordering::SeqCst);
                crate::preempt::PENDING.fetch_add(1, Ordering::Relaxed);
                requested.push(id);
            }
        }
        self.wait_stopped(&requested, &mut suspended);
        Stopped {
            requested,
            suspended,
            began,
            stopped_at: Instant::now(),
        }
    }

    /// Waits until every P of `ids` has answered its stop request (or been given up),
    /// suspending by signal the holders that do not answer within `GRACE`; the notes of the
    /// suspended Ms are pushed to `suspended` (which has room: nothing is allocated).
    fn wait_stopped(&self, ids: &[usize], suspended: &mut Vec<Arc<MNote>>) {
        let grace_end = Instant::now() + GRACE;
        let mut next_signal = grace_end;
        loop {
            let mut waiting = false;
            let now = Instant::now();
            for &id in ids {
                let p = self.p(id);
                // Acquire: pairs with the holder's Release CAS in `answer` (or `pidleput`).
                if p.stop.load(Ordering::Acquire) == STOPPED {
                    continue;
                }
                let holder = p.holder.load(Ordering::Acquire);
                if holder.is_null() {
                    // In transit to a new M, which answers before running anything.
                    waiting = true;
                    continue;
                }
                // SAFETY: notes live as long as the runtime (`SchedState::notes`).
                let note = unsafe { &*holder };
                if suspended.iter().any(|n| std::ptr::eq(&**n, note)) {
                    if note.suspend.is_suspended() {
                        continue;
                    }
                    if now >= next_signal {
                        note.suspend.retry();
                    }
                    waiting = true;
                    continue;
                }
                if now >= grace_end && note.suspend.request() {
                    suspended.push(self.note_arc(note));
                }
                waiting = true;
            }
            if !waiting {
                return;
            }
            if now >= next_signal {
                next_signal = now + RETRY;
            }
            std::hint::spin_loop();
        }
    }

    /// Runs `f(id)` for every P (regular and spare) while that P alone is stopped (see
    /// `world::for_each_p`). `own` (the caller's P) is handed to `f` as it is.
    pub(crate) fn for_each_p_stopped(
        self: &Arc<Self>,
        own: Option<usize>,
        f: &mut dyn FnMut(usize),
    ) {
        self.acquire_stw_lock(own.map(|id| self.p(id)));
        let mut suspended: Vec<Arc<MNote>> = Vec::with_capacity(1);
        let ids = (0..self.nps())
            .chain(crate::sched::MAX_PROCS..crate::sched::MAX_PROCS + crate::p::SPARE_PS);
        for id in ids {
            if Some(id) == own {
                f(id);
                continue;
            }
            let p = self.p(id);
            {
                let s = lock(&self.sched);
                if s.pstatus[id] == PStatus::Running {
                    // SeqCst: as in `stop_world`.
                    p.stop.store(REQUESTED, Ordering::SeqCst);
                    crate::preempt::PENDING.fetch_add(1, Ordering::Relaxed);
                } else {
                    // Idle, retired or in the pool: `pidleget` and spare activation skip a P
                    // whose word is not NONE, so it stays without a holder while `f` runs.
                    p.stop.store(STOPPED, Ordering::SeqCst);
                    crate::preempt::PENDING.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.wait_stopped(&[id], &mut suspended);
            f(id);
            {
                let _busy = lock(&self.stw_lock.busy);
                // Release: pairs with the Acquire load in `answer`'s wait.
                p.stop.store(NONE, Ordering::Release);
                crate::preempt::PENDING.fetch_sub(1, Ordering::Relaxed);
                self.stw_lock.cv.notify_all();
            }
            for note in suspended.drain(..) {
                note.suspend.resume();
            }
        }
        {
            let mut busy = lock(&self.stw_lock.busy);
            *busy = false;
            self.stw_lock.cv.notify_all();
        }
        // A P that went idle while stopped may have been skipped by a waker.
        self.wakep();
    }

    /// The `Arc` of a note from the runtime's list (the pointer came from a P's `holder`).
    fn note_arc(&self, note: &MNote) -> Arc<MNote> {
        // `notes` only grows while the runtime lives; searching it takes the scheduler lock,
        // which no suspended thread holds (`sched::lock` defers suspension).
        let s = lock(&self.sched);
        s.notes
            .iter()
            .find(|n| std::ptr::eq(&***n, note))
            .cloned()
            .expect("runtime: a P's holder is not a note of its runtime")
    }

    /// Restarts the world stopped by `stopped`.
    pub(crate) fn start_world(self: &Arc<Self>, stopped: Stopped) {
        {
            let _busy = lock(&self.stw_lock.busy);
            for &id in &stopped.requested {
                // Release: pairs with the Acquire load in `answer`'s wait.
                self.p(id).stop.store(NONE, Ordering::Release);
                crate::preempt::PENDING.fetch_sub(1, Ordering::Relaxed);
            }
            self.stw_lock.cv.notify_all();
        }
        for note in &stopped.suspended {
            note.suspend.resume();
        }
        let work = {
            let mut s = lock(&self.sched);
            s.stw = false;
            self.sysmon.world_stopped.store(false, Ordering::Relaxed);
            // Ms that must keep their goroutine wait for a P: serve them first.
            while !s.p_waiters.is_empty() {
                let Some(id) = self.pidleget(&mut s) else {
                    break;
                };
                let note = s.p_waiters.pop().expect("checked non-empty");
                note.hand_off(id, false);
            }
            self.global.len() > 0
        };
        {
            let mut busy = lock(&self.stw_lock.busy);
            *busy = false;
            self.stw_lock.cv.notify_all();
        }
        self.sysmon.kick();
        if work {
            self.wakep();
        }
    }

    /// Wakes holders waiting for a restart (shutdown).
    pub(crate) fn wake_stopped(&self) {
        let _busy = lock(&self.stw_lock.busy);
        self.stw_lock.cv.notify_all();
    }
}

/// Signal suspension of one M's thread. (Placeholder until the signal mechanism lands:
/// never suspends, so a stop waits for every holder to answer at a safepoint.)
#[derive(Debug, Default)]
pub(crate) struct MSuspend {}

impl MSuspend {
    /// Asks the thread to suspend. Returns whether a request was sent.
    pub(crate) fn request(&self) -> bool {
        false
    }
    pub(crate) fn is_suspended(&self) -> bool {
        false
    }
    pub(crate) fn retry(&self) {}
    pub(crate) fn resume(&self) {}
    pub(crate) fn registers(&self) -> SavedRegs<'_> {
        SavedRegs {
            sp: 0,
            pc: 0,
            fp: 0,
            words: &[],
        }
    }
}

/// The registers a suspension saved.
pub(crate) struct SavedRegs<'a> {
    pub(crate) sp: usize,
    pub(crate) pc: usize,
    pub(crate) fp: usize,
    pub(crate) words: &'a [usize],
}
