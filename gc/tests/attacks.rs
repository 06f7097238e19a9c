//! Attacks on the glue: mutators detaching, blocking and unblocking, roots cloned and dropped
//! on other threads, finalizers that allocate, heaps dropped early, cycles forced from every
//! mutator at once — each while cycles run back to back, with checkmark on.
#![cfg(not(loom))]

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gort_gc::{Config, Heap, Local, Root, Scope, Slot, Trace};

#[derive(Trace)]
struct Node {
    next: Slot<Node>,
    val: u64,
}

fn node(val: u64) -> Node {
    Node {
        next: Slot::null(),
        val,
    }
}

fn heap() -> Heap {
    Heap::new(Config {
        checkmark: true,
        procs: 2,
        ..Config::default()
    })
    .unwrap()
}

/// Run `f` while another thread forces cycles back to back.
fn under_gc_loop(h: &Heap, f: impl FnOnce()) -> u32 {
    let before = h.stats().num_gc;
    let cycles = util::back_to_back(h);
    f();
    drop(cycles);
    h.stats().num_gc - before
}

fn list<'s>(s: &Scope<'s>, n: u64) -> Local<'s, Node> {
    let head = s.alloc(node(0));
    let mut tail = head;
    for i in 1..n {
        let x = s.alloc(node(i));
        tail.next.set(s, Some(x));
        tail = x;
    }
    head
}

fn check_list(s: &mut Scope<'_>, head: Local<'_, Node>, n: u64) {
    s.scope(|s| {
        let mut cur = Some(head);
        let mut i = 0;
        while let Some(c) = cur {
            assert_eq!(c.val, i, "list node corrupted");
            i += 1;
            cur = c.next.get(s);
        }
        assert_eq!(i, n);
    });
}

#[test]
fn mutators_attaching_and_exiting_mid_mark() {
    let h = heap();
    let cycles = under_gc_loop(&h, || {
        for _ in 0..20 {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let h = h.clone();
                    std::thread::spawn(move || {
                        let mut m = h.attach().unwrap();
                        m.scope(|s| {
                            let l = list(s, 500);
                            check_list(s, l, 500);
                        });
                        // Exits (detaches) whatever phase the collector is in.
                    })
                })
                .collect();
            for t in hs {
                t.join().unwrap();
            }
        }
    });
    assert!(cycles > 0);
}

#[test]
fn leaving_blocking_regions_while_the_world_stops() {
    let h = heap();
    let cycles = under_gc_loop(&h, || {
        std::thread::scope(|t| {
            for _ in 0..2 {
                let h = h.clone();
                t.spawn(move || {
                    let mut m = h.attach().unwrap();
                    m.scope(|s| {
                        let l = list(s, 200);
                        for k in 0..300 {
                            // In and out of a blocking region, and of nested scopes.
                            s.blocking(std::thread::yield_now);
                            if k % 10 == 0 {
                                check_list(s, l, 200);
                            }
                        }
                    });
                });
            }
        });
    });
    assert!(cycles > 0);
}

#[test]
fn roots_cloned_and_dropped_on_other_threads_during_root_scans() {
    let h = heap();
    let mut m = h.attach().unwrap();
    let roots: Vec<Root<Node>> = m.scope(|s| {
        (0..64)
            .map(|i| {
                s.scope(|s| {
                    let l = list(s, 50);
                    l.next.get(s).unwrap(); // touch
                    let r = Root::new(s, l);
                    let _ = i;
                    r
                })
            })
            .collect()
    });
    let roots = Arc::new(std::sync::Mutex::new(roots));
    under_gc_loop(&h, || {
        std::thread::scope(|t| {
            for k in 0..2 {
                let roots = roots.clone();
                t.spawn(move || {
                    // Not mutators: they only clone and drop roots.
                    for i in 0..2000usize {
                        let mut g = roots.lock().unwrap();
                        let j = (i * 7 + k) % g.len();
                        let c = g[j].clone();
                        g[j] = c; // the original is dropped here, the clone takes its place
                    }
                });
            }
        });
    });
    m.scope(|s| {
        for r in roots.lock().unwrap().iter() {
            let l = r.get(s);
            check_list(s, l, 50);
        }
    });
}

/// A type whose drop glue attaches to the heap, allocates, and stores into a live object.
#[derive(Trace)]
#[trace(drop)]
struct Resurrector {
    heap: std::sync::Mutex<Option<Heap>>,
    into: std::sync::Mutex<Option<Root<Node>>>,
    done: Arc<AtomicUsize>,
}

impl Drop for Resurrector {
    fn drop(&mut self) {
        let heap = self.heap.lock().unwrap().take().unwrap();
        let into = self.into.lock().unwrap().take().unwrap();
        let mut m = heap.attach().unwrap();
        m.scope(|s| {
            let fresh = s.alloc(node(4242));
            into.get(s).next.set(s, Some(fresh));
        });
        self.done.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn finalizer_that_allocates_and_stores_into_a_live_object() {
    let h = heap();
    let done = Arc::new(AtomicUsize::new(0));
    let mut m = h.attach().unwrap();
    let holder = m.scope(|s| {
        let holder = Root::new(s, s.alloc(node(1)));
        s.scope(|s| {
            s.alloc(Resurrector {
                heap: std::sync::Mutex::new(Some(h.clone())),
                into: std::sync::Mutex::new(Some(holder.clone())),
                done: done.clone(),
            });
        });
        holder
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while done.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the finalizer never ran");
        h.gc();
        std::thread::sleep(Duration::from_millis(2));
    }
    // The object the finalizer made is alive and reachable from the holder, cycles later.
    h.gc();
    h.gc();
    m.scope(|s| {
        let x = holder.get(s).next.get(s).expect("stored by the finalizer");
        assert_eq!(x.val, 4242);
    });
}

#[test]
fn heap_dropped_with_roots_alive() {
    let h = heap();
    let root = {
        let mut m = h.attach().unwrap();
        m.scope(|s| Root::new(s, s.alloc(node(9))))
    };
    let r2 = root.clone();
    drop(h); // collector and finalizer threads stop; the roots keep the memory
    assert_ne!(root.addr(), 0);
    drop(root);
    std::thread::spawn(move || drop(r2)).join().unwrap();
}

#[test]
fn cycles_forced_from_every_mutator_at_once() {
    let h = heap();
    let before = h.stats().num_gc;
    std::thread::scope(|t| {
        for _ in 0..4 {
            let h = h.clone();
            t.spawn(move || {
                let mut m = h.attach().unwrap();
                m.scope(|s| {
                    let l = list(s, 100);
                    for _ in 0..5 {
                        s.gc();
                        check_list(s, l, 100);
                    }
                });
            });
        }
    });
    let st = h.stats();
    assert!(
        st.num_gc - before >= 5,
        "each gc() waits for a cycle of its own"
    );
    assert!(st.num_forced_gc >= 5);
}

#[test]
fn a_vec_of_locals_keeps_its_objects() {
    let h = heap();
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        let v: Vec<Local<'_, Node>> = (0..10_000).map(|i| s.alloc(node(i))).collect();
        for _ in 0..3 {
            s.gc();
            // Garbage in between, reusing freed slots if anything was wrongly freed.
            s.scope(|s| {
                for i in 0..10_000 {
                    s.alloc(node(u64::MAX - i));
                }
            });
        }
        for (i, l) in v.iter().enumerate() {
            assert_eq!(l.val, i as u64);
        }
    });
}

#[test]
fn unreachable_objects_are_freed_within_two_cycles() {
    let h = heap();
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        s.scope(|s| {
            list(s, 20_000);
        });
    });
    let count = |h: &Heap| {
        let mut n = 0;
        h.alloc_heap()
            .for_each_object(gort_alloc::Objects::Allocated, |_| n += 1);
        n
    };
    h.gc();
    h.gc();
    assert!(
        count(&h) < 100,
        "{} objects left after two cycles",
        count(&h)
    );
}

#[derive(Trace)]
struct WithGlue {
    name: String,
    next: Slot<WithGlue>,
}

#[test]
fn garbage_with_drop_glue_is_freed_once_finalized() {
    let h = heap();
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        s.scope(|s| {
            let mut prev: Option<Local<'_, WithGlue>> = None;
            for i in 0..5_000 {
                let x = s.alloc(WithGlue {
                    name: format!("object {i}"),
                    next: Slot::null(),
                });
                x.next.set(s, prev);
                prev = Some(x);
            }
        });
    });
    let count = |h: &Heap| {
        let mut n = 0;
        h.alloc_heap()
            .for_each_object(gort_alloc::Objects::Allocated, |_| n += 1);
        n
    };
    // Cycle 1 finds them dead and queues them to the finalizer thread ...
    h.gc();
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.pending_finalizers() > 0 {
        assert!(Instant::now() < deadline, "finalizer stuck");
        std::thread::sleep(Duration::from_millis(1));
    }
    // ... which runs their drop glue (the Strings) and releases them; the next cycles free
    // them (three in all).
    h.gc();
    h.gc();
    assert!(
        count(&h) < 100,
        "{} objects left after three cycles",
        count(&h)
    );
}

#[test]
fn the_last_handles_dropped_while_a_cycle_marks() {
    // Shutdown mid-flight: cycles start by themselves (a tiny minimum heap), and the last
    // `Mutator` and `Heap` go while one is marking a large list. The drop must join the
    // collector's threads (which finish the cycle with no mutator left), not hang, and the
    // roots that outlive the heap stay harmless.
    for _ in 0..10 {
        let h = Heap::new(Config {
            checkmark: true,
            procs: 2,
            min_heap: 64 << 10,
            ..Config::default()
        })
        .unwrap();
        let mut m = h.attach().unwrap();
        let keep = m.scope(|s| {
            let l = list(s, 50_000);
            let keep = Root::new(s, l);
            let deadline = Instant::now() + Duration::from_secs(30);
            while !h.is_marking() {
                assert!(Instant::now() < deadline, "no cycle started by itself");
                s.scope(|s| {
                    list(s, 100);
                });
            }
            keep
        });
        // The mutator detaches here (it stands for this thread); the heap's last handle goes
        // on a watched thread.
        drop(m);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(h);
            done_tx.send(()).unwrap();
        });
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("dropping the last handles mid-cycle hung");
        drop(keep);
    }
}

#[derive(Trace, bytemuck::Zeroable)]
struct Zeroed {
    next: Slot<Zeroed>,
    bytes: [u8; 40],
    words: [u64; 2],
}

/// `alloc_zeroed` hands out all-zero objects even from slots that held dirty objects before
/// a sweep freed them, and zeroed objects linked while cycles run back to back (some born
/// black mid-mark, with nothing shaded for them) survive with what was stored in them.
#[test]
fn zeroed_objects_from_reused_memory_are_zero_and_survive_marking() {
    let h = heap();
    let cycles = under_gc_loop(&h, || {
        let mut m = h.attach().unwrap();
        for round in 0..20u64 {
            // Dirty objects of the same size class, garbage at once.
            m.scope(|s| {
                for _ in 0..2_000 {
                    s.alloc(Zeroed {
                        next: Slot::null(),
                        bytes: [0xA5; 40],
                        words: [u64::MAX; 2],
                    });
                }
            });
            let root = m.scope(|s| {
                let head = s.alloc_zeroed::<Zeroed>();
                let mut tail = head;
                for _ in 0..2_000 {
                    let z = s.alloc_zeroed::<Zeroed>();
                    assert!(
                        z.bytes.iter().all(|&b| b == 0) && z.words == [0, 0],
                        "round {round}: a zeroed object held old bytes"
                    );
                    assert!(z.next.get(s).is_none());
                    tail.next.set(s, Some(z));
                    tail = z;
                }
                Root::new(s, head)
            });
            m.scope(|s| {
                let mut n = 0;
                let mut cur = root.get(s).next.get(s);
                while let Some(c) = cur {
                    assert!(c.bytes.iter().all(|&b| b == 0));
                    n += 1;
                    cur = c.next.get(s);
                }
                assert_eq!(n, 2_000, "round {round}: the zeroed list lost nodes");
            });
        }
    });
    assert!(cycles > 0, "no cycle ran during the test");
}

/// A 1 KiB object of pointers (a span class of its own, 8 per page).
#[derive(Trace)]
struct Wide {
    slots: [Slot<Node>; 127],
    tag: u64,
}

/// One link of a chain whose grey objects alternate between spans of every kind.
#[derive(Trace)]
struct Mixed {
    next: Slot<Mixed>,
    small: Slot<Node>,
    wide: Slot<Wide>,
    big: Slot<gort_gc::GcVec<Node>>,
    val: u64,
}

#[test]
fn a_grey_list_alternating_between_small_wide_and_oblet_spans_keeps_every_object() {
    // The marker resolves each grey entry through the span of the entry before it, without
    // the alloc bits: a chain whose every hop changes span — 16-byte nodes, 1 KiB objects,
    // 40 KiB and 400 KiB arrays (the last scanned in 128 KiB oblets) — must come through
    // cycle after cycle with nothing lost (checkmark aborts on anything reachable left white).
    const LINKS: u64 = 60;
    let h = heap();
    let cycles = under_gc_loop(&h, || {
        let mut m = h.attach().unwrap();
        let root = m.scope(|s| {
            let head = s.alloc(Mixed {
                next: Slot::null(),
                small: Slot::null(),
                wide: Slot::null(),
                big: Slot::null(),
                val: 0,
            });
            let mut tail = head;
            for i in 1..=LINKS {
                s.scope(|s| {
                    let link = s.alloc(Mixed {
                        next: Slot::null(),
                        small: Slot::null(),
                        wide: Slot::null(),
                        big: Slot::null(),
                        val: i,
                    });
                    link.small.set(s, Some(s.alloc(node(i))));
                    let wide = s.alloc(Wide {
                        slots: std::array::from_fn(|_| Slot::null()),
                        tag: i,
                    });
                    for (k, slot) in wide.slots.iter().enumerate().step_by(9) {
                        slot.set(s, Some(s.alloc(node(i * 1000 + k as u64))));
                    }
                    link.wide.set(s, Some(wide));
                    // Every seventh link holds a 400 KiB array, the others a 40 KiB one.
                    let n = if i % 7 == 0 { 50_000 } else { 5_000 };
                    let big = s.alloc(gort_gc::GcVec::<Node>::new());
                    for k in 0..n {
                        let x = (k % 1_000 == 0).then(|| s.alloc(node(i * 100_000 + k)));
                        big.push(s, x);
                    }
                    link.big.set(s, Some(big));
                    tail.next.set(s, Some(link));
                });
                tail = tail.next.get(s).unwrap();
            }
            Root::new(s, head)
        });
        for round in 0..4 {
            m.scope(|s| {
                s.gc();
                let mut cur = root.get(s).next.get(s);
                let mut i = 0;
                while let Some(link) = cur {
                    i += 1;
                    assert_eq!(link.val, i, "round {round}: a link was corrupted");
                    assert_eq!(link.small.get(s).unwrap().val, i);
                    let wide = link.wide.get(s).unwrap();
                    assert_eq!(wide.tag, i);
                    for (k, slot) in wide.slots.iter().enumerate() {
                        match slot.get(s) {
                            Some(x) => assert_eq!(x.val, i * 1000 + k as u64),
                            None => assert!(k % 9 != 0, "round {round}: a wide slot lost"),
                        }
                    }
                    let big = link.big.get(s).unwrap();
                    let n = if i % 7 == 0 { 50_000 } else { 5_000 };
                    assert_eq!(big.len(), n as usize);
                    for k in (0..n).step_by(1_000) {
                        let x = big.get(s, k as usize).expect("a big array lost an element");
                        assert_eq!(x.val, i * 100_000 + k, "round {round}");
                    }
                    cur = link.next.get(s);
                }
                assert_eq!(i, LINKS, "round {round}: the chain lost links");
            });
        }
    });
    assert!(cycles > 0, "no cycle ran during the test");
}

/// A 16-byte object laid out unlike `Node`: both words are pointers.
#[derive(Trace)]
struct Pair {
    next: Slot<Pair>,
    item: Slot<Node>,
}

#[test]
fn objects_of_two_layouts_sharing_spans_while_two_threads_allocate_through_cycles() {
    // `Node` (pointer, integer) and `Pair` (pointer, pointer) share the 16-byte span class.
    // A span records the layout its objects share and scans read it instead of the heap bits:
    // a `Pair` scanned by `Node`'s layout loses its `item`. Two threads allocate both kinds
    // interleaved (so spans begin with either and then turn mixed) while cycles run back to
    // back — objects allocated black, words blackened ahead, spans swept and made again —
    // and every item must come through (checkmark aborts on anything reachable left white).
    const LINKS: u64 = 3_000;
    let h = heap();
    let cycles = under_gc_loop(&h, || {
        std::thread::scope(|t| {
            for thread in 0..2u64 {
                let h = &h;
                t.spawn(move || {
                    let mut m = h.attach().unwrap();
                    for round in 0..15u64 {
                        let root = m.scope(|s| {
                            let head = s.alloc(Pair {
                                next: Slot::null(),
                                item: Slot::null(),
                            });
                            let mut tail = head;
                            for i in 0..LINKS {
                                let n = s.alloc(node(thread << 32 | i));
                                let p = s.alloc(Pair {
                                    next: Slot::null(),
                                    item: Slot::null(),
                                });
                                p.item.set(s, Some(n));
                                tail.next.set(s, Some(p));
                                tail = p;
                                // Garbage of both kinds between the links.
                                s.scope(|s| {
                                    s.alloc(node(0));
                                });
                            }
                            Root::new(s, head)
                        });
                        // A whole cycle while the chain is live, besides the loop's.
                        m.scope(|s| s.blocking(|| h.gc()));
                        m.scope(|s| {
                            let mut cur = root.get(s).next.get(s);
                            let mut i = 0;
                            while let Some(p) = cur {
                                let n = p.item.get(s).expect("a pair lost its item");
                                assert_eq!(n.val, thread << 32 | i, "round {round}: item {i}");
                                i += 1;
                                cur = p.next.get(s);
                            }
                            assert_eq!(i, LINKS, "round {round}: the chain lost links");
                        });
                    }
                });
            }
        });
    });
    assert!(cycles > 0, "no cycle ran during the test");
}
