//! TCP reads that tell whether they emptied the receive queue (`TCP_INQ`, Linux 4.18+).
//!
//! A read of exactly the size asked for says nothing about what is left; with the kernel's
//! hint it does, and the next read can wait for readiness before trying, as after a short
//! read, instead of finding `EAGAIN` first: a request / response protocol saves one failed
//! `recv` per message on each side (`Poller::io_stream_hinted`).

use std::io;
#[cfg(any(target_os = "linux", target_os = "android"))]
use std::os::fd::AsRawFd;

/// Ask for the hint on `s`; false where the kernel cannot give it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn enable(s: &std::net::TcpStream) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, and `on` is a c_int that outlives the call.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INQ,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn enable(_: &std::net::TcpStream) -> bool {
    false
}

/// `recvmsg` into `buf`: the bytes read and whether none were left queued.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn read(s: &std::net::TcpStream, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    // Room for one control message carrying a c_int, aligned as cmsghdr wants.
    #[repr(C)]
    struct Control {
        _align: [libc::cmsghdr; 0],
        bytes: [u8; 32],
    }
    let mut control = Control {
        _align: [],
        bytes: [0; 32],
    };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes.as_mut_ptr().cast();
    msg.msg_controllen = control.bytes.len() as _;
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, all alive and exclusively
    // ours for the call.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut left = None;
    // SAFETY: the kernel filled `msg_control` / `msg_controllen`; the CMSG macros walk
    // only within them.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_TCP && (*c).cmsg_type == libc::TCP_CM_INQ {
                left = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(c).cast::<libc::c_int>(),
                ));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let n = n as usize;
    Ok((n, n < buf.len() || left == Some(0)))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn read(s: &std::net::TcpStream, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    use std::io::Read;
    let n = (&*s).read(buf)?;
    Ok((n, n < buf.len()))
}

#[cfg(all(test, not(loom), any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{Shutdown, TcpListener, TcpStream};

    /// The hint read by `read`: drained exactly when the read left nothing queued, a
    /// full read included; at end-of-file the kernel says "more" (so the next read tries and
    /// sees it), and a read of nothing is never taken for a drain by the poller anyway.
    #[test]
    #[cfg_attr(miri, ignore)] // sockets
    fn a_tcp_read_says_whether_it_left_anything_queued() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut w = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (r, _) = l.accept().unwrap();
        assert!(enable(&r), "TCP_INQ is refused by this kernel");
        let mut buf = [0u8; 100];
        let full = |r: &TcpStream, buf: &mut [u8], want: &[u8]| {
            // Blocking socket: wait for the whole write to be queued, then read it.
            let mut peek = vec![0u8; want.len()];
            while r.peek(&mut peek).unwrap() < want.len() {}
            read(r, buf).unwrap()
        };
        w.write_all(&[1; 100]).unwrap();
        assert_eq!(
            full(&r, &mut buf, &[1; 100]),
            (100, true),
            "a full read drained it"
        );
        w.write_all(&[2; 150]).unwrap();
        assert_eq!(
            full(&r, &mut buf, &[2; 150]),
            (100, false),
            "50 bytes are left"
        );
        assert_eq!(
            read(&r, &mut buf).unwrap(),
            (50, true),
            "a short read drains"
        );
        w.shutdown(Shutdown::Write).unwrap();
        let (n, _) = read(&r, &mut buf).unwrap();
        assert_eq!(n, 0, "end of file");
    }
}
