//! Channel, select, timer and mutex benchmarks for gort, tokio, crossbeam-channel and std;
//! JSON lines out. Run by `cargo xtask bench`; `--quick` scales every workload down, and
//! `--only NAME` runs one (pingpong, buffered, sieve, sleep, mutex); `--gort-only` skips
//! tokio's sieve. For profiling, `SIEVE_PROCS` and `SIEVE_N` override gort's sieve's
//! GOMAXPROCS (2) and number of primes.

use gort_sched::chan::{Receiver, Sender};
use gort_sched::sync::{Mutex, WaitGroup};
use gort_sched::{Builder, Runtime, chan, go, gosched};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn emit(bench: &str, implementation: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"{implementation}\",\"value\":{value:.3},\"unit\":\"{unit}\"}}"
    );
}

fn gort(procs: usize) -> Runtime {
    // SAFETY: the benchmark goroutines hold no thread-bound values across scheduling points.
    unsafe { Builder::new().gomaxprocs(procs).build() }.expect("valid configuration")
}

fn tokio_rt(workers: usize) -> tokio::runtime::Runtime {
    if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_time()
            .build()
            .unwrap()
    }
}

// ---- ping-pong: two parties bounce a value over two unbuffered channels ----

fn gort_pingpong(procs: usize, n: usize) -> f64 {
    gort(procs).block_on(move || {
        let (ping_tx, ping_rx) = chan::<u32>(0);
        let (pong_tx, pong_rx) = chan::<u32>(0);
        go(move || {
            for v in ping_rx.iter() {
                pong_tx.send(v).unwrap();
            }
        });
        let t = Instant::now();
        for i in 0..n as u32 {
            ping_tx.send(i).unwrap();
            pong_rx.recv().unwrap();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

fn tokio_pingpong(workers: usize, n: usize) -> f64 {
    tokio_rt(workers).block_on(async move {
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u32>(1);
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u32>(1);
        tokio::spawn(async move {
            while let Some(v) = ping_rx.recv().await {
                pong_tx.send(v).await.unwrap();
            }
        });
        let t = Instant::now();
        for i in 0..n as u32 {
            ping_tx.send(i).await.unwrap();
            pong_rx.recv().await.unwrap();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

fn crossbeam_pingpong(n: usize) -> f64 {
    let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u32>(0);
    let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u32>(0);
    let h = std::thread::spawn(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v).unwrap();
        }
    });
    let t = Instant::now();
    for i in 0..n as u32 {
        ping_tx.send(i).unwrap();
        pong_rx.recv().unwrap();
    }
    let per = t.elapsed().as_nanos() as f64 / n as f64;
    drop(ping_tx);
    h.join().unwrap();
    per
}

// ---- buffered throughput: 2 producers, 2 consumers, capacity 128 ----

const PAIRS: usize = 2;
const BUF: usize = 128;

fn gort_buffered(n: usize) -> f64 {
    gort(2).block_on(move || {
        let (tx, rx) = chan::<u64>(BUF);
        let wg = Arc::new(WaitGroup::new());
        wg.add(2 * PAIRS as i32);
        let t = Instant::now();
        for _ in 0..PAIRS {
            let (tx, pwg) = (tx.clone(), wg.clone());
            go(move || {
                for i in 0..(n / PAIRS) as u64 {
                    tx.send(i).unwrap();
                }
                pwg.done();
            });
            let (rx, cwg) = (rx.clone(), wg.clone());
            go(move || {
                for _ in rx.iter() {}
                cwg.done();
            });
        }
        drop((tx, rx));
        wg.wait();
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

fn tokio_buffered(n: usize) -> f64 {
    tokio_rt(2).block_on(async move {
        let (tx, rx) = async_channel_pair(BUF);
        let t = Instant::now();
        let mut hs = Vec::new();
        for _ in 0..PAIRS {
            let tx = tx.clone();
            hs.push(tokio::spawn(async move {
                for i in 0..(n / PAIRS) as u64 {
                    tx.send(i).await.unwrap();
                }
            }));
            let rx = rx.clone();
            hs.push(tokio::spawn(async move {
                while rx.lock().await.recv().await.is_some() {}
            }));
        }
        drop((tx, rx));
        for h in hs {
            h.await.unwrap();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

/// tokio's mpsc has one receiver: several consumers share it behind a tokio mutex (what a
/// user does without an mpmc channel).
fn async_channel_pair(
    cap: usize,
) -> (
    tokio::sync::mpsc::Sender<u64>,
    Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<u64>>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(cap);
    (tx, Arc::new(tokio::sync::Mutex::new(rx)))
}

fn crossbeam_buffered(n: usize) -> f64 {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(BUF);
    let t = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..PAIRS {
        let tx = tx.clone();
        hs.push(std::thread::spawn(move || {
            for i in 0..(n / PAIRS) as u64 {
                tx.send(i).unwrap();
            }
        }));
        let rx = rx.clone();
        hs.push(std::thread::spawn(move || for _ in rx.iter() {}));
    }
    drop((tx, rx));
    for h in hs {
        h.join().unwrap();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

// ---- Go's concurrent prime sieve: the first `n` primes, ms ----

fn gort_sieve(n: usize) -> f64 {
    let procs = std::env::var("SIEVE_PROCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    gort(procs).block_on(move || {
        let t = Instant::now();
        let (tx, mut rx): (Sender<u64>, Receiver<u64>) = chan(0);
        go(move || {
            let mut i = 2;
            while tx.send(i).is_ok() {
                i += 1;
            }
        });
        for _ in 0..n {
            let prime = rx.recv().unwrap();
            let (next_tx, next_rx) = chan(0);
            let input = rx;
            go(move || {
                for v in input.iter() {
                    if v % prime != 0 && next_tx.send(v).is_err() {
                        return;
                    }
                }
            });
            rx = next_rx;
        }
        t.elapsed().as_secs_f64() * 1e3
        // Dropping the last receiver unwinds the chain: each filter's send fails in turn.
    })
}

fn tokio_sieve(n: usize) -> f64 {
    tokio_rt(2).block_on(async move {
        let t = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1);
        tokio::spawn(async move {
            let mut i = 2;
            while tx.send(i).await.is_ok() {
                i += 1;
            }
        });
        for _ in 0..n {
            let prime = rx.recv().await.unwrap();
            let (next_tx, next_rx) = tokio::sync::mpsc::channel(1);
            let mut input = rx;
            tokio::spawn(async move {
                while let Some(v) = input.recv().await {
                    if v % prime != 0 && next_tx.send(v).await.is_err() {
                        return;
                    }
                }
            });
            rx = next_rx;
        }
        t.elapsed().as_secs_f64() * 1e3
    })
}

// ---- sleep(1 ms) overshoot under load, µs (p50 and p99) ----

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn gort_sleep(sleepers: usize, rounds: usize) -> (f64, f64) {
    let rt = gort(2);
    let stop = Arc::new(AtomicBool::new(false));
    for _ in 0..2 {
        let stop = stop.clone();
        rt.go(move || {
            while !stop.load(Ordering::Relaxed) {
                gosched();
            }
        })
        .unwrap();
    }
    let all = rt.block_on(move || {
        let hs: Vec<_> = (0..sleepers)
            .map(|_| {
                gort_sched::spawn(move || {
                    (0..rounds)
                        .map(|_| {
                            let t = Instant::now();
                            gort_sched::time::sleep(Duration::from_millis(1));
                            (t.elapsed().as_nanos() as f64 - 1e6) / 1e3
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    stop.store(true, Ordering::Relaxed);
    let mut all = all;
    (percentile(&mut all, 0.5), percentile(&mut all, 0.99))
}

fn tokio_sleep(sleepers: usize, rounds: usize) -> (f64, f64) {
    let rt = tokio_rt(2);
    let stop = Arc::new(AtomicBool::new(false));
    let mut all = rt.block_on(async {
        for _ in 0..2 {
            let stop = stop.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                }
            });
        }
        let hs: Vec<_> = (0..sleepers)
            .map(|_| {
                tokio::spawn(async move {
                    let mut v = Vec::with_capacity(rounds);
                    for _ in 0..rounds {
                        let t = Instant::now();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        v.push((t.elapsed().as_nanos() as f64 - 1e6) / 1e3);
                    }
                    v
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in hs {
            all.extend(h.await.unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        all
    });
    (percentile(&mut all, 0.5), percentile(&mut all, 0.99))
}

// ---- contended mutex: 4 parties on 2 Ps/threads, ns per lock+unlock ----

const LOCKERS: usize = 4;

fn gort_mutex(n: usize) -> f64 {
    gort(2).block_on(move || {
        let m = Arc::new(Mutex::new(0u64));
        let wg = Arc::new(WaitGroup::new());
        wg.add(LOCKERS as i32);
        let t = Instant::now();
        for _ in 0..LOCKERS {
            let (m, wg) = (m.clone(), wg.clone());
            go(move || {
                for _ in 0..n / LOCKERS {
                    *m.lock() += 1;
                }
                wg.done();
            });
        }
        wg.wait();
        assert_eq!(*m.lock(), (n / LOCKERS * LOCKERS) as u64);
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

fn tokio_mutex(n: usize) -> f64 {
    tokio_rt(2).block_on(async move {
        let m = Arc::new(tokio::sync::Mutex::new(0u64));
        let t = Instant::now();
        let hs: Vec<_> = (0..LOCKERS)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move {
                    for _ in 0..n / LOCKERS {
                        *m.lock().await += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

fn std_mutex(n: usize) -> f64 {
    let m = Arc::new(std::sync::Mutex::new(0u64));
    let t = Instant::now();
    let hs: Vec<_> = (0..LOCKERS)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..n / LOCKERS {
                    *m.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // Skips the peers' sieve (for profiling gort's alone).
    let gort_only = args.iter().any(|a| a == "--gort-only");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].clone());
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let scale = |full: usize| if quick { full / 20 } else { full };

    if want("pingpong") {
        let n = scale(200_000);
        emit(
            "sched/pingpong/1p",
            "gort",
            gort_pingpong(1, n),
            "ns/roundtrip",
        );
        emit(
            "sched/pingpong/1p",
            "tokio",
            tokio_pingpong(1, n),
            "ns/roundtrip",
        );
        emit(
            "sched/pingpong/2p",
            "gort",
            gort_pingpong(2, n),
            "ns/roundtrip",
        );
        emit(
            "sched/pingpong/2p",
            "tokio",
            tokio_pingpong(2, n),
            "ns/roundtrip",
        );
        emit(
            "sched/pingpong/2p",
            "crossbeam",
            crossbeam_pingpong(n),
            "ns/roundtrip",
        );
    }
    if want("buffered") {
        let n = scale(2_000_000);
        emit("sched/buffered", "gort", gort_buffered(n), "ns/value");
        emit("sched/buffered", "tokio", tokio_buffered(n), "ns/value");
        emit(
            "sched/buffered",
            "crossbeam",
            crossbeam_buffered(n),
            "ns/value",
        );
    }
    if want("sieve") {
        let n = if quick { 500 } else { 5000 };
        let n = std::env::var("SIEVE_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n);
        emit("sched/sieve", "gort", gort_sieve(n), "ms");
        if !gort_only {
            emit("sched/sieve", "tokio", tokio_sieve(n), "ms");
        }
    }
    if want("sleep") {
        let (sleepers, rounds) = if quick { (20, 10) } else { (100, 50) };
        let (p50, p99) = gort_sleep(sleepers, rounds);
        emit("sched/sleep-overshoot-p50", "gort", p50, "us");
        emit("sched/sleep-overshoot-p99", "gort", p99, "us");
        let (p50, p99) = tokio_sleep(sleepers, rounds);
        emit("sched/sleep-overshoot-p50", "tokio", p50, "us");
        emit("sched/sleep-overshoot-p99", "tokio", p99, "us");
    }
    if want("mutex") {
        let n = scale(2_000_000);
        emit("sched/mutex", "gort", gort_mutex(n), "ns/lock");
        emit("sched/mutex", "tokio", tokio_mutex(n), "ns/lock");
        emit("sched/mutex", "std", std_mutex(n), "ns/lock");
    }
}
