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
    /// The heap size below which no cycle starts by itself (Go's 4 MiB minimum heap).
    pub min_heap: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            procs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            checkmark: false,
            min_heap: 4 << 20,
        }
    }
}

impl Config {
    /// The defaults, with `GODEBUG`'s `gccheckmark=1` honoured when given (read from the
    /// value passed, so tests never need to set the environment).
    pub fn from_godebug(godebug: Option<&str>) -> Result<Config, GcError> {
        let mut c = Config::default();
        if let Some(s) = godebug {
            for kv in s.split(',').filter(|kv| !kv.is_empty()) {
                if let Some(v) = kv.strip_prefix("gccheckmark=") {
                    c.checkmark = match v {
                        "0" => false,
                        "1" => true,
                        _ => {
                            return Err(GcError::BadSetting(format!(
                                "GODEBUG: gccheckmark={v}: want 0 or 1"
                            )));
                        }
                    };
                }
            }
        }
        Ok(c)
    }

    /// The defaults, with the process's `GODEBUG` honoured.
    pub fn from_env() -> Result<Config, GcError> {
        Config::from_godebug(std::env::var("GODEBUG").ok().as_deref())
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
