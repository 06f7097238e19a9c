//! A goroutine's entry closure, kept inline in the G when small, so most spawns allocate nothing.

use std::mem::{ManuallyDrop, MaybeUninit, align_of, size_of};
use std::ptr;

/// Inline capacity: four words, enough for a closure capturing a few `Arc`s or integers.
type Inline = MaybeUninit<[usize; 4]>;

enum Repr {
    Inline {
        buf: Inline,
        /// Moves the closure out of `buf` and calls it.
        call: unsafe fn(*mut u8),
        /// Drops the closure in place without calling it.
        drop: unsafe fn(*mut u8),
    },
    Boxed(Box<dyn FnOnce() + Send + 'static>),
}

/// An owned `FnOnce() + Send + 'static`.
pub(crate) struct Entry(Repr);

// SAFETY: only built from `F: Send` closures (see `new`).
unsafe impl Send for Entry {}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Repr::Inline { .. } => "Entry(inline)",
            Repr::Boxed(_) => "Entry(boxed)",
        })
    }
}

/// # Safety
/// `p` must point at a live `F` that is not used again.
unsafe fn call_inline<F: FnOnce()>(p: *mut u8) {
    // SAFETY: per the contract, we take the only copy.
    let f = unsafe { ptr::read(p.cast::<F>()) };
    f();
}

/// # Safety
/// As `call_inline`.
unsafe fn drop_inline<F>(p: *mut u8) {
    // SAFETY: per the contract.
    unsafe { ptr::drop_in_place(p.cast::<F>()) };
}

impl Entry {
    #[inline]
    pub(crate) fn new<F: FnOnce() + Send + 'static>(f: F) -> Entry {
        if size_of::<F>() <= size_of::<Inline>() && align_of::<F>() <= align_of::<Inline>() {
            let mut buf = Inline::uninit();
            // SAFETY: `buf` is large and aligned enough for `F` (checked above).
            unsafe { ptr::write(buf.as_mut_ptr().cast::<F>(), f) };
            Entry(Repr::Inline {
                buf,
                call: call_inline::<F>,
                drop: drop_inline::<F>,
            })
        } else {
            Entry(Repr::Boxed(Box::new(f)))
        }
    }

    /// Calls the closure, consuming it.
    #[inline]
    pub(crate) fn run(self) {
        let mut this = ManuallyDrop::new(self);
        match &mut this.0 {
            Repr::Inline { buf, call, .. } => {
                // SAFETY: `buf` holds the live closure `call` was made for; `this` is never
                // dropped, so the closure is consumed exactly once, here.
                unsafe { call(buf.as_mut_ptr().cast()) }
            }
            Repr::Boxed(_) => {
                // SAFETY: `this` is never dropped, so reading the box out moves it exactly once.
                let Repr::Boxed(f) = (unsafe { ptr::read(&this.0) }) else {
                    unreachable!()
                };
                f();
            }
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Repr::Inline { buf, drop, .. } = &mut self.0 {
            // SAFETY: an `Entry` dropped without `run` still holds its closure.
            unsafe { drop(buf.as_mut_ptr().cast()) }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Entry, Inline};
    use std::mem::{align_of, size_of};
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn repr(e: &Entry) -> String {
        format!("{e:?}")
    }

    #[test]
    fn small_and_large_closures_run_once_and_drop_once() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        Entry::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
        })
        .run();
        let big = [7u64; 16];
        let h = hits.clone();
        Entry::new(move || {
            h.fetch_add(big[3] as usize, Ordering::SeqCst);
        })
        .run();
        assert_eq!(hits.load(Ordering::SeqCst), 8);
        let h = hits.clone();
        drop(Entry::new(move || drop(h)));
        let h = hits.clone();
        drop(Entry::new(move || drop((h, big))));
        assert_eq!(Arc::strong_count(&hits), 1);
    }

    /// A closure of exactly the inline size stays inline; one word more is boxed. Both run
    /// with every captured word intact and drop their captures once, called or not.
    #[test]
    fn inline_capacity_boundary() {
        let words = size_of::<Inline>() / size_of::<usize>();
        let hits = Arc::new(AtomicUsize::new(0));
        // An `Arc` plus `words - 1` integers: exactly the inline size.
        let exact = |hits: Arc<AtomicUsize>| {
            let pad = [3usize; 3];
            assert_eq!(words, pad.len() + 1);
            move || {
                hits.fetch_add(pad.iter().sum::<usize>(), Ordering::SeqCst);
            }
        };
        let over = |hits: Arc<AtomicUsize>| {
            let pad = [5usize; 4];
            move || {
                hits.fetch_add(pad.iter().sum::<usize>(), Ordering::SeqCst);
            }
        };
        assert_eq!(size_of_val(&exact(hits.clone())), size_of::<Inline>());
        assert_eq!(size_of_val(&over(hits.clone())), size_of::<Inline>() + 8);
        let e = Entry::new(exact(hits.clone()));
        assert_eq!(repr(&e), "Entry(inline)");
        e.run();
        let e = Entry::new(over(hits.clone()));
        assert_eq!(repr(&e), "Entry(boxed)");
        e.run();
        assert_eq!(hits.load(Ordering::SeqCst), 9 + 20);
        drop(Entry::new(exact(hits.clone())));
        drop(Entry::new(over(hits.clone())));
        assert_eq!(Arc::strong_count(&hits), 1);
    }

    /// Captures aligned beyond the inline buffer are boxed and keep their alignment.
    #[test]
    fn over_aligned_captures_are_boxed() {
        #[repr(align(64))]
        struct Aligned(u8);
        let a = Aligned(42);
        assert!(align_of::<Aligned>() > align_of::<Inline>());
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let e = Entry::new(move || {
            assert_eq!((&raw const a).addr() % 64, 0);
            h.fetch_add(usize::from(a.0), Ordering::SeqCst);
        });
        assert_eq!(repr(&e), "Entry(boxed)");
        e.run();
        assert_eq!(hits.load(Ordering::SeqCst), 42);
        assert_eq!(Arc::strong_count(&hits), 1);
    }

    /// A panicking closure, inline or boxed, drops its captures once while unwinding.
    #[test]
    fn panicking_closures_drop_their_captures_once() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let inline = Entry::new(move || {
            h.fetch_add(1, Ordering::SeqCst);
            panic!("inline entry panics");
        });
        assert_eq!(repr(&inline), "Entry(inline)");
        let h = hits.clone();
        let big = [1u64; 8];
        let boxed = Entry::new(move || {
            h.fetch_add(big.len(), Ordering::SeqCst);
            panic!("boxed entry panics");
        });
        assert_eq!(repr(&boxed), "Entry(boxed)");
        for e in [inline, boxed] {
            assert!(catch_unwind(AssertUnwindSafe(|| e.run())).is_err());
        }
        assert_eq!(hits.load(Ordering::SeqCst), 9);
        assert_eq!(Arc::strong_count(&hits), 1);
    }

    /// Entries holding heap captures move between places and threads before they run: the
    /// inline buffer carries the captured pointers with their provenance.
    #[test]
    fn entries_move_across_threads_with_heap_captures() {
        let boxed_value = Box::new(5usize);
        let text = String::from("gort");
        let inline = Entry::new(move || assert_eq!((*boxed_value, text.as_str()), (5, "gort")));
        assert_eq!(repr(&inline), "Entry(inline)");
        let v: Vec<u8> = (0..100).collect();
        let zst = Entry::new(|| {});
        assert_eq!(repr(&zst), "Entry(inline)");
        let entries = [inline, Entry::new(move || assert_eq!(v.len(), 100)), zst];
        std::thread::spawn(move || entries.into_iter().for_each(Entry::run))
            .join()
            .unwrap();
    }
}
