//! One thread's suspension slot: the request/defer/suspend/resume state machine and the saved context.

use super::context::SavedContext;
use super::wait;
use crate::loom::{AtomicU32, AtomicUsize, Ordering, UnsafeCell, thread};

/// No thread is registered with the slot; requests fail.
const UNREGISTERED: u32 = 0;
/// A thread is registered and runs freely.
const RUNNING: u32 = 1;
/// A coordinator asked the thread to stop; the signal is on its way (or being handled).
const REQUESTED: u32 = 2;
/// The handler ran inside a no-preempt window or a busy window and declined.
const DEFERRED: u32 = 3;
/// The handler saved the context and waits for `resume`.
const SUSPENDED: u32 = 4;
/// A thread is registering (recording its id); requests fail.
const ATTACHING: u32 = 5;

/// What a coordinator sees when it polls a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// No request is outstanding (never requested, or resumed).
    Running,
    /// Requested; the handler has not answered yet.
    Pending,
    /// The handler declined: the thread was in runtime code. It re-raises the request itself
    /// when its no-preempt window ends; a busy-hook window needs [`SuspendSlot::retry_deferred`].
    Deferred,
    /// Stopped; [`SuspendSlot::context`] may be read until [`SuspendSlot::resume`].
    Suspended,
    /// No thread is registered (it never was, or it unregistered with a request outstanding).
    Unregistered,
}

/// What the handler did with a signal (`on_signal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Handled {
    /// No request was outstanding: a stray, late or cancelled signal.
    Ignored,
    /// Declined: the thread is inside runtime code.
    Deferred,
    /// Suspended, and now resumed.
    Resumed,
}

/// The per-thread suspension state, allocated before any signal can be aimed at it (in an
/// `Arc`, which a [`Registration`](super::Registration) keeps alive while the thread is
/// registered, so the handler's pointer to it stays valid).
#[derive(Debug)]
pub(crate) struct SuspendSlot {
    /// UNREGISTERED / ATTACHING / RUNNING / REQUESTED / DEFERRED / SUSPENDED. Every
    /// transition after attach's store of RUNNING is a CAS or a swap, so each continues the
    /// release sequence of that store: ATTACHING and RUNNING are written by the registering
    /// thread (attach), RUNNING also by coordinators (resume), REQUESTED by
    /// coordinators (request, retry) and by the thread itself (its window's end), DEFERRED
    /// and SUSPENDED by the handler on the thread, UNREGISTERED by the thread (detach).
    /// Read by all of them.
    state: AtomicU32,
    /// Coordinators between winning a request CAS and finishing the signal's send. Written
    /// by them; read by the thread in detach, which waits for zero so no signal is ever sent
    /// to a thread id after its thread unregistered (and perhaps exited).
    senders: AtomicU32,
    /// The registered thread's id (Linux `gettid`, macOS `pthread_t`). Written by the
    /// registering thread before its attach CAS; read by coordinators after a successful
    /// request CAS, which synchronises with the attach through the state's release sequence.
    tid: AtomicUsize,
    /// The interrupted context. Written only by the handler on the registered thread, while
    /// the state is REQUESTED (before its CAS to SUSPENDED); read by the coordinator whose
    /// request succeeded, only while the state is SUSPENDED.
    ctx: UnsafeCell<SavedContext>,
}

// SAFETY: `ctx` is the only non-Sync field; its writer (the handler, state REQUESTED) and
// its readers (the coordinator, state SUSPENDED) are separated by the state's Release CAS to
// SUSPENDED and the reader's Acquire load, and a reader's accesses end before its resume
// (the `context` contract), whose Release the next write's Acquire load synchronises with.
unsafe impl Sync for SuspendSlot {}
// SAFETY: nothing in the slot is tied to a thread; `tid` is only a number.
unsafe impl Send for SuspendSlot {}

impl Default for SuspendSlot {
    fn default() -> Self {
        Self::new()
    }
}

impl SuspendSlot {
    /// A slot with no thread registered.
    pub(crate) fn new() -> Self {
        SuspendSlot {
            state: AtomicU32::new(UNREGISTERED),
            senders: AtomicU32::new(0),
            tid: AtomicUsize::new(0),
            ctx: UnsafeCell::new(SavedContext::new()),
        }
    }

    /// Records `tid` and marks the slot registered. False if a thread is registered (or
    /// registering) already.
    pub(super) fn attach(&self, tid: usize) -> bool {
        // Claim the slot first, so two threads registering it at once cannot both write
        // `tid`. Acquire: pairs with detach's swap, ordering the last owner's use before ours.
        if self
            .state
            .compare_exchange(
                UNREGISTERED,
                ATTACHING,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        // Relaxed: published by the Release store below.
        self.tid.store(tid, Ordering::Relaxed);
        // Release: pairs with the Acquire of a coordinator's request CAS (which reads this
        // value or a later one of the RMWs continuing its release sequence), publishing `tid`.
        self.state.store(RUNNING, Ordering::Release);
        true
    }

    /// Marks the slot unregistered, cancelling any outstanding request, and waits until no
    /// coordinator is still sending a signal to this thread. Called by the registered
    /// thread (which is therefore not suspended) after its thread-local link is cleared.
    pub(super) fn detach(&self) {
        // SeqCst: with the `senders` increment and the request CAS (both SeqCst), either the
        // coordinator's CAS sees UNREGISTERED and sends nothing, or this load sees its count.
        self.state.swap(UNREGISTERED, Ordering::SeqCst);
        // SeqCst (Acquire part: pairs with the Release decrement in `end_send`, so the send
        // finished before the thread goes on, perhaps to exit).
        while self.senders.load(Ordering::SeqCst) != 0 {
            thread::yield_now();
        }
    }

    /// Moves `from` to REQUESTED. On success returns the thread id to signal; the caller
    /// must call `end_send` after sending.
    pub(super) fn begin_send(&self, from: u32) -> Option<usize> {
        // SeqCst: pairs with detach's swap and load (see there).
        self.senders.fetch_add(1, Ordering::SeqCst);
        // SeqCst (Acquire part: pairs with attach's Release CAS and, through the release
        // sequence, with the last resume, so `tid` is current and the previous coordinator
        // is done with the context; Release part: pairs with the handler's Acquire load).
        if self
            .state
            .compare_exchange(from, REQUESTED, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            // Relaxed: the CAS above acquired the attach that wrote it.
            Some(self.tid.load(Ordering::Relaxed))
        } else {
            self.end_send();
            None
        }
    }

    /// Ends a `begin_send` that returned a thread id.
    pub(super) fn end_send(&self) {
        // Release: pairs with detach's load, so the send happened before the thread leaves.
        self.senders.fetch_sub(1, Ordering::Release);
    }

    /// The coordinator's view of the slot.
    pub(crate) fn poll(&self) -> Status {
        // Acquire: pairs with the handler's Release CAS to SUSPENDED, so a Suspended answer
        // makes the saved context visible.
        match self.state.load(Ordering::Acquire) {
            UNREGISTERED | ATTACHING => Status::Unregistered,
            RUNNING => Status::Running,
            REQUESTED => Status::Pending,
            DEFERRED => Status::Deferred,
            _ => Status::Suspended,
        }
    }

    /// Cancels an outstanding request or ends a suspension: REQUESTED, DEFERRED or SUSPENDED
    /// become RUNNING (a signal still in flight is then ignored). Returns false if there was
    /// nothing to undo.
    pub(crate) fn resume(&self) -> bool {
        // Relaxed: only a first guess; the CAS below decides.
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            if !matches!(cur, REQUESTED | DEFERRED | SUSPENDED) {
                return false;
            }
            // AcqRel: the Release part pairs with the handler's Acquire loads (its wait loop
            // and the next request's handling), so the coordinator's reads of the context
            // happen before the handler writes it again; the Acquire part pairs with the
            // handler's Release CAS (a resume that ends a suspension saw it).
            match self.state.compare_exchange_weak(
                cur,
                RUNNING,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if cur == SUSPENDED {
            wait::wake(&self.state);
        }
        true
    }

    /// The handler's part, run on the registered thread when the signal arrives. `defer`
    /// says whether the thread is inside runtime code; `save` copies the interrupted context.
    /// Returns after the suspension ended (or at once when ignored or deferred).
    pub(super) fn on_signal(
        &self,
        defer: impl FnOnce() -> bool,
        save: impl FnOnce(&mut SavedContext),
    ) -> Handled {
        // Acquire: pairs with the request CAS and, through the release sequence, with the
        // last resume, so the last coordinator's reads of the context happened before the
        // write below.
        if self.state.load(Ordering::Acquire) != REQUESTED {
            return Handled::Ignored;
        }
        if defer() {
            // Relaxed: publishes nothing; a failure means the request was cancelled.
            let _ = self.state.compare_exchange(
                REQUESTED,
                DEFERRED,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            return Handled::Deferred;
        }
        // SAFETY: the state is REQUESTED, so no coordinator reads the context (they do only
        // while SUSPENDED, and the last one's reads happened before the Acquire load above);
        // only this thread's handler writes it, and the handler does not nest (the signal is
        // blocked while it runs).
        self.ctx.with_mut(|p| save(unsafe { &mut *p }));
        // Release: pairs with `poll`'s Acquire load, publishing the context. A failure means
        // a resume cancelled the request meanwhile: do not stop.
        if self
            .state
            .compare_exchange(REQUESTED, SUSPENDED, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            return Handled::Ignored;
        }
        // Wake a coordinator sleeping until some thread answers.
        #[cfg(not(loom))]
        super::progress::announce();
        // Acquire: pairs with resume's Release CAS.
        while self.state.load(Ordering::Acquire) == SUSPENDED {
            wait::wait_while(&self.state, SUSPENDED);
        }
        Handled::Resumed
    }

    /// The saved context of the suspended thread.
    ///
    /// # Safety
    ///
    /// The caller is the coordinator whose request (or retry) put the slot in its current
    /// suspension, `poll` returned [`Status::Suspended`] to it, and nobody resumes the slot
    /// while the returned reference is alive (the handler writes the context again after a
    /// resume and a new request).
    pub(crate) unsafe fn context(&self) -> &SavedContext {
        // SAFETY: by the contract the slot stays SUSPENDED while the reference lives, and the
        // handler wrote the context before its Release CAS that the caller's `poll` acquired.
        self.ctx.with(|p| unsafe { &*p })
    }
}

#[cfg(not(loom))]
impl SuspendSlot {
    /// Asks the registered thread to suspend: RUNNING → REQUESTED, then signals it. False if
    /// no thread is registered or a request is already outstanding. Follow with `poll`.
    pub(crate) fn request(&self) -> bool {
        self.request_from(RUNNING)
    }

    /// Re-asks a thread whose handler deferred: DEFERRED → REQUESTED, then signals it. False
    /// if the slot was not DEFERRED (the thread may have re-raised the request itself).
    pub(crate) fn retry_deferred(&self) -> bool {
        self.request_from(DEFERRED)
    }

    fn request_from(&self, from: u32) -> bool {
        let Some(tid) = self.begin_send(from) else {
            return false;
        };
        super::signal::send(tid);
        self.end_send();
        true
    }
}

#[cfg(all(test, not(loom)))]
impl SuspendSlot {
    /// The registered thread's id.
    pub(super) fn tid_for_tests(&self) -> usize {
        // Relaxed: the caller saw the thread registered through another synchronisation.
        self.tid.load(Ordering::Relaxed)
    }
}

#[cfg(loom)]
impl SuspendSlot {
    pub(super) const RUNNING: u32 = RUNNING;
    pub(super) const DEFERRED: u32 = DEFERRED;
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! The handler is modelled as a function the target calls where a signal could land. The
    //! signal is a flag under a lock (coalescing like a standard signal; the lock and its
    //! condition variable stand for the kernel, which orders a send before its delivery and
    //! lets the target block until one arrives instead of spinning); the no-preempt depth
    //! and the deferred flag stand for the thread-locals.
    use super::*;
    use crate::loom::{Arc, Condvar, Mutex, lock};
    use loom::thread;
    use std::cell::Cell;

    /// The written context: a token in `len` the coordinator must see when Suspended.
    const TOKEN: usize = 7;

    #[derive(Default)]
    struct Signal {
        pending: Mutex<bool>,
        arrived: Condvar,
    }

    impl Signal {
        fn raise(&self) {
            *lock(&self.pending) = true;
            self.arrived.notify_one();
        }

        fn take(&self) -> bool {
            std::mem::take(&mut *lock(&self.pending))
        }

        fn wait(&self) {
            let mut p = lock(&self.pending);
            while !*p {
                p = self.arrived.wait(p).unwrap();
            }
            *p = false;
        }
    }

    fn attached() -> Arc<SuspendSlot> {
        let slot = Arc::new(SuspendSlot::new());
        assert!(slot.attach(1));
        slot
    }

    /// A request or retry: the state change, then the signal.
    fn send(slot: &SuspendSlot, from: u32, sig: &Signal) -> bool {
        match slot.begin_send(from) {
            Some(tid) => {
                assert_eq!(tid, 1);
                sig.raise();
                slot.end_send();
                true
            }
            None => false,
        }
    }

    /// The handler, run on the target. `depth` > 0 defers and sets `deferred`.
    fn handle(slot: &SuspendSlot, depth: u32, deferred: &Cell<bool>) -> Handled {
        slot.on_signal(
            || {
                if depth > 0 {
                    deferred.set(true);
                }
                depth > 0
            },
            |c| {
                deferred.set(false);
                c.mark(TOKEN);
            },
        )
    }

    /// The target outside any window: handles each signal as it arrives, until one suspended
    /// it (and it was resumed).
    fn run_until_resumed(slot: &SuspendSlot, sig: &Signal, deferred: &Cell<bool>) {
        loop {
            sig.wait();
            if handle(slot, 0, deferred) == Handled::Resumed {
                return;
            }
        }
    }

    /// Waits for Suspended, reads the context, resumes; retries deferrals if `retry`.
    fn coordinate(slot: &SuspendSlot, sig: &Signal, retry: bool) {
        assert!(send(slot, SuspendSlot::RUNNING, sig));
        loop {
            match slot.poll() {
                Status::Suspended => break,
                Status::Deferred if retry => {
                    send(slot, SuspendSlot::DEFERRED, sig);
                }
                Status::Pending | Status::Deferred => thread::yield_now(),
                s => panic!("unexpected {s:?}"),
            }
        }
        // The handler's write is visible (loom also checks the access's causality).
        // SAFETY: Suspended, and only this thread resumes.
        slot.ctx
            .with(|p| assert_eq!(unsafe { (*p).as_words().len() }, TOKEN));
        assert!(slot.resume());
    }

    /// A plain request on a thread outside any window: suspended, context seen, resumed.
    #[test]
    fn loom_suspend_resume() {
        loom::model(|| {
            let slot = attached();
            let sig = Arc::new(Signal::default());
            let target = {
                let (slot, sig) = (slot.clone(), sig.clone());
                thread::spawn(move || run_until_resumed(&slot, &sig, &Cell::new(false)))
            };
            coordinate(&slot, &sig, false);
            target.join().unwrap();
            assert_eq!(slot.poll(), Status::Running);
        });
    }

    /// The signal may land inside a no-preempt window or after it; the window's end re-raises
    /// a deferred request, racing with the coordinator's own retry (when `retry`).
    fn deferral(retry: bool) {
        loom::model(move || {
            let slot = attached();
            let sig = Arc::new(Signal::default());
            let target = {
                let (slot, sig) = (slot.clone(), sig.clone());
                thread::spawn(move || {
                    let deferred = Cell::new(false);
                    // Inside the window (depth 1): a signal landing now is deferred.
                    if sig.take() {
                        assert_ne!(handle(&slot, 1, &deferred), Handled::Resumed);
                    }
                    // The window ends: the deferred-exit slow path re-raises.
                    if deferred.get() {
                        deferred.set(false);
                        send(&slot, SuspendSlot::DEFERRED, &sig);
                    }
                    run_until_resumed(&slot, &sig, &deferred);
                    // A signal still pending now (a coalesced retry) is a stray one.
                    if sig.take() {
                        assert_eq!(handle(&slot, 0, &deferred), Handled::Ignored);
                    }
                })
            };
            coordinate(&slot, &sig, retry);
            target.join().unwrap();
            assert_eq!(slot.poll(), Status::Running);
        });
    }

    #[test]
    fn loom_deferral_reraised_by_window_end() {
        deferral(false);
    }

    #[test]
    fn loom_deferral_with_coordinator_retry() {
        deferral(true);
    }

    /// A resume that cancels a request races with the handler: the thread is never left
    /// suspended.
    #[test]
    fn loom_cancel_races_handler() {
        loom::model(|| {
            let slot = attached();
            let sig = Arc::new(Signal::default());
            let target = {
                let (slot, sig) = (slot.clone(), sig.clone());
                thread::spawn(move || {
                    sig.wait();
                    handle(&slot, 0, &Cell::new(false));
                })
            };
            assert!(send(&slot, SuspendSlot::RUNNING, &sig));
            assert!(slot.resume());
            target.join().unwrap();
            assert_eq!(slot.poll(), Status::Running);
        });
    }

    /// Two threads registering one slot at once: exactly one wins, and a racing request
    /// signals the winner.
    #[test]
    fn loom_attach_is_exclusive() {
        loom::model(|| {
            let slot = Arc::new(SuspendSlot::new());
            let threads: Vec<_> = [1usize, 2]
                .into_iter()
                .map(|tid| {
                    let slot = slot.clone();
                    thread::spawn(move || slot.attach(tid).then_some(tid))
                })
                .collect();
            let sent = slot.begin_send(SuspendSlot::RUNNING);
            let winners: Vec<usize> = threads
                .into_iter()
                .filter_map(|t| t.join().unwrap())
                .collect();
            assert_eq!(winners.len(), 1);
            if let Some(tid) = sent {
                assert_eq!(tid, winners[0]);
                slot.end_send();
            }
        });
    }

    /// Unregistering waits out a coordinator's send: no signal goes to a thread that left.
    #[test]
    fn loom_detach_waits_for_senders() {
        loom::model(|| {
            let slot = attached();
            let gone = Arc::new(crate::loom::AtomicBool::new(false));
            let target = {
                let (slot, gone) = (slot.clone(), gone.clone());
                thread::spawn(move || {
                    slot.detach();
                    gone.store(true, Ordering::Relaxed);
                })
            };
            if let Some(tid) = slot.begin_send(SuspendSlot::RUNNING) {
                assert_eq!(tid, 1);
                assert!(
                    !gone.load(Ordering::Relaxed),
                    "signal sent to a thread that left"
                );
                slot.end_send();
            }
            target.join().unwrap();
            assert_eq!(slot.poll(), Status::Unregistered);
        });
    }
}
