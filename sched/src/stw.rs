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
//! `start_world` resumes the suspended threads, then — in one critical section under the
//! lock the answering holders wait on, so no wake-up is lost — clears every request, clears
//! `stw`, hands idle Ps to Ms waiting for one and releases the stop lock; it wakes an M if
//! work is queued.
//!
//! While the world is stopped the coordinator neither allocates with the system allocator
//! nor prints: a stopped thread may hold malloc's or stdout's lock. Everything it needs is
//! allocated before step 1; a dump's text is formatted after the restart.
//!
//! The caller may be a goroutine of the runtime: its own P is left running (it is the
//! coordinator's), and it must not park or yield until it restarts the world, or other
//! goroutines would run on that P.

use crate::loom::{AtomicU32, Ordering};
use crate::m::{M, MNote};
use crate::p::P;
use crate::sched::{PStatus, Shared, lock};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// `StopWord`: no stop requested.
const NONE: u32 = 0;
/// `StopWord`: the coordinator asks the holder to stop.
const REQUESTED: u32 = 1;
/// `StopWord`: the holder answered (or the P was given up, or is held idle) and waits for
/// the restart.
const STOPPED: u32 = 2;

/// A P's stop-the-world word (`P::stop`). Written by the coordinator (`request`, `hold`,
/// `release`) and by whoever answers for the P (`answer`: its holder, or `pidleput` when the
/// P is given up); read by holders at safepoints and scheduling points, by `pidleget` and
/// spare activation (which skip Ps not clear), and by the coordinator.
#[derive(Debug, Default)]
pub(crate) struct StopWord(AtomicU32);

impl StopWord {
    /// The coordinator asks the holder to stop. SeqCst: the holder's answer (a CAS) and the
    /// coordinator's later loads of this word and of `P::holder` are ordered after it.
    pub(crate) fn request(&self) {
        self.0.store(REQUESTED, Ordering::SeqCst);
    }

    /// The coordinator holds a P that has no holder (idle, retired, in the spare pool):
    /// nobody may take it until `release`.
    pub(crate) fn hold(&self) {
        self.0.store(STOPPED, Ordering::SeqCst);
    }

    /// Whether a stop is requested and not answered yet. Relaxed: a hint; the answer is a
    /// CAS.
    #[inline]
    pub(crate) fn is_requested(&self) -> bool {
        self.0.load(Ordering::Relaxed) == REQUESTED
    }

    /// Answers a pending request (`REQUESTED → STOPPED`); false when none is pending.
    /// AcqRel: Release publishes everything the answering holder did before it to the
    /// coordinator's Acquire load in `is_stopped`; Acquire pairs with `request`.
    pub(crate) fn answer(&self) -> bool {
        self.0
            .compare_exchange(REQUESTED, STOPPED, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Whether the P is stopped (answered or held). Acquire: pairs with `answer`'s Release
    /// (coordinator) and with `release`'s Release (a holder waiting for the restart).
    pub(crate) fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Acquire) == STOPPED
    }

    /// Whether no stop concerns the P (`pidleget` and spare activation take only such Ps;
    /// they run under the scheduler lock, under which the coordinator requests or holds).
    pub(crate) fn is_clear(&self) -> bool {
        self.0.load(Ordering::Relaxed) == NONE
    }

    /// The coordinator ends the stop. Release: pairs with the Acquire in `is_stopped` of the
    /// holder waiting for the restart.
    pub(crate) fn release(&self) {
        self.0.store(NONE, Ordering::Release);
    }
}

/// How long the coordinator waits for holders to answer at a safepoint before suspending
/// them by signal. Short: a goroutine that has a safepoint in its loop answers within
/// nanoseconds; the rest would only add their wait to the pause.
const GRACE: Duration = Duration::from_micros(1);
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
    p.stop.is_requested()
}

/// The goroutine running on `m` answers a stop request at a safepoint: records where it is
/// (for a stack walk) and waits for the restart, keeping its P.
#[cold]
pub(crate) fn stop_at_safepoint(m: &M, p: &P) {
    let start = crate::trace::current_start();
    m.note.record_safepoint(start.pc, start.fp);
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
    if !p.stop.answer() {
        return;
    }
    #[cfg(not(loom))]
    crate::suspend::progress::announce();
    let mut busy = lock(&shared.stw_lock.busy);
    // Acquire: pairs with the Release store of NONE in `start_world`.
    while p.stop.is_stopped() && !shared.shutdown.load(Ordering::Relaxed) {
        busy = busy.wait(&shared.stw_lock.cv);
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
                        busy = busy.wait(&self.stw_lock.cv);
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
                self.p(id).stop.request();
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
            #[cfg(not(loom))]
            let seen = crate::suspend::progress::current();
            for &id in ids {
                let p = self.p(id);
                // Acquire: pairs with the holder's Release CAS in `answer` (or `pidleput`).
                if p.stop.is_stopped() {
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
            if now >= grace_end {
                // The threads we wait for may be off-CPU (more runnable threads than cores),
                // and a signal is handled only when its thread runs: give up this core until
                // one answers (or it is time to signal a deferred one again). (Yielding
                // instead lets a resumed thread keep the core for a whole time slice once the
                // world restarts.)
                #[cfg(not(loom))]
                crate::suspend::progress::wait(seen, RETRY);
                #[cfg(loom)]
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
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
            self.stop_one(id, &mut suspended);
            f(id);
            self.release_one(id, &mut suspended);
        }
        {
            let mut busy = lock(&self.stw_lock.busy);
            *busy = false;
            self.stw_lock.cv.notify_all();
        }
        // A P that went idle while stopped may have been skipped by a waker.
        self.wakep();
    }

    /// Stops P `id` alone (the stop lock held): requests a stop if it is held, or holds it
    /// if it is not (`pidleget` and spare activation skip a P whose word is not clear), and
    /// waits for the answer, suspending the holder by signal if it does not answer.
    pub(crate) fn stop_one(&self, id: usize, suspended: &mut Vec<Arc<MNote>>) {
        let p = self.p(id);
        {
            let s = lock(&self.sched);
            if s.pstatus[id] == PStatus::Running {
                p.stop.request();
            } else {
                p.stop.hold();
            }
            crate::preempt::PENDING.fetch_add(1, Ordering::Relaxed);
        }
        self.wait_stopped(&[id], suspended);
    }

    /// Ends `stop_one(id)`: clears the word, wakes a holder waiting at a safepoint and
    /// resumes the threads suspended for it.
    pub(crate) fn release_one(&self, id: usize, suspended: &mut Vec<Arc<MNote>>) {
        {
            let _busy = lock(&self.stw_lock.busy);
            // Release: pairs with the Acquire load in `answer`'s wait.
            self.p(id).stop.release();
            crate::preempt::PENDING.fetch_sub(1, Ordering::Relaxed);
            self.stw_lock.cv.notify_all();
        }
        for note in suspended.drain(..) {
            note.suspend.resume();
        }
    }

    /// Takes the stop lock as `stop_world` does (for a single-goroutine suspension).
    pub(crate) fn lock_stops(&self, own: Option<usize>) {
        self.acquire_stw_lock(own.map(|id| self.p(id)));
    }

    /// Releases the stop lock taken by `lock_stops` and wakes an M for work a stopped P
    /// may have been skipped for.
    pub(crate) fn unlock_stops(self: &Arc<Self>) {
        {
            let mut busy = lock(&self.stw_lock.busy);
            *busy = false;
            self.stw_lock.cv.notify_all();
        }
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
        for note in &stopped.suspended {
            note.suspend.resume();
        }
        let work;
        {
            // Lock order: the stop lock, then the scheduler lock.
            let mut busy = lock(&self.stw_lock.busy);
            for &id in &stopped.requested {
                // Release: pairs with the Acquire load in `answer`'s wait.
                self.p(id).stop.release();
                crate::preempt::PENDING.fetch_sub(1, Ordering::Relaxed);
            }
            {
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
                work = self.global.len() > 0;
            }
            // Cleared last, under the same lock as the words: the next stop cannot begin
            // before this one has fully ended.
            *busy = false;
            // One wake-up for both kinds of waiter: holders waiting at a safepoint and
            // coordinators waiting for the stop lock.
            self.stw_lock.cv.notify_all();
        }
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

/// Signal suspension of one M's thread (`suspend/`): the slot its thread registers while it
/// runs. Used by the coordinator only for the holder of a P that did not answer in time.
#[derive(Debug, Default)]
pub(crate) struct MSuspend {
    pub(crate) slot: Arc<crate::suspend::SuspendSlot>,
}

impl MSuspend {
    /// Asks the thread to suspend. Returns whether a request was sent (false: the thread is
    /// not registered — it is exiting — or a request is already out).
    #[cfg(not(loom))]
    pub(crate) fn request(&self) -> bool {
        self.slot.request()
    }

    /// Whether the thread is suspended now (its registers saved).
    pub(crate) fn is_suspended(&self) -> bool {
        self.slot.poll() == crate::suspend::Status::Suspended
    }

    /// Signals a thread that deferred the request (it was inside runtime code) again.
    #[cfg(not(loom))]
    pub(crate) fn retry(&self) {
        if self.slot.poll() == crate::suspend::Status::Deferred {
            self.slot.retry_deferred();
        }
    }

    /// Resumes the thread (or cancels a request it has not honoured yet).
    pub(crate) fn resume(&self) {
        self.slot.resume();
    }

    /// The registers the suspension saved.
    ///
    /// # Safety
    /// The caller must have suspended the thread (its `request`, and `is_suspended` since)
    /// and must not resume it while the returned view lives.
    pub(crate) unsafe fn registers(&self) -> SavedRegs<'_> {
        // SAFETY: forwarded contract.
        let ctx = unsafe { self.slot.context() };
        SavedRegs {
            sp: ctx.stack_scan_start(),
            pc: ctx.pc(),
            fp: ctx.fp(),
            words: ctx.as_words(),
        }
    }
}

/// Under loom, signals are not modelled: nothing is ever suspended.
#[cfg(loom)]
impl MSuspend {
    pub(crate) fn request(&self) -> bool {
        false
    }
    pub(crate) fn retry(&self) {}
}

/// The registers a suspension saved.
pub(crate) struct SavedRegs<'a> {
    pub(crate) sp: usize,
    pub(crate) pc: usize,
    pub(crate) fp: usize,
    pub(crate) words: &'a [u64],
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::StopWord;
    use crate::loom::{Arc, Mutex, UnsafeCell, spin_loop, thread};

    /// P state only its holder — or the coordinator while the P is stopped — may touch.
    struct PState {
        stop: StopWord,
        cache: UnsafeCell<u32>,
    }

    fn touch(p: &PState) {
        // SAFETY: the protocol under test makes the toucher exclusive; loom checks it.
        p.cache.with_mut(|c| unsafe { *c += 1 });
    }

    fn wait_restart(p: &PState) {
        while p.stop.is_stopped() {
            spin_loop();
        }
    }

    /// The holder runs two goroutines (touching the P between scheduling points, where it
    /// answers a request) and then gives the P up under the scheduler lock (`pidleput`
    /// answers for it); the coordinator requests a stop if the P is held, else holds it, and
    /// touches the P once it is stopped. The two never touch it at once, and the coordinator
    /// never waits forever.
    #[test]
    fn loom_stop_request_against_answer_and_give_up() {
        loom::model(|| {
            let p = Arc::new(PState {
                stop: StopWord::default(),
                cache: UnsafeCell::new(0),
            });
            // `true` while the P is held (the scheduler lock guards it).
            let held = Arc::new(Mutex::new(true));
            let holder = {
                let (p, held) = (p.clone(), held.clone());
                thread::spawn(move || {
                    for _ in 0..2 {
                        if p.stop.is_requested() && p.stop.answer() {
                            wait_restart(&p);
                        }
                        touch(&p);
                    }
                    let mut h = held.lock().unwrap();
                    p.stop.answer();
                    *h = false;
                })
            };
            {
                let h = held.lock().unwrap();
                if *h {
                    p.stop.request();
                } else {
                    p.stop.hold();
                }
            }
            while !p.stop.is_stopped() {
                spin_loop();
            }
            touch(&p);
            p.stop.release();
            holder.join().unwrap();
            p.cache.with(|c| assert_eq!(unsafe { *c }, 3));
        });
    }

    /// Sysmon lends a spare P under the scheduler lock unless a stop is pending; the stop's
    /// coordinator sets the flag and requests a stop of every lent P under the same lock.
    /// A spare lent just before the stop answers before it runs anything; one not lent stays
    /// in the pool until the restart. The coordinator's scan of the spare's state never
    /// overlaps a goroutine running on it.
    #[test]
    fn loom_spare_activation_racing_a_stop_of_the_world() {
        struct Sched {
            stw: bool,
            lent: bool,
        }
        loom::model(|| {
            let spare = Arc::new(PState {
                stop: StopWord::default(),
                cache: UnsafeCell::new(0),
            });
            let sched = Arc::new(Mutex::new(Sched {
                stw: false,
                lent: false,
            }));
            let sysmon = {
                let (spare, sched) = (spare.clone(), sched.clone());
                thread::spawn(move || {
                    {
                        let mut s = sched.lock().unwrap();
                        if s.stw || s.lent {
                            return;
                        }
                        s.lent = true;
                    }
                    // The M the spare is handed to: answer first, then run a goroutine.
                    if spare.stop.is_requested() && spare.stop.answer() {
                        wait_restart(&spare);
                    }
                    touch(&spare);
                    let mut s = sched.lock().unwrap();
                    spare.stop.answer();
                    s.lent = false;
                })
            };
            let requested = {
                let mut s = sched.lock().unwrap();
                s.stw = true;
                if s.lent {
                    spare.stop.request();
                }
                s.lent
            };
            if requested {
                while !spare.stop.is_stopped() {
                    spin_loop();
                }
                touch(&spare);
                spare.stop.release();
            } else {
                // Not lent: the pool keeps it while the world is stopped.
                touch(&spare);
            }
            sched.lock().unwrap().stw = false;
            sysmon.join().unwrap();
        });
    }
}
