//! `NetFd`: a registered, non-blocking socket with Go's read / write / deadline / close.

use crate::netpoller::{NetPoller, current_poller, park};
use gort_netpoll::{Direction, Registration};
use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// "No timeout" in the per-operation timeout words.
const NO_TIMEOUT: u64 = 0;

/// The index of a direction in `NetFd::timeouts`.
#[inline]
fn slot(dir: Direction) -> usize {
    match dir {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

/// Go's `ErrClosed`: an operation on a socket that was closed (here, or by another
/// goroutine while this one was blocked).
pub(crate) fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "use of closed network connection",
    )
}

/// A socket registered with a netpoller. Its I/O parks the calling goroutine (never its M)
/// until the socket is ready, its deadline passes or it is closed.
#[derive(Debug)]
pub(crate) struct NetFd<F: AsFd> {
    poller: Arc<NetPoller>,
    /// Taken only by `Drop`.
    reg: Option<Registration<F>>,
    closed: AtomicBool,
    /// std-style timeouts (nanoseconds, `NO_TIMEOUT` for none): each operation of the
    /// direction sets its deadline to now + the timeout before it starts.
    timeouts: [AtomicU64; 2],
}

impl<F: AsFd> NetFd<F> {
    /// Register `io` (already non-blocking and close-on-exec) with the calling code's poller.
    pub(crate) fn new(io: F) -> io::Result<NetFd<F>> {
        let poller = current_poller();
        let reg = poller.open(io)?;
        Ok(NetFd {
            poller,
            reg: Some(reg),
            closed: AtomicBool::new(false),
            timeouts: [AtomicU64::new(NO_TIMEOUT), AtomicU64::new(NO_TIMEOUT)],
        })
    }

    #[inline]
    fn reg(&self) -> &Registration<F> {
        self.reg
            .as_ref()
            .expect("runtime: NetFd used after its registration was closed")
    }

    /// The socket itself.
    #[inline]
    pub(crate) fn get_ref(&self) -> &F {
        self.reg().get_ref()
    }

    /// Run `op` (a non-blocking syscall on the socket) until it stops saying `WouldBlock`,
    /// parking on readiness in between (Go's `fd.Read` / `fd.Write`).
    #[inline]
    pub(crate) fn io<T>(
        &self,
        dir: Direction,
        mut op: impl FnMut(&F) -> io::Result<T>,
    ) -> io::Result<T> {
        let reg = self.begin(dir)?;
        let r = self.poller.io(reg, dir, park, || op(reg.get_ref()));
        self.map_err(r)
    }

    /// `io` for one read or write of up to `want` bytes on a stream socket: a short transfer
    /// lets the next one wait for readiness before trying (`Poller::io_stream`).
    #[inline]
    pub(crate) fn io_stream(
        &self,
        dir: Direction,
        want: usize,
        mut op: impl FnMut(&F) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let reg = self.begin(dir)?;
        let r = self
            .poller
            .io_stream(reg, dir, park, want, || op(reg.get_ref()));
        self.map_err(r)
    }

    /// `io_stream` for an `op` that returns the bytes moved and whether the kernel said it
    /// drained the direction (`Poller::io_stream_hinted`).
    #[inline]
    pub(crate) fn io_stream_hinted(
        &self,
        dir: Direction,
        mut op: impl FnMut(&F) -> io::Result<(usize, bool)>,
    ) -> io::Result<usize> {
        let reg = self.begin(dir)?;
        let r = self
            .poller
            .io_stream_hinted(reg, dir, park, || op(reg.get_ref()));
        self.map_err(r)
    }

    /// The start of one operation of `dir`: fails after `close`, and starts a std-style
    /// timeout's clock. Returns the registration to run it on.
    #[inline]
    fn begin(&self, dir: Direction) -> io::Result<&Registration<F>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let t = self.timeouts[slot(dir)].load(Ordering::Relaxed);
        if t != NO_TIMEOUT {
            self.poller.set_deadline(
                self.reg(),
                dir,
                Some(Instant::now() + Duration::from_nanos(t)),
            )?;
        }
        Ok(self.reg())
    }

    /// Wait until the socket is ready in `dir` (connect's completion).
    pub(crate) fn wait(&self, dir: Direction) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let r = self.poller.wait(self.reg(), dir, park);
        self.map_err(r)
    }

    /// EBADF from an evicted descriptor is Go's "use of closed network connection".
    fn map_err<T>(&self, r: io::Result<T>) -> io::Result<T> {
        match r {
            Err(e)
                if e.raw_os_error() == Some(libc::EBADF) && self.closed.load(Ordering::Acquire) =>
            {
                Err(closed_error())
            }
            r => r,
        }
    }

    /// Go's `SetReadDeadline` / `SetWriteDeadline`: `None` clears; a time at or before now
    /// fails current and later operations with `TimedOut` at once. Clears a std-style
    /// timeout of the direction.
    pub(crate) fn set_deadline(&self, dir: Direction, when: Option<Instant>) -> io::Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        self.timeouts[slot(dir)].store(NO_TIMEOUT, Ordering::Relaxed);
        let r = self.poller.set_deadline(self.reg(), dir, when);
        self.map_err(r)
    }

    /// std's `set_read_timeout` / `set_write_timeout`: each later operation of the direction
    /// times out after `timeout`. `Some(ZERO)` is refused, as std does.
    pub(crate) fn set_timeout(&self, dir: Direction, timeout: Option<Duration>) -> io::Result<()> {
        if timeout == Some(Duration::ZERO) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout; use None for no timeout",
            ));
        }
        self.set_deadline(dir, None)?;
        let ns = timeout.map_or(NO_TIMEOUT, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        self.timeouts[slot(dir)].store(ns, Ordering::Relaxed);
        Ok(())
    }

    /// The std-style timeout of a direction.
    pub(crate) fn timeout(&self, dir: Direction) -> Option<Duration> {
        match self.timeouts[slot(dir)].load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Go's `Close`: every goroutine blocked on the socket wakes with an error, and every
    /// later operation fails. The fd itself is closed when the last handle is dropped.
    pub(crate) fn close(&self) -> io::Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(closed_error());
        }
        self.poller.evict(self.reg())
    }

    /// Whether `close` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl<F: AsFd> Drop for NetFd<F> {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            // Evict, deregister, then close(2) by dropping the socket.
            drop(self.poller.close(reg));
        }
    }
}
