//! After a burst of goroutines ends, idle Ms hand the memory back within seconds. The
//! million-goroutine test is heavy: ignored by default; `cargo xtask test` runs it in release,
//! serially.
#![cfg(not(loom))]

use gort_sched::Runtime;
use gort_tests::{park_many, rss_bytes, runtime, settle};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// After a warm-up burst of `warm` goroutines (so the baseline includes what any program
/// that ran goroutines keeps: threads, working reserves), runs a burst of `n` goroutines that
/// park at once, then polls RSS until it is within `slack` of the baseline or a generous 30 s
/// pass (release takes a fraction of a second to a few seconds; a loaded machine is slower).
/// Prints and checks the figures.
fn burst_then_idle(rt: &Runtime, warm: usize, n: usize, slack: usize) {
    rt.block_on(move || park_many(warm));
    assert_eq!(settle(rt), 0);
    // Let the warm-up's own excess go first (two 100 ms ageing periods and the steps).
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_bytes();
    let s = rt.block_on(move || park_many(n));
    assert_eq!(s.started, n);
    let peak = rss_bytes();
    assert_eq!(settle(rt), 0);
    let t = Instant::now();
    let mut after = rss_bytes();
    while after > before + slack && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
        after = rss_bytes();
    }
    eprintln!(
        "RSS {} MiB before a burst of {n}, {} MiB at its peak, {} MiB after {:?} of idling",
        before / MIB,
        peak / MIB,
        after / MIB,
        t.elapsed()
    );
    assert!(
        after <= before + slack,
        "RSS stayed at {} MiB after the burst, {} MiB before it",
        after / MIB,
        before / MIB
    );
}

#[test]
fn sched_memory_comes_back_after_a_small_burst() {
    burst_then_idle(&runtime(2), 1000, 30_000, 24 * MIB);
}

#[test]
#[ignore = "heavy: run in release by cargo xtask test"]
fn sched_memory_comes_back_after_a_million_goroutine_burst() {
    let rt = runtime(2);
    burst_then_idle(&rt, 10_000, 1_000_000, 64 * MIB);
    // The runtime still works, and reuses released stacks without trouble.
    let s = rt.block_on(|| park_many(100_000));
    assert_eq!(s.started, 100_000);
    assert_eq!(settle(&rt), 0);
}
