//! One million goroutines parked at once, under the default `vm.max_map_count`.
//! Heavy: ignored by default; `cargo xtask test` runs it in release, serially.
#![cfg(not(loom))]

use gort_tests::{park_many, runtime};

#[test]
#[ignore = "heavy: run in release by `cargo xtask test`"]
fn sched_one_million_parked_goroutines_fit() {
    let n = 1_000_000;
    let rt = runtime(2);
    let s = rt.block_on(move || park_many(n));
    eprintln!(
        "1M parked goroutines: {} bytes of RSS each, {} mappings, parked in {:?}",
        s.rss_per_goroutine, s.maps, s.parked_in
    );
    assert_eq!(s.started, n);
    assert_eq!(s.alive, n + 1);
    // The mapping count stays far below the default limit of 65530 (one VMA per 256 MiB slab
    // with guard regions).
    assert!(s.maps < 65_530, "{} mappings", s.maps);
    assert_eq!(gort_tests::settle(&rt), 0);
}
