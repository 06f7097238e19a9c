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
//! spin at once. An M that finds nothing gives its P back to the idle list and blocks.
//!
//! **No lost wake-up.** Whoever makes a G runnable calls `wakep`, which starts a spinning M
//! when a P is idle and no M is spinning. An M that stops spinning first decrements the
//! spinning count, then looks at every queue once more. Each side puts a SeqCst fence
//! between its write and its look (`spinning.rs`, model-checked with loom), so either the
//! enqueuer sees no spinner and wakes one, or the last spinner sees the new work.
//!
//! **Idle.** Blocked Ms wait through the [`IdleHook`]: exactly one idle M at a time sits in
//! `poll` (the netpoller plugs in there; the default is a futex), the others park on their
//! own parkers. A P is handed to a parked M through its note (`MNote`), or to the polling M
//! by `wake()`. Gs readied by a poll while no P is held go to the global queue.
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
//! **Deadlock.** Under [`run`], the last M to go idle checks whether anything can ever run
//! again (every P idle and empty, every other M idle, no hook waiters, no registered
//! [`ForeignThread`]); if not, it prints Go's `fatal error: all goroutines are asleep -
//! deadlock!` and exits with status 2.
//!
//! **Yield fast path.** `gosched` hands the M straight to the next goroutine of the local
//! queue (one switch, not two through the scheduler); the yielder is queued by the goroutine
//! that resumes, after the switch has saved it (`M::yield_now`, `after_resume`).
//!
//! # What is deliberately absent
//!
//! Timers, channels, `select` and sysmon's preemption come with later work; a G that never
//! reaches a scheduling point keeps its M and P (a GOMAXPROCS shrink waits for it).
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
mod entry;
mod g;
mod globalq;
mod gls;
mod gstate;
mod idle;
mod loom;
mod m;
mod p;
mod park;
mod parker;
mod release;
mod runq;
mod runtime;
mod sched;
mod spawn;
mod spinning;
mod stack;

pub use gls::GoroutineLocal;
pub use idle::{FutexIdle, IdleHook};
pub use park::{Goexit, Goroutine, blocking, current, goexit, goid, gosched, park};
pub use runtime::{
    BuildError, Builder, DEFAULT_STACK_SIZE, Runtime, gomaxprocs, num_goroutine, parse_gomaxprocs,
    run,
};
pub use runtime::{ForeignThread, foreign_thread};
pub use sched::MAX_PROCS;
pub use spawn::{JoinHandle, SpawnError, go, spawn};
pub use stack::{GuardMode, MAX_STACK_SIZE, MIN_STACK_SIZE, guard_mode};
