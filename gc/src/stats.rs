//! What the collector counts: cycles, pauses (Go's 256-entry `PauseNs` ring), live heap.

/// Entries of the pause rings (Go's `MemStats.PauseNs` / `PauseEnd`).
pub const PAUSE_RING: usize = 256;

/// A snapshot of the collector's statistics (Go's `MemStats` GC fields).
#[derive(Debug, Clone)]
pub struct GcStats {
    /// Completed cycles (Go's `NumGC`).
    pub num_gc: u32,
    /// Cycles started by [`crate::Heap::gc`] / [`crate::Scope::gc`] (`NumForcedGC`).
    pub num_forced_gc: u32,
    /// Per cycle, the sum of its stop-the-world pauses in nanoseconds, at index
    /// `(cycle - 1) % 256` (Go's `PauseNs`).
    pub pause_ns: [u64; PAUSE_RING],
    /// When each of those pauses ended, nanoseconds since the Unix epoch (`PauseEnd`).
    pub pause_end: [u64; PAUSE_RING],
    /// All pauses since the heap was made (`PauseTotalNs`).
    pub pause_total_ns: u64,
    /// When the last cycle ended, nanoseconds since the Unix epoch (`LastGC`).
    pub last_gc: u64,
    /// Bytes the last mark found reachable, plus those allocated while it ran (born marked,
    /// they survive its sweep): Go's `heapMarked`.
    pub heap_marked: u64,
    /// The heap goal of the next cycle (`NextGC`).
    pub next_gc: u64,
    /// The longest single stop-the-world pause seen, in nanoseconds.
    pub max_pause_ns: u64,
    /// The share of the CPUs (`procs`) the collector has used since the heap was made
    /// (Go's `GCCPUFraction`): mark workers, assists, and pauses times `procs`.
    pub gc_cpu_fraction: f64,
    /// Nanoseconds mutators have spent in mark assists since the heap was made.
    pub assist_ns: u64,
    /// The heap (Go's `heapLive`) when the last mark ended, against its goal.
    pub last_heap_live: u64,
    /// The goal the last cycle paced for.
    pub last_goal: u64,
    /// Per cycle, at the same index as `pause_ns`: the heap (`heapLive`) when its mark
    /// ended, and the goal it paced for (pacing tests compare them).
    pub cycle_heap_live: [u64; PAUSE_RING],
    /// See `cycle_heap_live`.
    pub cycle_goal: [u64; PAUSE_RING],
    /// Per cycle: its `heap_marked` (what the next cycle's goal grows from).
    pub cycle_heap_marked: [u64; PAUSE_RING],
}

impl Default for GcStats {
    fn default() -> Self {
        GcStats {
            num_gc: 0,
            num_forced_gc: 0,
            pause_ns: [0; PAUSE_RING],
            pause_end: [0; PAUSE_RING],
            pause_total_ns: 0,
            last_gc: 0,
            heap_marked: 0,
            next_gc: 0,
            max_pause_ns: 0,
            gc_cpu_fraction: 0.0,
            assist_ns: 0,
            last_heap_live: 0,
            last_goal: 0,
            cycle_heap_live: [0; PAUSE_RING],
            cycle_goal: [0; PAUSE_RING],
            cycle_heap_marked: [0; PAUSE_RING],
        }
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn unix_nanos() -> u64 {
    if cfg!(miri) {
        // Miri's isolation has no wall clock; the rings' end times read 0 there.
        return 0;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Everything a `runtime.ReadMemStats` needs from the heap: the allocator's figures (Go's
/// `HeapAlloc`, `HeapSys`, `HeapIdle`, `HeapInuse`, `HeapReleased`, `HeapObjects`, `Mallocs`,
/// `Frees`, `TotalAlloc`, `MSpan*`, `MCache*`, `BySize`) and the collector's (`NumGC`,
/// `PauseNs`, `PauseEnd`, `PauseTotalNs`, `LastGC`, `NextGC`, `GCCPUFraction`, `NumForcedGC`).
#[derive(Debug, Clone)]
pub struct MemStats {
    /// The allocator's statistics.
    pub heap: gort_alloc::HeapStats,
    /// The collector's statistics.
    pub gc: GcStats,
}
