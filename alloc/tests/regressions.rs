//! Regression tests for issue 8: the sweep protocol's edges driven as a concurrent collector
//! drives them (background sweepers across generation flips, the finalize / queued pair,
//! caches made during `start_mark`, huge objects, missing or panicking drop queues, phase
//! misuse). Each failed before its fix; hangs are bounded by generous timeouts.
#![cfg(not(loom))]

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use gort_alloc::{AllocErrorKind, DropQueue, Heap, Shape};

mod util;

/// Run `f` on a thread and fail (instead of hanging) if it does not finish within `secs`.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {secs} s"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// Mark from `roots` and trace: every object `mark` newly marks is scanned, as a collector
/// that trusts the mark bits does.
fn trace(heap: &Heap, roots: &[usize]) {
    let mut work: Vec<usize> = roots.to_vec();
    while !work.is_empty() {
        let batch = std::mem::take(&mut work);
        heap.mark_batch(batch, |o| {
            o.for_each_pointer_slot(|slot| {
                // SAFETY: `slot` is a pointer word of a marked (live) object; the test writes
                // these words only between collections, on the main thread.
                let v = unsafe { (slot as *const usize).read() };
                if v != 0 {
                    work.push(v);
                }
            })
        });
    }
}

/// Bug 1: a background `sweep_one` across a generation flip must not end sweeping for the
/// cycle (reachable children were freed after a few thousand cycles).
#[test]
fn background_sweepers_across_flips_never_free_reachable_objects() {
    const SWEEPERS: usize = 3;
    const CYCLES: usize = 5000;
    within(240, "flip against sweepers", || {
        let heap = Heap::new().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let sweepers: Vec<_> = (0..SWEEPERS)
            .map(|_| {
                let (heap, done) = (heap.clone(), done.clone());
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        if !heap.sweep_one() {
                            std::hint::spin_loop();
                        }
                    }
                })
            })
            .collect();
        let mut c = heap.cache();
        // Roots: pairs (parent with one pointer to a child holding an id).
        let mut roots: Vec<(usize, usize, u64)> = Vec::new();
        let mut id = 0u64;
        let mut lost = 0usize;
        for cycle in 0..CYCLES {
            for _ in 0..8 {
                id += 1;
                let child = c.alloc_noscan(24).unwrap().as_ptr() as usize;
                // SAFETY: 24 fresh bytes are ours.
                unsafe { (child as *mut u64).write(id) };
                let parent = c.alloc(16, Shape::ALL_POINTERS).unwrap().as_ptr() as usize;
                // SAFETY: 16 fresh bytes are ours.
                unsafe { (parent as *mut usize).write(child) };
                roots.push((parent, child, id));
                // Garbage, so spans fill, are freed and reused.
                for _ in 0..16 {
                    c.alloc_noscan(24).unwrap();
                    c.alloc(16, Shape::ALL_POINTERS).unwrap();
                }
            }
            if roots.len() > 64 {
                roots.drain(..roots.len() - 64);
            }
            // Surviving parents get new children: a parent whose mark bit is stale from the
            // last cycle is never scanned, and its new child is freed.
            for r in roots.iter_mut().step_by(3) {
                id += 1;
                let child = c.alloc_noscan(24).unwrap().as_ptr() as usize;
                // SAFETY: 24 fresh bytes are ours; the parent is live (rooted) and only this
                // thread writes it, between collections.
                unsafe {
                    (child as *mut u64).write(id);
                    (r.0 as *mut usize).write(child);
                }
                r.1 = child;
                r.2 = id;
            }
            c.flush();
            // SAFETY: the only mutator (this thread) is inside no cache method.
            unsafe { heap.start_mark() };
            let r: Vec<usize> = roots.iter().map(|r| r.0).collect();
            trace(&heap, &r);
            // SAFETY: as above; everything reachable from `roots` was marked.
            unsafe { heap.finish_mark() };
            for &(parent, child, id) in &roots {
                let ok = heap.find_object(parent).is_some()
                    && heap.find_object(child).is_some_and(|o| o.addr() == child)
                    // SAFETY: read only when found allocated; the test never frees it.
                    && unsafe { (child as *const u64).read() } == id;
                if !ok {
                    lost += 1;
                }
            }
            assert_eq!(lost, 0, "cycle {cycle}: reachable objects freed");
        }
        done.store(true, Ordering::Relaxed);
        for s in sweepers {
            s.join().unwrap();
        }
    });
}

/// The drop queue used below: checks that each object is queued once per allocation.
struct Checked {
    state: Mutex<HashMap<usize, u8>>,
    tx: Mutex<mpsc::Sender<usize>>,
    double: AtomicUsize,
}

const ALLOCATED: u8 = 1;
const QUEUED: u8 = 2;

impl DropQueue for Checked {
    fn push(&self, obj: NonNull<u8>, _size: usize) {
        let a = obj.as_ptr() as usize;
        {
            let mut st = self.state.lock().unwrap();
            if st.insert(a, QUEUED) != Some(ALLOCATED) {
                self.double.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = self.tx.lock().unwrap().send(a);
    }
}

/// Bug 2: `release_finalized` against a sweep queued an object twice or refused one that was
/// queued.
#[test]
fn release_finalized_against_sweeps_queues_each_object_once() {
    within(240, "release against sweeps", || {
        let (tx, rx) = mpsc::channel::<usize>();
        let q = Arc::new(Checked {
            state: Mutex::new(HashMap::new()),
            tx: Mutex::new(tx),
            double: AtomicUsize::new(0),
        });
        let heap = Heap::with_drop_queue(q.clone()).unwrap();
        let refused = Arc::new(AtomicUsize::new(0));
        let finalizer = {
            let (heap, q, refused) = (heap.clone(), q.clone(), refused.clone());
            std::thread::spawn(move || {
                for a in rx {
                    // The drop glue "runs", then the object is released.
                    q.state.lock().unwrap().remove(&a);
                    if !heap.release_finalized(NonNull::new(a as *mut u8).unwrap()) {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        let done = Arc::new(AtomicBool::new(false));
        let sweepers: Vec<_> = (0..2)
            .map(|_| {
                let (heap, done) = (heap.clone(), done.clone());
                std::thread::spawn(move || {
                    while !done.load(Ordering::Relaxed) {
                        heap.sweep_one();
                    }
                })
            })
            .collect();
        let fin = Shape {
            finalize: true,
            ..Shape::NOSCAN
        };
        let mut c = heap.cache();
        for _ in 0..1500 {
            for _ in 0..64 {
                let a = c.alloc(32, fin).unwrap().as_ptr() as usize;
                let prev = q.state.lock().unwrap().insert(a, ALLOCATED);
                assert_eq!(prev, None, "object {a:#x} reallocated while queued");
            }
            c.flush();
            // SAFETY: this thread is the only mutator; nothing is marked, every finalizable
            // object dies (and is only touched through the queue afterwards).
            unsafe {
                heap.start_mark();
                heap.finish_mark();
            }
        }
        done.store(true, Ordering::Relaxed);
        for s in sweepers {
            s.join().unwrap();
        }
        drop(c);
        heap.sweep_all();
        drop(heap);
        drop(q.tx.lock().unwrap().clone());
        let double = q.double.load(Ordering::Relaxed);
        // Close the queue's sender so the finalizer thread ends.
        let (dead, _) = mpsc::channel();
        *q.tx.lock().unwrap() = dead;
        finalizer.join().unwrap();
        assert_eq!(double, 0, "objects queued twice");
        assert_eq!(refused.load(Ordering::Relaxed), 0, "queued objects refused");
    });
}

/// The drop queue below: hands each object to a finalizer thread and waits until that
/// thread has released it (or reports that it could not).
struct Rendezvous {
    to_finalizer: Mutex<mpsc::Sender<usize>>,
    acks: Mutex<mpsc::Receiver<bool>>,
    failures: AtomicUsize,
}

impl DropQueue for Rendezvous {
    fn push(&self, obj: NonNull<u8>, _size: usize) {
        self.to_finalizer
            .lock()
            .unwrap()
            .send(obj.as_ptr() as usize)
            .unwrap();
        match self
            .acks
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20))
        {
            Ok(true) => {}
            _ => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Bug 2, deterministically: a consumer that releases an object the moment the queue hands
/// it over must find it queued. (The sweep used to push from inside the sweep, before
/// recording "queued", with the span claimed: the release waited for the sweep, which waited
/// for the release.)
#[test]
fn an_object_can_be_released_as_soon_as_it_is_handed_over() {
    let (tx, rx) = mpsc::channel::<usize>();
    let (ack_tx, ack_rx) = mpsc::channel::<bool>();
    let q = Arc::new(Rendezvous {
        to_finalizer: Mutex::new(tx),
        acks: Mutex::new(ack_rx),
        failures: AtomicUsize::new(0),
    });
    let heap = Heap::with_drop_queue(q.clone()).unwrap();
    let finalizer = {
        let heap = heap.clone();
        std::thread::spawn(move || {
            for a in rx {
                let ok = heap.release_finalized(NonNull::new(a as *mut u8).unwrap());
                if ack_tx.send(ok).is_err() {
                    return;
                }
            }
        })
    };
    let fin = Shape {
        finalize: true,
        ..Shape::NOSCAN
    };
    let mut c = heap.cache();
    for _ in 0..4 {
        c.alloc(32, fin).unwrap();
    }
    drop(c);
    let h = heap.clone();
    within(120, "release at hand-over", move || {
        // SAFETY: no cache exists; every object dies.
        unsafe {
            h.start_mark();
            h.finish_mark();
        }
        h.sweep_all();
    });
    assert_eq!(
        q.failures.load(Ordering::Relaxed),
        0,
        "queued objects refused"
    );
    drop(heap);
    // Close the channel so the finalizer ends.
    *q.to_finalizer.lock().unwrap() = mpsc::channel().0;
    finalizer.join().unwrap();
}

/// Bug 3: a cache created while `start_mark` runs must allocate black.
#[test]
fn caches_created_during_start_mark_allocate_black() {
    within(240, "caches during start_mark", || {
        let heap = Heap::new().unwrap();
        let mut white = 0;
        for round in 0..4000 {
            // Both threads spin to a common start; the maker then waits a little longer each
            // round, so its `Cache::new` sweeps across the whole of `start_mark`.
            let ready = Arc::new(AtomicUsize::new(0));
            let maker = {
                let (heap, ready) = (heap.clone(), ready.clone());
                std::thread::spawn(move || {
                    ready.fetch_add(1, Ordering::SeqCst);
                    while ready.load(Ordering::SeqCst) < 2 {
                        std::hint::spin_loop();
                    }
                    for _ in 0..(round % 400) {
                        std::hint::spin_loop();
                    }
                    heap.cache()
                })
            };
            while ready.load(Ordering::SeqCst) < 1 {
                std::hint::spin_loop();
            }
            ready.fetch_add(1, Ordering::SeqCst);
            // SAFETY: no thread is inside a method of a cache (the maker only creates one).
            unsafe { heap.start_mark() };
            let mut c = maker.join().unwrap();
            let p = c.alloc_noscan(64).unwrap().as_ptr() as usize;
            if !heap.is_marked(p) {
                white += 1;
            }
            drop(c);
            // SAFETY: as above.
            unsafe { heap.finish_mark() };
        }
        assert_eq!(white, 0, "objects allocated while marking were born white");
    });
}

/// Bug 4: objects larger than an arena reuse memory.
#[test]
#[cfg_attr(miri, ignore)]
fn huge_objects_reuse_their_arenas() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let mut sys = Vec::new();
    for _ in 0..6 {
        let p = c.alloc_noscan(96 << 20).unwrap().as_ptr() as usize;
        assert!(heap.find_object(p).is_some());
        c.flush();
        // SAFETY: single-threaded; the object is dead.
        unsafe {
            heap.start_mark();
            heap.finish_mark();
        }
        heap.sweep_all();
        sys.push(heap.stats().heap_sys);
    }
    assert!(
        sys.iter().all(|&s| s == sys[0]),
        "the heap grew while churning one huge object: {sys:?}"
    );
}

/// Bug 5: `finalize: true` on a heap without a drop queue is refused at allocation.
#[test]
fn finalize_without_a_drop_queue_is_refused() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let fin = Shape {
        finalize: true,
        ..Shape::NOSCAN
    };
    for size in [24, 100_000] {
        let e = c.alloc(size, fin).expect_err("refused");
        assert_eq!(e.kind(), AllocErrorKind::NoDropQueue);
        assert!(e.to_string().contains("drop queue"), "{e}");
    }
    assert!(c.alloc_noscan(24).is_ok());
}

struct Panicky(AtomicUsize);

impl DropQueue for Panicky {
    fn push(&self, _obj: NonNull<u8>, _size: usize) {
        if self.0.fetch_add(1, Ordering::Relaxed) == 0 {
            panic!("drop queue full");
        }
    }
}

/// Bug 5: a `DropQueue::push` that panics must not wedge a span.
#[test]
fn a_panicking_drop_queue_does_not_wedge_spans() {
    within(60, "panicking drop queue", || {
        let q = Arc::new(Panicky(AtomicUsize::new(0)));
        let heap = Heap::with_drop_queue(q.clone()).unwrap();
        let mut c = heap.cache();
        let fin = Shape {
            finalize: true,
            ..Shape::NOSCAN
        };
        let objs: Vec<usize> = (0..10)
            .map(|_| c.alloc(32, fin).unwrap().as_ptr() as usize)
            .collect();
        drop(c);
        // SAFETY: no cache exists.
        unsafe {
            heap.start_mark();
            heap.finish_mark();
        }
        let h = heap.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || h.sweep_all()));
        assert!(r.is_err(), "the queue's panic reaches the sweeper");
        // The heap goes on: sweeping completes, a new cycle starts and ends.
        heap.sweep_all();
        assert!(heap.is_sweep_done());
        let released = objs
            .iter()
            .filter(|&&a| heap.release_finalized(NonNull::new(a as *mut u8).unwrap()))
            .count();
        assert!(released >= 9, "queued objects can be released ({released})");
        // SAFETY: no cache exists.
        unsafe {
            heap.start_mark();
            heap.finish_mark();
        }
        heap.sweep_all();
        assert!(q.0.load(Ordering::Relaxed) >= 10);
    });
}

/// Bug 6: `finish_mark` twice without a sweep (a `start_mark`) in between is refused.
#[test]
fn finish_mark_twice_is_refused() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let dead = c.alloc_noscan(64).unwrap().as_ptr() as usize;
    drop(c);
    // SAFETY: no cache exists.
    unsafe {
        heap.start_mark();
        heap.finish_mark();
    }
    let h = heap.clone();
    // SAFETY: as above.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || unsafe {
        h.finish_mark()
    }));
    let msg = r.expect_err("second finish_mark refused");
    let msg = msg
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| msg.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("start_mark"), "{msg}");
    heap.sweep_all();
    assert!(heap.find_object(dead).is_none(), "the dead object is freed");
}

/// Bug 7: `mark` / `mark_batch` outside a mark phase are no-ops.
#[test]
fn marking_outside_a_mark_phase_is_a_no_op() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let a = c.alloc_noscan(64).unwrap().as_ptr() as usize;
    let b = c.alloc_noscan(64).unwrap().as_ptr() as usize;
    assert!(!heap.mark(a), "mark outside a mark phase");
    let mut n = 0;
    heap.mark_batch([b], |_| n += 1);
    assert_eq!(n, 0, "mark_batch outside a mark phase");
    assert!(!heap.find_object(a).unwrap().mark());
    assert!(!heap.is_marked(a) && !heap.is_marked(b));
    drop(c);
    // SAFETY: no cache exists.
    unsafe {
        heap.start_mark();
        heap.finish_mark();
    }
    heap.sweep_all();
    assert!(heap.find_object(a).is_none() && heap.find_object(b).is_none());
}

/// Address space: an arena no longer keeps an arena of alignment slack, so a heap fits under
/// an address-space limit where its live size says (it failed at 128 MiB of objects under a
/// 400 MiB limit).
#[test]
#[cfg_attr(miri, ignore)]
fn a_heap_fits_its_live_size_under_an_address_space_limit() {
    if std::env::var_os("GORT_ALLOC_AS_CHILD").is_some() {
        util::cap_address_space(400 << 20);
        let heap = Heap::new().unwrap();
        let mut c = heap.cache();
        let mut live = 0usize;
        while live < (256 << 20) {
            c.alloc_noscan(1 << 20)
                .unwrap_or_else(|e| panic!("failed at {} MiB: {e}", live >> 20));
            live += 1 << 20;
        }
        println!("CHILD ok {} MiB", live >> 20);
        return;
    }
    let stdout = util::run_child(
        "a_heap_fits_its_live_size_under_an_address_space_limit",
        "GORT_ALLOC_AS_CHILD",
    );
    assert!(stdout.contains("CHILD ok 256 MiB"), "{stdout}");
}

/// The live-heap figure is current without a flush and returns to zero when all is dead.
#[test]
fn live_bytes_is_current_without_a_flush() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    assert_eq!(heap.live_bytes(), 0);
    c.alloc_noscan(64).unwrap();
    // The refill counted the whole span (a cache's free slots count as allocated).
    let one = heap.live_bytes();
    assert!(one >= 64, "{one}");
    for _ in 0..10_000 {
        c.alloc_noscan(64).unwrap();
    }
    c.alloc_noscan(100_000).unwrap();
    assert!(heap.live_bytes() >= 10_001 * 64 + 100_000);
    c.flush();
    let s = heap.stats();
    assert_eq!(
        heap.live_bytes(),
        s.heap_alloc,
        "exact once caches are flushed"
    );
    // SAFETY: single-threaded; everything is dead.
    unsafe {
        heap.start_mark();
        heap.finish_mark();
    }
    heap.sweep_all();
    assert_eq!(heap.live_bytes(), 0);
}

/// An `Object` kept across `finish_mark` cannot mark a slot freed and reused since.
#[test]
fn a_stale_object_cannot_mark() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let a = c.alloc_noscan(64).unwrap().as_ptr() as usize;
    c.flush();
    let stale = heap.find_object(a).unwrap();
    // SAFETY: single-threaded.
    unsafe {
        heap.start_mark();
        heap.finish_mark();
        heap.start_mark();
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stale.mark()));
    if cfg!(debug_assertions) {
        assert!(r.is_err(), "debug builds panic");
    } else {
        assert!(!r.unwrap(), "release builds refuse");
    }
    assert!(!heap.is_marked(a));
    // SAFETY: as above.
    unsafe { heap.finish_mark() };
}

/// The count of heap locks a suspension hook reads is zero outside the heap, also inside an
/// iteration callback (which runs with no lock held, so it may allocate).
#[test]
fn heap_locks_are_counted_only_while_held() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    c.alloc_noscan(64).unwrap();
    let _ = heap.stats();
    heap.release_free_pages();
    assert_eq!(gort_alloc::heap_locks_held(), 0);
    let mut seen = 0;
    heap.for_each_object(gort_alloc::Objects::Allocated, |_| {
        assert_eq!(gort_alloc::heap_locks_held(), 0);
        seen += 1;
    });
    assert_eq!(seen, 1);
}
