//! Process-wide table of stack slabs, readable from a signal handler (atomics only, no locks).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Slabs that can exist at once in the process. With 256 MiB slabs this covers 1 TiB of
/// stacks, four million goroutines of the default size.
const MAX_SLABS: usize = 4096;

struct Entry {
    /// Slab start, or 0 for a free entry. Written under `REGISTER` (Release, after `len` and
    /// `stack_size`), read by the overflow handler (Acquire, pairs with that store).
    base: AtomicUsize,
    len: AtomicUsize,
    stack_size: AtomicUsize,
    /// Guard bytes at the bottom of each stack (at least one page).
    guard: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Entry = Entry {
    base: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    stack_size: AtomicUsize::new(0),
    guard: AtomicUsize::new(0),
};

static TABLE: [Entry; MAX_SLABS] = [EMPTY; MAX_SLABS];
/// One past the highest entry ever used; only grows. Written under `REGISTER`.
static HIGH: AtomicUsize = AtomicUsize::new(0);
/// Serialises writers (slab creation and destruction across all runtimes).
static REGISTER: Mutex<()> = Mutex::new(());

/// Records a slab; returns its entry index, or `None` when the table is full.
pub(crate) fn register(base: usize, len: usize, stack_size: usize, guard: usize) -> Option<usize> {
    let _g = REGISTER.lock().unwrap_or_else(|p| p.into_inner());
    let i = (0..MAX_SLABS).find(|&i| TABLE[i].base.load(Ordering::Relaxed) == 0)?;
    TABLE[i].len.store(len, Ordering::Relaxed);
    TABLE[i].stack_size.store(stack_size, Ordering::Relaxed);
    TABLE[i].guard.store(guard, Ordering::Relaxed);
    // Release: pairs with the Acquire load in `guard_hit`, publishing len and stack_size.
    TABLE[i].base.store(base, Ordering::Release);
    if HIGH.load(Ordering::Relaxed) <= i {
        HIGH.store(i + 1, Ordering::Release);
    }
    Some(i)
}

/// Forgets a slab before it is unmapped.
pub(crate) fn unregister(index: usize) {
    let _g = REGISTER.lock().unwrap_or_else(|p| p.into_inner());
    TABLE[index].base.store(0, Ordering::Release);
}

/// If `addr` lies in the guard of some registered stack, returns that stack's size and its
/// guard's size. Async-signal-safe: atomics only.
pub(crate) fn guard_hit(addr: usize) -> Option<(usize, usize)> {
    // Acquire: pairs with the Release stores in `register`.
    let high = HIGH.load(Ordering::Acquire);
    for e in &TABLE[..high] {
        let base = e.base.load(Ordering::Acquire);
        if base == 0 {
            continue;
        }
        let len = e.len.load(Ordering::Relaxed);
        if addr < base || addr >= base + len {
            continue;
        }
        let size = e.stack_size.load(Ordering::Relaxed);
        let guard = e.guard.load(Ordering::Relaxed);
        let offset = (addr - base) % size;
        return (offset < guard).then_some((size, guard));
    }
    None
}
