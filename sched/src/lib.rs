//! gort-sched: M:N scheduling of stackful goroutines on Go's G-P-M model.
//!
//! # The model
//!
//! A **G** (goroutine) is a closure with its own stack and saved registers. An **M** is an OS
//! thread that runs Gs. A **P** is a logical processor: a local run queue, a cache of free
//! Gs and stacks, and the right to run Gs — an M must hold a P to run one, and there are
//! GOMAXPROCS Ps. Ms come and go (one blocked in a system call through [`blocking`] gives
//! its P to another); Ps bound the parallelism.
//!
//! # Scheduling
//!
//! Each P has a 256-slot ring of runnable Gs plus a `runnext` slot (`runq.rs`). A new or
//! readied G goes to `runnext` of the P that made it runnable — it runs next, on a warm
//! cache — and the displaced `runnext` goes to the ring's tail; a full ring spills half of
//! itself to the global queue (`globalq.rs`). An M looks for work in this order
//! (`m.rs`, `find_runnable`): every 61st round the global queue first (so a busy P cannot
//! starve it), then its own queue, then a batch from the global queue, then — as a
//! *spinning* M — half the queue of a random victim P. At most half the busy Ps' worth of Ms
//! spin at once. A victim's `runnext` is taken only in the last of the four rounds, after
//! letting a running victim have 3 µs to switch to it (Go's `runqgrab`): it is usually the
//! partner of a hand-off, and taking it at once would move the pair across cores. An M that
//! finds nothing gives its P back to the idle list and blocks.
//!
//! **No lost wake-up.** Whoever makes a G runnable calls `wakep`, which starts a spinning M
//! when a P is idle and no M is spinning. An M that stops spinning first decrements the
//! spinning count, then looks at every queue once more. Each side puts a SeqCst fence
//! between its write and its look (`spinning.rs`, model-checked with loom), so either the
//! enqueuer sees no spinner and wakes one, or the last spinner sees the new work. (A ready
//! into `runnext` publishes with a SeqCst swap, which with SeqCst loads of the counts takes
//! the fence's place: `Spinning::try_claim_spinner_after_sc`.)
//!
//! **Idle.** Blocked Ms wait through the [`IdleHook`]: exactly one idle M at a time sits in
//! `poll` (the netpoller plugs in there; the default is a futex), the others park on their
//! own parkers. A P is handed to a parked M through its note (`MNote`), or to the polling M
//! by `wake()`. Gs readied by a poll while no P is held go to the global queue; when every P
//! is held and no timer is armed, the polling M then parks instead of polling again (Go's
//! `stopm` after `injectglist`: polling at once would wake it for every event, on a CPU the
//! holders need — `M::poll_idle`). While the
//! hook has waiters (goroutines parked on descriptors) and no M is blocked in it already,
//! `find_runnable` also polls it with a zero timeout before stealing and on every 61st round
//! (the fairness tick, which the yield fast path takes too), and sysmon polls it when nobody
//! has for 10 ms, so a runtime whose Ps are all busy still notices I/O (Go's `findrunnable`
//! order, and its `lastpoll` rule: an M blocked in the poll wakes on the same events, so
//! polling beside it only costs a syscall each time an M runs dry). The blocking poller
//! stores 0 in `last_poll` while it waits; the others record their polls only by a
//! compare-exchange from the value they read, so none can store over that 0.
//!
//! # Context switch and the current G
//!
//! `arch/` holds a naked `switch` per architecture (x86_64 System V, AArch64) that pushes the
//! callee-saved registers (and the floating-point control words) on the running stack, saves
//! the stack pointer, and restores the other side. Each M runs its scheduler on its own
//! thread stack (Go's g0); a G switches back to it to yield, park or exit, and the scheduler
//! finishes the operation there — so a parked G is published as parked only after its
//! registers are saved and its stack is no longer in use (`gstate.rs`). A new G starts in a
//! trampoline whose unwind info says "no caller", so backtraces end cleanly.
//!
//! The runtime reads the current M (and through it the current G and P) through the
//! non-inlined `current_m`, never through a thread-local address the compiler could cache
//! across a switch that moved the goroutine to another thread.
//!
//! # Stacks
//!
//! Rust frames may point into their own stack, so stacks never move. Each G gets a fixed
//! virtual region (256 KiB by default) carved from 256 MiB slabs reserved with
//! `MAP_NORESERVE` and `MADV_NOHUGEPAGE`: only touched pages cost memory. The lowest
//! max(8 KiB, one page) are a guard — so 16 KiB- and 64 KiB-page kernels get a whole-page
//! guard, and every size and release range stays page-aligned — installed with
//! `MADV_GUARD_INSTALL` (no extra VMA, so millions of stacks fit under the default
//! `vm.max_map_count`) after a start-up probe proves that guards really fault; otherwise
//! `mprotect`, with a clear error when the mapping limit is reached. Overflow hits the guard,
//! and a SIGSEGV handler on an alternate signal stack prints `fatal error: stack overflow`
//! with the goroutine id and aborts; the slab registry it consults records each slab's guard
//! size, so the handler reads atomics only.
//!
//! **Starting many goroutines.** A G is given its stack when it first runs, from its P's
//! cache, refilled from the pool in batches. The pool hands out warm stacks (pages still
//! resident) first, then cold ones (released, or never used): their top pages — where the
//! first frame goes — are faulted in with one `process_madvise(MADV_POPULATE_WRITE)` call
//! per batch instead of one page fault per goroutine start, and new stacks are carved 256
//! at a time with their guards installed by one call. (`process_madvise` on oneself takes
//! any advice since Linux 6.13, `PIDFD_SELF` since 6.15; elsewhere guards fall back to one
//! call per stack and prefaulting to the first touch.) What remains per fresh stack is the
//! kernel zeroing its top page and its share of a page table.
//!
//! **Giving memory back.** An exited G's stack returns to its P's cache, spilling to the
//! pool; nothing is released on the exit path. Idle Ms release (`release.rs`): each M going
//! idle does one bounded step — up to 4096 stacks, or 16k free Gs — and the M waiting in the
//! idle hook polls with the step's "call again in" as its timeout, so a burst's memory comes
//! back within a second or two and an idle program with nothing left to release sleeps for
//! good. A stack is released only after it sat unused in the pool for a whole 100 ms period
//! (`release::Aging`), beyond a warm reserve of 256, so a program alternating between phases
//! does not refault.
//! Released stacks are sorted by address and adjacent ones go back in one
//! `madvise(MADV_DONTNEED)` range spanning the guards between them — `MADV_DONTNEED` keeps
//! guard regions and `PROT_NONE` pages faulting (tested in both modes). Cold stacks are
//! bits in per-slab bitmaps, not a list, so a million of them cost kilobytes. Free Gs age
//! the same way (beyond a reserve of 1024) and are dropped; the system allocator is then
//! asked to trim.
//!
//! # Soundness: migration
//!
//! A goroutine that parks on one thread may resume on another, carrying every local with
//! it. Rust and LLVM assume a function never changes thread; a thread-local reference, a
//! reentrant-lock guard or a `!Send` value shared with the old thread would then be used from
//! the wrong thread. Safe code cannot be stopped from doing that inside a goroutine, so the
//! entry points that create a migrating runtime — [`Builder::build`] and [`run`] — are
//! `unsafe fn`, with the exact promise in their `# Safety` sections; everything else is safe.
//! [`GoroutineLocal`] is the safe replacement for `thread_local!`. A G that is unwinding a
//! panic stays on its thread until the unwind ends (std counts panics per thread): `gosched`
//! does nothing then, and `park` hands the P off and waits on the thread.
//!
//! # Channels
//!
//! A channel (`chan/`) is Go's `hchan`: a bounded buffer and two wait queues (receivers,
//! senders with their values) under one lock. A blocked operation is a *group* (one party:
//! a goroutine, which parks, or a plain thread, which blocks) with one *entry* per case on
//! each channel's queue — one case for a plain send or receive, several for a select. A
//! counterpart completes an entry only after claiming its group with a CAS (a plain
//! operation's only entry needs none: whoever takes it off its one queue, under that queue's
//! lock, is the only one who can), so a party is completed exactly once however many
//! channels it waits on; it fills or empties the entry's value slot, publishes `done`
//! (Release) and wakes the party after releasing the channel's lock (waking may take
//! scheduler locks, which never nest inside a channel lock).
//!
//! **The hand-off's cost.** Entries live in the waiting party's own frame (a select's on the
//! heap) and the wait queues are lists threaded through them (Go's `waitq`); a goroutine
//! reuses its group; so a blocking operation allocates nothing. Waking a parked goroutine of
//! the waker's own runtime takes it first (`GState::ready_if_parked`: it cannot run yet),
//! then publishes `done`, then puts it in `runnext` — no reference counting on the way. A
//! G keeps the fields a hand-off touches within its first 64 bytes, and a channel its lock
//! and queues within 64 bytes: a pipeline of thousands of goroutines (the prime sieve) touches
//! a cold goroutine at every hop. The channel's lock is `parking_lot`'s (`loom::ChanMutex`),
//! not std's: no poisoning to check on every lock and unlock (6-8% of an unbuffered
//! hand-off), and under contention — N producers and N consumers on one buffer — it spins
//! and yields longer before it parks a thread in the kernel (that benchmark went from about
//! 57 to 16-21 ns per value). Values
//! are handed over directly to a waiting receiver (capacity 0 is a rendezvous); a receive
//! from a full buffer moves the oldest blocked sender's value in behind it, keeping FIFO.
//! Closing claims every waiter: receivers see closed after the buffer drains, senders get
//! their values back in the error — nothing is lost; dropping the last receiver does the same
//! to senders. `select!` (`chan/select.rs`) locks all its channels in one global order (by
//! channel id), polls its arms in random order (Go's fairness), and otherwise queues one
//! entry per arm in a single group and parks; the group's claim-once CAS guarantees exactly
//! one arm completes, and on waking it takes its other entries off their channels. A
//! plain thread blocked in a channel operation is counted (process-wide) so no
//! runtime reports a deadlock it may be part of; a thread that feeds goroutines while
//! running declares it with [`foreign_thread`].
//!
//! # sync
//!
//! `sync/` rebuilds Go's `sync` on one semaphore (`sema.rs`: a FIFO of blocked parties under
//! a lock, with direct hand-off of a released permit to the longest waiter). `Mutex` is
//! Go's two-mode mutex: in normal mode a woken waiter competes with arriving lockers (which
//! spin briefly on multi-core machines); a waiter kept out for over 1 ms turns it to
//! starvation mode, where unlock hands the mutex straight to the first waiter (loom models
//! both paths). `RwLock` (writer-preferring, Go's reader count with `MAX_READERS`),
//! `WaitGroup` (counter and waiters in one word, Go's misuse checks), `Once` (done even if
//! its function panics, as in Go), `Cond` (waiter queued before the mutex is released) and
//! `Semaphore` complete the set. Everything parks goroutines and blocks plain threads.
//!
//! # Timers
//!
//! Each P has a 4-ary heap of timers (`timer/`), lockable by any M, plus one heap for timers
//! armed off any P; each heap mirrors its earliest deadline in an atomic, so checks take no
//! lock. A timer is a cell whose state word is `seq << 1 | armed`: arming bumps `seq` and
//! pushes an entry tagged with it, stopping clears `armed`, and an entry fires only if its
//! `seq` is still the armed one — stop and reset never search a heap. Due timers are run
//! by an M in `find_runnable` (its P's heap), by a stealing M (its victims' heaps: an idle
//! or busy P's timers still fire), every 61st round by any M for the Ps whose tick has not
//! moved since its previous look (a holder the kernel took off its CPU, or stuck in one
//! goroutine, would strand them: busy Ms never steal; that M takes such a P's queued
//! goroutines too, `M::rescue_stalled_ps`) and by the M polling the idle hook,
//! which sleeps exactly until the earliest deadline of any heap (a store-fence-recheck
//! handshake with the armer, loom-checked, so a new earlier timer always interrupts the
//! poll). An armed timer means
//! the program is not deadlocked. `time.rs` builds Go's `Sleep`, `After`, `Tick`, `Timer`,
//! `Ticker` and `AfterFunc` on it; plain threads get them from a small process-wide runtime
//! whose only M polls until the next deadline.
//!
//! # The glue, and who owns what
//!
//! The protocols above are model-checked one by one; the bugs a review found were all where
//! two of them meet. These rules keep them apart (each has a regression test in
//! `tests/glue.rs`):
//!
//! * **`main` ends the program.** Under [`run`], deadlock detection is armed while `main`
//!   runs and disarmed by the main goroutine itself *before* its value is handed back, so no
//!   M can report the goroutines `main` left behind. A panic in `main` is Go's report and
//!   status 2; `goexit` in `main` leaves the others running and, once none is left, is Go's
//!   "no goroutines (main called runtime.Goexit)" deadlock.
//! * **Deadlock.** The last M to go idle checks (under the scheduler lock) that nothing can
//!   ever run again: every other M idle, every P idle and empty, the global queue empty, no
//!   hook waiters, no [`ForeignThread`] — and no goroutine waiting on another runtime (a
//!   cross-runtime `join` counts as a foreign thread of the joiner's runtime while it waits).
//!   Then it prints Go's `fatal error: all goroutines are asleep - deadlock!` and the
//!   goroutine dump — each goroutine with the reason it waits (`goroutine 7 [chan
//!   receive]:`) and its frames — and exits 2. The
//!   goroutines are found through the runtime's registry of G objects (`g.rs`, `AllGs`, Go's
//!   `allgs`): a G is registered when allocated and unregistered when the runtime lets go of
//!   it, so spawning on a recycled G and exiting cost the registry nothing.
//! * **Two fairness ticks.** `find_runnable` looks at the global queue first every 61st
//!   round (`sched_tick`). The direct-switch fast path (below) has its own count
//!   (`yield_tick`): every 61st direct switch with the global queue non-empty (or a timer
//!   armed) goes through the scheduler and sets `check_global`, which makes the next
//!   `find_runnable` look there first. Sharing one tick let the fast path take every 61st
//!   round, starving goroutines queued from outside. On the same 61st rounds, if the local
//!   ring's head has not moved since the previous one (`Owned::ring_seen`), both take the
//!   ring's oldest goroutine before `runnext`: two goroutines handing the P to each other
//!   through `runnext` starved the ring forever on GOMAXPROCS=1 (Go breaks such a pair when
//!   their shared time slice runs out). A ring that moves is left alone: taking its oldest
//!   every 61st round cost the prime sieve ~15%.
//! * **Giving up a P.** `go_idle` and `blocking`'s hand-off look at the global queue and put
//!   the P on the idle list under the global queue's lock (`handoff.rs`, loom model), so a
//!   goroutine queued concurrently is seen, or its enqueuer's `wakep` sees the idle P.
//! * **Resizing.** A shrink retires idle Ps at once; a held P beyond GOMAXPROCS is retired by
//!   its holder at its next scheduling point, and meanwhile its queue can be stolen (stealing
//!   covers every P created, not just those below GOMAXPROCS). Every recount of the retiring
//!   Ps notifies the shrinkers waiting on it (a grow can cancel a retirement).
//! * **A recycled G starts clean.** Goroutine-locals are destroyed on the goroutine's own
//!   stack, in rounds while destructors re-create locals (the last round refuses), so
//!   nothing is carried into the next goroutine or dropped on a scheduler stack.
//! * **Counting.** `num_goroutine` is one atomic counter (incremented at creation,
//!   decremented after exit): exact at rest and a true value at some instant of the call.
//!   Scans over Ps stop at the highest P created (`Shared::nps`), not at `MAX_PROCS`.
//! * **Ms come and go.** An idle M parked for 2 s exits when more than 4 Ms are idle (a
//!   burst of `blocking` calls does not leave its threads behind); its note is kept for the
//!   runtime's life and reused by the next M, since a readier may still hold a pointer to its
//!   parker. More than `Builder::max_threads` Ms (10000) is Go's `fatal error: thread
//!   exhaustion`.
//!
//! **Direct switches.** `gosched` and `park` hand the M straight to the next goroutine of
//! the local queue (one switch, not two through the scheduler's stack); what the leaver asked
//! for — be queued, or have its park committed — is done by the goroutine that resumes,
//! after the switch has saved the leaver (`M::switch_direct`, `after_resume`). A channel
//! hand-off readies the partner into `runnext` and parks, so a ping-pong is one switch per
//! hop. The fairness tick counts these switches too, so neither the global queue nor timers
//! wait behind them.
//!
//! # sysmon, spare Ps and preemption
//!
//! A goroutine is never switched out from a signal handler: at an arbitrary instruction it
//! may hold thread-local addresses or thread-bound guards (see *Soundness* above), and a
//! switch there would break them. Nor is a P ever taken from a goroutine that still runs on
//! it: two threads would share its run queue and caches. Instead (`sysmon.rs`, `spare.rs`,
//! `preempt.rs`):
//!
//! * **sysmon**, one thread per runtime (Go's back-off: 20 µs, doubling to 10 ms after 50
//!   idle rounds; parked while every P is idle), watches each P's `tick` (bumped whenever a
//!   goroutine starts on it or it changes hands). Unchanged for 10 ms means one goroutine
//!   overstayed its slice: sysmon sets the P's **preempt request**, which the goroutine
//!   honours at its next **safepoint** by yielding to the back of the global queue (Go's
//!   order: globally queued goroutines run before it comes back) — any scheduling call, or
//!   [`safepoint`] in a long loop (one load of a process-wide word and a branch while
//!   nothing is asked).
//! * If goroutines or due timers wait behind a P whose goroutine ignores the request (1 ms
//!   grace), or whose thread is asleep in the kernel (`/proc/self/task/<tid>/stat`, read
//!   only for Ps whose tick stalled for 1 ms with work waiting: an unannotated blocking
//!   call, blocking `std` I/O or FFI), sysmon lends a **spare P** — one of [`SPARE_PS`]
//!   outside GOMAXPROCS, under the scheduler lock, never while a stop of the world is
//!   pending — to an M, which steals the stuck P's queue and runs its timers. The spare
//!   retires (queue to the global queue, P to the pool) at its holder's next scheduling
//!   point once the stuck P moved on, or when it finds nothing to run. Spares take part in
//!   stealing, stopping the world and [`Runtime::for_each_p`]; goroutines on a spare arm
//!   their timers on the foreign heap. With the pool empty, queued work waits.
//! * An ignored request is withdrawn (pending, it would send every safepoint in the
//!   process to its slow path; it is renewed each slice) and, when work waits behind it
//!   elsewhere than in its own queue (a hog filling its own queue produces the work), the
//!   hog's thread is run at nice 19 until its M reaches a
//!   scheduling point and restores its priority (a thread the kernel will not raise back
//!   ends and is replaced): the hog keeps its P, but the other Ps' threads get the cores.
//! * sysmon polls the idle hook (the netpoller) with a zero timeout when it has waiters and
//!   no M polled it for 10 ms, so I/O and deadlines are noticed with every P busy.
//!
//! `blocking(f)` still hands the P off at once around a call known to block.
//!
//! # Stopping the world
//!
//! [`Runtime::stop_the_world`] (`stw.rs`) asks every held P to stop through its stop word:
//! the holder answers at a safepoint (the goroutine keeps its P and waits, its frame
//! recorded) or between goroutines; a P given up meanwhile counts as stopped and stays idle;
//! a holder that does not answer within 1 µs is **suspended by signal** (`suspend/`,
//! SIGURG): the handler saves the interrupted registers, general and vector, in its thread's
//! pre-allocated slot and waits. The handler defers while the thread is inside runtime code
//! — every scheduler lock holds a no-preempt window (`sched::lock`), and a hook lets the
//! facade add the `busy` words of alloc's caches and gc's buffers — and the window's end
//! re-raises it. The coordinator sleeps on a process-wide answer word between checks (a
//! suspended thread's handler runs only when the thread does), allocates nothing and prints
//! nothing while the world is stopped, and restarts it by clearing the words and resuming
//! the suspended threads. [`WorldStopped::for_each_goroutine`] gives each goroutine's
//! status, stack bounds, and where a walk starts (saved registers for a suspended one) —
//! what a collector's stack scan needs. [`Runtime::suspend_goroutine`] holds one goroutine
//! still while the rest run (a parked one by its park word — `gstate.rs`'s SCANNING, which
//! readiers wait out; a running one by stopping its P alone). [`Runtime::for_each_p`] stops
//! one P at a time to run work that must happen on every P. The signal is installed with `SA_RESTART`; a suspend
//! can still interrupt a blocking call of foreign code that `SA_RESTART` does not restart
//! (`nanosleep`, `epoll_wait`, anything with a timeout), which then fails with `EINTR` and
//! must be retried.
//!
//! # Goroutine dumps
//!
//! [`stack`] writes Go's goroutine dump (`goroutine 7 [chan receive]:`, then a function line
//! and a `\tfile:line +0xoff` line per frame), and the deadlock report follows its message
//! with it. Stacks are walked by **frame pointers** — the workspace builds with
//! `-C force-frame-pointers=yes` (`.cargo/config.toml`; code built without them ends a walk
//! early, never outside the stack) — from where each goroutine stopped, with the world
//! stopped and into reserved buffers; names and lines come from the debug line tables and
//! the symbol table after the restart (`trace/`).
//!
//! # lock_os_thread
//!
//! [`lock_os_thread`] pins the calling goroutine to its thread (nested, as in Go): it parks
//! on the thread (its P goes to another M meanwhile), yields by handing its P over for a
//! moment, no other goroutine runs on the thread, and thread-locals are safe to hold across
//! scheduling points. A goroutine that exits locked ends its thread, as in Go.
#![deny(unsafe_op_in_unsafe_fn)]
// A loom build compiles the crate for its models, which use a part of it (the signal-based
// suspension and other OS-facing code are left out under `cfg(loom)`): unused code there is
// expected, and warnings about it would only bury real ones.
#![cfg_attr(loom, allow(dead_code))]

mod arch;
pub mod chan;
mod dump;
mod entry;
mod g;
mod globalq;
mod gls;
mod gstate;
mod handoff;
mod idle;
mod loom;
mod m;
mod p;
mod park;
mod parker;
mod preempt;
mod release;
mod runq;
mod runtime;
mod sched;
mod spare;
mod spawn;
mod spinning;
mod stack;
mod stw;
mod suspend;
pub mod sync;
mod sysmon;
pub mod time;
mod timer;
mod trace;
mod world;

pub use chan::{Receiver, Sender, chan};
pub use dump::{stack, stack_into};
pub use gls::GoroutineLocal;
pub use idle::{FutexIdle, IdleHook, with_idle_hook};
pub use p::SPARE_PS;
pub use park::{
    Goexit, Goroutine, WaitReason, blocking, current, goexit, goid, gosched, lock_os_thread,
    locked_to_thread, park, park_for, unlock_os_thread,
};
pub use preempt::safepoint;
pub use runtime::{
    BuildError, Builder, DEFAULT_IDLE_THREAD_EXIT, DEFAULT_MAX_THREADS, DEFAULT_STACK_SIZE,
    Runtime, gomaxprocs, num_goroutine, parse_gomaxprocs, run,
};
pub use runtime::{ForeignThread, foreign_thread};
pub use sched::MAX_PROCS;
pub use spawn::{JoinHandle, SpawnError, go, spawn};
pub use stack::{GuardMode, MAX_STACK_SIZE, MIN_STACK_SIZE, guard_mode};
pub use sysmon::SysmonStats;
pub use world::{GStatus, GoroutineSnapshot, SuspendedGoroutine, WorldStopped};
