//! Opt-in conservative scanning: raw `Gc` pointers held only on a mutator's stack keep their
//! objects alive, at safepoints and in blocking regions.
#![cfg(not(loom))]

use std::hint::black_box;

use gort_gc::{Config, Gc, Heap, Slot, Trace};

#[derive(Trace)]
struct Node {
    next: Slot<Node>,
    val: u64,
}

fn heap() -> Heap {
    Heap::new(Config {
        checkmark: true,
        procs: 2,
        min_heap: 1 << 40,
        ..Config::default()
    })
    .unwrap()
}

/// Make `n` objects reachable only through the returned raw pointers (their handles die
/// with the inner scope).
fn raw_objects(s: &mut gort_gc::Scope<'_>, n: u64) -> Vec<Gc<Node>> {
    s.scope(|s| {
        (0..n)
            .map(|i| {
                s.alloc(Node {
                    next: Slot::null(),
                    val: 1000 + i,
                })
                .as_gc()
            })
            .collect()
    })
}

#[test]
fn raw_pointer_on_the_stack_of_a_thread_at_a_safepoint() {
    let h = heap();
    let mut m = h.attach().unwrap();
    m.set_conservative(true).unwrap();
    m.scope(|s| {
        let g: Gc<Node> = s.scope(|s| {
            s.alloc(Node {
                next: Slot::null(),
                val: 77,
            })
            .as_gc()
        });
        // Only this stack slot (and whatever register the compiler picks) holds it.
        let on_stack = black_box(g);
        let h2 = h.clone();
        let t = std::thread::spawn(move || {
            h2.gc();
            h2.gc();
        });
        // Poll safepoints until both cycles are over: this thread is scanned at one.
        while !t.is_finished() {
            s.safepoint();
            std::hint::spin_loop();
        }
        t.join().unwrap();
        // SAFETY: the conservative scan kept it alive (what this test checks).
        let v = unsafe { black_box(on_stack).as_ref() }.val;
        assert_eq!(v, 77, "object held by a raw stack pointer was freed");
    });
}

#[test]
fn raw_pointers_on_the_stack_of_a_blocked_thread() {
    let h = heap();
    let mut m = h.attach().unwrap();
    m.set_conservative(true).unwrap();
    m.scope(|s| {
        // A Vec's buffer is on the Rust heap, not the stack: copy into a stack array.
        let v = raw_objects(s, 8);
        let arr: [Gc<Node>; 8] = std::array::from_fn(|i| v[i]);
        drop(v);
        let arr = black_box(arr);
        let h2 = h.clone();
        // Blocked while two cycles run: the collector scans the stack recorded at entry.
        s.blocking(|| {
            std::thread::spawn(move || {
                h2.gc();
                h2.gc();
            })
            .join()
            .unwrap()
        });
        for (i, g) in black_box(arr).iter().enumerate() {
            // SAFETY: kept alive by the conservative scan (what this test checks).
            assert_eq!(unsafe { g.as_ref() }.val, 1000 + i as u64);
        }
        // And they can be rooted again and stored.
        // SAFETY: alive, as just checked.
        let l = unsafe { arr[0].root(s) };
        let holder = s.alloc(Node {
            next: Slot::null(),
            val: 0,
        });
        holder.next.set(s, Some(l));
        assert_eq!(holder.next.get(s).unwrap().val, 1000);
    });
}
