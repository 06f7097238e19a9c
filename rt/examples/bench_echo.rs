//! Echo benchmark: 100 connections x 20k round trips x 64 B over loopback, client and server
//! in one process, for gort (goroutines + gort::net) and tokio (multi-thread runtime);
//! `rt/bench-go/echo.go` is the Go side. Prints round trips per second and the p99 round-trip
//! latency as JSON lines. Run by `cargo xtask bench`; `--quick` scales it down, `--only gort|tokio` runs one.
//! With `ECHO_PCT` set, each side also prints its latency distribution (mean, p10 … p99.9,
//! max, in µs) to stderr.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

const SIZE: usize = 64;

fn emit(bench: &str, implementation: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"{implementation}\",\"value\":{value:.3},\"unit\":\"{unit}\"}}"
    );
}

/// (round trips per second, p99 latency in µs) from the per-round-trip latencies (ns).
fn summarize(mut lat: Vec<u32>, elapsed: f64) -> (f64, f64) {
    let n = lat.len();
    lat.sort_unstable();
    let p99 = lat[(n * 99 / 100).min(n - 1)] as f64 / 1e3;
    if std::env::var_os("ECHO_PCT").is_some() {
        let q = |p: usize| lat[(n * p / 1000).min(n - 1)] as f64 / 1e3;
        let mean = lat.iter().map(|&x| x as f64).sum::<f64>() / n as f64 / 1e3;
        eprintln!(
            "mean {mean:.0} p10 {:.0} p50 {:.0} p90 {:.0} p99 {:.0} p999 {:.0} max {:.0}",
            q(100),
            q(500),
            q(900),
            q(990),
            q(999),
            lat[n - 1] as f64 / 1e3
        );
    }
    (n as f64 / elapsed, p99)
}

fn gort_echo(conns: usize, rounds: usize) -> (f64, f64) {
    use gort::net::{TcpListener, TcpStream};
    // SAFETY: the benchmark goroutines hold no thread-bound values across calls that park.
    let rt = unsafe { gort::Builder::new().build() }.expect("valid configuration");
    rt.block_on(move || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        gort::go(move || {
            while let Ok((mut c, _)) = l.accept() {
                gort::go(move || {
                    let mut buf = [0u8; SIZE];
                    while let Ok(n @ 1..) = c.read(&mut buf) {
                        if c.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let ready = Arc::new(gort::sync::WaitGroup::new());
        let start = Arc::new(gort::sync::WaitGroup::new());
        ready.add(conns as i32);
        start.add(1);
        let (tx, rx) = gort::chan(conns);
        for _ in 0..conns {
            let (ready, start, tx) = (ready.clone(), start.clone(), tx.clone());
            gort::go(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                let msg = [7u8; SIZE];
                let mut back = [0u8; SIZE];
                let mut lat = Vec::with_capacity(rounds);
                ready.done();
                start.wait();
                for _ in 0..rounds {
                    let t = Instant::now();
                    c.write_all(&msg).unwrap();
                    c.read_exact(&mut back).unwrap();
                    lat.push(t.elapsed().as_nanos() as u32);
                }
                tx.send(lat).unwrap();
            });
        }
        ready.wait();
        let t = Instant::now();
        start.done();
        let mut all = Vec::with_capacity(conns * rounds);
        for _ in 0..conns {
            all.extend(rx.recv().unwrap());
        }
        summarize(all, t.elapsed().as_secs_f64())
    })
}

fn tokio_echo(conns: usize, rounds: usize) -> (f64, f64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                c.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; SIZE];
                    while let Ok(n @ 1..) = c.read(&mut buf).await {
                        if c.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let barrier = Arc::new(tokio::sync::Barrier::new(conns + 1));
        let mut hs = Vec::new();
        for _ in 0..conns {
            let barrier = barrier.clone();
            hs.push(tokio::spawn(async move {
                let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
                c.set_nodelay(true).unwrap();
                let msg = [7u8; SIZE];
                let mut back = [0u8; SIZE];
                let mut lat = Vec::with_capacity(rounds);
                barrier.wait().await;
                for _ in 0..rounds {
                    let t = Instant::now();
                    c.write_all(&msg).await.unwrap();
                    c.read_exact(&mut back).await.unwrap();
                    lat.push(t.elapsed().as_nanos() as u32);
                }
                lat
            }));
        }
        barrier.wait().await;
        let t = Instant::now();
        let mut all = Vec::with_capacity(conns * rounds);
        for h in hs {
            all.extend(h.await.unwrap());
        }
        summarize(all, t.elapsed().as_secs_f64())
    })
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only gort` (or tokio) runs one implementation.
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let (conns, rounds) = if quick { (10, 1000) } else { (100, 20_000) };
    for (name, f) in [
        ("gort", gort_echo as fn(usize, usize) -> (f64, f64)),
        ("tokio", tokio_echo),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let (rate, p99) = f(conns, rounds);
        emit("rt/echo/msgs-per-s", name, rate, "msgs/s");
        emit("rt/echo/p99", name, p99, "us");
    }
}
