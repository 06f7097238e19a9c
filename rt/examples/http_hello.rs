//! An HTTP/1.1 hello-world server on gort: one goroutine per connection, keep-alive,
//! requests parsed with httparse. `cargo run --release -p gort --example http_hello [ADDR]`
//! (default 127.0.0.1:8080), then `curl http://127.0.0.1:8080/` or `wrk`.

#[path = "common/http.rs"]
mod http;

use std::time::Duration;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    // SAFETY: the goroutines hold no thread-bound values across calls that park.
    unsafe {
        gort::run(move || {
            let l = gort::net::TcpListener::bind(addr.as_str()).expect("bind");
            println!("listening on http://{}/", l.local_addr().unwrap());
            let mut backoff = Duration::ZERO;
            loop {
                match l.accept() {
                    Ok((c, _)) => {
                        backoff = Duration::ZERO;
                        gort::go(move || {
                            let _ = http::serve(c);
                        });
                    }
                    Err(e) => {
                        // Out of descriptors (EMFILE) and the like: back off, as Go's
                        // http.Server does (5 ms doubling to 1 s), then try again.
                        backoff =
                            (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                        eprintln!("accept: {e}; retrying in {backoff:?}");
                        gort::time::sleep(backoff);
                    }
                }
            }
        })
    }
}
