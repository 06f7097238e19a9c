//! The user's handles: `chan`, `Sender` and `Receiver`, blocking and non-blocking.

use super::core::{Chan, RecvBlocked, SendBlocked};
use super::error::{
    CloseError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
use super::select::{RecvArm, SelectArm, SendArm, select};
use super::waiter::{Entry, Group, OUTCOME_OK};
use crate::WaitReason;
use crate::loom::{Arc, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Shared by every handle of one channel, the channel first (see `Chan`).
#[repr(C)]
struct Shared<T> {
    chan: Chan<T>,
    /// Live `Sender`s; the last one dropped closes the channel.
    senders: AtomicUsize,
    /// Live `Receiver`s; the last one dropped fails blocked and future sends.
    receivers: AtomicUsize,
}

/// Creates a channel with Go's semantics: capacity 0 is an unbuffered rendezvous (a send
/// waits for a receiver), capacity `n` buffers `n` values. Both handles can be cloned and
/// used from goroutines (which park, leaving their M to others) and from plain threads
/// (which block) alike.
///
/// Closing: [`Sender::close`] (or dropping the last `Sender`) closes the channel; receivers
/// then drain what is buffered and see [`RecvError`]; sends fail with their value in
/// [`SendError`]. Dropping the last `Receiver` makes every blocked and later send fail the
/// same way, so no sender waits for a receiver that cannot come.
pub fn chan<T: Send>(cap: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        chan: Chan::new(cap),
        senders: AtomicUsize::new(1),
        receivers: AtomicUsize::new(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The sending half of a channel.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving half of a channel.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("cap", &self.shared.chan.cap)
            .finish_non_exhaustive()
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("cap", &self.shared.chan.cap)
            .finish_non_exhaustive()
    }
}

impl<T: Send> Sender<T> {
    /// Sends `v`, waiting while the buffer is full (or, unbuffered, until a receiver takes
    /// it). Fails, returning `v`, if the channel is or becomes closed, or has no receiver.
    pub fn send(&self, v: T) -> Result<(), SendError<T>> {
        let (mut s, v) = match self.shared.chan.send_now(v) {
            Ok(()) => return Ok(()),
            Err(SendBlocked::Closed(v)) => return Err(SendError(v)),
            Err(SendBlocked::Full(s, v)) => (s, v),
        };
        let group = Group::current();
        // SAFETY: `group` outlives `entry` (declared before it); `entry` stays in this frame,
        // unmoved, until `wait` returns — by then its claimer took it off the queue.
        let entry = unsafe { Entry::single(&group, Some(v)) };
        // SAFETY: as above.
        unsafe { Chan::enqueue_send(&mut s, &entry) };
        drop(s);
        group.wait(WaitReason::ChanSend);
        // SAFETY: we own `entry`, `wait` returned (done), and a plain send has one case.
        let result = match unsafe { entry.result() } {
            (OUTCOME_OK, _) => Ok(()),
            (_, Some(v)) => Err(SendError(v)),
            (_, None) => unreachable!("runtime: a failed send lost its value"),
        };
        // The entry goes first: it points at the group, which `recycle` may drop.
        drop(entry);
        Group::recycle(group);
        result
    }

    /// Sends `v`, waiting at most `timeout`. A zero timeout only tries.
    pub fn send_timeout(&self, v: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        let v = match self.try_send(v) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Closed(v)) => return Err(SendTimeoutError::Closed(v)),
            Err(TrySendError::Full(v)) if timeout.is_zero() => {
                return Err(SendTimeoutError::Timeout(v));
            }
            Err(TrySendError::Full(v)) => v,
        };
        let timer = crate::time::Timer::new(timeout);
        let ticks = timer
            .receiver()
            .expect("runtime: a channel timer has a channel");
        let mut send = SendArm::new(self, v);
        let mut expiry = RecvArm::new(ticks);
        select(&mut [&mut send as &mut dyn SelectArm, &mut expiry], false);
        timer.stop();
        if send.won() {
            return send
                .into_result()
                .map_err(|e| SendTimeoutError::Closed(e.0));
        }
        let v = send
            .into_unsent()
            .expect("runtime: a timed-out send lost its value");
        Err(SendTimeoutError::Timeout(v))
    }

    /// Sends `v`, waiting until `deadline` at most.
    pub fn send_deadline(&self, v: T, deadline: Instant) -> Result<(), SendTimeoutError<T>> {
        self.send_timeout(v, deadline.saturating_duration_since(Instant::now()))
    }

    /// Sends `v` if that can be done without waiting.
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        match self.shared.chan.send_now(v) {
            Ok(()) => Ok(()),
            Err(SendBlocked::Full(_, v)) => Err(TrySendError::Full(v)),
            Err(SendBlocked::Closed(v)) => Err(TrySendError::Closed(v)),
        }
    }
}

impl<T> Sender<T> {
    pub(crate) fn chan(&self) -> &Chan<T> {
        &self.shared.chan
    }

    /// Closes the channel (Go's `close`): receivers drain the buffer, then see closed;
    /// blocked and later sends fail with their values. Closing twice is an error.
    pub fn close(&self) -> Result<(), CloseError> {
        let woken = {
            let mut s = self.shared.chan.lock();
            Chan::close_locked(&mut s).ok_or(CloseError)?
        };
        for w in woken {
            w.finish();
        }
        Ok(())
    }

    /// Whether the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.chan.lock().closed
    }

    /// Values buffered now.
    pub fn len(&self) -> usize {
        self.shared.chan.len()
    }

    /// Whether nothing is buffered now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's capacity (0: unbuffered).
    pub fn capacity(&self) -> usize {
        self.shared.chan.cap
    }
}

impl<T: Send> Receiver<T> {
    /// Receives a value, waiting until one is sent. Once the channel is closed, returns what
    /// is still buffered, then [`RecvError`].
    pub fn recv(&self) -> Result<T, RecvError> {
        let mut s = match self.shared.chan.recv_now() {
            Ok(v) => return Ok(v),
            Err(RecvBlocked::Closed) => return Err(RecvError),
            Err(RecvBlocked::Empty(s)) => s,
        };
        let group = Group::current();
        // SAFETY: as in `send`.
        let entry = unsafe { Entry::single(&group, None) };
        // SAFETY: as in `send`.
        unsafe { Chan::enqueue_recv(&mut s, &entry) };
        drop(s);
        group.wait(WaitReason::ChanReceive);
        // SAFETY: as in `send`.
        let result = match unsafe { entry.result() } {
            (OUTCOME_OK, Some(v)) => Ok(v),
            (OUTCOME_OK, None) => unreachable!("runtime: a completed receive has no value"),
            _ => Err(RecvError),
        };
        // The entry goes first: it points at the group, which `recycle` may drop.
        drop(entry);
        Group::recycle(group);
        result
    }

    /// Receives a value, waiting at most `timeout`. A zero timeout only tries.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        match self.try_recv() {
            Ok(v) => return Ok(v),
            Err(TryRecvError::Closed) => return Err(RecvTimeoutError::Closed),
            Err(TryRecvError::Empty) if timeout.is_zero() => {
                return Err(RecvTimeoutError::Timeout);
            }
            Err(TryRecvError::Empty) => {}
        }
        let timer = crate::time::Timer::new(timeout);
        let ticks = timer
            .receiver()
            .expect("runtime: a channel timer has a channel");
        let mut value = RecvArm::new(self);
        let mut expiry = RecvArm::new(ticks);
        select(&mut [&mut value as &mut dyn SelectArm, &mut expiry], false);
        timer.stop();
        if value.won() {
            return value.into_result().map_err(|_| RecvTimeoutError::Closed);
        }
        Err(RecvTimeoutError::Timeout)
    }

    /// Receives a value, waiting until `deadline` at most.
    pub fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    }

    /// Receives a value if one is ready now.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.shared.chan.recv_now() {
            Ok(v) => Ok(v),
            Err(RecvBlocked::Empty(_)) => Err(TryRecvError::Empty),
            Err(RecvBlocked::Closed) => Err(TryRecvError::Closed),
        }
    }

    /// Iterates over received values until the channel is closed and drained (Go's
    /// `for v := range ch`).
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }
}

impl<T> Receiver<T> {
    pub(crate) fn chan(&self) -> &Chan<T> {
        &self.shared.chan
    }

    /// Values buffered now.
    pub fn len(&self) -> usize {
        self.shared.chan.len()
    }

    /// Whether nothing is buffered now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer's capacity (0: unbuffered).
    pub fn capacity(&self) -> usize {
        self.shared.chan.cap
    }
}

/// Blocking iterator over a [`Receiver`]; ends when the channel is closed and drained.
#[derive(Debug)]
pub struct Iter<'a, T> {
    rx: &'a Receiver<T>,
}

impl<T: Send> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<'a, T: Send> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

/// Owning blocking iterator over a [`Receiver`].
#[derive(Debug)]
pub struct IntoIter<T> {
    rx: Receiver<T>,
}

impl<T: Send> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

impl<T: Send> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter { rx: self }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        // Relaxed: a count; the handle being cloned keeps it above zero.
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.fetch_add(1, Ordering::Relaxed);
        Receiver {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        // AcqRel: the last decrement sees every other sender's prior operations.
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            let woken = {
                let mut s = self.shared.chan.lock();
                Chan::close_locked(&mut s).unwrap_or_default()
            };
            for w in woken {
                w.finish();
            }
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.shared.receivers.fetch_sub(1, Ordering::AcqRel) == 1 {
            let woken = {
                let mut s = self.shared.chan.lock();
                Chan::drop_receivers_locked(&mut s)
            };
            for w in woken {
                w.finish();
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// A send, a receive and a close race: a send succeeds exactly when the receiver gets
    /// its value (capacity 0 or 1 alike: a buffered value is drained before "closed"), and
    /// otherwise both see the close — the sender with its value back. Nobody hangs.
    fn send_recv_close(cap: usize) {
        loom::model(move || {
            let (tx, rx) = chan::<u32>(cap);
            let closer = tx.clone();
            let s = thread::spawn(move || tx.send(1));
            let r = thread::spawn(move || rx.recv());
            closer.close().unwrap();
            match (s.join().unwrap(), r.join().unwrap()) {
                (Ok(()), Ok(1)) | (Err(SendError(1)), Err(RecvError)) => {}
                (s, r) => panic!("send {s:?} with receive {r:?}"),
            }
        });
    }

    #[test]
    fn loom_unbuffered_send_recv_close() {
        send_recv_close(0);
    }

    #[test]
    fn loom_buffered_send_recv_close() {
        send_recv_close(1);
    }

    /// Dropping the only receiver wakes a sender blocked on it, with its value.
    #[test]
    fn loom_receiver_drop_wakes_a_blocked_sender() {
        loom::model(|| {
            let (tx, rx) = chan::<u32>(0);
            let s = thread::spawn(move || tx.send(5));
            drop(rx);
            assert_eq!(s.join().unwrap(), Err(SendError(5)));
        });
    }

    /// Two senders and one receiver on an unbuffered channel: each value is delivered once.
    #[test]
    fn loom_two_senders_one_receiver() {
        loom::model(|| {
            let (tx, rx) = chan::<u32>(0);
            let tx2 = tx.clone();
            let a = thread::spawn(move || tx.send(1));
            let b = thread::spawn(move || tx2.send(2));
            let x = rx.recv().unwrap();
            let y = rx.recv().unwrap();
            a.join().unwrap().unwrap();
            b.join().unwrap().unwrap();
            assert_eq!(x + y, 3);
            assert_eq!(rx.recv(), Err(RecvError));
        });
    }
}
