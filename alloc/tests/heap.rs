//! Behaviour of the heap through its public API: allocation, lookup, mark, sweep, drop queue,
//! scavenging, statistics, bad input.
#![cfg(not(loom))]

use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use gort_alloc::{AllocErrorKind, DropQueue, Heap, PAGE_SIZE, Shape, sizeclass};

mod util;

fn collect(heap: &Heap, live: &[usize]) {
    // SAFETY: single-threaded test: no cache method runs during these calls.
    unsafe { heap.start_mark() };
    for &a in live {
        heap.mark(a);
    }
    // SAFETY: as above.
    unsafe { heap.finish_mark() };
    heap.sweep_all();
}

/// A collection that marks nothing (every cache flushed first), swept by a zeroing sweeper.
fn collect_nothing_zeroing(heap: &Heap, c: &mut gort_alloc::Cache) {
    c.flush();
    // SAFETY: single-threaded test: no cache method runs during these calls.
    unsafe { heap.start_mark() };
    // SAFETY: as above.
    unsafe { heap.finish_mark() };
    while heap.sweep_one_zeroing() {}
}

#[test]
fn every_class_allocates_zeroed_aligned_findable_objects() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    for class in 1..sizeclass::NUM_SIZE_CLASSES {
        let size = sizeclass::class_size(class);
        for noscan in [true, false] {
            let shape = if noscan {
                Shape::NOSCAN
            } else {
                Shape::ALL_POINTERS
            };
            let p = c.alloc(size, shape).unwrap();
            let a = p.as_ptr() as usize;
            assert_eq!(a % 8, 0);
            if size.is_multiple_of(16) {
                assert_eq!(a % 16, 0, "class {class}");
            }
            // SAFETY: `size` bytes were just allocated for us.
            let bytes = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), size) };
            assert!(bytes.iter().all(|&b| b == 0));
            bytes.fill(0xAB);
            let o = heap
                .find_object(a + size - 1)
                .expect("interior pointer resolves");
            assert_eq!(o.addr(), a);
            // Noscan objects under 16 bytes live in 16-byte tiny blocks.
            assert_eq!(o.size(), if noscan && size < 16 { 16 } else { size });
            assert_eq!(o.is_noscan(), noscan);
            let mut slots = 0;
            o.for_each_pointer_slot(|_| slots += 1);
            assert_eq!(slots, if noscan { 0 } else { size / 8 });
        }
    }
}

#[test]
fn reused_memory_comes_back_zeroed() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let mut ptrs = Vec::new();
    for _ in 0..2000 {
        let p = c.alloc_noscan(48).unwrap();
        // SAFETY: 48 bytes were allocated for us.
        unsafe { std::ptr::write_bytes(p.as_ptr(), 0xFF, 48) };
        ptrs.push(p.as_ptr() as usize);
    }
    drop(c);
    collect(&heap, &[]);
    let mut c = heap.cache();
    let mut reused = 0;
    for _ in 0..2000 {
        let p = c.alloc_noscan(48).unwrap();
        // SAFETY: 48 bytes were allocated for us.
        let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), 48) };
        assert!(b.iter().all(|&x| x == 0));
        reused += ptrs.contains(&(p.as_ptr() as usize)) as usize;
    }
    assert!(reused > 0, "freed slots are reused");
}

/// A zeroing background sweep frees emptied spans as zero, and the allocations that take
/// their pages back skip zeroing: each must still read as zeros. Fails if the sweeper
/// claims pages are zero without zeroing them.
#[test]
fn a_zeroing_sweeper_hands_its_freed_pages_back_zero() {
    let heap = Heap::new().unwrap();
    // Small classes with one- and many-page spans, a large object under the sweeper's
    // zeroing limit and one over it.
    let sizes = [48usize, 1024, 27264, 32768, 100_000, 300_000];
    let mut c = heap.cache();
    let mut old = std::collections::HashSet::new();
    for &n in &sizes {
        for _ in 0..(1 << 20) / n + 1 {
            let p = c.alloc_noscan(n).unwrap();
            // SAFETY: `n` bytes were allocated for us.
            unsafe { std::ptr::write_bytes(p.as_ptr(), 0xFF, n) };
            old.insert(p.as_ptr() as usize);
        }
    }
    c.flush();
    // SAFETY: single-threaded test: no cache method runs during these calls.
    unsafe { heap.start_mark() };
    // SAFETY: as above.
    unsafe { heap.finish_mark() };
    let mut swept = 0;
    while heap.sweep_one_zeroing() {
        swept += 1;
    }
    assert!(swept > 0);
    assert_eq!(heap.stats().heap_objects, 0);
    let mut reused = 0;
    for &n in sizes.iter().rev() {
        for _ in 0..(1 << 20) / n + 1 {
            let p = c.alloc_noscan(n).unwrap();
            // SAFETY: `n` bytes were allocated for us.
            let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), n) };
            assert!(
                b.iter().all(|&x| x == 0),
                "a {n}-byte object on reused pages is not zeroed"
            );
            reused += old.contains(&(p.as_ptr() as usize)) as usize;
        }
    }
    assert!(reused > 0, "freed pages are reused");
}

/// Spans of slots of 64 bytes or less are freed dirty by a zeroing sweeper (allocation
/// zeroes such slots itself): whether the same class or a large object takes the pages back,
/// every object must read as zeros. Fails if such a span is freed as zero unzeroed, or if a
/// span made from its pages skips zeroing.
#[test]
fn small_slots_freed_by_a_zeroing_sweeper_are_zeroed_by_their_next_allocation() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    for n in [16usize, 32, 64] {
        let mut old = std::collections::HashSet::new();
        for _ in 0..(1 << 20) / n {
            let p = c.alloc(n, Shape::ALL_POINTERS).unwrap();
            // SAFETY: `n` bytes were allocated for us (no collector reads them here).
            unsafe { std::ptr::write_bytes(p.as_ptr(), 0xFF, n) };
            old.insert(p.as_ptr() as usize);
        }
        collect_nothing_zeroing(&heap, &mut c);
        assert_eq!(heap.stats().heap_objects, 0);
        // The same class first, then large objects over whatever pages are left.
        let mut reused = 0;
        for _ in 0..(1 << 20) / n {
            let p = c.alloc(n, Shape::ALL_POINTERS).unwrap();
            // SAFETY: `n` bytes were allocated for us.
            let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), n) };
            assert!(
                b.iter().all(|&x| x == 0),
                "a reused {n}-byte slot is not zeroed"
            );
            reused += old.contains(&(p.as_ptr() as usize)) as usize;
        }
        assert!(reused > 0, "freed {n}-byte slots are reused");
        collect_nothing_zeroing(&heap, &mut c);
        for _ in 0..16 {
            let p = c.alloc_noscan(64 << 10).unwrap();
            // SAFETY: 64 KiB were allocated for us.
            let b = unsafe { std::slice::from_raw_parts(p.as_ptr(), 64 << 10) };
            assert!(
                b.iter().all(|&x| x == 0),
                "a large object on {n}-byte pages is not zeroed"
            );
        }
        collect_nothing_zeroing(&heap, &mut c);
    }
}

/// Allocate-black marks, when a cache takes an alloc word while marking, every slot it will
/// hand out from that word: objects allocated during marking survive its sweep though no
/// marker reached them (from the word the cache held when marking began, from the words
/// after it, from new spans, and tiny blocks), the slots left free are free again after the
/// sweep, and only the allocated ones count. Fails if any of those words is not blackened.
#[test]
fn objects_allocated_while_marking_survive_and_slots_left_free_do_not() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let before: Vec<usize> = (0..10)
        .map(|_| c.alloc(16, Shape::ALL_POINTERS).unwrap().as_ptr() as usize)
        .collect();
    // SAFETY: single-threaded test: no cache method runs during these calls.
    unsafe { heap.start_mark() };
    let mut during: Vec<usize> = (0..1500)
        .map(|_| c.alloc(16, Shape::ALL_POINTERS).unwrap().as_ptr() as usize)
        .collect();
    during.extend((0..100).map(|_| c.alloc_noscan(8).unwrap().as_ptr() as usize));
    // SAFETY: as above.
    unsafe { heap.finish_mark() };
    heap.sweep_all();
    for &p in &during {
        assert!(
            heap.find_object(p).is_some(),
            "{p:#x} allocated while marking was freed"
        );
    }
    for &p in &before {
        assert!(heap.find_object(p).is_none(), "{p:#x} was never marked");
    }
    // 1500 small objects and 100 tiny ones, two to a 16-byte block (a slot left free
    // after the tiny block would count here if blackened free slots survived).
    assert_eq!(heap.stats().heap_objects, 1500 + 50);
}

#[test]
fn marked_objects_survive_and_unmarked_are_freed() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let keep = c.alloc_noscan(64).unwrap().as_ptr() as usize;
    let lose = c.alloc_noscan(64).unwrap().as_ptr() as usize;
    let big = c.alloc_noscan(100_000).unwrap().as_ptr() as usize;
    // SAFETY: 64 bytes at `keep` are ours.
    unsafe { (keep as *mut u64).write(42) };
    assert!(heap.find_object(lose).is_some());
    c.flush();
    collect(&heap, &[keep]);
    assert!(heap.find_object(keep).is_some());
    assert!(heap.find_object(lose).is_none());
    assert!(heap.find_object(big).is_none());
    // SAFETY: `keep` survived.
    assert_eq!(unsafe { (keep as *const u64).read() }, 42);
    let s = heap.stats();
    assert_eq!(s.heap_objects, 1);
    assert_eq!(s.heap_alloc, 64);
}

#[test]
fn allocate_black_during_mark() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    // SAFETY: single-threaded: no cache method runs during the call.
    unsafe { heap.start_mark() };
    let a = c.alloc_noscan(32).unwrap().as_ptr() as usize;
    let t = c.alloc_noscan(3).unwrap().as_ptr() as usize;
    assert!(heap.is_marked(a));
    assert!(heap.is_marked(t));
    // SAFETY: as above.
    unsafe { heap.finish_mark() };
    heap.sweep_all();
    assert!(heap.find_object(a).is_some());
    assert!(!heap.is_marked(a), "mark bits are cleared by sweep");
}

#[test]
fn tiny_objects_share_a_block() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let a = c.alloc_noscan(4).unwrap().as_ptr() as usize;
    let b = c.alloc_noscan(4).unwrap().as_ptr() as usize;
    let d = c.alloc_noscan(8).unwrap().as_ptr() as usize;
    assert_eq!(b, a + 4);
    assert_eq!(d, a + 8);
    assert_eq!(heap.find_object(b).unwrap().addr(), a);
    assert_eq!(heap.find_object(d).unwrap().size(), 16);
}

#[test]
fn zero_size_and_bad_sizes() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let z1 = c.alloc_noscan(0).unwrap();
    let z2 = c.alloc(0, Shape::ALL_POINTERS).unwrap();
    assert_eq!(z1, z2);
    assert!(heap.find_object(z1.as_ptr() as usize).is_none());
    let e = c.alloc_noscan(usize::MAX).unwrap_err();
    assert_eq!(e.kind(), AllocErrorKind::TooLarge);
    let e = c.alloc_noscan(1 << 50).unwrap_err();
    assert_eq!(e.kind(), AllocErrorKind::TooLarge);
    assert!(e.to_string().contains("cannot allocate"));
    // The cache still works after failures.
    assert!(c.alloc_noscan(8).is_ok());
}

#[test]
fn find_object_never_crashes() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let p = c.alloc_noscan(1024).unwrap().as_ptr() as usize;
    for a in [
        0,
        1,
        8,
        4096,
        usize::MAX,
        usize::MAX - 7,
        1 << 47,
        1 << 48,
        (1 << 48) - 1,
        &c as *const _ as usize,
    ] {
        assert!(heap.find_object(a).is_none(), "{a:#x}");
    }
    let span_base = p & !(PAGE_SIZE - 1);
    for off in (0..PAGE_SIZE).step_by(8) {
        let a = span_base + off;
        if let Some(o) = heap.find_object(a) {
            assert_eq!(o.addr(), p);
        }
    }
    // Addresses in the arena but in free pages.
    assert!(heap.find_object(p + 10 * PAGE_SIZE).is_none());
}

#[test]
fn huge_objects_span_arenas() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let size = gort_alloc::ARENA_BYTES + 3 * PAGE_SIZE;
    let p = c.alloc(size, Shape::ALL_POINTERS).unwrap().as_ptr() as usize;
    let o = heap.find_object(p + size - 8).unwrap();
    assert_eq!(o.addr(), p);
    let mut n = 0;
    o.for_each_pointer_slot(|_| n += 1);
    assert_eq!(n, o.size() / 8);
    drop(c);
    collect(&heap, &[]);
    assert!(heap.find_object(p).is_none());
    let s = heap.stats();
    assert_eq!(s.heap_inuse, 0);
}

#[test]
fn heap_bits_follow_the_shape() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let bm = [0b1010_0001u64];
    let p = c.alloc(64, Shape::pointers(&bm)).unwrap().as_ptr() as usize;
    let mut words = Vec::new();
    heap.find_object(p)
        .unwrap()
        .for_each_pointer_slot(|a| words.push((a - p) / 8));
    assert_eq!(words, vec![0, 5, 7]);
    let h = c
        .alloc(
            16,
            Shape {
                header: Some(0xDEAD),
                ..Shape::pointers(&[0b1])
            },
        )
        .unwrap()
        .as_ptr() as usize;
    let o = heap.find_object(h).unwrap();
    // SAFETY: the object is live (no collection ran).
    assert_eq!(unsafe { o.header() }, Some(0xDEAD));
    let mut words = Vec::new();
    o.for_each_pointer_slot(|a| words.push((a - h) / 8));
    assert_eq!(words, vec![1]);
    // SAFETY: as above.
    assert_eq!(unsafe { heap.find_object(p).unwrap().header() }, None);
}

#[derive(Default)]
struct Queue(Mutex<Vec<usize>>);

impl DropQueue for Queue {
    fn push(&self, obj: NonNull<u8>, _size: usize) {
        self.0.lock().unwrap().push(obj.as_ptr() as usize);
    }
}

#[test]
fn objects_with_drop_glue_are_queued_then_freed_after_release() {
    let q = Arc::new(Queue::default());
    let heap = Heap::with_drop_queue(q.clone()).unwrap();
    let mut c = heap.cache();
    let fin = Shape {
        finalize: true,
        ..Shape::NOSCAN
    };
    let a = c.alloc(24, fin).unwrap().as_ptr() as usize;
    let early = c.alloc(24, fin).unwrap().as_ptr() as usize;
    assert!(
        !heap.release_finalized(NonNull::new(early as *mut u8).unwrap()),
        "an object not yet queued cannot be released"
    );
    let b = c.alloc(24, Shape::NOSCAN).unwrap().as_ptr() as usize;
    let keep = c.alloc(24, Shape::NOSCAN).unwrap().as_ptr() as usize;
    drop(c);
    collect(&heap, &[keep]);
    let mut queued = q.0.lock().unwrap().clone();
    queued.sort();
    assert_eq!(
        queued,
        vec![a.min(early), a.max(early)],
        "both dead objects with drop glue queued"
    );
    assert!(
        heap.find_object(a).is_some(),
        "queued object stays allocated"
    );
    assert!(heap.find_object(b).is_none());
    collect(&heap, &[keep]);
    assert_eq!(q.0.lock().unwrap().len(), 2, "queued once each");
    assert!(heap.find_object(a).is_some(), "kept until released");
    assert!(heap.release_finalized(NonNull::new(a as *mut u8).unwrap()));
    collect(&heap, &[keep]);
    assert!(
        heap.find_object(a).is_none(),
        "freed by the sweep after release"
    );
}

#[test]
fn release_free_pages_and_retained_target() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    for _ in 0..200 {
        c.alloc_noscan(40_000).unwrap();
    }
    drop(c);
    collect(&heap, &[]);
    let s = heap.stats();
    assert!(s.heap_idle > s.heap_released);
    let released = heap.release_free_pages();
    assert!(released > 0);
    let s = heap.stats();
    assert_eq!(s.heap_idle, s.heap_released);
    // A target: allocate, free, and the heap returns pages down to it.
    let mut c = heap.cache();
    for _ in 0..200 {
        c.alloc_noscan(40_000).unwrap();
    }
    drop(c);
    heap.set_retained_target(2 << 20);
    collect(&heap, &[]);
    let s = heap.stats();
    assert!(s.heap_sys - s.heap_released <= (3 << 20), "{s:?}");
}

#[test]
fn stats_identities_and_by_size() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    for i in 0..1000 {
        c.alloc_noscan(8 + (i % 300)).unwrap();
    }
    c.alloc_noscan(5).unwrap();
    c.alloc_noscan(5).unwrap();
    c.flush();
    let s = heap.stats();
    assert_eq!(s.mallocs, 1002);
    assert_eq!(s.heap_objects, s.mallocs - s.frees);
    assert_eq!(s.heap_sys, s.heap_inuse + s.heap_idle);
    assert!(s.heap_released <= s.heap_idle);
    assert_eq!(s.by_size.len(), 61);
    assert_eq!(s.by_size[1].size, 8);
    assert_eq!(s.by_size[1].mallocs, 0, "8-byte noscan objects are tiny");
    assert!(s.by_size[2].mallocs > 0);
    let small: u64 = s.by_size.iter().map(|b| b.mallocs).sum();
    assert!(
        small < s.mallocs,
        "tiny allocations packed into blocks count only in the totals"
    );
    assert!(s.mcache_inuse > 0 && s.mspan_inuse > 0);
}

#[test]
fn caches_on_many_threads() {
    let heap = Heap::new().unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let heap = heap.clone();
            std::thread::spawn(move || {
                let mut c = heap.cache();
                let mut v = Vec::new();
                for i in 0..20_000usize {
                    let size = 8 + (i * 7 + t) % 2000;
                    let p = c.alloc_noscan(size).unwrap();
                    // SAFETY: `size` ≥ 8 bytes are ours.
                    unsafe { (p.as_ptr() as *mut usize).write(i) };
                    v.push((p.as_ptr() as usize, i));
                }
                for (p, i) in v {
                    // SAFETY: nothing was freed: no collection ran.
                    assert_eq!(unsafe { (p as *const usize).read() }, i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn os_refusal_is_an_error_with_errno() {
    if std::env::var_os("GORT_ALLOC_RLIMIT_CHILD").is_some() {
        // Child: cap the address space a little above what is mapped now, then ask for more.
        util::cap_address_space(256 << 20);
        let heap = Heap::new().expect("a small heap fits under the cap");
        let mut c = heap.cache();
        assert!(c.alloc_noscan(64).is_ok());
        let e = c
            .alloc_noscan(1 << 30)
            .expect_err("1 GiB cannot fit under the cap");
        println!("CHILD kind={:?} errno={:?} msg={}", e.kind(), e.errno(), e);
        assert!(
            c.alloc_noscan(64).is_ok(),
            "the heap still works after the refusal"
        );
        return;
    }
    let stdout = util::run_child(
        "os_refusal_is_an_error_with_errno",
        "GORT_ALLOC_RLIMIT_CHILD",
    );
    assert!(
        stdout.contains("CHILD kind=OutOfMemory errno=Some(12)"),
        "{stdout}"
    );
    assert!(stdout.contains("refused"), "{stdout}");
}

#[test]
fn concurrent_mutators_sweeper_and_collections_keep_live_objects_intact() {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicBool, Ordering};
    const THREADS: usize = 2;
    const CYCLES: usize = 6;
    let heap = Heap::new().unwrap();
    type Roots = Arc<Vec<Mutex<Vec<(usize, u64)>>>>;
    let roots: Roots = Arc::new((0..THREADS).map(|_| Mutex::new(Vec::new())).collect());
    let stop = Arc::new(Barrier::new(THREADS + 1));
    let restart = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(AtomicBool::new(false));
    // A background sweeper that runs all the time, racing with refills.
    let sweeper = {
        let (heap, done) = (heap.clone(), done.clone());
        std::thread::spawn(move || {
            let mut swept = 0usize;
            while !done.load(Ordering::Relaxed) {
                if heap.sweep_one() {
                    swept += 1;
                } else {
                    std::thread::yield_now();
                }
            }
            swept
        })
    };
    let mutators: Vec<_> = (0..THREADS)
        .map(|t| {
            let (heap, roots, stop, restart) =
                (heap.clone(), roots.clone(), stop.clone(), restart.clone());
            std::thread::spawn(move || {
                let mut c = heap.cache();
                for cycle in 0..CYCLES {
                    for i in 0..3000u64 {
                        let size = [8, 24, 48, 100, 700, 5000, 40_000][(i % 7) as usize];
                        let p = c.alloc_noscan(size).unwrap().as_ptr() as usize;
                        let id = ((t as u64) << 48) | ((cycle as u64) << 32) | i;
                        // SAFETY: at least 8 bytes at `p` are ours.
                        unsafe { (p as *mut u64).write(id) };
                        if i % 5 == 0 {
                            roots[t].lock().unwrap().push((p, id));
                        }
                    }
                    {
                        let mut r = roots[t].lock().unwrap();
                        for &(p, id) in r.iter() {
                            // SAFETY: rooted objects survive every collection.
                            let v = unsafe { (p as *const u64).read() };
                            assert_eq!(v, id, "live object overwritten");
                        }
                        let n = r.len() / 2;
                        r.drain(..n);
                    }
                    stop.wait();
                    restart.wait();
                }
            })
        })
        .collect();
    for _ in 0..CYCLES {
        stop.wait();
        // SAFETY: every mutator waits at `restart`, inside no cache method.
        unsafe { heap.start_mark() };
        for r in roots.iter() {
            for &(p, _) in r.lock().unwrap().iter() {
                assert!(heap.find_object(p).is_some(), "rooted object lost");
                heap.mark(p);
            }
        }
        // SAFETY: as above.
        unsafe { heap.finish_mark() };
        restart.wait();
    }
    for m in mutators {
        m.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let swept = sweeper.join().unwrap();
    heap.sweep_all();
    let s = heap.stats();
    assert_eq!(s.heap_objects, s.mallocs - s.frees);
    assert!(swept > 0 || s.frees > 0);
}

#[test]
fn mark_batch_marks_like_mark_and_reports_each_new_object_once() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let objs: Vec<usize> = (0..300)
        .map(|i| c.alloc_noscan(16 + (i % 3) * 100).unwrap().as_ptr() as usize)
        .collect();
    // SAFETY: single-threaded: no cache method runs during the call.
    unsafe { heap.start_mark() };
    heap.mark(objs[5]);
    let mut batch: Vec<usize> = objs.iter().step_by(2).copied().collect();
    batch.push(objs[10] + 3); // an interior pointer to an object already in the batch
    batch.push(12345); // not a heap address
    let mut newly = Vec::new();
    heap.mark_batch(batch.iter().copied(), |o| newly.push(o.addr()));
    let mut expect: Vec<usize> = objs
        .iter()
        .step_by(2)
        .copied()
        .filter(|&a| a != objs[5])
        .collect();
    expect.sort();
    newly.sort();
    assert_eq!(newly, expect);
    for (i, &a) in objs.iter().enumerate() {
        assert_eq!(heap.is_marked(a), i % 2 == 0 || i == 5, "object {i}");
    }
}

#[test]
fn heap_bits_are_right_across_the_whole_arena() {
    // Fill well past the first 1/64 of an arena with pointerful objects of mixed classes and
    // check each object's pointer words.
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let bm = [0b1001u64];
    let mut objs = Vec::new();
    for i in 0..3000 {
        let size = [32, 48, 1024, 5000][i % 4];
        objs.push((
            c.alloc(size, Shape::pointers(&bm)).unwrap().as_ptr() as usize,
            size,
        ));
    }
    for (p, size) in objs {
        let mut words = Vec::new();
        heap.find_object(p)
            .unwrap()
            .for_each_pointer_slot(|a| words.push((a - p) / 8));
        assert_eq!(words, vec![0, 3], "object of {size} bytes");
    }
}

/// A span remembers the layout its small objects share (so a marker skips the heap bits);
/// a span made later from the same pages must forget it. Small objects with every word a
/// pointer fill some pages and die; a large object laid out otherwise takes those pages,
/// and its first words must read by its own layout. Fails if a span's record keeps the
/// layout of the span that used its pages before.
#[test]
fn a_span_made_from_freed_pages_forgets_the_layout_of_their_last_objects() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let small: Vec<usize> = (0..4 * PAGE_SIZE / 16)
        .map(|_| c.alloc(16, Shape::ALL_POINTERS).unwrap().as_ptr() as usize)
        .collect();
    let (lo, hi) = (*small.iter().min().unwrap(), *small.iter().max().unwrap());
    c.flush();
    collect(&heap, &[]);
    let bm = [0b10u64];
    let big = c.alloc(40_000, Shape::pointers(&bm)).unwrap().as_ptr() as usize;
    assert!(
        (lo..=hi).contains(&big),
        "the large object should take the freed pages (first fit)"
    );
    let mut words = Vec::new();
    heap.find_object(big)
        .unwrap()
        .for_each_pointer_slot_in(0, 32, |a| words.push((a - big) / 8));
    assert_eq!(words, vec![1], "the large object's own layout");
}

/// Objects allocated while their span holds one layout get no heap bits; the first object
/// of another layout must write theirs before the span is read by the heap bits. For every
/// class of at most seven words (24 and 48 bytes put objects across bitmap words; 64, the
/// first class past the record, for contrast), 150 objects with every word a pointer, then
/// one with none: each must still report its own words. Fails if the span turns mixed without writing the earlier objects' bits (fresh
/// pages read as no pointers at all).
#[test]
fn objects_allocated_while_their_span_had_one_layout_keep_it_when_the_span_turns_mixed() {
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let none = [0u64];
    for size in [8usize, 16, 24, 32, 48, 64] {
        let words = size / 8;
        let all: Vec<usize> = (0..150)
            .map(|_| c.alloc(size, Shape::ALL_POINTERS).unwrap().as_ptr() as usize)
            .collect();
        let other = c.alloc(size, Shape::pointers(&none)).unwrap().as_ptr() as usize;
        let pointer_words = |a: usize| {
            let mut w = Vec::new();
            heap.find_object(a)
                .unwrap()
                .for_each_pointer_slot(|p| w.push((p - a) / 8));
            w
        };
        for &a in &all {
            assert_eq!(
                pointer_words(a),
                (0..words).collect::<Vec<_>>(),
                "{size}-byte {a:#x}"
            );
        }
        assert_eq!(
            pointer_words(other),
            Vec::<usize>::new(),
            "{size}-byte, the odd one"
        );
        // And the span stays mixed: later objects of either layout keep theirs.
        let a = c.alloc(size, Shape::ALL_POINTERS).unwrap().as_ptr() as usize;
        let b = c.alloc(size, Shape::pointers(&none)).unwrap().as_ptr() as usize;
        assert_eq!(pointer_words(a), (0..words).collect::<Vec<_>>());
        assert_eq!(pointer_words(b), Vec::<usize>::new());
    }
}

#[test]
fn heap_is_shareable_and_caches_can_move() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Heap>();
    send::<gort_alloc::Cache>();
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let p = c.alloc_noscan(100).unwrap().as_ptr() as usize;
    // A cache may continue on another thread.
    let q = std::thread::spawn(move || c.alloc_noscan(100).unwrap().as_ptr() as usize)
        .join()
        .unwrap();
    assert_ne!(p, q);
    assert!(heap.find_object(q).is_some());
}

#[test]
fn mark_batch_agrees_with_find_object_on_mixed_addresses() {
    // Objects of several classes and a large one; half of them freed by a collection, so
    // the batch meets free slots, interior pointers, duplicates and out-of-order words.
    let heap = Heap::new().unwrap();
    let mut c = heap.cache();
    let sizes = [8usize, 16, 24, 48, 1024, 5000, 40000];
    let objs: Vec<(usize, usize)> = (0..700)
        .map(|i| {
            let size = sizes[i % sizes.len()];
            let p = if i % 2 == 0 {
                c.alloc_noscan(size)
            } else {
                c.alloc(size, Shape::ALL_POINTERS)
            };
            (p.unwrap().as_ptr() as usize, size)
        })
        .collect();
    // SAFETY: single-threaded: no cache method runs during these calls.
    unsafe { heap.start_mark() };
    for &(a, _) in objs.iter().step_by(2) {
        heap.mark(a);
    }
    // SAFETY: as above; only the marked half is used afterwards (by address, not memory).
    unsafe { heap.finish_mark() };
    heap.sweep_all();
    // SAFETY: as above.
    unsafe { heap.start_mark() };
    let mut x = 12345u64;
    let mut rnd = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let mut batch = Vec::new();
    for _ in 0..3000 {
        let (a, size) = objs[rnd() % objs.len()];
        batch.push(a + rnd() % (size + 64));
    }
    // Which objects a sequential walk finds (the batch's expected newly-marked set).
    let mut expect: Vec<usize> = batch
        .iter()
        .filter_map(|&a| heap.find_object(a).map(|o| o.addr()))
        .collect();
    expect.sort();
    expect.dedup();
    let mut newly = Vec::new();
    heap.mark_batch(batch.iter().copied(), |o| newly.push(o.addr()));
    newly.sort();
    assert_eq!(newly, expect, "each found object reported exactly once");
    for &a in &expect {
        assert!(heap.is_marked(a));
    }
    // A second batch marks nothing new.
    let mut again = 0;
    heap.mark_batch(batch.iter().copied(), |_| again += 1);
    assert_eq!(again, 0);
    // SAFETY: as above.
    unsafe { heap.finish_mark() };
}

/// The sweep an allocation does to find a span (`cache_span`) keeps a span it empties and
/// allocates from it, as Go's `mspan.sweep(preserve)` does: freeing it and then taking pages
/// back from the page heap for the same class would be work for nothing, and the search used
/// to free up to its whole budget of emptied spans before growing the heap anyway. The
/// reused slots come back zeroed, and a dead object with drop glue keeps its slot while it
/// waits in the drop queue.
#[test]
fn an_allocation_takes_the_span_it_swept_empty_instead_of_freeing_it() {
    const SIZE: usize = 1024; // 8 objects per 8 KiB span
    let q = Arc::new(Queue::default());
    let heap = Heap::with_drop_queue(q.clone()).unwrap();
    let mut c = heap.cache();
    let fin = Shape {
        finalize: true,
        ..Shape::NOSCAN
    };
    // 64 spans' worth, every byte dirtied; one object with drop glue among them.
    let old: Vec<usize> = (0..512)
        .map(|i| {
            let shape = if i == 100 { fin } else { Shape::NOSCAN };
            let p = c.alloc(SIZE, shape).unwrap();
            // SAFETY: `SIZE` bytes were allocated for us.
            unsafe { std::ptr::write_bytes(p.as_ptr(), 0xEE, SIZE) };
            p.as_ptr() as usize
        })
        .collect();
    let queued = old[100];
    drop(c);
    // A collection that keeps nothing, with the sweep left to allocation.
    // SAFETY: single-threaded test: no cache method runs during these calls.
    unsafe { heap.start_mark() };
    // SAFETY: as above.
    unsafe { heap.finish_mark() };
    let before = heap.stats();
    let mut c = heap.cache();
    let first = c.alloc_noscan(SIZE).unwrap().as_ptr() as usize;
    let after = heap.stats();
    assert_eq!(
        after.heap_idle, before.heap_idle,
        "the refill freed emptied spans to the page heap instead of using one"
    );
    assert!(
        old.contains(&first),
        "the new object is not in a swept span"
    );
    let mut new = vec![first];
    for _ in 1..511 {
        new.push(c.alloc_noscan(SIZE).unwrap().as_ptr() as usize);
    }
    for &a in &new {
        // SAFETY: `SIZE` bytes at `a` were allocated for us.
        let b = unsafe { std::slice::from_raw_parts(a as *const u8, SIZE) };
        assert!(
            b.iter().all(|&x| x == 0),
            "a reused slot at {a:#x} is dirty"
        );
        assert_ne!(
            a, queued,
            "the slot of an object in the drop queue was handed out"
        );
    }
    let mut sorted_old: Vec<usize> = old.iter().copied().filter(|&a| a != queued).collect();
    sorted_old.sort_unstable();
    new.sort_unstable();
    assert_eq!(
        new, sorted_old,
        "every freed slot is reused, and nothing else"
    );
    assert_eq!(q.0.lock().unwrap().as_slice(), &[queued]);
    let s = heap.stats();
    assert_eq!(s.heap_inuse, before.heap_inuse, "the heap grew: {s:?}");
    c.flush();
    let s = heap.stats();
    assert_eq!(s.heap_objects, 512, "511 new objects and the queued one");
    assert_eq!(s.frees, 511);
    assert_eq!(s.heap_objects, s.mallocs - s.frees);
}

/// Refills that keep the spans they sweep empty, racing a background sweeper that frees the
/// empty spans it reaches first (every other sweep a zeroing one, whose freed pages the next
/// taker does not zero), over collections that flip the generation under both: every new
/// object of every size comes back all zero (its span's slots were dirtied by the cycle
/// before, whoever swept it), no live object is overwritten (by a refill's reuse or by the
/// sweeper's zeroing), and no span is both kept by a refill and freed by the sweeper (that
/// would hand one slot out twice).
#[test]
fn refills_keeping_emptied_spans_race_a_sweeper_and_hand_out_only_zeroed_free_slots() {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicBool, Ordering};
    const THREADS: usize = 2;
    const CYCLES: usize = 8;
    const SIZES: [usize; 4] = [48, 1024, 8192, 32768];
    let heap = Heap::new().unwrap();
    let stop = Arc::new(Barrier::new(THREADS + 1));
    let restart = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(AtomicBool::new(false));
    type Live = Arc<Vec<Mutex<Vec<(usize, usize, u8)>>>>;
    let live: Live = Arc::new((0..THREADS).map(|_| Mutex::new(Vec::new())).collect());
    // A mutator records what went wrong and carries on: a panic would leave the others and
    // the collecting thread waiting at the barriers forever.
    let failed: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let sweeper = {
        let (heap, done) = (heap.clone(), done.clone());
        std::thread::spawn(move || {
            let mut zeroing = false;
            while !done.load(Ordering::Relaxed) {
                zeroing = !zeroing;
                let swept = if zeroing {
                    heap.sweep_one_zeroing()
                } else {
                    heap.sweep_one()
                };
                if !swept {
                    std::thread::yield_now();
                }
            }
        })
    };
    let mutators: Vec<_> = (0..THREADS)
        .map(|t| {
            let (heap, stop, restart, live, failed) = (
                heap.clone(),
                stop.clone(),
                restart.clone(),
                live.clone(),
                failed.clone(),
            );
            let fail = move |what: String| {
                failed.lock().unwrap().get_or_insert(what);
            };
            std::thread::spawn(move || {
                let mut c = heap.cache();
                for cycle in 0..CYCLES {
                    for i in 0..400usize {
                        let size = SIZES[i % SIZES.len()];
                        let p = c.alloc_noscan(size).unwrap().as_ptr();
                        // SAFETY: `size` bytes at `p` were just allocated for us.
                        let b = unsafe { std::slice::from_raw_parts_mut(p, size) };
                        if !b.iter().all(|&x| x == 0) {
                            fail(format!(
                                "a reused slot of {size} bytes came back dirty (cycle {cycle})"
                            ));
                        }
                        let tag = (t * 31 + cycle * 7 + i) as u8 | 1;
                        b.fill(tag);
                        if i % 16 == 0 {
                            live[t].lock().unwrap().push((p as usize, size, tag));
                        }
                    }
                    {
                        let mut l = live[t].lock().unwrap();
                        for &(p, size, tag) in l.iter() {
                            // SAFETY: rooted objects survive every collection.
                            let b = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
                            if !b.iter().all(|&x| x == tag) {
                                fail("a live object was overwritten".into());
                            }
                        }
                        // Half the survivors die each cycle: their spans empty out.
                        let n = l.len() / 2;
                        l.drain(..n);
                    }
                    stop.wait();
                    restart.wait();
                }
            })
        })
        .collect();
    for _ in 0..CYCLES {
        stop.wait();
        // SAFETY: every mutator waits at `restart`, inside no cache method.
        unsafe { heap.start_mark() };
        for l in live.iter() {
            for &(p, _, _) in l.lock().unwrap().iter() {
                heap.mark(p);
            }
        }
        // SAFETY: as above.
        unsafe { heap.finish_mark() };
        restart.wait();
    }
    for m in mutators {
        m.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    sweeper.join().unwrap();
    if let Some(what) = failed.lock().unwrap().take() {
        panic!("{what}");
    }
    heap.sweep_all();
    let s = heap.stats();
    assert_eq!(s.heap_objects, s.mallocs - s.frees);
    let kept: usize = live.iter().map(|l| l.lock().unwrap().len()).sum();
    assert!(s.heap_objects as usize >= kept);
}
