//! gort-tests: helpers shared by the cross-crate integration tests and the demo.

use gort_sched::{Builder, Goroutine, Runtime};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A runtime with `procs` Ps and default stacks.
pub fn runtime(procs: usize) -> Runtime {
    // SAFETY: the test and demo goroutines hold no thread-bound values across scheduling
    // points (no thread-locals, no reentrant-lock guards).
    unsafe { Builder::new().gomaxprocs(procs).build() }.expect("valid configuration")
}

/// Waits (up to a generous 30 s) until `rt` has no goroutines: one that just woke its joiner
/// still has to switch out and exit. Returns the final count.
pub fn settle(rt: &Runtime) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while rt.num_goroutine() != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    rt.num_goroutine()
}

/// Resident set size of this process, from `/proc/self/statm`.
pub fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

/// Number of memory mappings (VMAs) of this process.
pub fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0)
}

/// A goroutine wait group built on the park / ready contract: `wait` parks the calling
/// goroutine until `done` has been called as many times as `add`ed.
#[derive(Debug, Default)]
pub struct WaitGroup {
    count: AtomicUsize,
    waiter: Mutex<Option<Goroutine>>,
}

impl WaitGroup {
    /// A wait group expecting `n` `done`s.
    pub fn new(n: usize) -> Self {
        WaitGroup {
            count: AtomicUsize::new(n),
            waiter: Mutex::new(None),
        }
    }

    /// Marks one participant finished; the last one readies the waiter.
    pub fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(w) = self.waiter.lock().unwrap().as_ref()
        {
            w.ready();
        }
    }

    /// Parks the calling goroutine until the count reaches zero.
    pub fn wait(&self) {
        *self.waiter.lock().unwrap() = gort_sched::current();
        while self.count.load(Ordering::Acquire) != 0 {
            gort_sched::park();
        }
    }
}

/// A gate many goroutines park behind until it opens (like a closed Go channel).
#[derive(Debug, Default)]
pub struct Gate {
    open: std::sync::atomic::AtomicBool,
    waiters: Mutex<Vec<Goroutine>>,
}

impl Gate {
    /// Parks the calling goroutine until `open`.
    pub fn wait(&self) {
        {
            let mut w = self.waiters.lock().unwrap();
            if self.open.load(Ordering::Acquire) {
                return;
            }
            w.push(gort_sched::current().expect("Gate::wait outside a goroutine"));
        }
        while !self.open.load(Ordering::Acquire) {
            gort_sched::park();
        }
    }

    /// Opens the gate and readies every waiter.
    pub fn open(&self) {
        let waiters = {
            let mut w = self.waiters.lock().unwrap();
            self.open.store(true, Ordering::Release);
            std::mem::take(&mut *w)
        };
        for g in waiters {
            g.ready();
        }
    }

    /// Goroutines parked behind the gate now.
    pub fn waiting(&self) -> usize {
        self.waiters.lock().unwrap().len()
    }
}

/// What [`park_many`] saw while every goroutine was parked.
#[derive(Debug, Clone, Copy)]
pub struct ParkedSnapshot {
    /// Time to start all goroutines and see them parked.
    pub parked_in: std::time::Duration,
    /// `num_goroutine()` at that moment (the caller's goroutine included).
    pub alive: usize,
    /// Goroutines whose body ran.
    pub started: usize,
    /// RSS growth per parked goroutine, in bytes.
    pub rss_per_goroutine: usize,
    /// Memory mappings of the process at that moment.
    pub maps: usize,
}

/// From inside a goroutine: starts `n` goroutines that park behind a gate, waits until all
/// are parked, takes a snapshot, then opens the gate and waits for all of them to finish.
pub fn park_many(n: usize) -> ParkedSnapshot {
    use std::sync::Arc;
    let gate = Arc::new(Gate::default());
    let finished = Arc::new(WaitGroup::new(n));
    let started = Arc::new(WaitGroup::new(n));
    let before = rss_bytes();
    let t = std::time::Instant::now();
    for _ in 0..n {
        let (gate, finished, started) = (gate.clone(), finished.clone(), started.clone());
        gort_sched::go(move || {
            started.done();
            gate.wait();
            finished.done();
        });
    }
    // Park until every goroutine has started, then wait out the last few registering.
    started.wait();
    while gate.waiting() < n {
        gort_sched::gosched();
    }
    let snapshot = ParkedSnapshot {
        parked_in: t.elapsed(),
        alive: gort_sched::num_goroutine(),
        started: n - started.count.load(Ordering::Acquire),
        rss_per_goroutine: rss_bytes().saturating_sub(before) / n,
        maps: map_count(),
    };
    gate.open();
    finished.wait();
    snapshot
}

/// Go's concurrent prime sieve: a generator goroutine feeds 2, 3, 4, ... into a chain of
/// filter goroutines joined by unbuffered channels; each prime that reaches the end adds a
/// filter. Returns the first `n` primes. Call from a goroutine.
pub fn prime_sieve(n: usize) -> Vec<u64> {
    let (tx, mut rx) = gort_sched::chan::<u64>(0);
    gort_sched::go(move || {
        let mut i = 2;
        while tx.send(i).is_ok() {
            i += 1;
        }
    });
    let mut primes = Vec::with_capacity(n);
    for _ in 0..n {
        let prime = rx.recv().expect("the generator never stops");
        primes.push(prime);
        let (next_tx, next_rx) = gort_sched::chan(0);
        let input = rx;
        gort_sched::go(move || {
            for v in input.iter() {
                if v % prime != 0 && next_tx.send(v).is_err() {
                    return; // the chain behind us is gone
                }
            }
        });
        rx = next_rx;
    }
    // Dropping the last receiver unwinds the chain: each filter's send fails in turn.
    primes
}
