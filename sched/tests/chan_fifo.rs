//! proptest: real goroutines and threads on one channel — every value sent is received
//! exactly once, and each sender's values arrive in the order it sent them.
#![cfg(not(loom))]

mod common;

use common::runtime;
use gort_sched::chan;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn values_arrive_once_and_in_order_per_sender(
        cap in 0usize..4,
        senders in 1usize..5,
        receivers in 1usize..4,
        per_sender in 1usize..300,
        thread_sender in any::<bool>(),
    ) {
        let rt = runtime(2);
        let (tx, rx) = chan::<(usize, usize)>(cap);
        let mut sends = Vec::new();
        for s in 0..senders {
            let tx = tx.clone();
            let body = move || {
                for i in 0..per_sender {
                    tx.send((s, i)).unwrap();
                }
            };
            // Optionally the first sender is a plain thread.
            if s == 0 && thread_sender {
                sends.push(Err(std::thread::spawn(body)));
            } else {
                sends.push(Ok(rt.spawn(body).unwrap()));
            }
        }
        drop(tx);
        let recvs: Vec<_> = (0..receivers)
            .map(|_| {
                let rx = rx.clone();
                rt.spawn(move || rx.iter().collect::<Vec<_>>()).unwrap()
            })
            .collect();
        drop(rx);
        for s in sends {
            match s {
                Ok(h) => h.join().unwrap(),
                Err(t) => t.join().unwrap(),
            }
        }
        let mut seen = vec![Vec::new(); senders];
        for r in recvs {
            // Within one receiver, a sender's values must be increasing.
            let mut last = vec![None; senders];
            for (s, i) in r.join().unwrap() {
                prop_assert!(last[s].is_none_or(|l| l < i), "sender {} out of order", s);
                last[s] = Some(i);
                seen[s].push(i);
            }
        }
        for (s, mut v) in seen.into_iter().enumerate() {
            v.sort_unstable();
            prop_assert_eq!(v, (0..per_sender).collect::<Vec<_>>(), "sender {}", s);
        }
    }
}
