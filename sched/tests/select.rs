//! `select!`: fairness, default, disabled arms, send arms, waking, and no lost wake-up.
#![cfg(not(loom))]

mod common;

use common::runtime;
use gort_sched::chan::{RecvError, SendError};
use gort_sched::{chan, select};
use std::time::Duration;

#[test]
fn ready_arms_are_chosen_uniformly() {
    let (a_tx, a) = chan::<u8>(1);
    let (b_tx, b) = chan::<u8>(1);
    let (c_tx, c) = chan::<u8>(1);
    let mut counts = [0u32; 3];
    for _ in 0..3000 {
        for tx in [&a_tx, &b_tx, &c_tx] {
            let _ = tx.try_send(1);
        }
        let i = select! {
            recv(a) -> _ => 0,
            recv(b) -> _ => 1,
            recv(c) -> _ => 2,
        };
        counts[i] += 1;
    }
    // Each arm expects 1000; a fair choice stays far from the bounds below.
    for (i, &n) in counts.iter().enumerate() {
        assert!(
            (700..=1300).contains(&n),
            "arm {i} chosen {n} times of 3000: {counts:?}"
        );
    }
}

#[test]
fn default_runs_when_nothing_is_ready_and_disabled_arms_never_fire() {
    let (_tx, rx) = chan::<u8>(0);
    let none: Option<&gort_sched::Receiver<u8>> = None;
    let v = select! {
        recv(rx) -> _ => 1,
        recv(none) -> _ => 2,
        default => 3,
    };
    assert_eq!(v, 3);
    let (tx2, rx2) = chan::<u8>(1);
    tx2.send(9).unwrap();
    let v = select! {
        recv(none) -> _ => 0,
        recv(rx2) -> r => r.unwrap(),
        default => { 100 }
    };
    assert_eq!(v, 9);
}

#[test]
fn send_arms_deliver_and_report_closed_with_the_value() {
    let (tx, rx) = chan::<String>(1);
    let r = select! {
        send(tx, "hi".to_string()) -> r => r,
    };
    assert!(r.is_ok());
    assert_eq!(rx.recv().unwrap(), "hi");
    tx.close().unwrap();
    let r = select! {
        send(tx, "late".to_string()) -> r => r,
    };
    assert_eq!(r, Err(SendError("late".to_string())));
    let (_t, closed_rx) = {
        let (t, r) = chan::<u8>(0);
        t.close().unwrap();
        (t, r)
    };
    let r = select! { recv(closed_rx) -> r => r };
    assert_eq!(r, Err(RecvError));
}

#[test]
fn a_blocked_select_is_woken_by_exactly_one_arm() {
    let rt = runtime(2);
    for _ in 0..200 {
        let (a_tx, a) = chan::<u32>(0);
        let (b_tx, b) = chan::<u32>(0);
        let (a_close, b_close) = (a_tx.clone(), b_tx.clone());
        let h = rt
            .spawn(move || {
                select! {
                    recv(a) -> v => ('a', v.unwrap()),
                    recv(b) -> v => ('b', v.unwrap()),
                }
            })
            .unwrap();
        // Both become ready at once: exactly one send is taken, the other finds nobody.
        let ta = std::thread::spawn(move || a_tx.send_timeout_free(1));
        let tb = std::thread::spawn(move || b_tx.send_timeout_free(2));
        let (which, v) = h.join().unwrap();
        // The losing sender is still trying: closing both lets it give up.
        a_close.close().unwrap();
        b_close.close().unwrap();
        let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
        match which {
            'a' => assert!(v == 1 && ra && !rb),
            _ => assert!(v == 2 && rb && !ra),
        }
    }
}

/// Offers the value until a receiver takes it (true) or the channel is closed (false).
trait SendOrGiveUp {
    fn send_timeout_free(self, v: u32) -> bool;
}

impl SendOrGiveUp for gort_sched::Sender<u32> {
    fn send_timeout_free(self, v: u32) -> bool {
        loop {
            match self.try_send(v) {
                Ok(()) => return true,
                Err(e) if e.is_closed() => return false,
                Err(_) => std::thread::sleep(Duration::from_micros(50)),
            }
        }
    }
}

#[test]
fn select_with_send_and_receive_on_the_same_channel() {
    let rt = runtime(2);
    let (tx, rx) = chan::<u32>(0);
    let (tx2, rx2) = (tx.clone(), rx.clone());
    // Two selects that each offer both directions on one channel pair off with each other.
    let a = rt
        .spawn(move || select! { send(tx, 1) -> r => { r.unwrap(); 's' }, recv(rx) -> v => { v.unwrap(); 'r' } })
        .unwrap();
    let b = rt
        .spawn(move || select! { send(tx2, 2) -> r => { r.unwrap(); 's' }, recv(rx2) -> v => { v.unwrap(); 'r' } })
        .unwrap();
    let (x, y) = (a.join().unwrap(), b.join().unwrap());
    assert!(matches!((x, y), ('s', 'r') | ('r', 's')), "{x} {y}");
}

#[test]
fn selects_in_a_loop_leave_no_entries_behind() {
    let rt = runtime(2);
    rt.block_on(|| {
        let (quiet_tx, quiet) = chan::<u8>(0);
        let (tx, rx) = chan::<u32>(0);
        gort_sched::go(move || {
            for i in 0..20_000 {
                tx.send(i).unwrap();
            }
        });
        let mut sum = 0u64;
        for _ in 0..20_000 {
            select! {
                recv(quiet) -> _ => unreachable!(),
                recv(rx) -> v => sum += u64::from(v.unwrap()),
            }
        }
        assert_eq!(sum, (0..20_000u64).sum::<u64>());
        // Every losing entry was taken off `quiet`: a send now finds no receiver.
        assert!(quiet_tx.try_send(1).is_err());
    });
}

#[test]
fn pipeline_of_selects_between_threads_and_goroutines() {
    let rt = runtime(2);
    let (in_tx, in_rx) = chan::<u64>(4);
    let (out_tx, out_rx) = chan::<u64>(4);
    let (stop_tx, stop_rx) = chan::<()>(0);
    rt.go(move || {
        loop {
            select! {
                recv(in_rx) -> v => match v {
                    Ok(v) => out_tx.send(v + 1).unwrap(),
                    Err(_) => break,
                },
                recv(stop_rx) -> _ => break,
            }
        }
    })
    .unwrap();
    let feeder = std::thread::spawn(move || {
        for i in 0..10_000 {
            in_tx.send(i).unwrap();
        }
    });
    let total: u64 = out_rx.iter().take(10_000).sum();
    feeder.join().unwrap();
    drop(stop_tx);
    assert_eq!(total, (1..=10_000u64).sum::<u64>());
}
