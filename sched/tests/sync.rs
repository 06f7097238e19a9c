//! `sync`: Mutex (with starvation mode), RwLock, WaitGroup, Once, Cond, Semaphore — between
//! goroutines, threads, and both.
#![cfg(not(loom))]

mod common;

use common::runtime;
use gort_sched::sync::{Cond, Mutex, Once, RwLock, Semaphore, WaitGroup};
use gort_sched::time::sleep;
use gort_sched::{go, spawn};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[test]
fn mutex_counts_exactly_across_goroutines_and_threads() {
    for procs in [1, 2] {
        let rt = runtime(procs);
        let m = Arc::new(Mutex::new(0u64));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let m = m.clone();
                rt.spawn(move || {
                    for i in 0..5_000 {
                        *m.lock() += 1;
                        if i % 100 == 0 {
                            gort_sched::gosched();
                        }
                    }
                })
                .unwrap()
            })
            .collect();
        let ths: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..5_000 {
                        *m.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        for t in ths {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 50_000, "procs {procs}");
        assert!(m.try_lock().is_some());
    }
}

#[test]
fn mutex_starvation_mode_lets_a_waiter_in_against_a_hog() {
    // Go's TestMutexFairness: one goroutine re-locks in a tight loop, holding the lock for
    // a while each time; another must still get it ten times.
    let rt = runtime(2);
    let took = rt.block_on(|| {
        let m = Arc::new(Mutex::new(()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m2, s2) = (m.clone(), stop.clone());
        go(move || {
            while !s2.load(Ordering::Relaxed) {
                let _g = m2.lock();
                std::thread::sleep(Duration::from_micros(100));
            }
        });
        let start = Instant::now();
        let h = spawn(move || {
            for _ in 0..10 {
                std::thread::sleep(Duration::from_micros(100));
                drop(m.lock());
            }
        });
        h.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        start.elapsed()
    });
    assert!(
        took < Duration::from_secs(10),
        "the waiter starved for {took:?}"
    );
}

#[test]
fn rwlock_readers_share_writers_exclude_and_are_not_starved() {
    let rt = runtime(2);
    rt.block_on(|| {
        let l = Arc::new(RwLock::new(0u32));
        // Two readers inside at once.
        let r1 = l.read();
        let r2 = l.read();
        assert_eq!(*r1 + *r2, 0);
        drop((r1, r2));
        // A stream of readers does not keep a writer out forever.
        let inside = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for _ in 0..4 {
            let (l, inside, stop) = (l.clone(), inside.clone(), stop.clone());
            go(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = l.read();
                    inside.fetch_add(1, Ordering::SeqCst);
                    sleep(Duration::from_micros(200));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(g);
                }
            });
        }
        for _ in 0..20 {
            let mut w = l.write();
            assert_eq!(
                inside.load(Ordering::SeqCst),
                0,
                "a reader inside with the writer"
            );
            *w += 1;
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(*l.read(), 20);
    });
}

#[test]
fn waitgroup_waits_for_every_goroutine_and_thread() {
    let rt = runtime(2);
    let wg = Arc::new(WaitGroup::new());
    let n = Arc::new(AtomicUsize::new(0));
    wg.add(1002);
    for _ in 0..1000 {
        let (wg, n) = (wg.clone(), n.clone());
        rt.go(move || {
            n.fetch_add(1, Ordering::Relaxed);
            wg.done();
        })
        .unwrap();
    }
    for _ in 0..2 {
        let (wg, n) = (wg.clone(), n.clone());
        std::thread::spawn(move || {
            n.fetch_add(1, Ordering::Relaxed);
            wg.done();
        });
    }
    // One waiter is a goroutine, one the test thread.
    let wg2 = wg.clone();
    let g = rt.spawn(move || wg2.wait()).unwrap();
    wg.wait();
    g.join().unwrap();
    assert_eq!(n.load(Ordering::Relaxed), 1002);
    // Reusable once the wait returned.
    wg.add(1);
    wg.done();
    wg.wait();
}

#[test]
#[should_panic(expected = "sync: negative WaitGroup counter")]
fn waitgroup_negative_counter_panics() {
    WaitGroup::new().done();
}

#[test]
fn once_runs_exactly_once_and_everyone_waits_for_it() {
    let rt = runtime(2);
    let once = Arc::new(Once::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..100)
        .map(|_| {
            let (once, runs) = (once.clone(), runs.clone());
            rt.spawn(move || {
                once.call_once(|| {
                    sleep(Duration::from_millis(10));
                    runs.fetch_add(1, Ordering::SeqCst);
                });
                // Every caller returns after the one run finished.
                runs.load(Ordering::SeqCst)
            })
            .unwrap()
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), 1);
    }
    assert!(once.is_done());
}

#[test]
fn cond_signal_and_broadcast() {
    let rt = runtime(2);
    let pair = Arc::new((Mutex::new(0u32), Cond::new()));
    let hs: Vec<_> = (0..10)
        .map(|_| {
            let pair = pair.clone();
            rt.spawn(move || {
                let (m, c) = &*pair;
                let mut g = m.lock();
                while *g == 0 {
                    g = c.wait(g);
                }
                *g
            })
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    {
        let (m, c) = &*pair;
        *m.lock() = 7;
        c.signal();
        c.broadcast();
    }
    for h in hs {
        assert_eq!(h.join().unwrap(), 7);
    }
}

#[test]
fn semaphore_bounds_concurrency() {
    let rt = runtime(2);
    let sem = Arc::new(Semaphore::new(3));
    let inside = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..50)
        .map(|_| {
            let (sem, inside, max) = (sem.clone(), inside.clone(), max.clone());
            rt.spawn(move || {
                sem.acquire();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                sleep(Duration::from_millis(1));
                inside.fetch_sub(1, Ordering::SeqCst);
                sem.release();
            })
            .unwrap()
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(max.load(Ordering::SeqCst) <= 3);
    assert_eq!(sem.available(), 3);
    assert!(sem.try_acquire());
}
