//! How fast a forced collection marks a large pointer-dense heap (a binary tree): prints the
//! live bytes and the time of `gc()` for a few cycles. A diagnostic, not a benchmark figure.
//! Arguments: the tree's depth (22), and `procs` (1: one marking thread).

use std::time::Instant;

use gort_gc::{Config, Heap, Local, Root, Scope, Slot, Trace};

#[derive(Trace)]
struct Tree {
    left: Slot<Tree>,
    right: Slot<Tree>,
}

fn build<'s>(s: &Scope<'s>, depth: u32) -> Local<'s, Tree> {
    let t = s.alloc(Tree {
        left: Slot::null(),
        right: Slot::null(),
    });
    if depth > 0 {
        t.left.set(s, Some(build(s, depth - 1)));
        t.right.set(s, Some(build(s, depth - 1)));
    }
    t
}

fn main() {
    let depth: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(22);
    // A second argument sets `procs` (1: the collector thread marks alone).
    let procs = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(Config::default().procs);
    let heap = Heap::new(Config {
        gogc: None,
        procs,
        ..Config::default()
    })
    .unwrap();
    let mut m = heap.attach().unwrap();
    let root = m.scope(|s| {
        let t = build(s, depth);
        Root::new(s, t)
    });
    drop(m);
    for _ in 0..5 {
        let t = Instant::now();
        heap.gc();
        let d = t.elapsed();
        let live = heap.stats().heap_marked;
        println!(
            "marked {} MiB in {:.1} ms ({:.0} MiB/s, {:.1} ns/object)",
            live >> 20,
            d.as_secs_f64() * 1e3,
            (live >> 20) as f64 / d.as_secs_f64(),
            d.as_nanos() as f64 / (1u64 << (depth + 1)) as f64
        );
    }
    drop(root);
}
