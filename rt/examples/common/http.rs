//! A minimal HTTP/1.1 hello-world connection handler on `gort::net` (httparse, keep-alive,
//! pipelining), shared by the HTTP example, the demo and the benchmark.

use std::io::{self, Read, Write};

/// The one response.
pub const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 13\r\n\r\nHello, World!";
const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 13\r\nConnection: close\r\n\r\nHello, World!";
const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const TOO_BIG: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Serve one connection until the peer closes it, asks to (`Connection: close`, or HTTP/1.0
/// without keep-alive), sends garbage or fails. Requests already buffered (pipelined) are
/// answered with one write.
pub fn serve<S>(c: S) -> io::Result<()>
where
    for<'a> &'a S: Read + Write,
{
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let mut out = Vec::with_capacity(1024);
    loop {
        let mut start = 0;
        let mut close = false;
        while !close {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf[start..len]) {
                Ok(httparse::Status::Complete(n)) => {
                    let mut body = 0usize;
                    let mut keep_alive = req.version == Some(1);
                    for h in req.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            body = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(usize::MAX);
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            keep_alive = h.value.eq_ignore_ascii_case(b"keep-alive");
                        }
                    }
                    if body > buf.len() / 2 {
                        (&c).write_all(TOO_BIG)?;
                        return Ok(());
                    }
                    if start + n + body > len {
                        break; // the body is still on its way
                    }
                    start += n + body;
                    close = !keep_alive;
                    out.extend_from_slice(if close { CLOSE } else { HELLO });
                }
                Ok(httparse::Status::Partial) => break,
                Err(_) => {
                    (&c).write_all(BAD)?;
                    return Ok(());
                }
            }
        }
        if !out.is_empty() {
            (&c).write_all(&out)?;
            out.clear();
        }
        if close {
            return Ok(());
        }
        buf.copy_within(start..len, 0);
        len -= start;
        if len == buf.len() {
            (&c).write_all(TOO_BIG)?;
            return Ok(());
        }
        let n = (&c).read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
}
