//! Creating goroutines: `go`, `spawn` and `JoinHandle`, and the body every goroutine runs.

use crate::g::{Entry, G};
use crate::loom::Ordering;
use crate::m::{M, current_m};
use crate::p::{FREE_G_MAX, GOID_BATCH};
use crate::park::{Goexit, Waiter};
use crate::sched::{Shared, lock};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// Why a goroutine could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpawnError {
    /// The runtime was shut down (its `Runtime` handle dropped or `shutdown` called).
    Shutdown,
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Shutdown => f.write_str(
                "cannot spawn a goroutine: the runtime has shut down; build a new Runtime",
            ),
        }
    }
}

impl std::error::Error for SpawnError {}

/// Starts `f` as a new goroutine of the calling goroutine's runtime (Go's `go` statement).
///
/// An unrecovered panic in `f` prints `panic: ...` with the goroutine id and ends the process
/// with exit status 2, as in Go. Use [`spawn`] to get the result or the panic back.
///
/// # Panics
/// When called outside a goroutine (use [`Runtime::go`](crate::Runtime::go) from a plain
/// thread) or after the runtime shut down.
pub fn go<F>(f: F)
where
    F: FnOnce() + Send + 'static,
{
    let m = calling_m("go");
    // SAFETY: this thread's live M, which holds its runtime alive; no switch happens here.
    if let Err(e) = start(unsafe { &(*m).shared }, Entry::new(f)) {
        panic!("runtime: {e}");
    }
}

/// Starts `f` as a new goroutine and returns a handle to join it.
///
/// # Panics
/// As [`go`].
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let m = calling_m("spawn");
    // SAFETY: as in `go`.
    match spawn_on(unsafe { &(*m).shared }, f) {
        Ok(h) => h,
        Err(e) => panic!("runtime: {e}"),
    }
}

fn calling_m(what: &str) -> *const M {
    let m = current_m();
    // SAFETY: a non-null current M is this thread's live M; the reference is short-lived.
    if m.is_null() || unsafe { (*m).curg.get().is_null() } {
        panic!(
            "runtime: {what} called outside a goroutine; start goroutines from a plain thread \
             with Runtime::{what}"
        );
    }
    m
}

pub(crate) fn spawn_on<F, T>(shared: &Arc<Shared>, f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    start_joinable(shared, move |completer| {
        Entry::new(move || {
            let result = catch_unwind(AssertUnwindSafe(f));
            completer.complete(result);
        })
    })
}

/// Starts the goroutine `body(completer)` builds, returning a handle that the completer
/// completes.
fn start_joinable<T>(
    shared: &Arc<Shared>,
    body: impl FnOnce(Arc<JoinInner<T>>) -> Entry,
) -> Result<JoinHandle<T>, SpawnError> {
    let inner = JoinInner::new();
    let id = start(shared, body(inner.clone()))?;
    Ok(JoinHandle {
        inner,
        id,
        runtime: Arc::as_ptr(shared),
    })
}

/// Starts `run`'s main goroutine. Go's rules for `main`: when it returns, the program is
/// done — deadlock detection is disarmed *before* the value is handed back, so no M can
/// report the goroutines left behind; a panic is fatal (status 2); `goexit` ends only the
/// main goroutine, and the handle never completes (the detector reports "no goroutines"
/// once the others are gone).
pub(crate) fn spawn_main<F, T>(shared: &Arc<Shared>, f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let rt = shared.clone();
    start_joinable(shared, move |completer| {
        Entry::new(move || match catch_unwind(AssertUnwindSafe(f)) {
            Ok(v) => {
                // SeqCst: read by `check_deadlock` under the scheduler lock.
                rt.detect_deadlock.store(false, Ordering::SeqCst);
                completer.complete(Ok(v));
            }
            Err(payload) if payload.is::<Goexit>() => {
                rt.main_goexited.store(true, Ordering::SeqCst);
            }
            Err(payload) => fatal_panic(crate::park::goid().unwrap_or(0), &*payload),
        })
    })
}

/// Creates a G for `entry` and makes it runnable: into the calling M's `runnext` when the
/// caller runs on this runtime with a P (Go's choice: the child runs soon, on a warm cache),
/// else onto the global queue. Returns the goroutine id.
pub(crate) fn start(shared: &Arc<Shared>, entry: Entry) -> Result<u64, SpawnError> {
    if shared.shutdown.load(Ordering::Acquire) {
        return Err(SpawnError::Shutdown);
    }
    let m = current_m();
    // SAFETY: a non-null current M is this thread's live M; no switch happens below.
    let local = (!m.is_null())
        .then(|| unsafe { &*m })
        .filter(|m| m.has_p() && Arc::ptr_eq(&m.shared, shared));
    let (g, id) = match local {
        Some(m) => new_local(m, entry),
        None => new_foreign(shared, entry),
    };
    match local {
        Some(m) => {
            if let Some(old) = m.p_ref().runq.put_next(g) {
                m.push_back(old);
            }
        }
        None => shared.global.push(g),
    }
    shared.wakep();
    Ok(id)
}

/// A G from the P's free list (or a new one), with an id from the P's reserved batch.
#[inline]
fn new_local(m: &M, entry: Entry) -> (NonNull<G>, u64) {
    let p = m.p_ref();
    // SAFETY: we hold our P.
    let owned = unsafe { p.owned() };
    let g = match owned.free_gs.pop() {
        Some(g) => g,
        None => refill_free_gs(&m.shared, &mut owned.free_gs),
    };
    if owned.goid_next == owned.goid_end {
        owned.goid_next = m.shared.next_goid.fetch_add(GOID_BATCH, Ordering::Relaxed);
        owned.goid_end = owned.goid_next + GOID_BATCH;
    }
    let id = owned.goid_next;
    owned.goid_next += 1;
    m.shared.ngoroutines.fetch_add(1, Ordering::Relaxed);
    (init(g, id, entry), id)
}

#[cold]
fn refill_free_g(shared: &Shared) -> Arc<G> {
    let g = lock(&shared.free_gs).pop();
    g.unwrap_or_else(|| new_g(shared))
}

/// Allocates a G and registers it with the runtime (`AllGs`).
#[cold]
fn new_g(shared: &Shared) -> Arc<G> {
    let g = Arc::new(G::new());
    shared.allgs.register(&g);
    g
}

/// Refills a P's free-G cache with a batch from the runtime-wide list (one lock for many
/// spawns), or makes a new G.
#[cold]
fn refill_free_gs(shared: &Shared, cache: &mut Vec<Arc<G>>) -> Arc<G> {
    let mut global = lock(&shared.free_gs);
    let n = global.len().min(FREE_G_MAX / 2);
    let at = global.len() - n;
    cache.extend(global.drain(at..));
    drop(global);
    cache.pop().unwrap_or_else(|| new_g(shared))
}

#[cold]
fn new_foreign(shared: &Shared, entry: Entry) -> (NonNull<G>, u64) {
    let g = refill_free_g(shared);
    let id = shared.next_goid.fetch_add(1, Ordering::Relaxed);
    shared.ngoroutines.fetch_add(1, Ordering::Relaxed);
    (init(g, id, entry), id)
}

/// Fills in a free G and turns it into a scheduling reference.
#[inline]
fn init(mut g: Arc<G>, id: u64, entry: Entry) -> NonNull<G> {
    let gm = Arc::get_mut(&mut g).expect("runtime: a free G is still referenced");
    assert!(
        gm.locals.get_mut().is_empty(),
        "runtime: a recycled G still holds goroutine-local values"
    );
    *gm.id.get_mut() = id;
    *gm.entry.get_mut() = Some(entry);
    *gm.locals_closed.get_mut() = false;
    // A goroutine lives on this G now (never parked yet): dumps show it.
    *gm.wait_reason.get_mut() = 0;
    NonNull::new(Arc::into_raw(g).cast_mut()).expect("Arc::into_raw is never null")
}

/// Runs a goroutine's entry closure and its goroutine-local destructors, on its own stack.
/// Anything but `goexit` escaping the closure is a fatal panic, as in Go.
#[inline(never)]
pub(crate) fn run_body(g: &G) {
    // SAFETY: the running goroutine owns its cells.
    let entry = unsafe { (*g.entry.get()).take() };
    let entry = entry.expect("runtime: goroutine started without an entry");
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || entry.run()))
        && !payload.is::<Goexit>()
    {
        fatal_panic(g.id(), &*payload);
    }
    destroy_locals(g);
    // The cached blocking group holds a handle to this G (a cycle), and its generation is
    // about to go stale: drop it with the goroutine.
    // SAFETY: the running goroutine owns its cells.
    drop(unsafe { (*g.group_cache.get()).take() });
}

/// Rounds of goroutine-local destruction before further re-creation is refused (a destructor
/// that touches another local re-creates it; pthreads allows 4 such rounds).
const LOCAL_DESTRUCTION_ROUNDS: usize = 4;

/// Drops the goroutine's locals on its own stack, round after round while destructors
/// re-create locals, so nothing is left for the recycled G to carry into the next goroutine.
/// In the last round `GoroutineLocal::with` refuses to create values (it panics). A `goexit`
/// from a destructor ends that destructor; the goroutine is exiting anyway.
fn destroy_locals(g: &G) {
    for round in 0..LOCAL_DESTRUCTION_ROUNDS {
        if round + 1 == LOCAL_DESTRUCTION_ROUNDS {
            // SAFETY: the running goroutine owns its cells; no borrow of them is live.
            unsafe { *g.locals_closed.get() = true };
        }
        // SAFETY: as above; the borrow ends within this statement.
        let locals = std::mem::take(unsafe { &mut *g.locals.get() });
        if locals.is_empty() {
            return;
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(locals)))
            && !payload.is::<Goexit>()
        {
            fatal_panic(g.id(), &*payload);
        }
    }
    // SAFETY: as above.
    let left = std::mem::take(unsafe { &mut *g.locals.get() });
    assert!(
        left.is_empty(),
        "runtime: goroutine-locals created after their destruction"
    );
}

/// Go's report of an unrecovered panic, then exit status 2.
#[cold]
fn fatal_panic(id: u64, payload: &(dyn Any + Send)) -> ! {
    let msg = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic payload that is not a string)");
    eprintln!("panic: {msg}\n\ngoroutine {id} [running]:");
    std::process::exit(2);
}

/// Shared between a spawned goroutine and its `JoinHandle`.
struct JoinInner<T> {
    /// Set (Release) after `result` is filled; read (Acquire) by `join`.
    done: AtomicBool,
    result: Mutex<Option<std::thread::Result<T>>>,
    waiter: Mutex<Option<Waiter>>,
}

impl<T> JoinInner<T> {
    fn new() -> Arc<JoinInner<T>> {
        Arc::new(JoinInner {
            done: AtomicBool::new(false),
            result: Mutex::new(None),
            waiter: Mutex::new(None),
        })
    }

    fn complete(&self, result: std::thread::Result<T>) {
        *lock(&self.result) = Some(result);
        // Release: pairs with `join`'s Acquire load.
        self.done.store(true, Ordering::Release);
        let waiter = lock(&self.waiter).take();
        if let Some(w) = waiter {
            w.wake();
        }
    }
}

/// An owned permission to join a goroutine started with [`spawn`].
pub struct JoinHandle<T> {
    inner: Arc<JoinInner<T>>,
    id: u64,
    /// The goroutine's runtime, for identity only (never dereferenced): a goroutine of another
    /// runtime that joins this handle counts as a foreign waiter there (see `join`).
    runtime: *const Shared,
}

// SAFETY: `runtime` is only compared, never dereferenced; the rest is `Send` when `T` is.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: as above; `&JoinHandle` exposes only `id` and `is_finished`.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("goroutine", &self.id)
            .finish_non_exhaustive()
    }
}

impl<T> JoinHandle<T> {
    /// The goroutine's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the goroutine has finished.
    pub fn is_finished(&self) -> bool {
        self.inner.done.load(Ordering::Acquire)
    }

    /// Waits for the goroutine and returns its value, or the payload it panicked with (a
    /// [`Goexit`] payload if it called [`goexit`](crate::goexit)). From a goroutine this parks
    /// the goroutine; from a plain thread it parks the thread.
    ///
    /// A goroutine joining a goroutine of *another* runtime counts, while it waits, as a
    /// [`ForeignThread`](crate::ForeignThread) of its own runtime: the other runtime will
    /// wake it, so its own runtime must not call the program deadlocked meanwhile.
    pub fn join(self) -> std::thread::Result<T> {
        let _cross = CrossRuntimeWait::enter(self.runtime);
        loop {
            // Acquire: pairs with `complete`'s Release store.
            if self.inner.done.load(Ordering::Acquire) {
                return lock(&self.inner.result)
                    .take()
                    .expect("runtime: a joined goroutine left no result");
            }
            {
                let mut w = lock(&self.inner.waiter);
                if self.inner.done.load(Ordering::Acquire) {
                    continue;
                }
                *w = Some(Waiter::current());
            }
            Waiter::park_current(crate::WaitReason::Join);
        }
    }
}

/// While it lives, the calling goroutine's runtime counts one foreign waker: the goroutine
/// waits on something another runtime will complete. Nothing on a plain thread or when the
/// awaited goroutine belongs to the caller's own runtime.
struct CrossRuntimeWait(Option<Arc<Shared>>);

impl CrossRuntimeWait {
    fn enter(awaited: *const Shared) -> CrossRuntimeWait {
        let m = current_m();
        // SAFETY: a non-null current M is this thread's live M; the borrow is short.
        let mine = (!m.is_null())
            .then(|| unsafe { &*m })
            .filter(|m| !m.curg.get().is_null() && !std::ptr::eq(Arc::as_ptr(&m.shared), awaited))
            .map(|m| m.shared.clone());
        if let Some(shared) = &mine {
            // SeqCst: read by `check_deadlock`.
            shared.foreign_threads.fetch_add(1, Ordering::SeqCst);
        }
        CrossRuntimeWait(mine)
    }
}

impl Drop for CrossRuntimeWait {
    fn drop(&mut self) {
        if let Some(shared) = &self.0 {
            shared.foreign_threads.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
