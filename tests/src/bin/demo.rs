//! The scheduler showcase run by `cargo xtask demo`: spawning and joining goroutines, then a
//! million goroutines alive at once, with what it did and how long it took.

use gort_tests::{Gate, WaitGroup, map_count, rss_bytes, runtime};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let procs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = runtime(procs);
    println!(
        "gort scheduler demo: GOMAXPROCS={procs}, stack guards: {:?}",
        gort_sched::guard_mode()
    );

    // 1. Spawn and join: a parallel sum split over 1000 goroutines.
    let t = Instant::now();
    let sum = rt.block_on(|| {
        let hs: Vec<_> = (0..1000u64)
            .map(|k| gort_sched::spawn(move || (k * 1000..(k + 1) * 1000).sum::<u64>()))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("no panics"))
            .sum::<u64>()
    });
    assert_eq!(sum, (0..1_000_000u64).sum::<u64>());
    println!(
        "spawned and joined 1000 goroutines summing 0..1e6 = {sum} in {:?}",
        t.elapsed()
    );

    // 2. A panic in a spawned goroutine comes back through join.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        println!("  (goroutine {:?} panicked: {info})", gort_sched::goid())
    }));
    let err = rt.block_on(|| gort_sched::spawn(|| -> u32 { panic!("expected demo panic") }).join());
    std::panic::set_hook(hook);
    println!(
        "a panicking goroutine was joined with an error: {}",
        err.is_err()
    );

    // 3. One million goroutines alive at once, parked behind a gate, then released.
    let n = 1_000_000;
    let before = rss_bytes();
    let t = Instant::now();
    let (spawned_in, alive, maps, rss) = rt.block_on(move || {
        let gate = Arc::new(Gate::default());
        let wg = Arc::new(WaitGroup::new(n));
        let started_wg = Arc::new(WaitGroup::new(n));
        let t = Instant::now();
        for _ in 0..n {
            let (gate, wg, started_wg) = (gate.clone(), wg.clone(), started_wg.clone());
            gort_sched::go(move || {
                started_wg.done();
                gate.wait();
                wg.done();
            });
        }
        // Park until every goroutine has started, then wait out the last few registering.
        started_wg.wait();
        while gate.waiting() < n {
            gort_sched::gosched();
        }
        let spawned_in = t.elapsed();
        let alive = gort_sched::num_goroutine();
        let (maps, rss) = (map_count(), rss_bytes());
        gate.open();
        wg.wait();
        (spawned_in, alive, maps, rss)
    });
    println!(
        "{alive} goroutines alive at once (started and parked in {spawned_in:?}), \
         {} bytes of RSS per goroutine, {maps} memory mappings",
        (rss - before) / n
    );
    println!(
        "released and finished all of them in {:?} in total",
        t.elapsed()
    );
    println!("goroutines left: {}", gort_tests::settle(&rt));
}
