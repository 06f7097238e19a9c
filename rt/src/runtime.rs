//! Go's `runtime` package, as far as it needs no collector: scheduling, counts, platform
//! names, the version, goroutine dumps and locking a goroutine to its thread.
//!
//! What is not here, and why: `gc` and `read_mem_stats` come with the collector's wiring.

pub use gort_sched::{
    goexit, gomaxprocs, gosched, lock_os_thread, locked_to_thread, num_goroutine, parse_gomaxprocs,
    safepoint, unlock_os_thread,
};

/// The operating system, in Go's names (`linux`, `darwin`, `freebsd`, ...).
#[cfg(target_os = "macos")]
pub const GOOS: &str = "darwin";
/// The operating system, in Go's names (`linux`, `darwin`, `freebsd`, ...).
#[cfg(not(target_os = "macos"))]
pub const GOOS: &str = std::env::consts::OS;

/// The architecture, in Go's names (`amd64`, `arm64`, `386`, ...).
#[cfg(target_arch = "x86_64")]
pub const GOARCH: &str = "amd64";
/// The architecture, in Go's names (`amd64`, `arm64`, `386`, ...).
#[cfg(target_arch = "aarch64")]
pub const GOARCH: &str = "arm64";
/// The architecture, in Go's names (`amd64`, `arm64`, `386`, ...).
#[cfg(target_arch = "x86")]
pub const GOARCH: &str = "386";
/// The architecture, in Go's names (`amd64`, `arm64`, `386`, ...).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "x86")))]
pub const GOARCH: &str = std::env::consts::ARCH;

/// Go's `runtime.NumCPU`: the logical CPUs this process may use.
pub fn num_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Go's `runtime.Version`: the runtime's version string (`gort0.1.0`).
pub fn version() -> &'static str {
    concat!("gort", env!("CARGO_PKG_VERSION"))
}

/// Go's `runtime.Stack`: writes the calling goroutine's dump (`goroutine 7 [running]:`,
/// then a function line and a `file:line` line per frame) into `buf`, truncated to fit, and
/// returns the bytes written. With `all`, every other goroutine of the runtime follows,
/// each after a blank line, with its state (`chan receive`, `sleep`, `runnable`, ...); they
/// are walked with the world stopped for a moment. On a plain thread, the thread's own
/// frames under `thread [running]:`.
pub fn stack(buf: &mut [u8], all: bool) -> usize {
    gort_sched::stack_into(buf, all)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn names_and_counts() {
        assert!(!GOOS.is_empty() && !GOARCH.is_empty());
        #[cfg(target_os = "linux")]
        assert_eq!(GOOS, "linux");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(GOARCH, "amd64");
        assert!(num_cpu() >= 1);
        assert!(version().starts_with("gort"));
    }

    #[test]
    #[cfg_attr(miri, ignore = "backtraces call into the unwinder")]
    fn stack_truncates_and_names_the_caller() {
        let mut buf = [0u8; 16];
        assert_eq!(stack(&mut buf, false), 16);
        assert!(buf.starts_with(b"thread"));
        let mut big = vec![0u8; 1 << 16];
        let n = stack(&mut big, true);
        let text = String::from_utf8_lossy(&big[..n]);
        assert!(
            text.contains("stack_truncates_and_names_the_caller"),
            "{text}"
        );
    }

    /// Go's handling of bad GOMAXPROCS values: anything but a positive 32-bit integer means
    /// "use the CPU count".
    #[test]
    fn gomaxprocs_env_values() {
        assert_eq!(parse_gomaxprocs("4"), Some(4));
        assert_eq!(parse_gomaxprocs("1"), Some(1));
        for bad in ["", "0", "-1", "+2", " 2", "2 ", "two", "99999999999", "1.5"] {
            assert_eq!(parse_gomaxprocs(bad), None, "{bad:?}");
        }
        assert_eq!(parse_gomaxprocs("100000"), Some(gort_sched::MAX_PROCS));
    }
}
