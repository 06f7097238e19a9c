//! Channels: Go's semantics between goroutines, between threads, and across the two.
#![cfg(not(loom))]

mod common;

use common::{child_mode, os_threads, run_child, runtime};
use gort_sched::chan::{CloseError, RecvError, SendError, TryRecvError, TrySendError};
use gort_sched::{chan, go, spawn};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn unbuffered_rendezvous_between_goroutines_keeps_order() {
    for procs in [1, 2] {
        let rt = runtime(procs);
        let got = rt.block_on(|| {
            let (tx, rx) = chan::<u32>(0);
            go(move || {
                for i in 0..10_000 {
                    tx.send(i).unwrap();
                }
            });
            rx.iter().collect::<Vec<_>>()
        });
        assert_eq!(got, (0..10_000).collect::<Vec<_>>(), "procs {procs}");
    }
}

#[test]
fn buffered_channel_len_cap_full_and_drain_after_close() {
    let (tx, rx) = chan::<u8>(3);
    assert_eq!((tx.capacity(), rx.capacity(), tx.len()), (3, 3, 0));
    for i in 0..3 {
        tx.try_send(i).unwrap();
    }
    assert_eq!(rx.len(), 3);
    match tx.try_send(9) {
        Err(TrySendError::Full(9)) => {}
        other => panic!("expected Full(9), got {other:?}"),
    }
    tx.close().unwrap();
    assert!(tx.is_closed());
    assert_eq!(tx.close(), Err(CloseError), "closing twice is an error");
    assert_eq!(
        tx.send(7),
        Err(SendError(7)),
        "send on closed returns the value"
    );
    assert_eq!(rx.recv(), Ok(0));
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(rx.recv(), Ok(2));
    assert_eq!(rx.recv(), Err(RecvError));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn try_recv_on_empty_and_unbuffered_try_send_without_receiver() {
    let (tx, rx) = chan::<u8>(0);
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert!(matches!(tx.try_send(1), Err(TrySendError::Full(1))));
}

#[test]
fn dropping_every_sender_closes_the_channel() {
    let (tx, rx) = chan::<u8>(2);
    let tx2 = tx.clone();
    tx.send(1).unwrap();
    drop(tx);
    tx2.send(2).unwrap();
    drop(tx2);
    assert_eq!(rx.iter().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(
        rx.recv(),
        Err(RecvError),
        "a receive with all senders gone reports closed"
    );
}

#[test]
fn dropping_the_receiver_fails_blocked_senders_with_their_values() {
    let rt = runtime(2);
    let (tx, rx) = chan::<String>(0);
    let blocked = rt.spawn(move || tx.send("kept".to_string())).unwrap();
    // Let the sender block, then drop the only receiver.
    std::thread::sleep(Duration::from_millis(20));
    drop(rx);
    match blocked.join().unwrap() {
        Err(SendError(v)) => assert_eq!(v, "kept"),
        Ok(()) => panic!("a send with no receiver succeeded"),
    }
}

#[test]
fn close_wakes_every_blocked_receiver_and_sender() {
    let rt = runtime(2);
    let (tx, rx) = chan::<u32>(0);
    let receivers: Vec<_> = (0..50)
        .map(|_| {
            let rx = rx.clone();
            rt.spawn(move || rx.recv()).unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    tx.close().unwrap();
    for h in receivers {
        assert_eq!(h.join().unwrap(), Err(RecvError));
    }
    // Senders blocked on a full channel get their values back on close.
    let (tx, rx) = chan::<u32>(1);
    tx.send(0).unwrap();
    let senders: Vec<_> = (1..=20)
        .map(|i| {
            let tx = tx.clone();
            rt.spawn(move || tx.send(i)).unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(20));
    tx.close().unwrap();
    let mut back: Vec<u32> = senders
        .into_iter()
        .filter_map(|h| h.join().unwrap().err().map(|e| e.0))
        .collect();
    back.sort();
    assert_eq!(back, (1..=20).collect::<Vec<_>>());
    assert_eq!(rx.recv(), Ok(0), "the buffered value survives the close");
    assert_eq!(rx.recv(), Err(RecvError));
}

#[test]
fn threads_and_goroutines_share_channels_in_both_directions() {
    let rt = runtime(2);
    let (to_g, from_t) = chan::<u64>(0);
    let (to_t, from_g) = chan::<u64>(4);
    rt.go(move || {
        for v in from_t.iter() {
            to_t.send(v * 2).unwrap();
        }
    })
    .unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..5_000 {
            to_g.send(i).unwrap();
        }
    });
    let sum: u64 = from_g.iter().take(5_000).sum();
    feeder.join().unwrap();
    assert_eq!(sum, 2 * (0..5_000u64).sum::<u64>());
}

#[test]
fn many_producers_and_consumers_deliver_each_value_exactly_once() {
    let rt = runtime(2);
    for cap in [0, 1, 16] {
        let (tx, rx) = chan::<usize>(cap);
        let seen = Arc::new((0..8000).map(|_| AtomicUsize::new(0)).collect::<Vec<_>>());
        let mut hs = Vec::new();
        for p in 0..4 {
            let tx = tx.clone();
            hs.push(
                rt.spawn(move || {
                    for i in 0..2000 {
                        tx.send(p * 2000 + i).unwrap();
                    }
                })
                .unwrap(),
            );
        }
        drop(tx);
        let consumers: Vec<_> = (0..3)
            .map(|c| {
                let (rx, seen) = (rx.clone(), seen.clone());
                let body = move || {
                    for v in rx.iter() {
                        seen[v].fetch_add(1, Ordering::Relaxed);
                    }
                };
                if c == 0 {
                    // One consumer is a plain thread.
                    std::thread::spawn(body).join().map_err(|_| ())
                } else {
                    rt.spawn(body).unwrap().join().map_err(|_| ())
                }
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        for c in consumers {
            c.unwrap();
        }
        assert!(
            seen.iter().all(|s| s.load(Ordering::Relaxed) == 1),
            "cap {cap}: a value was lost or duplicated"
        );
    }
}

#[test]
fn ten_thousand_goroutines_blocked_on_channels_hold_no_thread() {
    // In a child process of its own: the count is of the process's threads, and tests
    // running beside it in this one start threads of their own (CI once saw 13 for 12).
    if child_mode().as_deref() != Some("blocked-10k") {
        let out = run_child(
            "ten_thousand_goroutines_blocked_on_channels_hold_no_thread",
            "blocked-10k",
        );
        assert!(
            out.status.success(),
            "child failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let rt = runtime(2);
    let (tx, rx) = chan::<u32>(0);
    let threads_before = os_threads();
    let waiters: Vec<_> = (0..10_000)
        .map(|_| {
            let rx = rx.clone();
            rt.spawn(move || rx.recv().unwrap()).unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let blocked_threads = os_threads();
    for i in 0..10_000 {
        tx.send(i).unwrap();
    }
    let sum: u64 = waiters
        .into_iter()
        .map(|h| u64::from(h.join().unwrap()))
        .sum();
    assert_eq!(sum, (0..10_000u64).sum::<u64>());
    assert!(
        blocked_threads <= threads_before + 8,
        "{blocked_threads} threads with 10k goroutines blocked (before: {threads_before})"
    );
}

#[test]
fn every_goroutine_waiting_on_an_unreachable_channel_is_a_deadlock() {
    if child_mode().as_deref() == Some("chan-deadlock") {
        // SAFETY: no thread-bound values are held across scheduling points.
        unsafe {
            gort_sched::run(|| {
                let (tx, rx) = chan::<u8>(0);
                go(move || {
                    let _ = rx.recv();
                });
                // Main waits to send to a goroutine that waits to receive... from another
                // channel nobody will ever use.
                let (_keep, never) = chan::<u8>(0);
                let _ = never.recv();
                drop(tx);
            })
        };
        return;
    }
    let out = run_child(
        "every_goroutine_waiting_on_an_unreachable_channel_is_a_deadlock",
        "chan-deadlock",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(
        err.contains("fatal error: all goroutines are asleep - deadlock!"),
        "stderr:\n{err}"
    );
}

#[test]
fn a_thread_woken_by_a_goroutine_is_not_mistaken_for_a_deadlock() {
    if child_mode().as_deref() == Some("thread-bridge") {
        for _ in 0..300 {
            // SAFETY: as above.
            let v = unsafe {
                gort_sched::run(|| {
                    let (to_thread, thread_in) = chan::<u32>(0);
                    let (thread_out, from_thread) = chan::<u32>(0);
                    // The thread feeds the runtime: it says so for as long as it runs
                    // (while it is blocked in a channel operation it is counted anyway).
                    let feeds = gort_sched::foreign_thread();
                    std::thread::spawn(move || {
                        let _feeds = feeds;
                        let v = thread_in.recv().unwrap();
                        thread_out.send(v + 1).unwrap();
                    });
                    to_thread.send(41).unwrap();
                    from_thread.recv().unwrap()
                })
            };
            assert_eq!(v, 42);
        }
        println!("bridged");
        return;
    }
    let out = run_child(
        "a_thread_woken_by_a_goroutine_is_not_mistaken_for_a_deadlock",
        "thread-bridge",
    );
    assert!(
        out.status.success(),
        "status {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn goroutines_blocked_on_one_channel_are_released_by_one_close() {
    let rt = runtime(2);
    let n = rt.block_on(|| {
        let (tx, rx) = chan::<()>(0);
        let done = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..20_000)
            .map(|_| {
                let (rx, done) = (rx.clone(), done.clone());
                spawn(move || {
                    assert_eq!(rx.recv(), Err(RecvError));
                    done.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect();
        tx.close().unwrap();
        for h in hs {
            h.join().unwrap();
        }
        done.load(Ordering::Relaxed)
    });
    assert_eq!(n, 20_000);
}

#[test]
fn deadline_variants_time_out_deliver_and_return_the_value() {
    use gort_sched::chan::{RecvTimeoutError, SendTimeoutError};
    let rt = runtime(2);
    rt.block_on(|| {
        let (tx, rx) = chan::<String>(0);
        let start = std::time::Instant::now();
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        match tx.send_timeout("back".to_string(), Duration::from_millis(10)) {
            Err(SendTimeoutError::Timeout(v)) => assert_eq!(v, "back"),
            other => panic!("expected a timeout with the value, got {other:?}"),
        }
        assert_eq!(
            rx.recv_timeout(Duration::ZERO),
            Err(RecvTimeoutError::Timeout)
        );
        // A value that arrives in time is delivered.
        let tx2 = tx.clone();
        go(move || {
            gort_sched::time::sleep(Duration::from_millis(5));
            tx2.send("hi".to_string()).unwrap();
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(20)).as_deref(),
            Ok("hi")
        );
        let rx2 = rx.clone();
        go(move || {
            gort_sched::time::sleep(Duration::from_millis(5));
            assert_eq!(rx2.recv().unwrap(), "there");
        });
        tx.send_deadline(
            "there".to_string(),
            std::time::Instant::now() + Duration::from_secs(20),
        )
        .unwrap();
        tx.close().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(1)),
            Err(RecvTimeoutError::Closed)
        );
        assert!(matches!(
            tx.send_timeout("x".into(), Duration::from_secs(1)),
            Err(SendTimeoutError::Closed(_))
        ));
    });
}

#[test]
fn a_thread_completes_operations_of_goroutines_abandoned_by_shutdown() {
    // Goroutines blocked in receives and a select when their runtime shuts down are
    // abandoned (as when a Go program's main returns); a plain thread that later sends to
    // them or closes their channels must neither block nor crash.
    let rt = runtime(2);
    let (tx, rx) = chan::<u32>(0);
    let (stop_tx, stop_rx) = chan::<()>(0);
    let started = Arc::new(AtomicUsize::new(0));
    for _ in 0..8 {
        let (rx, started) = (rx.clone(), started.clone());
        rt.go(move || {
            started.fetch_add(1, Ordering::SeqCst);
            let _ = rx.recv();
        })
        .unwrap();
    }
    let (rx2, stop2, s2) = (rx.clone(), stop_rx.clone(), started.clone());
    rt.go(move || {
        s2.fetch_add(1, Ordering::SeqCst);
        gort_sched::select! {
            recv(rx2) -> _ => {},
            recv(stop2) -> _ => {},
        }
    })
    .unwrap();
    while started.load(Ordering::SeqCst) < 9 {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));
    rt.shutdown();
    drop(rt);
    let feeder = std::thread::spawn(move || {
        // Each send finds a parked receiver (or the select) and hands its value over.
        let sent = (0..9).filter(|&i| tx.try_send(i).is_ok()).count();
        tx.close().unwrap();
        stop_tx.close().unwrap();
        sent
    });
    let sent = feeder.join().unwrap();
    assert!(sent >= 1, "no abandoned receiver took a value");
    assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn threads_and_goroutines_hammer_one_buffered_channel_closed_mid_flight() {
    // The channel's lock under contention from both worlds: plain threads block in it (they
    // park in the kernel), goroutines spin or park their M. Producers on both sides send
    // until the channel is closed under them by a thread; every value is then either
    // received exactly once or handed back to its sender in the error — none lost, none
    // duplicated, nobody left hanging.
    const PER: usize = 20_000;
    let rt = runtime(2);
    let (tx, rx) = chan::<usize>(4);
    let seen = Arc::new(
        (0..4 * PER)
            .map(|_| AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let returned = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let producer = |p: usize| {
        let (tx, returned, sent) = (tx.clone(), returned.clone(), sent.clone());
        move || {
            for i in 0..PER {
                match tx.send(p * PER + i) {
                    Ok(()) => {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(SendError(v)) => {
                        assert_eq!(v, p * PER + i, "a failed send returned another value");
                        returned.fetch_add(PER - i, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    };
    let consumer = || {
        let (rx, seen) = (rx.clone(), seen.clone());
        move || {
            for v in rx.iter() {
                seen[v].fetch_add(1, Ordering::Relaxed);
            }
        }
    };
    let threads: Vec<_> = [
        std::thread::spawn(producer(0)),
        std::thread::spawn(producer(1)),
        std::thread::spawn(consumer()),
        std::thread::spawn(consumer()),
    ]
    .into_iter()
    .collect();
    let goroutines = [
        rt.spawn(producer(2)).unwrap(),
        rt.spawn(producer(3)).unwrap(),
        rt.spawn(consumer()).unwrap(),
        rt.spawn(consumer()).unwrap(),
    ];
    // Close from a plain thread once part of the traffic went through.
    while sent.load(Ordering::Relaxed) < PER {
        std::thread::yield_now();
    }
    tx.close().unwrap();
    drop((tx, rx));
    for t in threads {
        t.join().unwrap();
    }
    for g in goroutines {
        g.join().unwrap();
    }
    let received: usize = seen.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    assert!(
        seen.iter().all(|s| s.load(Ordering::Relaxed) <= 1),
        "a value was received twice"
    );
    assert_eq!(
        received,
        sent.load(Ordering::Relaxed),
        "a sent value was lost"
    );
    assert_eq!(
        received + returned.load(Ordering::Relaxed),
        4 * PER,
        "a value was neither received nor handed back"
    );
}

/// A goroutine parked in a channel operation may resume on another thread: the hand-off's
/// wait loops are inlined into every send and receive, and the switch beneath them writes a
/// thread-local (`switch_direct`, never inlined so that LLVM cannot keep that thread-local's
/// address across the switch, llvm-project#98479). A ring of goroutines passing a token
/// over unbuffered channels on 2 Ps (each yielding every 64 hand-offs, so the other P steals
/// them onto its thread) checks after every receive that the goroutine still knows who it
/// is: a stale thread-local would name the goroutine that last ran on the old thread.
#[test]
fn a_goroutine_knows_who_it_is_after_every_park_that_moved_it_to_another_thread() {
    const RING: usize = 8;
    const ROUNDS: usize = 5_000;
    let rt = runtime(2);
    let (wrong, moves) = rt.block_on(|| {
        let wrong = Arc::new(AtomicUsize::new(0));
        let moves = Arc::new(AtomicUsize::new(0));
        let chans: Vec<_> = (0..RING).map(|_| chan::<usize>(0)).collect();
        let mut txs: Vec<_> = chans.iter().map(|(t, _)| Some(t.clone())).collect();
        let mut hs = Vec::new();
        for (i, (_, rx)) in chans.into_iter().enumerate() {
            let tx = txs[(i + 1) % RING].take().unwrap();
            let (wrong, moves) = (wrong.clone(), moves.clone());
            hs.push(spawn(move || {
                let me = gort_sched::goid();
                let mut thread = std::thread::current().id();
                if i == 0 {
                    tx.send(0).unwrap();
                }
                for v in rx.iter() {
                    if gort_sched::goid() != me || gort_sched::current().map(|g| g.id()) != me {
                        wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    let now = std::thread::current().id();
                    if now != thread {
                        moves.fetch_add(1, Ordering::Relaxed);
                        thread = now;
                    }
                    if v == ROUNDS * RING || tx.send(v + 1).is_err() {
                        return;
                    }
                    if v % 64 == 0 {
                        gort_sched::gosched();
                    }
                }
            }));
        }
        drop(txs);
        for h in hs {
            h.join().unwrap();
        }
        (wrong.load(Ordering::Relaxed), moves.load(Ordering::Relaxed))
    });
    assert_eq!(wrong, 0, "a goroutine saw another's identity after a park");
    assert!(
        moves > 0,
        "no goroutine changed threads: the test proved nothing"
    );
}
