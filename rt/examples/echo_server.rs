//! A TCP echo server on gort: one goroutine per connection, plain blocking reads and
//! writes. `cargo run --release -p gort --example echo_server [ADDR]` (default
//! 127.0.0.1:7007); try it with the `echo_client` example or `nc`.
//!
//! When the process runs out of descriptors, `accept` returns EMFILE; the server backs off
//! (5 ms doubling to 1 s, Go's http.Server rule) instead of crashing or spinning.

use std::io::{Read, Write};
use std::time::Duration;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7007".into());
    // SAFETY: the goroutines hold no thread-bound values across calls that park.
    unsafe {
        gort::run(move || {
            let l = gort::net::TcpListener::bind(addr.as_str()).expect("bind");
            println!("echo server on {}", l.local_addr().unwrap());
            let mut backoff = Duration::ZERO;
            loop {
                let mut c = match l.accept() {
                    Ok((c, _)) => {
                        backoff = Duration::ZERO;
                        c
                    }
                    Err(e) => {
                        backoff =
                            (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                        eprintln!("accept: {e}; retrying in {backoff:?}");
                        gort::time::sleep(backoff);
                        continue;
                    }
                };
                gort::go(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = c.read(&mut buf) {
                        if c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        })
    }
}
