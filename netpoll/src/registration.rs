//! The owner's handle to an open poll descriptor, which owns or borrows the fd it names.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// The handle [`Poller::open`](crate::Poller::open) returns for a registered fd.
///
/// It names one descriptor of one poller for one owner, and it holds the fd itself: `F` is
/// an [`OwnedFd`](std::os::fd::OwnedFd) (or any owning I/O type, such as a `TcpStream`), or a
/// [`BorrowedFd<'_>`](BorrowedFd) (or `&TcpStream`). So the fd cannot be closed while it is
/// registered, and its number cannot be reused by another file the poller might register:
/// [`Poller::close`](crate::Poller::close) evicts the waiters, deregisters the fd and only
/// then gives `F` back, to be dropped (`close(2)`) or kept. Deregistration can therefore
/// never reach another file that took over the number.
///
/// The borrow checker enforces that order; it is a compile error to close the fd first:
///
/// ```compile_fail,E0505
/// use gort_netpoll::{Poller, ThreadWaiter};
/// use std::os::fd::AsFd;
/// let p: Poller<ThreadWaiter> = Poller::new().unwrap();
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let reg = p.open(a.as_fd()).unwrap();
/// drop(a); // error[E0505]: cannot move out of `a` because it is borrowed
/// p.close(reg);
/// ```
///
/// and an owned registration hands the fd back only when it is deregistered:
///
/// ```
/// use gort_netpoll::{Poller, ThreadWaiter};
/// use std::os::fd::OwnedFd;
/// let p: Poller<ThreadWaiter> = Poller::new().unwrap();
/// let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
/// let reg = p.open(OwnedFd::from(a)).unwrap();
/// let fd: OwnedFd = p.close(reg); // deregistered; dropping `fd` closes it
/// # drop(fd);
/// ```
///
/// A sequence number stops matching once the descriptor is closed, so a handle from another
/// poller is refused with EBADF instead of reaching a descriptor it does not own.
///
/// Dropping a registration without closing it drops `F` (an owned fd is closed, which also
/// removes it from the kernel's interest list unless it was duplicated) and leaks its poll
/// descriptor until the poller is dropped: harmless, but close it.
#[derive(Debug)]
#[must_use = "a registration must be closed with Poller::close"]
pub struct Registration<F: AsFd> {
    pub(crate) poller: u32,
    pub(crate) index: u32,
    pub(crate) seq: u32,
    /// False for files the kernel mechanism cannot poll (regular files, `/dev/null` under
    /// epoll): never registered, always ready.
    pub(crate) pollable: bool,
    pub(crate) io: F,
}

impl<F: AsFd> Registration<F> {
    /// The registered I/O object.
    pub fn get_ref(&self) -> &F {
        &self.io
    }

    /// Whether the fd is registered with the kernel mechanism. `false` for files that epoll
    /// (or kqueue) cannot poll, such as regular files and, under epoll, `/dev/null`: as in Go,
    /// they count as always ready (waits return at once, I/O goes straight to the syscall,
    /// deadlines are refused with `ErrorKind::Unsupported`).
    pub fn is_pollable(&self) -> bool {
        self.pollable
    }

    /// The token that the kernel reports with this descriptor's events:
    /// table index in the high half, sequence number in the low half.
    #[inline]
    pub(crate) fn token(&self) -> u64 {
        (self.index as u64) << 32 | self.seq as u64
    }
}

impl<F: AsFd> AsFd for Registration<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.as_fd()
    }
}

impl<F: AsFd> AsRawFd for Registration<F> {
    fn as_raw_fd(&self) -> RawFd {
        self.io.as_fd().as_raw_fd()
    }
}
