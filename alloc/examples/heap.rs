//! Standalone use of gort-alloc: a heap, a cache per thread, and a tiny stop-the-world
//! mark-sweep collector of the example's own that marks from roots through the heap bits.
//!
//! Two mutator threads build linked lists of 16-byte nodes (two pointer fields: `next` and
//! `other`) and keep only every tenth list as a root; the main thread stops them at a barrier,
//! marks everything reachable, sweeps, and prints what happened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use gort_alloc::{Heap, Shape};

/// Both words of a node are pointers.
const NODE: Shape<'static> = Shape::pointers(&[0b11]);
const THREADS: usize = 2;
const CYCLES: usize = 4;

/// Read a pointer slot. The example's objects are only ever accessed through atomics.
fn load(slot: usize) -> usize {
    // SAFETY: `slot` is an 8-aligned word inside a live heap object (the heap bits said it is
    // a pointer slot of an object we found allocated); all accesses to it are atomic.
    unsafe { AtomicUsize::from_ptr(slot as *mut usize) }.load(Ordering::Acquire)
}

fn store(slot: usize, v: usize) {
    // SAFETY: as in `load`; the node was allocated by this thread and is live.
    unsafe { AtomicUsize::from_ptr(slot as *mut usize) }.store(v, Ordering::Release)
}

fn main() {
    let heap = Heap::new().expect("heap");
    let roots: Arc<Vec<Mutex<Vec<usize>>>> =
        Arc::new((0..THREADS).map(|_| Mutex::new(Vec::new())).collect());
    // Mutators and the collector meet here twice per cycle: stop, then restart.
    let stop = Arc::new(Barrier::new(THREADS + 1));
    let restart = Arc::new(Barrier::new(THREADS + 1));

    let mutators: Vec<_> = (0..THREADS)
        .map(|t| {
            let (heap, roots, stop, restart) =
                (heap.clone(), roots.clone(), stop.clone(), restart.clone());
            std::thread::spawn(move || {
                let mut cache = heap.cache();
                for cycle in 0..CYCLES {
                    for list in 0..200 {
                        let mut head = 0;
                        for _ in 0..100 {
                            let n = cache.alloc(16, NODE).expect("alloc").as_ptr() as usize;
                            store(n, head);
                            head = n;
                        }
                        // Some scratch bytes that are never referenced.
                        cache.alloc_noscan(100).expect("alloc");
                        if list % 10 == 0 {
                            roots[t].lock().unwrap().push(head);
                        }
                    }
                    // Drop the roots of the cycle before last, so older lists become garbage.
                    if cycle >= 1 {
                        let mut r = roots[t].lock().unwrap();
                        let n = r.len().min(20);
                        r.drain(..n);
                    }
                    stop.wait(); // stopped: the collector runs now
                    restart.wait();
                }
            })
        })
        .collect();

    for cycle in 0..CYCLES {
        stop.wait();
        // The world is stopped: every mutator is parked at `restart`, inside no cache method.
        // SAFETY: no thread is inside a method of any cache of this heap until `restart`.
        unsafe { heap.start_mark() };
        let mut work: Vec<usize> = roots
            .iter()
            .flat_map(|r| r.lock().unwrap().clone())
            .collect();
        let nroots = work.len();
        let mut marked = 0;
        while let Some(p) = work.pop() {
            let Some(obj) = heap.find_object(p) else {
                continue;
            };
            if !obj.mark() {
                continue;
            }
            marked += 1;
            obj.for_each_pointer_slot(|slot| {
                let q = load(slot);
                if q != 0 {
                    work.push(q);
                }
            });
        }
        // SAFETY: as above.
        unsafe { heap.finish_mark() };
        let before = heap.stats();
        heap.sweep_all();
        let after = heap.stats();
        println!(
            "cycle {cycle}: {nroots} roots, {marked} objects marked; swept {} objects ({} KiB); live {} objects, {} KiB in {} KiB of spans",
            after.frees - before.frees,
            (before.heap_alloc - after.heap_alloc) / 1024,
            after.heap_objects,
            after.heap_alloc / 1024,
            after.heap_inuse / 1024,
        );
        restart.wait();
    }
    for m in mutators {
        m.join().unwrap();
    }
    let released = heap.release_free_pages();
    let s = heap.stats();
    println!(
        "done: {} mallocs, {} frees, heap_sys {} KiB, idle {} KiB, released {} KiB ({} KiB just now)",
        s.mallocs,
        s.frees,
        s.heap_sys / 1024,
        s.heap_idle / 1024,
        s.heap_released / 1024,
        released / 1024
    );
}
