//! Property test: random allocate / mark / sweep sequences against a sequential model.
//!
//! The model keeps every live object (tiny objects grouped by their 16-byte block, the unit
//! of marking and freeing) with a byte pattern written into it. After each step it checks:
//! live objects never overlap; each lies inside its span and is aligned for its class;
//! `find_object` resolves its first and last byte; marked objects keep their bytes across
//! collections; unmarked ones are reclaimed (not findable unless reallocated) and their
//! slots reused — except objects with drop glue, which go to the drop queue exactly once and
//! stay allocated until released; header words read back; and the accounting identities
//! hold.
#![cfg(not(loom))]

use std::collections::BTreeMap;

use gort_alloc::{Cache, Heap, PAGE_SIZE, Ptrs, Shape, sizeclass};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Allocate with cache `cache`: size selector, pointerful or not, and `special` % 6:
    /// 1 = with drop glue, 2 = with a header word, otherwise plain.
    Alloc {
        cache: bool,
        size: Size,
        ptrs: bool,
        special: u8,
    },
    /// Declare the drop glue of one object received from the drop queue run.
    ReleaseQueued(u8),
    /// A collection that keeps the objects whose selector bit is set, then sweeps `sweep`
    /// spans in the background, every other one zeroing what it frees (the rest are swept
    /// lazily by refills or the next mark).
    Collect { keep: u64, sweep: u8 },
    /// Release every free page to the OS.
    Release,
}

#[derive(Debug, Clone, Copy)]
enum Size {
    Tiny(u8),
    Class(u8, u16),
    Large(u32),
}

impl Size {
    fn bytes(self) -> usize {
        match self {
            Size::Tiny(n) => 1 + n as usize % 15,
            Size::Class(c, d) => {
                let c = 1 + c as usize % (sizeclass::NUM_SIZE_CLASSES - 1);
                let hi = sizeclass::class_size(c);
                let lo = sizeclass::class_size(c - 1) + 1;
                lo + d as usize % (hi - lo + 1)
            }
            Size::Large(n) => sizeclass::MAX_SMALL_SIZE + 1 + n as usize % (600 * 1024),
        }
    }
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        any::<u8>().prop_map(Size::Tiny),
        (any::<u8>(), any::<u16>()).prop_map(|(c, d)| Size::Class(c, d)),
        any::<u32>().prop_map(Size::Large),
    ];
    prop_oneof![
        12 => (any::<bool>(), size, any::<bool>(), any::<u8>())
            .prop_map(|(cache, size, ptrs, special)| Op::Alloc { cache, size, ptrs, special }),
        2 => any::<u8>().prop_map(Op::ReleaseQueued),
        2 => (any::<u64>(), any::<u8>()).prop_map(|(keep, sweep)| Op::Collect { keep, sweep }),
        1 => Just(Op::Release),
    ]
}

/// One live object (or tiny block) of the model.
#[derive(Debug)]
struct Live {
    /// Slot size (class size, or pages of a large object).
    slot: usize,
    /// (address, length, pattern byte) of each user object inside.
    parts: Vec<(usize, usize, u8)>,
    /// Has drop glue not yet released.
    finalize: bool,
    /// Handed to the drop queue (by a sweep the model expects or has seen).
    queued: bool,
    /// The header word, when allocated with one.
    header: Option<usize>,
    /// Allocated pointerful (`Ptrs::All`): every word but the header is a pointer word.
    ptrs: bool,
}

/// The drop queue: records what sweeps hand it.
#[derive(Default)]
struct Queue(std::sync::Mutex<Vec<usize>>);

impl gort_alloc::DropQueue for Queue {
    fn push(&self, obj: std::ptr::NonNull<u8>, _size: usize) {
        self.0.lock().unwrap().push(obj.as_ptr() as usize);
    }
}

struct World {
    heap: Heap,
    caches: [Option<Cache>; 2],
    live: BTreeMap<usize, Live>,
    dead: Vec<usize>,
    /// Released objects: the first sweep of their span after the release frees them (this
    /// cycle's, when their span is not swept yet, else the next cycle's).
    released: Vec<usize>,
    tag: u8,
    reused: usize,
    queue: std::sync::Arc<Queue>,
    /// Objects a sweep must still hand to the queue.
    expected: std::collections::BTreeSet<usize>,
    /// Objects received from the queue and not yet released.
    received: Vec<usize>,
}

impl World {
    fn new() -> World {
        let queue = std::sync::Arc::new(Queue::default());
        let heap = Heap::with_drop_queue(queue.clone()).unwrap();
        World {
            heap,
            caches: [None, None],
            live: BTreeMap::new(),
            dead: Vec::new(),
            released: Vec::new(),
            tag: 0,
            reused: 0,
            queue,
            expected: Default::default(),
            received: Vec::new(),
        }
    }

    /// Take what sweeps handed the queue: each must be expected, and arrive once.
    fn drain_queue(&mut self) {
        for obj in self.queue.0.lock().unwrap().drain(..) {
            assert!(
                self.expected.remove(&obj),
                "unexpected or repeated drop-queue entry {obj:#x}"
            );
            self.received.push(obj);
        }
    }

    fn release_queued(&mut self, k: u8) {
        if self.received.is_empty() {
            return;
        }
        let obj = self.received.swap_remove(k as usize % self.received.len());
        assert!(
            self.heap
                .release_finalized(std::ptr::NonNull::new(obj as *mut u8).unwrap())
        );
        self.live
            .remove(&obj)
            .expect("queued objects stay allocated");
        self.released.push(obj);
    }

    fn alloc(&mut self, cache: bool, size: Size, ptrs: bool, special: u8) {
        let n = size.bytes();
        let finalize = special % 6 == 1;
        let header = (special % 6 == 2).then_some(0xABC0_0000 + self.tag as usize);
        let tiny = !ptrs && n < 16 && !finalize && header.is_none();
        let shape = Shape {
            ptrs: if ptrs { Ptrs::All } else { Ptrs::None },
            header,
            finalize,
        };
        let c = self.caches[cache as usize].get_or_insert_with(|| self.heap.cache());
        let base = c.alloc(n, shape).expect("allocation").as_ptr() as usize;
        // With a header, the payload follows the header word.
        let p = if header.is_some() { base + 8 } else { base };
        // Fresh memory is zero.
        // SAFETY: `n` bytes at `p` were just allocated for us and nothing else uses them.
        let bytes = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) };
        assert!(
            bytes.iter().all(|&b| b == 0),
            "allocation of {n} not zeroed"
        );
        self.tag = self.tag.wrapping_add(1).max(1);
        bytes.fill(self.tag);
        let o = self.heap.find_object(p).expect("new object is findable");
        assert_eq!(self.heap.find_object(p + n - 1).unwrap().addr(), o.addr());
        if self.dead.contains(&o.addr()) {
            self.reused += 1;
            self.dead.retain(|&d| d != o.addr());
        }
        self.released.retain(|&d| d != o.addr());
        if tiny {
            assert_eq!(o.size(), 16);
            assert!(p + n <= o.addr() + 16);
        } else {
            assert_eq!(o.addr(), base);
            assert!(o.size() >= n + (p - base));
        }
        // SAFETY: just allocated, so live.
        assert_eq!(unsafe { o.header() }, header);
        let e = self.live.entry(o.addr()).or_insert(Live {
            slot: o.size(),
            parts: Vec::new(),
            finalize,
            queued: false,
            header,
            ptrs,
        });
        assert!(
            tiny || e.parts.is_empty(),
            "non-tiny object handed out twice"
        );
        e.parts.push((p, n, self.tag));
    }

    fn collect(&mut self, keep: u64, sweep: u8) {
        // SAFETY: single-threaded: no cache method runs during these calls.
        unsafe { self.heap.start_mark() };
        // Starting a mark finishes the previous sweep; the objects it queued reach the drop
        // queue once the world runs again (the collector's `push_drops`): then every
        // expected entry has arrived.
        self.heap.push_drops();
        self.drain_queue();
        assert!(
            self.expected.is_empty(),
            "sweeps missed drop-queue entries {:x?}",
            self.expected
        );
        let mut survivors = BTreeMap::new();
        for (i, (&base, _)) in self.live.iter().enumerate() {
            if keep & (1 << (i % 64)) != 0 {
                assert!(self.heap.mark(base + 1));
                survivors.insert(base, ());
            }
        }
        // SAFETY: as above.
        unsafe { self.heap.finish_mark() };
        self.dead.append(&mut self.released);
        for i in 0..sweep {
            // Every other step sweeps as a background sweeper that zeroes the spans it frees.
            if i % 2 == 1 {
                self.heap.sweep_one_zeroing();
            } else {
                self.heap.sweep_one();
            }
        }
        let old = std::mem::take(&mut self.live);
        for (base, mut l) in old {
            if survivors.contains_key(&base) {
                self.live.insert(base, l);
            } else if l.finalize {
                // Dead with drop glue: queued once, kept until released.
                if !l.queued {
                    l.queued = true;
                    self.expected.insert(base);
                }
                self.live.insert(base, l);
            } else {
                self.dead.push(base);
            }
        }
        self.drain_queue();
    }

    fn check(&self) {
        let mut prev_end = 0;
        for (&base, l) in &self.live {
            assert!(base >= prev_end, "objects overlap at {base:#x}");
            prev_end = base + l.slot;
            let o = self.heap.find_object(base).expect("live object findable");
            assert_eq!((o.addr(), o.size()), (base, l.slot));
            // SAFETY: live in the model, so never freed by the heap.
            assert_eq!(unsafe { o.header() }, l.header, "header word");
            let s = o.span();
            assert!(
                base >= s.base && base + l.slot <= s.base + s.npages * PAGE_SIZE,
                "outside its span"
            );
            let align = if s.size_class == 0 {
                PAGE_SIZE
            } else {
                1 << l.slot.trailing_zeros().min(12)
            };
            assert_eq!(base % align.max(8), 0, "misaligned");
            // Pointer words as allocated, whatever else shares the span (pointerful objects
            // with and without a header share spans: the span's layout record must give
            // way to the heap bits).
            let mut words = Vec::new();
            o.for_each_pointer_slot(|a| words.push((a - base) / 8));
            let want: Vec<usize> = if l.ptrs {
                (l.header.is_some() as usize..l.slot / 8).collect()
            } else {
                Vec::new()
            };
            assert_eq!(words, want, "pointer words of the {}-byte object", l.slot);
            for &(p, n, tag) in &l.parts {
                // SAFETY: the object is live (in the model, so never freed by the heap).
                let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
                assert!(
                    bytes.iter().all(|&b| b == tag),
                    "live object lost its bytes"
                );
            }
        }
        for &d in &self.dead {
            if let Some(o) = self.heap.find_object(d) {
                // Either not yet swept (lazily) or reallocated; a swept free slot is never found.
                assert!(
                    !self.heap.is_sweep_done()
                        || self.live.contains_key(&o.addr())
                        || self.released.contains(&o.addr()),
                    "freed object still found"
                );
            }
        }
    }

    fn check_accounting(&mut self) {
        self.heap.sweep_all();
        self.drain_queue();
        assert!(self.expected.is_empty(), "sweeps missed drop-queue entries");
        // SAFETY: single-threaded.
        unsafe { self.heap.flush_caches() };
        let s = self.heap.stats();
        assert_eq!(s.heap_objects, s.mallocs - s.frees);
        assert_eq!(s.heap_sys, s.heap_inuse + s.heap_idle);
        assert!(s.heap_released <= s.heap_idle);
        assert_eq!(s.heap_inuse % PAGE_SIZE as u64, 0);
        if self.heap.is_sweep_done() {
            // Released objects whose span was swept before the release stay allocated until
            // the next cycle's sweep.
            let released: Vec<usize> = self
                .released
                .iter()
                .filter_map(|&a| self.heap.find_object(a).filter(|o| o.addr() == a))
                .map(|o| o.size())
                .collect();
            assert_eq!(
                s.heap_objects,
                (self.live.len() + released.len()) as u64,
                "HeapObjects vs model"
            );
            let bytes: usize =
                self.live.values().map(|l| l.slot).sum::<usize>() + released.iter().sum::<usize>();
            assert_eq!(s.heap_alloc, bytes as u64, "HeapAlloc vs model");
            assert!(s.heap_inuse >= s.heap_alloc);
        }
    }
}

proptest! {
    #[test]
    fn heap_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut w = World::new();
        for op in ops {
            match op {
                Op::Alloc { cache, size, ptrs, special } => w.alloc(cache, size, ptrs, special),
                Op::ReleaseQueued(k) => w.release_queued(k),
                Op::Collect { keep, sweep } => w.collect(keep, sweep),
                Op::Release => {
                    w.heap.release_free_pages();
                }
            }
            w.check();
        }
        w.check_accounting();
        // Everything dies: the heap returns to empty once every drop has run.
        w.collect(0, 0);
        w.check_accounting();
        while !w.received.is_empty() {
            w.release_queued(0);
        }
        w.collect(0, 0);
        w.check_accounting();
        let s = w.heap.stats();
        prop_assert_eq!(s.heap_objects, 0);
        prop_assert_eq!(s.heap_inuse, 0);
        w.caches = [None, None];
    }
}

#[test]
fn freed_slots_are_reused() {
    let mut w = World::new();
    for round in 0..4u16 {
        for i in 0..300u16 {
            w.alloc(
                i % 2 == 0,
                Size::Class((i % 40) as u8, i.wrapping_mul(round + 7)),
                i % 3 == 0,
                0,
            );
        }
        w.collect(0x5555_5555_5555_5555, 3);
        w.check();
    }
    assert!(w.reused > 100, "only {} slots reused", w.reused);
    w.check_accounting();
}
