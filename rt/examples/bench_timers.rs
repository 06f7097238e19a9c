//! Timer storm: 100k goroutines (tokio: tasks), each sleeping 1 ms in a loop for 2 s.
//! Prints wake-ups per second and the p99 overshoot of a sleep past its 1 ms (µs) as JSON
//! lines; `rt/bench-go/timers.go` is Go's side. `--quick`: 10k for 0.3 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SLEEP: Duration = Duration::from_millis(1);
/// Overshoot histogram: 10 µs buckets up to 2 s (the last bucket takes the rest). With 100k
/// sleepers the machine, not the timer, sets the overshoot: tens of milliseconds.
const BUCKETS: usize = 200_000;
const BUCKET_US: usize = 10;

fn emit(bench: &str, implementation: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"{implementation}\",\"value\":{value:.3},\"unit\":\"{unit}\"}}"
    );
}

struct Hist(Vec<AtomicU64>);

impl Hist {
    fn new() -> Hist {
        Hist((0..BUCKETS).map(|_| AtomicU64::new(0)).collect())
    }

    fn record(&self, slept: Duration) {
        let us = slept.saturating_sub(SLEEP).as_micros() as usize / BUCKET_US;
        self.0[us.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// (samples, p99 in µs).
    fn p99(&self) -> (u64, f64) {
        let total: u64 = self.0.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        let want = total * 99 / 100;
        let mut seen = 0;
        for (us, b) in self.0.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen > want {
                return (total, (us * BUCKET_US) as f64);
            }
        }
        (total, (BUCKETS * BUCKET_US) as f64)
    }
}

fn gort_timers(n: usize, run: Duration) -> (f64, f64) {
    // SAFETY: the benchmark goroutines hold no thread-bound values across calls that park.
    let rt = unsafe { gort::Builder::new().build() }.expect("valid configuration");
    let hist = Arc::new(Hist::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (hist.clone(), stop.clone());
    let elapsed = rt.block_on(move || {
        let wg = Arc::new(gort::sync::WaitGroup::new());
        wg.add(n as i32);
        let t = Instant::now();
        for _ in 0..n {
            let (h, s, wg) = (h.clone(), s.clone(), wg.clone());
            gort::go(move || {
                while !s.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    gort::time::sleep(SLEEP);
                    h.record(t.elapsed());
                }
                wg.done();
            });
        }
        gort::time::sleep(run);
        s.store(true, Ordering::Relaxed);
        let elapsed = t.elapsed();
        wg.wait();
        elapsed
    });
    let (total, p99) = hist.p99();
    (total as f64 / elapsed.as_secs_f64(), p99)
}

fn tokio_timers(n: usize, run: Duration) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let hist = Arc::new(Hist::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (h, s) = (hist.clone(), stop.clone());
    let elapsed = rt.block_on(async move {
        let t = Instant::now();
        let mut hs = Vec::with_capacity(n);
        for _ in 0..n {
            let (h, s) = (h.clone(), s.clone());
            hs.push(tokio::spawn(async move {
                while !s.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    tokio::time::sleep(SLEEP).await;
                    h.record(t.elapsed());
                }
            }));
        }
        tokio::time::sleep(run).await;
        s.store(true, Ordering::Relaxed);
        let elapsed = t.elapsed();
        for h in hs {
            h.await.unwrap();
        }
        elapsed
    });
    let (total, p99) = hist.p99();
    (total as f64 / elapsed.as_secs_f64(), p99)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only gort` (or tokio) runs one implementation.
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let (n, run) = if quick {
        (10_000, Duration::from_millis(300))
    } else {
        (100_000, Duration::from_secs(2))
    };
    for (name, f) in [
        ("gort", gort_timers as fn(usize, Duration) -> (f64, f64)),
        ("tokio", tokio_timers),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let (rate, p99) = f(n, run);
        emit("rt/timers/wakeups-per-s", name, rate, "wakeups/s");
        emit("rt/timers/overshoot-p99", name, p99, "us");
    }
}
