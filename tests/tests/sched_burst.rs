//! After a burst of goroutines ends, idle Ms hand the memory back within seconds. The
//! million-goroutine test is heavy: ignored by default; `cargo xtask test` runs it in release,
//! serially.
#![cfg(not(loom))]

use gort_tests::{park_many, rss_bytes, runtime, settle};
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// Polls RSS until it is within `slack` of `before` or a generous deadline passes (release
/// takes a fraction of a second to a few seconds; a loaded machine may be slower). Returns
/// the last RSS and how long it waited.
fn wait_for_rss_within(before: usize, slack: usize) -> (usize, Duration) {
    let t = Instant::now();
    let deadline = t + Duration::from_secs(30);
    let mut after = rss_bytes();
    while after > before + slack && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        after = rss_bytes();
    }
    (after, t.elapsed())
}

#[test]
fn sched_memory_comes_back_after_a_small_burst() {
    let rt = runtime(2);
    rt.block_on(|| park_many(1000));
    assert_eq!(settle(&rt), 0);
    let before = rss_bytes();
    rt.block_on(|| park_many(30_000));
    let peak = rss_bytes();
    assert_eq!(settle(&rt), 0);
    let (after, _) = wait_for_rss_within(before, 24 * MIB);
    eprintln!(
        "RSS {} MiB before a 30k burst, {} MiB at its peak, {} MiB after",
        before / MIB,
        peak / MIB,
        after / MIB
    );
    assert!(after <= before + 24 * MIB, "still {} MiB", after / MIB);
}

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
    let (after, waited) = wait_for_rss_within(before, 64 * MIB);
    eprintln!(
        "RSS before the burst {} MiB, at its peak {} MiB, {} MiB after {:?} of idling",
        before / MIB,
        peak / MIB,
        after / MIB,
        waited
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
