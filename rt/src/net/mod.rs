//! Go's `net` for goroutines: TCP, UDP and Unix sockets whose blocking calls park the calling
//! goroutine on the netpoller, never its M.
//!
//! Every socket is non-blocking and close-on-exec from birth, registered once with the
//! poller of the runtime it was made in (edge-triggered, both directions), and read and
//! written through `std::io::{Read, Write}` (also on `&TcpStream`, so two goroutines can share
//! one stream: readers take turns, as do writers). A call that would block parks the
//! goroutine until the socket is ready, its deadline passes (`io::ErrorKind::TimedOut`) or
//! another goroutine closes it (`io::ErrorKind::NotConnected`, "use of closed network
//! connection", Go's `ErrClosed`).
//!
//! **Deadlines** come in both dialects and share one deadline per direction:
//! `set_read_deadline` / `set_write_deadline` / `set_deadline` take Go's absolute time
//! (`None` clears; a time in the past fails the current and every later call at once, until
//! moved); `set_read_timeout` / `set_write_timeout` are std's per-call timeouts, re-armed at
//! the start of every call. Setting one clears the other.
//!
//! **Closing.** Dropping the last handle closes the socket (evict, deregister, `close(2)`, in
//! that order). [`TcpStream::close`] and friends are Go's `Close`: goroutines blocked on the
//! socket wake at once with the closed error; the fd itself is released with the last
//! handle, so its number cannot be reused under a goroutine still holding one.
//!
//! **Name resolution** (`ToSocketAddrs` with a host name) runs the system resolver inside
//! [`blocking`](crate::blocking), which hands the goroutine's P to another M for the call, so
//! a slow DNS answer never stalls other goroutines.
//!
//! **Faults** surface as errors, never as a crash or a spin: EMFILE from `accept` is returned
//! (back off and retry, as `examples/echo_server.rs` does), a peer's reset is
//! `ConnectionReset`, writing to a closed peer is `BrokenPipe` (SIGPIPE is ignored from the
//! moment a runtime is built, and std writes with `MSG_NOSIGNAL`).
//!
//! **Other blocking work** — files, `std::process`, any syscall that may block — belongs in
//! [`blocking`](crate::blocking): regular files cannot be polled (epoll refuses them, Go
//! blocks an M for them too), so the goroutine's P is handed to another M for the call.

mod fd;
mod inq;
mod tcp;
mod udp;
mod unix;

pub use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, ToSocketAddrs};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixListener, UnixStream};

use std::io;

/// Resolve `addr` inside `blocking`, so a slow resolver never holds a P.
pub(crate) fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> =
        gort_sched::blocking(|| addr.to_socket_addrs().map(Iterator::collect))?;
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        ));
    }
    Ok(addrs)
}

/// Try `f` on each address in turn; the last error if none works.
pub(crate) fn each_addr<T>(
    addrs: &[SocketAddr],
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addrs {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses")))
}

/// Deadline and timeout methods shared by every connected socket type (a field `fd`).
macro_rules! deadline_methods {
    () => {
        /// Go's `SetReadDeadline`: reads fail with `TimedOut` once `when` passes (`None`
        /// clears; a past time fails them at once). Clears a read timeout.
        pub fn set_read_deadline(&self, when: Option<std::time::Instant>) -> std::io::Result<()> {
            self.fd.set_deadline(gort_netpoll::Direction::Read, when)
        }

        /// Go's `SetWriteDeadline` (see [`set_read_deadline`](Self::set_read_deadline)).
        pub fn set_write_deadline(&self, when: Option<std::time::Instant>) -> std::io::Result<()> {
            self.fd.set_deadline(gort_netpoll::Direction::Write, when)
        }

        /// Go's `SetDeadline`: both directions.
        pub fn set_deadline(&self, when: Option<std::time::Instant>) -> std::io::Result<()> {
            self.set_read_deadline(when)?;
            self.set_write_deadline(when)
        }

        /// std's `set_read_timeout`: each later read times out after `timeout` (`None`: no
        /// timeout; zero is refused, as std does). Clears a read deadline.
        pub fn set_read_timeout(
            &self,
            timeout: Option<std::time::Duration>,
        ) -> std::io::Result<()> {
            self.fd.set_timeout(gort_netpoll::Direction::Read, timeout)
        }

        /// std's `set_write_timeout` (see [`set_read_timeout`](Self::set_read_timeout)).
        pub fn set_write_timeout(
            &self,
            timeout: Option<std::time::Duration>,
        ) -> std::io::Result<()> {
            self.fd.set_timeout(gort_netpoll::Direction::Write, timeout)
        }

        /// The read timeout set with [`set_read_timeout`](Self::set_read_timeout).
        pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.fd.timeout(gort_netpoll::Direction::Read))
        }

        /// The write timeout set with [`set_write_timeout`](Self::set_write_timeout).
        pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
            Ok(self.fd.timeout(gort_netpoll::Direction::Write))
        }

        /// Go's `Close`: wakes every goroutine blocked on this socket with the closed error
        /// and fails every later call on any handle to it. The fd is released when the last
        /// handle is dropped. Closing twice is an error, as in Go.
        pub fn close(&self) -> std::io::Result<()> {
            self.fd.close()
        }
    };
}
pub(crate) use deadline_methods;
