//! Netpoll benchmarks beside mio (the poller under tokio), on the same workloads.
//!
//! - `netpoll/events_n{N}` (events/s): N socketpairs, one waiter per pair. Each round writes a
//!   byte to every pair, then polls until every waiter has been woken; a woken waiter reads
//!   its byte and arms itself again. gort's side goes through its semaphores (`arm`,
//!   `poll_with`, `complete`); mio's side keeps its own waiter table (a slab of parked
//!   waiters indexed by token). "Waking" a waiter pushes it on a run queue on both sides.
//! - `netpoll/wake_latency` (ns, median): a thread blocked reading a socket, a writer that
//!   timestamps a byte; latency is from the write to the blocked thread running again. gort
//!   uses its standalone driver; mio's side a poll thread that unparks the reader through a
//!   mutex-protected readiness slot.
//!
//! Prints one JSON line per figure and implementation. `--quick` runs a scaled-down workload;
//! a further argument selects the figures whose name contains it.

use gort_netpoll::{Armed, Direction, Driver, Poller, Registration, Waiter};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

fn emit(bench: &str, implementation: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"{implementation}\",\"value\":{value:.1},\"unit\":\"{unit}\"}}"
    );
}

fn pairs(n: usize) -> Vec<(UnixStream, UnixStream)> {
    (0..n)
        .map(|_| {
            let (a, b) = UnixStream::pair().expect("socketpair");
            a.set_nonblocking(true).unwrap();
            b.set_nonblocking(true).unwrap();
            (a, b)
        })
        .collect()
}

fn read1(s: &UnixStream) {
    let mut buf = [0u8; 1];
    match (&*s).read(&mut buf) {
        Ok(1) => {}
        r => panic!("bench: expected one byte, got {r:?}"),
    }
}

fn write1(s: &UnixStream) {
    (&*s).write_all(b"x").expect("bench: write");
}

/// A waiter that is an index into the benchmark's waiter table (a continuation, not a thread).
struct Task(usize);

// SAFETY: `into_raw` maps index i to (i + 1) * 4, which is > 2; `from_raw` inverts it.
unsafe impl Waiter for Task {
    fn into_raw(self) -> usize {
        (self.0 + 1) * 4
    }
    unsafe fn from_raw(raw: usize) -> Self {
        Task(raw / 4 - 1)
    }
    fn wake(self) {}
}

fn events_gort(n: usize, rounds: usize) -> f64 {
    let p: Poller<Task> = Poller::new().expect("poller");
    let ps = pairs(n);
    let regs: Vec<Registration<BorrowedFd<'_>>> =
        ps.iter().map(|(a, _)| p.open(a.as_fd()).unwrap()).collect();
    let mut runq: Vec<Task> = Vec::with_capacity(n);
    p.poll(Some(Duration::ZERO)).unwrap(); // consume the registration edges
    for (i, reg) in regs.iter().enumerate() {
        match p.arm(reg, Direction::Read, Task(i)).unwrap() {
            Armed::Parked => {}
            Armed::Ready(_) => panic!("bench: nothing should be readable yet"),
        }
    }
    let start = Instant::now();
    for _ in 0..rounds {
        for (_, b) in &ps {
            write1(b);
        }
        let mut done = 0;
        while done < n {
            p.poll_with(None, |t| runq.push(t)).unwrap();
            for t in runq.drain(..) {
                let i = t.0;
                p.complete(&regs[i], Direction::Read).unwrap();
                read1(&ps[i].0);
                match p.arm(&regs[i], Direction::Read, t).unwrap() {
                    Armed::Parked => {}
                    Armed::Ready(_) => panic!("bench: spurious readiness"),
                }
                done += 1;
            }
        }
    }
    let el = start.elapsed();
    for reg in regs {
        p.close(reg);
    }
    (n * rounds) as f64 / el.as_secs_f64()
}

fn events_mio(n: usize, rounds: usize) -> f64 {
    let mut poll = Poll::new().expect("mio poll");
    let mut events = Events::with_capacity(128);
    let ps = pairs(n);
    for (i, (a, _)) in ps.iter().enumerate() {
        poll.registry()
            .register(
                &mut SourceFd(&a.as_raw_fd()),
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .unwrap();
    }
    poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
    // The waiter table: the parked waiter of each pair (mio leaves this to its user).
    let mut parked: Vec<Option<Task>> = (0..n).map(|i| Some(Task(i))).collect();
    let mut runq: Vec<Task> = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..rounds {
        for (_, b) in &ps {
            write1(b);
        }
        let mut done = 0;
        while done < n {
            poll.poll(&mut events, None).unwrap();
            for ev in events.iter() {
                if ev.is_readable()
                    && let Some(t) = parked[ev.token().0].take()
                {
                    runq.push(t);
                }
            }
            for t in runq.drain(..) {
                let i = t.0;
                read1(&ps[i].0);
                parked[i] = Some(t);
                done += 1;
            }
        }
    }
    let el = start.elapsed();
    (n * rounds) as f64 / el.as_secs_f64()
}

fn median_f(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median(v: &mut [u64]) -> f64 {
    v.sort_unstable();
    v[v.len() / 2] as f64
}

/// Shared by the writer and the blocked reader of the latency benchmark.
struct Lat {
    base: Instant,
    /// Nanoseconds from `base` when the byte was written (writer stores, reader loads).
    sent: AtomicU64,
    /// Set by the reader after it recorded a sample (the writer then sends the next byte).
    done: AtomicBool,
}

fn now_ns(base: Instant) -> u64 {
    base.elapsed().as_nanos() as u64
}

fn latency_run(
    samples: usize,
    reader: impl FnOnce(Arc<Lat>, UnixStream) -> Vec<u64> + Send + 'static,
) -> f64 {
    let (a, b) = pairs(1).pop().unwrap();
    let lat = Arc::new(Lat {
        base: Instant::now(),
        sent: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });
    let l2 = Arc::clone(&lat);
    let h = thread::spawn(move || reader(l2, a));
    for _ in 0..samples {
        // Let the reader block first.
        thread::sleep(Duration::from_micros(50));
        lat.sent.store(now_ns(lat.base), Ordering::SeqCst);
        write1(&b);
        // Sleep rather than spin: on a busy machine a spinning writer steals the CPU the
        // woken reader needs (Go's side waits the same way).
        while !lat.done.swap(false, Ordering::AcqRel) {
            thread::sleep(Duration::from_micros(1));
        }
    }
    let mut v = h.join().unwrap();
    median(&mut v)
}

fn latency_gort(samples: usize) -> f64 {
    let d = Arc::new(Driver::start().expect("driver"));
    latency_run(samples, move |lat, a| {
        let src = d.register(a.as_fd()).unwrap();
        let mut out = Vec::with_capacity(samples);
        let mut buf = [0u8; 1];
        for _ in 0..samples {
            src.read_with(|| (&a).read(&mut buf)).unwrap();
            out.push(now_ns(lat.base) - lat.sent.load(Ordering::SeqCst));
            lat.done.store(true, Ordering::Release);
        }
        out
    })
}

/// mio's side of the latency benchmark: a readiness slot the poll thread and the reader share.
#[derive(Default)]
struct Slot {
    ready: bool,
    waiter: Option<Thread>,
}

fn latency_mio(samples: usize) -> f64 {
    let mut poll = Poll::new().expect("mio poll");
    let waker = Arc::new(mio::Waker::new(poll.registry(), Token(usize::MAX)).unwrap());
    let slot = Arc::new(Mutex::new(Slot::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (a, b) = pairs(1).pop().unwrap();
    poll.registry()
        .register(
            &mut SourceFd(&a.as_raw_fd()),
            Token(0),
            Interest::READABLE | Interest::WRITABLE,
        )
        .unwrap();
    let (s2, st2) = (Arc::clone(&slot), Arc::clone(&stop));
    let poller = thread::spawn(move || {
        let mut events = Events::with_capacity(128);
        while !st2.load(Ordering::Acquire) {
            poll.poll(&mut events, None).unwrap();
            for ev in events.iter() {
                if ev.token() == Token(0) && ev.is_readable() {
                    let w = {
                        let mut s = s2.lock().unwrap();
                        s.ready = true;
                        s.waiter.take()
                    };
                    if let Some(t) = w {
                        t.unpark();
                    }
                }
            }
        }
    });
    let lat = Arc::new(Lat {
        base: Instant::now(),
        sent: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });
    let (l2, s3) = (Arc::clone(&lat), Arc::clone(&slot));
    let reader = thread::spawn(move || {
        let mut out = Vec::with_capacity(samples);
        let mut buf = [0u8; 1];
        for _ in 0..samples {
            loop {
                match (&a).read(&mut buf) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let mut s = s3.lock().unwrap();
                        if s.ready {
                            s.ready = false;
                            continue;
                        }
                        s.waiter = Some(thread::current());
                        drop(s);
                        loop {
                            thread::park();
                            let mut s = s3.lock().unwrap();
                            if s.ready {
                                s.ready = false;
                                break;
                            }
                        }
                    }
                    Err(e) => panic!("bench: read: {e}"),
                }
            }
            out.push(now_ns(l2.base) - l2.sent.load(Ordering::SeqCst));
            l2.done.store(true, Ordering::Release);
        }
        out
    });
    for _ in 0..samples {
        thread::sleep(Duration::from_micros(50));
        lat.sent.store(now_ns(lat.base), Ordering::SeqCst);
        write1(&b);
        // Sleep rather than spin: on a busy machine a spinning writer steals the CPU the
        // woken reader needs (Go's side waits the same way).
        while !lat.done.swap(false, Ordering::AcqRel) {
            thread::sleep(Duration::from_micros(1));
        }
    }
    let mut v = reader.join().unwrap();
    stop.store(true, Ordering::Release);
    waker.wake().unwrap();
    poller.join().unwrap();
    median(&mut v)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    // An optional substring selects figures, e.g. `events_n1024` or `latency`.
    let filter = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_default();
    let (rounds_small, rounds_large, samples) = if quick {
        (200, 20, 200)
    } else {
        (20_000, 1_000, 5_000)
    };
    for (n, rounds) in [(16, rounds_small), (1024, rounds_large)] {
        let bench = format!("netpoll/events_n{n}");
        if !bench.contains(&filter) {
            continue;
        }
        // Warm up each once, then interleave repetitions of the two implementations (this
        // machine is shared: interleaving spreads load bursts over both) and report medians.
        events_gort(n, rounds / 10 + 1);
        events_mio(n, rounds / 10 + 1);
        let reps = if quick { 1 } else { 5 };
        let (mut g, mut m) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            g.push(events_gort(n, rounds / reps));
            m.push(events_mio(n, rounds / reps));
        }
        emit(&bench, "gort", median_f(&mut g), "events/s");
        emit(&bench, "mio", median_f(&mut m), "events/s");
    }
    if "netpoll/wake_latency".contains(&filter) {
        emit("netpoll/wake_latency", "gort", latency_gort(samples), "ns");
        emit("netpoll/wake_latency", "mio", latency_mio(samples), "ns");
    }
}
