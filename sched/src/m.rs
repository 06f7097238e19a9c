//! M: an OS thread that runs goroutines while holding a P — its scheduling loop, stealing and
//! idling.

use crate::arch::{self, Context};
use crate::g::G;
use crate::handoff::release_p;
use crate::loom::Ordering;
use crate::p::{FREE_G_MAX, P, STACK_CACHE_MAX};
use crate::parker::Parker;
use crate::sched::{Shared, lock};
use crate::stack::{self, AltStack, Stack};
use crate::timer::{FOREIGN_HEAP, TimerHome};
use std::cell::{Cell, UnsafeCell};
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// Stack size of an M's own thread: scheduler code and the idle hook run there, never
/// goroutines.
const M_THREAD_STACK: usize = 512 * 1024;

/// How often (in scheduling rounds) a P looks at the global queue before its own, so that
/// a busy P cannot starve globally queued goroutines (Go's 61).
const GLOBAL_FAIRNESS_TICK: u32 = 61;

const NO_P: usize = usize::MAX;

/// Rounds over all victims a spinning M makes before giving up its P.
const STEAL_ROUNDS: u32 = 4;
/// How long a thief lets a running victim switch to its `runnext` before taking it (Go's
/// `usleep(3)` in `runqgrab`).
const RUNNEXT_GRACE: Duration = Duration::from_micros(3);

/// Idle Ms kept parked however long they idle: enough to hand out Ps at once after a lull.
const IDLE_M_RESERVE: usize = 4;

/// The earlier of two optional timeouts (`None`: no timeout).
fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What `stop_m` tells the scheduling loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopped {
    /// Look for work again (a P may have been handed over, or shutdown began).
    Continue,
    /// This M is surplus: end its thread.
    Exit,
}

/// The part of an M that other threads touch: its parker and the P handed to it.
#[derive(Debug, Default)]
pub(crate) struct MNote {
    pub(crate) parker: Parker,
    /// `0`, or `(p + 1) << 1 | spinning`: a P handed to this M. Written by the waker before
    /// `unpark` (Release, pairs with the Acquire in `take_handoff`).
    handoff: AtomicUsize,
    /// The kernel thread id of the M using this note (0 before it starts). Written by the M
    /// when it starts (Relaxed); read by sysmon to look at the thread's kernel state (a hint:
    /// a note reused by a later M gets that M's id).
    pub(crate) tid: std::sync::atomic::AtomicI64,
    /// The goroutine running on this M, or null while its scheduler runs: a mirror of
    /// `M::curg` for stop-the-world snapshots. Written by the M (Relaxed) around each switch;
    /// read by a coordinator only while the M is stopped or suspended (its answer or the
    /// suspension handler's Release store orders the write before the read).
    pub(crate) curg: std::sync::atomic::AtomicPtr<G>,
    /// Where this M's goroutine answered a stop of the world (`stw.rs`): its pc and frame
    /// pointer, zeros when it did not. Written by the M, read by the coordinator (as
    /// `curg`).
    pub(crate) safepoint_pc: AtomicUsize,
    pub(crate) safepoint_fp: AtomicUsize,
    /// Signal suspension of this M's thread (stop-the-world's last resort).
    pub(crate) suspend: crate::stw::MSuspend,
    /// Set by sysmon when it lowered this thread's priority behind a goroutine that ignored
    /// its preempt request; cleared by the M when it restores it (`M::run`).
    pub(crate) demoted: std::sync::atomic::AtomicBool,
}

impl MNote {
    pub(crate) fn hand_off(&self, p: usize, spinning: bool) {
        self.hand_off_quietly(p, spinning);
        self.parker.unpark();
    }

    pub(crate) fn hand_off_quietly(&self, p: usize, spinning: bool) {
        let word = ((p + 1) << 1) | usize::from(spinning);
        // Release: pairs with `take_handoff`'s Acquire swap.
        let old = self.handoff.swap(word, Ordering::Release);
        assert_eq!(old, 0, "runtime: handed a P to an M that already has one");
    }

    pub(crate) fn take_handoff(&self) -> Option<(usize, bool)> {
        // Acquire: pairs with `hand_off_quietly`'s Release swap.
        let word = self.handoff.swap(0, Ordering::Acquire);
        (word != 0).then(|| ((word >> 1) - 1, word & 1 == 1))
    }
}

/// Why a goroutine switched back to its M.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing pending (the G is running).
    Run,
    /// `gosched`: queue it at the tail.
    Yield,
    /// `park`: commit the park, unless a token arrived meanwhile.
    Park,
    /// The G finished: recycle it.
    Exit,
    /// Queue it globally: the G left `blocking` and found no P (this M has no P either), or
    /// it yields to a preempt request (`park::preempt_yield`, Go's preemption order).
    Requeue,
}

/// An M. Lives in a box on its own thread for the thread's lifetime; only that thread
/// touches it, so its fields are plain cells.
pub(crate) struct M {
    pub(crate) shared: Arc<Shared>,
    pub(crate) note: Arc<MNote>,
    /// The scheduler's own context, saved while a goroutine runs.
    g0: UnsafeCell<Context>,
    /// The goroutine running on this M, or null while the scheduler runs.
    pub(crate) curg: Cell<*const G>,
    /// The P held, or `NO_P`. Changed only through `set_p`.
    p: Cell<usize>,
    /// The P held (`p`), or null: Ps live as long as their runtime, so the hot paths skip
    /// the lookup in `Shared::ps`.
    p_ptr: Cell<*const P>,
    pub(crate) spinning: Cell<bool>,
    action: Cell<Action>,
    /// A goroutine that switched straight to the one now running (`switch_direct`), and what
    /// it asked for; `after_resume` queues it (`Yield`) or commits its park (`Park`) right
    /// after the switch.
    pending: Cell<*const G>,
    pending_action: Cell<Action>,
    rng: Cell<u32>,
    /// Set when this M must end its thread (a goroutine exited while locked to it).
    exit: Cell<bool>,
    /// This thread's registration for suspension by signal (`note.suspend`'s slot); dropped
    /// before the note can be handed to another M.
    #[cfg(not(loom))]
    registration: Cell<Option<crate::suspend::Registration>>,
}

thread_local! {
    /// The M running on this thread. `const`-initialised and read only through the
    /// non-inlined `current_m`, so no caller can cache this thread-local's address across a
    /// context switch that moves its goroutine to another thread.
    static CURRENT: Cell<*const M> = const { Cell::new(ptr::null()) };
}

/// The M of the calling thread, or null on a thread that is not an M.
///
/// Never inlined: LLVM assumes a function stays on one thread and may reuse a thread-local
/// address computed before a call (llvm-project#98479); a goroutine that parked inside that
/// call may resume on another thread. Reading through an opaque call forces a fresh lookup.
#[inline(never)]
pub(crate) fn current_m() -> *const M {
    CURRENT.with(|c| c.get())
}

/// The goroutine running on the calling thread, or null.
#[inline]
pub(crate) fn current_g() -> *const G {
    let m = current_m();
    if m.is_null() {
        return ptr::null();
    }
    // SAFETY: a non-null CURRENT points at this thread's live M (cleared before it dies).
    unsafe { (*m).curg.get() }
}

/// Prints Go's fatal-error line and ends the process with status 2.
#[cold]
pub(crate) fn fatal(msg: &str) -> ! {
    eprintln!("fatal error: {msg}");
    std::process::exit(2);
}

/// Go's report when a program needs more Ms than `Builder::max_threads` allows.
#[cold]
pub(crate) fn thread_exhaustion(limit: usize) -> ! {
    eprintln!("runtime: program exceeds {limit}-thread limit");
    fatal("thread exhaustion");
}

/// Starts a new M thread that begins with the P already handed to `note`.
#[cold]
pub(crate) fn spawn_m(shared: Arc<Shared>, note: Arc<MNote>) {
    let id = shared.next_mid.fetch_add(1, Ordering::Relaxed);
    shared.sysmon.ensure_started(&shared);
    // Runs inside `start_m`'s no-preempt window, its only caller: the P is already handed
    // to the new M, so a stop of the world must not suspend us inside `pthread_create`.
    let result = std::thread::Builder::new()
        .name(format!("gort-m{id}"))
        .stack_size(M_THREAD_STACK)
        .spawn(move || m_main(shared, note, id));
    if let Err(e) = result {
        fatal(&format!("runtime: failed to create new OS thread: {e}"));
    }
}

fn m_main(shared: Arc<Shared>, note: Arc<MNote>, id: usize) {
    let _alt = AltStack::ensure();
    let m = Box::new(M {
        shared,
        note,
        g0: UnsafeCell::new(Context::empty()),
        curg: Cell::new(ptr::null()),
        p: Cell::new(NO_P),
        p_ptr: Cell::new(ptr::null()),
        spinning: Cell::new(false),
        action: Cell::new(Action::Run),
        pending: Cell::new(ptr::null()),
        pending_action: Cell::new(Action::Run),
        rng: Cell::new((id as u32).wrapping_mul(0x9E37_79B9) | 1),
        exit: Cell::new(false),
        #[cfg(not(loom))]
        registration: Cell::new(None),
    });
    #[cfg(not(loom))]
    m.registration
        .set(Some(crate::suspend::register_current(&m.note.suspend.slot)));
    CURRENT.with(|c| c.set(&*m));
    m.note.tid.store(
        crate::sysmon::current_tid(),
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Some((p, spinning)) = m.note.take_handoff() {
        m.set_p(p);
        m.spinning.set(spinning);
    }
    m.run();
    CURRENT.with(|c| c.set(ptr::null()));
}

impl M {
    #[inline]
    pub(crate) fn has_p(&self) -> bool {
        self.p.get() != NO_P
    }

    /// The P held. Panics (a broken invariant) when none is.
    #[inline]
    pub(crate) fn p_ref(&self) -> &P {
        let p = self.p_ptr.get();
        assert!(!p.is_null(), "runtime: M has no P");
        // SAFETY: `p_ptr` points at the P we hold (`set_p`); Ps are boxed and live as long
        // as their runtime, which this M keeps alive.
        unsafe { &*p }
    }

    /// Holds P `id` from now on (`NO_P`: none). Publishes the holder for sysmon and
    /// stop-the-world, and bumps the old and new P's ticks (a P changing hands is not one
    /// goroutine overstaying its slice).
    #[inline]
    fn set_p(&self, id: usize) {
        let old = self.p_ptr.get();
        if !old.is_null() {
            // SAFETY: Ps live as long as their runtime, which this M keeps alive.
            let old = unsafe { &*old };
            // Release: pairs with the Acquire loads of `holder` (sysmon, stop-the-world).
            old.holder.store(ptr::null_mut(), Ordering::Release);
            old.tick.fetch_add(1, Ordering::Relaxed);
            crate::preempt::clear(old);
        }
        self.p.set(id);
        if id == NO_P {
            self.p_ptr.set(ptr::null());
            return;
        }
        let p = self.shared.p(id);
        self.p_ptr.set(p);
        p.tick.fetch_add(1, Ordering::Relaxed);
        // Release: as above.
        p.holder
            .store(Arc::as_ptr(&self.note).cast_mut(), Ordering::Release);
    }

    /// Whether `p`'s ring head is where the previous fairness look left it (and records it
    /// for the next look). A ring that moves is being served; one that does not, with
    /// goroutines in it, is starving behind `runnext`. (An empty ring stands still too:
    /// `pop_ring` then finds nothing, at the cost of one look.)
    #[inline]
    fn ring_stalled(p: &P, o: &mut crate::p::Owned) -> bool {
        let h = p.runq.ring_head();
        std::mem::replace(&mut o.ring_seen, h) == h
    }

    /// The holder of `p` is about to run a goroutine: a new slice begins, so the tick moves
    /// and a preempt request aimed at the previous slice is dropped.
    #[inline]
    fn note_switch(p: &P) {
        // A plain load and store: only the holder writes the tick while it holds the P.
        p.tick.store(
            p.tick.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
        crate::preempt::clear(p);
    }

    fn next_rand(&self) -> u32 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng.set(x);
        x
    }

    /// The scheduling loop (Go's `schedule`), on the M's own stack.
    fn run(&self) {
        while !self.shared.shutdown.load(Ordering::Acquire) {
            if self.note.demoted.load(Ordering::Relaxed) && !self.undemote() {
                return;
            }
            if !self.has_p() {
                if self.stop_m() == Stopped::Exit {
                    return;
                }
                continue;
            }
            if let Some(g) = self.find_runnable() {
                if self.spinning.get() {
                    self.reset_spinning();
                }
                self.execute(g);
                if self.exit.get() {
                    return;
                }
            }
        }
        if self.spinning.get() {
            self.spinning.set(false);
            self.shared.spin.stop_spinning();
        }
    }

    /// Puts a runnable G at the tail of our P's queue, spilling half to the global queue
    /// when it is full.
    #[inline]
    pub(crate) fn push_back(&self, g: NonNull<G>) {
        if let Err(batch) = self.p_ref().runq.push_back(g) {
            self.shared.global.push_batch(batch);
        }
    }

    /// Gives `g` a stack and a first frame if it has never run.
    #[inline]
    fn prepare(&self, g: NonNull<G>) {
        // SAFETY: we hold `g`'s scheduling reference (popped from a queue), so its cells are
        // ours until we hand it on.
        let gr = unsafe { g.as_ref() };
        // SAFETY: as above.
        let slot = unsafe { &mut *gr.stack.get() };
        if slot.is_none() {
            let s = self.take_stack();
            // SAFETY: `s` is a fresh exclusive stack; its top is page-aligned.
            let ctx = unsafe { arch::init_stack(s.top(), g_entry, g.as_ptr().cast()) };
            // SAFETY: as above, the G's cells are ours.
            unsafe { *gr.ctx.get() = ctx };
            *slot = Some(s);
        }
    }

    /// Runs `g` until a goroutine switches back (not necessarily `g`: a yield may hand this
    /// M from goroutine to goroutine directly), then does what that one asked for.
    fn execute(&self, mut g: NonNull<G>) {
        self.prepare(g);
        M::note_switch(self.p_ref());
        loop {
            self.curg.set(g.as_ptr());
            self.note.curg.store(g.as_ptr(), Ordering::Relaxed);
            // SAFETY: as in `prepare`.
            stack::set_current_goid(unsafe { g.as_ref() }.id());
            // SAFETY: `g`'s context was saved by `switch` or prepared by `init_stack` on its
            // own stack, and no other M can resume it (we hold its scheduling reference).
            // `g0` is this M's own context, resumed only by code running on this thread.
            unsafe { arch::switch(self.g0.get(), g.as_ref().ctx.get()) };
            g = NonNull::new(self.curg.get().cast_mut()).expect("runtime: no goroutine came back");
            self.curg.set(ptr::null());
            self.note.curg.store(ptr::null_mut(), Ordering::Relaxed);
            stack::set_current_goid(0);
            match self.action.replace(Action::Run) {
                Action::Yield => {
                    self.push_back(g);
                    return;
                }
                Action::Park => {
                    // SAFETY: the goroutine that came back is ours (see `execute`).
                    if unsafe { g.as_ref() }.state.commit_park() {
                        return; // the parked state now owns the scheduling reference
                    }
                }
                Action::Exit => {
                    // SAFETY: the goroutine that came back is ours (see above).
                    let locked = unsafe { g.as_ref() }.locked.swap(0, Ordering::Relaxed) != 0;
                    self.g_exit(g);
                    if locked {
                        self.end_thread();
                    }
                    return;
                }
                Action::Requeue => {
                    self.shared.global.push(g);
                    self.shared.wakep();
                    return;
                }
                Action::Run => panic!("runtime: goroutine switched out without a reason"),
            }
        }
    }

    /// `gosched`'s fast path (see `switch_direct`).
    ///
    /// # Safety
    /// As `switch_out`.
    pub(crate) unsafe fn yield_now(m: *const M) {
        // SAFETY: forwarded caller contract.
        unsafe { M::switch_direct(m, Action::Yield) }
    }

    /// `park`'s fast path (see `switch_direct`): the parking goroutine's park is committed by
    /// the next one, in `after_resume`, once its registers are saved — exactly what the
    /// scheduler loop would do on its own stack, one context switch sooner.
    ///
    /// # Safety
    /// As `switch_out`.
    pub(crate) unsafe fn park_now(m: *const M) {
        // SAFETY: forwarded caller contract.
        unsafe { M::switch_direct(m, Action::Park) }
    }

    /// Hands the M straight from the running goroutine to the next one of the local queue,
    /// without passing through the scheduler's own stack (one context switch instead of
    /// two). What `action` asks for the goroutine leaving — queue it (`Yield`) or commit its
    /// park (`Park`) — is done by the goroutine that resumes, in `after_resume`, once the
    /// leaver's registers are saved. Every 61st direct switch with the global queue or a
    /// timer waiting, when the local queue is empty, or when the P is being retired, it takes
    /// the full path through the scheduler instead.
    ///
    /// # Safety
    /// As `switch_out`.
    // Never inlined: it writes a thread-local (`set_current_goid`) before its switch, and
    // its callers park in loops (`Group::wait`, inlined into every channel operation); inlined
    // there, LLVM may keep the thread-local's address from one iteration to the next, across
    // a switch that moved the goroutine to another thread (llvm-project#98479, as for
    // `current_m`).
    #[inline(never)]
    unsafe fn switch_direct(m: *const M, action: Action) {
        // SAFETY: `m` is the calling thread's live M (caller contract); the reference is not
        // used after the switch below.
        let this = unsafe { &*m };
        let p = this.p_ref();
        // Every 61st fast yield with goroutines waiting in the global queue goes through the
        // scheduler and makes it look there first, so yielders cannot starve the global
        // queue (the yield tick is the fast path's own: sharing `find_runnable`'s tick let
        // the fast path take every 61st round).
        // SAFETY: we hold our P; the reference ends within this block.
        let (ring_turn, fair) = unsafe {
            let o = p.owned();
            o.yield_tick = o.yield_tick.wrapping_add(1);
            let tick = o.yield_tick.is_multiple_of(GLOBAL_FAIRNESS_TICK);
            let fair = tick
                && (this.shared.global.len() > 0
                    || TimerHome::heap_ids(this.shared.nps())
                        .any(|h| this.shared.timers.has_timers(h))
                    || this.shared.hook.has_waiters());
            o.check_global |= fair;
            (tick && Self::ring_stalled(p, o), fair)
        };
        // Through the scheduler also when a P is being retired, and when a stop of the world
        // asks this P to stop, so the scheduler loop answers it. When the ring has not moved
        // since the previous 61st round, its oldest goroutine goes first: two goroutines
        // handing the P to each other through `runnext` would otherwise starve it.
        let next = if fair || p.id >= this.shared.procs() || p.stop.is_requested() {
            None
        } else if ring_turn {
            p.runq.pop_ring().or_else(|| p.runq.pop())
        } else {
            p.runq.pop()
        };
        let Some(next) = next else {
            // SAFETY: forwarded caller contract.
            unsafe { M::switch_out(m, action) };
            return;
        };
        this.prepare(next);
        M::note_switch(p);
        let cur = this.curg.get();
        this.pending.set(cur);
        this.pending_action.set(action);
        this.curg.set(next.as_ptr());
        this.note.curg.store(next.as_ptr(), Ordering::Relaxed);
        // SAFETY: popped from our queue, so `next` is ours.
        stack::set_current_goid(unsafe { next.as_ref() }.id());
        // SAFETY: `cur` is the running goroutine (its context slot is ours to write); `next`
        // is prepared and ours. `cur` is published (queued) only after this switch saved it.
        unsafe { arch::switch((*cur).ctx.get(), next.as_ref().ctx.get()) };
        after_resume();
    }

    /// Switches from the running goroutine back to this M's scheduler with `action`.
    ///
    /// # Safety
    /// Must be called by the goroutine running on `m` (the calling thread's M). After this
    /// returns the goroutine may be on another M: the caller must not use `m` again.
    pub(crate) unsafe fn switch_out(m: *const M, action: Action) {
        // SAFETY: `m` is the calling thread's live M (caller contract).
        let (g, g0) = unsafe { ((*m).curg.get(), (*m).g0.get()) };
        // SAFETY: as above.
        unsafe { (*m).action.set(action) };
        // SAFETY: `g` is the running goroutine, so its context slot is ours to write; `g0`
        // was saved by this M's `execute` when it switched to `g` (or to the goroutine that
        // handed the M to `g`).
        unsafe { arch::switch((*g).ctx.get(), g0) };
        after_resume();
    }

    fn take_stack(&self) -> Stack {
        // SAFETY: we hold our P.
        let owned = unsafe { self.p_ref().owned() };
        match owned.stacks.pop() {
            Some(s) => s,
            None => self.refill_stacks(&mut owned.stacks),
        }
    }

    #[cold]
    fn refill_stacks(&self, cache: &mut Vec<Stack>) -> Stack {
        let result = self.shared.stacks.get_batch(cache, STACK_CACHE_MAX / 2);
        match (cache.pop(), result) {
            (Some(s), _) => s,
            (None, Err(e)) => fatal(&format!("cannot allocate a goroutine stack: {e}")),
            (None, Ok(())) => unreachable!("runtime: stack batch came back empty"),
        }
    }

    /// Recycles a finished G: stack to the P's cache, G to the free list when no handle
    /// refers to it.
    fn g_exit(&self, g: NonNull<G>) {
        // SAFETY: the scheduling reference came from `Arc::into_raw` and is ours.
        let mut arc = unsafe { Arc::from_raw(g.as_ptr()) };
        arc.state.retire();
        // Relaxed: read by dumps only (a hint).
        arc.wait_reason.store(crate::g::NOT_LIVE, Ordering::Relaxed);
        self.shared.ngoroutines.fetch_sub(1, Ordering::Relaxed);
        let p = self.p_ref();
        // SAFETY: we hold our P; the G's cells are ours (it has exited).
        let owned = unsafe { p.owned() };
        // SAFETY: as above.
        if let Some(s) = unsafe { (*arc.stack.get()).take() } {
            owned.stacks.push(s);
            if owned.stacks.len() > STACK_CACHE_MAX {
                let spill = owned.stacks.len() / 2;
                self.shared.stacks.put_batch(owned.stacks.drain(..spill));
            }
        }
        if Arc::get_mut(&mut arc).is_some() {
            owned.free_gs.push(arc);
            if owned.free_gs.len() > FREE_G_MAX {
                let spill = owned.free_gs.len() / 2;
                lock(&self.shared.free_gs).extend(owned.free_gs.drain(..spill));
            }
        } else {
            // A handle still refers to it, so it is not reused: the runtime lets go of it.
            self.shared.allgs.unregister(&arc);
        }
    }

    /// Finds a goroutine to run (Go's `findRunnable`). Returns `None` after giving up the P.
    fn find_runnable(&self) -> Option<NonNull<G>> {
        let shared = &*self.shared;
        let mut p = self.p_ref();
        if crate::stw::stop_requested(p) {
            crate::stw::stop_in_scheduler(self, p);
            p = self.p_ref();
        }
        if p.id >= shared.procs() && (!p.is_spare() || shared.spare_done(p)) {
            self.retire_p();
            return None;
        }
        self.check_timers(p.id);
        // SAFETY: we hold our P; the reference ends within this statement.
        let (fair, ring_turn) = unsafe {
            let o = p.owned();
            o.sched_tick = o.sched_tick.wrapping_add(1);
            let fair = o.sched_tick.is_multiple_of(GLOBAL_FAIRNESS_TICK)
                || std::mem::take(&mut o.check_global);
            (fair, fair && Self::ring_stalled(p, o))
        };
        if fair && let Some(g) = self.rescue_stalled_ps(p) {
            return Some(g);
        }
        if fair
            && shared.global.len() > 0
            && let Some(g) = shared.global.lock().pop_batch(1, &p.runq)
        {
            return Some(g);
        }
        // Every 61st round, with goroutines waiting on the idle hook (descriptors of the
        // netpoller), poll it without blocking: with every P busy no M is idle to poll, and
        // until sysmon exists nobody else would notice I/O and deadlines. What it readies
        // goes to our `runnext`; the local queue's order below still holds.
        if fair && let Some(seen) = shared.poll_worthwhile() {
            shared.poll_now(seen);
        }
        // A ring that has not moved since the previous fair round: its oldest goroutine
        // before `runnext` (see `switch_direct`).
        if ring_turn && let Some(g) = p.runq.pop_ring() {
            return Some(g);
        }
        if let Some(g) = p.runq.pop() {
            return Some(g);
        }
        if shared.global.len() > 0 {
            let n = shared.global.len() / shared.procs() + 1;
            if let Some(g) = shared.global.lock().pop_batch(n, &p.runq) {
                return Some(g);
            }
        }
        if let Some(seen) = shared.poll_worthwhile() {
            shared.poll_now(seen);
            if let Some(g) = p.runq.pop() {
                return Some(g);
            }
        }
        // Spin (steal) only while spinning Ms are fewer than half the busy Ps: more would
        // burn CPU for little gain.
        // A spare always steals: taking the stuck P's queue is what it is for.
        let busy = shared.procs().saturating_sub(shared.spin.npidle());
        if self.spinning.get() || p.is_spare() || 2 * shared.spin.nmspinning() < busy {
            if !self.spinning.get() {
                self.spinning.set(true);
                shared.spin.start_spinning();
            }
            if let Some(g) = self.steal(p) {
                return Some(g);
            }
        }
        self.go_idle(p)
    }

    /// Gives up the P after a last look at the global queue; a spinning M then looks at
    /// every queue once more (after leaving the spinning count), so that work enqueued by a
    /// thread that saw us spinning — and therefore woke nobody — is not stranded.
    #[cold]
    fn go_idle(&self, p: &P) -> Option<NonNull<G>> {
        let shared = &*self.shared;
        if p.is_spare() {
            // Its loan ends unless the global queue has work after all (then it just
            // refills whatever was flushed).
            shared.p_retiring(p.id);
        }
        {
            let mut gq = shared.global.lock();
            if let Some(g) = gq.pop_batch(1, &p.runq) {
                return Some(g);
            }
            let mut s = lock(&shared.sched);
            self.set_p(NO_P);
            shared.pidleput(&mut s, p.id);
        }
        if self.spinning.get() {
            self.spinning.set(false);
            // Then look at every queue once more (see `spinning.rs`).
            shared.spin.stop_spinning();
            if self.work_exists() {
                let mut s = lock(&shared.sched);
                if let Some(id) = shared.pidleget(&mut s) {
                    drop(s);
                    self.set_p(id);
                    self.spinning.set(true);
                    shared.spin.start_spinning();
                }
            }
        }
        None
    }

    /// Every 61st round: rescues the work of the other Ps whose tick has not moved since this
    /// P's previous look — their due timers are run, and a goroutine queued on one of them is
    /// taken (half its ring, or its `runnext`) and returned to run here. Such a P's holder is
    /// off its CPU while it still holds the P (the kernel preempted it for another thread: on
    /// this project's VMs the kernel's memory-reclaim thread took a CPU for 4 to 8 ms at a
    /// time), or it is inside one long goroutine, or the P is idle. Either way nobody runs
    /// that work soon, and the Ms of busy Ps never steal: sleepers so stranded overslept by
    /// milliseconds (`sched/sleep-overshoot-p99` was 1 to 8 ms in one run of two), and
    /// queued goroutines waited for sysmon's slice and spare. A P whose tick moves is left
    /// alone: taking its timers or goroutines would only fight over its heap and move its
    /// goroutines (running every P's timers here cost the timer storm an eighth of its
    /// wake-ups).
    #[inline(never)]
    fn rescue_stalled_ps(&self, p: &P) -> Option<NonNull<G>> {
        let shared = &*self.shared;
        let nps = shared.nps();
        let mut found = None;
        for id in 0..nps {
            if id == p.id {
                continue;
            }
            let Some(other) = shared.ps[id].get() else {
                continue;
            };
            let tick = other.tick();
            let stalled = {
                // SAFETY: we hold our P; the reference ends within this block.
                let o = unsafe { p.owned() };
                if o.seen_ticks.len() < nps {
                    o.seen_ticks.resize(nps, u32::MAX);
                }
                std::mem::replace(&mut o.seen_ticks[id], tick) == tick
            };
            if !stalled {
                continue;
            }
            let h = crate::p::timer_heap(id);
            if shared.timers.has_timers(h) {
                // What they ready lands in our queue.
                self.shared.run_due_timers(std::iter::once(h));
            }
            if found.is_none() && !other.runq.is_empty() {
                found = Self::rescue_queue(other, p);
            }
        }
        found
    }

    /// Takes the work of a stalled P `victim` into ours (which may hold work of its own):
    /// half its ring as far as ours has room, else its `runnext`. No grace period as in
    /// `steal_from`: the victim's tick stood still for a whole round of ours.
    #[cold]
    fn rescue_queue(victim: &P, p: &P) -> Option<NonNull<G>> {
        let room = p.runq.room();
        if room > 0
            && let Some(g) = victim.runq.steal_ring_upto(&p.runq, room)
        {
            return Some(g);
        }
        victim.runq.steal_next(victim.runq.peek_next()?)
    }

    /// Runs the due timers of P `id`'s heap and of the foreign heap (a spare's heap is the
    /// foreign one).
    #[inline]
    fn check_timers(&self, id: usize) {
        match crate::p::timer_heap(id) {
            FOREIGN_HEAP => self.shared.run_due_timers(std::iter::once(FOREIGN_HEAP)),
            h => self.shared.run_due_timers([h, FOREIGN_HEAP].into_iter()),
        };
    }

    fn work_exists(&self) -> bool {
        let shared = &*self.shared;
        shared.global.len() > 0
            || shared
                .created_ps()
                .chain(shared.spares())
                .any(|p| !p.runq.is_empty())
    }

    /// Steals half of some other P's queue, victims in random order. Victims include Ps
    /// beyond GOMAXPROCS whose holders have not retired them yet (a holder running a long
    /// goroutine would otherwise strand the queue behind it after a shrink).
    fn steal(&self, p: &P) -> Option<NonNull<G>> {
        let shared = &*self.shared;
        let n = shared.nps();
        for round in 0..STEAL_ROUNDS {
            if round > 0 {
                // A producer on another P is often just about to enqueue more: waiting a
                // few hundred nanoseconds here is far cheaper than parking and being woken.
                for _ in 0..(32 << round) {
                    std::hint::spin_loop();
                }
            }
            let start = self.next_rand() as usize % n;
            // Lent spares too: a goroutine running on a spare may be the stuck one now, with
            // work queued behind it.
            let spares = crate::sched::MAX_PROCS..crate::sched::MAX_PROCS + crate::p::SPARE_PS;
            for id in (0..n).map(|i| (start + i) % n).chain(spares) {
                if id == p.id {
                    continue;
                }
                if let Some(victim) = shared.ps[id].get()
                    && let Some(g) = Self::steal_from(victim, p, round == STEAL_ROUNDS - 1)
                {
                    return Some(g);
                }
                // The victim may be idle or busy with a long goroutine: run its due timers
                // (what they ready lands in our queue).
                if self
                    .shared
                    .run_due_timers(std::iter::once(crate::p::timer_heap(id)))
                    > 0
                    && let Some(g) = p.runq.pop()
                {
                    return Some(g);
                }
            }
            if shared.global.len() > 0
                && let Some(g) = shared.global.lock().pop_batch(shared.procs(), &p.runq)
            {
                return Some(g);
            }
        }
        None
    }

    /// Steals half of `victim`'s ring into `p`'s; with `last` (the last round), `runnext`
    /// of an empty ring too — Go's rule: the victim's M most likely readied that goroutine
    /// to run next (a hand-off over a channel) and will switch to it in a moment, so a thief
    /// that snatched it at once would move it, and soon its partner, to another core for
    /// nothing: every hand-off of a ping-pong or a pipeline would cross cores. So the thief
    /// lets a running victim have 3 µs (Go's `usleep(3)`) and takes the goroutine only if
    /// it is still there.
    fn steal_from(victim: &P, p: &P, last: bool) -> Option<NonNull<G>> {
        if let Some(g) = victim.runq.steal_ring_into(&p.runq) {
            return Some(g);
        }
        if !last {
            return None;
        }
        let seen = victim.runq.peek_next()?;
        if !victim.holder.load(Ordering::Relaxed).is_null() {
            std::thread::sleep(RUNNEXT_GRACE);
        }
        victim.runq.steal_next(seen)
    }

    /// A spinning M found work: stop spinning, and if it was the last spinner, wake another
    /// so that further work keeps being picked up in parallel.
    fn reset_spinning(&self) {
        self.spinning.set(false);
        if self.shared.spin.stop_spinning() == 1 {
            self.shared.wakep();
        }
    }

    /// Restores the priority sysmon lowered (`sysmon::demote`). Returns false — after handing
    /// the P on and leaving the runtime's count of Ms — when the kernel refuses: the thread
    /// then ends, and a fresh M takes its place.
    #[cold]
    fn undemote(&self) -> bool {
        self.note.demoted.store(false, Ordering::Relaxed);
        if crate::sysmon::restore_priority() {
            return true;
        }
        if self.has_p() {
            self.end_thread();
        } else {
            self.leave(&mut lock(&self.shared.sched));
        }
        false
    }

    /// Ends this M's thread (a goroutine exited while locked to it — Go's rule: the thread
    /// may carry state the goroutine changed — or the thread cannot get its priority back).
    /// Hands the P to another M and ends the scheduling loop, which ends the thread.
    #[cold]
    fn end_thread(&self) {
        let shared = &self.shared;
        if self.spinning.get() {
            self.spinning.set(false);
            shared.spin.stop_spinning();
        }
        self.hand_off_p();
        self.leave(&mut lock(&shared.sched));
        self.exit.set(true);
    }

    /// Gives up a P beyond GOMAXPROCS, or a spare whose work is done: its queue goes to the
    /// global queue.
    #[cold]
    fn retire_p(&self) {
        let shared = &self.shared;
        let p = self.p_ref();
        shared.p_retiring(p.id);
        let mut batch = Vec::new();
        while let Some(g) = p.runq.pop() {
            batch.push(g);
        }
        let moved = !batch.is_empty();
        shared.global.push_batch(batch);
        let mut s = lock(&shared.sched);
        self.set_p(NO_P);
        shared.pidleput(&mut s, p.id);
        drop(s);
        if self.spinning.get() {
            self.spinning.set(false);
            shared.spin.stop_spinning();
        }
        if moved {
            shared.wakep();
        }
    }

    /// The idle M's turn in the idle hook's `poll`, until the earliest timer of any P or
    /// the next step of the idle memory release. Returns true to go round the scheduling
    /// loop again (with a P if one came: handed over, or idle with goroutines readied onto
    /// the global queue), false to park instead: the poll readied goroutines but every P is
    /// held, and no timer is armed (see below). The holders take them from the global
    /// queue and poll without blocking when they run dry (and every 61st round), as in Go,
    /// whose `findrunnable` stops the M after `injectglist`. Polling again at once would
    /// wake this M for every event only to queue goroutines no P can run yet, on a CPU the
    /// Ms holding the Ps need: on 2 CPUs the kernel stacked those two on one CPU in 4 ms
    /// slices, and every connection of the echo benchmark stalled for ~5 ms dozens of times
    /// a second.
    #[cold]
    fn poll_idle(
        &self,
        mut s: crate::sched::Locked<'_, crate::sched::SchedState>,
        next_release: Option<Duration>,
    ) -> bool {
        let shared = &*self.shared;
        s.polling = true;
        s.poller = Some(self.note.clone());
        drop(s);
        // Sleep until the earliest timer of any P (announced first: see `TimerHome`), or
        // the next step of the idle memory release, whichever comes first.
        let deadline = shared.timers.poll_deadline(shared.nps());
        let timer = (deadline != u64::MAX)
            .then(|| Duration::from_nanos(deadline.saturating_sub(shared.timers.now())));
        let timeout = earliest(timer, next_release);
        shared.note_poll(timeout != Some(Duration::ZERO));
        shared.hook.poll(timeout);
        shared.note_poll(false);
        shared.timers.poll_done();
        self.shared.run_all_timers();
        let mut s = lock(&shared.sched);
        s.polling = false;
        if s.poller
            .as_ref()
            .is_some_and(|n| Arc::ptr_eq(n, &self.note))
        {
            s.poller = None;
        }
        if let Some((id, spinning)) = self.note.take_handoff() {
            self.adopt(id, spinning);
        } else if shared.global.len() > 0
            && let Some(id) = shared.pidleget(&mut s)
        {
            // The poll (or a timer) readied goroutines onto the global queue.
            self.set_p(id);
        }
        // Parking is safe only while nothing but the Ps' holders needs the poll: goroutines
        // they will run, and no timer (a P held by an M that cannot run it — one waiting
        // for its locked goroutine — would otherwise leave it to nobody).
        let busy = !self.has_p()
            && shared.spin.npidle() == 0
            && shared.global.len() > 0
            && shared.timers.armed.load(Ordering::SeqCst) == 0;
        drop(s);
        if self.has_p() && shared.timers.armed.load(Ordering::SeqCst) != 0 {
            // We stop polling with timers pending: another M should take over.
            self.shared.wakep();
        }
        !busy
    }

    /// Blocks an M that has no P until one is handed to it (Go's `stopm`). One idle M at a
    /// time waits in the idle hook's `poll`; the others park.
    #[cold]
    fn stop_m(&self) -> Stopped {
        let shared = &*self.shared;
        // Memory release (release.rs): a bounded step now, and the next one when the poll
        // below times out; `None` once nothing is left, so an idle program sleeps for good.
        let next_release = shared.release_idle_memory();
        let mut s = lock(&shared.sched);
        if shared.shutdown.load(Ordering::Acquire) {
            return Stopped::Continue;
        }
        shared.check_deadlock(&s);
        if !s.polling {
            if self.poll_idle(s, next_release) {
                return Stopped::Continue;
            }
            s = lock(&shared.sched);
            if shared.shutdown.load(Ordering::Acquire) {
                return Stopped::Continue;
            }
        }
        s.idle_ms.push(self.note.clone());
        drop(s);
        let mut next_release = next_release;
        // Idle since when, for the surplus-M exit (wake-ups for memory release do not reset
        // it; a refused exit, below the reserve, starts a new period).
        let mut idle_since = Instant::now();
        loop {
            let exit_in = shared
                .idle_m_exit_after
                .saturating_sub(idle_since.elapsed());
            self.note.parker.park(earliest(Some(exit_in), next_release));
            if let Some((id, spinning)) = self.note.take_handoff() {
                self.adopt(id, spinning);
                return Stopped::Continue;
            }
            if shared.shutdown.load(Ordering::Acquire) {
                return Stopped::Continue;
            }
            if idle_since.elapsed() >= shared.idle_m_exit_after {
                if self.try_exit_idle() {
                    return Stopped::Exit;
                }
                idle_since = Instant::now();
            }
            // The poller may sit in an untimed poll: memory freed since is ours to release.
            next_release = next_release.and_then(|_| shared.release_idle_memory());
        }
    }

    /// An M idle for `Builder::idle_thread_exit` (2 s) leaves when more than `IDLE_M_RESERVE`
    /// Ms are idle (3000 blocking calls at once must not leave 3000 threads forever). Under the scheduler
    /// lock: if our note is no longer on the idle list, a waker took it and a P is on its
    /// way, so we stay.
    #[cold]
    fn try_exit_idle(&self) -> bool {
        let mut s = lock(&self.shared.sched);
        if s.idle_ms.len() <= IDLE_M_RESERVE {
            return false;
        }
        let Some(i) = s.idle_ms.iter().position(|n| Arc::ptr_eq(n, &self.note)) else {
            return false;
        };
        s.idle_ms.swap_remove(i);
        self.leave(&mut s);
        true
    }

    /// This M leaves the runtime's count of Ms (its thread is about to end): its suspension
    /// registration ends first, then its note goes to the free list for the next M. Caller
    /// holds `sched` (the `s` it passes).
    fn leave(&self, s: &mut crate::sched::SchedState) {
        s.nm -= 1;
        self.unregister();
        s.free_notes.push(self.note.clone());
    }

    /// Ends this thread's registration for suspension, before its note may go to another M.
    fn unregister(&self) {
        #[cfg(not(loom))]
        drop(self.registration.take());
    }

    fn adopt(&self, id: usize, spinning: bool) {
        self.set_p(id);
        self.spinning.set(spinning);
    }

    /// `blocking`'s first half: gives the P away — to another M at once when it has queued
    /// work, else to the idle list.
    ///
    /// The look at the global queue and the P's release happen under the global queue's
    /// lock (as in `go_idle`): a goroutine queued concurrently is either seen here, or queued
    /// after the P is on the idle list, where its enqueuer's `wakep` finds it
    /// (`handoff::release_p`, model-checked).
    pub(crate) fn hand_off_p(&self) {
        let id = self.p.get();
        if crate::p::is_spare(id) {
            self.shared.p_retiring(id);
        }
        self.set_p(NO_P);
        let shared = &self.shared;
        let local_empty = shared.p(id).runq.is_empty();
        let idled = release_p(&shared.global, local_empty, || {
            let mut s = lock(&shared.sched);
            shared.pidleput(&mut s, id);
        });
        if !idled {
            shared.start_m(Some(id), false);
        }
    }

    /// `blocking`'s second half: takes an idle P. With none idle, a pinned goroutine (one
    /// unwinding a panic) waits for one on this thread; any other is queued globally and
    /// resumes on whichever M picks it up.
    ///
    /// # Safety
    /// As `switch_out`: called by the goroutine running on `m`, which must not be used after.
    pub(crate) unsafe fn reacquire_p(m: *const M, pinned: bool) {
        // SAFETY: `m` is the calling thread's live M; the reference ends before any switch.
        let this = unsafe { &*m };
        let shared = this.shared.clone();
        let mut s = lock(&shared.sched);
        if let Some(id) = shared.pidleget(&mut s) {
            this.set_p(id);
            return;
        }
        if pinned {
            s.p_waiters.push(this.note.clone());
            drop(s);
            loop {
                this.note.parker.park(None);
                if let Some((id, _)) = this.note.take_handoff() {
                    this.set_p(id);
                    return;
                }
            }
        }
        drop(s);
        // SAFETY: forwarded caller contract; `this` is not used after.
        unsafe { M::switch_out(m, Action::Requeue) };
    }
}

/// Runs first whenever a goroutine resumes (or starts): finishes the switch of the goroutine
/// that handed this M over directly, if any — queues it after a yield; after a park, commits
/// the park, or queues it when a token arrived meanwhile (it is runnable again). Reads the M
/// afresh: the resumed goroutine may be on a new thread.
#[inline(always)]
fn after_resume() {
    let m = current_m();
    // SAFETY: a resumed goroutine runs on a live M.
    let this = unsafe { &*m };
    let prev = this.pending.replace(ptr::null());
    if let Some(prev) = NonNull::new(prev.cast_mut()) {
        match this.pending_action.replace(Action::Run) {
            Action::Park => {
                // SAFETY: the leaver's scheduling reference is ours until its park commits;
                // its registers were saved by the switch that brought us here.
                if !unsafe { prev.as_ref() }.state.commit_park() {
                    this.push_back(prev);
                }
            }
            _ => this.push_back(prev),
        }
    }
}

/// The first Rust frame of every goroutine (called by the architecture's trampoline).
///
/// # Safety
/// `arg` is the G being started, whose scheduling reference the calling M holds.
unsafe extern "C" fn g_entry(arg: *mut u8) -> ! {
    // SAFETY: per the contract; the G outlives its own execution.
    let g = unsafe { &*(arg as *const G) };
    after_resume();
    crate::spawn::run_body(g);
    let m = current_m();
    // SAFETY: we are the goroutine running on `m`; nothing of ours is live any more.
    unsafe { M::switch_out(m, Action::Exit) };
    // An exited goroutine is never resumed.
    std::process::abort();
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::Instant;

    fn current_p() -> usize {
        let m = current_m();
        // SAFETY: called from a goroutine, whose M is live; a short read of its own cell.
        unsafe { (*m).p.get() }
    }

    /// After a shrink, the queue of a P whose holder runs a long goroutine (and so has not
    /// retired it yet) is stolen by the Ps that remain, instead of waiting behind it.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn queue_of_a_retiring_p_is_stolen_while_its_holder_runs() {
        // SAFETY: the goroutines below hold no thread-bound values across scheduling points.
        let rt = unsafe { crate::Builder::new().gomaxprocs(2).build() }.unwrap();
        let rt = Arc::new(rt);
        let release = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let started = Arc::new(AtomicUsize::new(0));
        let spawned = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(AtomicUsize::new(0));
        for _ in 0..2 {
            let (release, started, spawned, ran) = (
                release.clone(),
                started.clone(),
                spawned.clone(),
                ran.clone(),
            );
            rt.go(move || {
                let p = current_p();
                started.fetch_add(1, Ordering::SeqCst);
                while started.load(Ordering::SeqCst) < 2 {
                    std::hint::spin_loop();
                }
                if p == 1 {
                    for _ in 0..8 {
                        let ran = ran.clone();
                        crate::go(move || {
                            ran.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                    spawned.store(true, Ordering::SeqCst);
                }
                // No scheduling point until released.
                while !release[p].load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        }
        while !spawned.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // P1 is retiring but held; its queue holds the 8 goroutines.
        let shrinker = {
            let rt = rt.clone();
            std::thread::spawn(move || rt.gomaxprocs(1))
        };
        release[0].store(true, Ordering::Relaxed);
        let start = Instant::now();
        while ran.load(Ordering::SeqCst) < 8 && start.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = ran.load(Ordering::SeqCst);
        release[1].store(true, Ordering::Relaxed);
        shrinker.join().unwrap();
        assert_eq!(
            got, 8,
            "goroutines queued on a retiring P waited behind its holder"
        );
    }
}
