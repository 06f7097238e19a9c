//! Helpers shared by the integration tests: building runtimes and running child processes.
#![allow(dead_code)]

use std::process::{Command, Output};

/// A runtime with `procs` Ps.
pub fn runtime(procs: usize) -> gort_sched::Runtime {
    // SAFETY: the test goroutines hold no thread-bound values across scheduling points.
    unsafe { gort_sched::Builder::new().gomaxprocs(procs).build() }.unwrap()
}

/// Re-runs this test binary with only `test` selected and `GORT_TEST_CHILD=mode` set, for
/// behaviour that ends the process. Under qemu-user (the aarch64 runner sets `GORT_QEMU`;
/// there is no binfmt_misc here) the child is started through the emulator explicitly.
pub fn run_child(test: &str, mode: &str) -> Output {
    run_child_with(test, mode, &[])
}

/// `run_child` with extra environment variables.
pub fn run_child_with(test: &str, mode: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let args = ["--exact", test, "--nocapture", "--test-threads=1"];
    let mut cmd = if std::env::var_os("GORT_QEMU").is_some() {
        let mut c = Command::new("qemu-aarch64-static");
        // The emulator hands its own environment to the guest.
        c.args(["-L", "/usr/aarch64-linux-gnu"]).arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    cmd.args(args).env("GORT_TEST_CHILD", mode);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start child test process: {e}"))
}

/// The child mode this process was started in, if any.
pub fn child_mode() -> Option<String> {
    std::env::var("GORT_TEST_CHILD").ok()
}

/// Number of OS threads of this process, from `/proc/self/status`.
pub fn os_threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

/// Runs `attempt` on a fresh runtime of two Ps, up to three times, until one run needed
/// neither a preempt request nor a spare P from sysmon; otherwise panics with `failure` and
/// the last run's sysmon statistics. Three tries, so a CI machine that kept an M off its CPU
/// for a slice once does not fail a test that says "without sysmon".
pub fn without_sysmon(failure: &str, mut attempt: impl FnMut(&gort_sched::Runtime)) {
    let mut last = None;
    for _ in 0..3 {
        let rt = runtime(2);
        attempt(&rt);
        let s = rt.sysmon_stats();
        if s.preempt_requests == 0 && s.spares_lent == 0 {
            return;
        }
        last = Some(s);
    }
    panic!("{failure}: {last:?}");
}

/// Spins without a scheduling point until `done` holds or 5 s have passed.
pub fn spin_until(done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() && start.elapsed() < std::time::Duration::from_secs(5) {
        std::hint::spin_loop();
    }
}
