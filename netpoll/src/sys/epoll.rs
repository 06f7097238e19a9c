//! Linux backend: one epoll instance, edge-triggered registrations and an eventfd for wake-ups.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The token the wake-up eventfd is registered with; descriptor tokens never take it
/// (their high half is a table index, which stays far below `u32::MAX`).
pub(crate) const WAKE_TOKEN: u64 = u64::MAX;

/// Events fetched by one `poll` (the buffer is allocated once and reused every round).
pub(crate) const EVENTS_PER_POLL: usize = 128;

/// One readiness report, decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub(crate) token: u64,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// End-of-file, a hang-up or an error (`EPOLLRDHUP`, `EPOLLHUP`, `EPOLLERR`).
    pub(crate) hangup: bool,
}

/// The buffer the kernel fills in `poll`.
pub(crate) struct Events {
    buf: Vec<libc::epoll_event>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("capacity", &self.buf.capacity())
            .finish()
    }
}

impl Events {
    pub(crate) fn new() -> Self {
        Events {
            buf: Vec::with_capacity(EVENTS_PER_POLL),
        }
    }

    /// The `i`th event of the last poll.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Event {
        let ev = self.buf[i];
        let bits = ev.events;
        // Hang-up and error wake both directions: the read or write that follows reports
        // end-of-file or the socket error.
        let both = bits & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
        Event {
            token: ev.u64,
            readable: both
                || bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) as u32 != 0,
            writable: both || bits & libc::EPOLLOUT as u32 != 0,
            hangup: both || bits & libc::EPOLLRDHUP as u32 != 0,
        }
    }
}

/// An epoll instance plus its wake-up eventfd.
#[derive(Debug)]
pub(crate) struct Backend {
    epfd: OwnedFd,
    wakefd: OwnedFd,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Backend {
    /// Create the epoll instance and the wake-up eventfd (EMFILE and friends are returned).
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with a flag argument; the result is checked.
        let ep = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `ep` is a fresh descriptor that nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(ep) };
        // SAFETY: plain syscall; the result is checked.
        let ev = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `ev` is a fresh descriptor that nothing else owns.
        let wakefd = unsafe { OwnedFd::from_raw_fd(ev) };
        let b = Backend { epfd, wakefd };
        b.ctl(
            libc::EPOLL_CTL_ADD,
            b.wakefd.as_raw_fd(),
            libc::EPOLLIN | libc::EPOLLET,
            WAKE_TOKEN,
        )?;
        Ok(b)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: libc::c_int, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event on our stack for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Register `fd` once, edge-triggered for both directions; events carry `token`.
    /// `Ok(false)`: epoll cannot poll this kind of file (EPERM: a regular file, a directory,
    /// `/dev/null`), which Go treats as always ready; nothing was registered. A second
    /// registration of the same fd fails with EEXIST.
    pub(crate) fn open(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<bool> {
        let bits = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET;
        match self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), bits, token) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deregister `fd` (registered by `open`, and still open: the caller borrows it).
    pub(crate) fn close(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
    }

    /// Wait for events for at most `timeout` (`None`: forever), retrying on EINTR with the
    /// time that is left. Returns the number of events in `events`.
    pub(crate) fn poll(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let start = if timeout.is_some_and(|t| !t.is_zero()) {
            Some(Instant::now())
        } else {
            None
        };
        loop {
            let ms = match (timeout, start) {
                (None, _) => -1,
                (Some(t), None) => {
                    debug_assert!(t.is_zero());
                    0
                }
                (Some(t), Some(s)) => {
                    // Round up so a sub-millisecond wait does not become a busy poll.
                    let left = t.saturating_sub(s.elapsed());
                    let ms = left.as_nanos().div_ceil(1_000_000);
                    ms.min(i32::MAX as u128) as libc::c_int
                }
            };
            events.buf.clear();
            // SAFETY: the buffer has room for `capacity` events and the kernel writes at most
            // that many; `set_len` below covers only the ones it reported.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    events.buf.as_mut_ptr(),
                    events.buf.capacity() as libc::c_int,
                    ms,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(err);
            }
            // SAFETY: the kernel initialised the first `n` entries (n <= capacity).
            unsafe { events.buf.set_len(n as usize) };
            return Ok(n as usize);
        }
    }

    /// Interrupt a blocked (or the next) `poll`.
    pub(crate) fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local.
        let r = unsafe { libc::write(self.wakefd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if r < 0 {
            let err = io::Error::last_os_error();
            // EAGAIN: the counter is saturated, a wake-up is already pending.
            if err.raw_os_error() != Some(libc::EAGAIN) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Consume the wake-up after `poll` reported `WAKE_TOKEN`.
    pub(crate) fn drain_wake(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local; EAGAIN (nothing pending) is fine.
        let _ = unsafe { libc::read(self.wakefd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
    }
}
