//! Settings of a heap, and the errors the collector reports.

use std::fmt;

/// How a heap collects.
#[derive(Debug, Clone)]
pub struct Config {
    /// CPUs the collector may keep busy: background mark workers follow Go's rule of 25% of
    /// `procs` (dedicated workers plus one fractional worker). Default: the machine's CPUs.
    pub procs: usize,
    /// After each cycle, re-mark the whole heap with the world stopped and abort with a
    /// `fatal error` if the concurrent mark left a reachable object white (Go's
    /// `GODEBUG=gccheckmark=1`, which also turns it on). Slow; for tests and debugging. The
    /// re-mark allocates its visited set while the world is stopped — checkmark mode is the
    /// one exception to that rule.
    pub checkmark: bool,
    /// The heap size below which no cycle starts by itself at GOGC=100 (Go's 4 MiB minimum
    /// heap; scaled by GOGC).
    pub min_heap: usize,
    /// GOGC: the heap may grow by this percentage of the live heap (and roots) before the
    /// next cycle; `None` is `off` (only the memory limit, or a forced cycle, collects).
    pub gogc: Option<u32>,
    /// GOMEMLIMIT: a soft limit on the heap's memory in bytes (`u64::MAX`: none). Near it the
    /// collector runs more often, with its CPU share capped at 50%.
    pub memory_limit: u64,
    /// `GODEBUG=gctrace=1`: print Go's one-line summary of each cycle on stderr (after the
    /// world restarts, never while it is stopped).
    pub gctrace: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            procs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            checkmark: false,
            min_heap: 4 << 20,
            gogc: Some(100),
            memory_limit: u64::MAX,
            gctrace: false,
        }
    }
}

impl Config {
    /// The defaults, with `GODEBUG`'s `gccheckmark=1` and `gctrace=1` honoured when given
    /// (read from the value passed, so tests never need to set the environment).
    pub fn from_godebug(godebug: Option<&str>) -> Result<Config, GcError> {
        Config::from_vars(None, None, godebug)
    }

    /// The defaults with Go's variables applied, each given as its value (or `None` when
    /// unset): `GOGC` (a percentage or `off`), `GOMEMLIMIT` (bytes with an optional unit B,
    /// KiB, MiB, GiB, TiB, or `off`), `GODEBUG` (`gccheckmark=1`, `gctrace=1`; other keys are
    /// left to other subsystems).
    pub fn from_vars(
        gogc: Option<&str>,
        gomemlimit: Option<&str>,
        godebug: Option<&str>,
    ) -> Result<Config, GcError> {
        let mut c = Config::default();
        if let Some(g) = gogc {
            c.gogc = crate::pacer::parse_gogc(g).map_err(GcError::BadSetting)?;
        }
        if let Some(m) = gomemlimit {
            c.memory_limit = crate::pacer::parse_memory_limit(m).map_err(GcError::BadSetting)?;
        }
        if let Some(s) = godebug {
            for kv in s.split(',').filter(|kv| !kv.is_empty()) {
                let (key, flag) = if let Some(v) = kv.strip_prefix("gccheckmark=") {
                    ("gccheckmark", v)
                } else if let Some(v) = kv.strip_prefix("gctrace=") {
                    ("gctrace", v)
                } else {
                    continue;
                };
                let on = match flag {
                    "0" => false,
                    "1" => true,
                    v => {
                        return Err(GcError::BadSetting(format!(
                            "GODEBUG: {key}={v}: want 0 or 1"
                        )));
                    }
                };
                if key == "gccheckmark" {
                    c.checkmark = on;
                } else {
                    c.gctrace = on;
                }
            }
        }
        Ok(c)
    }

    /// The defaults, with the process's `GOGC`, `GOMEMLIMIT` and `GODEBUG` honoured.
    pub fn from_env() -> Result<Config, GcError> {
        let var = |k: &str| std::env::var(k).ok();
        Config::from_vars(
            var("GOGC").as_deref(),
            var("GOMEMLIMIT").as_deref(),
            var("GODEBUG").as_deref(),
        )
    }
}

/// What can go wrong when making a heap or attaching to it.
#[derive(Debug)]
pub enum GcError {
    /// The allocator could not reserve the heap.
    Alloc(gort_alloc::AllocError),
    /// The collector's threads could not be started.
    Thread(std::io::Error),
    /// This thread is already attached to this heap: one `Mutator` per thread and heap
    /// (a second one would wait for itself at the next stop of the world).
    AlreadyAttached,
    /// A malformed setting.
    BadSetting(String),
    /// `procs` is zero.
    NoProcs,
}

impl fmt::Display for GcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GcError::Alloc(e) => write!(f, "gc: cannot create the heap: {e}"),
            GcError::Thread(e) => write!(
                f,
                "gc: cannot start the collector's threads: {e} (raise the thread limit)"
            ),
            GcError::AlreadyAttached => write!(
                f,
                "gc: this thread is already attached to this heap; use its Mutator (one per \
                 thread and heap)"
            ),
            GcError::BadSetting(s) => write!(f, "gc: {s}"),
            GcError::NoProcs => write!(f, "gc: Config::procs must be at least 1"),
        }
    }
}

impl std::error::Error for GcError {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn go_variables_parse_with_clear_errors() {
        let c = Config::from_vars(Some("50"), Some("512MiB"), Some("gctrace=1,foo=2")).unwrap();
        assert_eq!(
            (c.gogc, c.memory_limit, c.gctrace),
            (Some(50), 512 << 20, true)
        );
        let c = Config::from_vars(Some("off"), None, Some("gccheckmark=1")).unwrap();
        assert_eq!((c.gogc, c.checkmark), (None, true));
        let e = Config::from_vars(Some("fast"), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("GOGC=fast") && e.contains("off"), "{e}");
        let e = Config::from_vars(None, Some("2GB"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("GOMEMLIMIT=2GB") && e.contains("MiB"), "{e}");
        let e = Config::from_vars(None, None, Some("gctrace=yes"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gctrace=yes"), "{e}");
    }
}
