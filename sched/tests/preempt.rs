//! sysmon, spare Ps and preemption under timing: a hog or a blocking call on GOMAXPROCS=1
//! must not stop the other goroutines. The tests of this binary run one at a time (a lock),
//! and CPU-heavy tests of other binaries never share the cores with them (cargo runs test
//! binaries one after another).
#![cfg(not(loom))]

mod common;

use common::{runtime, spin_until, without_sysmon};
use gort_sched::{IdleHook, Runtime, safepoint};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// The timing tests of this binary run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A goroutine spinning with no calls at all until `stop` is set (the loop body is an
/// atomic load: nothing a compiler could turn into a call, no safepoint).
fn hog(rt: &Runtime, started: &Arc<AtomicBool>, stop: &Arc<AtomicBool>) {
    let (started, stop) = (started.clone(), stop.clone());
    rt.go(move || {
        started.store(true, Ordering::SeqCst);
        while !stop.load(Ordering::Relaxed) {
            std::hint::spin_loop();
        }
    })
    .unwrap();
}

/// Starts a goroutine that sleeps `period` `n` times and reports the longest gap between two
/// wake-ups beyond `period`.
fn ticker(rt: &Runtime, period: Duration, n: usize) -> mpsc::Receiver<Duration> {
    let (tx, rx) = mpsc::channel();
    rt.go(move || {
        let mut worst = Duration::ZERO;
        let mut last = Instant::now();
        for _ in 0..n {
            gort_sched::time::sleep(period);
            let now = Instant::now();
            worst = worst.max(now.duration_since(last).saturating_sub(period));
            last = now;
        }
        let _ = tx.send(worst);
    })
    .unwrap();
    rx
}

/// Starts `N` goroutines, each counting in its own slot and calling `safepoint()` at every
/// step, until `stop`.
fn counting_loops<const N: usize>(rt: &Runtime, stop: &Arc<AtomicBool>) -> Arc<[AtomicU64; N]> {
    let counts: Arc<[AtomicU64; N]> = Arc::new(std::array::from_fn(|_| AtomicU64::new(0)));
    for i in 0..N {
        let (counts, stop) = (counts.clone(), stop.clone());
        rt.go(move || {
            while !stop.load(Ordering::Relaxed) {
                counts[i].fetch_add(1, Ordering::Relaxed);
                safepoint();
            }
        })
        .unwrap();
    }
    counts
}

/// Polls `done` every millisecond until it holds or `limit` passes (a watchdog: the caller
/// asserts what it needs afterwards).
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn wait_flag(flag: &AtomicBool) {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the goroutine never started"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_hog_without_calls_does_not_stop_a_ticker_on_one_p() {
    let _serial = serial();
    let rt = runtime(1);
    let rx = ticker(&rt, Duration::from_millis(5), 40);
    let (started, stop) = (Arc::default(), Arc::default());
    hog(&rt, &started, &stop);
    wait_flag(&started);
    let worst = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the ticker stopped ticking behind the hog");
    stop.store(true, Ordering::SeqCst);
    let stats = rt.sysmon_stats();
    assert!(
        worst < Duration::from_millis(50),
        "a tick came {worst:?} late behind a hog on GOMAXPROCS=1 ({stats:?})"
    );
    assert!(
        stats.preempt_requests > 0 && stats.spares_lent > 0,
        "{stats:?}"
    );
}

#[test]
fn a_goroutine_in_a_blocking_std_call_does_not_delay_the_others_on_one_p() {
    let _serial = serial();
    let rt = runtime(1);
    let rx = ticker(&rt, Duration::from_millis(5), 40);
    let started = Arc::new(AtomicBool::new(false));
    {
        let started = started.clone();
        rt.go(move || {
            started.store(true, Ordering::SeqCst);
            // Unannotated: not inside `blocking`, so it keeps its P.
            std::thread::sleep(Duration::from_secs(1));
        })
        .unwrap();
    }
    wait_flag(&started);
    let worst = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the ticker stopped ticking behind a sleeping goroutine");
    let stats = rt.sysmon_stats();
    assert!(
        worst < Duration::from_millis(50),
        "a tick came {worst:?} late behind std::thread::sleep on GOMAXPROCS=1 ({stats:?})"
    );
    assert!(stats.spares_lent > 0, "{stats:?}");
}

#[test]
fn goroutines_queued_from_a_thread_behind_a_hog_run() {
    let _serial = serial();
    let rt = runtime(1);
    let (started, stop) = (Arc::default(), Arc::default());
    hog(&rt, &started, &stop);
    wait_flag(&started);
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let ran = ran.clone();
        rt.go(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    wait_until(Duration::from_secs(20), || {
        ran.load(Ordering::SeqCst) >= 100
    });
    let got = ran.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    assert_eq!(got, 100, "goroutines queued behind a hog never ran");
}

#[test]
fn safepoints_let_two_loops_share_one_p() {
    let _serial = serial();
    let rt = runtime(1);
    let stop = Arc::new(AtomicBool::new(false));
    let counts = counting_loops::<2>(&rt, &stop);
    std::thread::sleep(Duration::from_millis(300));
    let seen = [
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    ];
    stop.store(true, Ordering::SeqCst);
    assert!(
        seen[0] > 0 && seen[1] > 0,
        "one loop never ran: {seen:?} ({:?})",
        rt.sysmon_stats()
    );
    assert!(rt.sysmon_stats().preempt_requests > 0);
}

/// An idle hook whose only event is set by a test thread: with the one P held by a hog, no
/// M polls the hook, so only sysmon's 10 ms poll notices it.
#[derive(Default)]
struct EventHook {
    waiter: Mutex<Option<gort_sched::Goroutine>>,
    fired: AtomicBool,
    parker: (Mutex<bool>, std::sync::Condvar),
}

impl IdleHook for EventHook {
    fn poll(&self, timeout: Option<Duration>) {
        if self.fired.load(Ordering::SeqCst)
            && let Some(g) = self.waiter.lock().unwrap().take()
        {
            g.ready();
            return;
        }
        if timeout == Some(Duration::ZERO) {
            return;
        }
        let mut woken = self.parker.0.lock().unwrap();
        let limit = timeout
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100));
        if !*woken {
            woken = self.parker.1.wait_timeout(woken, limit).unwrap().0;
        }
        *woken = false;
    }
    fn wake(&self) {
        *self.parker.0.lock().unwrap() = true;
        self.parker.1.notify_all();
    }
    fn has_waiters(&self) -> bool {
        self.waiter.lock().unwrap().is_some()
    }
}

#[test]
fn sysmon_polls_the_idle_hook_while_every_p_is_busy() {
    let _serial = serial();
    let hook = Arc::new(EventHook::default());
    struct Shared(Arc<EventHook>);
    impl IdleHook for Shared {
        fn poll(&self, t: Option<Duration>) {
            self.0.poll(t)
        }
        fn wake(&self) {
            self.0.wake()
        }
        fn has_waiters(&self) -> bool {
            self.0.has_waiters()
        }
    }
    // Sysmon lends a spare P behind the hog once it has hogged long enough; the spare's M,
    // idle, may then be the one that polls the hook, and sysmon need not. That run says
    // nothing about sysmon's own poll: try again (at most five times), and fail at once if
    // the event was polled by neither.
    let mut stats = Vec::new();
    for _ in 0..5 {
        let (woke, st) = idle_hook_poll_attempt(&hook, Shared(hook.clone()));
        assert!(
            woke,
            "an event was never polled while the only P was busy: {st:?}"
        );
        if st.polls > 0 {
            return;
        }
        assert!(
            st.spares_lent > 0,
            "nobody but sysmon could have polled: {st:?}"
        );
        stats.push(st);
    }
    panic!("a spare P polled the hook in every try, sysmon never: {stats:?}");
}

/// One try of `sysmon_polls_the_idle_hook_while_every_p_is_busy`: a goroutine parked on the
/// hook, the only P held by a hog, then the hook's event. Returns whether the goroutine
/// woke, and sysmon's counts.
fn idle_hook_poll_attempt(
    hook: &Arc<EventHook>,
    idle: impl gort_sched::IdleHook + 'static,
) -> (bool, gort_sched::SysmonStats) {
    hook.fired.store(false, Ordering::SeqCst);
    *hook.waiter.lock().unwrap() = None;
    // SAFETY: the goroutines hold no thread-bound values across scheduling points.
    let rt = unsafe {
        gort_sched::Builder::new()
            .gomaxprocs(1)
            .idle_hook(idle)
            .build()
    }
    .unwrap();
    let (tx, rx) = mpsc::channel();
    let registered = Arc::new(AtomicBool::new(false));
    {
        let (hook, registered) = (hook.clone(), registered.clone());
        rt.go(move || {
            *hook.waiter.lock().unwrap() = gort_sched::current();
            registered.store(true, Ordering::SeqCst);
            while !hook.fired.load(Ordering::SeqCst) {
                gort_sched::park();
            }
            let _ = tx.send(());
        })
        .unwrap();
    }
    wait_flag(&registered);
    let (started, stop) = (Arc::default(), Arc::default());
    hog(&rt, &started, &stop);
    wait_flag(&started);
    std::thread::sleep(Duration::from_millis(30));
    hook.fired.store(true, Ordering::SeqCst);
    let woke = rx.recv_timeout(Duration::from_secs(20));
    stop.store(true, Ordering::SeqCst);
    (woke.is_ok(), rt.sysmon_stats())
}

#[test]
fn stop_the_world_stops_goroutines_at_safepoints_and_restarts_them() {
    let _serial = serial();
    let rt = runtime(2);
    let stop = Arc::new(AtomicBool::new(false));
    let counts = counting_loops::<3>(&rt, &stop);
    while counts.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
        std::thread::yield_now();
    }
    for round in 0..200 {
        let world = rt.stop_the_world("test");
        let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        std::thread::sleep(Duration::from_micros(200));
        let after: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let mut on_regular = 0;
        let mut seen = 0;
        world.for_each_goroutine(|g| {
            seen += 1;
            if let gort_sched::GStatus::Running { p, .. } = g.status {
                assert!(g.pc != 0, "a goroutine stopped at a safepoint has no frame");
                on_regular += usize::from(p < gort_sched::MAX_PROCS);
            }
        });
        world.start();
        assert_eq!(
            before, after,
            "round {round}: goroutines ran while the world was stopped"
        );
        assert_eq!(seen, 3, "round {round}");
        // Two Ps: at most two goroutines on them (a spare lent by sysmon may run a third).
        assert!(
            on_regular <= 2,
            "round {round}: {on_regular} goroutines on two Ps"
        );
    }
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn for_each_p_visits_every_p_once_while_goroutines_run() {
    let _serial = serial();
    let rt = runtime(2);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    for _ in 0..4 {
        let (stop, count) = (stop.clone(), count.clone());
        rt.go(move || {
            while !stop.load(Ordering::Relaxed) {
                count.fetch_add(1, Ordering::Relaxed);
                safepoint();
                if count.load(Ordering::Relaxed) % 64 == 0 {
                    gort_sched::gosched();
                }
            }
        })
        .unwrap();
    }
    for _ in 0..100 {
        let mut ids = Vec::new();
        rt.for_each_p(|id| ids.push(id));
        ids.sort_unstable();
        let regular: Vec<usize> = ids
            .iter()
            .copied()
            .filter(|&i| i < gort_sched::MAX_PROCS)
            .collect();
        assert_eq!(regular, vec![0, 1]);
        assert_eq!(ids.len(), 2 + gort_sched::SPARE_PS);
    }
    let before = count.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::SeqCst);
    assert!(
        count.load(Ordering::Relaxed) > before,
        "goroutines stopped running for good"
    );
}

#[test]
fn dropping_a_runtime_with_a_hog_and_a_lent_spare_returns() {
    let _serial = serial();
    let rt = runtime(1);
    let (started, stop) = (Arc::default(), Arc::default());
    hog(&rt, &started, &stop);
    wait_flag(&started);
    let _rx = ticker(&rt, Duration::from_millis(1), 1000);
    std::thread::sleep(Duration::from_millis(40));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(rt);
        let _ = tx.send(());
    });
    let done = rx.recv_timeout(Duration::from_secs(20));
    stop.store(true, Ordering::SeqCst);
    assert!(done.is_ok(), "dropping the runtime hung");
}

/// A goroutine that starts spinning on a lent spare makes the spare the stuck P; work it
/// queued before (on the spare's own queue) must still run, on the second spare. (Stealing
/// once skipped spares, and this work waited forever.)
#[test]
fn work_queued_behind_a_goroutine_stuck_on_a_spare_runs() {
    let _serial = serial();
    let rt = runtime(1);
    let (started, stop) = (Arc::default(), Arc::default());
    hog(&rt, &started, &stop);
    wait_flag(&started);
    let ran = Arc::new(AtomicUsize::new(0));
    {
        let (ran, stop) = (ran.clone(), stop.clone());
        // Queued globally behind the hog: a spare runs it.
        rt.go(move || {
            for _ in 0..10 {
                let ran = ran.clone();
                gort_sched::go(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                });
            }
            // Now stuck on the spare, with ten goroutines in the spare's queue.
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
        .unwrap();
    }
    wait_until(Duration::from_secs(20), || ran.load(Ordering::SeqCst) >= 10);
    let got = ran.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    assert_eq!(
        got,
        10,
        "goroutines queued on a stuck spare never ran ({:?})",
        rt.sysmon_stats()
    );
}

/// Goroutines spinning with no call and no safepoint never answer a stop: their threads are
/// suspended by signal, and the snapshot carries their registers and a stack that can be
/// read from the saved stack pointer up — a marker the hog keeps in its frame is found
/// there, as a conservative stack scan would find a pointer.
#[test]
fn stop_the_world_suspends_hogs_and_their_registers_and_stacks_can_be_read() {
    let _serial = serial();
    const MARK: u64 = 0x5EED_F00D_CAFE_0001;
    let rt = runtime(2);
    let stop = Arc::new(AtomicBool::new(false));
    let spins: Arc<[AtomicU64; 2]> = Arc::default();
    for i in 0..2 {
        let (stop, spins) = (stop.clone(), spins.clone());
        rt.go(move || {
            let marker = std::hint::black_box([MARK + i as u64; 4]);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n = n.wrapping_add(1);
                if n & 0xFFF == 0 {
                    spins[i].store(n, Ordering::Relaxed);
                }
            }
            std::hint::black_box(&marker);
        })
        .unwrap();
    }
    while spins.iter().any(|s| s.load(Ordering::Relaxed) == 0) {
        std::thread::yield_now();
    }
    for round in 0..300 {
        let world = rt.stop_the_world("test");
        let before = [
            spins[0].load(Ordering::Relaxed),
            spins[1].load(Ordering::Relaxed),
        ];
        let mut suspended = 0;
        let mut found = [false; 2];
        world.for_each_goroutine(|g| {
            if let gort_sched::GStatus::Running {
                suspended: true, ..
            } = g.status
            {
                suspended += 1;
                let stack = g.stack.clone().expect("a running goroutine has a stack");
                assert!(
                    stack.contains(&g.sp),
                    "saved sp {:#x} outside {stack:x?}",
                    g.sp
                );
                assert!(g.pc != 0);
                let regs = g
                    .registers
                    .expect("a suspended goroutine has saved registers");
                assert!(regs.len() > 16, "only {} register words", regs.len());
                let mut at = g.sp & !7;
                while at + 8 <= stack.end {
                    // SAFETY: inside the stopped goroutine's mapped stack, which nobody
                    // writes while the world is stopped.
                    let w = unsafe { std::ptr::read_volatile(at as *const u64) };
                    if w == MARK || w == MARK + 1 {
                        found[(w - MARK) as usize] = true;
                    }
                    at += 8;
                }
            }
        });
        std::thread::sleep(Duration::from_micros(100));
        let after = [
            spins[0].load(Ordering::Relaxed),
            spins[1].load(Ordering::Relaxed),
        ];
        world.start();
        assert_eq!(
            before, after,
            "round {round}: a hog ran while the world was stopped"
        );
        // Two Ps (a spare lent by sysmon may hold a third).
        assert!(suspended >= 1, "round {round}: no hog was suspended");
        assert!(
            found.iter().filter(|&&f| f).count() >= suspended.min(2),
            "round {round}: a suspended hog's marker was not found on its stack: {found:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    stop.store(true, Ordering::SeqCst);
}

/// The nice value of thread `tid` of this process (field 19 of its stat line).
fn nice_of(tid: i64) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(16)?.parse().ok()
}

/// A hog with work waiting behind it runs at the lowest priority; once it ends, its thread
/// (the M that ran it) is back at the normal priority before it runs anything else.
#[test]
fn a_demoted_hogs_thread_gets_its_priority_back() {
    let _serial = serial();
    let rt = runtime(1);
    let rx = ticker(&rt, Duration::from_millis(2), 100);
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    {
        let stop = stop.clone();
        rt.go(move || {
            // SAFETY: gettid has no preconditions.
            let _ = tid_tx.send(i64::from(unsafe { libc::gettid() }));
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
        .unwrap();
    }
    let tid = tid_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    wait_until(Duration::from_secs(10), || nice_of(tid) == Some(19));
    let demoted = nice_of(tid);
    stop.store(true, Ordering::SeqCst);
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the ticker stopped");
    // The M notices at its next scheduling round; the ticker's goroutine keeps it busy.
    let start = Instant::now();
    while nice_of(tid).is_some_and(|n| n != 0) && start.elapsed() < Duration::from_secs(10) {
        rt.block_on(gort_sched::gosched);
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(demoted, Some(19), "the hog's thread was not demoted");
    assert_ne!(
        nice_of(tid),
        Some(19),
        "the hog's thread kept the lowest priority"
    );
}

/// One goroutine held still while the rest run: a parked one (its readier waits until the
/// hold ends) and a hog with no safepoints (its P alone is stopped, its thread suspended).
#[test]
fn suspend_goroutine_holds_one_goroutine_while_the_others_run() {
    let _serial = serial();
    let rt = runtime(2);
    // A parked receiver.
    let (tx, rx) = gort_sched::chan::<u32>(0);
    let got = Arc::new(AtomicU64::new(0));
    let (id_tx, id_rx) = mpsc::channel();
    {
        let got = got.clone();
        rt.go(move || {
            let _ = id_tx.send(gort_sched::goid().unwrap());
            got.store(u64::from(rx.recv().unwrap()), Ordering::SeqCst);
        })
        .unwrap();
    }
    let receiver = id_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let held = rt.suspend_goroutine(receiver).expect("the receiver exists");
    let snap = held.snapshot();
    assert_eq!(snap.id, receiver);
    assert_eq!(
        snap.status,
        gort_sched::GStatus::Waiting(gort_sched::WaitReason::ChanReceive)
    );
    assert!(snap.pc != 0 && snap.stack.as_ref().is_some_and(|s| s.contains(&snap.sp)));
    let sender = std::thread::spawn(move || tx.send(7).unwrap());
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(got.load(Ordering::SeqCst), 0, "a held goroutine ran");
    drop(held);
    sender.join().unwrap();
    wait_until(Duration::from_secs(20), || got.load(Ordering::SeqCst) == 7);
    assert_eq!(
        got.load(Ordering::SeqCst),
        7,
        "the receiver never ran after the hold"
    );

    // A hog without safepoints, next to a goroutine that keeps counting.
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 2]> = Arc::default();
    let (id_tx, id_rx) = mpsc::channel();
    for i in 0..2 {
        let (stop, counts, id_tx) = (stop.clone(), counts.clone(), id_tx.clone());
        rt.go(move || {
            let _ = id_tx.send((i, gort_sched::goid().unwrap()));
            while !stop.load(Ordering::Relaxed) {
                counts[i].fetch_add(1, Ordering::Relaxed);
                if i == 1 {
                    gort_sched::gosched();
                }
            }
        })
        .unwrap();
    }
    let ids: Vec<(usize, u64)> = (0..2).map(|_| id_rx.recv().unwrap()).collect();
    let hog = ids.iter().find(|e| e.0 == 0).unwrap().1;
    while counts.iter().any(|c| c.load(Ordering::Relaxed) == 0) {
        std::thread::yield_now();
    }
    for _ in 0..50 {
        let held = rt.suspend_goroutine(hog).expect("the hog exists");
        assert!(
            matches!(
                held.snapshot().status,
                gort_sched::GStatus::Running {
                    suspended: true,
                    ..
                }
            ),
            "{:?}",
            held.snapshot().status
        );
        let frozen = counts[0].load(Ordering::Relaxed);
        let other = counts[1].load(Ordering::Relaxed);
        let start = Instant::now();
        while counts[1].load(Ordering::Relaxed) == other && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::yield_now();
        }
        assert!(
            counts[1].load(Ordering::Relaxed) > other,
            "the other goroutine stopped too"
        );
        assert_eq!(
            counts[0].load(Ordering::Relaxed),
            frozen,
            "the held hog ran"
        );
    }
    stop.store(true, Ordering::SeqCst);
    assert!(rt.suspend_goroutine(u64::MAX).is_none());
}

/// The retire hook runs on the thread holding the P, for a spare whose loan ends and for a P
/// retired by a GOMAXPROCS shrink.
#[test]
fn on_p_retire_runs_on_the_holder_for_spares_and_retired_ps() {
    let _serial = serial();
    let seen: Arc<Mutex<Vec<(usize, bool)>>> = Arc::default();
    let rt = {
        let seen = seen.clone();
        // SAFETY: the goroutines hold no thread-bound values across scheduling points.
        unsafe {
            gort_sched::Builder::new()
                .gomaxprocs(1)
                .on_p_retire(move |id| {
                    let on_m = std::thread::current()
                        .name()
                        .is_some_and(|n| n.starts_with("gort-m"));
                    seen.lock().unwrap().push((id, on_m));
                })
                .build()
        }
        .unwrap()
    };
    let rx = ticker(&rt, Duration::from_millis(2), 20);
    let (started, stop) = (Arc::default(), Arc::default());
    hog(&rt, &started, &stop);
    wait_flag(&started);
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the ticker stopped");
    stop.store(true, Ordering::SeqCst);
    wait_until(Duration::from_secs(10), || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|&(id, _)| id >= gort_sched::MAX_PROCS)
    });
    // A shrink retires P1 while a goroutine runs on it: two goroutines spin (no scheduling
    // point) until both run — one on each P — and until released after the shrink began.
    // When P1's M is slow to start, sysmon may lend a spare to the second spinner instead and
    // P1 is idle at the shrink (retired at once, with no holder): try again, a few times.
    let rt = Arc::new(rt);
    for _attempt in 0..5 {
        rt.gomaxprocs(2);
        let running = Arc::new(AtomicU64::new(0));
        let release = Arc::new(AtomicBool::new(false));
        for _ in 0..2 {
            let (running, release) = (running.clone(), release.clone());
            rt.go(move || {
                running.fetch_add(1, Ordering::SeqCst);
                while !release.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
            .unwrap();
        }
        wait_until(Duration::from_secs(20), || {
            running.load(Ordering::SeqCst) >= 2
        });
        let rt2 = rt.clone();
        let shrink = std::thread::spawn(move || rt2.gomaxprocs(1));
        std::thread::sleep(Duration::from_millis(20));
        release.store(true, Ordering::SeqCst);
        shrink.join().unwrap();
        if seen.lock().unwrap().contains(&(1, true)) {
            break;
        }
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|&(id, _)| id >= gort_sched::MAX_PROCS),
        "no spare reported its retirement: {seen:?}"
    );
    assert!(
        seen.contains(&(1, true)),
        "the shrink's P1 was not reported: {seen:?}"
    );
    assert!(
        seen.iter().all(|&(_, on_m)| on_m),
        "the hook ran off the holder: {seen:?}"
    );
}

/// A goroutine preempted at a safepoint goes to the back of the global queue (Go's order),
/// so a goroutine queued there from a thread runs at the first preemption — not after 61
/// of them, as when the preempted loop went back to the local queue and the global queue
/// waited for the fairness tick (over half a second at one preemption per 10 ms).
#[test]
fn a_preempted_loop_lets_globally_queued_goroutines_run_at_once() {
    let _serial = serial();
    let rt = runtime(1);
    let stop = Arc::new(AtomicBool::new(false));
    let counts = counting_loops::<1>(&rt, &stop);
    while counts[0].load(Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    let ran = Arc::new(AtomicBool::new(false));
    {
        let ran = ran.clone();
        rt.go(move || ran.store(true, Ordering::SeqCst)).unwrap();
    }
    wait_until(Duration::from_secs(20), || ran.load(Ordering::SeqCst));
    let requests = rt.sysmon_stats().preempt_requests;
    stop.store(true, Ordering::SeqCst);
    assert!(ran.load(Ordering::SeqCst), "the queued goroutine never ran");
    assert!(
        requests <= 5,
        "the queued goroutine waited for {requests} preemptions of the loop"
    );
}

/// Stops of the world racing GOMAXPROCS resizes and goroutines spawned from a plain thread:
/// no hang, and nothing runs while the world is stopped (Ps grown during a stop stay idle).
#[test]
fn stops_of_the_world_race_resizes_and_spawns_from_threads() {
    let _serial = serial();
    let rt = Arc::new(runtime(2));
    let stop = Arc::new(AtomicBool::new(false));
    let counts = counting_loops::<3>(&rt, &stop);
    let resizer = {
        let (rt, stop) = (rt.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                rt.gomaxprocs(1 + n % 3);
                n += 1;
            }
        })
    };
    let spawner = {
        let (rt, stop) = (rt.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = rt.go(|| {});
                std::thread::yield_now();
            }
        })
    };
    let (done_tx, done_rx) = mpsc::channel();
    let coordinator = {
        let (rt, counts) = (rt.clone(), counts.clone());
        std::thread::spawn(move || {
            for round in 0..100 {
                let world = rt.stop_the_world("test");
                let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                std::thread::sleep(Duration::from_micros(200));
                let after: Vec<u64> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                world.start();
                assert_eq!(
                    before, after,
                    "round {round}: a goroutine ran while stopped"
                );
            }
            let _ = done_tx.send(());
        })
    };
    let finished = done_rx.recv_timeout(Duration::from_secs(60));
    stop.store(true, Ordering::SeqCst);
    assert!(
        finished.is_ok(),
        "stops of the world hung against resizes and spawns"
    );
    coordinator.join().unwrap();
    resizer.join().unwrap();
    spawner.join().unwrap();
}

/// Goroutine dumps taken while goroutines are spawned from a thread and exit all the time:
/// no hang, no crash, and every goroutine header is well formed.
#[test]
fn dumps_race_goroutines_starting_and_exiting() {
    let _serial = serial();
    let rt = Arc::new(runtime(2));
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (rt, stop) = (rt.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // Tens of thousands at a time: enough churn, and a bounded heap.
                if rt.num_goroutine() < 50_000 {
                    let _ = rt.go(gort_sched::gosched);
                } else {
                    std::thread::yield_now();
                }
            }
        })
    };
    let dumps = rt.block_on(|| (0..50).map(|_| gort_sched::stack(true)).collect::<Vec<_>>());
    stop.store(true, Ordering::SeqCst);
    churn.join().unwrap();
    for dump in &dumps {
        for header in dump.lines().filter(|l| l.starts_with("goroutine ")) {
            let rest = header.strip_prefix("goroutine ").unwrap();
            let (id, state) = rest.split_once(' ').expect("id and state");
            assert!(id.parse::<u64>().is_ok(), "bad header {header:?}");
            assert!(
                state.starts_with('[') && state.ends_with("]:"),
                "bad header {header:?}"
            );
        }
    }
}

/// A goroutine readied into the `runnext` of a P whose goroutine then spins without a
/// safepoint is still taken by the other P: a thief leaves a running victim's `runnext`
/// alone for a few microseconds (its M usually switches to it at once), but takes it in its
/// last round if it is still there — it must not wait for sysmon's slice and spare
/// (`without_sysmon` tries three times).
#[test]
fn a_goroutine_left_in_a_spinning_ps_runnext_is_stolen_without_sysmon() {
    let _serial = serial();
    without_sysmon(
        "the goroutine in runnext waited for sysmon each time",
        |rt| {
            let ran = Arc::new(AtomicBool::new(false));
            let r = ran.clone();
            let (tx, rx) = mpsc::channel();
            rt.go(move || {
                let r2 = r.clone();
                // Into this P's `runnext`; this goroutine then keeps the P without yielding.
                gort_sched::go(move || r2.store(true, Ordering::SeqCst));
                spin_until(|| r.load(Ordering::SeqCst));
                let _ = tx.send(());
            })
            .unwrap();
            rx.recv_timeout(Duration::from_secs(20))
                .expect("the spinning goroutine never finished");
            assert!(
                ran.load(Ordering::SeqCst),
                "the goroutine in runnext never ran"
            );
        },
    );
}

/// Goroutines queued on a P whose goroutine spins without a safepoint are taken by the M of
/// the other P even though that M is busy (it always has a yielding goroutine to run, so it
/// never steals): on its fair rounds (every 61st) it finds the spinning P's tick where it
/// was at its previous look and takes the queue — half the ring, then `runnext`. Without
/// that they would wait for sysmon's slice and spare (the kernel can keep an M that holds a
/// P off its CPU for milliseconds, with the same effect; `without_sysmon` tries three times).
#[test]
fn goroutines_queued_behind_a_spinning_goroutine_are_taken_by_a_busy_p() {
    let _serial = serial();
    without_sysmon("the queued goroutines waited for sysmon each time", |rt| {
        let stop = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        {
            let (stop, ran) = (stop.clone(), ran.clone());
            rt.go(move || {
                let yielding = Arc::new(AtomicBool::new(false));
                let y = yielding.clone();
                gort_sched::go(move || {
                    y.store(true, Ordering::SeqCst);
                    while !stop.load(Ordering::Relaxed) {
                        gort_sched::gosched();
                    }
                });
                // We keep this P without yielding, so the yielder runs on the other one.
                spin_until(|| yielding.load(Ordering::SeqCst));
                // Into this P's ring (the first, pushed out of `runnext` by the second).
                for _ in 0..2 {
                    let r = ran.clone();
                    gort_sched::go(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                    });
                }
                spin_until(|| ran.load(Ordering::SeqCst) >= 2);
                let _ = tx.send(yielding.load(Ordering::SeqCst));
            })
            .unwrap();
        }
        let yielded = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the spinning goroutine never finished");
        stop.store(true, Ordering::Relaxed);
        assert!(yielded, "the yielder never ran on the other P");
        assert_eq!(
            ran.load(Ordering::SeqCst),
            2,
            "the queued goroutines never ran"
        );
    });
}
