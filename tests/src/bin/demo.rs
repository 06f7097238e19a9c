//! The scheduler showcase run by `cargo xtask demo`: spawning and joining goroutines, a
//! million goroutines alive at once, Go's concurrent prime sieve over channels, a goroutine
//! that never yields on GOMAXPROCS=1 (sysmon lends a spare P), stopping the world around
//! spinning goroutines, and a goroutine dump — with what it did and how long it took.

use gort_tests::{park_many, runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    let t = Instant::now();
    let s = rt.block_on(move || park_many(n));
    println!(
        "{} goroutines alive at once (started and parked in {:?}), \
         {} bytes of RSS per goroutine, {} memory mappings",
        s.alive, s.parked_in, s.rss_per_goroutine, s.maps
    );
    println!(
        "released and finished all of them in {:?} in total",
        t.elapsed()
    );
    println!("goroutines left: {}", gort_tests::settle(&rt));

    // 4. Go's concurrent prime sieve: a chain of goroutines joined by unbuffered channels.
    let t = Instant::now();
    let primes = rt.block_on(|| gort_tests::prime_sieve(1000));
    println!(
        "concurrent prime sieve: the first {} primes through a chain of {} goroutines, \
         the last {} ({:?})",
        primes.len(),
        primes.len() + 1,
        primes.last().copied().unwrap_or(0),
        t.elapsed()
    );
    drop(rt);

    // 5. A goroutine that never yields, on one P: sysmon lends a spare P, so a ticker keeps
    //    ticking; then the world is stopped around it (its thread suspended by signal).
    let rt = runtime(1);
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        rt.go(move || {
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
        .expect("runtime is up");
    }
    let worst = rt.block_on(|| {
        let mut worst = Duration::ZERO;
        let mut last = Instant::now();
        for _ in 0..20 {
            gort_sched::time::sleep(Duration::from_millis(5));
            worst = worst.max(last.elapsed().saturating_sub(Duration::from_millis(5)));
            last = Instant::now();
        }
        worst
    });
    let stats = rt.sysmon_stats();
    println!(
        "a goroutine spinning without yielding on GOMAXPROCS=1: a 5 ms ticker was at most \
         {worst:?} late ({} preempt requests, {} spare Ps lent by sysmon)",
        stats.preempt_requests, stats.spares_lent
    );
    let mut pauses: Vec<Duration> = (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(1));
            let t = Instant::now();
            rt.stop_the_world("demo").start();
            t.elapsed()
        })
        .collect();
    pauses.sort_unstable();
    println!(
        "stopped the world 100 times around it: stop-to-restart p50 {:?}, max {:?}",
        pauses[50], pauses[99]
    );
    stop.store(true, Ordering::Relaxed);

    // 6. A goroutine dump in Go's format: who waits where.
    let (tx, rx) = gort_sched::chan::<u8>(0);
    rt.go(move || {
        let _ = rx.recv();
    })
    .expect("runtime is up");
    let dump = rt.block_on(|| {
        gort_sched::time::sleep(Duration::from_millis(20));
        gort_sched::stack(true)
    });
    let headers: Vec<&str> = dump
        .lines()
        .filter(|l| l.starts_with("goroutine "))
        .collect();
    println!(
        "goroutine dump ({} goroutines): {}",
        headers.len(),
        headers.join(" ")
    );
    drop(tx);
}
