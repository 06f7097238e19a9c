//! The collected heap: shared state, the user's `Heap` handle, and what mutators call.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use crate::config::{Config, GcError};
use crate::finalizer::FinalizerQueue;
use std::sync::{Arc, Condvar, Mutex};

use crate::embedder::{MutatorRoots, PState};
use crate::loom::Arc as LoomArc;
use crate::mark::Marker;
use crate::mutator::{Mutator, MutatorShared};
use crate::root::RootTable;
use crate::stats::GcStats;
use crate::work::WorkPool;
use crate::world::{POLL_SCAN, World};

/// Requests to the collector thread.
#[derive(Default)]
pub(crate) struct Control {
    /// Cycles asked for by `gc()`: the collector runs one more while this exceeds the
    /// number it started since.
    pub(crate) forced_asked: u64,
    /// Cycles started / completed.
    pub(crate) started: u64,
    pub(crate) completed: u64,
    /// The heap reached its trigger.
    pub(crate) triggered: bool,
    /// The last `Heap` handle is gone.
    pub(crate) shutdown: bool,
}

/// Everything the collector's threads, mutators and roots share.
pub(crate) struct HeapShared {
    pub(crate) alloc: gort_alloc::Heap,
    pub(crate) config: Config,
    pub(crate) world: World,
    /// Marking is on: the write barrier and allocate-black shading run. Written by the
    /// collector with the world stopped; read by mutators (Relaxed: the stop's handshake
    /// orders it) and by workers.
    pub(crate) marking: AtomicBool,
    /// The current (or last) mark cycle's number; written with the world stopped.
    pub(crate) cycle: AtomicU64,
    /// Mutators registered when marking began whose roots are not scanned yet.
    pub(crate) unscanned: AtomicUsize,
    /// The root table was scanned this cycle (collector only).
    pub(crate) roots_scanned: AtomicBool,
    /// Bytes marked this cycle by every party.
    pub(crate) marked_bytes: AtomicU64,
    /// Scan work (bytes of objects scanned) this cycle by every party.
    pub(crate) scan_work: AtomicU64,
    /// Bytes of roots (handles, root-table entries, conservative words) scanned this cycle.
    pub(crate) roots_bytes: AtomicU64,
    /// The pacer (goal, trigger, assist ratio). Written by the collector at cycle ends and by
    /// `set_gc_percent` / `set_memory_limit`.
    pub(crate) pacer: Mutex<crate::pacer::Pacer>,
    /// Bytes allocated since the last mark ended, counted by mutators every 64 KiB (Go's
    /// `heapLive` is the last mark's live bytes plus this).
    pub(crate) allocated: AtomicU64,
    /// The last mark's live bytes (the pacer's `heap_marked`), for fast reads.
    pub(crate) live_base: AtomicU64,
    /// The heap goal: the current cycle's while marking, the next cycle's between cycles
    /// (written by the collector at a cycle's start and end, and by `retune` between
    /// cycles; read by mutators deciding whether to wait, `over_goal`).
    pub(crate) goal: AtomicU64,
    /// While marking: scan work owed per allocated byte, as `f64` bits (0 when none).
    pub(crate) assist_ratio: AtomicU64,
    /// Nanoseconds mutators spent in mark assists this cycle.
    pub(crate) assist_ns: AtomicU64,
    /// Nanoseconds background workers spent marking this cycle.
    pub(crate) worker_ns: AtomicU64,
    /// Nanoseconds of marking on otherwise idle CPUs this cycle (the collector beyond its
    /// share while a CPU of `procs` is free, `gc()` waiters): not counted as GC CPU, as Go
    /// does not count idle mark workers against the program.
    pub(crate) idle_ns: AtomicU64,
    /// GC CPU time since the heap was made, in nanoseconds (workers, assists, pauses × procs).
    pub(crate) gc_cpu_ns: AtomicU64,
    /// The GC CPU limiter is on: the memory limit binds and the collector used more than
    /// half of the CPUs lately; assists and idle marking stand down.
    pub(crate) limiter_on: AtomicBool,
    /// When the heap was made.
    pub(crate) born: std::time::Instant,
    pub(crate) pool: WorkPool,
    pub(crate) roots: RootTable,
    pub(crate) finalizers: std::sync::Arc<FinalizerQueue>,
    /// Live-bytes figure at which the next cycle starts.
    pub(crate) trigger: AtomicU64,
    /// A trigger was signalled and not yet served (keeps mutators off the control lock).
    pub(crate) trigger_sent: AtomicBool,
    pub(crate) ctl: Mutex<Control>,
    pub(crate) ctl_cv: Condvar,
    pub(crate) stats: Mutex<GcStats>,
    /// `Heap` handles alive (users and mutators); the threads stop when it reaches zero.
    pub(crate) owners: AtomicUsize,
    /// The collector's and finalizer's threads, joined at shutdown.
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Back-pointer to the `Arc` holding `self` (set once at construction).
    pub(crate) this: std::sync::OnceLock<std::sync::Weak<HeapShared>>,
}

impl HeapShared {
    /// An id for this heap (its address), unique among live heaps.
    pub(crate) fn id(&self) -> usize {
        self as *const HeapShared as usize
    }

    pub(crate) fn arc(&self) -> Arc<HeapShared> {
        self.this
            .get()
            .and_then(|w| w.upgrade())
            .expect("runtime: heap state used after it was freed")
    }

    #[inline(always)]
    pub(crate) fn is_marking(&self) -> bool {
        self.marking.load(Ordering::Relaxed)
    }

    /// Panic unless `addr` is an object of this heap (or the zero-size address).
    #[inline]
    pub(crate) fn check_ours(&self, addr: usize, what: &str) {
        if addr != gort_alloc::zero_size_addr().as_ptr() as usize && !self.alloc.contains(addr) {
            foreign(what, addr);
        }
    }

    pub(crate) fn register_mutator(&self) -> LoomArc<MutatorShared> {
        let cache = self.alloc.cache();
        let mut reg = self
            .world
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Under the registry lock, which a stop of the world holds while it starts a cycle:
        // a mutator attached after that start has no roots to scan this cycle.
        let cycle = self.cycle.load(Ordering::Relaxed);
        let m = LoomArc::new(MutatorShared::new(Some(cache), cycle));
        reg.push(m.clone());
        m
    }

    pub(crate) fn unregister_mutator(&self, m: &LoomArc<MutatorShared>) {
        // Outside any scope: its buffers were flushed when its last scope ended.
        self.world.detach(m, || {
            // Under the registry lock (see `register_mutator`): a mutator counted as
            // unscanned when this cycle began no longer needs its (empty) roots scanned.
            if self.is_marking()
                && m.scanned.load(Ordering::Relaxed) != self.cycle.load(Ordering::Relaxed)
            {
                m.scanned
                    .store(self.cycle.load(Ordering::Relaxed), Ordering::Relaxed);
                self.mutator_scanned();
            }
        });
        // SAFETY: detached: no collector holds it and its thread is leaving; nobody else
        // touches `local` any more. The cache goes back to the heap here.
        let local = unsafe { &mut *m.local.get() };
        drop(local.p.cache.take());
    }

    /// One more mutator's roots are scanned.
    pub(crate) fn mutator_scanned(&self) {
        if self.unscanned.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.world.poll.fetch_and(!POLL_SCAN, Ordering::Relaxed);
            self.pool.wake_all();
        }
    }

    /// Add what a marking party did to the cycle's totals.
    pub(crate) fn account(&self, mk: &Marker<'_>) {
        if mk.marked_bytes > 0 {
            self.marked_bytes
                .fetch_add(mk.marked_bytes, Ordering::Relaxed);
        }
        if mk.scan_work > 0 {
            self.scan_work.fetch_add(mk.scan_work, Ordering::Relaxed);
        }
    }

    /// Go's `heapLive`: the last mark's live bytes plus what was allocated since.
    pub(crate) fn heap_live(&self) -> u64 {
        self.live_base.load(Ordering::Relaxed) + self.allocated.load(Ordering::Relaxed)
    }

    /// Bytes the runtime holds besides the heap's live objects, for the memory limit (Go's
    /// non-heap memory: `mappedReady - heapFree - heapAlloc`): span and cache records, and
    /// the unused room in spans in use (fragmentation). Free pages are left out: the
    /// scavenger returns them as the retained target says.
    pub(crate) fn overhead(&self) -> u64 {
        let st = self.alloc.stats();
        (st.heap_inuse + st.mspan_sys + st.mcache_sys).saturating_sub(self.heap_live())
    }

    /// A mutator owes `debt` bytes of scan work: do it (or what the pool has). Returns the
    /// scan work done, or the whole debt when it is forgiven: while the GC CPU limiter is
    /// on, and when nothing is left to scan while the heap is still under its goal (the
    /// caller waits for the mark's end instead when it is over: [`Self::over_goal`]).
    #[cold]
    pub(crate) fn assist(&self, debt: u64) -> u64 {
        if self.limiter_on.load(Ordering::Relaxed) {
            return debt; // forgiven: the limiter caps the collector's CPU
        }
        let t = std::time::Instant::now();
        let mut mk = Marker::new(&self.alloc, &self.pool);
        let done = mk.work_bytes(debt);
        self.account(&mk);
        let ns = t.elapsed().as_nanos() as u64;
        self.assist_ns.fetch_add(ns, Ordering::Relaxed);
        self.gc_cpu_ns.fetch_add(ns, Ordering::Relaxed);
        // Nothing left to scan: the debt cannot be paid, and need not be while there is
        // room under the goal.
        if done < debt && self.pool.is_done() && !self.over_goal() {
            debt
        } else {
            done
        }
    }

    /// Shade a mutator's roots (its handle block, and its recorded stack when it scans
    /// conservatively). The caller keeps the mutator still (it is the mutator at a
    /// safepoint, or the collector holding it).
    pub(crate) fn scan_mutator_roots(&self, roots: &MutatorRoots) {
        let mut mk = Marker::with_local(&self.alloc, &self.pool, Vec::new());
        mk.shade_all(roots.handles.iter().copied());
        let mut words = roots.handles.len();
        if roots.stack.is_some() {
            words += roots.stack_words.len();
            // Any word may be a pointer: `mark_batch` skips those that lie in no published
            // object, and resolves interior pointers.
            mk.shade_all(roots.stack_words.iter().copied());
        }
        mk.publish();
        self.account(&mk);
        self.roots_bytes
            .fetch_add(words as u64 * 8, Ordering::Relaxed);
    }

    /// Shade what a processor's barrier buffer holds; with `publish`, hand all its grey work
    /// to the pool.
    pub(crate) fn flush_barrier(&self, p: &mut PState, publish: bool) {
        if p.wbuf.is_empty() && (!publish || p.grey.is_empty()) {
            return;
        }
        let grey = std::mem::take(&mut p.grey);
        let mut mk = Marker::with_local(&self.alloc, &self.pool, grey);
        mk.shade_all(p.wbuf.drain(..));
        if publish {
            mk.publish();
        }
        self.account(&mk);
        p.grey = mk.local;
    }

    /// Shade `addr` from a thread that may be no mutator (a root being made or cloned).
    pub(crate) fn shade_foreign(&self, addr: usize) {
        if !self.pool.begin_foreign() {
            return;
        }
        let mut mk = Marker::with_local(&self.alloc, &self.pool, Vec::new());
        mk.shade_all([addr]);
        mk.publish();
        self.account(&mk);
        self.pool.idle();
    }

    /// Change the pacer's settings, recompute the trigger, and wake the collector if the
    /// heap is already past it.
    pub(crate) fn retune<R>(&self, f: impl FnOnce(&mut crate::pacer::Pacer) -> R) -> R {
        let overhead = self.overhead();
        let r = {
            let mut p = self.pacer.lock().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut p);
            self.trigger.store(p.trigger(overhead), Ordering::Relaxed);
            let goal = p.goal(overhead);
            if !self.is_marking() {
                self.goal.store(goal, Ordering::Relaxed);
            }
            self.stats.lock().unwrap_or_else(|e| e.into_inner()).next_gc = goal;
            r
        };
        // Mutators waiting at the old goal re-check against the new one.
        self.pool.wake_all();
        self.maybe_trigger();
        r
    }

    /// The heap reached its goal (the current cycle's while marking, the next one's before
    /// it starts) and the limiter does not hold the collector back: a mutator that
    /// allocates now must wait for the collector rather than run further ahead (Go's
    /// assists park; its trigger runs `gcStart` on the allocating goroutine).
    #[inline]
    pub(crate) fn over_goal(&self) -> bool {
        self.heap_live() >= self.goal.load(Ordering::Relaxed)
            && !self.limiter_on.load(Ordering::Relaxed)
    }

    /// Wake the collector if the heap reached its trigger.
    pub(crate) fn maybe_trigger(&self) {
        if self.is_marking() || self.trigger_sent.load(Ordering::Relaxed) {
            return;
        }
        if self.heap_live() >= self.trigger.load(Ordering::Relaxed)
            && !self.trigger_sent.swap(true, Ordering::Relaxed)
        {
            let mut c = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
            c.triggered = true;
            self.ctl_cv.notify_all();
        }
    }

    /// Ask for a full cycle that starts after this call and wait until it has marked and
    /// the heap is swept; help with marking and sweeping meanwhile.
    pub(crate) fn collect_and_wait(&self) {
        let target = {
            let mut c = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
            if c.shutdown {
                return;
            }
            c.forced_asked = c.forced_asked.max(c.started) + 1;
            self.ctl_cv.notify_all();
            c.forced_asked
        };
        loop {
            {
                let c = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
                if c.completed >= target || c.shutdown {
                    break;
                }
            }
            if self.is_marking()
                && !self.limiter_on.load(Ordering::Relaxed)
                && crate::collector::idle_cpu_for_waiter(self)
            {
                // An idle worker: this thread runs no user code while it waits, and a CPU
                // of `procs` is free beside the running mutators and the background workers.
                let t = std::time::Instant::now();
                let mut mk = Marker::new(&self.alloc, &self.pool);
                let n = mk.work(4096);
                self.account(&mk);
                let ns = t.elapsed().as_nanos() as u64;
                self.idle_ns.fetch_add(ns, Ordering::Relaxed);
                if n > 0 {
                    continue;
                }
            }
            let c = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
            if c.completed >= target || c.shutdown {
                break;
            }
            drop(
                self.ctl_cv
                    .wait_timeout(c, std::time::Duration::from_millis(1))
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
        // Go's runtime.GC sweeps the whole heap before returning.
        self.alloc.sweep_all();
    }
}

#[cold]
#[inline(never)]
fn foreign(what: &str, addr: usize) -> ! {
    panic!(
        "runtime: {what}: {addr:#x} is not in this mutator's heap (a handle of another heap, \
         or a slot outside the GC heap, which cannot hold a pointer)"
    )
}

/// A collected heap: create it, attach threads as mutators, collect.
///
/// Cheap to clone (all clones are the same heap). The collector's threads (one collector
/// that is also the fractional mark worker, dedicated mark workers when `procs` allows, one
/// finalizer thread) stop when the last clone — mutators count — is dropped; the memory goes
/// when the last [`crate::Root`] is dropped too. Drop glue of objects still alive then does
/// not run (as in Go, a program's exit finalizes nothing).
pub struct Heap {
    pub(crate) shared: Arc<HeapShared>,
}

impl std::fmt::Debug for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heap")
            .field("live_bytes", &self.shared.alloc.live_bytes())
            .finish_non_exhaustive()
    }
}

// SAFETY: a `Heap` handle is a reference-counted pointer to the heap's shared state, outside
// the heap: no pointer word the collector must trace.
unsafe impl crate::Trace for Heap {
    const PTRS: crate::PtrMap = crate::PtrMap::EMPTY;
}

impl Clone for Heap {
    fn clone(&self) -> Self {
        self.shared.owners.fetch_add(1, Ordering::Relaxed);
        Heap {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        // AcqRel: the last owner sees every other owner's work before shutting down.
        if self.shared.owners.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.shut_down();
        }
    }
}

impl HeapShared {
    fn shut_down(&self) {
        {
            let mut c = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
            c.shutdown = true;
            self.ctl_cv.notify_all();
        }
        self.pool.wake_all();
        self.finalizers.shut_down();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let me = std::thread::current().id();
        for t in threads {
            // The last owner may be a finalizer's drop glue, on the finalizer thread.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Heap {
    /// A new heap with the given settings, and its collector and finalizer threads.
    pub fn new(config: Config) -> Result<Heap, GcError> {
        if config.procs == 0 {
            return Err(GcError::NoProcs);
        }
        let finalizers = std::sync::Arc::new(FinalizerQueue::default());
        let alloc =
            gort_alloc::Heap::with_drop_queue(finalizers.clone()).map_err(GcError::Alloc)?;
        let pacer = crate::pacer::Pacer {
            gogc: config.gogc,
            memory_limit: config.memory_limit,
            min_heap: config.min_heap as u64,
            ..crate::pacer::Pacer::default()
        };
        let trigger = pacer.trigger(0);
        let goal = pacer.goal(0);
        let shared = Arc::new(HeapShared {
            alloc,
            config,
            world: World::new(),
            marking: AtomicBool::new(false),
            cycle: AtomicU64::new(0),
            unscanned: AtomicUsize::new(0),
            roots_scanned: AtomicBool::new(false),
            marked_bytes: AtomicU64::new(0),
            scan_work: AtomicU64::new(0),
            roots_bytes: AtomicU64::new(0),
            pacer: Mutex::new(pacer),
            allocated: AtomicU64::new(0),
            live_base: AtomicU64::new(0),
            goal: AtomicU64::new(goal),
            assist_ratio: AtomicU64::new(0),
            assist_ns: AtomicU64::new(0),
            worker_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            gc_cpu_ns: AtomicU64::new(0),
            limiter_on: AtomicBool::new(false),
            born: std::time::Instant::now(),
            pool: WorkPool::new(),
            roots: RootTable::default(),
            finalizers,
            trigger: AtomicU64::new(trigger),
            trigger_sent: AtomicBool::new(false),
            ctl: Mutex::new(Control::default()),
            ctl_cv: Condvar::new(),
            stats: Mutex::new(GcStats {
                next_gc: goal,
                ..GcStats::default()
            }),
            owners: AtomicUsize::new(1),
            threads: Mutex::new(Vec::new()),
            this: std::sync::OnceLock::new(),
        });
        let _ = shared.this.set(Arc::downgrade(&shared));
        let heap = Heap { shared };
        heap.spawn_threads()?;
        Ok(heap)
    }

    fn spawn_threads(&self) -> Result<(), GcError> {
        let mut threads = Vec::new();
        let s = self.shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("gc-collector".into())
                .spawn(move || crate::collector::run(&s))
                .map_err(GcError::Thread)?,
        );
        let s = self.shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("gc-finalizer".into())
                .spawn(move || s.finalizers.run(&s.alloc))
                .map_err(GcError::Thread)?,
        );
        let plan = crate::collector::WorkerPlan::for_procs(self.shared.config.procs);
        for i in 0..plan.dedicated {
            let s = self.shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("gc-worker-{i}"))
                    .spawn(move || crate::collector::dedicated_worker(&s))
                    .map_err(GcError::Thread)?,
            );
        }
        *self
            .shared
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = threads;
        Ok(())
    }

    pub(crate) fn from_arc(shared: Arc<HeapShared>) -> Heap {
        shared.owners.fetch_add(1, Ordering::Relaxed);
        Heap { shared }
    }

    /// Attach this thread as a mutator.
    ///
    /// # Errors
    /// [`GcError::AlreadyAttached`] when this thread already has a `Mutator` of this heap.
    pub fn attach(&self) -> Result<Mutator, GcError> {
        Mutator::attach(self)
    }

    /// Run a full collection and wait for it (Go's `runtime.GC`), from any thread that is not
    /// inside a scope of this heap (use [`crate::Scope::gc`] there).
    ///
    /// # Panics
    /// When called inside a scope of this heap: the collection would wait for this thread to
    /// reach a safepoint, and it never would.
    pub fn gc(&self) {
        assert!(
            !crate::mutator::in_scope_of(self.shared.id()),
            "runtime: Heap::gc called inside a scope of the same heap; call Scope::gc instead"
        );
        self.shared.collect_and_wait();
    }

    /// Set GOGC (`None`: off) and return the previous setting (Go's
    /// `debug.SetGCPercent`). Takes effect for the next trigger.
    pub fn set_gc_percent(&self, gogc: Option<u32>) -> Option<u32> {
        self.shared.retune(|p| std::mem::replace(&mut p.gogc, gogc))
    }

    /// Set the soft memory limit in bytes (`u64::MAX`: none) and return the previous one
    /// (Go's `debug.SetMemoryLimit`).
    pub fn set_memory_limit(&self, bytes: u64) -> u64 {
        self.shared
            .retune(|p| std::mem::replace(&mut p.memory_limit, bytes))
    }

    /// Collect, then return every free page to the OS (Go's `debug.FreeOSMemory`).
    pub fn free_os_memory(&self) {
        self.gc();
        self.shared.alloc.release_free_pages();
    }

    /// Whether a cycle is marking right now (a snapshot; for tests and diagnostics).
    pub fn is_marking(&self) -> bool {
        self.shared.is_marking()
    }

    /// The collector's statistics.
    pub fn stats(&self) -> GcStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The allocator's and the collector's statistics together (Go's `ReadMemStats`).
    pub fn mem_stats(&self) -> crate::stats::MemStats {
        crate::stats::MemStats {
            heap: self.shared.alloc.stats(),
            gc: self.stats(),
        }
    }

    /// The allocator underneath (its statistics, `live_bytes`, `release_free_pages`).
    pub fn alloc_heap(&self) -> &gort_alloc::Heap {
        &self.shared.alloc
    }

    /// Live `Root`s.
    pub fn root_count(&self) -> usize {
        self.shared.roots.len()
    }

    /// Dead objects waiting for the finalizer thread.
    pub fn pending_finalizers(&self) -> usize {
        self.shared.finalizers.pending()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{Config, Heap, PtrMap, Root, Slot, Trace};

    struct Pair {
        a: Slot<Pair>,
        b: Slot<Pair>,
        v: u64,
    }

    // SAFETY: `a` and `b` are the pointer words.
    unsafe impl Trace for Pair {
        const PTRS: PtrMap = PtrMap::EMPTY
            .with(std::mem::offset_of!(Pair, a), PtrMap::ONE)
            .with(std::mem::offset_of!(Pair, b), PtrMap::ONE);
    }

    /// The handle block, the barrier buffer, roots and a whole cycle, small enough for Miri:
    /// handles pushed and truncated by nested scopes, slots written while marking (the
    /// barrier buffer filled and flushed), a forced cycle with checkmark.
    #[test]
    fn handles_barrier_buffer_and_a_cycle() {
        let h = Heap::new(Config {
            procs: 1,
            checkmark: true,
            min_heap: 1 << 40,
            ..Config::default()
        })
        .unwrap();
        let mut m = h.attach().unwrap();
        let n = if cfg!(miri) { 40 } else { 2000 };
        let root = m.scope(|s| {
            let first = s.alloc(Pair {
                a: Slot::null(),
                b: Slot::null(),
                v: 0,
            });
            let mut prev = first;
            for i in 1..n {
                let p = s.scope(|s| {
                    let p = s.alloc(Pair {
                        a: Slot::null(),
                        b: Slot::null(),
                        v: i,
                    });
                    prev.a.set(s, Some(p));
                    p.b.set(s, Some(prev));
                    p.v
                });
                prev = prev.a.get(s).unwrap();
                assert_eq!(prev.v, p);
            }
            Root::new(s, first)
        });
        h.gc();
        m.scope(|s| {
            let mut cur = Some(root.get(s));
            let mut i = 0;
            while let Some(c) = cur {
                assert_eq!(c.v, i);
                if i > 0 {
                    assert_eq!(c.b.get(s).unwrap().v, i - 1);
                }
                i += 1;
                cur = c.a.get(s);
            }
            assert_eq!(i, n);
        });
        assert!(h.stats().num_gc >= 1);
    }
}
