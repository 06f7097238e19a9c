//! While the world is stopped the coordinator must not call the system allocator (a stopped
//! thread may hold malloc's lock) nor the drop queue: `start_mark` and `finish_mark` are run
//! here under a global allocator that counts the calls made by the coordinating thread.
#![cfg(not(loom))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use gort_alloc::{DropQueue, Heap, Shape};

struct Counting;

thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

fn note() {
    if WATCHED.with(|w| w.get()) {
        CALLS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to `System` unchanged; counting has no effect on the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Default)]
struct Queue(Mutex<Vec<usize>>, AtomicUsize);

impl DropQueue for Queue {
    fn push(&self, obj: NonNull<u8>, _size: usize) {
        if WATCHED.with(|w| w.get()) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
        self.0.lock().unwrap().push(obj.as_ptr() as usize);
    }
}

/// Run `f` as the coordinator and return the system-allocator calls it made.
fn watched(f: impl FnOnce()) -> usize {
    let before = CALLS.load(Ordering::Relaxed);
    WATCHED.with(|w| w.set(true));
    f();
    WATCHED.with(|w| w.set(false));
    CALLS.load(Ordering::Relaxed) - before
}

#[test]
fn start_mark_and_finish_mark_neither_allocate_nor_push() {
    let q = Arc::new(Queue::default());
    let heap = Heap::with_drop_queue(q.clone()).unwrap();
    let fin = Shape {
        finalize: true,
        ..Shape::NOSCAN
    };
    let mut caches: Vec<_> = (0..3).map(|_| heap.cache()).collect();
    for cycle in 0..6 {
        // Many spans of many classes, objects with drop glue, huge and large objects; the
        // caches keep spans across the stop.
        for (k, c) in caches.iter_mut().enumerate() {
            for i in 0..3000usize {
                let size = [8, 24, 48, 100, 700, 5000, 40_000][(i + k) % 7];
                if i % 11 == 0 {
                    c.alloc(size, fin).unwrap();
                } else if i % 2 == 0 {
                    c.alloc(size, Shape::ALL_POINTERS).unwrap();
                } else {
                    c.alloc_noscan(size).unwrap();
                }
            }
        }
        if cycle % 2 == 1 {
            // Leave sweeping unfinished so that `start_mark` sweeps (and queues) a lot.
            heap.sweep_one();
        }
        // SAFETY: this thread is the only mutator and is inside no cache method.
        let n = watched(|| unsafe { heap.start_mark() });
        assert_eq!(
            n, 0,
            "cycle {cycle}: start_mark called the system allocator"
        );
        // SAFETY: as above; nothing is marked, everything dies.
        let n = watched(|| unsafe { heap.finish_mark() });
        assert_eq!(
            n, 0,
            "cycle {cycle}: finish_mark called the system allocator"
        );
        // Released objects come back next cycle.
        for a in q.0.lock().unwrap().drain(..) {
            heap.release_finalized(NonNull::new(a as *mut u8).unwrap());
        }
    }
    assert_eq!(
        q.1.load(Ordering::Relaxed),
        0,
        "drop queue pushed by the coordinator"
    );
    heap.sweep_all();
    assert!(
        !q.0.lock().unwrap().is_empty(),
        "queued objects arrive after the restart"
    );
}
