//! The standalone driver: a thread that polls and wakes parked threads, and `Source`, a
//! registered fd whose waits park the calling thread.

use crate::desc::Direction;
use crate::poller::Poller;
use crate::registration::Registration;
use crate::waiter::ThreadWaiter;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

/// A poller for plain threads plus the thread that polls it.
///
/// Dropping the driver stops and joins its thread; sources keep the poller alive but nothing
/// wakes their waiters any more except close, evict and past deadlines.
#[derive(Debug)]
pub struct Driver {
    poller: Arc<Poller<ThreadWaiter>>,
    /// Set by `Drop` (Release) before waking the poller; read by the thread (Acquire).
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    /// Create the poller and start the polling thread (named `gort-netpoll`).
    pub fn start() -> io::Result<Self> {
        let poller = Arc::new(Poller::new()?);
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&poller), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("gort-netpoll".into())
            .spawn(move || {
                while !s.load(Ordering::Acquire) {
                    if let Err(e) = p.poll(None) {
                        panic!("runtime: netpoll driver: poll failed: {e}");
                    }
                }
            })?;
        Ok(Driver {
            poller,
            stop,
            thread: Some(thread),
        })
    }

    /// The poller this driver polls.
    pub fn poller(&self) -> &Arc<Poller<ThreadWaiter>> {
        &self.poller
    }

    /// Register a non-blocking fd (see [`Poller::open`]). The caller keeps owning the fd and
    /// must keep it open until the source is dropped.
    pub fn register(&self, fd: RawFd) -> io::Result<Source> {
        let reg = self.poller.open(fd)?;
        Ok(Source {
            poller: Arc::clone(&self.poller),
            reg: Some(reg),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.poller.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A registered fd whose waits park the calling thread; deregistered on drop.
#[derive(Debug)]
pub struct Source {
    poller: Arc<Poller<ThreadWaiter>>,
    /// `Some` until `Drop` takes it to close.
    reg: Option<Registration>,
}

impl Source {
    fn reg(&self) -> &Registration {
        self.reg.as_ref().expect("runtime: source used after close")
    }

    /// The registered fd.
    pub fn fd(&self) -> RawFd {
        self.reg().fd()
    }

    /// Park the calling thread until the fd is ready in `dir` (see [`Poller::wait`]).
    pub fn wait(&self, dir: Direction) -> io::Result<()> {
        self.poller.wait(self.reg(), dir, |c| {
            if c.commit(ThreadWaiter::current()).is_ok() {
                ThreadWaiter::park();
            }
        })
    }

    /// Set or clear the deadline of one direction (see [`Poller::set_deadline`]).
    pub fn set_deadline(&self, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
        self.poller.set_deadline(self.reg(), dir, deadline)
    }

    /// Wake every waiter with EBADF and fail later waits (another thread's way to abort a
    /// blocked read or write).
    pub fn evict(&self) -> io::Result<()> {
        self.poller.evict(self.reg())
    }

    /// Run `op` (a non-blocking read) until it stops returning `WouldBlock`, waiting for
    /// readability in between: a blocking-style read on a non-blocking fd.
    pub fn read_with<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        self.io_with(Direction::Read, op)
    }

    /// As [`read_with`](Self::read_with), for writes.
    pub fn write_with<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        self.io_with(Direction::Write, op)
    }

    fn io_with<T>(&self, dir: Direction, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(dir)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            // A failed deregistration (the fd was closed first) still releases the descriptor.
            let _ = self.poller.close(reg);
        }
    }
}
