//! Timers: sleep, after, Timer, Ticker, after_func — from goroutines and plain threads.
#![cfg(not(loom))]

mod common;

use common::{child_mode, run_child, runtime, spin_until, without_sysmon};
use gort_sched::time::{Ticker, Timer, after, sleep};
use gort_sched::{chan, go, select, spawn};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn sleeping_goroutines_hold_no_thread_and_all_wake_after_their_time() {
    let rt = runtime(2);
    let woke = rt.block_on(|| {
        let start = Instant::now();
        let hs: Vec<_> = (0..2000)
            .map(|i| {
                spawn(move || {
                    sleep(ms(20 + (i % 5)));
                    Instant::now()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap().duration_since(start))
            .collect::<Vec<_>>()
    });
    assert!(woke.iter().all(|&d| d >= ms(20)), "a sleep ended early");
}

#[test]
fn zero_durations_fire_at_once() {
    let rt = runtime(1);
    rt.block_on(|| {
        sleep(Duration::ZERO);
        assert!(after(Duration::ZERO).recv().is_ok());
    });
    assert!(after(Duration::ZERO).recv().is_ok(), "from a plain thread");
}

#[test]
fn select_with_a_timeout() {
    let rt = runtime(2);
    let got = rt.block_on(|| {
        let (_tx, rx) = chan::<u8>(0);
        let start = Instant::now();
        let r = select! {
            recv(rx) -> _ => "value",
            recv(after(ms(30))) -> _ => "timeout",
        };
        (r, start.elapsed())
    });
    assert_eq!(got.0, "timeout");
    assert!(got.1 >= ms(30));
}

#[test]
fn a_stopped_timer_never_fires_and_stopping_twice_is_fine() {
    let rt = runtime(2);
    rt.block_on(|| {
        let t = Timer::new(ms(20));
        assert!(t.stop(), "a pending timer reports it was pending");
        assert!(!t.stop(), "a second stop reports it was not");
        sleep(ms(50));
        assert!(
            t.receiver().unwrap().try_recv().is_err(),
            "a stopped timer fired"
        );
        // Reset re-arms it.
        assert!(!t.reset(ms(5)));
        assert!(t.receiver().unwrap().recv().is_ok());
    });
}

#[test]
fn ticker_ticks_until_stopped() {
    let rt = runtime(2);
    rt.block_on(|| {
        let t = Ticker::new(ms(5));
        for _ in 0..5 {
            t.receiver().recv().unwrap();
        }
        t.stop();
        let _ = t.receiver().try_recv(); // a tick may have been sent just before the stop
        sleep(ms(30));
        assert!(t.receiver().try_recv().is_err(), "a stopped ticker ticked");
    });
}

#[test]
fn after_func_runs_in_a_goroutine_and_from_threads_on_a_thread() {
    let rt = runtime(2);
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let in_goroutine = rt.block_on(move || {
        let (tx, rx) = chan::<bool>(1);
        let _t = Timer::after_func(ms(5), move || {
            r.fetch_add(1, Ordering::SeqCst);
            let _ = tx.try_send(gort_sched::goid().is_some());
        });
        rx.recv().unwrap()
    });
    assert!(in_goroutine);
    let (tx, rx) = chan::<bool>(1);
    let _t = Timer::after_func(ms(5), move || {
        let _ = tx.try_send(gort_sched::goid().is_some());
    });
    assert_eq!(
        rx.recv(),
        Ok(false),
        "from a plain thread the function runs on a thread"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn timers_from_a_plain_thread() {
    let start = Instant::now();
    let rx = after(ms(20));
    rx.recv().unwrap();
    assert!(start.elapsed() >= ms(20));
    let t = Ticker::new(ms(2));
    for _ in 0..3 {
        t.receiver().recv().unwrap();
    }
}

#[test]
fn an_idle_ps_timer_fires_while_its_p_is_busy() {
    let rt = runtime(2);
    let (late, spun) = rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = chan::<Duration>(1);
        let s2 = stop.clone();
        // The sleeper arms its timer on this P, which then runs a goroutine that reaches no
        // scheduling point for a long time: the other P's M must run the timer.
        go(move || {
            let t = Instant::now();
            sleep(ms(10));
            let _ = tx.send(t.elapsed());
            s2.store(true, Ordering::Relaxed);
        });
        gort_sched::gosched();
        let spin_start = Instant::now();
        while !stop.load(Ordering::Relaxed) && spin_start.elapsed() < ms(2000) {
            std::hint::spin_loop();
        }
        (rx.recv().unwrap(), spin_start.elapsed())
    });
    assert!(late >= ms(10));
    assert!(
        spun < ms(2000),
        "the sleeper never woke while this P was busy (late {late:?})"
    );
}

#[test]
fn gomaxprocs_1_sleeper_wakes_among_yielders() {
    let rt = runtime(1);
    let woke = rt.block_on(|| {
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..2 {
            let stop = stop.clone();
            go(move || {
                while !stop.load(Ordering::Relaxed) {
                    gort_sched::gosched();
                }
            });
        }
        let t = Instant::now();
        sleep(ms(10));
        stop.store(true, Ordering::Relaxed);
        t.elapsed()
    });
    assert!(woke >= ms(10) && woke < ms(5000), "{woke:?}");
}

#[test]
fn a_goroutine_asleep_is_not_a_deadlock() {
    if child_mode().as_deref() == Some("sleep-main") {
        // SAFETY: no thread-bound values are held across scheduling points.
        let v = unsafe {
            gort_sched::run(|| {
                sleep(ms(30));
                7
            })
        };
        assert_eq!(v, 7);
        println!("slept");
        return;
    }
    let out = run_child("a_goroutine_asleep_is_not_a_deadlock", "sleep-main");
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid out-parameter for getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn an_idle_runtime_burns_no_cpu_with_or_without_timers() {
    if child_mode().as_deref() == Some("idle-cpu") {
        let rt = runtime(2);
        rt.block_on(|| sleep(ms(5)));
        // A far-away timer keeps the poller's deadline finite; nothing else happens.
        let _far = rt.block_on(|| Timer::new(Duration::from_secs(3600)));
        let before = cpu_time();
        std::thread::sleep(ms(400));
        let used = cpu_time() - before;
        println!("idle cpu {used:?}");
        assert!(
            used < ms(150),
            "an idle runtime used {used:?} of CPU in 400 ms"
        );
        return;
    }
    let out = run_child(
        "an_idle_runtime_burns_no_cpu_with_or_without_timers",
        "idle-cpu",
    );
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn timers_on_a_retired_p_still_fire_after_a_shrink() {
    // Sleepers arm their timers on whichever P they run on; a shrink from a plain thread
    // retires P1 while they sleep: its heap must still be run.
    let rt = Arc::new(runtime(2));
    let woke = Arc::new(AtomicUsize::new(0));
    for _ in 0..200 {
        let woke = woke.clone();
        rt.go(move || {
            sleep(ms(20));
            woke.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    std::thread::sleep(ms(5));
    rt.gomaxprocs(1);
    let start = Instant::now();
    while woke.load(Ordering::SeqCst) < 200 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(ms(1));
    }
    assert_eq!(
        woke.load(Ordering::SeqCst),
        200,
        "sleepers on a retired P never woke"
    );
}

#[test]
fn a_runtime_shut_down_with_armed_timers_and_sleepers_is_harmless() {
    let rt = runtime(2);
    let (timer, ticker) = rt.block_on(|| {
        for _ in 0..50 {
            go(|| sleep(Duration::from_secs(3600)));
        }
        (Timer::new(ms(1)), Ticker::new(ms(1)))
    });
    std::thread::sleep(ms(10));
    rt.shutdown();
    drop(rt);
    // The handles outlive the runtime: using and dropping them does nothing harmful.
    let _ = timer.stop();
    let _ = timer.reset(ms(1));
    ticker.reset(ms(2));
    ticker.stop();
    drop((timer, ticker));
}

/// A sleeper's timer on a P whose holder does not reach its scheduler (here a goroutine that
/// spins without a safepoint; in the field, a thread the kernel took off its CPU for
/// milliseconds) is run by the M of another P that is busy scheduling (every 61st round it
/// runs the due timers of the Ps whose tick stood still), not only by sysmon lending a
/// spare more than a 10 ms slice later. The sleeper parks with the hog in its P's
/// `runnext`, so the hog takes over the P that holds the timer; the hog spins until the
/// sleeper wakes. Sysmon asking the hog to yield, or lending a spare, means the timer waited
/// for a slice (`without_sysmon` tries three times).
#[test]
fn a_due_timer_on_a_p_stuck_behind_a_hog_is_run_by_a_busy_p() {
    without_sysmon(
        "the sleeper waited for sysmon behind the hog each time",
        |rt| {
            let stop = Arc::new(AtomicBool::new(false));
            {
                let stop = stop.clone();
                rt.go(move || {
                    while !stop.load(Ordering::Relaxed) {
                        gort_sched::gosched();
                    }
                })
                .unwrap();
            }
            let woke = Arc::new(AtomicBool::new(false));
            let w = woke.clone();
            rt.block_on(move || {
                let woke = w.clone();
                spawn(move || {
                    let w = woke.clone();
                    // Queued in this P's `runnext`: it runs here as soon as we park.
                    go(move || spin_until(|| w.load(Ordering::Acquire)));
                    sleep(ms(1));
                    woke.store(true, Ordering::Release);
                })
                .join()
                .unwrap();
            });
            stop.store(true, Ordering::Relaxed);
            assert!(woke.load(Ordering::Acquire));
        },
    );
}
