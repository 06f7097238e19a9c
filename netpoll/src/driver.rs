//! The standalone driver: a thread that polls and wakes parked threads, and `Source`, a
//! registered fd whose waits park the calling thread.

use crate::desc::Direction;
use crate::poller::{Commit, Poller};
use crate::registration::Registration;
use crate::waiter::ThreadWaiter;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
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

    /// Register a non-blocking fd, owned or borrowed (see [`Poller::open`]). The source
    /// holds `io` until it is dropped (which deregisters the fd, then drops `io`) or
    /// [`into_inner`](Source::into_inner) gives it back.
    pub fn register<F: AsFd>(&self, io: F) -> io::Result<Source<F>> {
        let reg = self.poller.open(io)?;
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

/// A registered fd whose waits park the calling thread; deregistered on drop, before the
/// I/O object it holds is dropped.
///
/// Threads reading (or writing) one source take turns: a second reader parks until the
/// first one's read returns (Go's fdMutex), so share a source freely, e.g. in an `Arc`.
#[derive(Debug)]
pub struct Source<F: AsFd> {
    poller: Arc<Poller<ThreadWaiter>>,
    /// `Some` until `Drop` or `into_inner` takes it to close.
    reg: Option<Registration<F>>,
}

fn park_thread(c: Commit<'_, ThreadWaiter>) {
    if c.commit(ThreadWaiter::current()).is_ok() {
        ThreadWaiter::park();
    }
}

impl<F: AsFd> Source<F> {
    fn reg(&self) -> &Registration<F> {
        self.reg.as_ref().expect("runtime: source used after close")
    }

    /// The registered I/O object.
    pub fn get_ref(&self) -> &F {
        self.reg().get_ref()
    }

    /// Whether the fd could be registered with the kernel (see
    /// [`Registration::is_pollable`]).
    pub fn is_pollable(&self) -> bool {
        self.reg().is_pollable()
    }

    /// Deregister the fd and give the I/O object back.
    pub fn into_inner(mut self) -> F {
        let reg = self.reg.take().expect("runtime: source used after close");
        self.poller.close(reg)
    }

    /// Park the calling thread until the fd is ready in `dir` (see [`Poller::wait`]).
    pub fn wait(&self, dir: Direction) -> io::Result<()> {
        self.poller.wait(self.reg(), dir, park_thread)
    }

    /// Set or clear the deadline of one direction (see [`Poller::set_deadline`]).
    pub fn set_deadline(&self, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
        self.poller.set_deadline(self.reg(), dir, deadline)
    }

    /// Wake every waiter with EBADF and fail later waits and I/O (another thread's way to
    /// abort a blocked read or write; the fd itself is closed when the source is dropped).
    pub fn evict(&self) -> io::Result<()> {
        self.poller.evict(self.reg())
    }

    /// Run `op` (a non-blocking read) until it stops returning `WouldBlock`, parking until
    /// readable in between: a blocking-style read on a non-blocking fd (see [`Poller::io`]:
    /// readers take turns, a closed source or an expired deadline fails first).
    pub fn read_with<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        self.poller.io(self.reg(), Direction::Read, park_thread, op)
    }

    /// As [`read_with`](Self::read_with), for writes.
    pub fn write_with<T>(&self, op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        self.poller
            .io(self.reg(), Direction::Write, park_thread, op)
    }

    /// One read or write of up to `want` bytes on a stream socket, parking as `read_with`
    /// does: after a short transfer the next one waits for readiness before it tries (see
    /// [`Poller::io_stream`]).
    pub fn io_stream(
        &self,
        dir: Direction,
        want: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.poller
            .io_stream(self.reg(), dir, park_thread, want, op)
    }

    /// As [`io_stream`](Self::io_stream), with `op` saying itself whether the transfer
    /// drained the direction (see [`Poller::io_stream_hinted`]).
    pub fn io_stream_hinted(
        &self,
        dir: Direction,
        op: impl FnMut() -> io::Result<(usize, bool)>,
    ) -> io::Result<usize> {
        self.poller
            .io_stream_hinted(self.reg(), dir, park_thread, op)
    }
}

impl<F: AsFd> AsFd for Source<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.reg().as_fd()
    }
}

impl<F: AsFd> Drop for Source<F> {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            // Evict, deregister, then drop the I/O object (closing an owned fd).
            drop(self.poller.close(reg));
        }
    }
}
