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
            gort::go(move || {
                let mut c = TcpStream::connect(addr.as_str()).expect("connect");
                let msg = (i as u64).to_le_bytes();
                let mut back = [0u8; 8];
                c.write_all(&msg).unwrap();
                c.read_exact(&mut back).unwrap();
                assert_eq!(back, msg);
                connected.done();
                release.wait();
                c.write_all(&msg).unwrap();
                c.read_exact(&mut back).unwrap();
                assert_eq!(back, msg);
                done.done();
            });
        }
        connected.wait();
        println!("{CONNS} connected and echoed in {:?}", t.elapsed());
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
    let (o, p) = (open.clone(), peak.clone());
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
                let (o, p) = (o.clone(), p.clone());
                gort::go(move || {
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    let mut buf = [0u8; 64];
                    while let Ok(n @ 1..) = c.read(&mut buf) {
                        if c.write_all(&buf[..n]).is_err() {
                            break;
                        }
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
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("peak concurrent server goroutines: {peak}");
    assert!(peak >= CONNS, "only {peak} connections were open at once");
    drop(rt);
}
