//! gort-alloc: Go's size-class heap, rebuilt as a collected heap any collector can drive.
//!
//! # Layout
//!
//! Memory comes from the OS in *arenas* of 64 MiB, reserved (not committed) with
//! `MAP_NORESERVE` and aligned to their size — `os.rs` maps one arena more than asked and
//! unmaps the unaligned ends at once, so the heap's address space is what its arenas span (a
//! heap fits under an address-space limit where its live size says) — so the arena holding an address is found by
//! shifting the address right by 26 bits and indexing a flat table — one load, for any
//! address at all (addresses beyond 48 bits, or in no arena, read a null entry). Each arena is
//! cut into 8 KiB *pages*; each page's entry in the arena's span table points at the *span*
//! (run of pages) that holds it. That is the whole of `find_object`: arena, page, span,
//! then a multiply-shift division of the offset by the object size. The arena also holds the
//! spans' object bitmaps (alloc, mark, and the rarely used finalize / queued / header bits;
//! 1024 bits per page per kind, a span's starting at its first page's) and the heap bits, all
//! in lazily backed `MAP_NORESERVE` memory, so a span record itself is small and
//! metadata costs memory only where pages are in use; the scavenger returns the metadata of
//! released pages together with the pages. Span records are never deallocated (a racing
//! reader may hold one), so after a burst the records of long-freed spans stay resident: a
//! record is 32 bytes (object size and division magic come from the size-class table, counts
//! are narrowed), 0.4% of the 8 KiB it describes. The bitmaps are split: the first 128 bits of each
//! page sit in a dense region (16 bytes per page per kind, 256 pages to an OS page) and only
//! the five classes under 64 bytes reach into an overflow region for the other 896, so a heap
//! of larger objects keeps 1/8 of the bitmap resident that a flat layout would (an OS page of
//! bitmap holding one live span's bits cannot be released).
//!
//! A span holds objects of one *size class* — Go's 68 classes up to 32 KiB, with Go's page
//! counts per span — or a single *large* object of whole pages. Spans of pointer-free
//! (*noscan*) objects are kept apart from the others, so the unit of caching is the *span
//! class* (size class × noscan). Noscan objects under 16 bytes are packed several to a 16 B
//! *tiny block*; the block is what is allocated, marked, swept and found.
//!
//! # Allocation
//!
//! Each thread (each P under a scheduler) owns a [`Cache`] (Go's mcache) that holds one span
//! per span class together with a 64-bit inverted copy of the span's alloc bits at the current
//! position. The fast path is: look up the class, count trailing zeros, clear the lowest bit,
//! multiply — no lock, no atomic read-modify-write. Zeroing is skipped when the span's pages
//! came fresh from the OS (or back from `MADV_DONTNEED`); heap bits are written for objects
//! with pointers (unless the span records their layout, below); then the slot's alloc bit
//! is *published* with a Release store (a plain store of the word's value, which the cache
//! keeps beside its free bits: it is the only writer of a span it holds, and not loading the
//! word spares a stall when a neighbouring page's span, cached by another thread, shares its
//! cache line). From claim to publication
//! the cache's `busy` word is set (plain stores and compiler fences), so a signal handler that
//! wants to suspend this thread for a stack scan can see it is mid-allocation and defer. The
//! busy word sits alone on its cache lines (it is stored twice per allocation; two caches'
//! words on one line would make every allocation invalidate the other thread's line). With
//! a constant size and shape — the usual call, a type's allocation — the class, the object
//! size and the noscan test fold away, leaving about twenty instructions.
//!
//! A fresh span of pointerful objects is prefaulted for writing (one zero store per OS page)
//! when a cache takes it: the marker reads the pointer slots of objects the program may never
//! have written, a first read maps the kernel's shared zero page, and the write that follows
//! (the program's, or the zeroing at reuse) is a copy-on-write fault with a TLB shootdown of
//! every CPU running the process.
//!
//! When the cached word is exhausted the cache moves to the span's next word; when the span is
//! full it goes back to its *mcentral* (per span class: partial and full lists, each swept and
//! unswept) and the cache takes another: a swept partial span, else an unswept one it sweeps
//! itself (keeping it even when the sweep empties it, as Go's `sweep(preserve)` does: giving
//! it back to the page heap only to take pages out again for the same class is wasted work),
//! else a fresh span from the page heap. Large objects go straight to the page heap.
//! The page heap keeps, per arena, an in-use bitmap, a "clean" (released, known-zero) bitmap
//! and a "zeroed" (resident, known-zero) one: a background sweeper on a CPU of its own
//! (`Heap::sweep_one_zeroing`, the collector's thread) zeroes the spans it frees, up to
//! 128 KiB each, so the allocation that reuses their pages does not (except spans of slots
//! of 64 bytes or less, which allocation zeroes in the stores that bring their lines in);
//! search
//! is first-fit: a max-tree over the arenas finds the first one that may fit in O(log arenas),
//! then at most 128 words of its bitmap (see `pages.rs`). Objects larger than an arena take
//! runs of whole, address-contiguous arenas, reused once freed. Free pages go back to the OS
//! in bounded steps (at most 2 MiB) whose `madvise` runs outside the heap lock: whenever
//! retained memory exceeds `set_retained_target`, after each span allocation or free, and all
//! of them at `release_free_pages`.
//!
//! # Collection support
//!
//! The heap never calls a collector; a collector drives it:
//!
//! 1. [`Heap::start_mark`] (world stopped) closes the sweep gate (below), finishes the
//!    previous sweep and turns on
//!    *allocate-black* in every cache: objects allocated while marking are born marked. A
//!    cache marks ahead, with one atomic OR, the free slots of each alloc word it takes while
//!    marking (and of the words it holds when marking starts), so the allocation fast path
//!    never touches a mark bit. A slot so marked that stays free costs nothing: the sweep
//!    keeps only slots both allocated and marked, and every cache gives its spans back when
//!    marking ends, so no slot is allocated later under a stale mark. (Go ORs each object's
//!    bit as it allocates it; that was an atomic per allocation on a line markers write.)
//! 2. The collector marks with [`Heap::mark`] / [`Object::mark`] (atomic `fetch_or`), or
//!    [`Heap::mark_batch`] for a batch of pointers (one OR per shared mark word), walking
//!    each object's pointer words with [`Object::for_each_pointer_slot`] (the *heap bits*: one
//!    bit per word of the arena, written at allocation from the object's [`Shape`], so small
//!    objects need no header; an optional header word exists for layouts a bitmap cannot
//!    describe). A span of objects of up to 7 words also records the layout they all share
//!    (`Span::ptrmask`, kept by the allocating cache until two objects differ), and a scan
//!    reads it instead of the heap bits: the bitmap word is a scan's second cache miss, and
//!    small objects of one span are nearly always of one type. Allocation then skips their
//!    heap bits too; the first object of another layout writes the bits of those before it
//!    and only then records the span as mixed (Release, paired with the scan's Acquire).
//!    [`Heap::find_object`] resolves interior pointers and answers `None` for
//!    anything not allocated and published — a stale word on a stack never leads a marker
//!    into a free or half-built object.
//!    Outside a mark phase `mark` and `mark_batch` do nothing: a bit set then would survive
//!    into the next cycle on a span already swept and make an unreached object look marked.
//!    An [`Object`] records the cycle it was found in and refuses to mark after the next
//!    `finish_mark` (its slot may have been freed and reused): find objects again each cycle.
//! 3. [`Heap::finish_mark`] (world stopped) advances the *sweep generation* by two and makes
//!    every cache release its spans. Each `finish_mark` pairs with one `start_mark` (a second
//!    one in a row panics: the first cycle's dead objects would never be swept). Mark bits now decide survival; each span is swept exactly
//!    once this cycle, by whoever reaches it first — a refill, the proportional sweep that
//!    runs before the page heap hands out pages, or [`Heap::sweep_one`] from a background
//!    thread — through a compare-and-swap on the span's generation word (see `sweepgen.rs`).
//!    Sweeping makes the mark bits the new alloc bits and clears the mark bits; an empty span
//!    returns its pages to the page heap (unless a refill swept it: the refill uses it). A
//!    dead object whose [`Shape`] said it has drop glue
//!    is not freed: it goes to the [`DropQueue`] given at construction, stays allocated, and
//!    is freed by a later sweep after [`Heap::release_finalized`]. Its finalize and queued
//!    bits form a pair that changes in one atomic step (`finalize.rs`, loom-checked): the
//!    sweep records "queued" before the object is handed over, and the release is one
//!    `fetch_and` that no sweep can interleave into a second queueing. The hand-over itself
//!    happens after the sweep, outside every lock and never on the stop-the-world
//!    coordinator's thread (the drop queue is user code): sweeps run by `start_mark` only
//!    record, in room reserved beforehand, and the next `sweep_one` / `sweep_all` /
//!    [`Heap::push_drops`] or cache refill pushes. A `push` that panics unwinds into the
//!    thread that called it, after the span was published: nothing stays claimed. A heap
//!    without a drop queue refuses `finalize: true` at allocation.
//!
//! **The sweep gate.** Background sweepers are plain threads the world's stop does not stop,
//! so the generation must never change under one: every sweep outside a cache runs inside a
//! gate that `start_mark` / `finish_mark` close (waiting until no sweeper is inside) before
//! they sweep, flip or turn marking on, and reopen when done — Go's `sweepLocker`, as a
//! Dekker handshake (`sweepgen.rs`; the loom model of a flip against a sweeper fails without
//! it). A sweeper inside holds the gate for one span at most.
//!
//! **Iteration and figures.** [`Heap::for_each_object`] and [`Heap::for_each_object_in_span`]
//! walk allocated or marked objects (heap profiles, dumps, checkmark verification);
//! [`Heap::live_bytes`] is Go's `heapLive` — one relaxed load, kept current by one shared
//! atomic add per span a cache takes or gives back and per span a sweep frees, never per
//! object.
//!
//! **Suspension.** A suspend-signal handler (installed by `rt`) must defer while its thread is
//! in a window the collector could observe half-done. The allocation window, the tiny
//! allocator's included (its block pointer is cache state that `start_mark` resets), sets the
//! cache's [`Cache::busy_word`]; every lock the heap takes — the heap lock (`stats`,
//! `release_free_pages`, span allocation, the scavenger), the span sets, the cache registry,
//! the deferred drops — is counted per thread in [`heap_locks_held`], whatever method took
//! it, so a thread suspended while holding one cannot deadlock a `start_mark` that needs it.
//! While the world is stopped nothing here calls the system allocator: span sets and the
//! span free list keep room for every span of their class (reserved when a span is made,
//! never with the world stopped), the drop list has reserved room, and drop-queue pushes wait
//! for the restart.
//!
//! # Invariants
//!
//! - A slot's alloc bit is set only by the cache holding its span (after zeroing and heap
//!   bits, with Release) or by a sweep (which owns the span through its claim). `find_object`
//!   acquires it, so whatever it returns was initialised.
//! - A span is owned by at most one party at a time: a cache (generation `sg+3`, or `sg+1`
//!   after a flip), a sweeper (`sg-1`), or an mcentral list (whose lock hands it out).
//! - Span records and arenas are never deallocated before the heap, so any pointer read from
//!   the arena index or a span table stays dereferenceable; all their shared fields are
//!   atomics, so a racing reader sees stale values, never undefined behaviour.
//! - Memory handed out is zero. Pages returned with `MADV_DONTNEED` (never `MADV_FREE`, which
//!   can resurrect old bytes) are known clean and not zeroed again; neither are pages freed
//!   as zeroed by a zeroing sweep, which wrote the zeros while it owned the span.
//! - Statistics live in cache-local fields, counted at span granularity, and reach the
//!   heap's atomics when a cache releases its spans; the live-heap figure is one shared
//!   atomic touched once per span refill or release; no shared counter is touched per object.
//! - A sweeper never acts on a generation that changed under it (the sweep gate); each span
//!   is swept at most once per generation (the claim).
//!
//! # Alignment
//!
//! Every object is 8-byte aligned; objects of classes whose size is a multiple of 16 are
//! 16-byte aligned (spans start on page boundaries and slots are size-spaced); tiny objects
//! are aligned to the largest power of two up to 8 dividing their size; large objects to a
//! page. Size 0 returns one shared address that must never be written.
//!
//! # Concurrency contract
//!
//! `Heap` is `Send + Sync` and cheap to clone. A `Cache` is used by one thread at a time.
//! `start_mark`, `finish_mark` and `flush_caches` are `unsafe`: they touch every cache, so the
//! caller must guarantee that no thread is inside a method of any cache of the heap (the
//! collector's stop-the-world); `finish_mark` also frees every unmarked object, so the
//! caller vouches that nothing uses one afterwards. `Object::header` reads object memory and
//! is `unsafe` for the same reason. Everything else is safe to call from any thread at any
//! time: `find_object`, `mark`, the iterators and the statistics read only atomics, whatever
//! they race with; `sweep_one` / `sweep_all` and `release_finalized` may race with a stopped
//! world (a sweeper inside the gate delays `start_mark` / `finish_mark` by one span).
#![deny(unsafe_op_in_unsafe_fn)]
// A loom build compiles the crate for its models, which use a part of it (the sweep
// generations, the span sets; the scavenger and the rest go unused): unused code there is
// expected, and warnings about it would only bury real ones.
#![cfg_attr(loom, allow(dead_code))]

mod arena;
mod cache;
mod central;
mod error;
mod finalize;
mod heap;
mod heapbits;
mod loom;
mod nopreempt;
mod object;
mod os;
mod pages;
mod shape;
pub mod sizeclass;
mod span;
mod spanset;
mod stats;
mod sweep;
mod sweepgen;

pub use arena::{ARENA_BYTES, PAGES_PER_ARENA};
pub use cache::Cache;
pub use error::{AllocError, AllocErrorKind};
pub use heap::{DropQueue, Heap, zero_size_addr};
pub use nopreempt::heap_locks_held;
pub use object::{Object, Objects, SpanCursor, SpanInfo};
pub use shape::{Ptrs, Shape};
pub use sizeclass::{MAX_SMALL_SIZE, PAGE_SIZE, TINY_SIZE};
pub use stats::{BY_SIZE_ENTRIES, BySize, HeapStats};
