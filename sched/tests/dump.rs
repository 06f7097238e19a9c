//! Goroutine dumps: `stack(all)` names each goroutine's functions and state in Go's format,
//! and the deadlock report (a child process, exit status 2) lists every goroutine with its
//! frames. Also: goroutines inside blocking calls or asleep on timers are not a deadlock.
#![cfg(not(loom))]

mod common;

use common::{child_mode, run_child, runtime};
use gort_sched::{chan, go, park};
use std::sync::mpsc;
use std::time::Duration;

#[inline(never)]
fn dump_probe_receiver(rx: gort_sched::Receiver<u8>) {
    let _ = rx.recv();
}

#[inline(never)]
fn dump_probe_sleeper() {
    gort_sched::time::sleep(Duration::from_secs(30));
    // Not a tail call, so the probe keeps its frame in optimised builds too.
    std::hint::black_box(());
}

#[inline(never)]
fn dump_probe_parker() {
    loop {
        park();
    }
}

/// The section of `dump` for the goroutine whose header says `state` and whose frames
/// mention `function`.
fn section<'a>(dump: &'a str, state: &str, function: &str) -> Option<&'a str> {
    dump.split("\n\n").find(|s| {
        s.lines()
            .next()
            .is_some_and(|h| h.ends_with(&format!("[{state}]:")))
            && s.contains(function)
    })
}

#[test]
fn a_dump_of_three_known_goroutines_names_their_functions_and_states() {
    let rt = runtime(2);
    let (keep_tx, rx) = chan::<u8>(0);
    rt.go(move || dump_probe_receiver(rx)).unwrap();
    rt.go(dump_probe_sleeper).unwrap();
    rt.go(dump_probe_parker).unwrap();
    let (tx, out) = mpsc::channel();
    rt.go(move || {
        // Let the three reach their waits.
        gort_sched::time::sleep(Duration::from_millis(50));
        let _ = tx.send(gort_sched::stack(true));
    })
    .unwrap();
    let dump = out.recv_timeout(Duration::from_secs(20)).expect("no dump");
    let me = dump.split("\n\n").next().unwrap();
    assert!(
        me.starts_with("goroutine ") && me.lines().next().unwrap().ends_with("[running]:"),
        "the caller comes first, running:\n{dump}"
    );
    // An optimised build inlines the caller's closure into `call_inline`, and its
    // line-tables-only debug information names an inlined frame without its path
    // (`{closure#1}`): there the caller's frame is known by its file and line.
    let own_frame = me
        .contains("dump::a_dump_of_three_known_goroutines_names_their_functions_and_states")
        || (!cfg!(debug_assertions)
            && me
                .lines()
                .any(|l| l.starts_with('\t') && l.contains("tests/dump.rs:")));
    assert!(own_frame, "the caller's own frames are missing:\n{dump}");
    for (state, function) in [
        ("chan receive", "dump_probe_receiver"),
        ("sleep", "dump_probe_sleeper"),
        ("parked", "dump_probe_parker"),
    ] {
        let s = section(&dump, state, function)
            .unwrap_or_else(|| panic!("no `{state}` goroutine in {function}:\n{dump}"));
        // Go's frame lines: the function, then a tab, file:line and an offset.
        assert!(
            s.lines()
                .any(|l| l.starts_with('\t') && l.contains("tests/dump.rs:")),
            "no file:line for {function}:\n{s}"
        );
    }
    drop(keep_tx);
}

#[test]
fn stack_without_all_is_the_callers_alone_and_works_on_a_thread() {
    let rt = runtime(1);
    rt.go(dump_probe_parker).unwrap();
    let own = rt.block_on(|| gort_sched::stack(false));
    assert_eq!(own.matches("goroutine ").count(), 1, "{own}");
    let thread = gort_sched::stack(false);
    assert!(thread.starts_with("thread [running]:"), "{thread}");
    assert!(
        thread.contains("stack_without_all_is_the_callers_alone"),
        "{thread}"
    );
    let mut buf = [0u8; 64];
    let n = rt.block_on(move || {
        let n = gort_sched::stack_into(&mut buf, true);
        (n, buf)
    });
    assert_eq!(n.0, 64, "a dump longer than the buffer fills it");
    assert!(n.1.starts_with(b"goroutine "));
}

#[test]
fn the_deadlock_report_follows_the_message_with_each_goroutines_frames() {
    if child_mode().as_deref() == Some("deadlock-frames") {
        // SAFETY: no thread-bound values are held.
        unsafe {
            gort_sched::run(|| {
                let (keep, rx) = chan::<u8>(0);
                go(move || dump_probe_receiver(rx));
                let (_tx2, rx2) = chan::<u8>(0);
                std::mem::forget(keep);
                let _ = rx2.recv();
            })
        };
        return;
    }
    let out = run_child(
        "the_deadlock_report_follows_the_message_with_each_goroutines_frames",
        "deadlock-frames",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:"
        ),
        "{stderr}"
    );
    assert!(
        section(&stderr, "chan receive", "dump_probe_receiver").is_some(),
        "the blocked goroutine's frames are missing:\n{stderr}"
    );
}

#[test]
fn goroutines_in_blocking_calls_or_asleep_are_not_a_deadlock() {
    // SAFETY: no thread-bound values are held.
    let v = unsafe {
        gort_sched::run(|| {
            let (tx, rx) = chan::<u32>(0);
            // Sends only after a blocking call: meanwhile every other goroutine waits.
            go(move || {
                gort_sched::blocking(|| std::thread::sleep(Duration::from_millis(200)));
                tx.send(1).unwrap();
            });
            let (tx2, rx2) = chan::<u32>(0);
            // Sends only after a timer: meanwhile nothing runs at all.
            go(move || {
                gort_sched::time::sleep(Duration::from_millis(200));
                tx2.send(2).unwrap();
            });
            rx.recv().unwrap() + rx2.recv().unwrap()
        })
    };
    assert_eq!(v, 3);
}
