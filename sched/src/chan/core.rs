//! The channel itself: a buffer and two wait queues under one lock (Go's `hchan`).

use super::waiter::{Entry, OUTCOME_CLOSED, OUTCOME_OK, WaitQueue, Waiting, Won};
use crate::loom::{ChanGuard as MutexGuard, ChanMutex as Mutex, chan_lock};
use std::collections::VecDeque;

/// State under the channel's lock. `repr(C)`, the queues first and the buffer behind a
/// pointer, so that the state and the lock word fit in 64 bytes (see `Chan`).
#[repr(C)]
pub(crate) struct State<T> {
    /// Blocked receivers, oldest first.
    pub(crate) recvq: WaitQueue<T>,
    /// Blocked senders with their values, oldest first.
    pub(crate) sendq: WaitQueue<T>,
    /// Buffered values (at most `cap`).
    pub(crate) buf: Buffer<T>,
    /// Closed by a sender (`close`, or the last `Sender` dropped): receives drain the buffer,
    /// then report closed; sends fail.
    pub(crate) closed: bool,
    /// Every `Receiver` is gone: sends fail with their value, blocked senders are woken.
    pub(crate) no_receivers: bool,
}

/// A buffered channel's values, out of line (one word in `State`); nothing for capacity 0.
// The box is the point: one word in `State` instead of a `VecDeque`'s four.
#[allow(clippy::box_collection)]
pub(crate) struct Buffer<T>(Option<Box<VecDeque<T>>>);

impl<T> Buffer<T> {
    fn new(cap: usize) -> Buffer<T> {
        Buffer((cap > 0).then(|| Box::new(VecDeque::with_capacity(cap.min(1024)))))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.len())
    }

    fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    fn push_back(&mut self, v: T) {
        self.0
            .as_mut()
            .expect("runtime: buffered a value in an unbuffered channel")
            .push_back(v);
    }
}

// The lock and the state fit in 64 bytes (see `Chan`; loom's lock is larger).
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Mutex<State<u64>>>() <= 64);

/// A channel shared by its `Sender`s and `Receiver`s. `repr(C)` with the lock first: a
/// hand-off touches the lock word and the queues, 64 bytes at most, so one or two cache
/// lines. (Aligning the channel to a line would make it one, but an over-aligned
/// allocation made creating a channel 60% slower.)
#[repr(C)]
pub(crate) struct Chan<T> {
    state: Mutex<State<T>>,
    pub(crate) cap: usize,
    /// Unique for the process's life: the order in which a select locks channels (Go sorts
    /// by address; an id is the same total order, and stays deterministic under loom).
    pub(crate) id: u64,
}

/// Pops the first entry of `q` whose group can still be claimed, claiming it. Entries whose
/// group another case already won are stale and dropped.
fn pop_claimed<T>(q: &mut WaitQueue<T>) -> Option<Waiting<T>> {
    while let Some(w) = q.pop_front() {
        // SAFETY: just taken off its queue under the channel's lock, which we hold.
        let e = unsafe { w.entry() };
        if e.single {
            // Its only entry, now off its only queue: nobody else can claim it.
            e.group().claim_single();
            return Some(w);
        }
        if e.group().claim(e.case) {
            return Some(w);
        }
    }
    None
}

/// What a send attempt did.
pub(crate) enum SendStep<T> {
    /// Delivered (to a waiting receiver, to be woken, or into the buffer).
    Sent(Option<Won>),
    /// Nobody can take it now; the value comes back.
    Full(T),
    /// Closed, or no receiver left; the value comes back.
    Closed(T),
}

/// What a receive attempt did.
pub(crate) enum RecvStep<T> {
    /// A value, and perhaps a blocked sender to wake (its value moved into the buffer or
    /// straight to us).
    Got(T, Option<Won>),
    /// Nothing now.
    Empty,
    /// Closed and drained.
    Closed,
}

/// A send that could not complete at once.
pub(crate) enum SendBlocked<'a, T> {
    /// No room and no receiver: the lock, still held (to queue the sender), and the value.
    Full(MutexGuard<'a, State<T>>, T),
    /// Closed, or no receiver left: the value comes back.
    Closed(T),
}

/// A receive that could not complete at once.
pub(crate) enum RecvBlocked<'a, T> {
    /// Nothing to take: the lock, still held (to queue the receiver).
    Empty(MutexGuard<'a, State<T>>),
    /// Closed and drained.
    Closed,
}

impl<T> Chan<T> {
    /// Sends now if possible (the lock released and any woken receiver finished); otherwise
    /// says why, keeping the lock when the caller may queue.
    #[inline]
    pub(crate) fn send_now(&self, v: T) -> Result<(), SendBlocked<'_, T>> {
        let mut s = self.lock();
        match self.try_send_locked(&mut s, v) {
            SendStep::Sent(won) => {
                drop(s);
                if let Some(w) = won {
                    w.finish();
                }
                Ok(())
            }
            SendStep::Full(v) => Err(SendBlocked::Full(s, v)),
            SendStep::Closed(v) => Err(SendBlocked::Closed(v)),
        }
    }

    /// Receives now if possible (the lock released and any woken sender finished);
    /// otherwise says why, keeping the lock when the caller may queue.
    #[inline]
    pub(crate) fn recv_now(&self) -> Result<T, RecvBlocked<'_, T>> {
        let mut s = self.lock();
        match self.try_recv_locked(&mut s) {
            RecvStep::Got(v, won) => {
                drop(s);
                if let Some(w) = won {
                    w.finish();
                }
                Ok(v)
            }
            RecvStep::Empty => Err(RecvBlocked::Empty(s)),
            RecvStep::Closed => Err(RecvBlocked::Closed),
        }
    }

    /// Values buffered now.
    pub(crate) fn len(&self) -> usize {
        self.lock().buf.len()
    }

    pub(crate) fn new(cap: usize) -> Chan<T> {
        /// Ids for `Chan::id` (a plain std counter: not part of any modelled protocol).
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Chan {
            cap,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            state: Mutex::new(State {
                recvq: WaitQueue::default(),
                sendq: WaitQueue::default(),
                buf: Buffer::new(cap),
                closed: false,
                no_receivers: false,
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State<T>> {
        chan_lock(&self.state)
    }

    /// Tries to send under the lock `s`.
    #[inline]
    pub(crate) fn try_send_locked(&self, s: &mut State<T>, v: T) -> SendStep<T> {
        if s.closed || s.no_receivers {
            return SendStep::Closed(v);
        }
        if let Some(w) = pop_claimed(&mut s.recvq) {
            // SAFETY: just taken off the queue under our lock (still held).
            let r = unsafe { w.entry() };
            // SAFETY: we just won `r`'s group for its case and have not finished it.
            unsafe { r.put_value(v) };
            r.set_outcome(OUTCOME_OK);
            return SendStep::Sent(Some(r.won()));
        }
        if s.buf.len() < self.cap {
            s.buf.push_back(v);
            return SendStep::Sent(None);
        }
        SendStep::Full(v)
    }

    /// Tries to receive under the lock `s`.
    #[inline]
    pub(crate) fn try_recv_locked(&self, s: &mut State<T>) -> RecvStep<T> {
        if let Some(v) = s.buf.pop_front() {
            // A slot opened: the oldest blocked sender's value moves into the buffer.
            let won = pop_claimed(&mut s.sendq).map(|w| {
                // SAFETY: just taken off the queue under our lock (still held).
                let w = unsafe { w.entry() };
                // SAFETY: we just won `w`; a queued sender always holds its value.
                let sv =
                    unsafe { w.take_value() }.expect("runtime: blocked sender without a value");
                s.buf.push_back(sv);
                w.set_outcome(OUTCOME_OK);
                w.won()
            });
            return RecvStep::Got(v, won);
        }
        if let Some(w) = pop_claimed(&mut s.sendq) {
            // Unbuffered (or a buffer that is empty with senders waiting: capacity 0).
            // SAFETY: as above.
            let w = unsafe { w.entry() };
            // SAFETY: as above.
            let v = unsafe { w.take_value() }.expect("runtime: blocked sender without a value");
            w.set_outcome(OUTCOME_OK);
            return RecvStep::Got(v, Some(w.won()));
        }
        if s.closed {
            return RecvStep::Closed;
        }
        RecvStep::Empty
    }

    /// Marks the channel closed and claims every blocked party (receivers see closed,
    /// senders get their values back). Returns them to be woken after the lock is released,
    /// or `None` if it was already closed.
    pub(crate) fn close_locked(s: &mut State<T>) -> Option<Vec<Won>> {
        if s.closed {
            return None;
        }
        s.closed = true;
        Some(Self::fail_all(s))
    }

    /// The last receiver went away: blocked senders fail with their values.
    pub(crate) fn drop_receivers_locked(s: &mut State<T>) -> Vec<Won> {
        s.no_receivers = true;
        let mut woken = Vec::new();
        while let Some(w) = pop_claimed(&mut s.sendq) {
            woken.push(Self::fail(&w));
        }
        woken
    }

    fn fail_all(s: &mut State<T>) -> Vec<Won> {
        let mut woken = Vec::new();
        while let Some(r) = pop_claimed(&mut s.recvq) {
            woken.push(Self::fail(&r));
        }
        while let Some(w) = pop_claimed(&mut s.sendq) {
            woken.push(Self::fail(&w));
        }
        woken
    }

    /// Completes a claimed entry with "closed" (a sender's value stays in its slot).
    fn fail(w: &Waiting<T>) -> Won {
        // SAFETY: just taken off its queue under the channel's lock, which the caller holds.
        let e = unsafe { w.entry() };
        e.set_outcome(OUTCOME_CLOSED);
        e.won()
    }

    /// Queues a blocked receiver's entry under the lock.
    ///
    /// # Safety
    /// `e` must stay alive and in place until it is taken off the queue: by a claimer (whose
    /// `finish` the owner then waits for) or by [`Chan::dequeue`].
    pub(crate) unsafe fn enqueue_recv(s: &mut State<T>, e: &Entry<T>) {
        // SAFETY: forwarded contract; we hold the lock (`s`).
        unsafe { s.recvq.push_back(e) };
    }

    /// Queues a blocked sender's entry (holding its value) under the lock.
    ///
    /// # Safety
    /// As for [`Chan::enqueue_recv`].
    pub(crate) unsafe fn enqueue_send(s: &mut State<T>, e: &Entry<T>) {
        // SAFETY: as in `enqueue_recv`.
        unsafe { s.sendq.push_back(e) };
    }

    /// Removes `e` from whichever queue holds it (a select's losing cases, after it woke).
    pub(crate) fn dequeue(s: &mut State<T>, e: &Entry<T>) {
        // An entry is on one of the two queues at most; in the middle of a queue, unlinking
        // needs no head or tail, so only the ends tell which queue it is.
        let q = if s.sendq.ends_with(e) {
            &mut s.sendq
        } else {
            &mut s.recvq
        };
        // SAFETY: we hold the lock (`s`); the caller owns `e`, which is on neither queue or
        // on `q` (or in the middle of either, where `q`'s head and tail are not involved).
        unsafe { q.remove(e) };
    }
}
