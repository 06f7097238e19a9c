//! Scheduler stress: readiers on foreign threads, GOMAXPROCS churn, many runtimes at once.
#![cfg(not(loom))]

use gort_tests::{WaitGroup, runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[test]
fn sched_foreign_threads_ready_parked_goroutines() {
    let rt = runtime(2);
    let n = 2000;
    let handles = Arc::new(std::sync::Mutex::new(Vec::new()));
    let flags: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    let wg = Arc::new(WaitGroup::new(n));
    let registered = Arc::new(AtomicUsize::new(0));
    for i in 0..n {
        let (handles, flags, wg, registered) = (
            handles.clone(),
            flags.clone(),
            wg.clone(),
            registered.clone(),
        );
        rt.go(move || {
            handles
                .lock()
                .unwrap()
                .push((i, gort_sched::current().unwrap()));
            registered.fetch_add(1, Ordering::SeqCst);
            while !flags[i].load(Ordering::SeqCst) {
                gort_sched::park();
            }
            wg.done();
        })
        .unwrap();
    }
    while registered.load(Ordering::SeqCst) < n {
        std::thread::yield_now();
    }
    let all: Vec<_> = std::mem::take(&mut *handles.lock().unwrap());
    let chunks: Vec<Vec<_>> = all.chunks(n / 4).map(|c| c.to_vec()).collect();
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let flags = flags.clone();
            std::thread::spawn(move || {
                for (i, g) in chunk {
                    flags[i].store(true, Ordering::SeqCst);
                    g.ready();
                    g.ready(); // a second token is harmless
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let wg2 = wg.clone();
    rt.block_on(move || wg2.wait());
    assert_eq!(gort_tests::settle(&rt), 0);
}

#[test]
fn sched_gomaxprocs_churn_loses_no_goroutine() {
    let rt = runtime(2);
    let done = Arc::new(AtomicUsize::new(0));
    let d = done.clone();
    rt.block_on(move || {
        let n = 20_000;
        let wg = Arc::new(WaitGroup::new(n));
        for i in 0..n {
            let (wg, d) = (wg.clone(), d.clone());
            gort_sched::go(move || {
                for _ in 0..(i % 3) {
                    gort_sched::gosched();
                }
                d.fetch_add(1, Ordering::SeqCst);
                wg.done();
            });
            if i % 2000 == 0 {
                gort_sched::gomaxprocs(1 + (i / 2000) % 4);
            }
        }
        wg.wait();
    });
    assert_eq!(done.load(Ordering::SeqCst), 20_000);
}

#[test]
fn sched_independent_runtimes_in_parallel() {
    let threads: Vec<_> = (0..4)
        .map(|k| {
            std::thread::spawn(move || {
                let rt = runtime(1 + k % 2);
                rt.block_on(move || {
                    let hs: Vec<_> = (0..500u64)
                        .map(|i| gort_sched::spawn(move || i + k as u64))
                        .collect();
                    hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
                })
            })
        })
        .collect();
    for (k, t) in threads.into_iter().enumerate() {
        assert_eq!(t.join().unwrap(), (0..500u64).sum::<u64>() + 500 * k as u64);
    }
}
