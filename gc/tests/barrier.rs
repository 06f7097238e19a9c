//! The write barrier under a running mark, deterministically: pointers moved from places
//! the marker has not reached to places it will not look at again.
#![cfg(not(loom))]

use std::mem::offset_of;
use std::time::{Duration, Instant};

use gort_gc::{Config, Heap, PtrMap, Root, Slot, Trace};

struct Node {
    next: Slot<Node>,
    other: Slot<Node>,
    val: u64,
}

// SAFETY: `next` and `other` are the pointer words.
unsafe impl Trace for Node {
    const PTRS: PtrMap = PtrMap::EMPTY
        .with(offset_of!(Node, next), PtrMap::ONE)
        .with(offset_of!(Node, other), PtrMap::ONE);
}

fn node(val: u64) -> Node {
    Node {
        next: Slot::null(),
        other: Slot::null(),
        val,
    }
}

/// Chain length: the marker, held to its 25% share at procs = 1 while the mutator runs,
/// reaches the tail long after the mutator does.
const CHAIN: u64 = 200_000;

/// gc-arena's unsound re-root (its PR #39), as a collector test: `x` is reachable only from
/// the chain's tail `a`, which the marker has not scanned yet; a mutator whose roots were
/// already scanned moves the pointer into `b`, an object the marker will never scan (born
/// black during this mark), and clears `a`'s slot. Only the deletion half of the barrier
/// (shade the value overwritten) keeps `x` alive.
#[test]
fn pointer_moved_from_unscanned_to_scanned_place_survives() {
    let h = Heap::new(Config {
        procs: 1,
        checkmark: true,
        // Only the forced cycle below runs (building the chain must not start one).
        min_heap: 1 << 40,
        ..Config::default()
    })
    .unwrap();
    let mut m = h.attach().unwrap();
    let head = m.scope(|s| {
        let head = s.alloc(node(0));
        let mut tail = head;
        for i in 1..CHAIN {
            s.scope(|s| {
                let n = s.alloc(node(i));
                tail.next.set(s, Some(n));
            });
            tail = tail.next.get(s).unwrap();
        }
        let x = s.alloc(node(77));
        tail.other.set(s, Some(x));
        Root::new(s, head)
    });
    let h2 = h.clone();
    let collector = std::thread::spawn(move || h2.gc());
    let moved_during_mark = m.scope(|s| {
        // Wait for marking inside the scope, polling: this mutator counts as running, so the
        // marker keeps to its 25% share. Its (empty) roots are scanned when marking starts,
        // at the safepoint where it parks for the stop: it is black from then on.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !h.is_marking() {
            assert!(Instant::now() < deadline, "no cycle started");
            s.safepoint();
            std::hint::spin_loop();
        }
        s.safepoint();
        let b = s.alloc(node(1)); // born black: never scanned this cycle
        let mut a = head.get(s);
        while let Some(n) = a.next.get(s) {
            a = n;
        }
        let x = a.other.get(s);
        a.other.set(s, None);
        b.other.set(s, x);
        // The marker had not reached the tail when the pointer moved (else the test proves
        // nothing); it has `b` marked (born black).
        let during = h.is_marking() && !h.alloc_heap().is_marked(a.addr());
        s.blocking(|| collector.join().unwrap());
        // The cycle is over and the heap swept: `x` must still be there, intact.
        let got = b.other.get(s).expect("b.other");
        assert_eq!(
            got.val, 77,
            "the moved object was freed (poisoned or reused)"
        );
        during
    });
    assert!(
        moved_during_mark,
        "the move did not happen during marking; test inconclusive"
    );
    // And it stays alive across more cycles while reachable.
    h.gc();
    assert!(h.stats().num_gc >= 2);
}
