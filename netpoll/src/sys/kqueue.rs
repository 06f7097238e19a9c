//! macOS / FreeBSD backend: one kqueue, EV_CLEAR (edge-triggered) read and write filters per
//! fd and an EVFILT_USER event for wake-ups.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The token the wake-up user event carries; descriptor tokens never take it.
pub(crate) const WAKE_TOKEN: u64 = u64::MAX;

/// Events fetched by one `poll` (the buffer is allocated once and reused every round).
pub(crate) const EVENTS_PER_POLL: usize = 128;

/// The ident of the EVFILT_USER wake-up event.
const WAKE_IDENT: libc::uintptr_t = 0;

/// One readiness report, decoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event {
    pub(crate) token: u64,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// End-of-file or an error (`EV_EOF`, `EV_ERROR`).
    pub(crate) hangup: bool,
}

/// The buffer the kernel fills in `poll`.
pub(crate) struct Events {
    buf: Vec<libc::kevent>,
}

// SAFETY: a kevent's `udata` pointer is only ever a token number that we stored ourselves;
// it is never dereferenced, so moving the buffer between threads shares no memory.
unsafe impl Send for Events {}

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
        let ev = &self.buf[i];
        let token = ev.udata as usize as u64;
        if ev.filter == libc::EVFILT_USER {
            return Event {
                token: WAKE_TOKEN,
                readable: false,
                writable: false,
                hangup: false,
            };
        }
        // End-of-file or an error wakes both directions: the next read or write reports it.
        let both = ev.flags & (libc::EV_EOF | libc::EV_ERROR) != 0;
        Event {
            token,
            readable: both || ev.filter == libc::EVFILT_READ,
            writable: both || ev.filter == libc::EVFILT_WRITE,
            hangup: both,
        }
    }
}

/// A kqueue plus the set of registered fds (kqueue would silently accept a second EV_ADD).
#[derive(Debug)]
pub(crate) struct Backend {
    kq: OwnedFd,
    /// Written by `open` / `close` under the lock; read by nobody else.
    registered: Mutex<HashSet<RawFd>>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn kevent(
    ident: libc::uintptr_t,
    filter: i16,
    flags: u16,
    fflags: u32,
    token: u64,
) -> libc::kevent {
    // SAFETY: kevent is a plain C struct for which all-zero bytes are a valid value.
    let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
    ev.ident = ident;
    ev.filter = filter;
    ev.flags = flags;
    ev.fflags = fflags;
    ev.udata = token as usize as *mut libc::c_void;
    ev
}

impl Backend {
    /// Create the kqueue and its EVFILT_USER wake-up event (EMFILE and friends are returned).
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked.
        let kq = cvt(unsafe { libc::kqueue() })?;
        // SAFETY: `kq` is a fresh descriptor that nothing else owns.
        let kq = unsafe { OwnedFd::from_raw_fd(kq) };
        // SAFETY: plain fcntl on our own descriptor.
        cvt(unsafe { libc::fcntl(kq.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
        let b = Backend {
            kq,
            registered: Mutex::new(HashSet::new()),
        };
        let ev = kevent(
            WAKE_IDENT,
            libc::EVFILT_USER,
            libc::EV_ADD | libc::EV_CLEAR,
            0,
            WAKE_TOKEN,
        );
        b.change(&[ev])?;
        Ok(b)
    }

    fn change(&self, changes: &[libc::kevent]) -> io::Result<()> {
        // SAFETY: `changes` is a live slice of initialised kevents; no event list is passed.
        cvt(unsafe {
            libc::kevent(
                self.kq.as_raw_fd(),
                changes.as_ptr(),
                changes.len() as _,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            )
        })?;
        Ok(())
    }

    /// Register `fd` once, edge-triggered (EV_CLEAR) for both directions; events carry
    /// `token`. `Ok(false)`: a regular file or a directory, which Go does not give to kqueue
    /// (a regular file is always reported writable on FreeBSD and signalled only once
    /// elsewhere) and treats as always ready; nothing was registered. A second registration
    /// fails with EEXIST.
    pub(crate) fn open(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<bool> {
        let fd = fd.as_raw_fd();
        // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is open (borrowed by the caller) and `st` is a live, writable stat.
        cvt(unsafe { libc::fstat(fd, &mut st) })?;
        let typ = st.st_mode & libc::S_IFMT;
        if typ == libc::S_IFREG || typ == libc::S_IFDIR {
            return Ok(false);
        }
        let mut reg = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if reg.contains(&fd) {
            // Either registered (EEXIST), or the number of a registration dropped without
            // `close`, whose fd was closed: the kernel forgot its filters with it, which this
            // otherwise harmless EV_ENABLE (no EV_ADD: the knote and its token are unchanged)
            // tells apart with ENOENT. Then the number is free again.
            let probe = kevent(
                fd as libc::uintptr_t,
                libc::EVFILT_READ,
                libc::EV_ENABLE,
                0,
                0,
            );
            match self.change(&[probe]) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    reg.remove(&fd);
                }
                _ => return Err(io::Error::from_raw_os_error(libc::EEXIST)),
            }
        }
        let flags = libc::EV_ADD | libc::EV_CLEAR;
        let evs = [
            kevent(fd as libc::uintptr_t, libc::EVFILT_READ, flags, 0, token),
            kevent(fd as libc::uintptr_t, libc::EVFILT_WRITE, flags, 0, token),
        ];
        self.change(&evs)?;
        reg.insert(fd);
        Ok(true)
    }

    /// Deregister `fd` (registered by `open`, and still open: the caller borrows it).
    pub(crate) fn close(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let fd = fd.as_raw_fd();
        let mut reg = self.registered.lock().unwrap_or_else(|e| e.into_inner());
        if !reg.remove(&fd) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let evs = [
            kevent(
                fd as libc::uintptr_t,
                libc::EVFILT_READ,
                libc::EV_DELETE,
                0,
                0,
            ),
            kevent(
                fd as libc::uintptr_t,
                libc::EVFILT_WRITE,
                libc::EV_DELETE,
                0,
                0,
            ),
        ];
        self.change(&evs)
    }

    /// Wait for events for at most `timeout` (`None`: forever), retrying on EINTR with the
    /// time that is left. Returns the number of events in `events`.
    pub(crate) fn poll(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        let start = Instant::now();
        loop {
            let ts;
            let tsp = match timeout {
                None => std::ptr::null(),
                Some(t) => {
                    let left = t.saturating_sub(start.elapsed());
                    ts = libc::timespec {
                        tv_sec: left.as_secs().min(i32::MAX as u64) as libc::time_t,
                        tv_nsec: left.subsec_nanos() as libc::c_long,
                    };
                    &ts as *const libc::timespec
                }
            };
            events.buf.clear();
            // SAFETY: the buffer has room for `capacity` events and the kernel writes at most
            // that many; `tsp` is null or points to a live timespec.
            let n = unsafe {
                libc::kevent(
                    self.kq.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    events.buf.as_mut_ptr(),
                    events.buf.capacity() as _,
                    tsp,
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
        let ev = kevent(
            WAKE_IDENT,
            libc::EVFILT_USER,
            0,
            libc::NOTE_TRIGGER,
            WAKE_TOKEN,
        );
        self.change(&[ev])
    }

    /// Consume the wake-up after `poll` reported `WAKE_TOKEN` (EV_CLEAR already reset it).
    pub(crate) fn drain_wake(&self) {}
}
