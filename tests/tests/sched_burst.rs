//! After a burst of one million goroutines ends, idle Ms hand the memory back within seconds.
//! Heavy: ignored by default; `cargo xtask test` runs it in release, serially.
#![cfg(not(loom))]

use gort_tests::{park_many, rss_bytes, runtime, settle};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

#[test]
#[ignore = "heavy: run in release by cargo xtask test"]
fn sched_memory_comes_back_after_a_million_goroutine_burst() {
    let n = 1_000_000;
    let rt = runtime(2);
    // Warm up the runtime and the allocator with a small burst, so the baseline includes
    // what any program that ran goroutines keeps (threads, the working reserves).
    rt.block_on(|| park_many(10_000));
    assert_eq!(settle(&rt), 0);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_bytes();
    let s = rt.block_on(move || park_many(n));
    assert_eq!(s.started, n);
    let peak = rss_bytes();
    assert_eq!(settle(&rt), 0);
    // Poll generously: the release itself takes a few seconds; a loaded machine may be slower.
    let deadline = Instant::now() + Duration::from_secs(30);
    let t = Instant::now();
    let mut after = rss_bytes();
    while after > before + 64 * MIB && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = rss_bytes();
    }
    eprintln!(
        "RSS before the burst {} MiB, at its peak {} MiB, {} MiB after {:?} of idling",
        before / MIB,
        peak / MIB,
        after / MIB,
        t.elapsed()
    );
    assert!(
        after <= before + 64 * MIB,
        "RSS stayed at {} MiB after the burst, {} MiB before it",
        after / MIB,
        before / MIB
    );
    // The runtime still works, and reuses released stacks without trouble.
    let s = rt.block_on(|| park_many(100_000));
    assert_eq!(s.started, 100_000);
    assert_eq!(settle(&rt), 0);
}
