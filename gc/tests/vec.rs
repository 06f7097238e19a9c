//! `GcVec`: growth with a bulk barrier while marking, oblets for large arrays, concurrent
//! writers and readers.
#![cfg(not(loom))]

mod util;

use gort_gc::{Config, GcVec, Heap, Root, Slot, Trace};

#[derive(Trace)]
struct Item {
    val: u64,
    next: Slot<Item>,
}

fn heap() -> Heap {
    Heap::new(Config {
        checkmark: true,
        procs: 2,
        ..Config::default()
    })
    .unwrap()
}

#[test]
fn a_large_vector_grows_under_concurrent_cycles() {
    // 200k elements: a 1.6 MiB backing array, scanned in 128 KiB oblets.
    const N: u64 = 200_000;
    let h = heap();
    let cycles = util::back_to_back(&h);
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        let v = s.alloc(GcVec::<Item>::new());
        for i in 0..N {
            s.scope(|s| {
                let it = s.alloc(Item {
                    val: i,
                    next: Slot::null(),
                });
                v.push(s, Some(it));
            });
        }
        assert_eq!(v.len(), N as usize);
        s.gc();
        for i in (0..N).step_by(97) {
            let it = v.get(s, i as usize).unwrap();
            assert_eq!(it.val, i);
        }
        // Overwrite, pop, clear.
        let last = v.pop(s).unwrap();
        assert_eq!(last.val, N - 1);
        v.set(s, 0, None);
        assert!(v.get(s, 0).is_none());
        s.gc();
        for i in (1..N - 1).step_by(101) {
            assert_eq!(v.get(s, i as usize).unwrap().val, i);
        }
        v.clear(s);
        assert!(v.is_empty() && v.get(s, 5).is_none());
    });
    drop(cycles);
}

#[test]
fn two_writers_and_a_reader_share_a_vector() {
    let h = heap();
    let cycles = util::back_to_back(&h);
    let root = {
        let mut m = h.attach().unwrap();
        m.scope(|s| Root::new(s, s.alloc(GcVec::<Item>::new())))
    };
    std::thread::scope(|sc| {
        for k in 0..2u64 {
            let (h, root) = (h.clone(), root.clone());
            sc.spawn(move || {
                let mut m = h.attach().unwrap();
                for i in 0..5_000u64 {
                    m.scope(|s| {
                        let it = s.alloc(Item {
                            val: k * 1_000_000 + i,
                            next: Slot::null(),
                        });
                        root.get(s).push(s, Some(it));
                    });
                }
            });
        }
        let (h, root) = (h.clone(), root.clone());
        sc.spawn(move || {
            let mut m = h.attach().unwrap();
            for _ in 0..200 {
                m.scope(|s| {
                    let v = root.get(s);
                    let n = v.len();
                    for i in (0..n).step_by(37) {
                        let it = v.get(s, i).expect("pushed elements are never null");
                        assert!(it.val % 1_000_000 < 5_000);
                    }
                });
            }
        });
    });
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        let v = root.get(s);
        assert_eq!(v.len(), 10_000);
        let mut seen = std::collections::HashSet::new();
        for i in 0..v.len() {
            assert!(seen.insert(v.get(s, i).unwrap().val));
        }
    });
    drop(cycles);
}

#[test]
fn a_vector_outside_the_heap_refuses_every_write() {
    let h = heap();
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        // A `GcVec` on the stack: nothing would trace its elements, so writes panic — and a
        // panicking write leaves nothing half-done behind for the next one to trip on.
        let on_stack = GcVec::<Item>::new();
        let item = s.alloc(Item {
            val: 1,
            next: Slot::null(),
        });
        for _ in 0..3 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                on_stack.push(s, Some(item));
            }));
            assert!(r.is_err(), "push into a GcVec outside the heap succeeded");
        }
        assert!(on_stack.is_empty());
        assert!(on_stack.get(s, 0).is_none());
        let pop = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_stack.pop(s)));
        assert!(pop.is_err(), "pop from a GcVec outside the heap");
    });
}

#[test]
fn a_vector_refuses_an_element_of_another_heap_and_stays_usable() {
    // A store into a vector checks the stored element's heap (its own slot's heap follows
    // from the vector's): an element of another heap must be refused on push and set alike,
    // leave the vector as it was, and leave its lock free for the next write.
    let a = heap();
    let b = heap();
    let mut ma = a.attach().unwrap();
    let mut mb = b.attach().unwrap();
    ma.scope(|sa| {
        let v = sa.alloc(GcVec::<Item>::new());
        let mine = sa.alloc(Item {
            val: 1,
            next: Slot::null(),
        });
        v.push(sa, Some(mine));
        mb.scope(|sb| {
            let foreign = sb.alloc(Item {
                val: 2,
                next: Slot::null(),
            });
            let set = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                v.set(sa, 0, Some(foreign));
            }));
            assert!(set.is_err(), "set stored an element of another heap");
            let push = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                v.push(sa, Some(foreign));
            }));
            assert!(push.is_err(), "push stored an element of another heap");
        });
        assert_eq!(v.len(), 1, "a refused push changed the length");
        assert_eq!(
            v.get(sa, 0).unwrap().val,
            1,
            "a refused set changed the element"
        );
        // The lock was released by the refused writes: these do not spin forever.
        v.set(sa, 0, None);
        v.push(sa, Some(mine));
        assert!(v.get(sa, 0).is_none());
        assert_eq!(v.get(sa, 1).unwrap().val, 1);
    });
}
