//! The scheduler showcase run by `cargo xtask demo`: spawning and joining goroutines, a
//! million goroutines alive at once, and Go's concurrent prime sieve over channels, with what
//! it did and how long it took.

use gort_tests::{park_many, runtime};
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
}
