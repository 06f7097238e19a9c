//! Go's concurrent prime sieve: a chain of goroutines, each filtering the multiples of one
//! prime out of the numbers flowing through unbuffered channels.
//! `cargo run --release -p gort --example sieve [N]` prints the first N primes (default 100).

use gort::{Receiver, Sender, chan, go};

fn generate(tx: Sender<u64>) {
    for i in 2.. {
        if tx.send(i).is_err() {
            return;
        }
    }
}

fn filter(rx: Receiver<u64>, tx: Sender<u64>, prime: u64) {
    for i in rx.iter() {
        if i % prime != 0 && tx.send(i).is_err() {
            return;
        }
    }
}

/// The first `n` primes.
pub fn primes(n: usize) -> Vec<u64> {
    let (tx, mut rx) = chan(0);
    go(move || generate(tx));
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let prime = rx.recv().unwrap();
        out.push(prime);
        let (tx2, rx2) = chan(0);
        go(move || filter(rx, tx2, prime));
        rx = rx2;
    }
    out
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    // SAFETY: the goroutines hold no thread-bound values across calls that park.
    let ps = unsafe { gort::run(move || primes(n)) };
    for p in ps {
        println!("{p}");
    }
}
