//! Helpers shared by the integration tests: building runtimes and running child processes.
#![allow(dead_code)]

use std::process::{Command, Output};

/// A runtime with `procs` Ps.
pub fn runtime(procs: usize) -> gort_sched::Runtime {
    // SAFETY: the test goroutines hold no thread-bound values across scheduling points.
    unsafe { gort_sched::Builder::new().gomaxprocs(procs).build() }.unwrap()
}

/// Re-runs this test binary with only `test` selected and `GORT_TEST_CHILD=mode` set, for
/// behaviour that ends the process. Under qemu-user (no binfmt_misc here) the child is started
/// through the emulator explicitly.
pub fn run_child(test: &str, mode: &str) -> Output {
    let exe = std::env::current_exe().unwrap();
    let args = ["--exact", test, "--nocapture", "--test-threads=1"];
    let direct = Command::new(&exe)
        .args(args)
        .env("GORT_TEST_CHILD", mode)
        .output();
    match direct {
        Ok(out) => out,
        Err(e) if e.raw_os_error() == Some(libc_enoexec()) => Command::new("qemu-aarch64-static")
            .arg("-L")
            .arg("/usr/aarch64-linux-gnu")
            .arg(&exe)
            .args(args)
            .env("GORT_TEST_CHILD", mode)
            .output()
            .unwrap(),
        Err(e) => panic!("cannot start child test process: {e}"),
    }
}

fn libc_enoexec() -> i32 {
    8
}

/// The child mode this process was started in, if any.
pub fn child_mode() -> Option<String> {
    std::env::var("GORT_TEST_CHILD").ok()
}
