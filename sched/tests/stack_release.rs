//! A stack whose pages idle Ms handed back still overflows into a recognised guard, with
//! guard regions and with mprotect guards.
#![cfg(not(loom))]

mod common;

use common::{child_mode, run_child_with, runtime};
use gort_sched::{Runtime, go, park, spawn};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One frame larger than the whole stack: the stack probe walks it page by page from the
/// top and meets the guard first.
#[inline(never)]
fn huge_frame() -> u8 {
    let buf = std::hint::black_box([7u8; 1 << 20]);
    buf[buf.len() / 2]
}

/// Runs `n` goroutines that all hold a stack at once (each parks until all have started),
/// then lets them exit.
fn burst(rt: &Runtime, n: usize) {
    rt.block_on(move || {
        let waiting = Arc::new(Mutex::new(Vec::new()));
        let open = Arc::new(AtomicBool::new(false));
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let (waiting, open) = (waiting.clone(), open.clone());
                spawn(move || {
                    waiting.lock().unwrap().push(gort_sched::current().unwrap());
                    while !open.load(Ordering::Acquire) {
                        park();
                    }
                })
            })
            .collect();
        while waiting.lock().unwrap().len() < n {
            gort_sched::gosched();
        }
        open.store(true, Ordering::Release);
        for g in waiting.lock().unwrap().drain(..) {
            g.ready();
        }
        for h in hs {
            h.join().unwrap();
        }
    });
}

/// In the child: a burst, an idle second so the idle M releases its stacks (all but a warm
/// reserve of a few hundred), then enough parked goroutines to use up the reserve, and one
/// that overflows — on a released stack.
fn overflow_on_a_released_stack() {
    let rt = runtime(1);
    burst(&rt, 4000);
    std::thread::sleep(Duration::from_secs(1));
    rt.block_on(|| {
        for _ in 0..1000 {
            go(|| {
                loop {
                    park();
                }
            });
        }
        spawn(huge_frame).join().ok()
    });
}

fn check(mode: &str, env: &[(&str, &str)]) {
    if child_mode().as_deref() == Some(mode) {
        overflow_on_a_released_stack();
        return;
    }
    if child_mode().is_some() {
        return;
    }
    let out = run_child_with(
        &format!(
            "overflow_on_a_released_stack_is_recognised_{}",
            mode.replace('-', "_")
        ),
        mode,
        env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fatal error: stack overflow"),
        "stderr: {stderr}"
    );
    assert!(stderr.contains("stack exceeds"), "stderr: {stderr}");
    assert!(!out.status.success());
}

#[test]
fn overflow_on_a_released_stack_is_recognised_probed() {
    check("probed", &[]);
}

#[test]
fn overflow_on_a_released_stack_is_recognised_mprotect() {
    check("mprotect", &[("GORT_STACK_GUARD", "mprotect")]);
}
