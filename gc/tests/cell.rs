//! `GcCell`: members in std collections inside the heap, changed under concurrent cycles.
#![cfg(not(loom))]

mod util;

use gort_gc::{CellFamily, CellTrace, Config, GcCell, Heap, Member, Root, Slot, Trace};

#[derive(Trace)]
struct Node {
    val: u64,
    next: Slot<Node>,
}

struct Index<'gc> {
    by_name: std::collections::HashMap<String, Member<'gc, Node>>,
    order: Vec<Member<'gc, Node>>,
}

// SAFETY: reports every member of both collections.
unsafe impl CellTrace for Index<'_> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        self.by_name.trace(f);
        self.order.trace(f);
    }
}

struct IndexF;
impl CellFamily for IndexF {
    type Value<'gc> = Index<'gc>;
}

#[derive(Trace)]
struct Holder {
    index: Slot<GcCell<IndexF>>,
}

#[test]
fn members_in_collections_survive_concurrent_cycles() {
    let h = Heap::new(Config {
        checkmark: true,
        procs: 2,
        ..Config::default()
    })
    .unwrap();
    let cycles = util::back_to_back(&h);
    let mut m = h.attach().unwrap();
    let holder = m.scope(|s| {
        let holder = s.alloc(Holder {
            index: Slot::null(),
        });
        let cell = s.alloc(GcCell::<IndexF>::new(Index {
            by_name: Default::default(),
            order: Vec::new(),
        }));
        holder.index.set(s, Some(cell));
        Root::new(s, holder)
    });
    for round in 0..100u64 {
        m.scope(|s| {
            let cell = holder.get(s).index.get(s).unwrap();
            for k in 0..50 {
                let n = s.alloc(Node {
                    val: round * 100 + k,
                    next: Slot::null(),
                });
                cell.borrow_mut(s, |v, cx| {
                    v.by_name
                        .insert(format!("{}", round * 100 + k), cx.member(n));
                    v.order.push(cx.member(n));
                    if v.order.len() > 1000 {
                        // Drop the oldest: the collector may free what no one else holds.
                        let old = v.order.remove(0);
                        let key = format!("{}", cx.get(&old).unwrap().val);
                        v.by_name.remove(&key);
                    }
                });
            }
        });
    }
    drop(cycles);
    m.scope(|s| {
        let cell = holder.get(s).index.get(s).unwrap();
        cell.borrow_mut(s, |v, cx| {
            assert_eq!(v.order.len(), 1000);
            for mb in &v.order {
                let n = cx.get(mb).unwrap();
                let by = cx.get(&v.by_name[&format!("{}", n.val)]).unwrap();
                assert!(by.ptr_eq(n), "index entry for {} is another object", n.val);
            }
        });
    });
}

struct One<'gc>(Member<'gc, Node>);

// SAFETY: reports its member.
unsafe impl CellTrace for One<'_> {
    fn trace(&self, f: &mut dyn FnMut(usize)) {
        self.0.trace(f)
    }
}

struct OneF;
impl CellFamily for OneF {
    type Value<'gc> = One<'gc>;
}

#[derive(Trace)]
struct Link {
    next: Slot<Link>,
    cell: Slot<GcCell<OneF>>,
    out: Slot<Node>,
}

/// The cell's deletion half: `x` is held only by a cell at the tail of a long chain the
/// marker has not reached; a scanned mutator takes it out of the cell and stores it into an
/// object born black. Shading the cell's members when the borrow begins keeps `x` alive.
#[test]
fn member_taken_out_of_an_unscanned_cell_survives() {
    const CHAIN: usize = 200_000;
    let h = Heap::new(Config {
        procs: 1,
        checkmark: true,
        min_heap: 1 << 40,
        ..Config::default()
    })
    .unwrap();
    let mut m = h.attach().unwrap();
    let head = m.scope(|s| {
        let head = s.alloc(Link {
            next: Slot::null(),
            cell: Slot::null(),
            out: Slot::null(),
        });
        let mut tail = head;
        for _ in 1..CHAIN {
            s.scope(|s| {
                let n = s.alloc(Link {
                    next: Slot::null(),
                    cell: Slot::null(),
                    out: Slot::null(),
                });
                tail.next.set(s, Some(n));
            });
            tail = tail.next.get(s).unwrap();
        }
        let x = s.alloc(Node {
            val: 77,
            next: Slot::null(),
        });
        let cell = s.alloc(GcCell::<OneF>::new(One(Member::null())));
        cell.borrow_mut(s, |v, cx| v.0 = cx.member(x));
        tail.cell.set(s, Some(cell));
        Root::new(s, head)
    });
    let h2 = h.clone();
    let collector = std::thread::spawn(move || h2.gc());
    let moved_during_mark = m.scope(|s| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !h.is_marking() {
            assert!(std::time::Instant::now() < deadline, "no cycle started");
            s.safepoint();
        }
        s.safepoint();
        let b = s.alloc(Link {
            next: Slot::null(),
            cell: Slot::null(),
            out: Slot::null(),
        }); // born black
        let mut a = head.get(s);
        while let Some(n) = a.next.get(s) {
            a = n;
        }
        let during = h.is_marking() && !h.alloc_heap().is_marked(a.addr());
        let cell = a.cell.get(s).unwrap();
        let x = cell.borrow_mut(s, |v, cx| {
            let x = cx.get(&v.0);
            v.0 = cx.null();
            x
        });
        b.out.set(s, x);
        s.blocking(|| collector.join().unwrap());
        assert_eq!(b.out.get(s).unwrap().val, 77, "the member was freed");
        during
    });
    assert!(
        moved_during_mark,
        "moved after the marker got there; inconclusive"
    );
}

#[test]
fn a_map_of_objects() {
    let h = Heap::new(Config {
        checkmark: true,
        ..Config::default()
    })
    .unwrap();
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        let map = s.alloc(gort_gc::GcMap::<u64, Node>::empty());
        for i in 0..2000u64 {
            let n = s.alloc(Node {
                val: i,
                next: Slot::null(),
            });
            assert!(map.insert(s, i, n).is_none());
        }
        s.gc();
        for i in (0..2000u64).step_by(3) {
            assert_eq!(map.remove(s, &i).unwrap().val, i);
        }
        s.gc();
        s.gc();
        for i in 0..2000u64 {
            match map.get(s, &i) {
                Some(n) => assert_eq!(n.val, i),
                None => assert_eq!(i % 3, 0),
            }
        }
        assert_eq!(map.len(s), 2000 - 667);
    });
}

#[test]
fn a_cell_outside_the_heap_refuses_every_borrow() {
    let h = Heap::new(Config::default()).unwrap();
    let mut m = h.attach().unwrap();
    m.scope(|s| {
        // On the stack nothing would trace its members: every borrow panics, and a panicking
        // borrow leaves the cell unlocked (the second one panics too instead of spinning).
        let on_stack = GcCell::<OneF>::new(One(Member::null()));
        for _ in 0..2 {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                on_stack.borrow_mut(s, |_, _| ())
            }));
            assert!(r.is_err(), "borrow of a GcCell outside the heap succeeded");
        }
    });
}
