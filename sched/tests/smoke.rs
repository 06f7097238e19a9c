//! Core scheduler behaviour; tests named `smoke_*` also run on aarch64 under qemu-user.
#![cfg(not(loom))]

mod common;

use common::{child_mode, run_child, runtime};
use gort_sched::{
    BuildError, Builder, GoroutineLocal, SpawnError, go, gomaxprocs, gosched, num_goroutine, park,
    spawn,
};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[test]
fn smoke_context_switch_spawn_join() {
    let rt = runtime(2);
    let v = rt.block_on(|| {
        let hs: Vec<_> = (0..100u64).map(|i| spawn(move || i * 2)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(v, (0..100u64).map(|i| i * 2).sum());
}

#[test]
fn smoke_gosched_interleaves_on_one_p() {
    let rt = runtime(1);
    let log = rt.block_on(|| {
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let hs: Vec<_> = (0..2)
            .map(|id| {
                let log = log.clone();
                spawn(move || {
                    for i in 0..3 {
                        log.lock().unwrap().push((id, i));
                        gosched();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        Arc::try_unwrap(log).unwrap().into_inner().unwrap()
    });
    // One P: the two goroutines alternate at every gosched — unless sysmon lent a spare P
    // because a goroutine's thread sat in the kernel for over a millisecond with the other
    // one waiting (a page fault under qemu-user can take that long); then both may run.
    let ids: Vec<_> = log.iter().map(|&(id, _)| id).collect();
    assert_eq!(ids.len(), 6);
    if rt.sysmon_stats().spares_lent == 0 {
        assert!(
            ids.windows(2).all(|w| w[0] != w[1]),
            "no alternation: {ids:?}"
        );
    }
}

#[test]
fn smoke_unwinding_panic_reaches_join() {
    let rt = runtime(2);
    let n = std::hint::black_box(7);
    let err = rt.block_on(move || {
        spawn(move || -> u32 { panic!("boom {n}") })
            .join()
            .unwrap_err()
    });
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()));
    assert_eq!(msg.as_deref(), Some("boom 7"));
}

#[test]
fn goexit_runs_destructors_of_live_frames() {
    struct Flag(Arc<AtomicUsize>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let rt = runtime(2);
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    let res = rt.block_on(move || {
        spawn(move || {
            let _outer = Flag(d.clone());
            fn inner(d: Arc<AtomicUsize>) {
                let _inner = Flag(d);
                gort_sched::goexit();
            }
            inner(d.clone());
            unreachable!("goexit returned");
        })
        .join()
    });
    assert!(res.unwrap_err().is::<gort_sched::Goexit>());
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
}

#[test]
fn park_and_ready_deliver_every_value() {
    let rt = runtime(2);
    rt.block_on(|| {
        let me = gort_sched::current().unwrap();
        let got = Arc::new(AtomicUsize::new(0));
        for _ in 0..1000 {
            let (me, got) = (me.clone(), got.clone());
            go(move || {
                got.fetch_add(1, Ordering::SeqCst);
                me.ready();
            });
        }
        while got.load(Ordering::SeqCst) < 1000 {
            park();
        }
    });
}

#[test]
fn hundred_thousand_goroutines_complete() {
    let rt = runtime(2);
    let n = 100_000;
    let done = rt.block_on(move || {
        let done = Arc::new(AtomicUsize::new(0));
        let me = gort_sched::current().unwrap();
        for _ in 0..n {
            let (done, me) = (done.clone(), me.clone());
            go(move || {
                if done.fetch_add(1, Ordering::SeqCst) + 1 == n {
                    me.ready();
                }
            });
        }
        while done.load(Ordering::SeqCst) < n {
            park();
        }
        done.load(Ordering::SeqCst)
    });
    assert_eq!(done, n);
}

#[test]
fn num_goroutine_counts_live_goroutines() {
    let rt = runtime(2);
    rt.block_on(|| {
        assert_eq!(num_goroutine(), 1);
        let me = gort_sched::current().unwrap();
        let release = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..10)
            .map(|_| {
                let release = release.clone();
                spawn(move || {
                    while release.load(Ordering::SeqCst) == 0 {
                        gosched();
                    }
                })
            })
            .collect();
        assert_eq!(num_goroutine(), 11);
        release.store(1, Ordering::SeqCst);
        for h in hs {
            h.join().unwrap();
        }
        drop(me);
        // A joined goroutine has delivered its result but may not have switched out yet.
        let mut spins = 0;
        while num_goroutine() != 1 && spins < 10_000_000 {
            gosched();
            spins += 1;
        }
        assert_eq!(num_goroutine(), 1);
    });
}

#[test]
fn gomaxprocs_grows_and_shrinks_under_load() {
    let rt = runtime(1);
    let total = rt.block_on(|| {
        let done = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..2000)
            .map(|i| {
                let done = done.clone();
                spawn(move || {
                    for _ in 0..(i % 5) {
                        gosched();
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        assert_eq!(gomaxprocs(4), 1);
        for _ in 0..10 {
            gosched();
        }
        assert_eq!(gomaxprocs(2), 4);
        assert_eq!(gomaxprocs(0), 2);
        assert_eq!(gomaxprocs(1), 2);
        assert_eq!(gomaxprocs(3), 1);
        for h in hs {
            h.join().unwrap();
        }
        done.load(Ordering::SeqCst)
    });
    assert_eq!(total, 2000);
    assert_eq!(rt.gomaxprocs(100_000), 3);
    assert_eq!(rt.gomaxprocs(0), gort_sched::MAX_PROCS);
}

#[test]
fn goroutine_local_storage_is_per_goroutine() {
    static SLOT: GoroutineLocal<Cell<u64>> = GoroutineLocal::new(|| Cell::new(0));
    let rt = runtime(2);
    let sums = rt.block_on(|| {
        let hs: Vec<_> = (1..=8u64)
            .map(|i| {
                spawn(move || {
                    for _ in 0..i {
                        SLOT.with(|c| c.set(c.get() + i));
                        gosched();
                    }
                    SLOT.with(|c| c.get())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(sums, (1..=8u64).map(|i| i * i).collect::<Vec<_>>());
}

#[test]
fn builder_rejects_bad_stack_sizes() {
    for bad in [0, 1024, gort_sched::MAX_STACK_SIZE + 1] {
        // SAFETY: never started.
        let err = unsafe { Builder::new().stack_size(bad).build() }.unwrap_err();
        let BuildError::StackSize {
            requested,
            min,
            max,
        } = err.clone();
        assert_eq!(
            (requested, min, max),
            (bad, gort_sched::MIN_STACK_SIZE, gort_sched::MAX_STACK_SIZE)
        );
        assert!(err.to_string().contains("choose between"));
    }
}

#[test]
fn spawn_after_shutdown_is_an_error() {
    let rt = runtime(1);
    assert_eq!(rt.block_on(|| 5), 5);
    rt.shutdown();
    assert_eq!(rt.spawn(|| ()).unwrap_err(), SpawnError::Shutdown);
    assert!(rt.go(|| ()).unwrap_err().to_string().contains("shut down"));
}

#[test]
fn gosched_outside_a_goroutine_yields_the_thread() {
    gosched();
    assert!(gort_sched::goid().is_none());
    let r = std::panic::catch_unwind(|| gort_sched::goexit());
    assert!(r.is_err());
    let r = std::panic::catch_unwind(|| go(|| ()));
    assert!(r.is_err());
}

#[test]
fn blocking_hands_the_p_to_others() {
    let rt = runtime(1);
    rt.block_on(|| {
        let flag = Arc::new(AtomicUsize::new(0));
        let f = flag.clone();
        go(move || {
            f.store(1, Ordering::SeqCst);
        });
        // With one P, the other goroutine can only run while we sit in `blocking`.
        gort_sched::blocking(|| {
            while flag.load(Ordering::SeqCst) == 0 {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
    });
}

#[test]
fn smoke_panic_in_go_exits_with_status_2() {
    if child_mode().as_deref() == Some("panic") {
        let rt = runtime(2);
        rt.block_on(|| {
            go(|| panic!("goroutine exploded"));
            loop {
                gosched();
            }
        });
        return;
    }
    let out = run_child("smoke_panic_in_go_exits_with_status_2", "panic");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("panic: goroutine exploded"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("goroutine 2 [running]:"),
        "stderr: {stderr}"
    );
}

#[test]
fn smoke_stack_overflow_is_fatal_and_names_the_goroutine() {
    if child_mode().as_deref() == Some("overflow") {
        #[inline(never)]
        fn recurse(n: u64) -> u64 {
            let buf = std::hint::black_box([n; 64]);
            if n == u64::MAX {
                0
            } else {
                recurse(n + 1) + buf[3]
            }
        }
        let rt = runtime(1);
        rt.block_on(|| spawn(|| recurse(0)).join().ok());
        return;
    }
    let out = run_child(
        "smoke_stack_overflow_is_fatal_and_names_the_goroutine",
        "overflow",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fatal error: stack overflow"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("runtime: goroutine 2 stack exceeds"),
        "stderr: {stderr}"
    );
    assert!(!out.status.success());
}

#[test]
fn smoke_guard_probe_picks_a_working_mode() {
    // Whatever the probe chose, the overflow test above proves it faults; here we check the
    // choice is stable and the forced fallback is honoured in a child.
    let mode = gort_sched::guard_mode();
    assert_eq!(mode, gort_sched::guard_mode());
    if child_mode().as_deref() == Some("mprotect") {
        assert_eq!(mode, gort_sched::GuardMode::Mprotect);
        return;
    }
    if std::env::var_os("GORT_STACK_GUARD").is_none() {
        let out = common::run_child_with(
            "smoke_guard_probe_picks_a_working_mode",
            "mprotect",
            &[("GORT_STACK_GUARD", "mprotect")],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn run_reports_a_deadlock_like_go() {
    if child_mode().as_deref() == Some("deadlock") {
        // SAFETY: no thread-bound values are held.
        unsafe {
            gort_sched::run(|| {
                let _child = spawn(park);
                park();
                park();
            })
        };
        return;
    }
    let out = run_child("run_reports_a_deadlock_like_go", "deadlock");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("fatal error: all goroutines are asleep - deadlock!"),
        "{stderr}"
    );
}

#[test]
fn run_with_a_registered_foreign_thread_is_not_a_deadlock() {
    // SAFETY: no thread-bound values are held.
    let v = unsafe {
        gort_sched::run(|| {
            let guard = gort_sched::foreign_thread();
            let me = gort_sched::current().unwrap();
            let flag = Arc::new(AtomicUsize::new(0));
            let f = flag.clone();
            let t = std::thread::spawn(move || {
                let _guard = guard;
                std::thread::sleep(std::time::Duration::from_millis(20));
                f.store(1, Ordering::SeqCst);
                me.ready();
            });
            while flag.load(Ordering::SeqCst) == 0 {
                park();
            }
            t.join().unwrap();
            7
        })
    };
    assert_eq!(v, 7);
}

#[test]
fn smoke_unwinding_goroutine_stays_on_its_thread() {
    struct ParkOnDrop {
        flag: Arc<AtomicUsize>,
        same_thread: Arc<AtomicUsize>,
    }
    impl Drop for ParkOnDrop {
        fn drop(&mut self) {
            let before = std::thread::current().id();
            let me = gort_sched::current().unwrap();
            let flag = self.flag.clone();
            // With one P, this goroutine can only run if the unwinding one hands its P off.
            go(move || {
                flag.store(1, Ordering::SeqCst);
                me.ready();
            });
            while self.flag.load(Ordering::SeqCst) == 0 {
                park();
            }
            gosched();
            let same = before == std::thread::current().id();
            self.same_thread
                .store(if same { 1 } else { 2 }, Ordering::SeqCst);
        }
    }
    let rt = runtime(1);
    let same_thread = Arc::new(AtomicUsize::new(0));
    let st = same_thread.clone();
    let res = rt.block_on(move || {
        spawn(move || {
            let _guard = ParkOnDrop {
                flag: Arc::new(AtomicUsize::new(0)),
                same_thread: st,
            };
            panic!("unwinding through a parking destructor");
        })
        .join()
    });
    assert!(res.is_err());
    assert_eq!(
        same_thread.load(Ordering::SeqCst),
        1,
        "the unwinding goroutine changed thread"
    );
}
