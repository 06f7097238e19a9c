//! Basics: objects reachable from handles and roots survive cycles; garbage is freed and
//! finalized; slots refuse foreign pointers.
#![cfg(not(loom))]

use std::mem::offset_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use gort_gc::{Config, Heap, PtrMap, Root, Slot, Trace};

struct Node {
    next: Slot<Node>,
    val: u64,
}

// SAFETY: `next` is the only pointer word.
unsafe impl Trace for Node {
    const PTRS: PtrMap = PtrMap::EMPTY.with(offset_of!(Node, next), PtrMap::ONE);
}

struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: no pointer words.
unsafe impl Trace for Counted {
    const PTRS: PtrMap = PtrMap::EMPTY;
}

fn heap() -> Heap {
    Heap::new(Config {
        checkmark: true,
        ..Config::default()
    })
    .unwrap()
}

#[test]
fn list_survives_forced_cycles() {
    let h = heap();
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        let head = s.alloc(Node {
            next: Slot::null(),
            val: 0,
        });
        let mut tail = head;
        for i in 1..10_000 {
            let n = s.alloc(Node {
                next: Slot::null(),
                val: i,
            });
            tail.next.set(s, Some(n));
            tail = n;
        }
        for _ in 0..3 {
            s.gc();
            // Fresh handles each round so the handle block stays small.
            s.scope(|s| {
                let mut cur = Some(head);
                let mut expect = 0;
                while let Some(c) = cur {
                    assert_eq!(c.val, expect);
                    expect += 1;
                    cur = c.next.get(s);
                }
                assert_eq!(expect, 10_000);
            });
        }
    });
    assert!(h.stats().num_gc >= 3);
}

#[test]
fn garbage_is_finalized_and_roots_keep_objects() {
    let h = heap();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut m = h.attach().unwrap();
    let root = m.scope(|s| {
        for _ in 0..1000 {
            s.scope(|s| {
                s.alloc(Counted(drops.clone()));
            });
        }
        let keep = s.alloc(Counted(drops.clone()));
        Root::new(s, keep)
    });
    // Three cycles: marked dead, queued to the finalizer, freed.
    for _ in 0..3 {
        h.gc();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while drops.load(Ordering::SeqCst) < 1000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1000,
        "the rooted one must not drop"
    );
    drop(root);
    for _ in 0..3 {
        h.gc();
    }
    while drops.load(Ordering::SeqCst) < 1001 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1001);
}

#[test]
#[should_panic(expected = "not in this mutator's heap")]
fn slot_outside_the_heap_refuses_a_pointer() {
    let h = heap();
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        let n = s.alloc(Node {
            next: Slot::null(),
            val: 1,
        });
        let on_stack: Slot<Node> = Slot::null();
        on_stack.set(s, Some(n));
    });
}

#[test]
#[should_panic(expected = "not in this mutator's heap")]
fn handle_of_another_heap_cannot_be_stored() {
    let a = heap();
    let b = heap();
    let mut ma = a.attach().unwrap();
    let mut mb = b.attach().unwrap();
    ma.scope(|sa| {
        let x = sa.alloc(Node {
            next: Slot::null(),
            val: 1,
        });
        let xr = Root::new(sa, x);
        mb.scope(|sb| {
            let y = sb.alloc(Node {
                next: Slot::null(),
                val: 2,
            });
            // `x` belongs to heap a: storing it into b's object is refused.
            let x_in_b = xr.addr();
            let _ = x_in_b;
            y.next.set(sb, Some(xr.get(sa)));
        });
    });
}

#[test]
fn second_attach_on_one_thread_is_an_error() {
    let h = heap();
    let _m = h.attach().unwrap();
    assert!(matches!(h.attach(), Err(gort_gc::GcError::AlreadyAttached)));
}
