//! `Root`: a `'static` handle, kept in the heap's root table.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::handle::Local;
use crate::heap::HeapShared;
use std::sync::Arc;

use crate::loom::Mutex;
use crate::mutator::Scope;
use crate::trace::Trace;

/// Entries per chunk of the root table.
const CHUNK: usize = 256;

type Chunk = [AtomicUsize; CHUNK];

#[derive(Default)]
struct Table {
    /// Chunks are boxed (their address is what the scanner keeps) and never freed before the
    /// table, so the scanner may read them without the lock.
    #[allow(clippy::vec_box)]
    chunks: Vec<Box<Chunk>>,
    free: Vec<usize>,
}

/// The heap's root table: one atomic word per live `Root` (0 = free).
///
/// Entries are written by whoever creates or drops a root (any thread), under the lock; the
/// collector reads them without it, once per cycle.
#[derive(Default)]
pub(crate) struct RootTable {
    inner: Mutex<Table>,
}

impl RootTable {
    fn insert(&self, addr: usize) -> usize {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let idx = match t.free.pop() {
            Some(i) => i,
            None => {
                let n = t.chunks.len();
                t.chunks
                    .push(Box::new(std::array::from_fn(|_| AtomicUsize::new(0))));
                t.free.extend((n * CHUNK + 1..(n + 1) * CHUNK).rev());
                n * CHUNK
            }
        };
        // Relaxed: the lock orders it for the next inserter; the scanner's view is argued in
        // `Root::new_raw`.
        t.chunks[idx / CHUNK][idx % CHUNK].store(addr, Ordering::Relaxed);
        idx
    }

    fn get(&self, idx: usize) -> usize {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.chunks[idx / CHUNK][idx % CHUNK].load(Ordering::Relaxed)
    }

    fn remove(&self, idx: usize) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.chunks[idx / CHUNK][idx % CHUNK].store(0, Ordering::Relaxed);
        t.free.push(idx);
    }

    /// Call `f` with every live root's address (the collector, once per cycle).
    pub(crate) fn for_each(&self, mut f: impl FnMut(usize)) {
        let chunks: Vec<*const Chunk> = {
            let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            t.chunks.iter().map(|c| &**c as *const Chunk).collect()
        };
        for c in chunks {
            // SAFETY: chunks are boxed, never freed or moved before the table, which `self`
            // borrows; entries are atomics.
            for e in unsafe { &*c } {
                let v = e.load(Ordering::Relaxed);
                if v != 0 {
                    f(v);
                }
            }
        }
    }

    /// Live roots (tests and statistics).
    pub(crate) fn len(&self) -> usize {
        let t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.chunks.len() * CHUNK - t.free.len()
    }
}

/// A handle that keeps its object alive until dropped, from any thread (`Send + Sync`,
/// `'static`): for objects that must outlive a scope — statics, channels, closures handed to
/// other threads. Turn it back into a [`Local`] with [`Root::get`] in a scope of its heap.
///
/// A root is a strong reference from outside the heap: an object that holds a `Root` to
/// itself (through a chain) is never collected, as with V8's `Persistent`.
pub struct Root<T: Trace> {
    heap: Arc<HeapShared>,
    idx: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T: Trace> std::fmt::Debug for Root<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Root({:#x})", self.heap.roots.get(self.idx))
    }
}

impl<T: Trace> Root<T> {
    /// Root the object `local` refers to.
    ///
    /// # Panics
    /// When `local` belongs to another heap than `scope`.
    pub fn new(scope: &Scope<'_>, local: Local<'_, T>) -> Root<T> {
        scope.check_ours(local.addr(), "Root::new");
        Root::new_raw(scope.heap.arc(), local.addr())
    }

    /// Insert `addr` (an object kept alive by the caller for the duration of the call).
    fn new_raw(heap: Arc<HeapShared>, addr: usize) -> Root<T> {
        let idx = heap.roots.insert(addr);
        // The root table may already have been scanned this cycle, and the object may be kept
        // alive only by this root once the caller lets go (a `Root` cloned from one the
        // scanner has not reached, then dropped: gc-arena's unsound re-root). Shade it while
        // marking. `shade_foreign` decides "marking?" under the grey pool's lock, the lock the
        // collector closes marking under: if it is closed, the scan of the root table (which
        // precedes the close) read the caller's own root, which is dropped only after this
        // call returns, so the object was marked.
        heap.shade_foreign(addr);
        Root {
            heap,
            idx,
            _t: PhantomData,
        }
    }

    /// A handle to the object in `scope`.
    ///
    /// # Panics
    /// When `scope` belongs to another heap.
    pub fn get<'s>(&self, scope: &Scope<'s>) -> Local<'s, T> {
        assert!(
            std::ptr::eq(&*self.heap, scope.heap),
            "runtime: Root::get with a scope of another heap"
        );
        scope.window_begin();
        let addr = self.heap.roots.get(self.idx);
        scope.push_handle(addr);
        scope.window_end();
        // SAFETY: the root keeps the `T` at `addr` alive (it was rooted when made and the
        // table is scanned every cycle), and the handle pushed above keeps it for `'s`.
        unsafe { Local::from_addr(addr) }
    }

    /// The object's address.
    pub fn addr(&self) -> usize {
        self.heap.roots.get(self.idx)
    }
}

// SAFETY: a `Root` holds an index into the root table, no pointer word: the table is what
// the collector scans. An object holding a `Root` keeps its target alive (a strong reference
// from outside the heap) until the holder is finalized.
unsafe impl<T: Trace> Trace for Root<T> {
    const PTRS: crate::PtrMap = crate::PtrMap::EMPTY;
}

impl<T: Trace> Clone for Root<T> {
    fn clone(&self) -> Self {
        // `self` keeps the object alive during the call.
        Root::new_raw(self.heap.clone(), self.addr())
    }
}

impl<T: Trace> Drop for Root<T> {
    fn drop(&mut self) {
        self.heap.roots.remove(self.idx);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use crate::loom::{Arc, AtomicBool, AtomicUsize, Ordering, thread};
    use crate::work::WorkPool;

    /// gc-arena's re-root shape against the root scan: a thread clones the root in entry 1
    /// into entry 0 (which the scanner may already have passed) and drops the original
    /// (which the scanner may not have reached). The clone shades through
    /// `begin_foreign` unless marking is closed, and the collector closes only after the
    /// scan: the object is always marked.
    #[test]
    fn loom_root_cloned_and_dropped_during_the_root_scan_stays_marked() {
        loom::model(|| {
            const X: usize = 0x1000;
            let pool = Arc::new(WorkPool::new());
            pool.open();
            let entries = Arc::new([AtomicUsize::new(0), AtomicUsize::new(X)]);
            let marked = Arc::new(AtomicBool::new(false));
            let cloner = {
                let (pool, entries, marked) = (pool.clone(), entries.clone(), marked.clone());
                thread::spawn(move || {
                    entries[0].store(X, Ordering::Relaxed);
                    if pool.begin_foreign() {
                        marked.store(true, Ordering::Relaxed);
                        pool.idle();
                    }
                    entries[1].store(0, Ordering::Relaxed);
                })
            };
            // The collector: scan the table in order, then close marking.
            for e in entries.iter() {
                if e.load(Ordering::Relaxed) == X {
                    marked.store(true, Ordering::Relaxed);
                }
            }
            while !pool.close_if_done() {
                thread::yield_now();
            }
            // Marking is over: the object, still rooted by the clone, must be marked.
            assert!(
                marked.load(Ordering::Relaxed),
                "re-rooted object left unmarked"
            );
            cloner.join().unwrap();
        });
    }
}
