//! Heavy channel tests: a million goroutines blocked on one channel, released by one close;
//! a pipeline of 1000 stages carrying 1000 values (a million hand-offs); the prime sieve.
//! Ignored by default; `cargo xtask test` runs them in release, serially.
#![cfg(not(loom))]

use gort_sched::chan::RecvError;
use gort_sched::sync::WaitGroup;
use gort_sched::{chan, go};
use gort_tests::runtime;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
#[ignore = "heavy: run in release by `cargo xtask test`"]
fn sched_chan_one_million_receivers_released_by_one_close() {
    let n = 1_000_000;
    let rt = runtime(2);
    let released = rt.block_on(move || {
        let (tx, rx) = chan::<()>(0);
        let started = Arc::new(WaitGroup::new());
        let finished = Arc::new(WaitGroup::new());
        let ok = Arc::new(AtomicUsize::new(0));
        started.add(n as i32);
        finished.add(n as i32);
        for _ in 0..n {
            let (rx, started, finished, ok) =
                (rx.clone(), started.clone(), finished.clone(), ok.clone());
            go(move || {
                started.done();
                if rx.recv() == Err(RecvError) {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
                finished.done();
            });
        }
        started.wait();
        tx.close().unwrap();
        finished.wait();
        ok.load(Ordering::Relaxed)
    });
    assert_eq!(released, n);
    assert_eq!(gort_tests::settle(&rt), 0);
}

#[test]
#[ignore = "heavy: run in release by `cargo xtask test`"]
fn sched_chan_pipeline_of_1000_stages_carries_1000_values() {
    let rt = runtime(2);
    let sum = rt.block_on(|| {
        let (first_tx, mut rx) = chan::<u64>(0);
        for _ in 0..1000 {
            let (tx, next_rx) = chan::<u64>(0);
            let input = rx;
            go(move || {
                for v in input.iter() {
                    tx.send(v + 1).unwrap();
                }
            });
            rx = next_rx;
        }
        go(move || {
            for v in 0..1000 {
                first_tx.send(v).unwrap();
            }
        });
        rx.iter().sum::<u64>()
    });
    // Each value gained one per stage.
    assert_eq!(sum, (0..1000u64).map(|v| v + 1000).sum::<u64>());
}

#[test]
#[ignore = "heavy: run in release by `cargo xtask test`"]
fn sched_chan_prime_sieve_finds_the_first_5000_primes() {
    let rt = runtime(2);
    let primes = rt.block_on(|| gort_tests::prime_sieve(5000));
    assert_eq!(primes.len(), 5000);
    assert_eq!(primes[..5], [2, 3, 5, 7, 11]);
    assert_eq!(primes[4999], 48611);
}
