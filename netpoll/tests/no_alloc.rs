//! Steady state allocates nothing: poll rounds, parking and waking threads, moving deadlines.
#![cfg(not(loom))]

use gort_netpoll::{Direction, Driver};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn ping_pong_rounds_allocate_nothing() {
    let d = Driver::start().unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let sa = d.register(a.try_clone().unwrap()).unwrap();
    let sb = d.register(b.try_clone().unwrap()).unwrap();
    const ROUNDS: usize = 2000;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 1];
        for _ in 0..ROUNDS {
            sb.set_deadline(
                Direction::Read,
                Some(Instant::now() + Duration::from_secs(60)),
            )
            .unwrap();
            let n = sb.read_with(|| (&b).read(&mut buf)).unwrap();
            assert_eq!(n, 1);
            sb.write_with(|| (&b).write(&buf)).unwrap();
        }
        // Closed (which may grow the free list) after counting stops.
        sb
    });
    let mut buf = [0u8; 1];
    for i in 0..ROUNDS {
        if i == ROUNDS / 2 {
            // Warmed up: every thread has its parker, every buffer its capacity.
            COUNTING.store(true, Ordering::SeqCst);
        }
        sa.set_deadline(
            Direction::Read,
            Some(Instant::now() + Duration::from_secs(60)),
        )
        .unwrap();
        sa.write_with(|| (&a).write(b"p")).unwrap();
        let n = sa.read_with(|| (&a).read(&mut buf)).unwrap();
        assert_eq!(n, 1);
    }
    // Wait for the echo thread to leave its loop before counting stops.
    let sb = echo.join().unwrap();
    COUNTING.store(false, Ordering::SeqCst);
    drop(sb);
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "allocations in steady-state rounds"
    );
}
