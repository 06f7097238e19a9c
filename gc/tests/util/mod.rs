//! Helpers shared by gc's integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use gort_gc::Heap;

/// A thread forcing cycles back to back (at least one) until dropped, so marking overlaps
/// whatever the test's mutators do.
pub struct BackToBack {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Start forcing cycles on `heap`.
pub fn back_to_back(heap: &Heap) -> BackToBack {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (heap, stop) = (heap.clone(), stop.clone());
        std::thread::spawn(move || {
            loop {
                heap.gc();
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        })
    };
    BackToBack {
        stop,
        thread: Some(thread),
    }
}

impl Drop for BackToBack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.unwrap();
            }
        }
    }
}
