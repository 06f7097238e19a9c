//! `cargo xtask demo`'s part for the facade: a goroutine-per-connection echo server and an
//! HTTP/1.1 keep-alive server written with plain blocking `gort::net` calls, thousands of
//! idle connections parked on the netpoller on a handful of threads, and Go's prime sieve.

#[path = "common/http.rs"]
mod http;

use gort::net::{TcpListener, TcpStream};
use std::io::{Read, Write};
use std::time::Instant;

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A listener whose every connection is served by `serve` in its own goroutine.
fn server(serve: fn(TcpStream)) -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().unwrap();
    gort::go(move || {
        while let Ok((c, _)) = l.accept() {
            gort::go(move || serve(c));
        }
    });
    addr
}

fn echo(mut c: TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = c.read(&mut buf) {
        if c.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Runs `n` client goroutines doing `f` and waits for them.
fn clients(n: usize, f: impl Fn(usize) + Send + Sync + Clone + 'static) {
    let wg = std::sync::Arc::new(gort::sync::WaitGroup::new());
    wg.add(n as i32);
    for i in 0..n {
        let (wg, f) = (wg.clone(), f.clone());
        gort::go(move || {
            f(i);
            wg.done();
        });
    }
    wg.wait();
}

fn main() {
    // SAFETY: the goroutines hold no thread-bound values across calls that park.
    unsafe { gort::run(demo) }
}

fn demo() {
    println!(
        "gort facade demo: {} {} GOMAXPROCS={} ({})",
        gort::runtime::GOOS,
        gort::runtime::GOARCH,
        gort::runtime::gomaxprocs(0),
        gort::runtime::version()
    );

    // 1. Echo: 100 connections x 500 round trips, a goroutine per connection on each side.
    print!("[1/4] echo server, 100 clients x 500 round trips ... ");
    let _ = std::io::stdout().flush();
    let addr = server(echo);
    let t = Instant::now();
    clients(100, move |i| {
        let mut c = TcpStream::connect(addr).unwrap();
        let msg = [i as u8; 64];
        let mut back = [0u8; 64];
        for _ in 0..500 {
            c.write_all(&msg).unwrap();
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, msg);
        }
    });
    let d = t.elapsed();
    println!("{:.0} round trips/s ({d:.2?})", 50_000.0 / d.as_secs_f64());

    // 2. HTTP/1.1 keep-alive: 50 clients x 400 requests.
    print!("[2/4] HTTP/1.1 hello-world, 50 keep-alive clients x 400 requests ... ");
    let _ = std::io::stdout().flush();
    let addr = server(|c| {
        let _ = http::serve(c);
    });
    let t = Instant::now();
    clients(50, move |_| {
        let mut c = TcpStream::connect(addr).unwrap();
        let mut back = vec![0u8; http::HELLO.len()];
        for _ in 0..400 {
            c.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n")
                .unwrap();
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, http::HELLO);
        }
    });
    let d = t.elapsed();
    println!("{:.0} requests/s ({d:.2?})", 20_000.0 / d.as_secs_f64());

    // 3. Idle connections park on the netpoller: no thread per connection.
    print!("[3/4] 2000 idle connections, each with a goroutine blocked in read ... ");
    let _ = std::io::stdout().flush();
    let before = threads();
    let addr = server(echo);
    let conns: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    gort::time::sleep(std::time::Duration::from_millis(100));
    println!(
        "{} goroutines on {} OS threads (before: {before})",
        gort::runtime::num_goroutine(),
        threads()
    );
    drop(conns);

    // 4. Go's concurrent prime sieve over unbuffered channels.
    print!("[4/4] prime sieve, first 2000 primes ... ");
    let _ = std::io::stdout().flush();
    let t = Instant::now();
    let (tx, mut rx) = gort::chan::<u64>(0);
    gort::go(move || {
        for i in 2.. {
            if tx.send(i).is_err() {
                return;
            }
        }
    });
    let mut last = 0;
    for _ in 0..2000 {
        let prime = rx.recv().unwrap();
        last = prime;
        let (tx2, rx2) = gort::chan(0);
        gort::go(move || {
            for i in rx.iter() {
                if i % prime != 0 && tx2.send(i).is_err() {
                    return;
                }
            }
        });
        rx = rx2;
    }
    println!("the 2000th is {last} ({:.2?})", t.elapsed());
    println!("done");
}
