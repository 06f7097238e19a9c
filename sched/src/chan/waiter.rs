//! A blocked channel operation: the group a waiting goroutine or thread parks on, and the
//! per-channel entries that name it.
//!
//! A *group* is one blocked party: a plain `send` / `recv` is a group of one case, a select
//! a group of several. Each case puts an *entry* on one channel's wait queue. Whoever
//! completes an entry — a counterpart under that channel's lock, or `close` — first claims
//! the whole group with one CAS on `won` (0 → case + 1); a failed claim means another case
//! already won, and the entry is dropped as stale. (A plain operation's only entry is claimed
//! with a plain store: it sits on one queue, and whoever takes it off, under that queue's
//! lock, is the only party that can ever reach it.) The claimer fills or empties the entry's
//! value slot and records the outcome, then publishes `done` (Release) and wakes the party,
//! which reads the slot only after seeing `done` (Acquire). So a slot has one writer at a
//! time: its owner before the entry is queued (the queue's lock orders that write before any
//! claimer), the claimer after winning, the owner again after `done`.
//!
//! **Nothing is allocated per blocking operation** (Go's `sudog` cache plays the same role).
//! An entry lives in its owner's frame — a plain send or receive's stack frame, a select
//! arm's heap slot — and the wait queues hold raw pointers to it. That is sound because the
//! owner does not leave the frame before every queue has let go of the entry: a plain
//! operation's single entry is taken off its queue by the claimer before `done`, and a select
//! takes its losing entries off their channels, under their locks, before it returns; the
//! wait in between cannot unwind. A goroutine's group is taken from a one-slot cache in its G
//! and put back after the operation. A finisher that touches the group after publishing
//! `done` (to wake the party) holds its own reference from before `done` until the wake-up
//! is delivered (`Won::finish`); it only reads the group's immutable `wake` by then, so the
//! owner may reset and reuse the group meanwhile. The common finisher needs no reference at
//! all: it takes the parked goroutine (which then cannot run) before publishing `done`, and
//! queues it after (`park::ready_parked_here`).

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
    /// A group for one blocking operation of the calling goroutine, or of the calling thread
    /// outside a goroutine. Hand it back with [`Group::recycle`] once the operation is over.
    ///
    /// A goroutine takes its group out of the one-slot cache in its G and reuses it: a
    /// blocking channel or `sync` operation then allocates nothing and makes no new handle
    /// to its goroutine. The cache is touched only by the running
    /// goroutine and is emptied when the goroutine exits (`spawn::run_body`). Taking the group
    /// out (rather than sharing it) keeps a nested operation — none exists today — from
    /// resetting a group that is still in use: it would find the cache empty.
    #[inline(always)]
    pub(crate) fn current() -> Arc<Group> {
        let g = crate::m::current_g();
        if g.is_null() {
            return Arc::new(Group::fresh(Wake::Thread(thread::current())));
        }
        // SAFETY: the running goroutine owns its group cache; no other borrow of it is live.
        let cache = unsafe { &mut *(*g).group_cache.get() };
        if let Some(cached) = cache.take() {
            // The previous operation saw `done` (Acquire), so its claim and `done` happened
            // before these resets. Its finisher may still hold a reference (the general path
            // of `Won::finish`), but after `done` it only reads `wake`, which never changes,
            // and drops its reference: reuse is safe whoever else holds the group.
            cached.won.store(0, Ordering::Relaxed);
            cached.done.store(false, Ordering::Relaxed);
            return cached;
        }
        let me = crate::park::current().expect("runtime: a running goroutine has a handle");
        Arc::new(Group::fresh(Wake::Goroutine(me)))
    }

    /// Hands back a group from [`Group::current`] after its operation ended (`wait`
    /// returned, or it was never queued): a goroutine's group goes back to its cache.
    #[inline(always)]
    pub(crate) fn recycle(this: Arc<Group>) {
        if let Wake::Goroutine(owner) = &this.wake {
            // A goroutine's group is made by `current` for the goroutine itself, and handed
            // back by the same operation: its owner is the calling goroutine.
            let g = owner.g_ptr();
            debug_assert!(
                std::ptr::eq(g, crate::m::current_g()),
                "runtime: a group recycled by another goroutine"
            );
            // SAFETY: `g` is the running goroutine (above), which owns its group cache; the
            // handle in the group keeps it alive.
            let cache = unsafe { &mut *(*g).group_cache.get() };
            if cache.is_none() {
                *cache = Some(this);
            }
        }
    }

    fn fresh(wake: Wake) -> Group {
        Group {
            won: AtomicUsize::new(0),
            done: AtomicBool::new(false),
            wake,
        }
    }

    /// Claims a group of one case whose only entry the caller just took off its queue,
    /// under that queue's lock: nobody else can ever reach it, so no CAS is needed.
    #[inline]
    pub(crate) fn claim_single(&self) {
        debug_assert_eq!(
            self.won.load(Ordering::Relaxed),
            0,
            "runtime: claimed twice"
        );
        // Relaxed: the owner reads `won` only after `done` (Release / Acquire).
        self.won.store(1, Ordering::Relaxed);
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
    #[inline(always)]
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

/// Claimed entries are finished through this: the group to wake once the channel's lock is
/// released (waking may take scheduler locks, which never nest inside a channel's lock).
///
/// Holds the group by raw pointer: from the claim until `finish` publishes `done`, the
/// group's owner is still waiting and holds its own `Arc`.
#[doc(hidden)]
#[must_use]
#[derive(Debug)]
pub struct Won(std::ptr::NonNull<Group>);

impl Won {
    /// Publishes the winner's slot and outcome and wakes the party.
    #[inline(always)]
    pub(crate) fn finish(self) {
        let p = self.0.as_ptr().cast_const();
        // The common case, a goroutine of this M's runtime that is parked: take it (it
        // cannot run, so cannot see `done`, before we queue it), publish `done`, queue it —
        // no reference to the group is needed after `done`, so none is taken.
        // SAFETY: the owner holds its `Arc` until it sees `done` (see below); the borrow ends
        // before `done` is published.
        if let Wake::Goroutine(h) = unsafe { &(*p).wake } {
            let r = h.parked_ref();
            // SAFETY: as above; `done` is published by this store, after which `p` is not
            // used.
            let publish = || unsafe { (*p).done.store(true, Ordering::Release) };
            if crate::park::ready_parked_here(r, publish) {
                return;
            }
        }
        // SAFETY: `p` came from `Arc::as_ptr` of the owner's group (`Entry::new`), and the
        // owner holds that `Arc` until it sees `done`, which only `finish` below publishes:
        // the count is at least one here. Our own reference keeps the group — and the handle
        // it wakes — alive after `done`, when the owner may drop or reuse its own.
        let keep = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        keep.finish();
    }
}

/// One case of a group, queued on one channel. Lives in its owner's frame; wait queues
/// hold [`Waiting`] pointers to it (see the module docs).
pub(crate) struct Entry<T> {
    /// The owner's group (`Arc::as_ptr`); the owner's `Arc` outlives the entry.
    group: std::ptr::NonNull<Group>,
    /// Which case of the group this is (0 for a plain operation).
    pub(crate) case: usize,
    /// The group's only entry (a plain operation): claimed without a CAS (`claim_single`).
    pub(crate) single: bool,
    /// A sender's value (taken by the winner) or the value received (put by the winner).
    slot: UnsafeCell<Option<T>>,
    outcome: AtomicU8,
    /// Links of the channel's wait queue (`WaitQueue`), and whether the entry is on it:
    /// read and written only under that channel's lock.
    links: UnsafeCell<Links<T>>,
}

/// An entry's place in a `WaitQueue`.
struct Links<T> {
    prev: Option<std::ptr::NonNull<Entry<T>>>,
    next: Option<std::ptr::NonNull<Entry<T>>>,
    queued: bool,
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
// move between threads only. The group pointer is only read (the group is `Sync`).
unsafe impl<T: Send> Send for Entry<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Entry<T> {}

/// An entry just taken off a wait queue: a pointer into its owner's frame.
pub(crate) struct Waiting<T>(std::ptr::NonNull<Entry<T>>);

impl<T> Waiting<T> {
    /// The entry.
    ///
    /// # Safety
    /// `self` must have just been taken off its queue by the caller, under the channel's
    /// lock, which the caller still holds or has not yet published `done` since: its owner
    /// then keeps the entry alive and in place.
    pub(crate) unsafe fn entry(&self) -> &Entry<T> {
        // SAFETY: per the contract (the queuing rule of the module docs).
        unsafe { self.0.as_ref() }
    }
}

/// A channel's queue of blocked parties (Go's `waitq`): a doubly-linked list threaded
/// through the entries themselves, so queueing allocates nothing and touches no memory but
/// the entries and this head, and a select takes a losing entry out in O(1). Every
/// operation runs under the channel's lock, and every entry on the list is alive (the
/// queuing rule of the module docs).
pub(crate) struct WaitQueue<T> {
    head: Option<std::ptr::NonNull<Entry<T>>>,
    tail: Option<std::ptr::NonNull<Entry<T>>>,
}

// SAFETY: a queue is only used under its channel's lock; the entries it points to are
// `Send + Sync` for `T: Send`.
unsafe impl<T: Send> Send for WaitQueue<T> {}

impl<T> Default for WaitQueue<T> {
    fn default() -> Self {
        WaitQueue {
            head: None,
            tail: None,
        }
    }
}

impl<T> WaitQueue<T> {
    /// The links of a queued (or about to be queued) entry.
    ///
    /// # Safety
    /// `e` is alive (queued, or being queued by its owner), and the caller holds the
    /// channel's lock, which serialises every access to the links.
    #[allow(clippy::mut_from_ref)]
    unsafe fn links<'a>(e: std::ptr::NonNull<Entry<T>>) -> &'a mut Links<T> {
        // SAFETY: per the contract; the returned borrow is used before any other.
        unsafe { e.as_ref().links.with_mut(|l| &mut *l) }
    }

    /// Appends `e`.
    ///
    /// # Safety
    /// The caller holds the channel's lock; `e` is not on any queue and stays alive and in
    /// place until it is taken off (the queuing rule of the module docs).
    pub(crate) unsafe fn push_back(&mut self, e: &Entry<T>) {
        let p = std::ptr::NonNull::from(e);
        // SAFETY: per the contract.
        let l = unsafe { Self::links(p) };
        debug_assert!(!l.queued, "runtime: an entry queued twice");
        *l = Links {
            prev: self.tail,
            next: None,
            queued: true,
        };
        match self.tail {
            // SAFETY: the tail is queued, hence alive; we hold the lock.
            Some(t) => unsafe { Self::links(t) }.next = Some(p),
            None => self.head = Some(p),
        }
        self.tail = Some(p);
    }

    /// Takes the oldest entry off.
    pub(crate) fn pop_front(&mut self) -> Option<Waiting<T>> {
        let h = self.head?;
        // SAFETY: a queued entry is alive, and `&mut self` means we hold the lock.
        let l = unsafe { Self::links(h) };
        self.head = l.next;
        match l.next {
            // SAFETY: as above.
            Some(n) => unsafe { Self::links(n) }.prev = None,
            None => self.tail = None,
        }
        *l = Links {
            prev: None,
            next: None,
            queued: false,
        };
        Some(Waiting(h))
    }

    /// Takes `e` off if it is queued. Returns whether it was.
    ///
    /// # Safety
    /// The caller holds the channel's lock and owns `e`, which is on this queue, on none, or
    /// strictly inside another queue of the same channel (then only its neighbours' links
    /// change, never a queue's ends).
    pub(crate) unsafe fn remove(&mut self, e: &Entry<T>) -> bool {
        let p = std::ptr::NonNull::from(e);
        // SAFETY: per the contract.
        let l = unsafe { Self::links(p) };
        if !l.queued {
            return false;
        }
        match l.prev {
            // SAFETY: a queued neighbour is alive; we hold the lock.
            Some(prev) => unsafe { Self::links(prev) }.next = l.next,
            None => self.head = l.next,
        }
        match l.next {
            // SAFETY: as above.
            Some(next) => unsafe { Self::links(next) }.prev = l.prev,
            None => self.tail = l.prev,
        }
        *l = Links {
            prev: None,
            next: None,
            queued: false,
        };
        true
    }

    /// Whether `e` is the first or last entry (so on this queue, if queued at all).
    pub(crate) fn ends_with(&self, e: &Entry<T>) -> bool {
        let p = Some(std::ptr::NonNull::from(e));
        self.head == p || self.tail == p
    }
}

impl<T> Entry<T> {
    /// An entry for case `case` of `group`, carrying a sender's value.
    ///
    /// # Safety
    /// `group` (the `Arc` itself, not a clone) must outlive the entry; the entry must not
    /// move while queued, and must not be dropped before it is off every queue.
    pub(crate) unsafe fn new(group: &Arc<Group>, case: usize, value: Option<T>) -> Entry<T> {
        // SAFETY: forwarded contract.
        let mut e = unsafe { Entry::single(group, value) };
        e.case = case;
        e.single = false;
        e
    }

    /// The only entry of `group` (a plain send or receive), carrying a sender's value. It
    /// must be queued on one channel at most.
    ///
    /// # Safety
    /// As [`Entry::new`].
    pub(crate) unsafe fn single(group: &Arc<Group>, value: Option<T>) -> Entry<T> {
        Entry {
            // `as_ptr`, not a reference: `Won::finish` rebuilds an `Arc` from this pointer,
            // which needs the provenance of the whole allocation.
            group: std::ptr::NonNull::new(Arc::as_ptr(group).cast_mut())
                .expect("runtime: an Arc is never null"),
            case: 0,
            single: true,
            slot: UnsafeCell::new(value),
            outcome: AtomicU8::new(OUTCOME_PENDING),
            links: UnsafeCell::new(Links {
                prev: None,
                next: None,
                queued: false,
            }),
        }
    }

    /// The entry's group.
    pub(crate) fn group(&self) -> &Group {
        // SAFETY: the owner's `Arc` outlives the entry (`new`'s contract).
        unsafe { self.group.as_ref() }
    }

    /// A claimer that won this entry's group: the handle to finish it with.
    pub(crate) fn won(&self) -> Won {
        Won(self.group)
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

    /// The owner, after the group is done and this case won (or the entry was never
    /// claimed and is off every queue): the outcome and the slot.
    ///
    /// # Safety
    /// The caller owns the entry, and its group is done (`wait` returned) or the entry was
    /// never queued or has been taken off its queue under the channel's lock.
    pub(crate) unsafe fn result(&self) -> (u8, Option<T>) {
        let outcome = self.outcome.load(Ordering::Relaxed);
        // SAFETY: after `done` (Acquire) the owner is the slot's only user.
        let value = self.slot.with_mut(|p| unsafe { (*p).take() });
        (outcome, value)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn ids(q: &mut WaitQueue<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(w) = q.pop_front() {
            // SAFETY: just taken off; the entries live in the test's frame.
            out.push(unsafe { w.entry().take_value() }.unwrap());
        }
        out
    }

    /// FIFO order, removal from the front, the middle and the back, removal of an entry that
    /// is not queued, and re-queueing after removal.
    #[test]
    fn wait_queue_is_fifo_and_removes_anywhere() {
        let group = Arc::new(Group::fresh(Wake::Thread(thread::current())));
        // SAFETY: `group` outlives the entries; they stay in place while queued (all are
        // taken off before the end of the test).
        let es: Vec<Entry<u32>> = (0..5)
            .map(|i| unsafe { Entry::new(&group, i as usize, Some(i)) })
            .collect();
        let mut q = WaitQueue::default();
        let mut other = WaitQueue::default();
        for e in &es {
            // SAFETY: as above.
            unsafe { q.push_back(e) };
        }
        // SAFETY: as above (each entry is on `q` or on none).
        unsafe {
            assert!(q.remove(&es[2]));
            assert!(!q.remove(&es[2]));
            assert!(q.remove(&es[0]));
            assert!(q.remove(&es[4]));
            // In the middle of `q`, removed through another queue: only links change.
            q.push_back(&es[2]);
            q.push_back(&es[4]);
            assert!(!other.ends_with(&es[3]));
            assert!(other.remove(&es[3]));
            other.push_back(&es[0]);
        }
        assert_eq!(ids(&mut q), [1, 2, 4]);
        assert_eq!(ids(&mut other), [0]);
        assert!(q.pop_front().is_none());
        // SAFETY: as above.
        unsafe { q.push_back(&es[3]) };
        assert!(q.ends_with(&es[3]));
        assert_eq!(ids(&mut q), [3]);
    }
}
