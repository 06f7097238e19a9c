//! A blocked channel operation: the group a waiting goroutine or thread parks on, and the
//! per-channel entries that name it.
//!
//! A *group* is one blocked party: a plain `send` / `recv` is a group of one case, a select
//! (a later addition) a group of several. Each case puts an *entry* on one channel's wait
//! queue. Whoever completes an entry — a counterpart under that channel's lock, or `close` —
//! first claims the whole group with one CAS on `won` (0 → case + 1); a failed claim means
//! another case already won, and the entry is dropped as stale. The claimer fills or empties
//! the entry's value slot and records the outcome, then publishes `done` (Release) and wakes
//! the party, which reads the slot only after seeing `done` (Acquire). So a slot has one
//! writer at a time: its owner before the entry is queued (the queue's lock orders that
//! write before any claimer), the claimer after winning, the owner again after `done`.

use crate::loom::{Arc, AtomicBool, AtomicU8, AtomicUsize, Ordering, UnsafeCell, thread};
use crate::park::Goroutine;

/// The outcome of a completed entry, read by its owner after `done`.
pub(crate) const OUTCOME_PENDING: u8 = 0;
/// A value was handed over (to a receiver's slot, or out of a sender's slot).
pub(crate) const OUTCOME_OK: u8 = 1;
/// The channel closed (or lost its other side): a sender's value is still in its slot.
pub(crate) const OUTCOME_CLOSED: u8 = 2;

/// How to wake the blocked party.
enum Wake {
    Goroutine(Goroutine),
    Thread(thread::Thread),
}

/// One blocked party (public only because `select!`'s hidden arm trait names it).
#[doc(hidden)]
pub struct Group {
    /// 0 while waiting; `case + 1` of the winning entry once claimed. CAS by claimers (AcqRel:
    /// a claimer that loses must not touch the slot; the winner's later writes are published
    /// by `done`).
    won: AtomicUsize,
    /// Set (Release) by the winner after it filled the slot and the outcome; read (Acquire)
    /// by the owner before it touches either.
    done: AtomicBool,
    wake: Wake,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("won", &self.won.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Group {
    /// A group for the calling goroutine, or for the calling thread outside a goroutine.
    ///
    /// A goroutine reuses its last group when nobody else holds it any more (every entry
    /// naming it was dropped): a blocking channel or `sync` operation then allocates no group
    /// and makes no new handle to its goroutine. The cache lives in the G, is touched only by
    /// the running goroutine, and is emptied when the goroutine exits (`spawn::run_body`).
    pub(crate) fn current() -> Arc<Group> {
        let g = crate::m::current_g();
        if g.is_null() {
            return Arc::new(Group::fresh(Wake::Thread(thread::current())));
        }
        // SAFETY: the running goroutine owns its group cache; no other borrow of it is live.
        let cache = unsafe { &mut *(*g).group_cache.get() };
        if let Some(cached) = cache.as_mut()
            && let Some(unique) = Arc::get_mut(cached)
        {
            // `get_mut` proved every other holder gone (with Acquire), so plain resets are
            // not observed by anyone.
            unique.won.store(0, Ordering::Relaxed);
            unique.done.store(false, Ordering::Relaxed);
            return cached.clone();
        }
        let me = crate::park::current().expect("runtime: a running goroutine has a handle");
        let fresh = Arc::new(Group::fresh(Wake::Goroutine(me)));
        *cache = Some(fresh.clone());
        fresh
    }

    fn fresh(wake: Wake) -> Group {
        Group {
            won: AtomicUsize::new(0),
            done: AtomicBool::new(false),
            wake,
        }
    }

    /// Claims the group for `case`. Only the winner may complete its entry.
    pub(crate) fn claim(&self, case: usize) -> bool {
        self.won
            .compare_exchange(0, case + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The case that won, once `wait` has returned.
    pub(crate) fn winner(&self) -> Option<usize> {
        // Acquire: pairs with the claimer's AcqRel CAS.
        self.won.load(Ordering::Acquire).checked_sub(1)
    }

    /// Publishes the winner's slot and outcome and wakes the party. Called once, by the
    /// winner, after filling the entry (outside the channel's lock is fine).
    pub(crate) fn finish(&self) {
        // Release: pairs with the Acquire in `wait`.
        self.done.store(true, Ordering::Release);
        match &self.wake {
            Wake::Goroutine(g) => g.ready(),
            Wake::Thread(t) => t.unpark(),
        }
    }

    /// Blocks the calling party until `finish`. A goroutine parks (its M runs others); a
    /// thread blocks, counted meanwhile as a foreign thread that may still feed runtimes, so
    /// no deadlock detector reports a program this thread is about to wake.
    pub(crate) fn wait(&self, reason: crate::WaitReason) {
        // Acquire: pairs with `finish`'s Release store.
        if self.done.load(Ordering::Acquire) {
            return;
        }
        match &self.wake {
            Wake::Goroutine(_) => {
                while !self.done.load(Ordering::Acquire) {
                    crate::park::park_for(reason);
                }
            }
            Wake::Thread(_) => {
                let _counted = crate::runtime::BlockedThread::enter();
                while !self.done.load(Ordering::Acquire) {
                    thread::park();
                }
            }
        }
    }
}

/// One case of a group, queued on one channel.
pub(crate) struct Entry<T> {
    pub(crate) group: Arc<Group>,
    /// Which case of the group this is (0 for a plain operation).
    pub(crate) case: usize,
    /// A sender's value (taken by the winner) or the value received (put by the winner).
    slot: UnsafeCell<Option<T>>,
    outcome: AtomicU8,
}

impl<T> std::fmt::Debug for Entry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("case", &self.case)
            .finish_non_exhaustive()
    }
}

// SAFETY: the slot is accessed by one party at a time (module docs): its owner before the
// entry is queued and after `done`, the winning claimer in between; values of `T: Send`
// move between threads only.
unsafe impl<T: Send> Send for Entry<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Entry<T> {}

impl<T> Entry<T> {
    pub(crate) fn new(group: Arc<Group>, case: usize, value: Option<T>) -> Entry<T> {
        Entry {
            group,
            case,
            slot: UnsafeCell::new(value),
            outcome: AtomicU8::new(OUTCOME_PENDING),
        }
    }

    /// The claimer takes a sender's value.
    ///
    /// # Safety
    /// The caller won this entry's group for this entry's case and has not called `finish`.
    pub(crate) unsafe fn take_value(&self) -> Option<T> {
        // SAFETY: the winner is the slot's only user until `finish` (caller contract).
        self.slot.with_mut(|p| unsafe { (*p).take() })
    }

    /// The claimer gives a receiver its value.
    ///
    /// # Safety
    /// As `take_value`.
    pub(crate) unsafe fn put_value(&self, v: T) {
        // SAFETY: as above.
        self.slot.with_mut(|p| unsafe { *p = Some(v) });
    }

    /// The claimer records the outcome (Relaxed: published by `finish`'s Release).
    pub(crate) fn set_outcome(&self, outcome: u8) {
        self.outcome.store(outcome, Ordering::Relaxed);
    }

    /// The owner, after the group is done and this case won: the outcome and the slot.
    ///
    /// # Safety
    /// The caller owns the entry, its group is done (`wait` returned) and this case won.
    pub(crate) unsafe fn result(&self) -> (u8, Option<T>) {
        let outcome = self.outcome.load(Ordering::Relaxed);
        // SAFETY: after `done` (Acquire) the owner is the slot's only user.
        let value = self.slot.with_mut(|p| unsafe { (*p).take() });
        (outcome, value)
    }
}
