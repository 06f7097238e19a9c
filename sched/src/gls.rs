//! Goroutine-local storage: the safe replacement for `thread_local!` inside goroutines.

use crate::m::current_g;
use std::any::Any;
use std::cell::RefCell;

/// A value with one instance per goroutine, created on first use and dropped when the
/// goroutine exits (on its own stack, before it ends). On a plain thread the value is
/// per-thread instead.
///
/// Declare it as a `static`:
///
/// ```
/// use gort_sched::GoroutineLocal;
/// use std::cell::Cell;
///
/// static COUNTER: GoroutineLocal<Cell<u32>> = GoroutineLocal::new(|| Cell::new(0));
/// COUNTER.with(|c| c.set(c.get() + 1));
/// assert_eq!(COUNTER.with(|c| c.get()), 1);
/// ```
///
/// Unlike a `thread_local!`, whose address a goroutine may carry to another thread across a
/// park, a goroutine-local value travels with its goroutine.
pub struct GoroutineLocal<T: 'static> {
    init: fn() -> T,
}

impl<T: 'static> std::fmt::Debug for GoroutineLocal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoroutineLocal").finish_non_exhaustive()
    }
}

thread_local! {
    /// Values for plain threads (not goroutines).
    static THREAD_VALUES: RefCell<Vec<(usize, Box<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

impl<T: 'static> GoroutineLocal<T> {
    /// A key whose per-goroutine value starts as `init()`.
    pub const fn new(init: fn() -> T) -> Self {
        GoroutineLocal { init }
    }

    /// Runs `f` with the calling goroutine's value, creating it first if needed.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self as *const Self as usize;
        let g = current_g();
        let value: *const T = if g.is_null() {
            match THREAD_VALUES.with(|v| find::<T>(&v.borrow(), key)) {
                Some(p) => p,
                None => {
                    // `init` runs with no borrow held: it may use other keys.
                    let boxed: Box<dyn Any> = Box::new((self.init)());
                    THREAD_VALUES.with(|v| insert::<T>(&mut v.borrow_mut(), key, boxed))
                }
            }
        } else {
            // SAFETY: the running goroutine owns its locals; each borrow below ends within
            // its statement, before `init` or `f` run (which may touch other keys).
            match find::<T>(unsafe { &*(*g).locals.get() }, key) {
                Some(p) => p,
                None => {
                    // SAFETY: as above.
                    if unsafe { *(*g).locals_closed.get() } {
                        panic!(
                            "runtime: GoroutineLocal used while the goroutine's locals were \
                             being destroyed for the last time (destructors kept re-creating \
                             locals)"
                        );
                    }
                    let boxed: Box<dyn Any> = Box::new((self.init)());
                    // SAFETY: as above.
                    insert::<T>(unsafe { &mut *(*g).locals.get() }, key, boxed)
                }
            }
        };
        // SAFETY: values are boxed (stable addresses) and dropped only when their goroutine
        // or thread ends, after `f` has returned.
        f(unsafe { &*value })
    }
}

fn find<T: 'static>(values: &[(usize, Box<dyn Any>)], key: usize) -> Option<*const T> {
    values.iter().find(|(k, _)| *k == key).map(|(_, v)| {
        let v: &T = v
            .downcast_ref()
            .expect("runtime: goroutine-local type mismatch");
        v as *const T
    })
}

fn insert<T: 'static>(
    values: &mut Vec<(usize, Box<dyn Any>)>,
    key: usize,
    boxed: Box<dyn Any>,
) -> *const T {
    if let Some(p) = find::<T>(values, key) {
        return p; // `init` itself used this key
    }
    let p: *const T = boxed
        .downcast_ref::<T>()
        .expect("runtime: goroutine-local type mismatch");
    values.push((key, boxed));
    p
}
