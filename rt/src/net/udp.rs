//! UDP: `UdpSocket`, whose receives (and full-buffer sends) park the calling goroutine.

use super::fd::NetFd;
use super::tcp::new_socket;
use super::{deadline_methods, each_addr, resolve};
use gort_netpoll::Direction;
use socket2::Type;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

/// A UDP socket (Go's `net.UDPConn`). Clones share the socket.
#[derive(Debug, Clone)]
pub struct UdpSocket {
    fd: Arc<NetFd<std::net::UdpSocket>>,
}

impl UdpSocket {
    /// Bind to `addr` (port 0: any free port).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let addrs = resolve(addr)?;
        let s = each_addr(&addrs, |a| {
            let s = new_socket(a, Type::DGRAM)?;
            s.bind(&(*a).into())?;
            Ok(std::net::UdpSocket::from(s))
        })?;
        Ok(UdpSocket {
            fd: Arc::new(NetFd::new(s)?),
        })
    }

    /// Set the default peer for `send` / `recv` (the first resolved address that works).
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let addrs = resolve(addr)?;
        each_addr(&addrs, |a| self.fd.get_ref().connect(a))
    }

    /// Receive one datagram, parking until one arrives.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.io(Direction::Read, |s| s.recv_from(buf))
    }

    /// Receive one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.io(Direction::Read, |s| s.recv(buf))
    }

    /// Send one datagram to `addr` (resolved inside `blocking`).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addrs = resolve(addr)?;
        self.fd.io(Direction::Write, |s| s.send_to(buf, addrs[0]))
    }

    /// Send one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.io(Direction::Write, |s| s.send(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().peer_addr()
    }

    /// Another handle to the same socket.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(self.clone())
    }

    deadline_methods!();
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}
