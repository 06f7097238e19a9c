//! Poller behaviour on real fds: readiness, deadlines, close, bad input, hang-up, reset.
#![cfg(not(loom))]

mod common;

use common::pair;
use gort_netpoll::{Direction, Driver, Poller, ThreadWaiter};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

fn park_thread(c: gort_netpoll::Commit<'_, ThreadWaiter>) {
    if c.commit(ThreadWaiter::current()).is_ok() {
        ThreadWaiter::park();
    }
}

#[test]
fn readiness_is_remembered_and_consumed() {
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let (a, mut b) = pair();
    let reg = p.open(a.as_fd()).unwrap();
    b.write_all(b"x").unwrap();
    // Nobody waits yet: the poll records readiness in the semaphores, wakes nobody.
    assert_eq!(p.poll(Some(Duration::from_millis(100))).unwrap(), 0);
    // Readiness was recorded: this wait returns without parking.
    p.wait(&reg, Direction::Read, |_| panic!("must not park"))
        .unwrap();
    p.wait(&reg, Direction::Write, |_| panic!("must not park"))
        .unwrap();
    assert!(!p.has_waiters());
    p.close(reg);
    assert_eq!(p.descriptors_in_use(), 0);
}

#[test]
fn waiter_is_woken_by_the_driver() {
    let d = Driver::start().unwrap();
    let (a, b) = pair();
    let src = d.register(a.try_clone().unwrap()).unwrap();
    let mut b2 = b.try_clone().unwrap();
    let h = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        b2.write_all(b"hello").unwrap();
    });
    let mut buf = [0u8; 16];
    let n = src.read_with(|| (&a).read(&mut buf)).unwrap();
    assert_eq!(&buf[..n], b"hello");
    h.join().unwrap();
}

#[test]
fn past_deadline_times_out_at_once_and_clearing_restores() {
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = p.open(a.as_fd()).unwrap();
    // Drain the initial writable / empty-readable edge.
    p.poll(Some(Duration::ZERO)).unwrap();
    p.set_deadline(
        &reg,
        Direction::Read,
        Some(Instant::now() - Duration::from_secs(1)),
    )
    .unwrap();
    let e = p
        .wait(&reg, Direction::Read, |_| panic!("must not park"))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    // The write direction is unaffected.
    p.wait(&reg, Direction::Write, |_| panic!("must not park"))
        .unwrap();
    p.set_deadline(&reg, Direction::Read, None).unwrap();
    // No longer expired: the wait reserves and calls park; the park expires the deadline
    // (as another thread could) instead of blocking, so the wait reports the timeout.
    let mut calls = 0;
    let r = p.wait(&reg, Direction::Read, |c| {
        calls += 1;
        p.set_deadline(&reg, Direction::Read, Some(Instant::now()))
            .unwrap();
        park_thread(c); // the commit fails: the deadline already released the reservation
    });
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert_eq!(calls, 1);
    p.close(reg);
}

#[test]
fn future_deadline_wakes_a_parked_thread_and_can_be_moved() {
    let d = Driver::start().unwrap();
    let (a, _b) = pair();
    let src = d.register(a.try_clone().unwrap()).unwrap();
    // First far away, then moved close: the poller must reschedule its sleep.
    src.set_deadline(
        Direction::Read,
        Some(Instant::now() + Duration::from_secs(3600)),
    )
    .unwrap();
    let start = Instant::now();
    src.set_deadline(
        Direction::Read,
        Some(Instant::now() + Duration::from_millis(30)),
    )
    .unwrap();
    let e = src.wait(Direction::Read).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(25));
    // Moving it to the future again lets a wait proceed until data comes.
    src.set_deadline(
        Direction::Read,
        Some(Instant::now() + Duration::from_secs(3600)),
    )
    .unwrap();
    let mut b = _b;
    b.write_all(b"z").unwrap();
    src.wait(Direction::Read).unwrap();
}

#[test]
fn deadline_moved_later_while_parked_does_not_fire_early() {
    let d = Driver::start().unwrap();
    let (a, mut b) = pair();
    let src = Arc::new(d.register(a.try_clone().unwrap()).unwrap());
    src.set_deadline(
        Direction::Read,
        Some(Instant::now() + Duration::from_millis(50)),
    )
    .unwrap();
    let s2 = Arc::clone(&src);
    let h = thread::spawn(move || s2.wait(Direction::Read));
    src.set_deadline(
        Direction::Read,
        Some(Instant::now() + Duration::from_secs(3600)),
    )
    .unwrap();
    thread::sleep(Duration::from_millis(150));
    b.write_all(b"q").unwrap();
    h.join().unwrap().unwrap();
}

#[test]
fn close_wakes_every_waiter_with_ebadf() {
    let d = Driver::start().unwrap();
    let (a, _b) = pair();
    // Fill the send buffer so a writer has to wait too.
    let mut filler = a.try_clone().unwrap();
    let chunk = [0u8; 4096];
    while filler.write(&chunk).is_ok() {}
    let src = Arc::new(d.register(a.try_clone().unwrap()).unwrap());
    let (r, w) = (Arc::clone(&src), Arc::clone(&src));
    let hr = thread::spawn(move || r.wait(Direction::Read));
    let hw = thread::spawn(move || w.wait(Direction::Write));
    // Wait until both are parked.
    while !d.poller().has_waiters() || !both_parked(&d) {
        thread::sleep(Duration::from_millis(1));
    }
    src.evict().unwrap();
    for h in [hr, hw] {
        let e = h.join().unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
    assert!(!d.poller().has_waiters());
    // Later waits fail too.
    assert_eq!(
        src.wait(Direction::Read).unwrap_err().raw_os_error(),
        Some(libc::EBADF)
    );
}

fn both_parked(d: &Driver) -> bool {
    format!("{:?}", d.poller()).contains("waiters: 2")
}

#[test]
fn bad_input_is_refused() {
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = p.open(a.as_fd()).unwrap();
    // Registering the same fd twice is an error (a negative or closed fd can no longer be
    // passed at all: the registration borrows or owns an open fd).
    assert_eq!(
        p.open(a.as_fd()).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    p.close(reg);
    assert_eq!(p.descriptors_in_use(), 0);
}

#[test]
fn registration_from_another_poller_is_refused() {
    let p1: Poller<ThreadWaiter> = Poller::new().unwrap();
    let p2: Poller<ThreadWaiter> = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = p1.open(a.as_fd()).unwrap();
    let e = p2
        .wait(&reg, Direction::Read, |_| panic!("must not park"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    assert!(p2.set_deadline(&reg, Direction::Read, None).is_err());
    p1.close(reg);
}

#[test]
fn recycled_descriptor_gets_a_new_sequence_and_no_stale_readiness() {
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let (a, mut b) = pair();
    let reg = p.open(a.as_fd()).unwrap();
    let (i1, s1) = (format!("{reg:?}"), reg.as_raw_fd());
    b.write_all(b"x").unwrap();
    p.poll(Some(Duration::ZERO)).unwrap(); // readiness recorded on the old owner
    p.close(reg);
    let (c, _d) = pair();
    let reg2 = p.open(c.as_fd()).unwrap();
    assert_ne!(format!("{reg2:?}"), i1);
    let _ = s1;
    // The new owner starts empty: a read wait must reserve (our park declines, then we
    // expire it to get out).
    let mut calls = 0;
    let r = p.wait(&reg2, Direction::Read, |_c| {
        calls += 1;
        p.set_deadline(&reg2, Direction::Read, Some(Instant::now()))
            .unwrap();
    });
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::TimedOut);
    assert_eq!(calls, 1);
    p.close(reg2);
}

#[test]
fn hang_up_wakes_both_directions() {
    let d = Driver::start().unwrap();
    let (a, b) = pair();
    let mut filler = a.try_clone().unwrap();
    let chunk = [0u8; 4096];
    while filler.write(&chunk).is_ok() {}
    let src = Arc::new(d.register(a.try_clone().unwrap()).unwrap());
    let (r, w) = (Arc::clone(&src), Arc::clone(&src));
    let hr = thread::spawn(move || r.wait(Direction::Read));
    let hw = thread::spawn(move || w.wait(Direction::Write));
    while !both_parked(&d) {
        thread::sleep(Duration::from_millis(1));
    }
    drop(b);
    hr.join().unwrap().unwrap();
    hw.join().unwrap().unwrap();
    // The read now reports end-of-file (or a reset: the peer left data unread), the write
    // an error.
    let mut buf = [0u8; 8];
    assert!(!matches!((&a).read(&mut buf), Ok(n) if n > 0));
    assert!((&a).write(b"x").is_err());
}

#[test]
fn peer_reset_mid_read() {
    let d = Driver::start().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        (&s).write_all(b"partial").unwrap();
        thread::sleep(Duration::from_millis(30));
        // SO_LINGER 0 makes close send RST.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: valid socket and a live linger struct of the right size.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        drop(s);
    });
    let c = TcpStream::connect(addr).unwrap();
    c.set_nonblocking(true).unwrap();
    let src = d.register(c.try_clone().unwrap()).unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    let err = loop {
        match src.read_with(|| (&c).read(&mut buf)) {
            Ok(0) => panic!("expected a reset, got end-of-file"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(got, b"partial");
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    h.join().unwrap();
}

#[test]
fn wake_interrupts_a_blocking_poll() {
    let p: Arc<Poller<ThreadWaiter>> = Arc::new(Poller::new().unwrap());
    let p2 = Arc::clone(&p);
    let h = thread::spawn(move || p2.poll(None).unwrap());
    thread::sleep(Duration::from_millis(20));
    p.wake();
    assert_eq!(h.join().unwrap(), 0);
    // A wake with nobody polling makes the next poll return at once.
    p.wake();
    assert_eq!(p.poll(None).unwrap(), 0);
}

#[test]
fn poll_timeout_is_shortened_to_the_earliest_deadline() {
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = p.open(a.as_fd()).unwrap();
    p.poll(Some(Duration::ZERO)).unwrap();
    p.set_deadline(
        &reg,
        Direction::Read,
        Some(Instant::now() + Duration::from_millis(20)),
    )
    .unwrap();
    // Without shortening this poll would sleep an hour.
    let t = Instant::now();
    p.poll(Some(Duration::from_secs(3600))).unwrap();
    assert!(t.elapsed() < Duration::from_secs(600));
    let e = p
        .wait(&reg, Direction::Read, |_| panic!("must not park"))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    p.close(reg);
}

#[test]
fn ten_thousand_descriptors() {
    raise_nofile(10_000 * 2 + 100);
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let mut regs = Vec::new();
    for _ in 0..5_000 {
        let (a, b) = pair();
        regs.push(p.open(a).unwrap());
        regs.push(p.open(b).unwrap());
    }
    assert_eq!(p.descriptors_in_use(), 10_000);
    // Drain the initial writable edges, then make every `a` readable.
    while p.poll(Some(Duration::ZERO)).is_ok_and(|_| false) {}
    for _ in 0..100 {
        p.poll(Some(Duration::ZERO)).unwrap();
    }
    for b in regs.iter().skip(1).step_by(2) {
        b.get_ref().write_all(b"x").unwrap();
    }
    for _ in 0..200 {
        p.poll(Some(Duration::ZERO)).unwrap();
    }
    for (i, reg) in regs.iter().enumerate() {
        if i % 2 == 0 {
            p.wait(reg, Direction::Read, |_| panic!("descriptor {i} not ready"))
                .unwrap();
        }
    }
    for reg in regs {
        p.close(reg);
    }
    assert_eq!(p.descriptors_in_use(), 0);
}

/// Raise the soft RLIMIT_NOFILE to at least `want` (capped by the hard limit).
fn raise_nofile(want: libc::rlim_t) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a live rlimit struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
    if rl.rlim_cur < want {
        rl.rlim_cur = rl.rlim_max.min(want).max(rl.rlim_cur);
        // SAFETY: a live rlimit struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
    }
}

#[test]
fn emfile_is_surfaced() {
    // Run in a child process: lowering the fd limit would disturb the other tests.
    if std::env::var_os("GORT_NETPOLL_EMFILE_CHILD").is_some() {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a live rlimit struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
        // Use up every descriptor below a tiny limit.
        rl.rlim_cur = 16;
        // SAFETY: a live rlimit struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) }, 0);
        let mut hold = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            hold.push(f);
        }
        let e = Poller::<ThreadWaiter>::new().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EMFILE));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "emfile_is_surfaced",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("GORT_NETPOLL_EMFILE_CHILD", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

#[test]
fn arm_and_complete_for_event_loops() {
    use gort_netpoll::Armed;
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let (a, mut b) = pair();
    let reg = p.open(a.as_fd()).unwrap();
    p.poll(Some(Duration::ZERO)).unwrap();
    // Write: readiness pending from registration, so the waiter comes straight back.
    assert!(matches!(
        p.arm(&reg, Direction::Write, ThreadWaiter::current()),
        Ok(Armed::Ready(_))
    ));
    // Read: nothing pending, the waiter parks (as a continuation: we do not block).
    assert!(matches!(
        p.arm(&reg, Direction::Read, ThreadWaiter::current()),
        Ok(Armed::Parked)
    ));
    assert!(p.has_waiters());
    b.write_all(b"x").unwrap();
    let mut woken = 0;
    p.poll_with(Some(Duration::from_secs(5)), |w| {
        woken += 1;
        drop(w);
    })
    .unwrap();
    assert_eq!(woken, 1);
    p.complete(&reg, Direction::Read).unwrap();
    // Arm again, then close: the waiter is handed back through `wake`, complete reports EBADF.
    assert!(matches!(
        p.arm(&reg, Direction::Read, ThreadWaiter::current()),
        Ok(Armed::Parked)
    ));
    p.evict(&reg).unwrap();
    ThreadWaiter::park(); // consumes the wake the eviction delivered to this thread
    assert_eq!(
        p.complete(&reg, Direction::Read)
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EBADF)
    );
    assert!(!p.has_waiters());
    p.close(reg);
}

#[test]
fn dropping_the_poller_drops_armed_waiters() {
    use gort_netpoll::{Armed, Waiter};
    use std::sync::atomic::{AtomicUsize, Ordering};
    struct Probe(Arc<AtomicUsize>);
    // SAFETY: an Arc pointer is non-null and 8-aligned (> 2); from_raw rebuilds the same Arc.
    unsafe impl Waiter for Probe {
        fn into_raw(self) -> usize {
            Arc::into_raw(self.0) as usize
        }
        unsafe fn from_raw(raw: usize) -> Self {
            // SAFETY: converted back exactly once by the poller.
            Probe(unsafe { Arc::from_raw(raw as *const AtomicUsize) })
        }
        fn wake(self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let count = Arc::new(AtomicUsize::new(0));
    let p: Poller<Probe> = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = p.open(a.as_fd()).unwrap();
    p.poll(Some(Duration::ZERO)).unwrap();
    assert!(matches!(
        p.arm(&reg, Direction::Read, Probe(Arc::clone(&count))),
        Ok(Armed::Parked)
    ));
    assert_eq!(Arc::strong_count(&count), 2);
    drop(reg); // leaked registration: harmless
    drop(p);
    assert_eq!(Arc::strong_count(&count), 1, "armed waiter leaked");
    assert_eq!(count.load(Ordering::SeqCst), 0, "dropped, not woken");
}

/// The scheduler's idle-hook contract: a non-blocking poll never waits (even while another
/// thread sleeps in a blocking one), `wake` ends a blocking poll, `has_waiters` counts parked
/// waiters.
#[test]
fn idle_hook_contract() {
    let d = Driver::start().unwrap(); // its thread sleeps in poll(None)
    let p = Arc::clone(d.poller());
    thread::sleep(Duration::from_millis(10));
    for _ in 0..100 {
        assert_eq!(p.poll(Some(Duration::ZERO)).unwrap(), 0);
    }
    assert!(!p.has_waiters());
    let (a, mut b) = pair();
    let src = Arc::new(d.register(a.try_clone().unwrap()).unwrap());
    let s2 = Arc::clone(&src);
    let h = thread::spawn(move || s2.wait(Direction::Read));
    while !p.has_waiters() {
        thread::sleep(Duration::from_millis(1));
    }
    b.write_all(b"x").unwrap();
    h.join().unwrap().unwrap();
    assert!(!p.has_waiters());
    // Dropping the driver wakes its blocked poll and joins the thread.
    drop(src);
    drop(d);
}

/// Wakes racing the consumption of earlier wakes are never lost: every blocking poll that a
/// wake may have targeted returns.
#[test]
fn racing_wakes_are_never_lost() {
    let p: Arc<Poller<ThreadWaiter>> = Arc::new(Poller::new().unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (p2, s2) = (Arc::clone(&p), Arc::clone(&stop));
    let waker = thread::spawn(move || {
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            p2.wake();
            thread::yield_now();
        }
    });
    for _ in 0..2000 {
        p.poll(None).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    waker.join().unwrap();
    // One more wake after the waker stopped must still end a blocking poll.
    let p3 = Arc::clone(&p);
    let h = thread::spawn(move || p3.poll(None).unwrap());
    thread::sleep(Duration::from_millis(5));
    p.wake();
    h.join().unwrap();
}

/// Evictions, past deadlines and readiness racing a thread on its way to park: the waiter
/// always returns (no lost wake-up) with the outcome of one of the racers.
#[test]
fn unblockers_racing_a_parking_thread() {
    let d = Driver::start().unwrap();
    for i in 0..300u32 {
        let (a, mut b) = pair();
        let src = Arc::new(d.register(a.try_clone().unwrap()).unwrap());
        let s2 = Arc::clone(&src);
        let h = thread::spawn(move || s2.wait(Direction::Read));
        if i % 7 != 0 {
            thread::yield_now();
        }
        let r = match i % 3 {
            0 => {
                src.evict().unwrap();
                h.join()
                    .unwrap()
                    .map_err(|e| e.raw_os_error() == Some(libc::EBADF))
            }
            1 => {
                src.set_deadline(Direction::Read, Some(Instant::now()))
                    .unwrap();
                h.join()
                    .unwrap()
                    .map_err(|e| e.kind() == io::ErrorKind::TimedOut)
            }
            _ => {
                b.write_all(b"x").unwrap();
                h.join().unwrap().map_err(|_| false)
            }
        };
        match (i % 3, r) {
            (2, Ok(())) | (0 | 1, Err(true)) => {}
            (k, r) => panic!("iteration {i}: racer {k} gave {r:?}"),
        }
        assert!(!d.poller().has_waiters());
    }
}

/// Many deadlines, set in scrambled order and some moved, all fire (each exactly once) and
/// time out their armed waiters; none fires before it is due.
#[test]
fn many_deadlines_fire_in_time() {
    use gort_netpoll::Armed;
    let p: Poller<Idx> = Poller::new().unwrap();
    let mut keep = Vec::new();
    let mut regs = Vec::new();
    for _ in 0..64 {
        let (a, b) = pair();
        regs.push(p.open(a).unwrap());
        keep.push(b);
    }
    p.poll(Some(Duration::ZERO)).unwrap();
    let start = Instant::now();
    let mut due = Vec::new();
    for (i, reg) in regs.iter().enumerate() {
        let ms = (i * 37 % 64) as u64 + 5;
        // First far away, then moved to its real time.
        p.set_deadline(
            reg,
            Direction::Read,
            Some(start + Duration::from_secs(3600)),
        )
        .unwrap();
        p.set_deadline(
            reg,
            Direction::Read,
            Some(start + Duration::from_millis(ms)),
        )
        .unwrap();
        due.push(start + Duration::from_millis(ms));
        assert!(matches!(
            p.arm(reg, Direction::Read, Idx(i)).unwrap(),
            Armed::Parked
        ));
    }
    let mut fired = vec![false; regs.len()];
    let mut left = regs.len();
    while left > 0 {
        p.poll_with(None, |Idx(i)| {
            assert!(Instant::now() >= due[i], "deadline {i} fired early");
            assert!(!fired[i], "waiter {i} woken twice");
            fired[i] = true;
            left -= 1;
        })
        .unwrap();
    }
    for reg in &regs {
        let e = p.complete(reg, Direction::Read).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
    assert!(!p.has_waiters());
    for reg in regs {
        p.close(reg);
    }
}

/// A waiter that is just an index.
struct Idx(usize);

// SAFETY: maps i to (i + 1) * 4 (> 2) and back.
unsafe impl gort_netpoll::Waiter for Idx {
    fn into_raw(self) -> usize {
        (self.0 + 1) * 4
    }
    unsafe fn from_raw(raw: usize) -> Self {
        Idx(raw / 4 - 1)
    }
    fn wake(self) {}
}

/// A wake-up seen by a non-blocking poll is passed on, not swallowed: a thread whose
/// blocking poll was computed before the wake (a scheduler's timer armed meanwhile) still
/// returns. Before, the zero-timeout poll consumed it and the blocking one slept forever.
#[test]
fn a_non_blocking_poll_passes_a_wake_up_on_to_the_next_blocking_poll() {
    let p: std::sync::Arc<Poller<ThreadWaiter>> = std::sync::Arc::new(Poller::new().unwrap());
    for _ in 0..20 {
        p.wake();
        // Sees the wake-up (maybe more than once) and must leave it pending.
        p.poll(Some(Duration::ZERO)).unwrap();
        p.poll(Some(Duration::ZERO)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let q = p.clone();
        std::thread::spawn(move || {
            q.poll(None).unwrap();
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(20)).is_ok(),
            "a blocking poll slept through a wake-up a non-blocking poll had seen"
        );
    }
}
