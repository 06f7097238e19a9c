//! proptest: random non-blocking programs on one channel against a sequential model
//! (a bounded FIFO with a closed flag and handle counts).
#![cfg(not(loom))]

use gort_sched::chan;
use gort_sched::chan::{TryRecvError, TrySendError};
use proptest::prelude::*;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
enum Op {
    TrySend(u16),
    TryRecv,
    Close,
    DropSender,
    DropReceiver,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u16>().prop_map(Op::TrySend),
        4 => Just(Op::TryRecv),
        1 => Just(Op::Close),
        1 => Just(Op::DropSender),
        1 => Just(Op::DropReceiver),
    ]
}

proptest! {
    #[test]
    fn channel_matches_a_bounded_fifo_model(cap in 0usize..4, ops in prop::collection::vec(op(), 1..80)) {
        let (tx, rx) = chan::<u16>(cap);
        // Two handles each, so dropping one leaves the other to operate with.
        let mut senders = vec![tx.clone(), tx];
        let mut receivers = vec![rx.clone(), rx];
        let mut model: VecDeque<u16> = VecDeque::new();
        let mut closed = false;
        for op in ops {
            match op {
                Op::TrySend(v) => {
                    let Some(tx) = senders.first() else { continue };
                    let got = tx.try_send(v);
                    if closed || receivers.is_empty() {
                        prop_assert!(matches!(got, Err(TrySendError::Closed(x)) if x == v));
                    } else if model.len() < cap {
                        prop_assert!(got.is_ok());
                        model.push_back(v);
                    } else {
                        prop_assert!(matches!(got, Err(TrySendError::Full(x)) if x == v));
                    }
                }
                Op::TryRecv => {
                    let Some(rx) = receivers.first() else { continue };
                    let got = rx.try_recv();
                    match model.pop_front() {
                        Some(v) => prop_assert_eq!(got, Ok(v)),
                        None if closed => prop_assert_eq!(got, Err(TryRecvError::Closed)),
                        None => prop_assert_eq!(got, Err(TryRecvError::Empty)),
                    }
                }
                Op::Close => {
                    let Some(tx) = senders.first() else { continue };
                    prop_assert_eq!(tx.close().is_ok(), !closed);
                    closed = true;
                }
                Op::DropSender => {
                    senders.pop();
                    if senders.is_empty() {
                        closed = true;
                    }
                }
                Op::DropReceiver => {
                    receivers.pop();
                }
            }
            if let Some(rx) = receivers.first() {
                prop_assert_eq!(rx.len(), model.len());
            }
        }
    }
}
