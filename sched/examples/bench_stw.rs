//! Stop-the-world latency with every P busy in loops without safepoints, the cost of
//! `safepoint()`, and the throughput a 2-P program keeps while one goroutine hogs a P; JSON
//! lines out (beside `sched/bench-go/stw.go`).
//!
//! Run by `cargo xtask bench`; `--quick` scales the workloads down.

use gort_sched::{Builder, Runtime, chan, safepoint};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn emit(bench: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"gort\",\"value\":{value:.3},\"unit\":\"{unit}\"}}"
    );
}

fn gort(procs: usize) -> Runtime {
    // SAFETY: the benchmark goroutines hold no thread-bound values across scheduling points.
    unsafe { Builder::new().gomaxprocs(procs).build() }.expect("valid configuration")
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `stops` stops of the world on 2 Ps, each busy with a goroutine spinning in a loop with no
/// call and no safepoint (so every stop suspends by signal); 1 ms between stops. Returns the
/// stop-to-restart times in µs, sorted.
fn stw(stops: usize) -> Vec<f64> {
    let rt = gort(2);
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    for i in 0..2 {
        let (stop, spins) = (stop.clone(), spins.clone());
        rt.go(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                if n & 0xFFFF == 0 {
                    spins[i].store(n, Ordering::Relaxed);
                }
            }
        })
        .unwrap();
    }
    while spins.iter().any(|s| s.load(Ordering::Relaxed) == 0) {
        std::thread::yield_now();
    }
    let mut times = Vec::with_capacity(stops);
    for _ in 0..stops {
        std::thread::sleep(Duration::from_millis(1));
        let t = Instant::now();
        let world = rt.stop_the_world("bench");
        world.start();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    stop.store(true, Ordering::Relaxed);
    times.sort_by(f64::total_cmp);
    times
}

/// ns that a `safepoint()` call adds to a loop iteration (the loop with it minus the loop
/// without, both in a goroutine, median of 5).
fn safepoint_cost(iters: u64) -> f64 {
    let rt = gort(1);
    rt.block_on(move || {
        let mut diffs = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for i in 0..iters {
                black_box(i);
            }
            let base = t.elapsed().as_secs_f64();
            let t = Instant::now();
            for i in 0..iters {
                safepoint();
                black_box(i);
            }
            let with = t.elapsed().as_secs_f64();
            diffs.push(((with - base) / iters as f64 * 1e9).max(0.0));
        }
        diffs.sort_by(f64::total_cmp);
        diffs[2]
    })
}

/// Round trips per second of 4 unbuffered ping-pong pairs on 2 Ps for `dur`, with or
/// without a goroutine spinning (no calls, no safepoints) on one P.
fn pairs_throughput(dur: Duration, hog: bool) -> f64 {
    let rt = gort(2);
    let stop = Arc::new(AtomicBool::new(false));
    let trips = Arc::new(AtomicU64::new(0));
    if hog {
        let stop = stop.clone();
        rt.go(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..4 {
        let (ping_tx, ping_rx) = chan::<u64>(0);
        let (pong_tx, pong_rx) = chan::<u64>(0);
        let stop2 = stop.clone();
        rt.go(move || {
            while let Ok(v) = ping_rx.recv() {
                if pong_tx.send(v).is_err() {
                    break;
                }
            }
        })
        .unwrap();
        let (trips, stop) = (trips.clone(), stop2);
        rt.go(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                ping_tx.send(n).unwrap();
                pong_rx.recv().unwrap();
                n += 1;
                if n.is_multiple_of(256) {
                    trips.fetch_add(256, Ordering::Relaxed);
                }
            }
        })
        .unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let before = trips.load(Ordering::Relaxed);
    let t = Instant::now();
    std::thread::sleep(dur);
    let done = trips.load(Ordering::Relaxed) - before;
    let rate = done as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    rate
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let stops = if quick { 50 } else { 400 };
    let times = stw(stops);
    emit("sched/stw-p50", percentile(&times, 0.5), "us");
    emit("sched/stw-p90", percentile(&times, 0.9), "us");
    emit("sched/stw-max", *times.last().unwrap(), "us");
    let iters = if quick { 10_000_000 } else { 200_000_000 };
    emit("sched/safepoint", safepoint_cost(iters), "ns");
    let dur = Duration::from_millis(if quick { 200 } else { 1000 });
    let base = pairs_throughput(dur, false);
    let hogged = pairs_throughput(dur, true);
    emit("sched/hog-throughput-kept", hogged / base, "ratio");
    // What the hog cost, in units of one P's share of the 2-P program's throughput.
    emit("sched/hog-cost", 2.0 * (1.0 - hogged / base).max(0.0), "P");
}
