//! `select!`: wait on several channel operations and complete exactly one (Go's `selectgo`).
//!
//! 1. Lock every arm's channel in one global order (by channel id, which plays the role of
//!    Go's address order; a channel named by two arms is locked once), so two selects over
//!    the same channels cannot deadlock, and nothing changes while we look.
//! 2. Poll the arms in a random order — Go's fairness: of several ready arms, each is chosen
//!    with equal probability — and complete the first that can proceed now.
//! 3. None ready: with a `default` arm, unlock and take it. Otherwise queue one entry per arm,
//!    all in one group (`waiter.rs`), unlock, and park. A counterpart completes one entry after
//!    claiming the group with a CAS, so exactly one arm wins even when two channels become
//!    ready at once; the others' claims fail and they move on.
//! 4. Woken: lock again, remove the entries of the arms that lost, unlock, and report the
//!    winner with its result.
//!
//! A disabled arm (Go's nil channel: `None` instead of a handle) never fires; a select with
//! every arm disabled and no default waits forever, as `select {}` does.
//!
//! The arms are type-erased behind [`SelectArm`] (each channel has its own value type); the
//! macro builds them on the caller's stack, so a select allocates only the entries it queues
//! when it has to wait (on the heap, owned through a raw pointer: queues point at them while
//! the arms themselves are borrowed mutably, see `HeapEntry`).

use super::core::{Chan, RecvStep, SendStep, State};
use super::error::{RecvError, SendError};
use super::handle::{Receiver, Sender};
use super::waiter::{Entry, Group, OUTCOME_OK, Won};
use crate::WaitReason;
use crate::loom::{Arc, ChanGuard as MutexGuard};
#[cfg(not(loom))]
use std::cell::Cell;

/// One arm of a select, type-erased. Implemented by [`RecvArm`] and [`SendArm`]; used by the
/// `select!` expansion, not meant to be implemented or called elsewhere.
///
/// # Safety
/// `chan_id` must identify one channel (its unique id), with one value type, for as long
/// as the arm lives, and `lock` must lock that channel and return a pointer to its state: `select`
/// hands the state locked through one arm to every other arm with the same id.
#[doc(hidden)]
pub unsafe trait SelectArm {
    /// The channel's identity (its id: the lock order), or `None` for a disabled arm.
    fn chan_id(&self) -> Option<usize>;
    /// Locks the channel, keeping the guard; returns a pointer to the locked state.
    fn lock(&mut self) -> *mut ();
    /// Releases the guard taken by `lock` (if this arm took one).
    fn unlock(&mut self);
    /// Tries to complete now. `Some(wake)`: done, with a party to wake after unlocking.
    ///
    /// # Safety
    /// `state` is this arm's channel state, locked by this select.
    unsafe fn try_now(&mut self, state: *mut ()) -> Option<Option<Won>>;
    /// Queues this arm's entry as case `case` of `group`.
    ///
    /// # Safety
    /// As `try_now`; and `group` must outlive the arm's entry: until `dequeue` has run under
    /// the channel's lock, or the arm is dropped without its entry having been queued.
    unsafe fn enqueue(&mut self, state: *mut (), group: &Arc<Group>, case: usize);
    /// Removes this arm's entry, if still queued.
    ///
    /// # Safety
    /// As `try_now`.
    unsafe fn dequeue(&mut self, state: *mut ());
    /// This arm won while the select waited: takes its result from its entry.
    fn take_result(&mut self);
    /// Marks this arm as the one chosen.
    fn set_won(&mut self);
}

/// A receive arm: `recv(rx) -> result => ...`.
#[doc(hidden)]
pub struct RecvArm<'a, T> {
    rx: Option<&'a Receiver<T>>,
    guard: Option<MutexGuard<'a, State<T>>>,
    entry: Option<HeapEntry<T>>,
    result: Option<Result<T, RecvError>>,
    won: bool,
}

/// A send arm: `send(tx, value) -> result => ...`.
#[doc(hidden)]
pub struct SendArm<'a, T> {
    tx: Option<&'a Sender<T>>,
    value: Option<T>,
    guard: Option<MutexGuard<'a, State<T>>>,
    entry: Option<HeapEntry<T>>,
    result: Option<Result<(), SendError<T>>>,
    won: bool,
}

/// A select arm's queued entry, on the heap and owned through a raw pointer: while it is
/// queued, other threads reach it through the channel's queue, and the arm holding it is
/// borrowed mutably all the while (each `SelectArm` call), so the entry must not live inside
/// the arm itself. Freed when the arm is dropped, after `select` took it off its channel.
struct HeapEntry<T>(std::ptr::NonNull<Entry<T>>);

impl<T> HeapEntry<T> {
    /// # Safety
    /// As [`Entry::new`].
    unsafe fn new(group: &Arc<Group>, case: usize, value: Option<T>) -> HeapEntry<T> {
        // SAFETY: forwarded contract (a box never moves its contents).
        let e = Box::new(unsafe { Entry::new(group, case, value) });
        HeapEntry(std::ptr::NonNull::from(Box::leak(e)))
    }

    fn get(&self) -> &Entry<T> {
        // SAFETY: allocated by `new`, freed only by `drop`.
        unsafe { self.0.as_ref() }
    }
}

impl<T> Drop for HeapEntry<T> {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box` in `new`; `select` took it off its channel before it
        // returned (the only way an arm holding a queued entry can be dropped).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// What a `recv(...)` arm accepts, borrowed: a `Receiver`, a reference to one, or an
/// `Option` of either (`None`: a disabled arm, Go's nil channel).
#[doc(hidden)]
pub trait RecvSource<'a, T> {
    fn receiver(self) -> Option<&'a Receiver<T>>;
}

impl<'a, T> RecvSource<'a, T> for &'a Receiver<T> {
    fn receiver(self) -> Option<&'a Receiver<T>> {
        Some(self)
    }
}

impl<'a, 'b: 'a, T> RecvSource<'a, T> for &'a &'b Receiver<T> {
    fn receiver(self) -> Option<&'a Receiver<T>> {
        Some(*self)
    }
}

impl<'a, 'b: 'a, T> RecvSource<'a, T> for &'a Option<&'b Receiver<T>> {
    fn receiver(self) -> Option<&'a Receiver<T>> {
        *self
    }
}

impl<'a, T> RecvSource<'a, T> for &'a Option<Receiver<T>> {
    fn receiver(self) -> Option<&'a Receiver<T>> {
        self.as_ref()
    }
}

/// What a `send(...)` arm accepts, borrowed (as for [`RecvSource`]).
#[doc(hidden)]
pub trait SendSource<'a, T> {
    fn sender(self) -> Option<&'a Sender<T>>;
}

impl<'a, T> SendSource<'a, T> for &'a Sender<T> {
    fn sender(self) -> Option<&'a Sender<T>> {
        Some(self)
    }
}

impl<'a, 'b: 'a, T> SendSource<'a, T> for &'a &'b Sender<T> {
    fn sender(self) -> Option<&'a Sender<T>> {
        Some(*self)
    }
}

impl<'a, 'b: 'a, T> SendSource<'a, T> for &'a Option<&'b Sender<T>> {
    fn sender(self) -> Option<&'a Sender<T>> {
        *self
    }
}

impl<'a, T> SendSource<'a, T> for &'a Option<Sender<T>> {
    fn sender(self) -> Option<&'a Sender<T>> {
        self.as_ref()
    }
}

impl<'a, T: Send> RecvArm<'a, T> {
    /// An arm receiving from `rx`; `None` disables it.
    pub fn new(rx: impl RecvSource<'a, T>) -> Self {
        RecvArm {
            rx: rx.receiver(),
            guard: None,
            entry: None,
            result: None,
            won: false,
        }
    }

    /// Whether this arm was chosen.
    pub fn won(&self) -> bool {
        self.won
    }

    /// The chosen arm's result.
    pub fn into_result(self) -> Result<T, RecvError> {
        self.result
            .expect("runtime: select arm chosen without a result")
    }

    fn chan(&self) -> &'a Chan<T> {
        self.rx.expect("runtime: disabled select arm used").chan()
    }
}

impl<'a, T: Send> SendArm<'a, T> {
    /// An arm sending `value` on `tx`; `None` disables it (the value is dropped unsent when
    /// another arm wins).
    pub fn new(tx: impl SendSource<'a, T>, value: T) -> Self {
        SendArm {
            tx: tx.sender(),
            value: Some(value),
            guard: None,
            entry: None,
            result: None,
            won: false,
        }
    }

    /// Whether this arm was chosen.
    pub fn won(&self) -> bool {
        self.won
    }

    /// The chosen arm's result: `Err` carries the value back when the channel was closed.
    pub fn into_result(self) -> Result<(), SendError<T>> {
        self.result
            .expect("runtime: select arm chosen without a result")
    }

    /// A losing arm's value, after `select` returned: still unsent, back to the caller.
    pub(crate) fn into_unsent(mut self) -> Option<T> {
        if let Some(v) = self.value.take() {
            return Some(v);
        }
        let e = self.entry.take()?;
        // SAFETY: `select` returned, so our group is done and this entry was taken off its
        // channel (it lost); nobody else can reach its slot any more.
        unsafe { e.get().result() }.1
    }

    fn chan(&self) -> &'a Chan<T> {
        self.tx.expect("runtime: disabled select arm used").chan()
    }
}

impl<T> std::fmt::Debug for RecvArm<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvArm")
            .field("won", &self.won)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for SendArm<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendArm")
            .field("won", &self.won)
            .finish_non_exhaustive()
    }
}

/// # Safety
/// `state` must point at a `State<T>` locked by the caller.
unsafe fn state_mut<'s, T>(state: *mut ()) -> &'s mut State<T> {
    // SAFETY: per the contract: the arm with this channel id locked it, and the id
    // identifies one channel, hence one `T`.
    unsafe { &mut *state.cast::<State<T>>() }
}

// SAFETY: the id is that of the receiver's channel, whose state `lock` locks.
unsafe impl<T: Send> SelectArm for RecvArm<'_, T> {
    fn chan_id(&self) -> Option<usize> {
        self.rx.map(|rx| rx.chan().id as usize)
    }

    fn lock(&mut self) -> *mut () {
        let mut g = self.chan().lock();
        let p = std::ptr::from_mut::<State<T>>(&mut g).cast::<()>();
        self.guard = Some(g);
        p
    }

    fn unlock(&mut self) {
        self.guard = None;
    }

    unsafe fn try_now(&mut self, state: *mut ()) -> Option<Option<Won>> {
        // SAFETY: forwarded contract.
        let s = unsafe { state_mut::<T>(state) };
        match self.chan().try_recv_locked(s) {
            RecvStep::Got(v, won) => {
                self.result = Some(Ok(v));
                Some(won)
            }
            RecvStep::Closed => {
                self.result = Some(Err(RecvError));
                Some(None)
            }
            RecvStep::Empty => None,
        }
    }

    unsafe fn enqueue(&mut self, state: *mut (), group: &Arc<Group>, case: usize) {
        // SAFETY: forwarded contract.
        let s = unsafe { state_mut::<T>(state) };
        // SAFETY: the caller keeps `group` alive (contract); the entry is freed only when
        // the arm is dropped, after `select` took it off the channel.
        let e = unsafe { HeapEntry::new(group, case, None) };
        // SAFETY: as above.
        unsafe { Chan::enqueue_recv(s, e.get()) };
        self.entry = Some(e);
    }

    unsafe fn dequeue(&mut self, state: *mut ()) {
        if let Some(e) = &self.entry {
            // SAFETY: forwarded contract.
            Chan::dequeue(unsafe { state_mut::<T>(state) }, e.get());
        }
    }

    fn take_result(&mut self) {
        let e = self
            .entry
            .take()
            .expect("runtime: select arm won without an entry");
        // SAFETY: this arm's entry won its group, which is done (the select was woken).
        self.result = Some(match unsafe { e.get().result() } {
            (OUTCOME_OK, Some(v)) => Ok(v),
            (OUTCOME_OK, None) => unreachable!("runtime: a completed receive has no value"),
            _ => Err(RecvError),
        });
    }

    fn set_won(&mut self) {
        self.won = true;
    }
}

// SAFETY: as for `RecvArm`.
unsafe impl<T: Send> SelectArm for SendArm<'_, T> {
    fn chan_id(&self) -> Option<usize> {
        self.tx.map(|tx| tx.chan().id as usize)
    }

    fn lock(&mut self) -> *mut () {
        let mut g = self.chan().lock();
        let p = std::ptr::from_mut::<State<T>>(&mut g).cast::<()>();
        self.guard = Some(g);
        p
    }

    fn unlock(&mut self) {
        self.guard = None;
    }

    unsafe fn try_now(&mut self, state: *mut ()) -> Option<Option<Won>> {
        // SAFETY: forwarded contract.
        let s = unsafe { state_mut::<T>(state) };
        let v = self
            .value
            .take()
            .expect("runtime: select send arm without a value");
        match self.chan().try_send_locked(s, v) {
            SendStep::Sent(won) => {
                self.result = Some(Ok(()));
                Some(won)
            }
            SendStep::Closed(v) => {
                self.result = Some(Err(SendError(v)));
                Some(None)
            }
            SendStep::Full(v) => {
                self.value = Some(v);
                None
            }
        }
    }

    unsafe fn enqueue(&mut self, state: *mut (), group: &Arc<Group>, case: usize) {
        // SAFETY: forwarded contract.
        let s = unsafe { state_mut::<T>(state) };
        let v = self
            .value
            .take()
            .expect("runtime: select send arm without a value");
        // SAFETY: as for `RecvArm`.
        let e = unsafe { HeapEntry::new(group, case, Some(v)) };
        // SAFETY: as above.
        unsafe { Chan::enqueue_send(s, e.get()) };
        self.entry = Some(e);
    }

    unsafe fn dequeue(&mut self, state: *mut ()) {
        if let Some(e) = &self.entry {
            // SAFETY: forwarded contract.
            Chan::dequeue(unsafe { state_mut::<T>(state) }, e.get());
        }
    }

    fn take_result(&mut self) {
        let e = self
            .entry
            .take()
            .expect("runtime: select arm won without an entry");
        // SAFETY: as for `RecvArm`.
        self.result = Some(match unsafe { e.get().result() } {
            (OUTCOME_OK, _) => Ok(()),
            (_, Some(v)) => Err(SendError(v)),
            (_, None) => unreachable!("runtime: a failed send lost its value"),
        });
    }

    fn set_won(&mut self) {
        self.won = true;
    }
}

#[cfg(not(loom))]
thread_local! {
    /// Poll-order randomness (xorshift). Only read and written within one call, with no
    /// scheduling point in between, so a goroutine migrating between threads is harmless.
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// Under loom the poll order is fixed: a model must be deterministic to be replayed.
#[cfg(loom)]
fn next_rand() -> u64 {
    0
}

#[cfg(not(loom))]
fn next_rand() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        if x == 0 {
            // Seed from this thread's stack address and the clock.
            let local = 0u8;
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            x = (std::ptr::from_ref(&local).addr() as u64 ^ t) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x
    })
}

/// Locks every enabled arm's channel in address order; `states[i]` gets arm `i`'s locked
/// state (shared by arms on the same channel). Returns the lock order.
fn lock_all(arms: &mut [&mut dyn SelectArm], states: &mut [*mut ()]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..arms.len())
        .filter(|&i| arms[i].chan_id().is_some())
        .collect();
    order.sort_by_key(|&i| arms[i].chan_id());
    let mut prev: Option<(usize, *mut ())> = None;
    for &i in &order {
        let addr = arms[i].chan_id();
        states[i] = match prev {
            Some((a, p)) if Some(a) == addr => p,
            _ => arms[i].lock(),
        };
        prev = addr.map(|a| (a, states[i]));
    }
    order
}

fn unlock_all(arms: &mut [&mut dyn SelectArm], order: &[usize]) {
    for &i in order.iter().rev() {
        arms[i].unlock();
    }
}

/// Runs a select over `arms`. Returns the index of the arm that completed, or `None` when
/// `default` is set and no arm was ready. Used by `select!`.
#[doc(hidden)]
pub fn select(arms: &mut [&mut dyn SelectArm], default: bool) -> Option<usize> {
    let n = arms.len();
    let mut states = vec![std::ptr::null_mut::<()>(); n];
    let order = lock_all(arms, &mut states);
    // Poll in a random order (Fisher-Yates over the enabled arms).
    let mut poll = order.clone();
    for k in (1..poll.len()).rev() {
        let j = (next_rand() % (k as u64 + 1)) as usize;
        poll.swap(k, j);
    }
    for &i in &poll {
        // SAFETY: `states[i]` is arm `i`'s channel, locked above.
        if let Some(wake) = unsafe { arms[i].try_now(states[i]) } {
            unlock_all(arms, &order);
            if let Some(w) = wake {
                w.finish();
            }
            arms[i].set_won();
            return Some(i);
        }
    }
    if default {
        unlock_all(arms, &order);
        return None;
    }
    let group = Group::current();
    for &i in &order {
        // SAFETY: as above; `group` lives until every entry is dequeued below.
        unsafe { arms[i].enqueue(states[i], &group, i) };
    }
    unlock_all(arms, &order);
    group.wait(WaitReason::Select);
    // Take the losing arms' entries off their channels.
    let order = lock_all(arms, &mut states);
    for &i in &order {
        // SAFETY: as above.
        unsafe { arms[i].dequeue(states[i]) };
    }
    unlock_all(arms, &order);
    let w = group
        .winner()
        .expect("runtime: a select woke without a winning arm");
    Group::recycle(group);
    arms[w].take_result();
    arms[w].set_won();
    Some(w)
}

#[cfg(all(test, loom))]
mod loom_tests {
    use crate::chan::{RecvError, chan};
    use loom::thread;

    /// A select over two channels while one gets a value and the other is closed: exactly
    /// one arm wins, the sender succeeds exactly when its arm won, nobody hangs.
    #[test]
    fn loom_select_two_channels_with_a_concurrent_close() {
        loom::model(|| {
            let (a_tx, a) = chan::<u32>(0);
            let (b_tx, b) = chan::<u32>(0);
            let sel = thread::spawn(move || {
                crate::select! {
                    recv(a) -> v => ('a', v),
                    recv(b) -> v => ('b', v),
                }
                // `a` and `b` drop here: a sender still waiting on `a` fails.
            });
            let sender = thread::spawn(move || a_tx.send(1).is_ok());
            b_tx.close().unwrap();
            let (which, v) = sel.join().unwrap();
            let sent = sender.join().unwrap();
            match which {
                'a' => assert!(v == Ok(1) && sent),
                _ => assert!(v == Err(RecvError) && !sent),
            }
        });
    }
}
