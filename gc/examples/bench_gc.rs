//! Collector benchmarks: the same workloads as `gc/bench-go/gc.go` on gort-gc, and the
//! allocator's steady-state table with the real collector behind it. One JSON line per
//! figure.
//!
//! - `gc/binarytrees/{time,rss,pause-p50,pause-p99,pause-max}`: the Benchmarks Game
//!   binary-trees at depth 21 on two mutator threads (the depth levels shared out as Go's
//!   program shares them out over goroutines on two Ps): wall time in s, peak RSS in MiB
//!   (getrusage, in a child process of its own), per-cycle stop-the-world pause percentiles
//!   in µs.
//! - `gc/latency/{pause-p50,pause-p90,pause-max,tick-delay-max}`: 128 MiB of live
//!   pointer-dense objects (binary trees of 16-byte nodes) churned by one mutator (it
//!   replaces random subtrees) until at least 300 cycles have run; per cycle the sum of its
//!   stop-the-world pauses in µs, and the worst extra delay seen by a mutator that sleeps
//!   1 ms in a loop (in a blocking region, then back in a scope: it waits for any stop).
//! - `alloc/steady/<size>/<noscan|ptr>/<threads>t` (ns/op per thread, the slowest thread):
//!   objects of one size stored into a `GcVec` ring per thread that holds a fixed live set
//!   (4 MiB in all), so each new object makes an old one garbage; GOGC=100 paces the
//!   collector (the allocator's own bench has the peers; Go's is `alloc/bench-go/alloc.go`).
//!
//! `--quick` scales everything down; `--filter <s>` runs the figures whose name contains `s`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gort_gc::{Config, GcVec, Heap, Local, PAUSE_RING, Root, Scope, Slot, Trace};

/// Go's defaults at GOMAXPROCS=2, with GOGC / GOMEMLIMIT / GODEBUG (gctrace) honoured.
fn config() -> Config {
    Config {
        procs: 2,
        ..Config::from_env().expect("GOGC / GOMEMLIMIT / GODEBUG")
    }
}

fn emit(bench: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"gort\",\"value\":{value:.3},\"unit\":\"{unit}\"}}"
    );
}

#[derive(Trace)]
struct Node {
    left: Slot<Node>,
    right: Slot<Node>,
}

/// A tree of depth `d` (2^(d+1) - 1 nodes), built with a nested scope per level so the
/// handle block stays as deep as the tree, not as large.
fn bottom_up<'s>(s: &mut Scope<'s>, d: u32) -> Local<'s, Node> {
    let n = s.alloc(Node {
        left: Slot::null(),
        right: Slot::null(),
    });
    if d > 0 {
        s.scope(|s| {
            let l = bottom_up(s, d - 1);
            n.left.set(s, Some(l));
            let r = bottom_up(s, d - 1);
            n.right.set(s, Some(r));
        });
    }
    n
}

fn check(s: &mut Scope<'_>, n: Local<'_, Node>) -> u64 {
    s.scope(|s| match (n.left.get(s), n.right.get(s)) {
        (Some(l), Some(r)) => 1 + check(s, l) + check(s, r),
        _ => 1,
    })
}

/// Per-cycle pause sums (µs) of the cycles `from..`, sorted.
fn pauses(h: &Heap, from: u32) -> Vec<f64> {
    let st = h.stats();
    let first = from.max(st.num_gc.saturating_sub(PAUSE_RING as u32));
    let mut v: Vec<f64> = (first..st.num_gc)
        .map(|c| st.pause_ns[c as usize % PAUSE_RING] as f64 / 1e3)
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[(p * (v.len() - 1) as f64) as usize]
}

fn binarytrees(max_depth: u32) {
    const MIN_DEPTH: u32 = 4;
    let start = Instant::now();
    let heap = Heap::new(config()).expect("heap");
    let mut m = heap.attach().unwrap();
    let long_lived = m.scope(|s| {
        let stretch = bottom_up(s, max_depth + 1);
        let c = check(s, stretch);
        assert_eq!(c, (1 << (max_depth + 2)) - 1);
        s.scope(|s| {
            let t = bottom_up(s, max_depth);
            Root::new(s, t)
        })
    });
    drop(m);
    // The depth levels, shared out over two threads as goroutines over two Ps.
    let levels: Vec<u32> = (MIN_DEPTH..=max_depth).step_by(2).collect();
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (heap, next, levels) = (heap.clone(), next.clone(), levels.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach().unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&d) = levels.get(i) else { break };
                    let iters = 1u64 << (max_depth - d + MIN_DEPTH);
                    let mut sum = 0;
                    for _ in 0..iters {
                        sum += m.scope(|s| {
                            let t = bottom_up(s, d);
                            check(s, t)
                        });
                    }
                    assert_eq!(sum, iters * ((1 << (d + 1)) - 1));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut m = heap.attach().unwrap();
    let c = m.scope(|s| {
        let t = long_lived.get(s);
        check(s, t)
    });
    assert_eq!(c, (1 << (max_depth + 1)) - 1);
    let elapsed = start.elapsed().as_secs_f64();
    // SAFETY: `ru` is a plain out-parameter.
    let maxrss_kib = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru.ru_maxrss as f64
    };
    let p = pauses(&heap, 0);
    emit("gc/binarytrees/time", elapsed, "s");
    emit("gc/binarytrees/rss", maxrss_kib / 1024.0, "MiB");
    emit("gc/binarytrees/pause-p50", pct(&p, 0.5), "us");
    emit("gc/binarytrees/pause-p99", pct(&p, 0.99), "us");
    emit("gc/binarytrees/pause-max", pct(&p, 1.0), "us");
    eprintln!("binarytrees: {} cycles", heap.stats().num_gc);
}

/// A tiny deterministic generator (the workload needs no quality randomness).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn latency(live_mib: usize, cycles: u32) {
    const DEPTH: u32 = 15; // 64k nodes of 16 B: 1 MiB a tree
    let heap = Heap::new(config()).expect("heap");
    let mut m = heap.attach().unwrap();
    let trees = m.scope(|s| {
        let v = s.alloc(GcVec::<Node>::new());
        for _ in 0..live_mib {
            s.scope(|s| {
                let t = bottom_up(s, DEPTH);
                v.push(s, Some(t));
            });
        }
        Root::new(s, v)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let ticker = {
        let (heap, stop, worst) = (heap.clone(), stop.clone(), worst.clone());
        std::thread::spawn(move || {
            let mut m = heap.attach().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                m.scope(|s| s.blocking(|| std::thread::sleep(Duration::from_millis(1))));
                let late = t.elapsed().saturating_sub(Duration::from_millis(1));
                worst.fetch_max(late.as_nanos() as u64, Ordering::Relaxed);
            }
        })
    };
    let from = heap.stats().num_gc;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    m.scope(|s| {
        let v = trees.get(s);
        let n = v.len();
        let mut it = 0u64;
        loop {
            s.scope(|s| {
                // Replace a random subtree of depth 10 (2k nodes) in a random tree.
                let mut node = v.get(s, rng.next() as usize % n).unwrap();
                for _ in 0..DEPTH - 10 - 1 {
                    node = if rng.next() & 1 == 0 {
                        node.left.get(s).unwrap()
                    } else {
                        node.right.get(s).unwrap()
                    };
                }
                let fresh = bottom_up(s, 10);
                if rng.next() & 1 == 0 {
                    node.left.set(s, Some(fresh));
                } else {
                    node.right.set(s, Some(fresh));
                }
            });
            it += 1;
            if it.is_multiple_of(64) && heap.stats().num_gc >= from + cycles {
                break;
            }
        }
    });
    stop.store(true, Ordering::Relaxed);
    ticker.join().unwrap();
    let p = pauses(&heap, from);
    emit("gc/latency/pause-p50", pct(&p, 0.5), "us");
    emit("gc/latency/pause-p90", pct(&p, 0.9), "us");
    emit("gc/latency/pause-max", pct(&p, 1.0), "us");
    emit(
        "gc/latency/tick-delay-max",
        worst.load(Ordering::Relaxed) as f64 / 1e3,
        "us",
    );
    drop(trees);
}

/// Objects of the steady-state table: `N` bytes without pointers, or `N / 8` pointer words.
#[derive(Trace, bytemuck::Zeroable)]
struct Blob<const N: usize>([u8; N]);

#[derive(Trace, bytemuck::Zeroable)]
struct PBlob<const W: usize>([Slot<Leaf>; W]);

#[derive(Trace)]
struct Leaf(u64);

/// The allocated types: Go's program allocates them with `new(T)`, zeroed, and so do we.
trait Make: Trace + bytemuck::Zeroable {}

impl<const N: usize> Make for Blob<N> {}

impl<const W: usize> Make for PBlob<W> {}

fn steady<T: Make>(threads: usize, live: usize, ops_scale: usize) -> (f64, u32) {
    let size = std::mem::size_of::<T>();
    let heap = Heap::new(config()).expect("heap");
    let per_thread = (live / threads / size).max(1);
    let ops = (80 * live / size).clamp(40_000, 4_000_000) / ops_scale;
    let go = Arc::new(std::sync::Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (heap, go) = (heap.clone(), go.clone());
            std::thread::spawn(move || {
                let mut m = heap.attach().unwrap();
                m.scope(|s| {
                    let ring = s.alloc(GcVec::<T>::new());
                    for _ in 0..per_thread {
                        ring.push(s, None);
                    }
                    // Waiting for the other threads blocks: a blocking region, or a stop of
                    // the world would wait for this thread forever.
                    s.blocking(|| go.wait());
                    let t0 = Instant::now();
                    let mut i = 0;
                    while i < ops + per_thread {
                        // A scope per 64 objects keeps the handle block short.
                        s.scope(|s| {
                            for _ in 0..64 {
                                let o = s.alloc_zeroed::<T>();
                                ring.set(s, i % per_thread, Some(o));
                                i += 1;
                            }
                        });
                    }
                    t0.elapsed().as_nanos() as f64 / i as f64
                })
            })
        })
        .collect();
    go.wait();
    let ns = workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .fold(0.0, f64::max);
    (ns, heap.stats().num_gc)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let filter = args
        .iter()
        .position(|a| a == "--filter")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let want = |b: &str| filter.as_deref().is_none_or(|f| b.contains(f));
    let (depth, live_mib, cycles, live, ops_scale) = if quick {
        (16, 16, 20, 1 << 20, 20)
    } else {
        (21, 128, 300, 4 << 20, 1)
    };
    if args.iter().any(|a| a == "--child-binarytrees") {
        let depth = args
            .iter()
            .position(|a| a == "--depth")
            .and_then(|i| args.get(i + 1))
            .and_then(|d| d.parse().ok())
            .unwrap_or(depth);
        binarytrees(depth);
        return;
    }
    if want("gc/binarytrees") {
        // In a child of its own, so its peak RSS is its own.
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.arg("--child-binarytrees");
        if quick {
            cmd.arg("--quick");
        }
        let out = cmd.output().expect("binarytrees child");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "binarytrees child failed");
    }
    if want("gc/latency") {
        latency(live_mib, cycles);
    }
    macro_rules! table {
        ($($size:literal => $noscan:ty, $ptr:ty);* $(;)?) => {$(
            for threads in [1usize, 2] {
                for scan in [false, true] {
                    let kind = if scan { "ptr" } else { "noscan" };
                    let bench = format!("alloc/steady/{}/{kind}/{threads}t", $size);
                    if !want(&bench) {
                        continue;
                    }
                    let (ns, gcs) = if scan {
                        steady::<$ptr>(threads, live, ops_scale)
                    } else {
                        steady::<$noscan>(threads, live, ops_scale)
                    };
                    eprintln!("{bench}: {gcs} cycles");
                    emit(&bench, ns, "ns/op");
                }
            }
        )*};
    }
    table!(
        8 => Blob<8>, PBlob<1>;
        16 => Blob<16>, PBlob<2>;
        64 => Blob<64>, PBlob<8>;
        1024 => Blob<1024>, PBlob<128>;
        32768 => Blob<32768>, PBlob<4096>;
    );
}
