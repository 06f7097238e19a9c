//! Scheduler benchmarks (spawn, switch, parked memory, parked start, memory after a burst)
//! for gort and tokio; JSON lines out.
//!
//! Run by `cargo xtask bench`; `--quick` scales every workload down for a smoke run, and
//! `--only NAME` (spawn, switch, parked, parked-start, burst-rss-after) runs one workload.

use gort_sched::{Builder, Goroutine, Runtime, go, gosched, park};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn emit(bench: &str, implementation: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"{implementation}\",\"value\":{value:.3},\"unit\":\"{unit}\"}}"
    );
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory-safety preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

fn gort(procs: usize) -> Runtime {
    // SAFETY: the benchmark goroutines hold no thread-bound values across scheduling points.
    unsafe { Builder::new().gomaxprocs(procs).build() }.expect("valid configuration")
}

/// A wait group on park/ready: `done` readies the waiter when the count reaches zero.
struct WaitGroup {
    count: AtomicUsize,
    waiter: Mutex<Option<Goroutine>>,
}

impl WaitGroup {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(WaitGroup {
            count: AtomicUsize::new(n),
            waiter: Mutex::new(None),
        })
    }
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(w) = self.waiter.lock().unwrap().as_ref()
        {
            w.ready();
        }
    }
    fn wait(&self) {
        *self.waiter.lock().unwrap() = gort_sched::current();
        while self.count.load(Ordering::Acquire) != 0 {
            park();
        }
    }
}

fn gort_spawn(n: usize) -> f64 {
    let rt = gort(2);
    rt.block_on(move || {
        let wg = WaitGroup::new(n);
        let t = Instant::now();
        for _ in 0..n {
            let wg = wg.clone();
            go(move || wg.done());
        }
        wg.wait();
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

fn gort_switch(n: usize) -> f64 {
    let rt = gort(1);
    rt.block_on(move || {
        let t = Instant::now();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                gort_sched::spawn(move || {
                    for _ in 0..n {
                        gosched();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        t.elapsed().as_nanos() as f64 / (2 * n) as f64
    })
}

/// What a burst of parked goroutines cost.
struct Burst {
    /// Nanoseconds per goroutine until every one had started (and registered to be woken).
    start_ns: f64,
    /// RSS growth per goroutine at that moment, in bytes.
    rss_per: f64,
}

/// Starts `n` goroutines that each register to be woken, report started and park; measures,
/// then wakes them all and waits for them to exit. Go's twin: `go func() { wg.Done(); <-ch }()`
/// in a loop.
fn gort_park_burst(rt: &Runtime, n: usize) -> Burst {
    rt.block_on(move || {
        let waiters: Arc<Mutex<Vec<Goroutine>>> = Arc::new(Mutex::new(Vec::with_capacity(n)));
        let released = Arc::new(AtomicBool::new(false));
        let (started, finished) = (WaitGroup::new(n), WaitGroup::new(n));
        let before = rss_bytes();
        let t = Instant::now();
        for _ in 0..n {
            let (waiters, released, started, finished) = (
                waiters.clone(),
                released.clone(),
                started.clone(),
                finished.clone(),
            );
            go(move || {
                waiters.lock().unwrap().push(gort_sched::current().unwrap());
                started.done();
                while !released.load(Ordering::Acquire) {
                    park();
                }
                finished.done();
            });
        }
        started.wait();
        let burst = Burst {
            start_ns: t.elapsed().as_nanos() as f64 / n as f64,
            rss_per: rss_bytes().saturating_sub(before) as f64 / n as f64,
        };
        released.store(true, Ordering::Release);
        for w in waiters.lock().unwrap().drain(..) {
            w.ready();
        }
        finished.wait();
        burst
    })
}

/// RSS in MiB after a burst of `n` goroutines that park and are then released and exit,
/// followed by `idle_ms` of idling (the program does nothing; the runtime may give memory
/// back meanwhile).
fn gort_burst_rss_after(n: usize, idle_ms: u64) -> f64 {
    let rt = gort(2);
    gort_park_burst(&rt, n);
    while rt.num_goroutine() != 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(idle_ms));
    let mib = rss_bytes() as f64 / (1 << 20) as f64;
    drop(rt);
    mib
}

fn tokio_spawn(n: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let count = Arc::new(AtomicUsize::new(n));
        let notify = Arc::new(tokio::sync::Notify::new());
        let t = Instant::now();
        for _ in 0..n {
            let (count, notify) = (count.clone(), notify.clone());
            tokio::spawn(async move {
                if count.fetch_sub(1, Ordering::AcqRel) == 1 {
                    notify.notify_one();
                }
            });
        }
        notify.notified().await;
        t.elapsed().as_nanos() as f64 / n as f64
    })
}

fn tokio_switch(n: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move {
        let t = Instant::now();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn(async move {
                    for _ in 0..n {
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for h in hs {
            h.await.unwrap();
        }
        t.elapsed().as_nanos() as f64 / (2 * n) as f64
    })
}

fn tokio_parked(n: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let parked = Arc::new(AtomicUsize::new(0));
        let before = rss_bytes();
        let mut hs = Vec::with_capacity(n);
        for _ in 0..n {
            let mut rx = rx.clone();
            let parked = parked.clone();
            hs.push(tokio::spawn(async move {
                parked.fetch_add(1, Ordering::AcqRel);
                let _ = rx.wait_for(|v| *v).await;
            }));
        }
        while parked.load(Ordering::Acquire) < n {
            tokio::task::yield_now().await;
        }
        let per = (rss_bytes().saturating_sub(before)) as f64 / n as f64;
        tx.send(true).unwrap();
        for h in hs {
            h.await.unwrap();
        }
        per
    })
}

/// Runs a memory or start-up workload (`parked`, `parked-start`, `burst`) in a fresh process,
/// so that memory freed by an earlier workload (and kept by the allocator), or stacks it left
/// warm, do not skew this one.
fn in_child(workload: &str, implementation: &str, n: usize) -> f64 {
    let out = std::process::Command::new(std::env::current_exe().expect("own path"))
        .args(["--child", workload, implementation, &n.to_string()])
        .output()
        .expect("cannot re-run the benchmark program");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{workload} child failed: {text} {:?}", out.status))
}

/// Idle time after a burst before RSS is read: a short idle, as a program between phases.
const BURST_IDLE_MS: u64 = 2500;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let n: usize = args[i + 3].parse().expect("count");
        let v = match (args[i + 1].as_str(), args[i + 2].as_str()) {
            ("parked", "gort") => gort_park_burst(&gort(2), n).rss_per,
            ("parked", _) => tokio_parked(n),
            ("parked-start", _) => gort_park_burst(&gort(2), n).start_ns,
            ("burst", _) => gort_burst_rss_after(n, BURST_IDLE_MS),
            (w, _) => panic!("unknown child workload `{w}`: use parked, parked-start or burst"),
        };
        println!("{v}");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args[i + 1].clone());
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let n_spawn = if quick { 100_000 } else { 1_000_000 };
    let n_switch = if quick { 100_000 } else { 2_000_000 };
    let n_parked = if quick { 100_000 } else { 1_000_000 };

    if want("spawn") {
        emit("sched/spawn", "gort", gort_spawn(n_spawn), "ns/goroutine");
        emit("sched/spawn", "tokio", tokio_spawn(n_spawn), "ns/goroutine");
    }
    if want("switch") {
        emit("sched/switch", "gort", gort_switch(n_switch), "ns/switch");
        emit("sched/switch", "tokio", tokio_switch(n_switch), "ns/switch");
    }
    if want("parked") {
        emit(
            "sched/parked",
            "gort",
            in_child("parked", "gort", n_parked),
            "bytes/goroutine",
        );
        emit(
            "sched/parked",
            "tokio",
            in_child("parked", "tokio", n_parked),
            "bytes/goroutine",
        );
    }
    if want("parked-start") {
        emit(
            "sched/parked-start",
            "gort",
            in_child("parked-start", "gort", n_parked),
            "ns/goroutine",
        );
    }
    if want("burst-rss-after") {
        emit(
            "sched/burst-rss-after",
            "gort",
            in_child("burst", "gort", n_parked),
            "MiB",
        );
    }
}
