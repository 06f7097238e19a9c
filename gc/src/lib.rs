//! gort-gc: a concurrent tri-color mark-sweep collector over gort-alloc's heap.
//!
//! # The object model
//!
//! Safe code never holds a raw pointer into the heap. It holds *handles*: a [`Local`], rooted
//! in the current [`Scope`]'s frame of its mutator's handle block (copyable, storable anywhere
//! inside the scope, a `Vec<Local>` included, unable to leave it), or a [`Root`], a `'static`
//! entry in the heap's root table that any thread may hold, clone and drop. Handle blocks and
//! the root table are the precise root set. Inside the heap, the only place a pointer may live
//! is a [`Slot`]: an atomic word, so a marker on another thread can read it while a mutator
//! writes it. Reading a slot yields a `Local`; writing one runs the write barrier. Both take
//! the mutation token — a `&Scope`, which is `!Send + !Sync` and exists only inside
//! [`Mutator::scope`] on an attached thread — and check that the slot and the value lie in the
//! token's heap (one lookup in the allocator's arena index), so a thread that is not an
//! attached mutator cannot touch a slot, and a handle of one heap cannot be stored in another:
//!
//! ```compile_fail
//! use gort_gc::{Heap, Config, Slot};
//! let heap = Heap::new(Config::default()).unwrap();
//! let mut m = heap.attach().unwrap();
//! m.scope(|s| {
//!     let slot = s.alloc(Slot::<u64>::null());
//!     // A scope cannot go to another thread: it is the attached thread's token.
//!     std::thread::scope(|t| { t.spawn(|| slot.get(s)); });
//! });
//! ```
//!
//! A type lives in the heap through [`Trace`], which `#[derive(Trace)]` implements: a
//! compile-time map of which words are slots. Allocation writes the map into the span's heap
//! bits, so a 16-byte node with two slots takes 16 bytes; only types with drop glue carry a
//! header word (a pointer to their destructor), and their dead objects go to the finalizer
//! thread. [`Scope::alloc`] moves a value in; [`Scope::alloc_zeroed`] is Go's `new(T)` for
//! types whose all-zero bytes are a value (`bytemuck::Zeroable`; a null `Slot` is zero): the
//! allocator's zeroing is the whole initialisation, where building a large array on the
//! stack and copying it in would cost two more passes over it. The derive rejects `impl Drop` on a type that holds slots (a destructor could read
//! a pointer whose object the same sweep freed). Std containers and cells implement `Trace`
//! only for contents without slots (a compile error otherwise): the marker must never read
//! memory a mutator may be writing through `&mut`. Objects are immutable apart from their
//! slots and their own `Sync` interior mutability, and are `Send + Sync + 'static`.
//!
//! Mutable pointer-holding data lives in GC-heap collections instead: [`GcVec`] (a vector of
//! slots, grown with a bulk barrier, scanned in 128 KiB oblets when large), [`GcCell`] (a
//! locked value whose [`Member`]s are traced by code — a std `Vec` or `HashMap` of members —
//! whose `borrow_mut` takes the scope by `&mut`, shades the value's members on entry and
//! re-greys the cell on release, and whose members cannot leave the borrow that made them,
//! by a branded lifetime), and [`GcMap`] on top of it. Embedder code (a language VM) may
//! hold raw [`Gc`] pointers under an `unsafe` contract, and opt a mutator in to conservative
//! scanning of its stack and registers ([`Mutator::set_conservative`]).
//!
//! The collector reaches the runtime around it through the [`Embedder`] trait, with state
//! split the way an embedder owns it: [`MutatorRoots`] per mutator (handles, stack, saved
//! context, assist credit) and [`PState`] per processor (allocation cache, barrier buffer).
//! Standalone, the attached OS threads are both.
//!
//! # Mutators, safepoints, blocking regions, the world
//!
//! An OS thread attaches with [`Heap::attach`] (one [`Mutator`] per thread and heap; `!Send`).
//! Inside a scope it is *running*: it must reach a safepoint now and then (every allocation
//! is one, and [`Scope::safepoint`] costs a load and a branch of one per-heap word). Outside
//! any scope, or inside [`Scope::blocking`], it is *blocked*: its barrier buffer is flushed,
//! its handle block frozen, and the collector may work on its roots and stop the world
//! without it. The world stops when every mutator is parked at a safepoint or held in a
//! blocking region (`world.rs`: one state word per mutator, moved by CAS between the mutator
//! and the collector, and a store-then-load handshake with `fence(SeqCst)`, loom-checked).
//!
//! # A cycle
//!
//! 1. *Sweep termination* (world stopped; the previous sweep was finished just before, with
//!    the world running): the allocator turns on allocate-black, the cycle number advances,
//!    marking opens.
//! 2. *Concurrent mark.* The collector scans the root table; each mutator's handle block is
//!    scanned once, while it is stopped — by the mutator itself at its next safepoint, or by
//!    the collector while holding it in its blocking region — so no stop of the world does
//!    work proportional to roots. Grey objects flow through per-party buffers and a global
//!    pool (`work.rs`); large objects are scanned in 128 KiB oblets. Background workers follow
//!    Go's rule ([`WorkerPlan`]: 25% of `procs` — at `procs` = 2, one fractional worker at
//!    25% of wall time), marking flat out only while a CPU of `procs` is free; a thread waiting
//!    in `gc()` marks too under the same rule.
//! 3. *Mark termination* (world stopped), attempted when every mutator is scanned and the pool
//!    is done: every mutator flushed its barrier buffer and grey work when it parked or
//!    blocked, so if the pool is still empty and no worker is busy — checked and closed under
//!    the pool's lock — nothing grey is left anywhere; otherwise the world restarts and
//!    marking goes on. Then `finish_mark` flips the sweep generation: unmarked objects are
//!    garbage.
//! 4. *Sweep*, concurrently: by the collector thread in the background (which also zeroes
//!    the spans it frees, so the allocation that reuses their pages need not: work moved
//!    off the mutators), by allocation (the allocator sweeps before it takes fresh pages),
//!    and by `gc()` callers.
//!
//! # Pacing
//!
//! [`pacer`] decides when: Go 1.18's pacer — the goal is the live heap plus GOGC percent of
//! it (and of the roots), at least 4 MiB × GOGC/100 and at most what the memory limit
//! (GOMEMLIMIT) leaves beside the runtime's other memory; the trigger is the goal less the
//! runway the program is measured to allocate while a mark does its work, within 70–95% of
//! the way there. Mutators count their allocation toward the heap every 64 KiB and, while
//! marking, owe scan work for every byte they allocate (mark assists, at the ratio of work
//! left to room left). The heap may not run past its goal on a collector thread that waits
//! for a CPU (Go's assists park on its assist queue, and its trigger runs `gcStart` on the
//! allocating goroutine): a mutator that reaches the goal before the triggered cycle has
//! begun marking helps finish the sweep and then waits for marking to start; one that
//! reaches it while marking pays scan work whatever the ratio, and when none is left waits
//! for mark termination. Both waits are blocking regions (the collector stops the world
//! without them), woken through the grey pool when marking starts or ends. The pacer's
//! next goal and trigger are set at mark termination, before the world restarts, so the
//! heap is never measured against a stale goal. While the memory limit binds, a limiter
//! holds the collector to half of the CPUs: assists, these waits and idle marking stand
//! down. `GODEBUG=gctrace=1` prints Go's trace line per
//! cycle after the world restarts. Every stop of the world does work proportional to the
//! number of mutators; its pauses are summed per cycle into Go's 256-entry `PauseNs` ring
//! ([`GcStats`], [`MemStats`]).
//!
//! # The invariant, and why the barrier keeps it
//!
//! Tri-color: black objects are marked and scanned, grey ones marked and queued, white ones
//! unmarked. Marking is correct if, when it ends, no black object points to a white one that
//! is reachable. During marking gort keeps Go's *weak tri-color invariant*: every white
//! object pointed to by a black object is also reachable from some grey object through a
//! chain of white ones (it is *grey-protected*). The mutators' handle blocks count as black
//! once scanned and grey before. The barrier is Go's hybrid one (Yuasa deletion + Dijkstra
//! insertion while the mutator is unscanned), in [`Slot::set`] while marking:
//!
//! - **shade the value overwritten** (`old`, taken with an atomic swap so two racing writers
//!   each shade exactly what they removed). A store can break a grey-protecting chain only by
//!   overwriting a pointer in it; the object it pointed to becomes grey, so everything it
//!   protected stays protected. This is what lets a *scanned* mutator move a pointer from an
//!   unscanned place to a scanned one (gc-arena's unsound re-root, test
//!   `barrier::pointer_moved_from_unscanned_to_scanned_place_survives`, which checkmark fails
//!   when this half is removed).
//! - **shade the value stored while this mutator's roots are unscanned.** An unscanned
//!   mutator may hold a handle to a white object that no grey chain protects (it reached it
//!   before marking began, and the heap path may since be gone); storing it into a black
//!   object without shading could hide it once the handle goes. After its scan, everything a
//!   mutator can load comes from a slot (grey-protected by the deletion half), from a root
//!   (scanned, or shaded when made — below) or from an allocation (born black).
//! - **objects allocated while marking are born black** (the allocator's allocate-black) and
//!   their initial referents are shaded, since nothing will scan them.
//! - **a root made or cloned while marking shades its object** (`Root::new`), deciding
//!   "marking?" under the grey pool's lock that closes marking: the root table may have been
//!   scanned already, and the root being copied may be dropped before the scanner reaches it
//!   (loom: `loom_root_cloned_and_dropped_during_the_root_scan_stays_marked`).
//!
//! Marking ends only when no grey object exists in the pool, in a worker, or in a mutator's
//! buffers (loom: `loom_termination_never_early`; the stopped world makes every mutator flush,
//! loom: `loom_stopped_world_runs_no_mutator`). With no grey object left, the weak invariant
//! says no black object points to a reachable white one. Checkmark mode
//! ([`Config::checkmark`], `GODEBUG=gccheckmark=1`) re-marks the heap with the world stopped
//! after each cycle and aborts with a `fatal error` if anything reachable was left white;
//! debug builds poison freed memory.
//!
//! # Scanning
//!
//! A marker (`mark.rs`) drains its grey buffer through a sixteen-entry FIFO that prefetches
//! each object as it enters. A grey entry's object is found through the span cursor of the
//! entry before it, without a look at the alloc bits (a grey entry is marked, so allocated
//! until the sweep). When that span records one layout for its small objects, the entry is
//! an object's base and its pointer words are the layout's: no slot arithmetic, no heap bits
//! (the record is read for each object: a span can turn mixed while a drain holds its
//! cursor). Otherwise the slot is computed and the pointer words come from the heap bits
//! (one bitmap word for any object of up to 64 words). The non-null referents gather in a
//! batch that `gort_alloc::Heap::mark_batch` marks with one atomic OR per shared mark word.
//! The marker's functions spend about 157 instructions on a 16-byte tree node
//! (`examples/mark_rate.rs 18 1` built with the `release-lto` profile, under callgrind; 245
//! before the span layout record, the whole-object path and the shortcut by the layout).
//!
//! # Memory ordering
//!
//! The phase flags (`marking`, the cycle number) change only while the world is stopped; the
//! stop's handshake orders them for every mutator, so the barrier's fast path reads them with
//! `Relaxed`. `Slot::set` stores with `Release` and `Slot::get` loads with `Acquire`, so a
//! mutator that finds an object through a slot sees its initialisation. The marker reads
//! slots `Relaxed`: it only scans objects that were white when marking began (their contents
//! reached it through the stop of the world); objects allocated since are born black.
#![deny(unsafe_op_in_unsafe_fn)]

// The derive macro names `::gort_gc::...`; this makes those paths work inside the crate too.
extern crate self as gort_gc;

mod cell;
mod collector;
mod config;
#[cfg(doctest)]
mod derive_docs;
mod desc;
mod embedder;
mod finalizer;
mod handle;
mod heap;
mod loom;
mod map;
mod mark;
mod mutator;
pub mod pacer;
mod raw;
mod root;
mod slot;
mod stats;
mod trace;
mod vec;
mod work;
mod world;

pub use cell::{CellCx, CellFamily, CellTrace, GcCell, Member};
pub use collector::{BACKGROUND_UTILIZATION, WorkerPlan};
pub use config::{Config, GcError};
pub use embedder::{Embedder, MutatorRoots, PState};
pub use gort_alloc::AllocError;
pub use gort_gc_derive::Trace;
pub use handle::Local;
pub use heap::Heap;
pub use map::{GcMap, MapFamily};
pub use mutator::{Mutator, Scope};
pub use raw::Gc;
pub use root::Root;
pub use slot::Slot;
pub use stats::{GcStats, MemStats, PAUSE_RING};
pub use trace::{PTRMAP_WORDS, PtrMap, Trace};
pub use vec::GcVec;
