//! The pacer: when to start a cycle so that marking ends near the heap goal, and how much
//! mark work an allocating mutator owes while marking runs (Go 1.18's pacer, `mgcpacer.go`,
//! as arithmetic over plain numbers so a model can check it).
//!
//! - **Goal.** `heap_marked + (heap_marked + roots) * GOGC / 100`, at least the minimum heap
//!   scaled by GOGC (Go's `heapMinimum`: 4 MiB at GOGC=100), and at most what the memory
//!   limit leaves for the heap. GOGC=off: only the memory limit sets a goal.
//! - **Trigger.** Start early enough that the background workers (25% of the CPUs) plus
//!   assists finish marking as the heap reaches the goal: the *runway* is the allocation the
//!   program does while the last cycle's scan work gets done, from the measured ratio of
//!   allocation rate to scan rate (`cons_mark`): `runway = cons_mark * (1 - u) / u * scan`
//!   with `u` = 30% (25% background + 5% assists). The trigger is `goal - runway`, kept
//!   within [70%, 95%] of the way from `heap_marked` to the goal.
//! - **Assists.** While marking, each allocated byte owes `scan_remaining / heap_remaining`
//!   bytes of scan work (Go's `assistWorkPerByte`), the room left counted as at least
//!   64 KiB: near and past the goal, allocation pays for nearly all remaining work at once.

/// The share of CPU marking aims to use: the background workers' 25% plus 5% of assists
/// (Go's `gcGoalUtilization`).
pub const GOAL_UTILIZATION: f64 = 0.30;
/// Go's minimum heap goal at GOGC=100.
pub const MIN_HEAP: u64 = 4 << 20;
/// Trigger bounds, as a fraction of the way from `heap_marked` to the goal.
pub const MIN_TRIGGER: f64 = 0.7;
/// See [`MIN_TRIGGER`].
pub const MAX_TRIGGER: f64 = 0.95;
/// Headroom the memory limit keeps below itself (Go's 3%).
pub const LIMIT_HEADROOM_PERCENT: u64 = 3;

/// The pacer's inputs and memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacer {
    /// GOGC; `None` is `off`.
    pub gogc: Option<u32>,
    /// The soft memory limit in bytes (`u64::MAX`: none).
    pub memory_limit: u64,
    /// The minimum heap at GOGC=100 (scaled by GOGC).
    pub min_heap: u64,
    /// Bytes the last mark found reachable.
    pub heap_marked: u64,
    /// Bytes of pointerful objects the last mark scanned (its scan work).
    pub last_heap_scan: u64,
    /// Bytes of roots (handles and root-table entries) the last mark scanned.
    pub roots: u64,
    /// Measured ratio of allocation to scan work during marking, smoothed.
    pub cons_mark: f64,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            gogc: Some(100),
            memory_limit: u64::MAX,
            min_heap: MIN_HEAP,
            heap_marked: 0,
            last_heap_scan: 0,
            roots: 0,
            cons_mark: 1.0,
        }
    }
}

impl Pacer {
    /// The heap goal GOGC alone sets (`u64::MAX` when off).
    pub fn gogc_goal(&self) -> u64 {
        match self.gogc {
            None => u64::MAX,
            Some(g) => {
                let grow = (self.heap_marked as u128 + self.roots as u128) * g as u128 / 100;
                let goal = (self.heap_marked as u128 + grow).min(u64::MAX as u128) as u64;
                let min = (self.min_heap as u128 * g as u128 / 100).min(u64::MAX as u128) as u64;
                goal.max(min)
            }
        }
    }

    /// The heap goal the memory limit allows, given `overhead` bytes the runtime holds
    /// besides the heap (metadata, retained free pages it cannot give back at once).
    pub fn limit_goal(&self, overhead: u64) -> u64 {
        if self.memory_limit == u64::MAX {
            return u64::MAX;
        }
        let headroom = self.memory_limit / 100 * LIMIT_HEADROOM_PERCENT;
        self.memory_limit
            .saturating_sub(headroom)
            .saturating_sub(overhead)
    }

    /// The heap goal: the smaller of the two.
    pub fn goal(&self, overhead: u64) -> u64 {
        self.gogc_goal().min(self.limit_goal(overhead))
    }

    /// Whether the memory limit, not GOGC, sets the goal.
    pub fn limit_binds(&self, overhead: u64) -> bool {
        self.limit_goal(overhead) < self.gogc_goal()
    }

    /// The heap size (in the allocator's live-bytes measure) at which the next cycle
    /// starts.
    pub fn trigger(&self, overhead: u64) -> u64 {
        let goal = self.goal(overhead);
        if goal == u64::MAX {
            return u64::MAX;
        }
        if self.heap_marked >= goal {
            return goal;
        }
        let span = (goal - self.heap_marked) as f64;
        let lo = self.heap_marked + (span * MIN_TRIGGER) as u64;
        let mut hi = self.heap_marked + (span * MAX_TRIGGER) as u64;
        // Go: a large heap may start as late as one minimum heap before its goal.
        if goal > self.min_heap && goal - self.min_heap > hi {
            hi = goal - self.min_heap;
        }
        let hi = hi.max(lo);
        let runway = self.runway();
        let t = if runway >= goal as f64 {
            lo
        } else {
            goal - runway as u64
        };
        t.clamp(lo, hi)
    }

    /// Bytes the program is expected to allocate while the next mark does its work.
    pub fn runway(&self) -> f64 {
        self.cons_mark * (1.0 - GOAL_UTILIZATION) / GOAL_UTILIZATION
            * (self.last_heap_scan + self.roots) as f64
    }

    /// Scan work each allocated byte owes while marking: the scan work expected to remain
    /// over the heap growth left before the goal (at least 64 KiB).
    ///
    /// `heap_at_start` is the heap when the cycle began: before any cycle has measured its
    /// scan work, the whole of it is the estimate (Go's worst case).
    pub fn assist_ratio(
        &self,
        heap_live: u64,
        scan_done: u64,
        overhead: u64,
        heap_at_start: u64,
    ) -> f64 {
        let goal = self.goal(overhead);
        if goal == u64::MAX {
            return 0.0;
        }
        let expected = if self.last_heap_scan == 0 {
            heap_at_start
        } else {
            self.last_heap_scan + self.roots
        };
        let remaining_work = expected.saturating_sub(scan_done).max(expected / 10 + 1) as f64;
        // Past the goal the remaining room is the floor: allocation pays nearly all the
        // remaining work at once, so the heap overshoots by little.
        let remaining_heap = goal.saturating_sub(heap_live).max(64 << 10) as f64;
        remaining_work / remaining_heap
    }

    /// A cycle ended: `marked` reachable bytes, of which `heap_scan` were scanned,
    /// `roots` bytes of roots; the program allocated `allocated` bytes while `scan_work`
    /// was done, with the mark workers at `utilization` of the CPUs.
    pub fn end_cycle(
        &mut self,
        marked: u64,
        heap_scan: u64,
        roots: u64,
        allocated: u64,
        scan_work: u64,
        utilization: f64,
    ) {
        self.heap_marked = marked;
        self.last_heap_scan = heap_scan;
        self.roots = roots;
        if scan_work > 0 {
            let u = utilization.clamp(0.01, 0.99);
            let current = allocated as f64 * u / (scan_work as f64 * (1.0 - u));
            // Smoothed over two cycles, leaning to the larger (Go keeps the max of the
            // last two): an underestimate starts marking too late.
            self.cons_mark = current
                .max((self.cons_mark + current) / 2.0)
                .clamp(1e-3, 1e3);
        }
    }
}

/// Parse GOGC: a non-negative integer percentage or `off` (Go also reads a negative value
/// as off).
pub fn parse_gogc(s: &str) -> Result<Option<u32>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match t.parse::<i64>() {
        Ok(v) if v < 0 => Ok(None),
        Ok(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| format!("GOGC={s}: too large; want a percentage such as 100, or off")),
        Err(_) => Err(format!(
            "GOGC={s}: not a number; want a percentage such as 100 (the default), or off"
        )),
    }
}

/// Parse GOMEMLIMIT: bytes as an integer with an optional unit suffix — `B`, `KiB`, `MiB`,
/// `GiB`, `TiB` (powers of 1024, as Go) — or `off`.
pub fn parse_memory_limit(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("off") {
        return Ok(u64::MAX);
    }
    let bad = || {
        format!(
            "GOMEMLIMIT={s}: want a byte count with an optional unit B, KiB, MiB, GiB or TiB \
             (e.g. 512MiB), or off"
        )
    };
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("GOMEMLIMIT={s}: too large"))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_go_syntax() {
        assert_eq!(parse_gogc("100"), Ok(Some(100)));
        assert_eq!(parse_gogc("off"), Ok(None));
        assert_eq!(parse_gogc("-1"), Ok(None));
        assert!(parse_gogc("lots").unwrap_err().contains("GOGC=lots"));
        assert_eq!(parse_memory_limit("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory_limit("1GiB"), Ok(1 << 30));
        assert_eq!(parse_memory_limit("4096"), Ok(4096));
        assert_eq!(parse_memory_limit("10B"), Ok(10));
        assert_eq!(parse_memory_limit("off"), Ok(u64::MAX));
        for bad in ["", "MiB", "12MB", "1.5GiB", "-3", "99999999999999TiB"] {
            let e = parse_memory_limit(bad).unwrap_err();
            assert!(e.starts_with(&format!("GOMEMLIMIT={bad}")), "{e}");
        }
    }

    #[test]
    fn goal_follows_gogc_and_the_limit() {
        let mut p = Pacer {
            heap_marked: 100 << 20,
            ..Pacer::default()
        };
        assert_eq!(p.goal(0), 200 << 20);
        p.gogc = Some(50);
        assert_eq!(p.goal(0), 150 << 20);
        p.gogc = None;
        assert_eq!(p.goal(0), u64::MAX);
        assert_eq!(p.trigger(0), u64::MAX);
        p.memory_limit = 300 << 20;
        assert!(p.limit_binds(0));
        assert_eq!(p.goal(0), (300 << 20) - (300 << 20) / 100 * 3);
        p.heap_marked = 0;
        p.gogc = Some(100);
        p.memory_limit = u64::MAX;
        assert_eq!(p.goal(0), MIN_HEAP, "the minimum heap");
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Against a model written from the formulas: goal, trigger bounds, assist ratio.
        #[test]
        fn pacer_matches_the_model(
            marked in 0u64..(1 << 36),
            scan_frac in 0.0f64..1.0,
            roots in 0u64..(1 << 24),
            gogc in proptest::option::of(0u32..1000),
            limit in proptest::option::of(1u64..(1 << 38)),
            cons in 0.01f64..10.0,
            live_frac in 0.0f64..2.0,
            done_frac in 0.0f64..1.5,
        ) {
            let p = Pacer {
                gogc,
                memory_limit: limit.unwrap_or(u64::MAX),
                min_heap: MIN_HEAP,
                heap_marked: marked,
                last_heap_scan: (marked as f64 * scan_frac) as u64,
                roots,
                cons_mark: cons,
            };
            // Model: goal.
            let gogc_goal = match gogc {
                None => u64::MAX,
                Some(g) => (marked as u128 + (marked as u128 + roots as u128) * g as u128 / 100)
                    .max(MIN_HEAP as u128 * g as u128 / 100) as u64,
            };
            let limit_goal = match limit {
                None => u64::MAX,
                Some(l) => l.saturating_sub(l / 100 * 3),
            };
            let goal = gogc_goal.min(limit_goal);
            prop_assert_eq!(p.goal(0), goal);
            // Trigger: never above the goal; within [70%, 95%] of the way (or a min heap
            // before the goal) when the goal is above the marked heap.
            let t = p.trigger(0);
            prop_assert!(t <= goal);
            if goal != u64::MAX && goal > marked {
                let span = (goal - marked) as f64;
                let lo = marked + (span * MIN_TRIGGER) as u64;
                prop_assert!(t >= lo, "trigger {} below {}", t, lo);
                let hi = (marked + (span * MAX_TRIGGER) as u64).max(goal.saturating_sub(MIN_HEAP));
                prop_assert!(t <= hi.max(lo));
                // More runway (a faster allocator) never starts later.
                let faster = Pacer { cons_mark: cons * 2.0, ..p.clone() };
                prop_assert!(faster.trigger(0) <= t);
            }
            // Assist ratio: non-negative, and no smaller when the heap is closer to the goal.
            if goal != u64::MAX {
                let live = (goal as f64 * live_frac) as u64;
                let done = ((p.last_heap_scan + roots) as f64 * done_frac) as u64;
                let r = p.assist_ratio(live, done, 0, marked);
                prop_assert!(r >= 0.0 && r.is_finite());
                let closer = p.assist_ratio(live.saturating_add(1 << 20), done, 0, marked);
                prop_assert!(closer >= r * 0.999, "{} < {}", closer, r);
            }
        }
    }
}
