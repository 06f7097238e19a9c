//! The collector at work: binary trees built and dropped by several mutator threads while a
//! long-lived tree stays reachable, then what the collector did (cycles, pauses, live heap).

use std::time::Instant;

use gort_gc::{Config, Heap, Local, Root, Scope, Slot, Trace};

#[derive(Trace)]
struct Tree {
    left: Slot<Tree>,
    right: Slot<Tree>,
    item: u64,
}

fn build<'s>(s: &Scope<'s>, depth: u32) -> Local<'s, Tree> {
    let t = s.alloc(Tree {
        left: Slot::null(),
        right: Slot::null(),
        item: u64::from(depth),
    });
    if depth > 0 {
        t.left.set(s, Some(build(s, depth - 1)));
        t.right.set(s, Some(build(s, depth - 1)));
    }
    t
}

fn check(s: &mut Scope<'_>, t: Local<'_, Tree>) -> u64 {
    s.scope(|s| {
        let mut n = 1;
        let mut stack = vec![t];
        while let Some(t) = stack.pop() {
            if let (Some(l), Some(r)) = (t.left.get(s), t.right.get(s)) {
                n += 2;
                stack.push(l);
                stack.push(r);
            }
        }
        n
    })
}

fn main() {
    let config = Config::from_env().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let heap = Heap::new(config).expect("heap");
    let start = Instant::now();
    let long_lived = {
        let mut m = heap.attach().unwrap();
        m.scope(|s| {
            let t = build(s, 16);
            Root::new(s, t)
        })
    };
    let threads: Vec<_> = (0..2)
        .map(|k| {
            let heap = heap.clone();
            std::thread::spawn(move || {
                let mut m = heap.attach().unwrap();
                let mut nodes = 0;
                for round in 0..40 {
                    nodes += m.scope(|s| {
                        let t = build(s, 12 + (round + k) % 4);
                        check(s, t)
                    });
                }
                nodes
            })
        })
        .collect();
    let made: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut m = heap.attach().unwrap();
    let kept = m.scope(|s| {
        let t = long_lived.get(s);
        check(s, t)
    });
    drop(m);
    heap.gc();
    let st = heap.stats();
    let n = st.num_gc as usize;
    let pauses: Vec<u64> = (0..n.min(gort_gc::PAUSE_RING))
        .map(|i| st.pause_ns[i])
        .collect();
    let mut sorted = pauses.clone();
    sorted.sort_unstable();
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    println!("gc demo: built and dropped {made} tree nodes on 2 threads, kept {kept} alive");
    println!(
        "  {} cycles ({} forced) in {:.2?}; pause per cycle p50 {} us, max {} us, total {} us",
        st.num_gc,
        st.num_forced_gc,
        start.elapsed(),
        p50 / 1000,
        sorted.last().copied().unwrap_or(0) / 1000,
        st.pause_total_ns / 1000
    );
    println!(
        "  live after the last mark: {:.1} MiB; next cycle at {:.1} MiB",
        st.heap_marked as f64 / (1 << 20) as f64,
        st.next_gc as f64 / (1 << 20) as f64
    );
    assert_eq!(kept, (1 << 17) - 1, "the long-lived tree lost nodes");
}
