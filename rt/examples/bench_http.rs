//! HTTP hello-world benchmark: `wrk -t2 -c100 -d10s --latency` against a gort server (one
//! goroutine per connection, httparse, keep-alive) and a tokio + hyper server, each in this
//! process; `rt/bench-go/http.go` is Go's net/http. Prints requests per second and wrk's p99
//! latency as JSON lines. Needs `wrk` (the bench set-up installs Debian's package); `--quick`
//! runs wrk for 1 s with 10 connections.

#[path = "common/http.rs"]
mod http;

use std::net::SocketAddr;
use std::process::Command;

fn emit(bench: &str, implementation: &str, value: f64, unit: &str) {
    println!(
        "{{\"bench\":\"{bench}\",\"implementation\":\"{implementation}\",\"value\":{value:.3},\"unit\":\"{unit}\"}}"
    );
}

/// A wrk latency ("1.23ms", "850.00us", "1.01s") in µs.
fn micros(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// Runs wrk against `addr`; (requests per second, p99 latency in µs).
fn wrk(addr: SocketAddr, quick: bool) -> (f64, f64) {
    let (conns, secs) = if quick { ("10", "1s") } else { ("100", "10s") };
    let out = Command::new("wrk")
        .args(["-t2", "-c", conns, "-d", secs, "--latency"])
        .arg(format!("http://{addr}/"))
        .output()
        .unwrap_or_else(|e| {
            eprintln!("bench_http: cannot run wrk ({e}); install it (Debian: apt-get install wrk)");
            std::process::exit(1)
        });
    let text = String::from_utf8_lossy(&out.stdout);
    let mut rps = None;
    let mut p99 = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("Requests/sec:") => rps = words.next().and_then(|v| v.parse::<f64>().ok()),
            Some("99%") => p99 = words.next().and_then(micros),
            _ => {}
        }
    }
    match (rps, p99) {
        (Some(r), Some(p)) => (r, p),
        _ => {
            eprintln!("bench_http: could not read wrk's output:\n{text}");
            std::process::exit(1)
        }
    }
}

fn gort_http(quick: bool) -> (f64, f64) {
    // SAFETY: the server goroutines hold no thread-bound values across calls that park.
    let rt = unsafe { gort::Builder::new().build() }.expect("valid configuration");
    let addr = rt.block_on(|| {
        let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        gort::go(move || {
            while let Ok((c, _)) = l.accept() {
                gort::go(move || {
                    let _ = http::serve(c);
                });
            }
        });
        addr
    });
    wrk(addr, quick)
}

fn tokio_hyper_http(quick: bool) -> (f64, f64) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((c, _)) = l.accept().await {
                c.set_nodelay(true).unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"Hello, World!"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(c), svc)
                        .await;
                });
            }
        });
        addr
    });
    wrk(addr, quick)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only gort` (or tokio) runs one implementation.
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    for (name, f) in [
        ("gort", gort_http as fn(bool) -> (f64, f64)),
        ("tokio", tokio_hyper_http),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let (rps, p99) = f(quick);
        emit("rt/http/requests-per-s", name, rps, "req/s");
        emit("rt/http/p99", name, p99, "us");
    }
}
