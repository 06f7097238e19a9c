//! 10k concurrent TCP connections, each served by its own goroutine, with the clients (10k
//! goroutines of a child process: one process cannot hold both ends under a 20k descriptor
//! limit) connecting all at once — a flood beyond the listen backlog — then staying open
//! and idle while one more connection is still answered.
//! Heavy: ignored by default; `cargo xtask test` runs it in release, serially.
#![cfg(not(loom))]

use gort::net::{TcpListener, TcpStream};
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CONNS: usize = 10_000;
const TEST: &str = "rt_ten_thousand_concurrent_connections";

fn runtime() -> gort::Runtime {
    // SAFETY: the test goroutines hold no thread-bound values across scheduling points.
    unsafe { gort::Builder::new().gomaxprocs(2).build() }.unwrap()
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading and raising our own limit with a valid rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(
        lim.rlim_cur as usize >= CONNS + 100,
        "need {} descriptors per process, the hard limit is {}",
        CONNS + 100,
        lim.rlim_cur
    );
}

/// Connect and do one round trip of `msg`. A flood past the backlog makes the server's
/// kernel drop handshakes; a connection the kernel then resets before the server ever
/// accepted it is retried, as a real client would (counted in `resets`). The server side
/// checks that it never dropped a connection it accepted.
fn first_round_trip(addr: &str, msg: &[u8; 8], resets: &AtomicUsize) -> TcpStream {
    let mut back = [0u8; 8];
    for _ in 0..5 {
        let mut c = TcpStream::connect(addr).expect("connect");
        let r = c.write_all(msg).and_then(|()| c.read_exact(&mut back));
        match r {
            Ok(()) => {
                assert_eq!(&back, msg);
                return c;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                resets.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("first round trip: {e}"),
        }
    }
    panic!("5 connections in a row were reset");
}

/// The child: 10k client goroutines, each connects and does one round trip, then all wait
/// until every one has (so all are open at once); then one more connection does 100 round
/// trips while the 10k sit idle; then each does a second round trip.
fn clients(addr: String) {
    raise_fd_limit();
    runtime().block_on(move || {
        let t = Instant::now();
        let connected = Arc::new(gort::sync::WaitGroup::new());
        let release = Arc::new(gort::sync::WaitGroup::new());
        let done = Arc::new(gort::sync::WaitGroup::new());
        let resets = Arc::new(AtomicUsize::new(0));
        connected.add(CONNS as i32);
        release.add(1);
        done.add(CONNS as i32);
        for i in 0..CONNS {
            let (addr, connected, release, done) = (
                addr.clone(),
                connected.clone(),
                release.clone(),
                done.clone(),
            );
            let resets = resets.clone();
            gort::go(move || {
                let msg = (i as u64).to_le_bytes();
                let mut back = [0u8; 8];
                let mut c = first_round_trip(&addr, &msg, &resets);
                connected.done();
                release.wait();
                c.write_all(&msg).unwrap();
                c.read_exact(&mut back).unwrap();
                assert_eq!(back, msg);
                done.done();
            });
        }
        connected.wait();
        println!(
            "{CONNS} connected and echoed in {:?} ({} reset by the kernel and reconnected)",
            t.elapsed(),
            resets.load(Ordering::Relaxed)
        );
        let t = Instant::now();
        let mut c = TcpStream::connect(addr.as_str()).unwrap();
        for _ in 0..100 {
            c.write_all(b"one more").unwrap();
            let mut back = [0u8; 8];
            c.read_exact(&mut back).unwrap();
        }
        println!(
            "100 round trips beside {CONNS} idle connections in {:?}",
            t.elapsed()
        );
        release.done();
        done.wait();
        println!("ok");
    });
}

#[test]
#[ignore = "heavy: run in release by `cargo xtask test`"]
fn rt_ten_thousand_concurrent_connections() {
    if let Ok(addr) = std::env::var("GORT_HEAVY_CLIENT_ADDR") {
        clients(addr);
        return;
    }
    raise_fd_limit();
    let rt = runtime();
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    // What went wrong on the server's side: an accepted connection that failed or ended
    // before its client's first message came back.
    let faults = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (o, p, f) = (open.clone(), peak.clone(), faults.clone());
    let addr = rt.block_on(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        gort::go(move || {
            loop {
                let (mut c, _) = match l.accept() {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("accept: {e}; backing off");
                        gort::time::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let (o, p, f) = (o.clone(), p.clone(), f.clone());
                gort::go(move || {
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    let mut buf = [0u8; 64];
                    let mut echoed = 0;
                    let fault = loop {
                        match c.read(&mut buf) {
                            // The client's process exits once every connection has done
                            // its two round trips.
                            Ok(0) if echoed >= 16 => break None,
                            Ok(0) => break Some(format!("end of file after {echoed} bytes")),
                            Ok(n) => match c.write_all(&buf[..n]) {
                                Ok(()) => echoed += n,
                                Err(e) => break Some(format!("write after {echoed} bytes: {e}")),
                            },
                            Err(_) if echoed >= 16 => break None,
                            Err(e) => break Some(format!("read after {echoed} bytes: {e}")),
                        }
                    };
                    if let Some(fault) = fault {
                        f.lock().unwrap().push(fault);
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        addr
    });
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GORT_HEAVY_CLIENT_ADDR", addr.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("\nok\n"),
        "client failed: {out:?}"
    );
    let faults = faults.lock().unwrap().clone();
    assert!(
        faults.is_empty(),
        "the server failed {} accepted connections: {:?}",
        faults.len(),
        &faults[..faults.len().min(10)]
    );
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("peak concurrent server goroutines: {peak}");
    assert!(peak >= CONNS, "only {peak} connections were open at once");
    drop(rt);
}
