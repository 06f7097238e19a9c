//! Parking on a descriptor allocates nothing: after a warm-up, round trips between two
//! goroutines over a socket pair — every read parks on the netpoller — make no heap
//! allocation (a counting global allocator in this test binary).
#![cfg(not(loom))]

use gort::net::UnixStream;
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded caller contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded caller contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn parking_on_a_descriptor_allocates_nothing() {
    // SAFETY: the test goroutines hold no thread-bound values across scheduling points.
    let rt = unsafe { gort::Builder::new().gomaxprocs(1).build() }.unwrap();
    let allocs = rt.block_on(|| {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        gort::go(move || {
            let mut buf = [0u8; 8];
            while b.read_exact(&mut buf).is_ok() {
                if b.write_all(&buf).is_err() {
                    return;
                }
            }
        });
        let mut buf = [0u8; 8];
        let mut round = |a: &mut UnixStream| {
            a.write_all(b"12345678").unwrap();
            a.read_exact(&mut buf).unwrap();
        };
        for _ in 0..1000 {
            round(&mut a); // warm-up: waiter cells, queues, stacks
        }
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..1000 {
            round(&mut a);
        }
        COUNTING.store(false, Ordering::SeqCst);
        ALLOCS.load(Ordering::SeqCst)
    });
    assert_eq!(allocs, 0, "{allocs} allocations in 1000 parked round trips");
}
