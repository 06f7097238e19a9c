//! The collector thread: when to collect, the phases of a cycle, the background mark
//! workers, and checkmark verification.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::embedder::Embedder;
use crate::heap::HeapShared;
use crate::mark::{Marker, load_slot};
use crate::world::POLL_SCAN;

/// Background mark workers for a `procs` setting, by Go's rule (`mgcpacer.go`): 25% of the
/// CPUs, as whole dedicated workers when rounding is within 30% of the goal, the rest as a
/// fractional worker that marks for a share of wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerPlan {
    /// Threads that mark flat out while marking is on.
    pub dedicated: usize,
    /// Share of wall time the fractional worker marks (0: none).
    pub fractional: f64,
}

/// The share of CPU the background workers aim for (Go's `gcBackgroundUtilization`).
pub const BACKGROUND_UTILIZATION: f64 = 0.25;

impl WorkerPlan {
    /// Go's `gcControllerState.startCycle` arithmetic.
    pub fn for_procs(procs: usize) -> WorkerPlan {
        let procs = procs.max(1);
        let total = procs as f64 * BACKGROUND_UTILIZATION;
        let mut dedicated = (total + 0.5) as usize;
        let err = dedicated as f64 / total - 1.0;
        let mut fractional = 0.0;
        if !(-0.3..=0.3).contains(&err) {
            if dedicated as f64 > total {
                dedicated -= 1;
            }
            fractional = (total - dedicated as f64) / procs as f64;
        }
        WorkerPlan {
            dedicated,
            fractional,
        }
    }
}

/// The collector thread's loop: wait for a trigger or a forced request, run a cycle, sweep.
pub(crate) fn run(h: &HeapShared) {
    loop {
        let forced = {
            let mut c = h.ctl.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if c.shutdown {
                    return;
                }
                if c.forced_asked > c.started || c.triggered {
                    break;
                }
                c = h
                    .ctl_cv
                    .wait_timeout(c, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let forced = c.forced_asked > c.started;
            c.triggered = false;
            c.started += 1;
            forced
        };
        cycle(h, forced);
        sweep_in_background(h);
    }
}

/// Sweep what the cycle left until done or until a new cycle is asked for.
fn sweep_in_background(h: &HeapShared) {
    let mut n = 0u32;
    // The collector's thread does not allocate: the spans it frees it zeroes for their next
    // taker (`sweep_one_zeroing`), work the allocating threads would do otherwise.
    while h.alloc.sweep_one_zeroing() {
        n += 1;
        if n.is_multiple_of(64) {
            let c = h.ctl.lock().unwrap_or_else(|e| e.into_inner());
            if c.shutdown || c.forced_asked > c.started || c.triggered {
                return;
            }
        }
    }
    // Swept: the overhead (span room, metadata) is known again; re-aim the trigger.
    h.retune(|_| ());
}

/// Pauses of one cycle.
#[derive(Default)]
struct Pauses {
    sum: Duration,
    max: Duration,
    /// The stop that began marking and the one that ended it (gctrace's clock columns).
    first: Duration,
    last: Duration,
}

impl Pauses {
    fn add(&mut self, d: Duration) {
        if self.sum.is_zero() {
            self.first = d;
        }
        self.last = d;
        self.sum += d;
        self.max = self.max.max(d);
    }
}

/// What one cycle measured, for the pacer, the statistics and gctrace.
struct CycleReport {
    forced: bool,
    pauses: Pauses,
    mark_wall: Duration,
    live_start: u64,
    live_end: u64,
    goal: u64,
    /// The pacer's settings for the next cycle, made at mark termination.
    next: NextCycle,
}

/// Recompute the limiter: on while the memory limit binds and the collector used more than
/// half of the CPUs since the last look (at least 10 ms ago).
struct Limiter {
    at: Instant,
    cpu: u64,
}

impl Limiter {
    fn new(h: &HeapShared) -> Limiter {
        Limiter {
            at: Instant::now(),
            cpu: h.gc_cpu_ns.load(Ordering::Relaxed),
        }
    }

    fn update(&mut self, h: &HeapShared, binds: bool) {
        let dt = self.at.elapsed();
        if dt < Duration::from_millis(10) {
            return;
        }
        let cpu = h.gc_cpu_ns.load(Ordering::Relaxed);
        let frac = (cpu - self.cpu) as f64 / (dt.as_nanos() as f64 * h.config.procs as f64);
        h.limiter_on.store(binds && frac > 0.5, Ordering::Relaxed);
        self.at = Instant::now();
        self.cpu = cpu;
    }
}

/// One collection: sweep termination, concurrent mark, mark termination, then the sweep is
/// left to the background and to allocation.
fn cycle(h: &HeapShared, forced: bool) {
    // The previous cycle's sweep must be over before marking starts; finish it here, with
    // the world running, so the stop below does no heap-sized work.
    h.alloc.sweep_all();
    let overhead = h.overhead();
    let (goal, binds) = {
        let p = h.pacer.lock().unwrap_or_else(|e| e.into_inner());
        (p.goal(overhead), p.limit_binds(overhead))
    };
    h.goal.store(goal, Ordering::Relaxed);
    let mut pauses = Pauses::default();
    let standalone = crate::world::Standalone::new(&h.world);
    let e: &dyn Embedder = &standalone;
    let live_start = h.heap_live();
    for c in [
        &h.marked_bytes,
        &h.scan_work,
        &h.roots_bytes,
        &h.assist_ns,
        &h.worker_ns,
        &h.idle_ns,
    ] {
        c.store(0, Ordering::Relaxed);
    }

    // Sweep termination and the start of marking (world stopped).
    let t = Instant::now();
    e.stop_the_world();
    // SAFETY: the world is stopped: every registered mutator is parked at a safepoint or
    // held in a blocking region, so no thread is inside a method of a cache of this heap
    // (mutators allocate only while running; a detached mutator's cache is already gone).
    unsafe { h.alloc.start_mark() };
    let cycle = h.cycle.load(Ordering::Relaxed) + 1;
    h.cycle.store(cycle, Ordering::Relaxed);
    h.roots_scanned.store(false, Ordering::Relaxed);
    let mutators = e.mutator_count();
    h.unscanned.store(mutators, Ordering::Relaxed);
    h.pool.open();
    h.marking.store(true, Ordering::Relaxed);
    if mutators > 0 {
        h.world.poll.fetch_or(POLL_SCAN, Ordering::Relaxed);
    }
    let released = e.start_the_world();
    pauses.add(released - t);
    // Mutators that reached the goal before marking began wait for this (`over_goal`).
    h.pool.wake_all();

    // Concurrent mark, and mark termination when nothing grey is left.
    let plan = WorkerPlan::for_procs(h.config.procs);
    let mark_start = Instant::now();
    let mut busy = Duration::ZERO;
    let mut limiter = Limiter::new(h);
    let mut mk = Marker::new(&h.alloc, &h.pool);
    let mut unmarked = None;
    let live_end;
    let next;
    loop {
        // The assist ratio from the work left and the room left.
        {
            let p = h.pacer.lock().unwrap_or_else(|e| e.into_inner());
            let done = h.scan_work.load(Ordering::Relaxed) + mk.scan_work;
            let r = p.assist_ratio(h.heap_live(), done, overhead, live_start);
            h.assist_ratio.store(r.to_bits(), Ordering::Relaxed);
        }
        limiter.update(h, binds);
        if !h.roots_scanned.load(Ordering::Relaxed) {
            let mut addrs = Vec::new();
            h.roots.for_each(|a| addrs.push(a));
            h.roots_bytes
                .fetch_add(addrs.len() as u64 * 8, Ordering::Relaxed);
            mk.shade_all(addrs);
            mk.publish();
            h.roots_scanned.store(true, Ordering::Relaxed);
        }
        if h.unscanned.load(Ordering::Acquire) > 0 {
            e.scan_blocked(cycle, &mut |roots| {
                h.scan_mutator_roots(roots);
                h.mutator_scanned();
            });
        }
        let idle_cpu = !h.limiter_on.load(Ordering::Relaxed)
            && e.running_mutators() + plan.dedicated < h.config.procs;
        let under_goal = busy.as_secs_f64() <= plan.fractional * mark_start.elapsed().as_secs_f64();
        if idle_cpu || under_goal {
            let t0 = Instant::now();
            let n = mk.work(2048);
            let d = t0.elapsed();
            if under_goal {
                // The fractional worker's share: GC CPU.
                busy += d;
                h.worker_ns
                    .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
                h.gc_cpu_ns
                    .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
            } else {
                // Beyond it, on a CPU nobody else wants: idle marking.
                h.idle_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
            }
            if n > 0 {
                continue;
            }
        }
        if h.unscanned.load(Ordering::Acquire) == 0 && h.pool.is_done() {
            let t = Instant::now();
            e.stop_the_world();
            // Every mutator flushed its barrier buffer and grey work when it parked or
            // entered its blocking region, so the pool now holds all there is.
            if h.pool.close_if_done() {
                if h.config.checkmark {
                    unmarked = checkmark(h, e);
                }
                h.marking.store(false, Ordering::Relaxed);
                h.assist_ratio.store(0, Ordering::Relaxed);
                // SAFETY: the world is stopped (as above), and marking is complete: no grey
                // object is left in the pool, in a worker, or in any mutator's buffers, so
                // every object a root, a handle or a reachable slot refers to is marked and
                // the unmarked ones are unreachable.
                unsafe { h.alloc.finish_mark() };
                h.world.poll.fetch_and(!POLL_SCAN, Ordering::Relaxed);
                // Go's heapLive restarts from `heapMarked`: what marking reached, plus what
                // was allocated while it ran. Those objects were born marked (the marker
                // skips them, so it never counted them) and survive this cycle's sweep;
                // leaving them out would make the heap look smaller than it is and start
                // the next cycle early (Go counts them too: `gcmarknewobject`).
                live_end = h.heap_live();
                h.account(&mk);
                let black = live_end.saturating_sub(live_start);
                let marked = h.marked_bytes.fetch_add(black, Ordering::Relaxed) + black;
                h.live_base.store(marked, Ordering::Relaxed);
                h.allocated.store(0, Ordering::Relaxed);
                // The next goal and trigger, published before the world restarts: until
                // then mutators would measure the new heap against this cycle's goal, and
                // a collector thread taken off its CPU right after the restart would let
                // them run that far past the new one.
                next = repace(h, mark_start.elapsed(), black, overhead);
                let released = e.start_the_world();
                pauses.add(released - t);
                // Mutators over the goal wait for the end of marking (`pay_assist`).
                h.pool.wake_all();
                break;
            }
            let released = e.start_the_world();
            pauses.add(released - t);
            continue;
        }
        if idle_cpu || under_goal {
            h.pool.wait_for_work(Duration::from_millis(1));
        } else {
            // Over the fractional share: mark no more for now, but come back at once for
            // termination when the last marker goes idle with every mutator scanned
            // (`idle` and `mutator_scanned` wake the pool's waiters).
            h.pool
                .wait_until(false, Duration::from_micros(500), |done, _| {
                    done && h.unscanned.load(Ordering::Acquire) == 0
                });
        }
    }
    let mark_wall = mark_start.elapsed();
    if let Some((n, first)) = unmarked {
        // After the restart: never print while the world is stopped.
        eprintln!(
            "fatal error: gccheckmark: {n} reachable objects were left unmarked by cycle \
             {cycle} (first at {first:#x})"
        );
        std::process::abort();
    }
    finish_cycle(
        h,
        CycleReport {
            forced,
            pauses,
            mark_wall,
            live_start,
            live_end,
            goal,
            next,
        },
    );
}

/// What the pacer set for the next cycle at the end of this one's mark.
#[derive(Clone, Copy)]
struct NextCycle {
    trigger: u64,
    goal: u64,
    memory_limit: u64,
}

/// The pacer's update at the end of a mark (the world stopped): feed it what the cycle
/// measured and publish the next trigger and goal.
fn repace(h: &HeapShared, mark_wall: Duration, allocated: u64, overhead: u64) -> NextCycle {
    let marked = h.marked_bytes.load(Ordering::Relaxed);
    let scan = h.scan_work.load(Ordering::Relaxed);
    let roots = h.roots_bytes.load(Ordering::Relaxed);
    let marking_ns = h.assist_ns.load(Ordering::Relaxed)
        + h.worker_ns.load(Ordering::Relaxed)
        + h.idle_ns.load(Ordering::Relaxed);
    let wall = mark_wall.as_nanos().max(1) as f64 * h.config.procs as f64;
    let utilization = (marking_ns as f64 / wall).clamp(0.05, 1.0);
    let mut p = h.pacer.lock().unwrap_or_else(|e| e.into_inner());
    p.end_cycle(marked, scan, roots, allocated, scan, utilization);
    let next = NextCycle {
        trigger: p.trigger(overhead),
        goal: p.goal(overhead),
        memory_limit: p.memory_limit,
    };
    // Under the pacer's lock, as `retune` stores them: the two never interleave.
    h.trigger.store(next.trigger, Ordering::Relaxed);
    h.goal.store(next.goal, Ordering::Relaxed);
    next
}

/// After the world restarts: the retained target, statistics and gctrace; wake `gc()`
/// waiters and mutators waiting for this cycle to end.
fn finish_cycle(h: &HeapShared, r: CycleReport) {
    let marked = h.marked_bytes.load(Ordering::Relaxed);
    let roots = h.roots_bytes.load(Ordering::Relaxed);
    let procs = h.config.procs as u64;
    let assist_ns = h.assist_ns.load(Ordering::Relaxed);
    let worker_ns = h.worker_ns.load(Ordering::Relaxed);
    let idle_ns = h.idle_ns.load(Ordering::Relaxed);
    let pause_ns = r.pauses.sum.as_nanos() as u64;
    h.gc_cpu_ns.fetch_add(pause_ns * procs, Ordering::Relaxed);
    let NextCycle {
        goal,
        memory_limit: limit,
        ..
    } = r.next;
    // Keep the goal's worth of pages and some slack (never more than the limit allows): the
    // allocator returns pages beyond the target at once, and pages freed by this sweep are
    // wanted again within the cycle — returning them eagerly costs a fault and a TLB
    // shootdown each (Go's scavenger gets the same room by running slowly in the background).
    const SLACK: u64 = 32 << 20;
    let retain = goal
        .saturating_add(goal / 10)
        .saturating_add(SLACK)
        .min(limit / 100 * 95);
    h.alloc
        .set_retained_target(usize::try_from(retain).unwrap_or(usize::MAX));
    let now = crate::stats::unix_nanos();
    let uptime = h.born.elapsed().as_nanos().max(1) as f64 * procs as f64;
    let gc_frac = h.gc_cpu_ns.load(Ordering::Relaxed) as f64 / uptime;
    let num_gc = {
        let mut s = h.stats.lock().unwrap_or_else(|e| e.into_inner());
        let i = s.num_gc as usize % crate::stats::PAUSE_RING;
        s.pause_ns[i] = pause_ns;
        s.pause_end[i] = now;
        s.cycle_heap_live[i] = r.live_end;
        s.cycle_goal[i] = r.goal;
        s.cycle_heap_marked[i] = marked;
        s.pause_total_ns += pause_ns;
        s.max_pause_ns = s.max_pause_ns.max(r.pauses.max.as_nanos() as u64);
        s.num_gc += 1;
        if r.forced {
            s.num_forced_gc += 1;
        }
        s.last_gc = now;
        s.heap_marked = marked;
        s.next_gc = goal;
        s.gc_cpu_fraction = gc_frac;
        s.assist_ns += assist_ns;
        s.last_heap_live = r.live_end;
        s.last_goal = r.goal;
        s.num_gc
    };
    if h.config.gctrace {
        let mb = |b: u64| b >> 20;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let cpu_ms = |ns: u64| ns as f64 / 1e6;
        eprintln!(
            "gc {num_gc} @{:.3}s {:.0}%: {:.3}+{:.2}+{:.3} ms clock, {:.3}+{:.2}/{:.2}/{:.2}+{:.3} \
             ms cpu, {}->{}->{} MB, {} MB goal, {} MB stacks, {} MB globals, {} P{}",
            h.born.elapsed().as_secs_f64(),
            gc_frac * 100.0,
            ms(r.pauses.first),
            ms(r.mark_wall),
            ms(r.pauses.last),
            cpu_ms(r.pauses.first.as_nanos() as u64 * procs),
            cpu_ms(assist_ns),
            cpu_ms(worker_ns),
            cpu_ms(idle_ns),
            cpu_ms(r.pauses.last.as_nanos() as u64 * procs),
            mb(r.live_start),
            mb(r.live_end),
            mb(marked),
            mb(r.goal),
            mb(roots.saturating_sub(h.roots.len() as u64 * 8)),
            mb(h.roots.len() as u64 * 8),
            procs,
            if r.forced { " (forced)" } else { "" },
        );
    }
    h.trigger_sent.store(false, Ordering::Relaxed);
    // Mutators waiting for a cycle to start re-check against the new goal and trigger.
    h.pool.wake_all();
    let mut c = h.ctl.lock().unwrap_or_else(|e| e.into_inner());
    c.completed += 1;
    h.ctl_cv.notify_all();
}

/// Whether a thread waiting in `gc()` may mark: a CPU of `procs` is left beside the running
/// mutators, the dedicated workers and the collector thread's own worker.
pub(crate) fn idle_cpu_for_waiter(h: &HeapShared) -> bool {
    let plan = WorkerPlan::for_procs(h.config.procs);
    let running = crate::world::Standalone::new(&h.world).running_mutators();
    running + plan.dedicated + 1 < h.config.procs
}

/// A dedicated mark worker: marks flat out whenever marking is on.
pub(crate) fn dedicated_worker(h: &HeapShared) {
    loop {
        if h.ctl.lock().unwrap_or_else(|e| e.into_inner()).shutdown {
            return;
        }
        if h.is_marking() {
            let t = Instant::now();
            let mut mk = Marker::new(&h.alloc, &h.pool);
            let n = mk.work(4096);
            h.account(&mk);
            let ns = t.elapsed().as_nanos() as u64;
            h.worker_ns.fetch_add(ns, Ordering::Relaxed);
            h.gc_cpu_ns.fetch_add(ns, Ordering::Relaxed);
            if n > 0 {
                continue;
            }
        }
        h.pool
            .wait_for_work(Duration::from_millis(if h.is_marking() { 1 } else { 20 }));
    }
}

/// Checkmark verification, world stopped: traverse everything reachable from the roots and
/// the mutators' handles and count objects the concurrent mark left white.
fn checkmark(h: &HeapShared, e: &dyn Embedder) -> Option<(usize, usize)> {
    let mut stack: Vec<usize> = Vec::new();
    h.roots.for_each(|a| stack.push(a));
    e.for_each_stopped(&mut |roots| {
        stack.extend_from_slice(&roots.handles);
        if roots.stack.is_some() {
            stack.extend_from_slice(&roots.stack_words);
        }
    });
    let mut seen = std::collections::HashSet::new();
    let mut bad = 0usize;
    let mut first = 0usize;
    while let Some(a) = stack.pop() {
        let Some(o) = h.alloc.find_object(a) else {
            continue;
        };
        if !seen.insert(o.addr()) {
            continue;
        }
        if !o.is_marked() {
            if bad == 0 {
                first = o.addr();
            }
            bad += 1;
        }
        o.for_each_pointer_slot(|s| {
            // SAFETY: `s` is a pointer word of an allocated object (reachable, and nothing is
            // freed while the world is stopped).
            let v = unsafe { load_slot(s) };
            if v != 0 {
                stack.push(v);
            }
        });
        // SAFETY: allocated (as above); only the allocator writes the header word.
        if let Some(h) = unsafe { o.header() } {
            // SAFETY: every header this collector writes is a `&'static TypeDesc`.
            let desc = unsafe { &*(h as *const crate::desc::TypeDesc) };
            if let Some(trace) = desc.trace {
                // SAFETY: the payload holds an initialised value of `desc`'s type; with the
                // world stopped no mutator holds a cell's lock (none is taken across a
                // safepoint), so the trace succeeds.
                let done = unsafe { trace(o.addr() + 8, &mut |v| stack.push(v)) };
                assert!(
                    done,
                    "runtime: a cell was locked while the world was stopped"
                );
            }
        }
    }
    (bad > 0).then_some((bad, first))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn worker_plan_follows_go() {
        // procs = 2: no dedicated worker, one fractional worker at 25%.
        assert_eq!(
            WorkerPlan::for_procs(2),
            WorkerPlan {
                dedicated: 0,
                fractional: 0.25
            }
        );
        assert_eq!(WorkerPlan::for_procs(4).dedicated, 1);
        assert_eq!(WorkerPlan::for_procs(4).fractional, 0.0);
        assert_eq!(WorkerPlan::for_procs(8).dedicated, 2);
        let p1 = WorkerPlan::for_procs(1);
        assert_eq!(p1.dedicated, 0);
        assert!((p1.fractional - 0.25).abs() < 1e-9);
        // 6 procs: 1.5 -> 2 dedicated is 33% over: 1 dedicated + fractional 0.5/6.
        let p6 = WorkerPlan::for_procs(6);
        assert_eq!(p6.dedicated, 1);
        assert!((p6.fractional - 0.5 / 6.0).abs() < 1e-9);
    }
}
