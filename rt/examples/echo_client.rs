//! A TCP echo client on gort: N goroutines, each with its own connection, send lines and
//! check the echoes. `cargo run --release -p gort --example echo_client [ADDR] [CONNS]
//! [ROUNDS]` (defaults 127.0.0.1:7007, 10, 1000), against the `echo_server` example.

use std::io::{Read, Write};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:7007".into());
    let conns: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    // SAFETY: the goroutines hold no thread-bound values across calls that park.
    unsafe {
        gort::run(move || {
            let t = Instant::now();
            let (tx, rx) = gort::chan(conns);
            for i in 0..conns {
                let (addr, tx) = (addr.clone(), tx.clone());
                gort::go(move || {
                    let r = (|| -> std::io::Result<()> {
                        let mut c = gort::net::TcpStream::connect(addr.as_str())?;
                        let mut back = Vec::new();
                        for r in 0..rounds {
                            let line = format!("hello {i} {r}\n");
                            c.write_all(line.as_bytes())?;
                            back.resize(line.len(), 0);
                            c.read_exact(&mut back)?;
                            assert_eq!(back, line.as_bytes(), "echo mismatch");
                        }
                        Ok(())
                    })();
                    tx.send(r).unwrap();
                });
            }
            for _ in 0..conns {
                if let Err(e) = rx.recv().unwrap() {
                    eprintln!("client: {e}");
                    std::process::exit(1);
                }
            }
            let n = conns * rounds;
            println!(
                "{n} echoes over {conns} connections in {:?} ({:.0}/s)",
                t.elapsed(),
                n as f64 / t.elapsed().as_secs_f64()
            );
        })
    }
}
