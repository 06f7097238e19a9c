//! One million goroutines parked at once, under the default `vm.max_map_count`.
//! Heavy: ignored by default; `cargo xtask test` runs it in release, serially.
#![cfg(not(loom))]

use gort_tests::{Gate, WaitGroup, map_count, rss_bytes, runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
#[ignore = "heavy: run in release by `cargo xtask test`"]
fn sched_one_million_parked_goroutines_fit() {
    let n = 1_000_000;
    let rt = runtime(2);
    let (rss_per, maps) = rt.block_on(move || {
        let gate = Arc::new(Gate::default());
        let wg = Arc::new(WaitGroup::new(n));
        let started_wg = Arc::new(WaitGroup::new(n));
        let started = Arc::new(AtomicUsize::new(0));
        let before = rss_bytes();
        for _ in 0..n {
            let (gate, wg, started, started_wg) = (
                gate.clone(),
                wg.clone(),
                started.clone(),
                started_wg.clone(),
            );
            gort_sched::go(move || {
                started.fetch_add(1, Ordering::Relaxed);
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
        assert_eq!(gort_sched::num_goroutine(), n + 1);
        let rss_per = (rss_bytes() - before) / n;
        let maps = map_count();
        gate.open();
        wg.wait();
        assert_eq!(started.load(Ordering::Relaxed), n);
        (rss_per, maps)
    });
    eprintln!("1M parked goroutines: {rss_per} bytes of RSS each, {maps} mappings");
    // The mapping count stays far below the default limit of 65530 (one VMA per 256 MiB slab
    // with guard regions).
    assert!(maps < 65_530, "{maps} mappings");
    assert_eq!(gort_tests::settle(&rt), 0);
}
