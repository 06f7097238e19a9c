//! `io_stream`'s drained note: after a short transfer the next one waits for readiness
//! before it tries, and still sees every byte that arrives (or room that frees up) later.
//! (On a Unix socket pair carrying plain bytes, which drains as TCP does.)
#![cfg(not(loom))]

mod common;

use common::pair;
use gort_netpoll::{Direction, Driver};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// A short read, then data that arrives only while the next read waits: that read makes one
/// attempt (it waits first, instead of trying, failing with `WouldBlock` and waiting), and
/// gets the data. Data that arrives between two reads is read too.
#[test]
fn a_short_read_waits_before_the_next_attempt_and_misses_nothing() {
    let d = Driver::start().unwrap();
    let (a, mut b) = pair();
    let src = d.register(a).unwrap();
    let attempts = AtomicUsize::new(0);
    let read = |buf: &mut [u8]| {
        src.io_stream(Direction::Read, buf.len(), || {
            attempts.fetch_add(1, Ordering::Relaxed);
            src.get_ref().read(buf)
        })
    };
    let mut buf = [0u8; 64];

    b.write_all(b"hello").unwrap();
    // Consume the edge of "hello" so no readiness is left over for the second read.
    src.wait(Direction::Read).unwrap();
    assert_eq!(read(&mut buf).unwrap(), 5);
    assert_eq!(attempts.load(Ordering::Relaxed), 1);

    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        b.write_all(b"world!").unwrap();
        b
    });
    assert_eq!(
        read(&mut buf).unwrap(),
        6,
        "the read after a short one lost data"
    );
    assert_eq!(&buf[..6], b"world!");
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        2,
        "the read after a short one tried before waiting"
    );
    let mut b = writer.join().unwrap();

    // Data already there when the next read starts (its edge raised meanwhile).
    b.write_all(b"abc").unwrap();
    assert_eq!(read(&mut buf).unwrap(), 3);
    assert_eq!(&buf[..3], b"abc");

    // A full read says nothing about the queue: the next read tries at once. (The explicit
    // wait consumes the edge, and with it the short read's note: the next read must not wait
    // for another edge, which would never come.)
    b.write_all(&[7u8; 100]).unwrap();
    let mut small = [0u8; 10];
    src.wait(Direction::Read).unwrap();
    let before = attempts.load(Ordering::Relaxed);
    assert_eq!(read(&mut small).unwrap(), 10);
    assert_eq!(read(&mut small).unwrap(), 10);
    assert_eq!(attempts.load(Ordering::Relaxed), before + 2);

    // End of file after a short read: the peer's close raises an edge.
    let mut rest = [0u8; 200];
    assert_eq!(read(&mut rest).unwrap(), 80);
    drop(b);
    assert_eq!(read(&mut rest).unwrap(), 0);
}

/// A short write (the send buffer filled), then a reader that drains the peer slowly: the
/// next write waits for room before it tries, and every byte arrives in order.
#[test]
fn a_short_write_waits_for_room_and_every_byte_arrives() {
    let d = Driver::start().unwrap();
    let (a, b) = pair();
    let src = d.register(a).unwrap();
    let attempts = AtomicUsize::new(0);
    let write = |buf: &[u8]| {
        src.io_stream(Direction::Write, buf.len(), || {
            attempts.fetch_add(1, Ordering::Relaxed);
            src.get_ref().write(buf)
        })
    };
    let data: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    // Consume the registration's writable edge so no readiness is left over.
    src.wait(Direction::Write).unwrap();
    let first = write(&data).unwrap();
    assert!(first < data.len(), "4 MiB fit in a socket buffer");
    assert_eq!(attempts.load(Ordering::Relaxed), 1);

    let expected = data.clone();
    let reader = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        b.set_nonblocking(false).unwrap();
        let mut got = Vec::with_capacity(expected.len());
        let mut buf = vec![0u8; 4096];
        while got.len() < expected.len() {
            let n = (&b).read(&mut buf).unwrap();
            assert!(n > 0, "early end of file");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == expected, "bytes arrived out of order or changed");
    });
    // The reader sleeps: the write after the short one must wait, then try once.
    let mut done = first + write(&data[first..]).unwrap();
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        2,
        "the write after a short one tried before waiting"
    );
    // The rest, racing the reader (edges may now be left over: attempts are not counted).
    while done < data.len() {
        done += write(&data[done..]).unwrap();
    }
    reader.join().unwrap();
}

/// Data and the peer's close already queued when the socket is registered: the one edge
/// that reports both is consumed by a wait, the read that follows is short, and the read
/// after it must return end-of-file at once — not wait, as the drained note would have it,
/// for an edge that will never come (two goroutines reading one stream hung that way, about
/// one run in twenty).
#[test]
fn a_short_read_after_the_peer_closed_does_not_wait() {
    let d = Driver::start().unwrap();
    let (a, mut b) = pair();
    b.write_all(b"hello").unwrap();
    b.shutdown(std::net::Shutdown::Write).unwrap();
    let src = d.register(a).unwrap();
    // Without the fix the second read would wait forever: let a deadline end it instead.
    src.set_deadline(
        Direction::Read,
        Some(std::time::Instant::now() + Duration::from_secs(5)),
    )
    .unwrap();
    src.wait(Direction::Read).unwrap();
    let read =
        |buf: &mut [u8]| src.io_stream(Direction::Read, buf.len(), || src.get_ref().read(buf));
    let mut buf = [0u8; 64];
    assert_eq!(read(&mut buf).unwrap(), 5);
    assert_eq!(
        read(&mut buf).expect("the read after a short one waited past the peer's close"),
        0
    );
}

/// `io_stream_hinted`: the operation's own word on whether it drained the direction (a TCP
/// read's `TCP_INQ` hint) stands in for "fewer bytes than asked for". After a read of exactly
/// the size asked for that says "drained", the next read waits before its first attempt and
/// still gets what arrives later; one that says "more queued" lets the next read try at once.
#[test]
fn a_hinted_drain_waits_before_the_next_attempt_and_misses_nothing() {
    let d = Driver::start().unwrap();
    let (a, mut b) = pair();
    let src = d.register(a).unwrap();
    let attempts = AtomicUsize::new(0);
    // The hint a Unix byte stream would give: nothing left once the read took what we wrote.
    let queued = std::sync::Arc::new(AtomicUsize::new(0));
    let read = |buf: &mut [u8]| {
        src.io_stream_hinted(Direction::Read, || {
            attempts.fetch_add(1, Ordering::Relaxed);
            let n = src.get_ref().read(buf)?;
            let left = queued.fetch_sub(n, Ordering::Relaxed) - n;
            Ok((n, left == 0))
        })
    };
    let mut buf = [0u8; 4];

    queued.store(4, Ordering::Relaxed);
    b.write_all(b"ping").unwrap();
    src.wait(Direction::Read).unwrap();
    assert_eq!(read(&mut buf).unwrap(), 4, "a full read");
    assert_eq!(attempts.load(Ordering::Relaxed), 1);

    let q = queued.clone();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        q.store(4, Ordering::Relaxed);
        b.write_all(b"pong").unwrap();
        b
    });
    assert_eq!(
        read(&mut buf).unwrap(),
        4,
        "the read after a drained one lost data"
    );
    assert_eq!(&buf, b"pong");
    assert_eq!(
        attempts.load(Ordering::Relaxed),
        2,
        "the read after a hinted drain tried before waiting"
    );
    let mut b = writer.join().unwrap();

    // Two messages queued: the first read says more is there, the second reads at once.
    queued.store(8, Ordering::Relaxed);
    b.write_all(b"abcdefgh").unwrap();
    let before = attempts.load(Ordering::Relaxed);
    assert_eq!(read(&mut buf).unwrap(), 4);
    assert_eq!(&buf, b"abcd");
    assert_eq!(read(&mut buf).unwrap(), 4);
    assert_eq!(&buf, b"efgh");
    assert_eq!(attempts.load(Ordering::Relaxed), before + 2);
}
