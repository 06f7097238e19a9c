//! Allocation benchmarks: gort-alloc against mimalloc and the system allocator (Go's figures
//! come from `alloc/bench-go/alloc.go`). Prints one JSON line per figure.
//!
//! Figures:
//! - `alloc/steady/<size>/<noscan|ptr>/<threads>t` (ns/op per thread; each thread times its
//!   own run from a common start signal and the slowest counts): allocate objects of one
//!   size into a ring that holds a fixed live set, so each new object makes an old one
//!   garbage. This program measures the peers, which `alloc_zeroed` the new object and free
//!   the one it replaces; gort's figure comes from `gc/examples/bench_gc.rs`, with the real
//!   collector behind the allocator.
//! - `alloc/steady-raw/<size>/<noscan|ptr>/<threads>t` (gort only): the same workload on the
//!   allocator alone, collecting as GOGC=100 would (when the bytes allocated since the last
//!   collection reach the live bytes it marked, with Go's 4 MiB minimum heap): the threads
//!   stop at a barrier, each marks its own ring with `Heap::mark_batch` (scanning the pointer
//!   slots of pointerful objects it newly marks), and sweeping happens lazily in the
//!   allocation path.
//! - `alloc/fast16/<noscan|ptr>` (ns/op): the warm fast path — 500 allocations of 16 bytes
//!   from a cache whose span has free slots (timed), between untimed resets; peers time 500
//!   `alloc_zeroed(16)` and free them untimed.
//! - `alloc/rss/after-burst`, `alloc/rss/after-release` (MiB of RSS growth) and
//!   `alloc/rss/release-vs-live` (x): a burst of 64-byte objects of which 1/8 stay live (in
//!   runs of 64 KiB), collected (or freed), then `release_free_pages()` (mimalloc:
//!   `mi_collect(true)`, system: `malloc_trim(0)`). The ratio divides the growth after release
//!   by gort's live bytes rounded up to spans (HeapInuse), or the peers' live bytes. Each
//!   implementation runs in a child process of its own.
//! - `alloc/huge-churn/rss` (MiB of RSS growth): 8 rounds of allocating a 96 MiB object,
//!   writing one byte per 4 KiB page, and dropping it (gort: a collection; peers: `dealloc`);
//!   RSS growth after the last round. Each implementation runs in a child process of its own.
//!
//! `--quick` scales everything down; `--only <impl>` runs one implementation; `--filter <s>`
//! runs the figures whose name contains `s`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use gort_alloc::{Heap, Shape};
use mimalloc::MiMalloc;

// mimalloc's own entry point (linked through the `mimalloc` crate): return free memory now.
unsafe extern "C" {
    fn mi_collect(force: bool);
}

const SIZES: [usize; 5] = [8, 16, 64, 1024, 32768];
const MIN_HEAP: usize = 4 << 20;
const PTRS: [u64; 64] = [u64::MAX; 64];

fn emit(bench: &str, imp: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"{imp}\",\"value\":{value:.3},\"unit\":\"{unit}\"}}"
    );
}

fn shape(scan: bool) -> Shape<'static> {
    if scan {
        Shape::pointers(&PTRS)
    } else {
        Shape::NOSCAN
    }
}

struct Config {
    live: usize,
    ops_scale: usize,
    fast_rounds: usize,
    burst: usize,
    huge_rounds: usize,
}

/// The object `alloc/huge-churn` churns: larger than an arena.
const HUGE: usize = 96 << 20;

/// `alloc/huge-churn/rss` for one implementation (run in a child process).
fn huge_child(imp: &str, cfg: &Config) {
    const MIB: f64 = (1 << 20) as f64;
    let touch = |p: *mut u8, round: usize| {
        for off in (0..HUGE).step_by(4096) {
            // SAFETY: `p` points to `HUGE` bytes that are ours.
            unsafe { p.add(off).write(round as u8 + 1) };
        }
    };
    let base = rss_bytes();
    // Measured while the heap is still alive (dropping it unmaps everything).
    let after = match imp {
        "gort" => {
            let heap = Heap::new().expect("heap");
            let mut cache = heap.cache();
            for round in 0..cfg.huge_rounds {
                let p = cache.alloc_noscan(HUGE).expect("huge object").as_ptr();
                touch(p, round);
                cache.flush();
                // SAFETY: single-threaded: no cache method runs during these calls; the
                // object is dead.
                unsafe {
                    heap.start_mark();
                    heap.finish_mark();
                }
                heap.sweep_all();
            }
            rss_bytes()
        }
        "mimalloc" | "system" => {
            let a: &dyn GlobalAlloc = if imp == "mimalloc" {
                &MiMalloc
            } else {
                &System
            };
            let layout = Layout::from_size_align(HUGE, 4096).unwrap();
            for round in 0..cfg.huge_rounds {
                // SAFETY: valid layout.
                let p = unsafe { a.alloc_zeroed(layout) };
                assert!(!p.is_null());
                touch(p, round);
                // SAFETY: allocated above, freed once.
                unsafe { a.dealloc(p, layout) };
            }
            rss_bytes()
        }
        _ => panic!("unknown implementation {imp}"),
    };
    emit(
        "alloc/huge-churn/rss",
        imp,
        after.saturating_sub(base) as f64 / MIB,
        "MiB",
    );
}

fn ops_for(cfg: &Config, size: usize) -> usize {
    (80 * cfg.live / size).clamp(40_000, 4_000_000) / cfg.ops_scale
}

/// Shared state of one gort steady-state run.
struct Shared {
    heap: Heap,
    rings: Vec<Vec<AtomicUsize>>,
    gc_flag: AtomicBool,
    allocated: AtomicUsize,
    trigger: AtomicUsize,
    done: AtomicUsize,
    barrier: Barrier,
    threads: usize,
    collections: AtomicUsize,
    marked: AtomicUsize,
}

impl Shared {
    /// Called by every thread at a stop. The world stops at a barrier; every thread marks its
    /// own ring (parallel marking, as Go's mark workers would on every P); one thread turns
    /// marking on before and sweeping on after.
    fn stop(&self, t: usize) {
        if self.barrier.wait().is_leader() {
            // SAFETY: every thread of this heap is parked at a barrier, inside no cache
            // method, until the last `wait` of this function.
            unsafe { self.heap.start_mark() };
        }
        self.barrier.wait();
        let mut marked_bytes = 0;
        let roots = self.rings[t]
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed));
        self.heap.mark_batch(roots, |o| {
            marked_bytes += o.size();
            let mut sum = 0usize;
            o.for_each_pointer_slot(|a| {
                // SAFETY: a pointer slot of a live object; the benchmark never writes
                // pointer slots, so they hold the zeroes of allocation.
                sum += unsafe { std::ptr::read_volatile(a as *const usize) };
            });
            assert_eq!(sum, 0);
        });
        self.marked.fetch_add(marked_bytes, Ordering::Relaxed);
        if self.barrier.wait().is_leader() {
            // SAFETY: as above.
            unsafe { self.heap.finish_mark() };
            let marked = self.marked.swap(0, Ordering::Relaxed);
            let goal = (2 * marked).max(MIN_HEAP);
            self.trigger.store(goal - marked, Ordering::Relaxed);
            self.allocated.store(0, Ordering::Relaxed);
            self.gc_flag.store(false, Ordering::Relaxed);
            self.collections.fetch_add(1, Ordering::Relaxed);
        }
        self.barrier.wait();
    }
}

fn gort_steady(size: usize, scan: bool, threads: usize, cfg: &Config) -> (f64, usize) {
    let heap = Heap::new().expect("heap");
    let per_thread = (cfg.live / threads / size).max(1);
    let ops = ops_for(cfg, size);
    let sh = Arc::new(Shared {
        heap,
        rings: (0..threads)
            .map(|_| (0..per_thread).map(|_| AtomicUsize::new(0)).collect())
            .collect(),
        gc_flag: AtomicBool::new(false),
        allocated: AtomicUsize::new(0),
        trigger: AtomicUsize::new(MIN_HEAP),
        done: AtomicUsize::new(0),
        barrier: Barrier::new(threads),
        threads,
        collections: AtomicUsize::new(0),
        marked: AtomicUsize::new(0),
    });
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let sh = sh.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let mut cache = sh.heap.cache();
                let shape = shape(scan);
                let ring = &sh.rings[t];
                let mut local = 0usize;
                start.wait();
                let t0 = Instant::now();
                for i in 0..ops + per_thread {
                    if sh.gc_flag.load(Ordering::Relaxed) {
                        sh.stop(t);
                    }
                    let p = cache.alloc(size, shape).expect("alloc").as_ptr() as usize;
                    ring[i % per_thread].store(p, Ordering::Relaxed);
                    local += size;
                    if local >= 64 << 10 {
                        let a = sh.allocated.fetch_add(local, Ordering::Relaxed) + local;
                        local = 0;
                        if a >= sh.trigger.load(Ordering::Relaxed) {
                            sh.gc_flag.store(true, Ordering::Relaxed);
                        }
                    }
                }
                let elapsed = t0.elapsed().as_nanos();
                sh.done.fetch_add(1, Ordering::AcqRel);
                drop(cache);
                // Keep taking part in stops until every thread is done and no stop is pending.
                // The last thread may raise the flag in its final iteration and then finish:
                // every thread must still join that stop, or the one that saw the flag waits
                // at the barrier forever. Read `done` first: a thread raises the flag only
                // before its own `done` increment (AcqRel), so once every increment is seen
                // the flag read after it is final until the stop clears it.
                loop {
                    let all_done = sh.done.load(Ordering::Acquire) == sh.threads;
                    if sh.gc_flag.load(Ordering::Relaxed) {
                        sh.stop(t);
                        continue;
                    }
                    if all_done {
                        break;
                    }
                    std::thread::yield_now();
                }
                elapsed
            })
        })
        .collect();
    start.wait();
    // Each thread times its own run from the start signal; the figure is the slowest's.
    let ns = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap_or(0) as f64;
    (
        ns / (ops + per_thread) as f64,
        sh.collections.load(Ordering::Relaxed),
    )
}

fn peer_steady<A: GlobalAlloc + Sync>(
    a: &'static A,
    size: usize,
    threads: usize,
    cfg: &Config,
) -> f64 {
    let per_thread = (cfg.live / threads / size).max(1);
    let ops = ops_for(cfg, size);
    let layout = Layout::from_size_align(size, 8).unwrap();
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                let mut ring = vec![std::ptr::null_mut::<u8>(); per_thread];
                start.wait();
                let t0 = Instant::now();
                for i in 0..ops + per_thread {
                    // SAFETY: nonzero size, valid layout.
                    let p = unsafe { a.alloc_zeroed(layout) };
                    assert!(!p.is_null());
                    let old = std::mem::replace(&mut ring[i % per_thread], p);
                    if !old.is_null() {
                        // SAFETY: `old` came from `a` with `layout`, freed once.
                        unsafe { a.dealloc(old, layout) };
                    }
                }
                let elapsed = t0.elapsed().as_nanos();
                for p in ring {
                    // SAFETY: as above.
                    unsafe { a.dealloc(p, layout) };
                }
                elapsed
            })
        })
        .collect();
    start.wait();
    // As for gort: the slowest thread's own time from the start signal.
    let ns = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap_or(0);
    ns as f64 / (ops + per_thread) as f64
}

fn gort_fast16(scan: bool, cfg: &Config) -> f64 {
    let heap = Heap::new().expect("heap");
    let mut cache = heap.cache();
    let shape = shape(scan);
    let mut total = 0u128;
    let mut n = 0usize;
    let mut sink = 0usize;
    for _ in 0..cfg.fast_rounds {
        // Untimed reset: everything dies; the next allocation refills with a fresh span.
        // SAFETY: single-threaded: no cache method runs during these calls.
        unsafe {
            heap.start_mark();
            heap.finish_mark();
        }
        heap.sweep_all();
        sink ^= cache.alloc(16, shape).unwrap().as_ptr() as usize;
        let t0 = Instant::now();
        sink ^= if scan {
            alloc_500::<true>(&mut cache)
        } else {
            alloc_500::<false>(&mut cache)
        };
        total += t0.elapsed().as_nanos();
        n += 500;
    }
    std::hint::black_box(sink);
    total as f64 / n as f64
}

/// The timed loop of `gort_fast16`, out of line so it compiles as it would in a caller that
/// allocates one type (whose shape is a constant, as a collector's type descriptor is).
#[inline(never)]
fn alloc_500<const SCAN: bool>(cache: &mut gort_alloc::Cache) -> usize {
    const NODE: Shape<'static> = Shape::pointers(&[0b11]);
    let mut sink = 0;
    for _ in 0..500 {
        let p = if SCAN {
            cache.alloc(16, NODE)
        } else {
            cache.alloc_noscan(16)
        };
        sink ^= p.unwrap().as_ptr() as usize;
    }
    sink
}

fn peer_fast16<A: GlobalAlloc>(a: &A, cfg: &Config) -> f64 {
    let layout = Layout::from_size_align(16, 8).unwrap();
    let mut ptrs = vec![std::ptr::null_mut::<u8>(); 500];
    let mut total = 0u128;
    let mut n = 0;
    for _ in 0..cfg.fast_rounds {
        let t0 = Instant::now();
        for p in ptrs.iter_mut() {
            // SAFETY: valid layout.
            *p = unsafe { a.alloc_zeroed(layout) };
        }
        total += t0.elapsed().as_nanos();
        n += 500;
        for p in ptrs.iter() {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { a.dealloc(*p, layout) };
        }
    }
    total as f64 / n as f64
}

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

/// Whether object `i` of the burst stays live: runs of 1024 objects (64 KiB), one run in 8.
fn keep(i: usize) -> bool {
    (i / 1024).is_multiple_of(8)
}

fn rss_child(imp: &str, cfg: &Config) {
    const MIB: f64 = (1 << 20) as f64;
    let n = cfg.burst / 64;
    // The list of live objects is the benchmark's, not the heap's: make (and touch) it before
    // the baseline so its pages are not counted against the allocator.
    let mut live: Vec<usize> = vec![usize::MAX; n / 8 + 1024];
    live.clear();
    let base = rss_bytes();
    let (after_burst, after_release, live_rounded) = match imp {
        "gort" => {
            let heap = Heap::new().expect("heap");
            let mut cache = heap.cache();
            for i in 0..n {
                let p = cache.alloc_noscan(64).unwrap().as_ptr();
                // SAFETY: 64 bytes at `p` are ours.
                unsafe { (p as *mut u64).write(i as u64) };
                if keep(i) {
                    live.push(p as usize);
                }
            }
            drop(cache);
            // SAFETY: single-threaded: no cache method runs during these calls.
            unsafe { heap.start_mark() };
            for &p in &live {
                heap.mark(p);
            }
            // SAFETY: as above.
            unsafe { heap.finish_mark() };
            heap.sweep_all();
            let after_burst = rss_bytes();
            heap.release_free_pages();
            let after_release = rss_bytes();
            let inuse = heap.stats().heap_inuse as usize;
            std::hint::black_box(&live);
            (after_burst, after_release, inuse)
        }
        "mimalloc" | "system" => {
            let a: &dyn GlobalAlloc = if imp == "mimalloc" {
                &MiMalloc
            } else {
                &System
            };
            let layout = Layout::from_size_align(64, 8).unwrap();
            let mut dead = Vec::with_capacity(n);
            for i in 0..n {
                // SAFETY: valid layout.
                let p = unsafe { a.alloc(layout) };
                // SAFETY: 64 bytes at `p` are ours.
                unsafe { (p as *mut u64).write(i as u64) };
                if keep(i) {
                    live.push(p as usize)
                } else {
                    dead.push(p)
                }
            }
            for p in dead.drain(..) {
                // SAFETY: allocated above, freed once.
                unsafe { a.dealloc(p, layout) };
            }
            drop(dead);
            let after_burst = rss_bytes();
            if imp == "mimalloc" {
                // SAFETY: mi_collect has no preconditions.
                unsafe { mi_collect(true) };
            } else {
                // SAFETY: malloc_trim has no preconditions.
                unsafe { libc::malloc_trim(0) };
            }
            let after_release = rss_bytes();
            let bytes = live.len() * 64;
            std::hint::black_box(&live);
            (after_burst, after_release, bytes)
        }
        _ => panic!("unknown implementation {imp}"),
    };
    let grow = |r: usize| r.saturating_sub(base) as f64;
    emit("alloc/rss/after-burst", imp, grow(after_burst) / MIB, "MiB");
    emit(
        "alloc/rss/after-release",
        imp,
        grow(after_release) / MIB,
        "MiB",
    );
    emit(
        "alloc/rss/live-rounded",
        imp,
        live_rounded as f64 / MIB,
        "MiB",
    );
    emit(
        "alloc/rss/release-vs-live",
        imp,
        grow(after_release) / live_rounded as f64,
        "x",
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let cfg = if quick {
        Config {
            live: 1 << 20,
            ops_scale: 20,
            fast_rounds: 200,
            burst: 16 << 20,
            huge_rounds: 2,
        }
    } else {
        Config {
            live: 4 << 20,
            ops_scale: 1,
            fast_rounds: 4000,
            burst: 64 << 20,
            huge_rounds: 8,
        }
    };
    if let Some(i) = args.iter().position(|a| a == "--rss") {
        rss_child(&args[i + 1], &cfg);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--huge") {
        huge_child(&args[i + 1], &cfg);
        return;
    }
    let filter = args
        .iter()
        .position(|a| a == "--filter")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let run = |imp: &str| only.as_deref().is_none_or(|o| o == imp);
    let want = |bench: &str| filter.as_deref().is_none_or(|f| bench.contains(f));
    for scan in [false, true] {
        let kind = if scan { "ptr" } else { "noscan" };
        let bench = format!("alloc/fast16/{kind}");
        if !want(&bench) {
            continue;
        }
        if run("gort") {
            emit(&bench, "gort", gort_fast16(scan, &cfg), "ns/op");
        }
        if run("mimalloc") {
            emit(&bench, "mimalloc", peer_fast16(&MiMalloc, &cfg), "ns/op");
        }
        if run("system") {
            emit(&bench, "system", peer_fast16(&System, &cfg), "ns/op");
        }
    }
    for threads in [1, 2] {
        for size in SIZES {
            for scan in [false, true] {
                let kind = if scan { "ptr" } else { "noscan" };
                let bench = format!("alloc/steady/{size}/{kind}/{threads}t");
                if !want(&bench) {
                    continue;
                }
                if run("gort") {
                    // The allocator alone, with this program's own stop-the-world marker:
                    // `alloc/steady/...` for gort comes from gc/examples/bench_gc.rs, with
                    // the real collector behind it.
                    let (ns, gcs) = gort_steady(size, scan, threads, &cfg);
                    eprintln!("{bench}: gort ran {gcs} collections");
                    let raw = format!("alloc/steady-raw/{size}/{kind}/{threads}t");
                    emit(&raw, "gort", ns, "ns/op");
                }
                if run("mimalloc") {
                    emit(
                        &bench,
                        "mimalloc",
                        peer_steady(&MiMalloc, size, threads, &cfg),
                        "ns/op",
                    );
                }
                if run("system") {
                    emit(
                        &bench,
                        "system",
                        peer_steady(&System, size, threads, &cfg),
                        "ns/op",
                    );
                }
            }
        }
    }
    let exe = std::env::current_exe().expect("current exe");
    for (mode, bench) in [("--rss", "alloc/rss"), ("--huge", "alloc/huge-churn")] {
        for imp in ["gort", "mimalloc", "system"] {
            if !run(imp) || !want(bench) {
                continue;
            }
            child(&exe, mode, imp, quick);
        }
    }
}

/// Run this program as a child measuring one figure group for one implementation.
fn child(exe: &std::path::Path, mode: &str, imp: &str, quick: bool) {
    let mut cmd = std::process::Command::new(exe);
    cmd.arg(mode).arg(imp);
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().expect("run the child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "{mode} {imp} child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
