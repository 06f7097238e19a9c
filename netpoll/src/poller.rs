//! The poller: kernel backend + descriptor table + deadline heap, and the operations the
//! scheduler's idle hook and the waiters use.

use crate::deadline::DeadlineHeap;
use crate::desc::{CLOSING, Direction, HUNG_UP, PollDesc, WaitError, info_seq};
use crate::lock::{Closed, FdLock};
use crate::loom::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, fence};
use crate::registration::Registration;
use crate::sema::{Reserve, Sema};
use crate::sys::{Backend, EVENTS_PER_POLL, Events, WAKE_TOKEN};
use crate::table::Table;
use crate::waiter::Waiter;
use std::io;
use std::marker::PhantomData;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Hands out poller ids, so a registration from one poller is refused by another.
static NEXT_POLLER_ID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// "No blocking poll in progress" in `Poller::sleep_until`.
const NOT_SLEEPING: u64 = 0;
/// "Blocking poll without timeout" in `Poller::sleep_until`.
const FOREVER: u64 = u64::MAX;

/// A netpoller: register fds, wait for readiness with deadlines, poll and wake.
///
/// `W` is the kind of waiter parked on descriptors ([`crate::ThreadWaiter`] standalone, a
/// goroutine under the facade). Every method takes `&self`; share it with an `Arc`.
pub struct Poller<W: Waiter> {
    id: u32,
    backend: Backend,
    table: Table,
    /// The instant deadline nanoseconds count from.
    base: Instant,
    /// Deadlines of all descriptors, keyed `index * 2 + direction`.
    timers: Mutex<DeadlineHeap>,
    /// The event buffer and scratch space of the one thread polling at a time.
    state: Mutex<PollState>,
    /// Poll rounds: odd while a round is between starting its kernel wait and finishing its
    /// dispatch. Incremented only under `state`'s lock (SeqCst); read by `close` with an RMW
    /// (so a round that starts later is ordered after the deregistration) and by `open`.
    round: AtomicU64,
    /// Waiters committed and not yet taken by an unblocker: incremented by `Commit` before
    /// publishing, decremented by whoever takes the waiter. Relaxed: a count for
    /// `has_waiters`, which is a hint by nature.
    waiters: AtomicUsize,
    /// A wake-up is pending in the kernel object: set by `wake` (a swap, so concurrent wakes
    /// make one syscall), cleared by the poll that consumes it (see `consume_wake`).
    wake_pending: AtomicBool,
    /// When the blocking poll in progress will time out at the latest (nanoseconds from
    /// `base`), or NOT_SLEEPING / FOREVER. Written by the poller, read by `set_deadline`;
    /// with `earliest`, a store-fence-load handshake on each side (see `shorten`).
    sleep_until: AtomicU64,
    /// The earliest deadline in `timers` (nanoseconds from `base`), FOREVER when none.
    /// Written under `timers`' lock after every change (SeqCst); read by polls without the
    /// lock, so a round with nothing due never takes it.
    earliest: AtomicU64,
    _waiter: PhantomData<fn(W) -> W>,
}

/// Scratch space of the polling thread, reused every round (no allocation in steady state).
#[derive(Debug)]
struct PollState {
    events: Events,
    /// Raw waiters taken out of their semaphores this round (by events and expired
    /// deadlines), handed to `ready` once the round has ended.
    taken: Vec<usize>,
}

impl<W: Waiter> std::fmt::Debug for Poller<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("id", &self.id)
            .field("waiters", &self.waiters.load(Ordering::Relaxed))
            .field("round", &self.round.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "i/o deadline exceeded; set a later deadline (or none) before waiting again",
    )
}

fn busy() -> io::Error {
    io::Error::new(
        io::ErrorKind::ResourceBusy,
        "netpoll: another party holds this direction of the descriptor; \
         arm waits on one direction one at a time (or use wait / io, which take turns)",
    )
}

fn no_deadline() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "netpoll: file type does not support deadlines (it cannot be polled and is always \
         ready; see Registration::is_pollable)",
    )
}

fn to_io(e: WaitError) -> io::Error {
    match e {
        WaitError::Closed => ebadf(),
        WaitError::TimedOut => timed_out(),
    }
}

/// What [`Poller::arm`] did with the waiter.
#[derive(Debug)]
pub enum Armed<W> {
    /// Readiness was pending and is now consumed; here is the waiter back, unwoken.
    Ready(W),
    /// The waiter is parked on the descriptor and will be woken exactly once.
    Parked,
}

/// The right to publish one waiter, handed to the `park` closure of [`Poller::wait`] and
/// [`Poller::io`]: on a reserved semaphore (waiting for readiness), or in the queue of a
/// direction lock that another party holds (waiting for its turn). The closure does the same
/// in both cases: commit, and block until woken if the commit succeeded.
#[derive(Debug)]
pub struct Commit<'a, W: Waiter> {
    target: Target<'a>,
    waiters: &'a AtomicUsize,
    _waiter: PhantomData<fn(W) -> W>,
}

#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Sema(&'a Sema),
    Lock(&'a FdLock),
}

impl<W: Waiter> Commit<'_, W> {
    /// Publish `waiter`. `Ok`: it will be woken exactly once, and the caller must now block
    /// until then. `Err` gives the waiter back: an event, a deadline, a close or the lock's
    /// release got there first, so the caller must not block.
    #[inline]
    pub fn commit(&self, waiter: W) -> Result<(), W> {
        let raw = waiter.into_raw();
        assert!(
            raw > crate::sema::RESERVED,
            "runtime: Waiter::into_raw returned a reserved value"
        );
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let published = match self.target {
            Target::Sema(sema) => sema.commit(raw),
            Target::Lock(lock) => lock.enqueue(raw),
        };
        if published {
            Ok(())
        } else {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: `raw` came from `into_raw` just above and was not published (the
            // compare-exchange failed), so this is its one conversion back.
            Err(unsafe { W::from_raw(raw) })
        }
    }
}

impl<W: Waiter> Poller<W> {
    /// Create a poller: the kernel object and its wake-up channel (`init`). Fails with the
    /// kernel's error, e.g. EMFILE when the process is out of descriptors.
    pub fn new() -> io::Result<Self> {
        Ok(Poller {
            id: NEXT_POLLER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            backend: Backend::new()?,
            table: Table::new(),
            base: Instant::now(),
            timers: Mutex::new(DeadlineHeap::default()),
            state: Mutex::new(PollState {
                events: Events::new(),
                // Room for both directions of a full event buffer: no growth in steady state.
                taken: Vec::with_capacity(2 * EVENTS_PER_POLL),
            }),
            round: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            wake_pending: AtomicBool::new(false),
            sleep_until: AtomicU64::new(NOT_SLEEPING),
            earliest: AtomicU64::new(FOREVER),
            _waiter: PhantomData,
        })
    }

    /// Register `io`'s fd (which the caller should have made non-blocking) for both
    /// directions, edge-triggered, once. The registration holds `io` — an owned fd or I/O
    /// object, or a borrowed one — until [`close`](Self::close) gives it back, so the fd stays
    /// open, and its number taken, for as long as it is registered.
    ///
    /// Files that the kernel mechanism cannot poll (epoll's EPERM: regular files, directories,
    /// `/dev/null`; under kqueue, regular files and directories) are accepted as Go accepts
    /// them: not registered and always ready ([`Registration::is_pollable`] is false).
    ///
    /// Errors: the kernel's (EEXIST when the fd is already registered with this poller,
    /// ENOSPC / ENOMEM), or running out of poll descriptors. On error `io` is dropped; pass a
    /// borrowed fd to keep it.
    pub fn open<F: AsFd>(&self, io: F) -> io::Result<Registration<F>> {
        let (index, desc) = self.table.alloc(&self.round)?;
        let old = desc.info();
        let seq = info_seq(old).wrapping_add(1);
        // The descriptor is ours alone: closed, out of limbo, and no handle names it.
        let r = desc.read.reset();
        let w = desc.write.reset();
        assert!(
            r <= crate::sema::READY && w <= crate::sema::READY,
            "runtime: recycled poll descriptor still has a waiter"
        );
        desc.rlock.reset();
        desc.wlock.reset();
        // Release: publishes the reset semaphores and locks with the new sequence number.
        desc.info.store((seq as u64) << 32, Ordering::Release);
        {
            let mut t = self.timers.lock().unwrap_or_else(|e| e.into_inner());
            t.reserve_key(index * 2 + 1);
        }
        let mut reg = Registration {
            poller: self.id,
            index,
            seq,
            pollable: true,
            io,
        };
        match self.backend.open(reg.io.as_fd(), reg.token()) {
            Ok(pollable) => {
                reg.pollable = pollable;
                Ok(reg)
            }
            Err(e) => {
                desc.info.fetch_or(CLOSING, Ordering::SeqCst);
                // Never registered: no event can name it, free it at once.
                self.table.release_unregistered(index);
                Err(e)
            }
        }
    }

    /// The descriptor `reg` names, if `reg` is current.
    #[inline]
    fn desc<F: AsFd>(&self, reg: &Registration<F>) -> io::Result<&PollDesc> {
        if reg.poller != self.id {
            return Err(ebadf());
        }
        let desc = self.table.get(reg.index).ok_or_else(ebadf)?;
        if info_seq(desc.info()) != reg.seq {
            return Err(ebadf());
        }
        Ok(desc)
    }

    /// Take `dir`'s lock of `desc`, queueing through `park` while another party holds it.
    fn acquire<'a>(
        &'a self,
        desc: &'a PollDesc,
        dir: Direction,
        park: &mut impl FnMut(Commit<'_, W>),
    ) -> io::Result<Held<'a, W>> {
        let lock = desc.lock(dir);
        loop {
            match lock.try_lock() {
                Ok(true) => return Ok(Held { poller: self, lock }),
                Ok(false) => park(Commit {
                    target: Target::Lock(lock),
                    waiters: &self.waiters,
                    _waiter: PhantomData,
                }),
                Err(Closed) => return Err(ebadf()),
            }
        }
    }

    /// Release a direction lock and wake the party queued first, if any.
    #[inline]
    fn unlock(&self, lock: &FdLock) {
        if let Some(raw) = lock.unlock() {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: `unlock` popped `raw` out of the lock's queue under its mutex: the
            // one conversion back of a word that `Commit::commit` published.
            unsafe { W::from_raw(raw) }.wake();
        }
    }

    /// Wait for readiness with `dir`'s lock held.
    fn wait_locked(
        &self,
        desc: &PollDesc,
        seq: u32,
        dir: Direction,
        park: &mut impl FnMut(Commit<'_, W>),
    ) -> io::Result<()> {
        let waiters = &self.waiters;
        desc.wait(seq, dir, |sema| {
            park(Commit {
                target: Target::Sema(sema),
                waiters,
                _waiter: PhantomData,
            })
        })
        .map_err(to_io)
    }

    /// Wait until `reg` is ready in `dir`, its deadline passes (`ErrorKind::TimedOut`) or it
    /// is closed or evicted (EBADF).
    ///
    /// Parties waiting in one direction take turns (Go's fdMutex): while another holds the
    /// direction, `park` is called to queue behind it. Pending readiness is then consumed
    /// without parking; otherwise the semaphore is reserved and `park` is called again. Each
    /// time, `park` gets a [`Commit`]: it must publish a waiter with `commit` and, if that
    /// succeeds, block until the waiter is woken (or simply return if the commit fails).
    ///
    /// A wait covers only the wait: to read or write, prefer [`io`](Self::io), which holds
    /// the direction from the first attempt to the result, so a second reader cannot park
    /// while the first leaves data unread. An unpollable file is always ready.
    pub fn wait<F: AsFd>(
        &self,
        reg: &Registration<F>,
        dir: Direction,
        mut park: impl FnMut(Commit<'_, W>),
    ) -> io::Result<()> {
        let desc = self.desc(reg)?;
        let _held = self.acquire(desc, dir, &mut park)?;
        if !reg.pollable {
            return desc.check(reg.seq, dir).map_err(to_io);
        }
        self.wait_locked(desc, reg.seq, dir, &mut park)?;
        // The readiness this wait consumed is the caller's: a drained note left by a short
        // transfer would make the next `io_stream` wait for another edge, perhaps forever.
        desc.lock(dir).set_drained(false);
        Ok(())
    }

    /// Run `op`, a non-blocking read (`Direction::Read`) or write, until it stops returning
    /// `WouldBlock`, waiting for readiness in between: Go's `fd.Read` / `fd.Write`.
    ///
    /// The direction is held for the whole operation, so parties doing I/O in one direction
    /// take turns, queued through `park` (see [`wait`](Self::wait) for its contract). As in
    /// Go, a closed descriptor (EBADF) or an expired deadline (`TimedOut`) fails before the
    /// first attempt; `Interrupted` is retried; on an unpollable file `op`'s `WouldBlock` is
    /// returned as is (Go's blocking-mode files never wait).
    pub fn io<F: AsFd, T>(
        &self,
        reg: &Registration<F>,
        dir: Direction,
        park: impl FnMut(Commit<'_, W>),
        op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        self.io_noting(reg, dir, park, op, |_| false)
    }

    /// [`io`](Self::io) for a stream socket (TCP, Unix stream), whose `op` moves up to `want`
    /// bytes and returns how many it moved.
    ///
    /// A transfer of fewer bytes than asked for (but not none) shows the socket drained — a
    /// short read emptied the receive queue, a short write filled the send buffer — so the
    /// next `io_stream` in that direction waits for readiness *before* its first attempt,
    /// saving the attempt that would fail with `WouldBlock` (tokio does the same on epoll
    /// and kqueue). That is sound with edge-triggered readiness: bytes that arrive (or room
    /// that frees up) after the short transfer raise a new edge, so the wait cannot miss
    /// them; readiness left over from before it only costs one attempt that finds nothing.
    /// Except end-of-file and errors: reported once, perhaps by an edge consumed before the
    /// short transfer, they void the note for good (the descriptor's hung-up flag), so a
    /// read after the peer closed returns end-of-file instead of waiting for an edge that
    /// will not come.
    /// Only for TCP, or byte streams as plain: not for datagram sockets (a short datagram
    /// says nothing about the queue), not for a peek (it drains nothing), and not for Unix
    /// stream sockets that may carry ancillary data (a read stops short at a message with
    /// descriptors, or at a change of sender under `SO_PASSCRED`, with more queued).
    pub fn io_stream<F: AsFd>(
        &self,
        reg: &Registration<F>,
        dir: Direction,
        park: impl FnMut(Commit<'_, W>),
        want: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.io_noting(reg, dir, park, op, |&n| 0 < n && n < want)
    }

    /// [`io_stream`](Self::io_stream) for an `op` that knows better than "fewer bytes than
    /// asked for": it returns the bytes moved and whether the kernel said the transfer left
    /// the direction drained (a TCP read's `TCP_INQ` hint of 0 bytes left queued), which a
    /// read of exactly the size asked for cannot show. The same soundness argument holds:
    /// data that arrives after the kernel measured the queue raises a new edge.
    pub fn io_stream_hinted<F: AsFd>(
        &self,
        reg: &Registration<F>,
        dir: Direction,
        park: impl FnMut(Commit<'_, W>),
        op: impl FnMut() -> io::Result<(usize, bool)>,
    ) -> io::Result<usize> {
        self.io_noting(reg, dir, park, op, |&(n, drained)| 0 < n && drained)
            .map(|(n, _)| n)
    }

    /// `io`, noting after a successful `op` whether `drained` says it left the direction
    /// drained, and waiting for readiness first when the last holder's did.
    #[inline]
    fn io_noting<F: AsFd, T>(
        &self,
        reg: &Registration<F>,
        dir: Direction,
        mut park: impl FnMut(Commit<'_, W>),
        mut op: impl FnMut() -> io::Result<T>,
        drained: impl Fn(&T) -> bool,
    ) -> io::Result<T> {
        let desc = self.desc(reg)?;
        let _held = self.acquire(desc, dir, &mut park)?;
        desc.check(reg.seq, dir).map_err(to_io)?;
        let lock = desc.lock(dir);
        if reg.pollable && lock.drained() && desc.info() & HUNG_UP == 0 {
            // An error leaves the note: the direction is still drained.
            self.wait_locked(desc, reg.seq, dir, &mut park)?;
        }
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && reg.pollable => {
                    self.wait_locked(desc, reg.seq, dir, &mut park)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(v) => {
                    lock.set_drained(reg.pollable && drained(&v));
                    return Ok(v);
                }
                r => return r,
            }
        }
    }

    /// The non-blocking form of [`wait`](Self::wait), for event loops whose waiters are
    /// continuations rather than blocked threads.
    ///
    /// `Ok(Armed::Ready(waiter))`: readiness was pending and is now consumed (or the file is
    /// unpollable, hence always ready); the waiter comes back unwoken. `Ok(Armed::Parked)`:
    /// the waiter is published and will be woken exactly once (by readiness, a deadline or a
    /// close), and the direction stays held until it runs and calls
    /// [`complete`](Self::complete), which it must do (once) before arming the direction
    /// again. `Err`: EBADF or `TimedOut`, as for `wait`, or `ErrorKind::ResourceBusy` when
    /// another party holds the direction (an armed waiter, or a thread in `wait` / `io`).
    pub fn arm<F: AsFd>(
        &self,
        reg: &Registration<F>,
        dir: Direction,
        waiter: W,
    ) -> io::Result<Armed<W>> {
        let desc = self.desc(reg)?;
        let lock = desc.lock(dir);
        let held = match lock.try_lock() {
            Ok(true) => Held { poller: self, lock },
            Ok(false) => return Err(busy()),
            Err(Closed) => return Err(ebadf()),
        };
        // The readiness the waiter takes (now or when woken) is its own: see `wait`.
        lock.set_drained(false);
        let sema = desc.sema(dir);
        let mut waiter = waiter;
        loop {
            desc.check(reg.seq, dir).map_err(to_io)?;
            if !reg.pollable || sema.reserve() == Reserve::Ready {
                return Ok(Armed::Ready(waiter));
            }
            // Pairs with the fence in `PollDesc::flag_and_release`, as in `PollDesc::wait`.
            fence(Ordering::SeqCst);
            if desc.check(reg.seq, dir).is_ok() {
                match (Commit {
                    target: Target::Sema(sema),
                    waiters: &self.waiters,
                    _waiter: PhantomData,
                })
                .commit(waiter)
                {
                    Ok(()) => {
                        // The direction stays held until `complete`.
                        std::mem::forget(held);
                        return Ok(Armed::Parked);
                    }
                    Err(w) => waiter = w,
                }
            }
            if sema.finish() {
                return Ok(Armed::Ready(waiter));
            }
        }
    }

    /// Finish a wait begun by [`arm`](Self::arm) that returned `Armed::Parked`, once its
    /// waiter has been woken, and release the direction: `Ok` if readiness was delivered (or
    /// the wake-up was spurious: retry the I/O, and arm again on `WouldBlock`), the error
    /// otherwise.
    #[inline]
    pub fn complete<F: AsFd>(&self, reg: &Registration<F>, dir: Direction) -> io::Result<()> {
        let desc = self.desc(reg)?;
        let _held = Held {
            poller: self,
            lock: desc.lock(dir),
        };
        if desc.sema(dir).finish() {
            return Ok(());
        }
        desc.check(reg.seq, dir).map_err(to_io)
    }

    /// Set (`Some`) or clear (`None`) the deadline of one direction. A deadline at or before
    /// now fails the current and future waits at once with `TimedOut`; a later one
    /// reschedules; clearing lets waits proceed again.
    ///
    /// An unpollable file ([`Registration::is_pollable`]) refuses deadlines with
    /// `ErrorKind::Unsupported`, as Go's `ErrNoDeadline`.
    pub fn set_deadline<F: AsFd>(
        &self,
        reg: &Registration<F>,
        dir: Direction,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let desc = self.desc(reg)?;
        if desc.info() & CLOSING != 0 {
            return Err(ebadf());
        }
        if !reg.pollable {
            return Err(no_deadline());
        }
        let key = reg.index * 2 + dir.index();
        let bit = dir.expired_bit();
        let mut woken = None;
        let mut must_wake_poller = false;
        {
            let mut t = self.timers.lock().unwrap_or_else(|e| e.into_inner());
            match deadline {
                None => {
                    t.remove(key);
                    desc.clear_flag(bit);
                }
                Some(when) => {
                    let ns = self.nanos(when);
                    if when <= Instant::now() {
                        t.remove(key);
                        woken = desc.flag_and_release(bit, &[dir])[dir.index() as usize];
                    } else {
                        desc.clear_flag(bit);
                        if t.set(key, ns) {
                            self.publish_earliest(&t);
                            // Pairs with the fence in `shorten`.
                            fence(Ordering::SeqCst);
                            let until = self.sleep_until.load(Ordering::SeqCst);
                            must_wake_poller = until != NOT_SLEEPING && ns < until;
                        }
                    }
                }
            }
            self.publish_earliest(&t);
        }
        if let Some(raw) = woken {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: `unblock` took `raw` out of the semaphore with one RMW, so this is the
            // one conversion back of a word that `Commit::commit` published.
            unsafe { W::from_raw(raw) }.wake();
        }
        if must_wake_poller {
            self.wake();
        }
        Ok(())
    }

    /// Nanoseconds from `base` to `when`, at least 1 (0 means "not sleeping").
    #[inline]
    fn nanos(&self, when: Instant) -> u64 {
        let d = when.saturating_duration_since(self.base);
        (d.as_nanos().min(FOREVER as u128 - 1) as u64).max(1)
    }

    /// Wake every waiter of `reg` with EBADF and fail all later waits, without deregistering
    /// (Go's evict: used when one thread closes a connection another is blocked on). Parties
    /// queued for their turn in a direction are woken too, and fail.
    pub fn evict<F: AsFd>(&self, reg: &Registration<F>) -> io::Result<()> {
        let desc = self.desc(reg)?;
        self.unblock_all(desc);
        Ok(())
    }

    fn unblock_all(&self, desc: &PollDesc) {
        let taken = desc.flag_and_release(CLOSING, &[Direction::Read, Direction::Write]);
        for raw in taken.into_iter().flatten() {
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: taken out of the semaphore by one RMW: the one conversion back.
            unsafe { W::from_raw(raw) }.wake();
        }
        for lock in [&desc.rlock, &desc.wlock] {
            lock.close(|raw| {
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: `close` drained `raw` from the lock's queue under its mutex: the
                // one conversion back of a word that `Commit::commit` published.
                unsafe { W::from_raw(raw) }.wake();
            });
        }
    }

    /// Close a registration: wake its waiters with EBADF (evict), deregister the fd, release
    /// the descriptor, and give the I/O object back — to drop, which closes an owned fd
    /// (`close(2)`) only now that nothing can reach it, or to keep.
    ///
    /// Panics if `reg` came from another poller.
    pub fn close<F: AsFd>(&self, reg: Registration<F>) -> F {
        assert!(
            reg.poller == self.id,
            "runtime: netpoll: a registration was closed on a poller that did not open it"
        );
        let desc = self
            .table
            .get(reg.index)
            .expect("runtime: registration names no poll descriptor");
        debug_assert_eq!(info_seq(desc.info()), reg.seq);
        // Owning `reg`, we are the only party that can name the descriptor: nobody is in
        // `wait` or `io` on it; only waiters published by `arm` may be parked.
        self.unblock_all(desc);
        {
            let mut t = self.timers.lock().unwrap_or_else(|e| e.into_inner());
            t.remove(reg.index * 2);
            t.remove(reg.index * 2 + 1);
            self.publish_earliest(&t);
        }
        if reg.pollable {
            // `reg` has kept the fd open since `open`, so its number still names the file we
            // registered and the kernel knows it: this cannot fail, and cannot reach a file
            // that took over the number (there is none). Nothing to report if it did.
            let _ = self.backend.close(reg.io.as_fd());
            if self.table.release(reg.index, &self.round) {
                // Many descriptors wait for the round in flight: end it (its poll may sleep
                // without a timeout) so they can be reused.
                self.wake();
            }
        } else {
            self.table.release_unregistered(reg.index);
        }
        reg.io
    }

    /// Interrupt a blocked `poll` (or make the next one return at once).
    pub fn wake(&self) {
        // SeqCst: one syscall per burst of wakes; pairs with `consume_wake`.
        if !self.wake_pending.swap(true, Ordering::SeqCst)
            && let Err(e) = self.backend.wake()
        {
            panic!("runtime: netpoll wake-up failed: {e}");
        }
    }

    /// Consume a wake-up reported by the kernel. The flag is cleared before the kernel
    /// object is drained, so a `wake` racing with us either finds the flag clear and makes
    /// its own syscall, or set again by another racer; if our drain may have swallowed such
    /// a racer's syscall (the flag is set again afterwards), re-arm the kernel object so the
    /// next poll returns at once. At worst one spurious return, never a lost wake-up.
    #[cold]
    fn consume_wake(&self) {
        // SeqCst with the swap in `wake`: the store precedes the drain, the load follows it.
        self.wake_pending.store(false, Ordering::SeqCst);
        self.backend.drain_wake();
        if self.wake_pending.load(Ordering::SeqCst)
            && let Err(e) = self.backend.wake()
        {
            panic!("runtime: netpoll wake-up failed: {e}");
        }
    }

    /// A wake-up seen by a non-blocking poll is meant for a blocking one: a thread about to
    /// sleep here (waiting for this poll's turn) with a timeout computed before the wake —
    /// a scheduler's timer armed meanwhile — would otherwise sleep past it, the wake-up
    /// swallowed. Leave it pending (`wake_pending` stays set) and re-arm the kernel object,
    /// so the next blocking poll returns at once and consumes it.
    #[cold]
    fn pass_wake_on(&self) {
        if let Err(e) = self.backend.wake() {
            panic!("runtime: netpoll wake-up failed: {e}");
        }
    }

    /// Whether any waiter is parked (for the deadlock detector).
    pub fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }

    /// Wait for events for at most `timeout` (`None`: until an event or `wake`), shortened
    /// to the earliest deadline, and wake the waiters made ready (through [`Waiter::wake`]).
    /// Returns how many were woken.
    pub fn poll(&self, timeout: Option<Duration>) -> io::Result<usize> {
        self.poll_with(timeout, W::wake)
    }

    /// As [`poll`](Self::poll), but hands each waiter made ready to `ready` instead of waking
    /// it (the facade queues goroutines this way). `ready` must not call back into `poll`.
    ///
    /// One thread polls at a time: a non-blocking poll (`Some(ZERO)`) returns 0 when another
    /// poll is in progress; a blocking one waits its turn.
    ///
    /// `ready` runs after the round's events are all recorded and the round has ended. If it
    /// panics, the waiters of this round it has not been handed yet are woken with
    /// [`Waiter::wake`] (none is lost), and the panic propagates.
    pub fn poll_with(
        &self,
        timeout: Option<Duration>,
        mut ready: impl FnMut(W),
    ) -> io::Result<usize> {
        let mut guard = if timeout == Some(Duration::ZERO) {
            match self.state.try_lock() {
                Ok(g) => g,
                Err(std::sync::TryLockError::WouldBlock) => return Ok(0),
                Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            }
        } else {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        };
        let st = &mut *guard;
        debug_assert!(st.taken.is_empty());
        // The waiters this round takes out of their semaphores. If anything below panics
        // (`ready`, or a failed wake-up syscall), `Rest` wakes those not yet handed on.
        let mut rest = Rest::<W> {
            taken: &mut st.taken,
            next: 0,
            _waiter: PhantomData,
        };
        {
            // Odd: a round is in flight (see `close` and `Table::release`) until this guard
            // drops, however the block is left.
            let _round = Round::start(&self.round);
            let blocking = timeout != Some(Duration::ZERO);
            let timeout = self.shorten(timeout);
            let res = self.backend.poll(&mut st.events, timeout);
            self.sleep_until.store(NOT_SLEEPING, Ordering::Relaxed);
            let n = res?;
            for i in 0..n {
                let ev = st.events.get(i);
                if ev.token == WAKE_TOKEN {
                    if blocking {
                        self.consume_wake();
                    } else {
                        self.pass_wake_on();
                    }
                    continue;
                }
                let Some(desc) = self.table.get((ev.token >> 32) as u32) else {
                    continue;
                };
                let info = desc.info();
                if info_seq(info) != ev.token as u32 || info & CLOSING != 0 {
                    continue; // stale: the descriptor was closed (and maybe reused) since
                }
                if ev.hangup && info & HUNG_UP == 0 {
                    // Before the readiness below: whoever consumes it sees the flag.
                    desc.info.fetch_or(HUNG_UP, Ordering::SeqCst);
                }
                for (hit, dir) in [
                    (ev.readable, Direction::Read),
                    (ev.writable, Direction::Write),
                ] {
                    if hit && let Some(raw) = desc.ready(dir) {
                        self.waiters.fetch_sub(1, Ordering::Relaxed);
                        rest.taken.push(raw);
                    }
                }
            }
            self.expire(rest.taken);
        }
        // The round has ended with every event recorded in its semaphore: only now does user
        // code run.
        let woken = rest.taken.len();
        while let Some(&raw) = rest.taken.get(rest.next) {
            rest.next += 1;
            // SAFETY: taken out of its semaphore by one RMW this round, and handed on once
            // (`rest.next` moved past it first, so `Rest` will not wake it as well).
            ready(unsafe { W::from_raw(raw) });
        }
        Ok(woken)
    }

    /// Clamp `timeout` to the earliest deadline and record when this poll will end.
    fn shorten(&self, timeout: Option<Duration>) -> Option<Duration> {
        let mut timeout = timeout;
        if timeout != Some(Duration::ZERO) {
            let end = match timeout {
                None => FOREVER,
                // Saturate: a timeout beyond u64::MAX ns must not wrap to a short one, or a
                // later deadline would think this poll wakes before it and not wake it.
                Some(d) => self
                    .nanos(Instant::now())
                    .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            };
            // Publish how long we mean to sleep, then read the earliest deadline; pairs with
            // `set_deadline`, which publishes a new earliest deadline, fences, then reads
            // `sleep_until`: either we see its deadline or it sees us asleep and wakes us.
            self.sleep_until
                .store(end.clamp(1, FOREVER), Ordering::SeqCst);
            fence(Ordering::SeqCst);
        }
        let next = self.earliest.load(Ordering::SeqCst);
        if next != FOREVER {
            let now = self.nanos(Instant::now());
            let until = Duration::from_nanos(next.saturating_sub(now));
            timeout = Some(timeout.map_or(until, |d| d.min(until)));
        }
        timeout
    }

    /// Republish the earliest deadline after changing the heap (under `timers`' lock).
    #[inline]
    fn publish_earliest(&self, t: &DeadlineHeap) {
        self.earliest
            .store(t.peek().unwrap_or(FOREVER), Ordering::SeqCst);
    }

    /// Time out the waiters whose deadline has passed, pushing them on `taken`.
    #[inline]
    fn expire(&self, taken: &mut Vec<usize>) {
        // No lock unless something is due (Acquire: pairs with `publish_earliest`).
        let next = self.earliest.load(Ordering::Acquire);
        if next == FOREVER || next > self.nanos(Instant::now()) {
            return;
        }
        let mut t = self.timers.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.nanos(Instant::now());
        while let Some(key) = t.pop_expired(now) {
            let Some(desc) = self.table.get(key / 2) else {
                continue;
            };
            let dir = if key % 2 == 0 {
                Direction::Read
            } else {
                Direction::Write
            };
            if let Some(raw) =
                desc.flag_and_release(dir.expired_bit(), &[dir])[dir.index() as usize]
            {
                self.waiters.fetch_sub(1, Ordering::Relaxed);
                taken.push(raw);
            }
        }
        self.publish_earliest(&t);
        // The waiters are handed on after the timer lock is released, so `ready` may set
        // deadlines.
    }

    /// Descriptors handed out (or waiting in the reuse delay for a poll round to end).
    ///
    /// (Drop note: `wait` and `io` borrow the poller, so no thread can be blocked in them
    /// when the poller is dropped; waiters published with `arm` and never woken are dropped
    /// unwoken.)
    pub fn descriptors_in_use(&self) -> usize {
        self.table.in_use()
    }
}

impl<W: Waiter> Drop for Poller<W> {
    fn drop(&mut self) {
        // Give back waiters that `arm` published and nobody woke, so they are not leaked.
        for index in 0..self.table.created() {
            let Some(desc) = self.table.get(index) else {
                continue;
            };
            for dir in [Direction::Read, Direction::Write] {
                if let Some(raw) = desc.sema(dir).unblock(false) {
                    // SAFETY: taken out of the semaphore by one RMW: the one conversion back.
                    drop(unsafe { W::from_raw(raw) });
                }
            }
        }
    }
}

/// A held direction lock; dropping it releases the lock and wakes the next party.
struct Held<'a, W: Waiter> {
    poller: &'a Poller<W>,
    lock: &'a FdLock,
}

impl<W: Waiter> Drop for Held<'_, W> {
    fn drop(&mut self) {
        self.poller.unlock(self.lock);
    }
}

/// A poll round in flight: the counter is odd from `start` until the guard drops (also when
/// the round is left by an error or a panic), then even again.
struct Round<'a>(&'a AtomicU64);

impl<'a> Round<'a> {
    fn start(round: &'a AtomicU64) -> Self {
        // SeqCst: ordered with `Table::release`'s RMW (see `close`).
        round.fetch_add(1, Ordering::SeqCst);
        Round(round)
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        // Even: this round's events are all recorded. Pairs with the Acquire load in
        // `Table::alloc`.
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The waiters a poll round took out of their semaphores, from `next` on not yet handed to
/// `ready`. Dropped after a normal end (nothing left) or while `ready` unwinds: the rest are
/// woken with [`Waiter::wake`], so no waiter is lost with the panic.
struct Rest<'a, W: Waiter> {
    taken: &'a mut Vec<usize>,
    next: usize,
    _waiter: PhantomData<fn(W) -> W>,
}

impl<W: Waiter> Drop for Rest<'_, W> {
    fn drop(&mut self) {
        for &raw in &self.taken[self.next..] {
            // SAFETY: taken out of its semaphore by one RMW and not handed to `ready`: the
            // one conversion back.
            unsafe { W::from_raw(raw) }.wake();
        }
        self.taken.clear();
    }
}
