//! The public face of stop-the-world: `Runtime::stop_the_world`, the stopped world's
//! goroutine snapshots (status, stack bounds, saved registers), and `for_each_p`.

use crate::g::{G, NOT_LIVE};
use crate::m::MNote;
use crate::park::WaitReason;
use crate::sched::{Shared, lock};
use crate::stw::Stopped;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a goroutine was doing when the world stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GStatus {
    /// Running on a P: stopped at a safepoint, or suspended by signal (`suspended`).
    Running {
        /// The P it runs on.
        p: usize,
        /// Whether its thread was suspended by signal (its registers are in
        /// [`GoroutineSnapshot::registers`]) rather than stopped at a safepoint.
        suspended: bool,
    },
    /// Queued, waiting for a P.
    Runnable,
    /// Parked, for this reason.
    Waiting(WaitReason),
    /// Inside [`blocking`](crate::blocking): running on an M without a P. It cannot take a
    /// P back until the world restarts.
    Syscall,
}

impl GStatus {
    /// Go's word for the status in goroutine dumps (`running`, `runnable`, `chan receive`,
    /// `syscall`).
    pub fn as_str(&self) -> &'static str {
        match self {
            GStatus::Running { .. } => "running",
            GStatus::Runnable => "runnable",
            GStatus::Waiting(r) => r.as_str(),
            GStatus::Syscall => "syscall",
        }
    }
}

/// One goroutine of a stopped world, as a collector's stack scan or a dump needs it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct GoroutineSnapshot<'w> {
    /// Its id.
    pub id: u64,
    /// What it was doing.
    pub status: GStatus,
    /// Its stack region (usable part, lowest to highest address); `None` before it first
    /// ran (it has no stack yet).
    pub stack: Option<Range<usize>>,
    /// Where a walk of its stack starts: the stack pointer, program counter and frame
    /// pointer at which it stopped (parked or queued: where it switched out; at a
    /// safepoint: the safepoint's frame; suspended: the interrupted registers). Zero when
    /// unknown (never ran; inside `blocking`). For a suspended goroutine `sp` already
    /// includes the red zone below the stack pointer (a leaf function's data may live
    /// there), so a scan of `sp..stack.end` covers every live word.
    pub sp: usize,
    /// See `sp`.
    pub pc: usize,
    /// See `sp`.
    pub fp: usize,
    /// Every register the suspension handler saved (general and vector), for a
    /// conservative scan; `None` unless the goroutine's thread was suspended by signal.
    pub registers: Option<&'w [u64]>,
}

/// A stopped world. Restarted by [`start`](WorldStopped::start) or on drop.
///
/// While it lives no goroutine of the runtime runs, except the caller (if it is one): every
/// other P's holder waits at a safepoint or between goroutines, or is suspended by signal.
/// Goroutines inside [`blocking`](crate::blocking) keep running their call but cannot take a
/// P. The caller must not park or yield before restarting, and should not allocate with the
/// system allocator or print (a suspended thread may hold the allocator's or stdout's lock).
pub struct WorldStopped<'rt> {
    shared: &'rt Arc<Shared>,
    stopped: Option<Stopped>,
    own: Option<usize>,
}

impl std::fmt::Debug for WorldStopped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorldStopped").finish_non_exhaustive()
    }
}

impl<'rt> WorldStopped<'rt> {
    pub(crate) fn stop(shared: &'rt Arc<Shared>) -> WorldStopped<'rt> {
        let own = own_p(shared);
        let stopped = shared.stop_world(own);
        WorldStopped {
            shared,
            stopped: Some(stopped),
            own,
        }
    }

    /// How long the stop took, from the request to the last P's answer.
    pub fn stop_latency(&self) -> Duration {
        let s = self
            .stopped
            .as_ref()
            .expect("runtime: world already started");
        s.stopped_at.duration_since(s.began)
    }

    /// Calls `f` for every goroutine alive, in no particular order. Allocates nothing.
    pub fn for_each_goroutine(&self, mut f: impl FnMut(&GoroutineSnapshot<'_>)) {
        let shared = self.shared;
        let s = lock(&shared.sched);
        let gs = lock(shared.allgs.list());
        for gp in gs.iter() {
            // SAFETY: registered, hence alive, and we hold the registry's lock (`AllGs`).
            let g: &G = unsafe { &*gp.0 };
            if g.wait_reason.load(Ordering::Relaxed) == NOT_LIVE {
                continue;
            }
            let snap = snapshot(shared, &s.notes, g, self.own);
            f(&snap);
        }
    }

    /// Restarts the world. Returns how long it was stopped, from the request to the
    /// restart.
    pub fn start(mut self) -> Duration {
        self.restart()
    }

    fn restart(&mut self) -> Duration {
        let Some(stopped) = self.stopped.take() else {
            return Duration::ZERO;
        };
        let began = stopped.began;
        self.shared.start_world(stopped);
        began.elapsed()
    }
}

impl Drop for WorldStopped<'_> {
    fn drop(&mut self) {
        self.restart();
    }
}

/// The caller's P, when it is a goroutine of `shared` holding one.
fn own_p(shared: &Arc<Shared>) -> Option<usize> {
    let m = crate::m::current_m();
    if m.is_null() {
        return None;
    }
    // SAFETY: this thread's live M; no switch happens while we use it.
    let m = unsafe { &*m };
    (m.has_p() && Arc::ptr_eq(&m.shared, shared) && !m.curg.get().is_null()).then(|| m.p_ref().id)
}

/// The snapshot of `g`. The caller holds the scheduler lock and the registry's lock, with
/// the world stopped: no goroutine's state, context or stack slot changes meanwhile.
fn snapshot<'w>(
    shared: &'w Shared,
    notes: &'w [Arc<MNote>],
    g: &'w G,
    own: Option<usize>,
) -> GoroutineSnapshot<'w> {
    // SAFETY: the world is stopped and we hold the registry's lock: the M that could set a
    // G's stack (`M::prepare`, holding a P) is stopped, so the slot is not written.
    let stack = unsafe { (*g.stack.get()).as_ref() }.map(|s| s.base() as usize..s.top() as usize);
    let mut snap = GoroutineSnapshot {
        id: g.id(),
        status: GStatus::Runnable,
        stack,
        sp: 0,
        pc: 0,
        fp: 0,
        registers: None,
    };
    let running_on = notes
        .iter()
        .find(|n| std::ptr::eq(n.curg.load(Ordering::Relaxed), g));
    if let Some(note) = running_on {
        let p = shared
            .created_ps()
            .chain(shared.spares())
            .find(|p| std::ptr::eq(p.holder.load(Ordering::Acquire), &**note));
        match p {
            Some(p) => {
                let suspended = note.suspend.is_suspended() && Some(p.id) != own;
                snap.status = GStatus::Running { p: p.id, suspended };
                if suspended {
                    // SAFETY: the coordinator (our caller's stop) suspended this thread, and
                    // it is resumed only when the world restarts, after `f` returned.
                    let regs = unsafe { note.suspend.registers() };
                    (snap.sp, snap.pc, snap.fp) = (regs.sp, regs.pc, regs.fp);
                    snap.registers = Some(regs.words);
                } else {
                    snap.pc = note.safepoint_pc.load(Ordering::Relaxed);
                    snap.fp = note.safepoint_fp.load(Ordering::Relaxed);
                }
            }
            None => snap.status = GStatus::Syscall,
        }
        return snap;
    }
    if g.state.is_parked() {
        let reason = g.wait_reason.load(Ordering::Relaxed);
        snap.status = GStatus::Waiting(WaitReason::from_u8(reason).unwrap_or(WaitReason::Parked));
    }
    if snap.stack.is_some() {
        // SAFETY: a G that is not running has its context saved by `switch` (the world is
        // stopped, so nobody resumes it while we read).
        let sp = unsafe { (*g.ctx.get()).sp } as usize;
        if sp != 0 {
            snap.sp = sp;
            // SAFETY: `sp` was saved by `switch` (or `init_stack`) on the G's stack, which
            // is mapped while the G is registered, and nothing runs the G meanwhile.
            let start = unsafe { crate::trace::parked_start(sp) };
            (snap.pc, snap.fp) = (start.pc, start.fp);
        }
    }
    snap
}

/// Calls `f` with every P's id (the regular ones GOMAXPROCS covers, and lent spares) while
/// that P's owner is stopped — at a safepoint or between goroutines, or suspended by signal
/// when it does not answer — so no P state is ever touched by two threads. The caller's own P
/// (when it is a goroutine of the runtime) is handed to `f` without stopping. Ps are stopped
/// one at a time: the rest of the program keeps running.
pub(crate) fn for_each_p(shared: &Arc<Shared>, mut f: impl FnMut(usize)) {
    let own = own_p(shared);
    shared.for_each_p_stopped(own, &mut f);
}

/// How a suspended goroutine is held.
enum Held {
    /// Parked, held still by its park word (`GState::begin_scan`).
    Parked(*const G),
    /// Running on P `p`, which alone is stopped; `suspended` are the threads suspended for
    /// it.
    Running {
        p: usize,
        suspended: Vec<Arc<MNote>>,
    },
    /// Queued or between states for too long: the whole world is stopped.
    World(Option<Stopped>),
}

/// One goroutine held still for a scan ([`Runtime::suspend_goroutine`](crate::Runtime::suspend_goroutine)),
/// released on drop. The rest of the program keeps running, except when the goroutine was
/// queued (runnable): then the world is stopped while it is held.
pub struct SuspendedGoroutine<'rt> {
    shared: &'rt Arc<Shared>,
    id: u64,
    held: Held,
}

impl std::fmt::Debug for SuspendedGoroutine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuspendedGoroutine")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Attempts to catch a goroutine parked or running before stopping the world instead.
const SUSPEND_TRIES: usize = 64;

impl<'rt> SuspendedGoroutine<'rt> {
    /// Holds goroutine `id` of `shared` still (see `Runtime::suspend_goroutine`).
    pub(crate) fn suspend(shared: &'rt Arc<Shared>, id: u64) -> Option<SuspendedGoroutine<'rt>> {
        if crate::park::goid() == Some(id) {
            return None; // the caller cannot hold itself still
        }
        let own = own_p(shared);
        shared.lock_stops(own);
        let out = |held| SuspendedGoroutine { shared, id, held };
        for _ in 0..SUSPEND_TRIES {
            let Some(g) = find(shared, id) else {
                shared.unlock_stops();
                return None;
            };
            // SAFETY: `find` returned a registered G (alive while registered); we only use
            // its atomics here.
            let gr = unsafe { &*g };
            if gr.state.begin_scan() {
                return Some(out(Held::Parked(g)));
            }
            if let Some(p) = running_p(shared, g) {
                let mut suspended = Vec::with_capacity(1);
                shared.stop_one(p, &mut suspended);
                if running_p(shared, g) == Some(p) {
                    return Some(out(Held::Running { p, suspended }));
                }
                shared.release_one(p, &mut suspended);
            }
            std::thread::yield_now();
        }
        // Queued, or moving between states all along: stop everything instead.
        shared.unlock_stops();
        let stopped = shared.stop_world(own);
        if find(shared, id).is_none() {
            shared.start_world(stopped);
            return None;
        }
        Some(out(Held::World(Some(stopped))))
    }

    /// The goroutine's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its snapshot: status, stack bounds, where a walk starts, saved registers.
    pub fn snapshot(&self) -> GoroutineSnapshot<'_> {
        let s = lock(&self.shared.sched);
        let g = match self.held {
            Held::Parked(g) => g,
            _ => find(self.shared, self.id).expect("runtime: a held goroutine vanished"),
        };
        // SAFETY: the G is held still (parked and scanning, its P stopped, or the world
        // stopped), so it stays registered and alive, and its fields do not change.
        let g = unsafe { &*g };
        let snap = snapshot(self.shared, &s.notes, g, None);
        // The borrow of `notes` ends with the guard; copy out what outlives it.
        GoroutineSnapshot {
            id: snap.id,
            status: snap.status,
            stack: snap.stack.clone(),
            sp: snap.sp,
            pc: snap.pc,
            fp: snap.fp,
            registers: snap.registers.map(|r| {
                // SAFETY: the words live in the note's suspension slot, and notes live as
                // long as the runtime (`SchedState::notes` only grows), which `self`
                // borrows; the thread stays suspended, its slot unwritten, until `self`
                // drops — so the view may outlive the scheduler lock's guard.
                unsafe { std::slice::from_raw_parts(r.as_ptr(), r.len()) }
            }),
        }
    }
}

impl Drop for SuspendedGoroutine<'_> {
    fn drop(&mut self) {
        match &mut self.held {
            Held::Parked(g) => {
                // SAFETY: held still, hence alive (see `snapshot`).
                unsafe { &**g }.state.end_scan();
                self.shared.unlock_stops();
            }
            Held::Running { p, suspended } => {
                self.shared.release_one(*p, suspended);
                self.shared.unlock_stops();
            }
            Held::World(stopped) => {
                if let Some(stopped) = stopped.take() {
                    self.shared.start_world(stopped);
                }
            }
        }
    }
}

/// The registered G running goroutine `id`, if any.
fn find(shared: &Shared, id: u64) -> Option<*const G> {
    let gs = lock(shared.allgs.list());
    gs.iter()
        .map(|p| p.0)
        // SAFETY: registered, hence alive, and we hold the registry's lock.
        .find(|&g| unsafe {
            (*g).id() == id && (*g).wait_reason.load(Ordering::Relaxed) != NOT_LIVE
        })
}

/// The P whose holder runs `g` right now, if any.
fn running_p(shared: &Shared, g: *const G) -> Option<usize> {
    let s = lock(&shared.sched);
    let note = s
        .notes
        .iter()
        .find(|n| std::ptr::eq(n.curg.load(Ordering::Relaxed), g))?;
    shared
        .created_ps()
        .chain(shared.spares())
        .find(|p| std::ptr::eq(p.holder.load(Ordering::Acquire), &**note))
        .map(|p| p.id)
}
