//! Scanning: turning grey objects black by shading what their slots point to.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use gort_alloc::{Heap as AllocHeap, SpanCursor};

use crate::work::{BUF_LEN, WorkPool, balance};

/// Set once any heap of the process has allocated a type traced by code (a `GcCell`):
/// until then the marker skips the header test on every object it scans.
pub(crate) static CELLS: AtomicBool = AtomicBool::new(false);

/// Large objects are scanned in pieces of this many bytes (Go's oblets), so one huge array
/// is many small units of work that other workers can take.
pub(crate) const OBLET: usize = 128 * 1024;

/// Read one pointer slot of a grey object.
///
/// # Safety
/// `slot` must be a pointer word (per the heap bits) of an object that is marked in the
/// current cycle, so it is allocated until the cycle's sweep; pointer words are `Slot`s
/// (the `Trace` contract), i.e. `AtomicUsize`s, and are only ever accessed atomically.
#[inline]
pub(crate) unsafe fn load_slot(slot: usize) -> usize {
    // SAFETY: the caller's contract; the word is 8-aligned and mapped.
    let w = unsafe { &*(slot as *const AtomicUsize) };
    // Relaxed: the value is an address; the referent's contents reached the marker through
    // the stop of the world that began the cycle (a white object existed then) — an object
    // allocated since is born black and never scanned.
    w.load(Ordering::Relaxed)
}

/// Ask the CPU to bring the cache line at `addr` in (no effect on the program's state; an
/// address that is not mapped is ignored by the hardware).
#[inline(always)]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch hint neither reads into the program nor faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: as above: `prfm` is a hint and never faults.
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{a}]", a = in(reg) addr, options(nostack, readonly, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = addr;
}

/// A grey entry outside every object: the grey lists hold marked objects only.
#[cold]
#[inline(never)]
fn grey_not_in_heap(entry: usize) -> ! {
    panic!("runtime: grey object {entry:#x} is not in the heap");
}

/// A marking party's local state: its grey buffer and what it counted.
pub(crate) struct Marker<'h> {
    pub(crate) heap: &'h AllocHeap,
    pub(crate) pool: &'h WorkPool,
    pub(crate) local: Vec<usize>,
    /// Bytes of objects this party marked (the live heap's measure).
    pub(crate) marked_bytes: u64,
    /// Bytes of objects (or oblets) this party scanned: the pacer's scan work.
    pub(crate) scan_work: u64,
    /// Batch of referents gathered from one scan.
    batch: Vec<usize>,
}

impl<'h> Marker<'h> {
    pub(crate) fn new(heap: &'h AllocHeap, pool: &'h WorkPool) -> Marker<'h> {
        Marker {
            heap,
            pool,
            local: pool.empty_buf(),
            marked_bytes: 0,
            scan_work: 0,
            batch: Vec::with_capacity(64),
        }
    }

    /// A marker over a buffer the caller keeps (a mutator's grey buffer); only `shade_all`
    /// and `publish` are meant for it.
    pub(crate) fn with_local(
        heap: &'h AllocHeap,
        pool: &'h WorkPool,
        local: Vec<usize>,
    ) -> Marker<'h> {
        Marker {
            heap,
            pool,
            local,
            marked_bytes: 0,
            scan_work: 0,
            batch: Vec::new(),
        }
    }

    /// Shade every address of `addrs` (roots, barrier entries): mark it, and make it grey
    /// when it has pointers to scan. Addresses that are not in an object are skipped.
    pub(crate) fn shade_all(&mut self, addrs: impl IntoIterator<Item = usize>) {
        let Marker {
            heap,
            pool,
            local,
            marked_bytes,
            ..
        } = self;
        heap.mark_batch(addrs, |o| {
            *marked_bytes += o.size() as u64;
            if !o.is_noscan() {
                if local.len() >= BUF_LEN {
                    let full = std::mem::replace(local, pool.empty_buf());
                    pool.put(full);
                }
                local.push(o.addr());
            }
        });
    }

    /// Scan one grey entry: an object's base, or an oblet's first address. `cursor` is the
    /// span of the previous entry, kept by the caller for one drain (grey objects keep their
    /// spans in use until the sweep, so it stays true while any of them is left).
    #[inline(always)]
    fn scan(
        &mut self,
        entry: usize,
        cursor: &mut Option<SpanCursor<'h>>,
        batch: &mut Vec<usize>,
        cells: bool,
    ) {
        // The common case: a small object of the previous entry's span, whose objects share
        // one layout. Grey entries of small spans are object bases.
        if let Some(c) = *cursor
            && let Some((size, mut bits)) = c.uniform_pointers(entry)
        {
            self.scan_work += size as u64;
            while bits != 0 {
                let slot = entry + bits.trailing_zeros() as usize * 8;
                bits &= bits - 1;
                // SAFETY: `slot` is a pointer word (by the span's layout) of the object at
                // `entry`, which is marked this cycle.
                let v = unsafe { load_slot(slot) };
                if v != 0 {
                    // Within capacity: a batch is flushed at 48 of its 64, and an object
                    // of seven words adds at most seven.
                    batch.push(v);
                }
            }
            if cells {
                self.scan_header(c, entry, batch);
            }
            if batch.len() >= 48 {
                self.flush_batch(batch);
            }
            return;
        }
        self.scan_any(entry, cursor, batch, cells);
    }

    /// `scan` for any grey entry: an object of another span, of a span of mixed layouts or
    /// of larger objects, or an oblet.
    fn scan_any(
        &mut self,
        entry: usize,
        cursor: &mut Option<SpanCursor<'h>>,
        batch: &mut Vec<usize>,
        cells: bool,
    ) {
        // Grey entries are marked objects, which stay allocated until the sweep: the slot
        // holding the entry is the object, without a look at the alloc bits.
        let (c, (base, size)) = match cursor.and_then(|c| Some((c, c.marked_slot(entry)?))) {
            Some(found) => found,
            None => {
                let Some(found) = self
                    .heap
                    .span_cursor(entry)
                    .and_then(|c| Some((c, c.marked_slot(entry)?)))
                else {
                    grey_not_in_heap(entry)
                };
                *cursor = Some(found.0);
                found
            }
        };
        let off = entry - base;
        let whole = size <= OBLET;
        if whole {
            // A whole object, the common case: `entry` is its base.
            self.scan_work += size as u64;
        } else {
            self.scan_work += (size - off).min(OBLET) as u64;
            if off == 0 {
                // Split: the other oblets become grey entries of their own.
                let mut o = OBLET;
                while o < size {
                    self.push_grey(base + o);
                    o += OBLET;
                }
            }
        }
        let mut gather = |slot| {
            // SAFETY: `slot` is a pointer word of the object, which is marked this cycle.
            let v = unsafe { load_slot(slot) };
            if v != 0 {
                batch.push(v);
                if batch.len() == batch.capacity() {
                    self.flush_batch(batch);
                }
            }
        };
        if whole {
            c.for_each_pointer_slot(base, size, &mut gather);
        } else {
            c.for_each_pointer_slot_in(base, size, off, OBLET, &mut gather);
        }
        if off == 0 && cells {
            self.scan_header(c, base, batch);
        }
        // Referents of several objects are marked together (one `mark_batch` call costs the
        // same for two addresses as for forty); `drain_local` flushes what is left.
        if batch.len() >= 48 {
            self.flush_batch(batch);
        }
    }

    /// The traced part of the object at `base` (marked this cycle), when it has a header
    /// naming a type traced by code (a `GcCell`).
    fn scan_header(&mut self, c: SpanCursor<'h>, base: usize, batch: &mut Vec<usize>) {
        let obj = c.object(base).unwrap_or_else(|| grey_not_in_heap(base));
        // SAFETY: the object is marked this cycle, so allocated until the sweep; only the
        // allocator writes its header word.
        if let Some(h) = unsafe { obj.header() } {
            // SAFETY: every header this collector writes is a `&'static TypeDesc`.
            let desc = unsafe { &*(h as *const crate::desc::TypeDesc) };
            if let Some(trace) = desc.trace {
                // SAFETY: the payload of an object whose header names `desc` holds an
                // initialised value of `desc`'s type (allocated by `Scope::alloc`).
                let done = unsafe { trace(base + 8, &mut |v| batch.push(v)) };
                if !done {
                    // A mutator holds its lock: scan it again later rather than wait.
                    self.push_grey(base);
                }
            }
        }
    }

    fn flush_batch(&mut self, batch: &mut Vec<usize>) {
        if !batch.is_empty() {
            // A plain slice walk, then one clear: `drain` pays for its own bookkeeping per
            // element and for closing the gap after.
            self.shade_all(batch.iter().copied());
            batch.clear();
        }
    }

    fn push_grey(&mut self, entry: usize) {
        if self.local.len() >= BUF_LEN {
            let full = std::mem::replace(&mut self.local, self.pool.empty_buf());
            self.pool.put(full);
        }
        self.local.push(entry);
    }

    /// Scan local grey objects until none are left or `budget` entries were scanned.
    /// Returns the number scanned.
    ///
    /// Objects go through a small FIFO before they are scanned, and each is prefetched as it
    /// enters it: scanning is bound by the cache miss on the object's first word, and the
    /// FIFO gives the prefetch the time of sixteen other scans to land (a grey stack alone
    /// would scan first the object it pushed last, whose line is not there yet). Sixteen,
    /// not eight: a 128 MiB tree marks in 18.5-19.3 ns per object instead of 20.3-21.1 (the
    /// quiet runs of `mark_rate 22 1`); 32 measures the same as 16.
    pub(crate) fn drain_local(&mut self, budget: usize) -> usize {
        const DEPTH: usize = 16;
        let mut ring = [0usize; DEPTH];
        let (mut head, mut len) = (0usize, 0usize);
        let mut n = 0;
        let mut cursor = None;
        // The referents gathered by the scans, out of `self` for the drain (a scan's closure
        // flushes it through `self`); it never grows past its capacity between flushes.
        let mut batch = std::mem::take(&mut self.batch);
        batch.reserve(64);
        // Whether objects may carry a traced header, read once per drain. `CELLS` is set
        // before the first such object is allocated. One allocated after this load (the
        // drain runs while marking) is black: it reaches a grey list only when a mutator
        // re-greys it, on the mutator's own buffer, and a drain sees that buffer only after
        // a hand-off (the pool's lock, or the same thread) ordered after the store.
        let cells = CELLS.load(Ordering::Relaxed);
        loop {
            // Top the FIFO up from the grey stack: in the steady state one entry goes in for
            // each one scanned, so the test runs once per scan.
            if len < DEPTH
                && n + len < budget
                && let Some(e) = self.local.pop()
            {
                prefetch(e);
                ring[(head + len) % DEPTH] = e;
                len += 1;
                if len < DEPTH {
                    continue;
                }
            }
            if len == 0 {
                if batch.is_empty() || n >= budget {
                    break;
                }
                // Gathered referents may hold more grey objects.
                self.flush_batch(&mut batch);
                continue;
            }
            let e = ring[head];
            head = (head + 1) % DEPTH;
            len -= 1;
            self.scan(e, &mut cursor, &mut batch, cells);
            n += 1;
            if n % 16 == 0 {
                balance(self.pool, &mut self.local);
            }
        }
        // Nothing may stay gathered but unmarked once we stop (the caller publishes `local`).
        self.flush_batch(&mut batch);
        self.batch = batch;
        n
    }

    /// As a worker: take buffers from the pool and scan until the pool is empty or `budget`
    /// entries were scanned. Leaves nothing local. Returns the number scanned.
    pub(crate) fn work(&mut self, budget: usize) -> usize {
        let mut n = 0;
        // Busy from the first buffer taken until everything left is handed back: one
        // take / idle pair per call, however many buffers it drains.
        let mut busy = false;
        if !self.local.is_empty() {
            // Grey objects of our own (never published): counted busy before scanning them.
            self.pool.enter();
            busy = true;
        }
        while n < budget {
            if self.local.is_empty() {
                let Some(buf) = self.pool.take(busy) else {
                    break;
                };
                busy = true;
                let old = std::mem::replace(&mut self.local, buf);
                self.pool.put(old);
            }
            n += self.drain_local(budget - n);
        }
        if busy {
            // Whatever is left goes back before we call ourselves idle.
            self.publish();
            self.pool.idle();
        }
        n
    }

    /// As a worker, until `bytes` of scan work are done or the pool is empty (a mark assist).
    /// Returns the scan work done.
    pub(crate) fn work_bytes(&mut self, bytes: u64) -> u64 {
        let start = self.scan_work;
        while self.scan_work - start < bytes {
            if self.work(512) == 0 {
                break;
            }
        }
        self.scan_work - start
    }

    /// Hand the local buffer to the pool (a mutator before it parks or blocks).
    pub(crate) fn publish(&mut self) {
        if !self.local.is_empty() {
            let full = std::mem::replace(&mut self.local, self.pool.empty_buf());
            self.pool.put(full);
        }
    }
}
