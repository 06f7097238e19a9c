//! gort-netpoll: Go's netpoller for Rust — epoll / kqueue, poll descriptors, deadlines and
//! wake-ups, with an abstract waiter so goroutines and plain threads can both park on it.
//!
//! # The shape of it
//!
//! A [`Poller`] owns one kernel readiness object (an epoll instance on Linux, a kqueue on
//! macOS and FreeBSD; one file per mechanism under `sys/`, both exporting the same names) and
//! a table of *poll descriptors*. [`Poller::open`] registers an fd exactly once, for both
//! directions, edge-triggered (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`, or `EV_CLEAR`), so
//! the kernel is never asked again while the fd lives: readiness is remembered in the
//! descriptor instead. Each descriptor holds
//!
//! - a read and a write **binary semaphore** (`sema.rs`): one word that is *empty*, *ready*
//!   (the kernel said so and nobody consumed it), *reserved* (a waiter is on its way to park)
//!   or the parked **waiter** itself;
//! - a read and a write **direction lock** (`lock.rs`, Go's `fdMutex`), so that parties using
//!   one direction take turns (see below);
//! - an **info word**: a sequence number (high half) and the *closing*, *read expired*,
//!   *write expired* and *hung up* bits, which waiters read without a lock (the last is set
//!   by an end-of-file or error event and only voids [`Poller::io_stream`]'s drained note).
//!
//! # The registration holds the fd
//!
//! [`Poller::open`] takes the fd itself — an [`OwnedFd`](std::os::fd::OwnedFd) or an owning
//! I/O type (`TcpStream`), or a [`BorrowedFd<'_>`](std::os::fd::BorrowedFd) (`&TcpStream`) —
//! and the [`Registration<F>`] it returns keeps it until [`Poller::close`] hands it back. So a
//! registered fd cannot be closed, and its number cannot be taken by another file, while it
//! is registered; closing runs in one order by construction: evict (wake every waiter with
//! EBADF), deregister from the kernel, release the descriptor, and only then give `F` back to
//! be dropped (`close(2)`) or kept. Deregistration by a number that meanwhile names another
//! file — which removed the new file's registration and left its reader waiting with data
//! there — cannot be written any more (a compile-fail doctest on [`Registration`] pins it).
//! A registration dropped without `close` drops its fd (the kernel forgets a closed file) and
//! leaks its descriptor until the poller is dropped. The standalone [`Source`] does the whole
//! close on drop.
//!
//! # Waiting
//!
//! A waiter ([`Poller::wait`]) first consumes *ready* if it is there: the common case of a
//! busy connection costs one compare-exchange. Otherwise it reserves the semaphore, re-checks
//! the info word, and hands a [`Commit`] to its `park` closure, which publishes a waiter
//! ([`Waiter`]: any word-sized token with `wake`) and blocks. The split between reserve and
//! commit is Go's `pdWait`: a goroutine can only be published once it has switched off its
//! stack, so the facade commits inside its park callback; a thread ([`ThreadWaiter`]) commits
//! and then parks, its parker remembering a wake that comes first.
//!
//! An *unblocker* — the poller on an event, an expired deadline, a close — replaces the
//! waiter by *ready* or *empty* with one read-modify-write and so owns it: it is woken exactly
//! once. If the unblocker runs between reserve and commit, the commit's compare-exchange fails
//! and the waiter does not park. Those two facts are the whole protocol; the loom model in
//! `desc.rs` checks it against ready, close and deadline racing a waiter.
//!
//! Errors are flags set *before* the semaphore is touched: close (and [`Poller::evict`]) sets
//! *closing*, a deadline sets its direction's *expired* bit, each followed by a SeqCst fence
//! and an unblock without readiness. The waiter, symmetrically, reserves, fences and reads the
//! flags. Either the unblocker sees the reservation or the waiter sees the flag (the
//! store-buffer pattern, written with fences because loom models fences but not SeqCst
//! accesses). A woken waiter that finds no readiness re-reads the flags and reports EBADF for
//! a closed descriptor or `io::ErrorKind::TimedOut` for an expired deadline.
//!
//! # Taking turns
//!
//! A semaphore has room for one waiter, and two parties reading one socket is ordinary (two
//! goroutines sharing a `TcpStream`). As in Go, each direction has a lock, and parties queue
//! on it through the same `park` closure and [`Commit`] (a commit on a lock queues the waiter
//! behind the holder; an unlock wakes the first queued party, which tries again; eviction
//! wakes them all to fail). With edge-triggered readiness the lock must cover a whole
//! operation, not just the wait: a reader that consumed the only edge and read part of the
//! data must not leave a second reader parked beside the rest of it. So [`Poller::io`] — Go's
//! `fd.Read` / `fd.Write` — holds the direction from its first attempt to its result, fails
//! first on a closed descriptor or an expired deadline, and waits only on `WouldBlock`;
//! [`Poller::wait`] holds it for one wait. [`Poller::arm`] does not queue: a held direction
//! refuses it with `ErrorKind::ResourceBusy`, and a parked armed waiter holds the direction
//! until its [`Poller::complete`]. The loom model in `lock.rs` checks mutual exclusion and
//! that every queued party is woken.
//!
//! # Files the kernel cannot poll
//!
//! epoll refuses regular files, directories and some devices (`/dev/null`) with EPERM; Go's
//! kqueue port does not even try regular files and directories. Go then runs such a file in
//! blocking mode: its I/O never waits. gort does the same: `open` accepts the file without
//! registering it ([`Registration::is_pollable`] is false), waits return at once (always
//! ready, `arm` gives the waiter straight back), `io` returns the operation's result as is,
//! and deadlines are refused with `ErrorKind::Unsupported` (Go's `ErrNoDeadline`). Eviction
//! and the direction locks work as for any descriptor.
//!
//! # Deadlines
//!
//! Each direction may carry one deadline, kept in an indexed min-heap (`deadline.rs`) keyed by
//! descriptor and direction, so moving a deadline re-sifts one entry. A deadline at or before
//! now expires at once (the setter wakes the waiter itself); a new earliest deadline wakes a
//! poll sleeping past it. `poll(timeout)` shortens its timeout to the earliest deadline and
//! expires what is due after each kernel wait. Times are nanoseconds from the poller's start
//! and saturate at `u64::MAX` ("never"), never wrap: a poll timeout of centuries must still
//! count as later than any deadline set afterwards.
//!
//! # Stale events and recycling
//!
//! Descriptors live in fixed chunks that never move and are recycled through a free list, so a
//! kernel event carries `index << 32 | seq` rather than a pointer. Two things stop a stale
//! event from waking a descriptor's next owner: an event whose sequence number differs from
//! the descriptor's is dropped, and a descriptor closed while a poll round was in flight (the
//! round counter is odd from before the kernel wait until every fetched event is recorded)
//! waits in a reuse-delay list until that round has finished (`table.rs`, whose loom model
//! races a round's event against a close and reopen). That list is
//! ordered by round, so reuse pops its front instead of scanning it, and it stays short: once
//! 64 descriptors wait for the round in flight, `close` wakes the poll (which may be sleeping
//! without a timeout), so closes on an idle poller recycle descriptors instead of piling up.
//!
//! # The scheduler's idle hook
//!
//! [`Poller::poll`]`(timeout)`, [`Poller::wake`] and [`Poller::has_waiters`] have the names and
//! meaning of the scheduler's idle hook: `poll(Some(ZERO))` is the non-blocking check before
//! stealing, `poll(until the next timer)` is the idle M's sleep (shortened to the earliest
//! deadline here), `wake` interrupts it (an eventfd or EVFILT_USER; concurrent wakes collapse
//! into one syscall), and `has_waiters` counts parked waiters (on semaphores and in lock
//! queues) for the deadlock detector. This crate depends on no other gort crate: the facade
//! adapts these inherent methods to the scheduler's trait and uses [`Poller::poll_with`] to
//! queue the goroutines made ready.
//!
//! A round first records every fetched event and expired deadline in its semaphores, taking
//! out the waiters they release, ends the round, and only then hands the waiters to
//! `poll_with`'s callback. If the callback panics, the waiters it has not had yet are woken
//! with [`Waiter::wake`] and the panic goes on: no readiness is lost (with edge-triggered
//! registrations it would not come again) and the round counter is even.
//!
//! Event loops whose waiters are continuations use the non-blocking pair [`Poller::arm`] /
//! [`Poller::complete`] instead of `wait`: the same protocol, split at the park.
//!
//! Standalone, a [`Driver`] runs that loop on a thread of its own and [`Source`] offers
//! blocking-style reads and writes on non-blocking fds.
//!
//! # Costs
//!
//! A poll round allocates nothing: the event buffer and the taken-waiter vector are reused,
//! the heap and table grow only when fds are opened or deadlines set (a lock queue only when
//! parties first contend). A round with no deadline due takes no lock besides the poll lock:
//! the earliest deadline is mirrored in an atomic, handed over to a sleeping poll by a
//! store-fence-load handshake on each side. One thread polls at a time (a non-blocking poll
//! while another is in progress returns at once). A readiness event costs the waiter side a
//! handful of atomic operations and one SeqCst fence, plus one compare-exchange and one
//! read-modify-write for an uncontended direction lock (`bench_netpoll` measures the whole
//! round beside mio).

#![deny(unsafe_op_in_unsafe_fn)]

mod deadline;
mod desc;
mod driver;
mod lock;
mod loom;
mod poller;
mod registration;
mod sema;
mod sys;
mod table;
mod waiter;

pub use desc::Direction;
pub use driver::{Driver, Source};
pub use poller::{Armed, Commit, Poller};
pub use registration::Registration;
pub use waiter::{ThreadWaiter, Waiter};
