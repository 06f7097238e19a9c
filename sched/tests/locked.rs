//! `lock_os_thread`: a locked goroutine keeps its thread across parks and yields, no other
//! goroutine runs on that thread meanwhile, and a goroutine exiting locked ends its thread.
#![cfg(not(loom))]

mod common;

use common::runtime;
use gort_sched::{chan, lock_os_thread, locked_to_thread, unlock_os_thread};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::ThreadId;
use std::time::Duration;

#[test]
fn a_locked_goroutine_keeps_its_thread_and_shares_it_with_nobody() {
    for procs in [1, 2] {
        let rt = runtime(procs);
        let (to_locked, from_other) = chan::<u32>(0);
        let (to_other, from_locked) = chan::<u32>(0);
        let locked_thread: Arc<Mutex<Option<ThreadId>>> = Arc::default();
        let intruded = Arc::new(AtomicBool::new(false));
        let locked_done = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel();
        {
            let (locked_thread, locked_done, done_tx) =
                (locked_thread.clone(), locked_done.clone(), done_tx.clone());
            rt.go(move || {
                lock_os_thread();
                let me = std::thread::current().id();
                *locked_thread.lock().unwrap() = Some(me);
                thread_local!(static SEEN: Cell<u32> = const { Cell::new(0) });
                for i in 0..200 {
                    // A thread-local held across parks: sound while locked.
                    SEEN.with(|s| s.set(s.get() + 1));
                    to_other.send(i).unwrap();
                    assert_eq!(from_other.recv().unwrap(), i + 1);
                    if i % 20 == 0 {
                        gort_sched::gosched();
                        gort_sched::time::sleep(Duration::from_millis(1));
                    }
                    assert_eq!(std::thread::current().id(), me, "a locked goroutine moved");
                }
                assert_eq!(SEEN.with(|s| s.get()), 200);
                locked_done.store(true, Ordering::SeqCst);
                unlock_os_thread();
                let _ = done_tx.send(());
            })
            .unwrap();
        }
        {
            let (locked_thread, intruded, locked_done) =
                (locked_thread.clone(), intruded.clone(), locked_done.clone());
            rt.go(move || {
                for v in from_locked.iter() {
                    let here = std::thread::current().id();
                    if !locked_done.load(Ordering::SeqCst)
                        && *locked_thread.lock().unwrap() == Some(here)
                    {
                        intruded.store(true, Ordering::SeqCst);
                    }
                    if to_locked.send(v + 1).is_err() {
                        break;
                    }
                }
                let _ = done_tx.send(());
            })
            .unwrap();
        }
        done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the locked goroutine hung");
        assert!(
            !intruded.load(Ordering::SeqCst),
            "GOMAXPROCS={procs}: another goroutine ran on a locked thread"
        );
    }
}

#[test]
fn a_goroutine_exiting_locked_ends_its_thread() {
    let rt = runtime(1);
    let (tx, rx) = mpsc::channel::<&'static str>();
    struct OnThreadExit(mpsc::Sender<&'static str>);
    impl Drop for OnThreadExit {
        fn drop(&mut self) {
            let _ = self.0.send("thread ended");
        }
    }
    thread_local!(static GUARD: std::cell::RefCell<Option<OnThreadExit>> = const { std::cell::RefCell::new(None) });
    {
        let tx = tx.clone();
        rt.go(move || {
            lock_os_thread();
            GUARD.with(|g| *g.borrow_mut() = Some(OnThreadExit(tx)));
        })
        .unwrap();
    }
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(20)),
        Ok("thread ended"),
        "the thread of a goroutine that exited locked kept running"
    );
    // The runtime still runs goroutines afterwards (on another M).
    let (tx2, rx2) = mpsc::channel();
    rt.go(move || {
        let _ = tx2.send(gort_sched::goid());
    })
    .unwrap();
    assert!(rx2.recv_timeout(Duration::from_secs(20)).is_ok());
    drop(tx);
}

#[test]
fn locks_nest_and_plain_threads_ignore_them() {
    lock_os_thread();
    assert!(!locked_to_thread(), "a plain thread reports itself locked");
    unlock_os_thread();
    let rt = runtime(2);
    let v = rt.block_on(|| {
        lock_os_thread();
        lock_os_thread();
        unlock_os_thread();
        let still = locked_to_thread();
        unlock_os_thread();
        unlock_os_thread(); // one too many: ignored, as in Go
        (still, locked_to_thread())
    });
    assert_eq!(v, (true, false));
}

/// A goroutine that exits locked ends its thread; a thread-local destructor running as the
/// thread ends re-enters the runtime (a channel send, as a plain thread by then) and the
/// value reaches a goroutine.
#[test]
fn a_destructor_at_the_end_of_a_locked_thread_re_enters_the_runtime() {
    let rt = runtime(1);
    let (tx, rx) = chan::<u64>(1);
    struct SendOnExit(Option<gort_sched::Sender<u64>>);
    impl Drop for SendOnExit {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(gort_sched::goid().unwrap_or(0));
            }
        }
    }
    thread_local!(static GUARD: std::cell::RefCell<Option<SendOnExit>> = const { std::cell::RefCell::new(None) });
    rt.go(move || {
        lock_os_thread();
        GUARD.with(|g| *g.borrow_mut() = Some(SendOnExit(Some(tx))));
    })
    .unwrap();
    let (out_tx, out) = mpsc::channel();
    rt.go(move || {
        let _ = out_tx.send(rx.recv());
    })
    .unwrap();
    let got = out
        .recv_timeout(Duration::from_secs(20))
        .expect("the destructor's send never arrived");
    assert_eq!(
        got,
        Ok(0),
        "the destructor ran as a plain thread and its send arrived"
    );
}
