//! The owner's handle to an open poll descriptor.

use std::os::fd::RawFd;

/// The handle [`Poller::open`](crate::Poller::open) returns for a registered fd.
///
/// It names one descriptor of one poller for one owner: the sequence number it carries stops
/// matching once the descriptor is closed, so a stale handle (or one from another poller) is
/// refused with EBADF instead of reaching the descriptor's next owner. Closing consumes it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a registration must be closed with Poller::close"]
pub struct Registration {
    pub(crate) poller: u32,
    pub(crate) index: u32,
    pub(crate) seq: u32,
    pub(crate) fd: RawFd,
}

impl Registration {
    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// The token that the kernel reports with this descriptor's events:
    /// table index in the high half, sequence number in the low half.
    #[inline]
    pub(crate) fn token(&self) -> u64 {
        (self.index as u64) << 32 | self.seq as u64
    }
}
