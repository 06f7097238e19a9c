//! Helpers shared by the integration tests: running one test again in a child process with
//! its address space capped.

/// Lower this process's address-space limit to what is mapped now plus `extra` bytes.
pub fn cap_address_space(extra: u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let vsz_pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    let lim = libc::rlimit {
        rlim_cur: vsz_pages * 4096 + extra,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass; lowering the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
}

/// Run test `name` of this binary alone in a child process with `env` set; panics unless it
/// succeeds, and returns its standard output.
pub fn run_child(name: &str, env: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
