//! Regression tests for the scheduler's glue: each attacks a path where two tested protocols
//! meet (run's end against deadlock detection, resizes against their waiters, the yield fast
//! path against the global queue, recycled Gs against goroutine-locals, blocking's hand-off,
//! goroutine counting) and failed before its fix.
#![cfg(not(loom))]

mod common;

use common::{child_mode, os_threads, run_child, runtime};
use gort_sched::{GoroutineLocal, blocking, go, gosched, park, spawn};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Runs `f` on a thread and fails the test (instead of hanging CI) when it does not finish
/// within a generous `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what}: still not done after {limit:?} (hang)"),
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---- 1. main returning ends the program, whatever the other goroutines do ----

#[test]
fn run_returns_mains_value_while_other_goroutines_park_forever() {
    if child_mode().as_deref() == Some("park-forever") {
        for _ in 0..50 {
            // SAFETY: no thread-bound values are held across scheduling points.
            let v = unsafe {
                gort_sched::run(|| {
                    go(|| {
                        loop {
                            park();
                        }
                    });
                    42
                })
            };
            assert_eq!(v, 42);
        }
        println!("all runs returned");
        return;
    }
    let out = run_child(
        "run_returns_mains_value_while_other_goroutines_park_forever",
        "park-forever",
    );
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{}",
        out.status,
        stderr_of(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all runs returned"));
}

// ---- 2. waiting on another runtime is not a deadlock ----

#[test]
fn waiting_on_another_runtime_is_not_a_deadlock() {
    if child_mode().as_deref() == Some("nested") {
        for _ in 0..20 {
            // SAFETY: as above.
            let v = unsafe {
                gort_sched::run(|| {
                    // A nested run: its main runs on another runtime's M.
                    let inner = gort_sched::run(|| {
                        std::thread::sleep(Duration::from_millis(2));
                        1
                    });
                    // Joining a goroutine of a second runtime.
                    let other = runtime(1);
                    let h = other
                        .spawn(|| {
                            std::thread::sleep(Duration::from_millis(2));
                            2
                        })
                        .unwrap();
                    inner + h.join().unwrap() + other.block_on(|| 3)
                })
            };
            assert_eq!(v, 6);
        }
        println!("no false deadlock");
        return;
    }
    let out = run_child("waiting_on_another_runtime_is_not_a_deadlock", "nested");
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{}",
        out.status,
        stderr_of(&out)
    );
}

// ---- 3. a shrink from a plain thread is always notified ----

#[test]
fn gomaxprocs_grow_shrink_churn_from_threads_never_hangs() {
    within(Duration::from_secs(120), "grow/shrink churn", || {
        let rt = Arc::new(runtime(4));
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..6 {
            let stop = stop.clone();
            rt.go(move || {
                while !stop.load(Ordering::Relaxed) {
                    gosched();
                }
            })
            .unwrap();
        }
        let threads: Vec<_> = (0..3)
            .map(|t| {
                let rt = rt.clone();
                std::thread::spawn(move || {
                    for i in 0..300 {
                        rt.gomaxprocs(1 + (i * 7 + t * 3) % 4);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn shrink_waiting_on_a_busy_p_returns_when_a_grow_cancels_it() {
    within(Duration::from_secs(60), "shrink then grow", || {
        let rt = Arc::new(runtime(2));
        let release = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicUsize::new(0));
        // Two goroutines that reach no scheduling point hold both Ps.
        for _ in 0..2 {
            let (release, running) = (release.clone(), running.clone());
            rt.go(move || {
                running.fetch_add(1, Ordering::SeqCst);
                while !release.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        }
        while running.load(Ordering::SeqCst) < 2 {
            std::thread::yield_now();
        }
        // The shrink waits for P1's holder; the grow makes P1 a normal P again.
        let shrinker = {
            let rt = rt.clone();
            std::thread::spawn(move || rt.gomaxprocs(1))
        };
        std::thread::sleep(Duration::from_millis(50));
        rt.gomaxprocs(2);
        std::thread::sleep(Duration::from_millis(50));
        release.store(true, Ordering::Relaxed);
        shrinker.join().unwrap();
    });
}

// ---- 4. GOMAXPROCS=1: work queued from outside is not starved by yielders ----

/// Two goroutines loop on `gosched` on the only P; `make_ready` makes one more goroutine
/// runnable from outside the P. It must run before the yielders have made many rounds,
/// counted from `since` (the round count when it became runnable; `make_ready` may move it
/// later, to when the event that readies the goroutine happened).
fn queued_work_beats_yielders(
    make_ready: impl FnOnce(&gort_sched::Runtime, Arc<AtomicBool>, Since),
) {
    let rt = runtime(1);
    let done = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    for _ in 0..2 {
        let (done, rounds) = (done.clone(), rounds.clone());
        rt.go(move || {
            while !done.load(Ordering::Relaxed) {
                rounds.fetch_add(1, Ordering::Relaxed);
                gosched();
            }
        })
        .unwrap();
    }
    // Let the yielders get going.
    let start = Instant::now();
    while rounds.load(Ordering::Relaxed) < 1000 && start.elapsed() < Duration::from_secs(10) {
        std::thread::yield_now();
    }
    let since = Since {
        rounds: rounds.clone(),
        at: Arc::new(AtomicUsize::new(rounds.load(Ordering::Relaxed))),
    };
    make_ready(&rt, done.clone(), since.clone());
    let start = Instant::now();
    while !done.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let waited = rounds.load(Ordering::Relaxed) - since.at.load(Ordering::SeqCst);
    done.store(true, Ordering::Relaxed);
    assert!(
        done.load(Ordering::Relaxed) && waited < 100_000,
        "queued goroutine waited {waited} yield rounds"
    );
}

/// The yield-round count at which the watched goroutine became runnable.
#[derive(Clone)]
struct Since {
    rounds: Arc<AtomicUsize>,
    at: Arc<AtomicUsize>,
}

impl Since {
    /// The goroutine becomes runnable now.
    fn now(&self) {
        self.at
            .store(self.rounds.load(Ordering::Relaxed), Ordering::SeqCst);
    }
}

#[test]
fn gomaxprocs_1_runtime_go_from_a_thread_is_not_starved_by_yielders() {
    queued_work_beats_yielders(|rt, done, _| {
        rt.go(move || done.store(true, Ordering::Relaxed)).unwrap();
    });
}

#[test]
fn gomaxprocs_1_ready_from_a_thread_is_not_starved_by_yielders() {
    queued_work_beats_yielders(|rt, done, since| {
        let (tx, rx) = mpsc::channel();
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        rt.go(move || {
            tx.send(gort_sched::current().unwrap()).unwrap();
            while !f.load(Ordering::Acquire) {
                park();
            }
            done.store(true, Ordering::Relaxed);
        })
        .unwrap();
        let g = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("parker never ran");
        flag.store(true, Ordering::Release);
        since.now();
        g.ready();
    });
}

#[test]
fn gomaxprocs_1_goroutine_back_from_blocking_is_not_starved_by_yielders() {
    queued_work_beats_yielders(|rt, done, since| {
        rt.go(move || {
            // Rounds made while the call blocks do not count: only those after it returned.
            blocking(|| {
                std::thread::sleep(Duration::from_millis(5));
                since.now();
            });
            done.store(true, Ordering::Relaxed);
        })
        .unwrap();
    });
}

// ---- 5. goroutine-locals never outlive their goroutine ----

static TOUCHED_BY_DROP: GoroutineLocal<Cell<u32>> = GoroutineLocal::new(|| Cell::new(0));
static DROPS: AtomicUsize = AtomicUsize::new(0);

struct TouchesOther;
impl Drop for TouchesOther {
    fn drop(&mut self) {
        // Re-creates the other local while the goroutine's locals are being destroyed.
        TOUCHED_BY_DROP.with(|c| c.set(99));
    }
}
static TOUCHES_OTHER: GoroutineLocal<TouchesOther> = GoroutineLocal::new(|| TouchesOther);

struct CountsDrop;
impl Drop for CountsDrop {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
        // A destructor that yields and parks must run on its goroutine, not on a scheduler.
        gosched();
    }
}
static COUNTS_DROP: GoroutineLocal<CountsDrop> = GoroutineLocal::new(|| CountsDrop);

#[test]
fn goroutine_locals_recreated_by_destructors_do_not_leak_into_the_next_goroutine() {
    let rt = runtime(1);
    for _ in 0..50 {
        let leaked = rt.block_on(|| {
            spawn(|| {
                TOUCHES_OTHER.with(|_| ());
                COUNTS_DROP.with(|_| ());
            })
            .join()
            .unwrap();
            // The next goroutine is likely to run on the G just recycled.
            spawn(|| TOUCHED_BY_DROP.with(|c| c.get())).join().unwrap()
        });
        assert_eq!(
            leaked, 0,
            "a fresh goroutine saw a previous goroutine's local"
        );
    }
    assert_eq!(DROPS.load(Ordering::SeqCst), 50);
}

struct Exits;
impl Drop for Exits {
    fn drop(&mut self) {
        gort_sched::goexit();
    }
}
static EXITS: GoroutineLocal<Exits> = GoroutineLocal::new(|| Exits);
static AFTER_EXITS: GoroutineLocal<CountsDrop> = GoroutineLocal::new(|| CountsDrop);

#[test]
fn goexit_in_a_goroutine_local_destructor_ends_the_goroutine_quietly() {
    if child_mode().as_deref() == Some("goexit-in-local") {
        let rt = runtime(1);
        let v = rt.block_on(|| {
            spawn(|| {
                EXITS.with(|_| ());
                AFTER_EXITS.with(|_| ());
                5
            })
            .join()
            .unwrap()
        });
        assert_eq!(v, 5);
        println!("survived");
        return;
    }
    let out = run_child(
        "goexit_in_a_goroutine_local_destructor_ends_the_goroutine_quietly",
        "goexit-in-local",
    );
    let err = stderr_of(&out);
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{err}",
        out.status
    );
    assert!(!err.contains("Box<dyn Any>"), "stderr:\n{err}");
}

// ---- 6. blocking's hand-off never strands a goroutine queued meanwhile ----

#[test]
fn blocking_hand_off_racing_a_foreign_spawn_never_strands_it() {
    within(Duration::from_secs(300), "blocking hand-off race", || {
        for _ in 0..300 {
            let rt = Arc::new(runtime(1));
            let (tx, rx) = mpsc::channel::<()>();
            let rt2 = rt.clone();
            let spawner = std::thread::spawn(move || {
                rt2.go(move || tx.send(()).unwrap()).unwrap();
            });
            // The blocking call waits for the goroutine queued by the thread; if the P was
            // given up without seeing it, nobody runs it.
            let got = rt.block_on(move || {
                blocking(move || rx.recv_timeout(Duration::from_secs(10)).is_ok())
            });
            spawner.join().unwrap();
            assert!(got, "goroutine queued during blocking's hand-off never ran");
        }
    });
}

// ---- 8. num_goroutine is exact at rest and in range under churn ----

#[test]
fn num_goroutine_stays_within_the_true_range_under_churn() {
    // More Ps than cores: an M reading the counters is preempted by the OS mid-scan.
    let rt = runtime(4);
    let (lo, hi) = rt.block_on(|| {
        // 100 goroutines parked for the whole test, plus churn bounded to 32 at once.
        let release = Arc::new(AtomicBool::new(false));
        let parked = Arc::new(AtomicUsize::new(0));
        let mut waiters = Vec::new();
        for _ in 0..100 {
            let (release, parked) = (release.clone(), parked.clone());
            let (tx, rx) = mpsc::channel();
            waiters.push(rx);
            go(move || {
                tx.send(gort_sched::current().unwrap()).unwrap();
                parked.fetch_add(1, Ordering::SeqCst);
                while !release.load(Ordering::Acquire) {
                    park();
                }
            });
        }
        let handles: Vec<_> = waiters.into_iter().map(|rx| rx.recv().unwrap()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let inflight = Arc::new(AtomicUsize::new(0));
        let churner = {
            let (stop, inflight) = (stop.clone(), inflight.clone());
            spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if inflight.load(Ordering::SeqCst) < 32 {
                        inflight.fetch_add(1, Ordering::SeqCst);
                        let inflight = inflight.clone();
                        go(move || {
                            gosched();
                            inflight.fetch_sub(1, Ordering::SeqCst);
                        });
                    } else {
                        gosched();
                    }
                }
            })
        };
        let (mut lo, mut hi) = (usize::MAX, 0);
        for _ in 0..200_000 {
            let n = gort_sched::num_goroutine();
            lo = lo.min(n);
            hi = hi.max(n);
            gosched();
        }
        stop.store(true, Ordering::Relaxed);
        churner.join().unwrap();
        release.store(true, Ordering::Release);
        for h in handles {
            h.ready();
        }
        (lo, hi)
    });
    // Always alive: main, the churner, the 100 parked. At most 32 churn goroutines have not
    // reported, plus those that reported and have not yet switched out (a handful).
    assert!(
        lo >= 102,
        "num_goroutine reported {lo} with at least 102 alive"
    );
    assert!(
        hi <= 102 + 32 + 64,
        "num_goroutine reported {hi}, far above the true count"
    );
}

#[test]
fn num_goroutine_is_exact_at_rest() {
    let rt = runtime(2);
    let n = rt.block_on(|| {
        let hs: Vec<_> = (0..500).map(|i| spawn(move || i)).collect();
        for h in hs {
            h.join().unwrap();
        }
        // Joined goroutines may still be switching out: wait for the count to settle.
        let start = Instant::now();
        while gort_sched::num_goroutine() != 1 && start.elapsed() < Duration::from_secs(30) {
            gosched();
        }
        gort_sched::num_goroutine()
    });
    assert_eq!(n, 1);
}

// ---- main goroutine: panic and goexit as in Go ----

#[test]
fn panic_in_main_prints_gos_report_and_exits_2() {
    if child_mode().as_deref() == Some("main-panic") {
        // SAFETY: as above.
        unsafe { gort_sched::run::<_, ()>(|| panic!("boom in main")) };
        return;
    }
    let out = run_child("panic_in_main_prints_gos_report_and_exits_2", "main-panic");
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains("panic: boom in main\n\ngoroutine 1 [running]:"),
        "stderr:\n{err}"
    );
}

#[test]
fn goexit_in_main_lets_others_finish_then_reports_no_goroutines() {
    if child_mode().as_deref() == Some("main-goexit") {
        // SAFETY: as above.
        unsafe {
            gort_sched::run::<_, ()>(|| {
                go(|| {
                    std::thread::sleep(Duration::from_millis(50));
                    println!("other goroutine finished");
                });
                gort_sched::goexit();
            })
        };
        return;
    }
    let out = run_child(
        "goexit_in_main_lets_others_finish_then_reports_no_goroutines",
        "main-goexit",
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("other goroutine finished"),
        "the other goroutine did not keep running"
    );
    assert!(
        err.contains("fatal error: no goroutines (main called runtime.Goexit) - deadlock!"),
        "stderr:\n{err}"
    );
}

// ---- threads: idle Ms exit, and a cap ----

#[test]
fn idle_threads_beyond_a_reserve_exit_after_a_burst_of_blocking_calls() {
    if child_mode().as_deref() == Some("blocking-burst") {
        let rt = runtime(2);
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let sampling = sampling.clone();
            std::thread::spawn(move || {
                let mut peak = 0;
                while sampling.load(Ordering::Relaxed) {
                    peak = peak.max(os_threads());
                    std::thread::sleep(Duration::from_millis(2));
                }
                peak
            })
        };
        rt.block_on(|| {
            let hs: Vec<_> = (0..300)
                .map(|_| spawn(|| blocking(|| std::thread::sleep(Duration::from_millis(300)))))
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        sampling.store(false, Ordering::Relaxed);
        let peak = sampler.join().unwrap();
        let start = Instant::now();
        while os_threads() > 20 && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("peak {peak} threads, now {}", os_threads());
        assert!(peak > 40, "the burst did not start threads ({peak})");
        assert!(os_threads() <= 20, "{} threads stayed", os_threads());
        return;
    }
    let out = run_child(
        "idle_threads_beyond_a_reserve_exit_after_a_burst_of_blocking_calls",
        "blocking-burst",
    );
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
}

#[test]
fn exceeding_the_thread_limit_is_gos_thread_exhaustion() {
    if child_mode().as_deref() == Some("thread-cap") {
        // SAFETY: as above.
        let rt = unsafe {
            gort_sched::Builder::new()
                .gomaxprocs(1)
                .max_threads(8)
                .build()
        }
        .unwrap();
        rt.block_on(|| {
            let hs: Vec<_> = (0..20)
                .map(|_| spawn(|| blocking(|| std::thread::sleep(Duration::from_millis(500)))))
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
        println!("no limit enforced");
        return;
    }
    let out = run_child(
        "exceeding_the_thread_limit_is_gos_thread_exhaustion",
        "thread-cap",
    );
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains("runtime: program exceeds 8-thread limit\nfatal error: thread exhaustion"),
        "stderr:\n{err}"
    );
}

// ---- GOMAXPROCS parsing, as Go's atoi32 ----

#[test]
fn gomaxprocs_parsing_accepts_exactly_what_go_accepts() {
    use gort_sched::parse_gomaxprocs as p;
    assert_eq!(p("4"), Some(4));
    assert_eq!(p("007"), Some(7));
    assert_eq!(p("2147483647"), Some(gort_sched::MAX_PROCS));
    for bad in [
        "",
        "0",
        "-1",
        "-0",
        "+1",
        " 4",
        "4 ",
        "4x",
        "2147483648",
        "-",
        "0x10",
    ] {
        assert_eq!(p(bad), None, "{bad:?} must mean: use the CPU count");
    }
}

#[test]
fn threads_exiting_while_work_arrives_lose_nothing() {
    within(Duration::from_secs(120), "M exit churn", || {
        // SAFETY: as above.
        let rt = Arc::new(
            unsafe {
                gort_sched::Builder::new()
                    .gomaxprocs(2)
                    .idle_thread_exit(Duration::from_micros(200))
                    .build()
            }
            .unwrap(),
        );
        let done = Arc::new(AtomicUsize::new(0));
        let feeders: Vec<_> = (0..2)
            .map(|_| {
                let (rt, done) = (rt.clone(), done.clone());
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let done = done.clone();
                        rt.go(move || {
                            if i % 3 == 0 {
                                blocking(|| std::thread::sleep(Duration::from_micros(300)));
                            }
                            done.fetch_add(1, Ordering::SeqCst);
                        })
                        .unwrap();
                        if i % 50 == 0 {
                            std::thread::sleep(Duration::from_millis(2));
                        }
                    }
                })
            })
            .collect();
        let inner = rt.block_on({
            let done = done.clone();
            move || {
                let mut hs = Vec::new();
                for round in 0..40 {
                    for _ in 0..10 {
                        hs.push(spawn(|| {
                            blocking(|| std::thread::sleep(Duration::from_micros(500)))
                        }));
                    }
                    if round % 10 == 0 {
                        // Let the surplus Ms time out and exit while more work arrives.
                        blocking(|| std::thread::sleep(Duration::from_millis(3)));
                    }
                }
                let n = hs.len();
                for h in hs {
                    h.join().unwrap();
                }
                done.fetch_add(n, Ordering::SeqCst);
                n
            }
        });
        for f in feeders {
            f.join().unwrap();
        }
        let start = Instant::now();
        while done.load(Ordering::SeqCst) < 400 + inner && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            done.load(Ordering::SeqCst),
            400 + inner,
            "goroutines were lost"
        );
    });
}

// ---- the floating-point control words belong to each goroutine ----

#[cfg(target_arch = "x86_64")]
fn mxcsr() -> u32 {
    let mut v = 0u32;
    // SAFETY: stores the MXCSR register into a local.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack)) };
    v
}

#[cfg(target_arch = "x86_64")]
fn set_mxcsr(v: u32) {
    // SAFETY: loads a valid MXCSR value (only rounding-control bits changed).
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &v, options(nostack)) };
}

#[cfg(target_arch = "x86_64")]
fn x87_cw() -> u16 {
    let mut v = 0u16;
    // SAFETY: stores the x87 control word into a local.
    unsafe { std::arch::asm!("fnstcw [{}]", in(reg) &mut v, options(nostack)) };
    v
}

#[cfg(target_arch = "x86_64")]
fn set_x87_cw(v: u16) {
    // SAFETY: loads a valid x87 control word (only the rounding-control bits changed).
    unsafe { std::arch::asm!("fldcw [{}]", in(reg) &v, options(nostack)) };
}

#[cfg(target_arch = "x86_64")]
#[test]
fn each_goroutine_keeps_its_own_floating_point_control_words() {
    let rt = runtime(1);
    let (mx_default, cw_default) = rt.block_on(|| (mxcsr(), x87_cw()));
    let custom = rt
        .spawn(move || {
            // Round toward zero in both units.
            set_mxcsr(mx_default | 0x6000);
            set_x87_cw(cw_default | 0x0C00);
            let mut seen = Vec::new();
            for _ in 0..100 {
                gosched();
                seen.push((mxcsr(), x87_cw()));
            }
            // Leave the thread as we found it.
            set_mxcsr(mx_default);
            set_x87_cw(cw_default);
            seen
        })
        .unwrap();
    let plain = rt
        .spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..100 {
                seen.push((mxcsr(), x87_cw()));
                gosched();
            }
            seen
        })
        .unwrap();
    for (mx, cw) in custom.join().unwrap() {
        assert_eq!((mx, cw), (mx_default | 0x6000, cw_default | 0x0C00));
    }
    for (mx, cw) in plain.join().unwrap() {
        assert_eq!(
            (mx, cw),
            (mx_default, cw_default),
            "a goroutine saw another's modes"
        );
    }
}

/// Two goroutines ping-pong over channels on the only P: every park hands the M straight
/// to the other (the direct-switch fast path). A goroutine queued from outside, and a
/// sleeping one, must still run.
#[test]
fn gomaxprocs_1_ping_pong_neither_starves_the_global_queue_nor_timers() {
    let rt = runtime(1);
    let stop = Arc::new(AtomicBool::new(false));
    let (ping_tx, ping_rx) = gort_sched::chan::<u32>(0);
    let (pong_tx, pong_rx) = gort_sched::chan::<u32>(0);
    let s1 = stop.clone();
    rt.go(move || {
        while !s1.load(Ordering::Relaxed) {
            if ping_tx.send(1).is_err() || pong_rx.recv().is_err() {
                return;
            }
        }
    })
    .unwrap();
    rt.go(move || {
        for v in ping_rx.iter() {
            if pong_tx.send(v).is_err() {
                return;
            }
        }
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // From outside: must run although the ping-pong never leaves the local queue.
    let (done_tx, done_rx) = mpsc::channel();
    let d2 = done_tx.clone();
    rt.go(move || d2.send("global").unwrap()).unwrap();
    // A sleeper started from outside: its timer must fire among the direct switches.
    rt.go(move || {
        gort_sched::time::sleep(Duration::from_millis(5));
        done_tx.send("timer").unwrap();
    })
    .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        match done_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(w) => got.push(w),
            Err(_) => break,
        }
    }
    stop.store(true, Ordering::Relaxed);
    got.sort_unstable();
    assert_eq!(got, vec!["global", "timer"], "starved behind a ping-pong");
}

// ---- the deadlock report lists every blocked goroutine with Go's wait reason ----

#[test]
fn deadlock_report_lists_every_blocked_goroutine_with_its_wait_reason() {
    if child_mode().as_deref() == Some("deadlock-dump") {
        use gort_sched::chan;
        use gort_sched::sync::{Mutex, WaitGroup};
        let say = |what: &str| println!("blocked {} {what}", gort_sched::goid().unwrap());
        // SAFETY: as above.
        unsafe {
            gort_sched::run(move || {
                // A burst of goroutines that end, then idle time: the idle release drops
                // most of their Gs (unregistering them), none may be listed.
                let (gate_tx, gate) = chan::<()>(0);
                let burst: Vec<_> = (0..4000)
                    .map(|_| {
                        let gate = gate.clone();
                        spawn(move || {
                            let _ = gate.recv();
                        })
                    })
                    .collect();
                drop((gate_tx, gate));
                for h in burst {
                    h.join().unwrap();
                }
                gort_sched::time::sleep(Duration::from_millis(400));
                let (keep_tx, rx) = chan::<u8>(0);
                go(move || {
                    say("chan receive");
                    let _ = rx.recv();
                });
                let (tx, keep_rx) = chan::<u8>(0);
                go(move || {
                    say("chan send");
                    let _ = tx.send(1);
                });
                let (keep_a, a) = chan::<u8>(0);
                let (keep_b, b) = chan::<u8>(1);
                go(move || {
                    say("select");
                    gort_sched::select! {
                        recv(a) -> _v => {},
                        recv(b) -> _v => {},
                    }
                });
                let m = Arc::new(Mutex::new(0u32));
                let held = m.lock();
                let m2 = m.clone();
                go(move || {
                    say("sync.Mutex.Lock");
                    drop(m2.lock());
                });
                let wg = Arc::new(WaitGroup::new());
                wg.add(1);
                let wg2 = wg.clone();
                go(move || {
                    say("sync.WaitGroup.Wait");
                    wg2.wait();
                });
                let forever = spawn(move || {
                    let (_keep, never) = chan::<u8>(0);
                    say("chan receive");
                    let _ = never.recv();
                });
                go(move || {
                    say("join");
                    let _ = forever.join();
                });
                go(|| println!("exited {}", gort_sched::goid().unwrap()));
                say("chan receive");
                let (_keep, never) = chan::<u8>(0);
                let _ = never.recv();
                drop((keep_tx, keep_rx, keep_a, keep_b, held, wg));
            })
        };
        return;
    }
    let out = run_child(
        "deadlock_report_lists_every_blocked_goroutine_with_its_wait_reason",
        "deadlock-dump",
    );
    let err = stderr_of(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.starts_with("fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 ["),
        "stderr:\n{err}"
    );
    // Every goroutine that blocked is listed once, with its reason, main (1) first.
    // (The test harness's own "test ... " prefix may share the first line.)
    let mut expected: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.split_once("blocked ").map(|(_, rest)| rest))
        .map(|l| {
            let (id, reason) = l.split_once(' ').unwrap();
            format!("goroutine {id} [{reason}]:")
        })
        .collect();
    assert_eq!(expected.len(), 8, "stdout:\n{stdout}");
    let mut listed: Vec<String> = err
        .lines()
        .filter(|l| l.starts_with("goroutine "))
        .map(str::to_string)
        .collect();
    assert_eq!(listed[0], "goroutine 1 [chan receive]:", "stderr:\n{err}");
    expected.sort();
    listed.sort();
    assert_eq!(listed, expected, "stderr:\n{err}\nstdout:\n{stdout}");
    // The goroutine that ended is not listed.
    let exited = stdout
        .lines()
        .find_map(|l| l.split_once("exited ").map(|(_, rest)| rest))
        .expect("the short-lived goroutine ran");
    assert!(
        !err.contains(&format!("goroutine {exited} [")),
        "stderr:\n{err}"
    );
}

/// Two goroutines that hand the only P to each other through `runnext` must not starve a
/// goroutine waiting in the local ring: every 61st switch takes the ring's oldest first (Go
/// breaks such a pair when their shared time slice runs out). The spawn order leaves the
/// ring holding the pinger, then the bystander; the ponger runs first and waits, the pinger
/// starts the pair, and from then on one of the two is always in `runnext`.
#[test]
fn gomaxprocs_1_runnext_ping_pong_does_not_starve_the_local_ring() {
    let rt = runtime(1);
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let s1 = stop.clone();
    rt.go(move || {
        let (ping_tx, ping_rx) = gort_sched::chan::<u32>(0);
        let (pong_tx, pong_rx) = gort_sched::chan::<u32>(0);
        let s2 = s1.clone();
        // `runnext`, then pushed into the ring by the next spawn.
        gort_sched::go(move || {
            while !s2.load(Ordering::Relaxed) {
                if ping_tx.send(1).is_err() || pong_rx.recv().is_err() {
                    return;
                }
            }
        });
        // The bystander: into the ring behind the pinger.
        gort_sched::go(move || done_tx.send(()).unwrap());
        // The ponger: left in `runnext`, it runs first when we exit.
        gort_sched::go(move || {
            for v in ping_rx.iter() {
                if pong_tx.send(v).is_err() {
                    return;
                }
            }
        });
    })
    .unwrap();
    let ran = done_rx.recv_timeout(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    assert!(
        ran.is_ok(),
        "a goroutine in the local ring starved behind a runnext ping-pong"
    );
}
