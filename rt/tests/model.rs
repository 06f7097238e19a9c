//! proptest: random programs of connect / write / read / deadline / close over loopback,
//! checked against a model of the bytes delivered (a FIFO of what was written and not yet
//! read, plus whether the writer has closed).
#![cfg(not(loom))]

use gort::net::{TcpListener, TcpStream};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
enum Op {
    /// The client writes these bytes (small: never blocks).
    Write(Vec<u8>),
    /// The server reads up to this many bytes.
    Read(usize),
    /// The server's read deadline is set in the past: the next read times out at once,
    /// whatever is buffered; then it is cleared.
    PastDeadline,
    /// The server's read deadline is moved to a little ahead, then cleared after a read.
    ShortDeadline,
    /// The client closes (drops) its end.
    Close,
    /// A new connection replaces the current one (the model starts empty).
    Reconnect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 1..200).prop_map(Op::Write),
        4 => (1usize..300).prop_map(Op::Read),
        1 => Just(Op::PastDeadline),
        1 => Just(Op::ShortDeadline),
        1 => Just(Op::Close),
        1 => Just(Op::Reconnect),
    ]
}

fn runtime() -> &'static gort::Runtime {
    static RT: OnceLock<gort::Runtime> = OnceLock::new();
    // SAFETY: the test goroutines hold no thread-bound values across scheduling points.
    RT.get_or_init(|| unsafe { gort::Builder::new().gomaxprocs(2).build() }.unwrap())
}

struct Conn {
    client: Option<TcpStream>,
    server: TcpStream,
}

fn connect(l: &TcpListener) -> Conn {
    let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (server, _) = l.accept().unwrap();
    Conn {
        client: Some(client),
        server,
    }
}

/// Read exactly `n` bytes (which the model says are there), in as many reads as it takes.
fn read_n(s: &TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        let k = (&*s).read(&mut out[got..]).unwrap();
        assert!(k > 0, "end-of-file with {} bytes still owed", n - got);
        got += k;
    }
    out
}

fn run_program(ops: Vec<Op>) {
    runtime().block_on(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = connect(&l);
        let mut model: VecDeque<u8> = VecDeque::new();
        let mut closed = false;
        for op in ops {
            match op {
                Op::Write(bytes) => {
                    if let Some(cl) = &c.client {
                        (&*cl).write_all(&bytes).unwrap();
                        model.extend(&bytes);
                    }
                }
                Op::Read(n) => {
                    if !model.is_empty() {
                        let k = n.min(model.len());
                        let want: Vec<u8> = model.drain(..k).collect();
                        assert_eq!(read_n(&c.server, k), want);
                    } else if closed {
                        assert_eq!((&c.server).read(&mut vec![0u8; n]).unwrap(), 0);
                    } else {
                        // Nothing written: a read would block, so bound it by a deadline.
                        c.server
                            .set_read_deadline(Some(Instant::now() + Duration::from_millis(5)))
                            .unwrap();
                        let e = (&c.server).read(&mut vec![0u8; n]).unwrap_err();
                        assert_eq!(e.kind(), ErrorKind::TimedOut);
                        c.server.set_read_deadline(None).unwrap();
                    }
                }
                Op::PastDeadline => {
                    c.server
                        .set_read_deadline(Some(Instant::now() - Duration::from_millis(1)))
                        .unwrap();
                    let e = (&c.server).read(&mut [0u8; 16]).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::TimedOut);
                    c.server.set_read_deadline(None).unwrap();
                }
                Op::ShortDeadline => {
                    c.server
                        .set_read_deadline(Some(Instant::now() + Duration::from_millis(3)))
                        .unwrap();
                    let mut buf = [0u8; 16];
                    let r = (&c.server).read(&mut buf);
                    match r {
                        Ok(k) if k > 0 => {
                            assert!(k <= model.len(), "read {k} bytes the model does not have");
                            let want: Vec<u8> = model.drain(..k).collect();
                            assert_eq!(&buf[..k], &want[..]);
                        }
                        Ok(0) => assert!(closed && model.is_empty()),
                        Ok(_) => unreachable!(),
                        Err(e) => {
                            assert_eq!(e.kind(), ErrorKind::TimedOut);
                            assert!(model.is_empty() && !closed, "timed out with data or EOF");
                        }
                    }
                    c.server.set_read_deadline(None).unwrap();
                }
                Op::Close => {
                    if c.client.take().is_some() {
                        closed = true;
                    }
                }
                Op::Reconnect => {
                    c = connect(&l);
                    model.clear();
                    closed = false;
                }
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn loopback_delivers_what_the_model_says(ops in proptest::collection::vec(op(), 1..40)) {
        run_program(ops);
    }
}
