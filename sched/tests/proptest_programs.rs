//! Random programs of spawn / yield / park / ready / exit on GOMAXPROCS 1..4, checked against
//! a sequential model: every goroutine finishes exactly once and every value is delivered.
#![cfg(not(loom))]

mod common;

use gort_sched::{go, gosched, park, spawn};
use proptest::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
enum Op {
    /// Deliver a value to the collector.
    Value(u32),
    Yield,
    /// Park until a helper goroutine, after yielding this many times, readies us.
    Park(u8),
    /// Start a child running its own script; joined (`true`) or fire-and-forget.
    Spawn(Vec<Op>, bool),
    /// `goexit`: the rest of the script is skipped.
    Exit,
}

fn script() -> impl Strategy<Value = Vec<Op>> {
    let leaf = prop_oneof![
        4 => any::<u32>().prop_map(Op::Value),
        2 => Just(Op::Yield),
        2 => (0u8..4).prop_map(Op::Park),
        1 => Just(Op::Exit),
    ];
    let op = leaf.prop_recursive(3, 24, 6, |inner| {
        (prop::collection::vec(inner, 0..6), any::<bool>()).prop_map(|(s, j)| Op::Spawn(s, j))
    });
    prop::collection::vec(op, 0..8)
}

/// The values a script delivers, run sequentially (children inline: order is not compared).
fn model(script: &[Op], out: &mut Vec<u32>, goroutines: &mut usize) {
    *goroutines += 1;
    for op in script {
        match op {
            Op::Value(v) => out.push(*v),
            Op::Spawn(s, _) => model(s, out, goroutines),
            Op::Exit => return,
            Op::Yield | Op::Park(_) => {}
        }
    }
}

struct Shared {
    values: Mutex<Vec<u32>>,
    finished: AtomicUsize,
    outstanding: AtomicUsize,
}

/// Counts a goroutine as finished when its frame is dropped — by return or by `goexit`.
struct Finish(Arc<Shared>);
impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::SeqCst);
        self.0.outstanding.fetch_sub(1, Ordering::SeqCst);
    }
}

fn run_script(script: Vec<Op>, shared: Arc<Shared>) {
    let _finish = Finish(shared.clone());
    for op in script {
        match op {
            Op::Value(v) => shared.values.lock().unwrap().push(v),
            Op::Yield => gosched(),
            Op::Park(k) => {
                let flag = Arc::new(AtomicBool::new(false));
                let me = gort_sched::current().unwrap();
                let f = flag.clone();
                go(move || {
                    for _ in 0..k {
                        gosched();
                    }
                    f.store(true, Ordering::SeqCst);
                    me.ready();
                });
                while !flag.load(Ordering::SeqCst) {
                    park();
                }
            }
            Op::Spawn(s, join) => {
                shared.outstanding.fetch_add(1, Ordering::SeqCst);
                let sh = shared.clone();
                if join {
                    if let Err(e) = spawn(move || run_script(s, sh)).join() {
                        assert!(
                            e.is::<gort_sched::Goexit>(),
                            "a scripted goroutine panicked"
                        );
                    }
                } else {
                    go(move || run_script(s, sh));
                }
            }
            Op::Exit => gort_sched::goexit(),
        }
    }
}

proptest! {
    #[test]
    fn random_programs_match_the_model(procs in 1usize..=4, mains in prop::collection::vec(script(), 1..4)) {
        let mut expected = Vec::new();
        let mut goroutines = 0;
        for s in &mains {
            model(s, &mut expected, &mut goroutines);
        }
        let shared = Arc::new(Shared {
            values: Mutex::new(Vec::new()),
            finished: AtomicUsize::new(0),
            outstanding: AtomicUsize::new(mains.len()),
        });
        let rt = common::runtime(procs);
        let sh = shared.clone();
        rt.block_on(move || {
            for s in mains {
                let sh2 = sh.clone();
                go(move || run_script(s, sh2));
            }
            // Wait for every scripted goroutine, including fire-and-forget ones.
            while sh.outstanding.load(Ordering::SeqCst) != 0 {
                gosched();
            }
        });
        let mut got = shared.values.lock().unwrap().clone();
        got.sort_unstable();
        expected.sort_unstable();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(shared.finished.load(Ordering::SeqCst), goroutines);
    }
}
