//! Integration tests of `gort::net` on the netpoller-backed scheduler: echo, deadlines,
//! close while blocked, peer reset, half-close, turn-taking, GOMAXPROCS=1 with a busy
//! goroutine, goroutines blocked on I/O holding no M, UDP and Unix sockets.
#![cfg(not(loom))]

use gort::net::{Shutdown, TcpListener, TcpStream, UdpSocket, UnixListener, UnixStream};
use gort::{Runtime, chan, go};
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn rt(procs: usize) -> Runtime {
    // SAFETY: the test goroutines hold no thread-bound values across scheduling points.
    unsafe { gort::Builder::new().gomaxprocs(procs).build() }.expect("valid configuration")
}

/// A connected pair over loopback, both ends on the calling goroutine's runtime.
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = chan(1);
    go(move || {
        tx.send(TcpStream::connect(addr).unwrap()).unwrap();
    });
    let (server, _) = l.accept().unwrap();
    (rx.recv().unwrap(), server)
}

#[test]
fn echo_round_trips() {
    rt(2).block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        go(move || {
            loop {
                let Ok((mut c, _)) = l.accept() else { return };
                go(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n @ 1..) = c.read(&mut buf) {
                        c.write_all(&buf[..n]).unwrap();
                    }
                });
            }
        });
        let (done_tx, done_rx) = chan(0);
        for i in 0..20u8 {
            let done_tx = done_tx.clone();
            go(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                for j in 0..50u8 {
                    let msg = [i, j, 1, 2, 3];
                    c.write_all(&msg).unwrap();
                    let mut back = [0u8; 5];
                    c.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg);
                }
                done_tx.send(()).unwrap();
            });
        }
        for _ in 0..20 {
            done_rx.recv().unwrap();
        }
    });
}

/// Reads of exactly the message size, which on Linux wait for readiness before their first
/// attempt when the kernel said the previous one drained the socket (`TCP_INQ`), against a
/// writer that sends messages whole, split in two with a pause between, and several at once:
/// every byte arrives in order and no read waits for an edge that already came. A deadline
/// turns a lost wake-up into a failure instead of a hang.
#[test]
fn exact_size_reads_against_split_and_batched_writes_lose_nothing() {
    rt(2).block_on(|| {
        const MSG: usize = 48;
        const N: usize = 600;
        let (mut w, mut r) = pair();
        r.set_read_deadline(Some(Instant::now() + Duration::from_secs(20)))
            .unwrap();
        let writer = gort::spawn(move || {
            let msg = |k: usize| -> Vec<u8> { (0..MSG).map(|i| (k * 7 + i) as u8).collect() };
            let (mut k, mut turn) = (0, 0);
            while k < N {
                turn += 1;
                match turn % 3 {
                    0 => w.write_all(&msg(k)).unwrap(),
                    1 => {
                        let m = msg(k);
                        w.write_all(&m[..MSG / 3]).unwrap();
                        if turn % 2 == 1 {
                            gort::time::sleep(Duration::from_micros(200));
                        } else {
                            gort::gosched();
                        }
                        w.write_all(&m[MSG / 3..]).unwrap();
                    }
                    _ => {
                        // Three messages in one write: reads find more queued.
                        let mut m = msg(k);
                        for j in 1..3.min(N - k) {
                            m.extend(msg(k + j));
                        }
                        k += m.len() / MSG - 1;
                        w.write_all(&m).unwrap();
                    }
                }
                k += 1;
            }
            w
        });
        let mut buf = [0u8; MSG];
        for k in 0..N {
            r.read_exact(&mut buf)
                .unwrap_or_else(|e| panic!("message {k}: {e} (a read missed its wake-up?)"));
            let want: Vec<u8> = (0..MSG).map(|i| (k * 7 + i) as u8).collect();
            assert_eq!(&buf[..], &want[..], "message {k}");
        }
        let w = writer.join().unwrap();
        drop(w);
        assert_eq!(
            r.read(&mut buf).unwrap(),
            0,
            "end of file after the last message"
        );
    });
}

/// A read parked *before trying*, because the exact-size read before it was told by the
/// kernel that it emptied the queue, must still wake for everything that is not data: a
/// close by another goroutine, the peer's reset and the peer's end-of-file — the peer being
/// a plain OS thread with a std socket, racing the goroutines. A deadline turns a missed
/// wake-up into a failure instead of a hang.
#[test]
fn a_read_parked_after_an_exact_size_drain_wakes_for_close_reset_and_eof() {
    rt(2).block_on(|| {
        #[derive(Clone, Copy, Debug)]
        enum End {
            Close,
            Reset,
            Eof,
        }
        for end in [End::Close, End::Reset, End::Eof] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let peer = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                s.write_all(&[5u8; 32]).unwrap();
                // Let the reader drain the message and park on the next read.
                std::thread::sleep(Duration::from_millis(50));
                match end {
                    End::Reset => {
                        socket2::SockRef::from(&s)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        drop(s);
                    }
                    End::Eof => s.shutdown(std::net::Shutdown::Write).unwrap(),
                    // Keep the connection open until the reader's side is closed.
                    End::Close => {
                        let mut b = [0u8; 1];
                        let _ = s.read(&mut b);
                    }
                }
            });
            let c = TcpStream::connect(addr).unwrap();
            c.set_read_deadline(Some(Instant::now() + Duration::from_secs(20)))
                .unwrap();
            let mut buf = [0u8; 32];
            (&c).read_exact(&mut buf).unwrap();
            assert_eq!(buf, [5u8; 32]);
            let closer = matches!(end, End::Close).then(|| {
                let c = c.clone();
                gort::spawn(move || {
                    gort::time::sleep(Duration::from_millis(50));
                    c.close().unwrap();
                })
            });
            let r = (&c).read(&mut buf);
            match end {
                End::Close => {
                    let e = r.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::NotConnected, "{end:?}: {e}");
                }
                End::Reset => {
                    let e = r.unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{end:?}: {e}");
                }
                End::Eof => assert_eq!(r.unwrap(), 0, "{end:?}"),
            }
            if let Some(h) = closer {
                h.join().unwrap();
            }
            drop(c);
            peer.join().unwrap();
        }
    });
}

#[test]
fn past_deadline_times_out_at_once_and_clearing_it_reads_again() {
    rt(2).block_on(|| {
        let (mut a, mut b) = pair();
        b.write_all(b"hi").unwrap();
        a.set_read_deadline(Some(Instant::now() - Duration::from_secs(1)))
            .unwrap();
        let t = Instant::now();
        let e = a.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert!(t.elapsed() < Duration::from_secs(1));
        a.set_read_deadline(None).unwrap();
        let mut buf = [0u8; 2];
        a.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    });
}

#[test]
fn deadline_moved_while_blocked_wakes_the_reader() {
    rt(2).block_on(|| {
        let (a, _b) = pair();
        a.set_read_deadline(Some(Instant::now() + Duration::from_secs(3600)))
            .unwrap();
        let a2 = a.clone();
        let (tx, rx) = chan(1);
        go(move || {
            let t = Instant::now();
            let e = (&a2).read(&mut [0u8; 8]).unwrap_err();
            tx.send((e.kind(), t.elapsed())).unwrap();
        });
        gort::time::sleep(Duration::from_millis(30));
        // Move it to just ahead: the parked reader times out then, not in an hour.
        a.set_read_deadline(Some(Instant::now() + Duration::from_millis(50)))
            .unwrap();
        let (kind, took) = rx.recv().unwrap();
        assert_eq!(kind, ErrorKind::TimedOut);
        assert!(took < Duration::from_secs(30), "{took:?}");
    });
}

#[test]
fn std_timeouts_rearm_per_call() {
    rt(2).block_on(|| {
        let (a, mut b) = pair();
        assert!(a.set_read_timeout(Some(Duration::ZERO)).is_err());
        a.set_read_timeout(Some(Duration::from_millis(40))).unwrap();
        assert_eq!(a.read_timeout().unwrap(), Some(Duration::from_millis(40)));
        for _ in 0..2 {
            let e = (&a).read(&mut [0u8; 4]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::TimedOut);
        }
        b.write_all(b"x").unwrap();
        assert_eq!((&a).read(&mut [0u8; 4]).unwrap(), 1);
    });
}

#[test]
fn close_while_blocked_wakes_reader_and_acceptor_with_an_error() {
    rt(2).block_on(|| {
        let (a, _b) = pair();
        let a2 = a.clone();
        let (tx, rx) = chan(1);
        go(move || tx.send((&a2).read(&mut [0u8; 8])).unwrap());
        gort::time::sleep(Duration::from_millis(30));
        a.close().unwrap();
        let e = rx.recv().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotConnected, "{e}");
        // Reads and writes after close fail too; closing twice is an error.
        assert!((&a).read(&mut [0u8; 1]).is_err());
        assert!((&a).write(b"x").is_err());
        assert!(a.close().is_err());

        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let l2 = l.clone();
        let (tx, rx) = chan(1);
        go(move || tx.send(l2.accept().map(|_| ())).unwrap());
        gort::time::sleep(Duration::from_millis(30));
        l.close().unwrap();
        assert!(rx.recv().unwrap().is_err());
    });
}

#[test]
fn peer_reset_and_broken_pipe_are_errors() {
    rt(2).block_on(|| {
        let (a, b) = pair();
        // Linger 0: closing sends RST.
        socket2::SockRef::from(&b)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(b);
        let e = (&a).read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");

        let (a, b) = pair();
        drop(b);
        // Writing into a closed peer: the first write may succeed, later ones fail with
        // EPIPE or ECONNRESET — never SIGPIPE.
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = (&a).write(&[0u8; 1024]) {
                failed = Some(e.kind());
                break;
            }
            gort::time::sleep(Duration::from_millis(5));
        }
        let kind = failed.expect("writes to a closed peer kept succeeding");
        assert!(
            matches!(kind, ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
            "{kind:?}"
        );
    });
}

#[test]
fn half_close_delivers_eof_and_the_other_half_still_works() {
    rt(2).block_on(|| {
        let (mut a, mut b) = pair();
        a.write_all(b"request").unwrap();
        a.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"request");
        b.write_all(b"reply").unwrap();
        drop(b);
        let mut back = Vec::new();
        a.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"reply");
    });
}

#[test]
fn two_readers_of_one_stream_take_turns() {
    rt(2).block_on(|| {
        let (a, mut b) = pair();
        let total = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = chan(2);
        for _ in 0..2 {
            let a = a.clone();
            let total = total.clone();
            let tx = tx.clone();
            go(move || {
                let mut buf = [0u8; 7];
                loop {
                    match (&a).read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            total.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                tx.send(()).unwrap();
            });
        }
        for _ in 0..100 {
            b.write_all(&[7u8; 100]).unwrap();
            gort::gosched();
        }
        b.shutdown(Shutdown::Write).unwrap();
        rx.recv().unwrap();
        rx.recv().unwrap();
        assert_eq!(total.load(Ordering::Relaxed), 10_000);
    });
}

/// With one P, a goroutine that only yields must not keep a blocked reader from noticing
/// its data: every 61st scheduling round polls the netpoller.
#[test]
fn gomaxprocs_1_busy_goroutine_does_not_starve_a_blocked_reader() {
    rt(1).block_on(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let writer = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(b"ping").unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        let c = TcpStream::connect(addr).unwrap();
        let got = Arc::new(AtomicBool::new(false));
        let got2 = got.clone();
        go(move || {
            let mut buf = [0u8; 4];
            (&c).read_exact(&mut buf).unwrap();
            got2.store(true, Ordering::SeqCst);
        });
        let start = Instant::now();
        while !got.load(Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the reader never ran"
            );
            gort::gosched();
        }
        writer.join().unwrap();
    });
}

/// Runs the calling test alone in a child process, so that its process-wide measurements
/// (threads, CPU time) see no other test; true in the child, which then runs the body.
fn alone(test: &str) -> bool {
    if std::env::var_os("GORT_ALONE").is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("GORT_ALONE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a child process: {out:?}"
    );
    false
}

fn threads() -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Goroutines blocked on sockets park; they hold no M (thread).
#[test]
fn goroutines_blocked_on_io_hold_no_m() {
    if !alone("goroutines_blocked_on_io_hold_no_m") {
        return;
    }
    const N: usize = 500;
    rt(2).block_on(|| {
        let before = threads();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let blocked = Arc::new(AtomicUsize::new(0));
        let mut clients = Vec::new();
        for _ in 0..N {
            let c = TcpStream::connect(addr).unwrap();
            let (s, _) = l.accept().unwrap();
            let blocked = blocked.clone();
            go(move || {
                blocked.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1];
                let _ = (&s).read(&mut buf);
            });
            clients.push(c);
        }
        while blocked.load(Ordering::SeqCst) < N {
            gort::time::sleep(Duration::from_millis(5));
        }
        gort::time::sleep(Duration::from_millis(50));
        let during = threads();
        assert!(
            during <= before + 8,
            "{N} goroutines blocked on I/O grew the process from {before} to {during} threads"
        );
        assert!(gort::runtime::num_goroutine() > N);
        drop(clients);
    });
}

#[test]
fn udp_round_trip_and_recv_deadline() {
    rt(2).block_on(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b_addr = b.local_addr().unwrap();
        let b2 = b.clone();
        let (tx, rx) = chan(1);
        go(move || {
            let mut buf = [0u8; 16];
            let (n, from) = b2.recv_from(&mut buf).unwrap();
            b2.send_to(&buf[..n], from).unwrap();
            tx.send(()).unwrap();
        });
        gort::time::sleep(Duration::from_millis(10));
        a.send_to(b"dgram", b_addr).unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = a.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"dgram"[..], b_addr));
        rx.recv().unwrap();
        a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(
            a.recv_from(&mut buf).unwrap_err().kind(),
            ErrorKind::TimedOut
        );
    });
}

#[test]
fn unix_listener_and_pair() {
    rt(2).block_on(|| {
        let dir = std::env::temp_dir().join(format!("gort-unix-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let l = UnixListener::bind(&dir).unwrap();
        let path = dir.clone();
        go(move || {
            let mut c = UnixStream::connect(&path).unwrap();
            c.write_all(b"over unix").unwrap();
        });
        let (mut s, _) = l.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"over unix");
        let _ = std::fs::remove_file(&dir);

        let (mut x, mut y) = UnixStream::pair().unwrap();
        go(move || {
            let mut buf = [0u8; 3];
            y.read_exact(&mut buf).unwrap();
            y.write_all(&buf).unwrap();
        });
        x.write_all(b"abc").unwrap();
        let mut buf = [0u8; 3];
        x.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abc");
    });
}

/// A plain thread (no goroutine) can use gort sockets: they belong to the process-wide
/// poller and the thread parks on itself.
#[test]
fn plain_threads_use_the_fallback_poller() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"from a thread").unwrap();
    });
    let (mut s, _) = l.accept().unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"from a thread");
    t.join().unwrap();
}

#[test]
fn connect_refused_and_name_resolution() {
    rt(2).block_on(|| {
        // A port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
        // "localhost" goes through the resolver inside `blocking`.
        let l = TcpListener::bind("localhost:0").unwrap();
        let port = l.local_addr().unwrap().port();
        go(move || drop(l.accept()));
        TcpStream::connect(("localhost", port)).unwrap();
    });
}

/// `gort::select!`, `gort::time` and `gort::sync` are the subsystems' own, re-exported.
#[test]
fn reexports_select_time_sync() {
    rt(2).block_on(|| {
        let (tx, rx) = chan::<u8>(1);
        let wg = Arc::new(gort::sync::WaitGroup::new());
        wg.add(1);
        let wg2 = wg.clone();
        go(move || {
            tx.send(5).unwrap();
            wg2.done();
        });
        wg.wait();
        let timeout = gort::time::after(Duration::from_secs(10));
        let got = gort::select! {
            recv(rx) -> v => v.unwrap(),
            recv(timeout) -> _ => 0,
        };
        assert_eq!(got, 5);
    });
}

fn cpu_time() -> Duration {
    // SAFETY: `ru` is a valid, writable rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// A runtime with only timers pending sleeps in the poller until the earliest: no busy
/// polling (alone in a child process, with a generous bound).
#[test]
fn idle_runtime_with_only_timers_sleeps() {
    if !alone("idle_runtime_with_only_timers_sleeps") {
        return;
    }
    rt(2).block_on(|| {
        let (_a, _b) = pair(); // a registered socket nobody reads: nothing to poll for
        let before = cpu_time();
        let t = Instant::now();
        gort::time::sleep(Duration::from_millis(300));
        let cpu = cpu_time().saturating_sub(before);
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert!(
            cpu < Duration::from_millis(250),
            "{cpu:?} of CPU while sleeping"
        );
    });
}

/// Every socket gort makes is non-blocking and close-on-exec from birth.
#[test]
fn sockets_are_nonblocking_and_cloexec() {
    use std::os::fd::AsRawFd;
    fn check(fd: i32, what: &str) {
        // SAFETY: fcntl queries on a descriptor we hold open.
        let (fl, fdfl) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFL),
                libc::fcntl(fd, libc::F_GETFD),
            )
        };
        assert!(fl & libc::O_NONBLOCK != 0, "{what} is blocking");
        assert!(fdfl & libc::FD_CLOEXEC != 0, "{what} is not close-on-exec");
    }
    rt(2).block_on(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        check(l.as_raw_fd(), "listener");
        let (c, s) = pair();
        check(c.as_raw_fd(), "connected stream");
        check(s.as_raw_fd(), "accepted stream");
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        check(u.as_raw_fd(), "udp socket");
        let (x, _y) = UnixStream::pair().unwrap();
        check(x.as_raw_fd(), "unix stream");
    });
}
