//! The finalizer thread: runs the drop glue of dead objects, off every allocation path.

use std::collections::VecDeque;
use std::ptr::NonNull;
use std::sync::{Condvar, Mutex};

use crate::desc::TypeDesc;

/// Dead objects whose drop glue must run, handed over by sweeps (alloc's `DropQueue`).
#[derive(Default)]
pub(crate) struct FinalizerQueue {
    q: Mutex<(VecDeque<usize>, bool)>,
    cv: Condvar,
}

impl gort_alloc::DropQueue for FinalizerQueue {
    fn push(&self, obj: NonNull<u8>, _size: usize) {
        let mut g = self.q.lock().unwrap_or_else(|e| e.into_inner());
        g.0.push_back(obj.as_ptr() as usize);
        self.cv.notify_one();
    }
}

impl FinalizerQueue {
    /// Stop the thread (pending objects are not finalized: a program's exit does not run
    /// destructors of garbage, as in Go).
    pub(crate) fn shut_down(&self) {
        let mut g = self.q.lock().unwrap_or_else(|e| e.into_inner());
        g.1 = true;
        self.cv.notify_all();
    }

    /// Objects waiting (tests).
    pub(crate) fn pending(&self) -> usize {
        self.q.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    /// The thread's loop.
    pub(crate) fn run(&self, heap: &gort_alloc::Heap) {
        loop {
            let obj = {
                let mut g = self.q.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if g.1 {
                        return;
                    }
                    if let Some(o) = g.0.pop_front() {
                        break o;
                    }
                    g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                }
            };
            finalize(heap, obj);
        }
    }
}

/// Run the drop glue of the dead object at `obj` and let the allocator free it.
fn finalize(heap: &gort_alloc::Heap, obj: usize) {
    let Some(o) = heap.find_object(obj) else {
        panic!("runtime: finalizer: object {obj:#x} is not allocated");
    };
    // SAFETY: a queued object stays allocated until `release_finalized`, below; only the
    // allocator writes the header word.
    let Some(h) = (unsafe { o.header() }) else {
        panic!("runtime: finalizer: object {obj:#x} has no type header");
    };
    // SAFETY: objects with drop glue are allocated with a header holding a `&'static
    // TypeDesc` (desc.rs), and this one was.
    let desc: &TypeDesc = unsafe { &*(h as *const TypeDesc) };
    let payload = obj + 8;
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: the object is dead (unreachable: no handle, root or slot refers to it, or
        // the sweep would not have queued it), its `T` is initialised, and nothing reads it
        // after this: the allocator frees it at a later sweep.
        unsafe { (desc.drop)(payload as *mut u8) }
    }));
    if r.is_err() {
        // The panic message was printed by the hook; the object is released anyway so the
        // heap does not keep it forever.
        eprintln!(
            "runtime: drop glue of a {} panicked on the finalizer thread",
            (desc.name)()
        );
    }
    heap.release_finalized(o.base());
}
