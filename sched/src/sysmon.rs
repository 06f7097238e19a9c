//! sysmon: the monitor thread — preempt requests for goroutines that overstay their slice,
//! spare Ps behind stuck ones, and the idle hook's poll when no M has polled for 10 ms.
//!
//! One thread per runtime, started with the runtime's first M, holding only a weak
//! reference (it ends when the runtime is shut down or dropped). Each round it looks at
//! every P's tick (`P::tick`, bumped by the holder whenever it starts a goroutine or the P
//! changes hands):
//!
//! * a tick unchanged for `SLICE` (10 ms) while the P has a holder means one goroutine has
//!   run that long: sysmon sets the P's preempt request (`preempt.rs`), which the goroutine
//!   honours at its next safepoint by yielding to the back of the global queue;
//! * if goroutines or due timers wait behind such a P — in its queue or heap, or, with no P
//!   idle, in the global queue or the foreign heap — and the goroutine has not honoured the
//!   request within 1 ms (it has no safepoint in its loop), sysmon lends a spare P
//!   (`spare.rs`);
//! * a tick stalled for just 1 ms is enough when the holder's thread is asleep in the kernel
//!   (`/proc/self/task/<tid>/stat` says `S` or `D`): an unannotated blocking call (blocking
//!   `std` I/O, FFI) is recognised without waiting out the slice. Only Ps whose tick stalled
//!   and which have work waiting are looked at, at most once a millisecond each.
//!
//! A goroutine that ignores its request for 1 ms (its loop has no safepoint) gets it
//! withdrawn — a pending request sends every other goroutine's safepoints to their slow
//! path; it is renewed a slice later — and, when work waits behind it elsewhere than in its
//! own queue, its thread is asked to run at the lowest priority
//! (nice 19) until its M reaches a scheduling point and restores it: the hog keeps its P, but
//! the threads of the other Ps and of the spare get the cores. (A thread the kernel will not
//! raise back ends instead, and a fresh M takes its place.)
//!
//! It also polls the idle hook (the netpoller) with a zero timeout when it has waiters and no
//! M has polled it for 10 ms (Go's `sysmon` → `netpoll(0)`): with every P busy, I/O and
//! deadlines are still noticed; what it readies goes to the global queue.
//!
//! Sleeping follows Go: 20 µs between rounds while it acts, doubling after 50 idle rounds
//! up to 10 ms. While every P is idle (and no spare is lent, and no stop of the world is in
//! force) it parks until an M takes a P (`Shared::pidleget` wakes it, under the scheduler
//! lock, the same lock under which it decided to sleep: no lost wake-up). During a stop of
//! the world it does nothing.

use crate::p::SPARE_PS;
use crate::parker::Parker;
use crate::sched::{MAX_PROCS, SchedState, Shared, lock};
use crate::timer::FOREIGN_HEAP;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A goroutine's time slice (Go's `forcePreemptNS`).
pub(crate) const SLICE: u64 = 10_000_000;
/// How long a P's tick must stall before sysmon looks at its thread's kernel state.
const KERNEL_CHECK_AFTER: u64 = 1_000_000;
/// How long a goroutine asked to yield may take to reach a safepoint before a spare P is
/// lent behind it.
const PREEMPT_GRACE: u64 = 1_000_000;
/// How often the idle hook must be polled while it has waiters (Go's 10 ms).
const POLL_PERIOD: u64 = 10_000_000;
const MIN_DELAY: Duration = Duration::from_micros(20);
const MAX_DELAY: Duration = Duration::from_millis(10);
/// Idle rounds before the delay starts doubling.
const IDLE_ROUNDS: u32 = 50;

/// What sysmon shares with the scheduler.
#[derive(Debug, Default)]
pub(crate) struct SysmonState {
    started: AtomicBool,
    /// Sysmon is parked because every P was idle. Written under the scheduler lock by
    /// sysmon (set) and `p_taken` (cleared); Relaxed, the lock orders it.
    sleeping: AtomicBool,
    parker: Parker,
    /// Clock reading (`TimerHome::now`) of the last poll of the idle hook by an M, or 0
    /// while an M is blocked in a poll (Go's `sched.lastpoll`). Written by Ms around their
    /// polls, read by sysmon (Relaxed: a hint).
    pub(crate) last_poll: AtomicU64,
    /// Set while a stop of the world is pending or in force (mirrors `SchedState::stw`
    /// for sysmon, which reads it without the lock; Relaxed, a hint: anything sysmon
    /// would do is refused under the lock anyway).
    pub(crate) world_stopped: AtomicBool,
    pub(crate) preempt_requests: AtomicU64,
    pub(crate) spares_lent: AtomicU64,
    pub(crate) polls: AtomicU64,
}

/// What sysmon has done so far, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SysmonStats {
    /// Preempt requests made for goroutines that overstayed their slice.
    pub preempt_requests: u64,
    /// Spare Ps lent behind stuck ones.
    pub spares_lent: u64,
    /// Polls of the idle hook made because no M had polled for 10 ms.
    pub polls: u64,
}

impl SysmonState {
    /// Fresh state: nobody has polled yet and nobody is blocked in a poll (`last_poll` is a
    /// time long past, not 0 — Go's `schedinit` sets `lastpoll` too), so the first M to run
    /// dry, or sysmon, polls as soon as the hook has waiters. Starting at 0 read as "an M is
    /// blocked in the poll" and, with no M ever blocking there (one P, kept busy), nobody
    /// ever polled.
    pub(crate) fn new() -> SysmonState {
        let s = SysmonState::default();
        s.last_poll.store(1, Ordering::Relaxed);
        s
    }

    /// Starts sysmon for `shared` once.
    pub(crate) fn ensure_started(&self, shared: &Arc<Shared>) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(shared);
        let state = shared.sysmon.clone();
        let spawned = std::thread::Builder::new()
            .name("gort-sysmon".into())
            .stack_size(256 * 1024)
            .spawn(move || sysmon_main(weak, state));
        if let Err(e) = spawned {
            crate::m::fatal(&format!("runtime: failed to create the sysmon thread: {e}"));
        }
    }

    /// An M took an idle P: wake sysmon if it sleeps. Caller holds the scheduler lock.
    pub(crate) fn p_taken(&self, _s: &SchedState) {
        if self.sleeping.load(Ordering::Relaxed) {
            self.sleeping.store(false, Ordering::Relaxed);
            self.parker.unpark();
        }
    }

    /// Wakes sysmon (shutdown, a restarted world).
    pub(crate) fn kick(&self) {
        self.parker.unpark();
    }

    pub(crate) fn stats(&self) -> SysmonStats {
        SysmonStats {
            preempt_requests: self.preempt_requests.load(Ordering::Relaxed),
            spares_lent: self.spares_lent.load(Ordering::Relaxed),
            polls: self.polls.load(Ordering::Relaxed),
        }
    }
}

/// What sysmon last saw of one P.
#[derive(Clone, Copy, Default)]
struct Seen {
    tick: u32,
    /// When `tick` was first seen.
    since: u64,
    /// When the holder's kernel state was last read.
    kernel_checked: u64,
    /// When sysmon asked this slice's goroutine to yield.
    requested: u64,
}

fn sysmon_main(weak: Weak<Shared>, state: Arc<SysmonState>) {
    let mut seen: Vec<Seen> = Vec::new();
    let mut delay = MIN_DELAY;
    let mut idle_rounds = 0u32;
    loop {
        {
            let Some(shared) = weak.upgrade() else { return };
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            if should_sleep(&shared) {
                drop(shared);
                state.parker.park(None);
                delay = MIN_DELAY;
                idle_rounds = 0;
                continue;
            }
            let acted = !state.world_stopped.load(Ordering::Relaxed) && round(&shared, &mut seen);
            if acted {
                idle_rounds = 0;
                delay = MIN_DELAY;
            } else {
                idle_rounds += 1;
                if idle_rounds > IDLE_ROUNDS {
                    delay = (delay * 2).min(MAX_DELAY);
                }
            }
        }
        // Park rather than sleep, so that shutdown (`kick`) ends the wait at once.
        state.parker.park(Some(delay));
    }
}

/// Under the scheduler lock: with every P idle, no spare lent and the world not stopped,
/// marks sysmon sleeping and returns true (it then parks until `p_taken` or `kick`).
fn should_sleep(shared: &Shared) -> bool {
    // Lock-free first: the lock is taken only when every P looks idle.
    if shared.spin.npidle() != shared.procs() {
        return false;
    }
    let s = lock(&shared.sched);
    let all_idle =
        !s.stw && shared.spin.npidle() == shared.procs() && s.spare_pool.len() == SPARE_PS;
    if all_idle {
        shared.sysmon.sleeping.store(true, Ordering::Relaxed);
    }
    all_idle
}

/// One round over the idle hook and every P. Returns whether it did anything.
fn round(shared: &Arc<Shared>, seen: &mut Vec<Seen>) -> bool {
    let now = shared.timers.now();
    let mut acted = poll_if_stale(shared, now);
    let nps = shared.nps();
    seen.resize(nps + SPARE_PS, Seen::default());
    for (slot, id) in (0..nps).chain(MAX_PROCS..MAX_PROCS + SPARE_PS).enumerate() {
        let Some(p) = shared.ps[id].get() else {
            continue;
        };
        let seen = &mut seen[slot];
        let holder = p.holder.load(Ordering::Acquire);
        let tick = p.tick();
        if holder.is_null() || tick != seen.tick {
            *seen = Seen {
                tick,
                since: now,
                kernel_checked: 0,
                requested: 0,
            };
            continue;
        }
        let stalled = now.saturating_sub(seen.since);
        if stalled < KERNEL_CHECK_AFTER {
            continue;
        }
        let overstayed = stalled >= SLICE;
        // Requested once per slice: a request withdrawn unanswered (below) is renewed a slice
        // later, so a goroutine whose thread was merely off-CPU when asked, or whose loop
        // reaches a safepoint only now and then, still yields in the end.
        if overstayed && (seen.requested == 0 || now.saturating_sub(seen.requested) >= SLICE) {
            seen.requested = now;
            if crate::preempt::request(p) {
                shared
                    .sysmon
                    .preempt_requests
                    .fetch_add(1, Ordering::Relaxed);
                acted = true;
            }
        }
        // A goroutine that reaches a safepoint yields within nanoseconds of the request; one
        // that has not after `PREEMPT_GRACE` has none in its loop.
        let ignored = overstayed && now.saturating_sub(seen.requested) >= PREEMPT_GRACE;
        if ignored {
            // Withdraw the request: pending, it would only send every other goroutine's
            // safepoints to their slow path.
            crate::preempt::clear(p);
        }
        if !work_waiting(shared, p, now) {
            continue;
        }
        if overstayed && !ignored {
            continue;
        }
        if ignored && p.runq.is_empty() {
            // Work waits elsewhere behind a hog: ask the kernel to run the hog's thread at
            // the lowest priority until it reaches a scheduling point, so that the threads of
            // the other Ps and of the spare lent below get the cores. Not when the hog fills
            // its own queue: it is producing the work the spare takes (a spawning loop), and
            // slowing it slows the program. (And only with work waiting: a demoted thread
            // also takes longer to reach its suspension handler when the world stops.)
            // SAFETY: notes live as long as the runtime, which `shared` keeps alive.
            let note = unsafe { &*holder };
            if !note.demoted.swap(true, Ordering::Relaxed) {
                demote(note.tid.load(Ordering::Relaxed));
            }
        }
        if !overstayed {
            if now.saturating_sub(seen.kernel_checked) < KERNEL_CHECK_AFTER {
                continue;
            }
            seen.kernel_checked = now;
            // SAFETY: notes live as long as the runtime, which `shared` keeps alive.
            let tid = unsafe { (*holder).tid.load(Ordering::Relaxed) };
            if !blocked_in_kernel(tid) {
                continue;
            }
        }
        if shared.activate_spare(id, tick) {
            shared.sysmon.spares_lent.fetch_add(1, Ordering::Relaxed);
            acted = true;
        }
    }
    acted
}

/// Whether goroutines or due timers wait that the stuck P `p` would otherwise take: in its
/// own queue or heap, or — when no P is idle to take them — in the global queue, the
/// foreign heap or another P's queue (a stuck P is a P missing from GOMAXPROCS: the spare
/// gives the program its parallelism back).
fn work_waiting(shared: &Shared, p: &crate::p::P, now: u64) -> bool {
    let h = crate::p::timer_heap(p.id);
    !p.runq.is_empty()
        || shared.timers.due(h, now)
        || (shared.spin.npidle() == 0
            && (shared.global.len() > 0
                || shared.timers.due(FOREIGN_HEAP, now)
                || shared.created_ps().any(|q| !q.runq.is_empty())))
}

/// Polls the idle hook with a zero timeout when it has waiters and no M has polled it for
/// `POLL_PERIOD`. Returns whether it polled.
fn poll_if_stale(shared: &Shared, now: u64) -> bool {
    if !shared.hook.has_waiters() {
        return false;
    }
    let last = shared.sysmon.last_poll.load(Ordering::Relaxed);
    if last == 0 || now.saturating_sub(last) < POLL_PERIOD {
        return false;
    }
    // A compare-exchange, as Go's sysmon does: an M that began a blocking poll since the
    // load stored 0, which must stay while it waits (and then it polls, not us).
    if shared
        .sysmon
        .last_poll
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    shared.hook.poll(Some(Duration::ZERO));
    shared.sysmon.polls.fetch_add(1, Ordering::Relaxed);
    true
}

/// The calling thread's kernel id (Linux `gettid`; 0 elsewhere, where sysmon relies on the
/// slice alone).
pub(crate) fn current_tid() -> i64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no preconditions.
        i64::from(unsafe { libc::gettid() })
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// Asks the kernel to run thread `tid` at the lowest priority (nice 19). The thread restores
/// its own priority at its next scheduling point (`M::restore_priority`).
fn demote(tid: i64) {
    #[cfg(target_os = "linux")]
    if tid != 0 {
        // SAFETY: setpriority has no memory-safety preconditions; on Linux PRIO_PROCESS with
        // a thread id sets that thread's nice value. A failure leaves the priority alone.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = tid;
}

/// The calling thread takes back the normal priority sysmon took from it (`demote`).
/// Returns false when the kernel refuses (raising a priority may need `CAP_SYS_NICE` or a
/// `RLIMIT_NICE` allowance): the caller then ends the thread rather than run goroutines at
/// the lowest priority.
pub(crate) fn restore_priority() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as in `demote`, for the calling thread.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, current_tid() as libc::id_t, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    true
}

/// Whether thread `tid` of this process is asleep in the kernel (state `S` or `D` in
/// `/proc/self/task/<tid>/stat`). False when it cannot tell.
fn blocked_in_kernel(tid: i64) -> bool {
    if tid == 0 || !cfg!(target_os = "linux") {
        return false;
    }
    let Ok(stat) = std::fs::read(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain spaces.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else {
        return false;
    };
    matches!(stat.get(close + 2), Some(b'S' | b'D'))
}

impl Shared {
    /// Records a poll of the idle hook by an M: `blocking` while it waits in it (0, as Go's
    /// `lastpoll`), the time once it returned.
    #[inline]
    pub(crate) fn note_poll(&self, blocking: bool) {
        let v = if blocking {
            0
        } else {
            self.timers.now().max(1)
        };
        self.sysmon.last_poll.store(v, Ordering::Relaxed);
    }

    /// Whether an M out of local work should poll the idle hook without blocking (Go's
    /// `netpollAnyWaiters() && lastpoll != 0`): only when it has waiters and no M is blocked
    /// in a poll already — that M wakes on the same events by itself, and polling beside it
    /// costs a syscall per scheduling round (an echo server's Ms ran dry 250k times a second
    /// and polled each time). Returns the `last_poll` seen, for [`Shared::poll_now`].
    #[inline]
    pub(crate) fn poll_worthwhile(&self) -> Option<u64> {
        if !self.hook.has_waiters() {
            return None;
        }
        let last = self.sysmon.last_poll.load(Ordering::Relaxed);
        (last != 0).then_some(last)
    }

    /// Poll the idle hook without blocking, after `poll_worthwhile` returned `Some(seen)`,
    /// and record the time of the poll — unless `last_poll` moved meanwhile. An M that
    /// began a blocking poll since stored 0, and that 0 must stay until it returns: stored
    /// over, it told every M running dry after us to poll beside it (about 5 500 of 5 700
    /// polls in `tests/idle_poll.rs` were beside a blocked poller once its polls took
    /// 100 µs).
    #[cold]
    pub(crate) fn poll_now(&self, seen: u64) {
        self.hook.poll(Some(Duration::ZERO));
        // Relaxed: `last_poll` is a hint that carries no data; the CAS only keeps a
        // blocking poller's 0 (and a newer time) from being overwritten.
        let _ = self.sysmon.last_poll.compare_exchange(
            seen,
            self.timers.now().max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)]
    fn a_sleeping_thread_is_seen_blocked_and_a_spinning_one_is_not() {
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let sleeper = std::thread::spawn(move || {
            tx.send(current_tid()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        });
        let tid = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            blocked_in_kernel(tid),
            "a thread in nanosleep was not seen asleep"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let spinner = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                tx.send(current_tid()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        };
        let tid2 = rx.recv().unwrap();
        // A spinning thread may be descheduled for a moment (state R either way).
        let running = (0..20).any(|_| !blocked_in_kernel(tid2));
        stop.store(true, Ordering::Relaxed);
        spinner.join().unwrap();
        sleeper.join().unwrap();
        assert!(running, "a spinning thread was seen asleep in the kernel");
        assert!(!blocked_in_kernel(0));
    }
}
