//! Unix-domain stream sockets: `UnixListener` and `UnixStream`.

use super::deadline_methods;
use super::fd::NetFd;
use gort_netpoll::Direction;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// A Unix-domain socket server. `accept` parks the calling goroutine.
#[derive(Debug)]
pub struct UnixListener {
    fd: NetFd<std::os::unix::net::UnixListener>,
}

impl UnixListener {
    /// Listen on the socket file `path` (which must not exist).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let l = std::os::unix::net::UnixListener::bind(path)?; // close-on-exec
        l.set_nonblocking(true)?;
        Ok(UnixListener { fd: NetFd::new(l)? })
    }

    /// Wait for a connection (EMFILE and friends are returned, see `TcpListener::accept`).
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, peer) = self.fd.io(Direction::Read, |l| l.accept())?;
        s.set_nonblocking(true)?;
        Ok((UnixStream::from_std_nonblocking(s)?, peer))
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Go's `SetDeadline` on a listener: `accept` fails with `TimedOut` once `when` passes.
    pub fn set_deadline(&self, when: Option<Instant>) -> io::Result<()> {
        self.fd.set_deadline(Direction::Read, when)
    }

    /// Go's `Close`: a goroutine blocked in `accept` wakes with the closed error.
    pub fn close(&self) -> io::Result<()> {
        self.fd.close()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

/// A Unix-domain stream connection. Clones share the socket.
#[derive(Debug, Clone)]
pub struct UnixStream {
    fd: Arc<NetFd<std::os::unix::net::UnixStream>>,
}

impl UnixStream {
    fn from_std_nonblocking(s: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            fd: Arc::new(NetFd::new(s)?),
        })
    }

    /// Connect to the socket file `path`. A Unix connect completes at once or fails (a full
    /// backlog makes it wait, so it runs inside `blocking`).
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let s = gort_sched::blocking(|| std::os::unix::net::UnixStream::connect(path))?;
        s.set_nonblocking(true)?;
        Self::from_std_nonblocking(s)
    }

    /// A connected pair of sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((
            Self::from_std_nonblocking(a)?,
            Self::from_std_nonblocking(b)?,
        ))
    }

    /// Another handle to the same socket.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(self.clone())
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Shut down one half or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if self.fd.is_closed() {
            return Err(super::fd::closed_error());
        }
        self.fd.get_ref().shutdown(how)
    }

    deadline_methods!();
}

// Plain `io`, not `io_stream` as TCP: a Unix stream read can stop short with more queued (at
// a message carrying descriptors, or a change of sender with `SO_PASSCRED`), so a short read
// does not prove the socket drained, and waiting for a new edge could wait forever.
impl Read for &UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.io(Direction::Read, |mut s| s.read(buf))
    }
}

impl Write for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fd.io(Direction::Write, |mut s| s.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}
