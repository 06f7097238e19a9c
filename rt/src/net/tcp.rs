//! TCP: `TcpListener` (accept parks) and `TcpStream` (connect, read and write park).

use super::fd::NetFd;
use super::inq;
use super::{deadline_methods, each_addr, resolve};
use gort_netpoll::Direction;
use socket2::{Domain, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Pending connections a listener may queue (the kernel caps it at `net.core.somaxconn`,
/// which is what Go asks for).
const BACKLOG: i32 = 65535;

/// A non-blocking, close-on-exec socket of `addr`'s family.
pub(crate) fn new_socket(addr: &SocketAddr, ty: Type) -> io::Result<Socket> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let ty = ty.nonblocking().cloexec();
    let s = Socket::new(Domain::for_address(*addr), ty, None)?;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        s.set_cloexec(true)?;
        s.set_nonblocking(true)?;
    }
    Ok(s)
}

/// A TCP socket server (Go's `net.TCPListener`). `accept` parks the calling goroutine.
#[derive(Debug)]
pub struct TcpListener {
    fd: NetFd<std::net::TcpListener>,
}

impl TcpListener {
    /// Listen on `addr` (port 0: any free port; see [`local_addr`](Self::local_addr)).
    /// Host names are resolved inside `blocking`; each address is tried in turn.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let addrs = resolve(addr)?;
        let l = each_addr(&addrs, |a| {
            let s = new_socket(a, Type::STREAM)?;
            s.set_reuse_address(true)?;
            s.bind(&(*a).into())?;
            s.listen(BACKLOG)?;
            Ok(std::net::TcpListener::from(s))
        })?;
        Ok(TcpListener { fd: NetFd::new(l)? })
    }

    /// Wait for a connection. Errors are returned, not retried: EMFILE / ENFILE when the
    /// process is out of descriptors (back off and call again), `TimedOut` past a deadline,
    /// the closed error after [`close`](Self::close).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, peer) = self.fd.io(Direction::Read, |l| l.accept())?;
        s.set_nonblocking(true)?;
        s.set_nodelay(true)?; // Go's default for accepted connections too
        Ok((TcpStream::from_std_nonblocking(s)?, peer))
    }

    /// An endless iterator of `accept` results.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
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

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

/// Iterator over accepted connections ([`TcpListener::incoming`]).
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A TCP connection (Go's `net.TCPConn`). Reads and writes park the calling goroutine; clones
/// share the socket ([`try_clone`](Self::try_clone)), and parties reading (or writing) one
/// socket take turns.
#[derive(Debug, Clone)]
pub struct TcpStream {
    fd: Arc<NetFd<std::net::TcpStream>>,
    /// The kernel reports, with each read, the bytes left queued (`TCP_INQ`, Linux 4.18+).
    inq: bool,
}

impl TcpStream {
    fn from_std_nonblocking(s: std::net::TcpStream) -> io::Result<TcpStream> {
        let inq = inq::enable(&s);
        Ok(TcpStream {
            fd: Arc::new(NetFd::new(s)?),
            inq,
        })
    }

    /// Connect to `addr` (each resolved address in turn), parking until the handshake ends.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let addrs = resolve(addr)?;
        each_addr(&addrs, |a| Self::connect_one(a, None))
    }

    /// Connect to one address, failing with `TimedOut` after `timeout`.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        Self::connect_one(addr, Some(Instant::now() + timeout))
    }

    fn connect_one(addr: &SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let s = new_socket(addr, Type::STREAM)?;
        s.set_nodelay(true)?; // Go's default
        let pending = match s.connect(&(*addr).into()) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) => return Err(e),
        };
        let stream = TcpStream::from_std_nonblocking(std::net::TcpStream::from(s))?;
        if pending {
            if deadline.is_some() {
                stream.fd.set_deadline(Direction::Write, deadline)?;
            }
            stream.fd.wait(Direction::Write)?;
            if let Some(e) = stream.fd.get_ref().take_error()? {
                return Err(e);
            }
            if deadline.is_some() {
                stream.fd.set_deadline(Direction::Write, None)?;
            }
            // A refused connection can also show as writable with no error pending yet on
            // some kernels: the peer address tells.
            stream.fd.get_ref().peer_addr()?;
        }
        Ok(stream)
    }

    /// Another handle to the same socket (sharing its deadlines and its close).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
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

    /// Shut down the read half, the write half (the peer reads end-of-file) or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if self.fd.is_closed() {
            return Err(super::fd::closed_error());
        }
        self.fd.get_ref().shutdown(how)
    }

    /// `TCP_NODELAY` (on by default, as in Go).
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.fd.get_ref().set_nodelay(on)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.fd.get_ref().nodelay()
    }

    /// Read without consuming, parking until data (or end-of-file) is there.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.io(Direction::Read, |s| s.peek(buf))
    }

    /// The pending socket error (`SO_ERROR`), if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.get_ref().take_error()
    }

    deadline_methods!();
}

impl Read for &TcpStream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inq {
            return self
                .fd
                .io_stream_hinted(Direction::Read, |s| inq::read(s, buf));
        }
        self.fd
            .io_stream(Direction::Read, buf.len(), |mut s| s.read(buf))
    }
}

impl Write for &TcpStream {
    /// Writes what the socket takes at once, parking while its buffer is full.
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fd
            .io_stream(Direction::Write, buf.len(), |mut s| s.write(buf))
    }

    /// Writes all of `buf`, holding the write direction throughout, so writes of two
    /// goroutines sharing the stream never interleave (Go's `fd.Write`).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut done = 0;
        self.fd.io(Direction::Write, |mut s| {
            while done < buf.len() {
                match s.write(&buf[done..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => done += n,
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for TcpStream {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}
