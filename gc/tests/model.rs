//! proptest: random object graphs, mutated by several mutator threads while a collector
//! thread forces cycles back to back (so marking overlaps every kind of store), compared
//! with a sequential model. Checkmark is on (a reachable object left white aborts the
//! process) and debug builds poison freed memory (a freed reachable object reads as
//! `0xdbdb…`, which the id checks catch).
#![cfg(not(loom))]

mod util;

use std::mem::offset_of;

use gort_gc::{Config, Heap, Local, PtrMap, Root, Scope, Slot, Trace};
use proptest::prelude::*;

const FIELDS: usize = 3;

struct Obj {
    id: u64,
    edges: [Slot<Obj>; FIELDS],
    /// `!id`, a second word to catch partial corruption.
    check: u64,
}

// SAFETY: the three `edges` words are the only pointer words.
unsafe impl Trace for Obj {
    const PTRS: PtrMap = PtrMap::EMPTY.with(
        offset_of!(Obj, edges),
        PtrMap::repeat(PtrMap::ONE, 8, FIELDS),
    );
}

#[derive(Debug, Clone)]
enum Op {
    New,
    Link {
        src: usize,
        field: usize,
        dst: Option<usize>,
    },
    Unroot(usize),
    Reroot {
        src: usize,
        field: usize,
    },
    /// Move the pointer in `src.field` to `dst.field2` and null the old place (the shape of
    /// gc-arena's unsound re-root: a pointer moved from a not-yet-scanned place to an
    /// already-scanned one must survive).
    Move {
        src: usize,
        field: usize,
        dst: usize,
        field2: usize,
    },
    Garbage(u8),
    Verify,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::New),
        4 => (any::<usize>(), 0..FIELDS, proptest::option::weighted(0.8, any::<usize>()))
            .prop_map(|(src, field, dst)| Op::Link { src, field, dst }),
        2 => any::<usize>().prop_map(Op::Unroot),
        2 => (any::<usize>(), 0..FIELDS).prop_map(|(src, field)| Op::Reroot { src, field }),
        3 => (any::<usize>(), 0..FIELDS, any::<usize>(), 0..FIELDS)
            .prop_map(|(src, field, dst, field2)| Op::Move { src, field, dst, field2 }),
        1 => any::<u8>().prop_map(Op::Garbage),
        1 => Just(Op::Verify),
    ]
}

/// The sequential model: node ids and their edges.
#[derive(Default)]
struct Model {
    edges: Vec<[Option<u64>; FIELDS]>,
    /// Rooted node ids, parallel to the runtime's roots.
    roots: Vec<u64>,
}

fn verify(s: &Scope<'_>, model: &Model, roots: &[Root<Obj>]) {
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<(Local<'_, Obj>, u64)> = Vec::new();
    s_scope_verify(s, model, roots, &mut seen, &mut stack);
}

fn s_scope_verify<'s>(
    s: &Scope<'s>,
    model: &Model,
    roots: &[Root<Obj>],
    seen: &mut std::collections::HashSet<u64>,
    stack: &mut Vec<(Local<'s, Obj>, u64)>,
) {
    for (r, &id) in roots.iter().zip(&model.roots) {
        stack.push((r.get(s), id));
    }
    while let Some((l, id)) = stack.pop() {
        assert_eq!(l.id, id, "object holds the wrong id (freed and reused?)");
        assert_eq!(l.check, !id, "object corrupted (freed and poisoned?)");
        if !seen.insert(id) {
            continue;
        }
        for f in 0..FIELDS {
            let got = l.edges[f].get(s);
            match (got, model.edges[id as usize][f]) {
                (None, None) => {}
                (Some(g), Some(want)) => stack.push((g, want)),
                (g, w) => panic!("edge {id}.{f}: runtime {:?} model {w:?}", g.map(|g| g.id)),
            }
        }
    }
}

/// Nodes of the ballast chain each thread keeps: enough that a cycle's marking lasts long
/// enough for the ops to run while it does.
const BALLAST: u64 = 20_000;

fn run_ops(heap: &Heap, ops: &[Op]) {
    let mut m = heap.attach().unwrap();
    let mut model = Model::default();
    let mut roots: Vec<Root<Obj>> = Vec::new();
    let ballast = m.scope(|s| {
        let head = s.alloc(Obj {
            id: 0,
            edges: Default::default(),
            check: !0,
        });
        let mut tail = head;
        for i in 1..BALLAST {
            s.scope(|s| {
                let n = s.alloc(Obj {
                    id: i,
                    edges: Default::default(),
                    check: !i,
                });
                tail.edges[0].set(s, Some(n));
            });
            tail = tail.edges[0].get(s).unwrap();
        }
        Root::new(s, head)
    });
    // The ops, several times over, one scope each (scopes begin and end mid-cycle).
    for _ in 0..8 {
        for op in ops {
            m.scope(|s| apply(s, op, &mut model, &mut roots));
        }
    }
    m.scope(|s| {
        verify(s, &model, &roots);
        let mut n = 0;
        let mut cur = Some(ballast.get(s));
        while let Some(c) = cur {
            assert_eq!((c.id, c.check), (n, !n), "ballast node corrupted");
            n += 1;
            cur = c.edges[0].get(s);
        }
        assert_eq!(n, BALLAST);
    });
}

fn apply(s: &mut Scope<'_>, op: &Op, model: &mut Model, roots: &mut Vec<Root<Obj>>) {
    let pick = |i: usize| (!roots.is_empty()).then(|| i % roots.len());
    match *op {
        Op::New => {
            let id = model.edges.len() as u64;
            model.edges.push([None; FIELDS]);
            let o = s.alloc(Obj {
                id,
                edges: Default::default(),
                check: !id,
            });
            roots.push(Root::new(s, o));
            model.roots.push(id);
        }
        Op::Link { src, field, dst } => {
            let Some(a) = pick(src) else { return };
            let b = dst.and_then(pick);
            let la = roots[a].get(s);
            la.edges[field].set(s, b.map(|b| roots[b].get(s)));
            model.edges[model.roots[a] as usize][field] = b.map(|b| model.roots[b]);
        }
        Op::Unroot(i) => {
            if let Some(i) = pick(i) {
                roots.swap_remove(i);
                model.roots.swap_remove(i);
            }
        }
        Op::Reroot { src, field } => {
            let Some(a) = pick(src) else { return };
            let la = roots[a].get(s);
            if let Some(t) = la.edges[field].get(s) {
                roots.push(Root::new(s, t));
                model
                    .roots
                    .push(model.edges[model.roots[a] as usize][field].unwrap());
            }
        }
        Op::Move {
            src,
            field,
            dst,
            field2,
        } => {
            let (Some(a), Some(b)) = (pick(src), pick(dst)) else {
                return;
            };
            let (la, lb) = (roots[a].get(s), roots[b].get(s));
            let x = la.edges[field].get(s);
            la.edges[field].set(s, None);
            lb.edges[field2].set(s, x);
            let (ia, ib) = (model.roots[a] as usize, model.roots[b] as usize);
            let v = model.edges[ia][field];
            model.edges[ia][field] = None;
            model.edges[ib][field2] = v;
        }
        Op::Garbage(n) => {
            // Unreachable objects, some pointing into the live graph.
            s.scope(|s| {
                let live = roots.first().map(|r| r.get(s));
                for k in 0..u64::from(n) {
                    let g = s.alloc(Obj {
                        id: u64::MAX - k,
                        edges: Default::default(),
                        check: !(u64::MAX - k),
                    });
                    g.edges[0].set(s, live);
                }
            });
        }
        Op::Verify => verify(s, model, roots),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn graphs_survive_concurrent_marking(
        a in proptest::collection::vec(op(), 1..150),
        b in proptest::collection::vec(op(), 1..150),
    ) {
        let heap = Heap::new(Config { checkmark: true, procs: 2, ..Config::default() }).unwrap();
        let cycles = util::back_to_back(&heap);
        std::thread::scope(|t| {
            let h1 = heap.clone();
            let h2 = heap.clone();
            let ja = t.spawn(move || run_ops(&h1, &a));
            let jb = t.spawn(move || run_ops(&h2, &b));
            ja.join().unwrap();
            jb.join().unwrap();
        });
        drop(cycles);
        prop_assert!(heap.stats().num_gc > 0);
        // Every handle and root is gone: with precise roots, two cycles free everything.
        heap.gc();
        heap.gc();
        let mut left = 0;
        heap.alloc_heap().for_each_object(gort_alloc::Objects::Allocated, |_| left += 1);
        prop_assert_eq!(left, 0, "objects survived two cycles without a handle");
    }
}
