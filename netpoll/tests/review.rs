//! Regression tests for the netpoll bugs found by review (issue 13, "Netpoll fixes found by
//! review"), one or more per bug, each named after what used to break.
#![cfg(not(loom))]

mod common;

use common::pair;
use gort_netpoll::{Armed, Direction, Driver, Poller, ThreadWaiter, Waiter};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// How many waiters the poller counts (its Debug form shows the counter).
fn waiters<W: Waiter>(p: &Poller<W>) -> usize {
    let s = format!("{p:?}");
    let rest = &s[s.find("waiters: ").unwrap() + 9..];
    rest[..rest.find(',').unwrap()].parse().unwrap()
}

fn wait_for_waiters<W: Waiter>(p: &Poller<W>, n: usize) {
    let start = Instant::now();
    while waiters(p) < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "waiters never parked"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

// ---- 1. Deregistration by fd number -----------------------------------------------------

/// An fd number closed, reused by a new socket and registered again: the new socket's reader
/// must get its data. With raw fd numbers, closing the old registration (after its fd was
/// closed) deregistered the new socket and its reader timed out with data waiting; now a
/// registration holds its fd, so the old fd can only be closed after (or instead of) its
/// deregistration — `close` hands the fd back, and a registration dropped unclosed drops its
/// fd without naming the number again.
#[test]
fn a_reused_fd_number_keeps_its_new_registration() {
    let d = Driver::start().unwrap();
    let p = d.poller();
    for drop_unclosed in [false, true] {
        let (a, _pa) = pair();
        let n = a.as_raw_fd();
        let old = p.open(a).unwrap();
        if drop_unclosed {
            drop(old); // closes the fd; the old descriptor is leaked, never deregistered
        } else {
            drop(p.close(old)); // deregistered first, then closed
        }
        // Take the number again (fds are allocated lowest first; other tests may race us).
        let mut spare = Vec::new();
        let (b, mut pb) = loop {
            let (b, pb) = pair();
            if b.as_raw_fd() == n || spare.len() > 64 {
                break (b, pb);
            }
            spare.push((b, pb));
        };
        let src = Arc::new(d.register(b).unwrap());
        src.set_deadline(
            Direction::Read,
            Some(Instant::now() + Duration::from_secs(10)),
        )
        .unwrap();
        let s2 = Arc::clone(&src);
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 8];
            s2.read_with(|| s2.get_ref().read(&mut buf))
        });
        wait_for_waiters(p, 1);
        pb.write_all(b"data").unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), 4, "reader missed its data");
    }
}

/// Closing a source while a reader is parked on it: the reader is woken with EBADF, and the
/// fd is closed only when the last holder lets go (evict → deregister → close(2)).
#[test]
fn evicting_a_source_wakes_its_parked_reader_before_the_fd_closes() {
    let d = Driver::start().unwrap();
    let (a, _b) = pair();
    let src = Arc::new(d.register(a).unwrap());
    let s2 = Arc::clone(&src);
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 8];
        let r = s2.read_with(|| s2.get_ref().read(&mut buf));
        // The fd is still ours while we hold the source: reading it is not EBADF.
        let again = s2.get_ref().read(&mut buf).unwrap_err();
        (r, again.kind())
    });
    wait_for_waiters(d.poller(), 1);
    src.evict().unwrap();
    drop(src);
    let (r, again) = reader.join().unwrap();
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EBADF));
    assert_eq!(again, io::ErrorKind::WouldBlock);
}

// ---- 2. The reuse-delay list on an idle poller -------------------------------------------

/// 20k open / close pairs while the driver's poll sleeps without a timeout: descriptors are
/// recycled (the growing reuse-delay list wakes the poll), instead of 20k staying in use.
/// Whenever many are in use the test gives the driver thread time to run (a loaded machine
/// may not schedule it at once); they must come back within seconds.
#[test]
fn closes_during_an_idle_poll_recycle_descriptors() {
    let d = Driver::start().unwrap();
    let p = d.poller();
    thread::sleep(Duration::from_millis(20)); // the driver is asleep in poll(None)
    // A listener with no pending connection: registering it reports no event, so nothing
    // but the closes themselves can end the driver's round.
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    a.set_nonblocking(true).unwrap();
    let cycle = || p.close(p.open(a.as_fd()).unwrap());
    let mut most = 0;
    for _ in 0..20_000 {
        cycle();
        let n = p.descriptors_in_use();
        most = most.max(n);
        if n >= 1024 {
            let start = Instant::now();
            while p.descriptors_in_use() >= 1024 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{} descriptors stay in use for one open fd",
                    p.descriptors_in_use()
                );
                thread::sleep(Duration::from_millis(1));
                cycle();
            }
        }
    }
    eprintln!("at most {most} descriptors in use");
}

// ---- 3. Poll timeouts near u64::MAX ns -----------------------------------------------------

/// A poll sleeping with a timeout just past u64::MAX ns must still be woken by a deadline set
/// later. The timeout used to wrap to 999 ns, so the deadline looked later than the poll's
/// end and did not wake it.
#[test]
fn a_deadline_wakes_a_poll_whose_timeout_is_near_u64_max() {
    let p: Arc<Poller<ThreadWaiter>> = Arc::new(Poller::new().unwrap());
    let (a, _b) = pair();
    let reg = p.open(a).unwrap();
    p.poll(Some(Duration::ZERO)).unwrap(); // the registration's edges
    let (tx, rx) = mpsc::channel();
    let p2 = Arc::clone(&p);
    let h = thread::spawn(move || {
        let t = Duration::from_nanos(u64::MAX) + Duration::from_nanos(1000);
        p2.poll(Some(t)).unwrap();
        tx.send(()).unwrap();
    });
    thread::sleep(Duration::from_millis(50)); // let it fall asleep
    p.set_deadline(
        &reg,
        Direction::Read,
        Some(Instant::now() + Duration::from_millis(20)),
    )
    .unwrap();
    let woke = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    if !woke {
        p.wake();
    }
    h.join().unwrap();
    assert!(woke, "the deadline did not wake the sleeping poll");
    drop(p.close(reg));
}

// ---- 4. A panicking ready callback --------------------------------------------------------

/// A waiter that counts its wakes.
struct Probe(Arc<AtomicUsize>);

// SAFETY: `Arc::into_raw` gives a non-null, 8-aligned pointer (> 2); `from_raw` rebuilds it.
unsafe impl Waiter for Probe {
    fn into_raw(self) -> usize {
        Arc::into_raw(self.0) as usize
    }
    unsafe fn from_raw(raw: usize) -> Self {
        // SAFETY: the poller converts each published word back exactly once.
        Probe(unsafe { Arc::from_raw(raw as *const AtomicUsize) })
    }
    fn wake(self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// `ready` panics on the first waiter of a round with two waiters and a third readable
/// descriptor: the other waiter is still woken, the third descriptor's readiness is kept
/// (edge-triggered: it would never come again), and the round ends (closes recycle at once).
#[test]
fn a_panicking_ready_callback_loses_no_events() {
    let p: Poller<Probe> = Poller::new().unwrap();
    let wakes = Arc::new(AtomicUsize::new(0));
    let mut regs = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let (a, b) = pair();
        regs.push(p.open(a).unwrap());
        peers.push(b);
    }
    p.poll(Some(Duration::ZERO)).unwrap(); // the registrations' edges
    for reg in &regs[..2] {
        let armed = p.arm(reg, Direction::Read, Probe(Arc::clone(&wakes)));
        assert!(matches!(armed, Ok(Armed::Parked)));
    }
    for b in &mut peers {
        b.write_all(b"x").unwrap();
    }
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.poll_with(Some(Duration::from_secs(10)), |_w| {
            panic!("ready callback fails")
        })
    }));
    assert!(r.is_err());
    // One waiter went to the panicking callback (dropped in its unwind); the other is woken.
    assert_eq!(wakes.load(Ordering::SeqCst), 1, "a taken waiter was lost");
    assert!(!p.has_waiters());
    for reg in &regs[..2] {
        p.complete(reg, Direction::Read).unwrap();
    }
    p.wait(&regs[2], Direction::Read, |_| {
        panic!("readiness of the round was lost")
    })
    .unwrap();
    // The round ended: closed descriptors are free at once, not held for a round in flight.
    for reg in regs {
        drop(p.close(reg));
    }
    assert_eq!(p.descriptors_in_use(), 0, "the round counter stayed odd");
}

// ---- 5. Files epoll cannot poll ------------------------------------------------------------

/// `/dev/null` and a regular file are accepted, as Go accepts them: always ready, I/O goes
/// straight to the syscall, deadlines are refused; evict still fails later waits.
#[test]
fn files_the_kernel_cannot_poll_are_always_ready() {
    let d = Driver::start().unwrap();
    let path = std::env::temp_dir().join(format!("gort-netpoll-file-{}", std::process::id()));
    std::fs::write(&path, b"contents").unwrap();
    let files = [
        std::fs::File::open("/dev/null").unwrap(),
        std::fs::File::open(&path).unwrap(),
    ];
    std::fs::remove_file(&path).unwrap();
    for (i, f) in files.into_iter().enumerate() {
        let src = d.register(f).unwrap();
        assert!(!src.is_pollable());
        src.wait(Direction::Read).unwrap();
        src.wait(Direction::Write).unwrap();
        let mut buf = [0u8; 16];
        let n = src.read_with(|| src.get_ref().read(&mut buf)).unwrap();
        assert_eq!(&buf[..n], if i == 0 { &b""[..] } else { b"contents" });
        let e = src
            .set_deadline(Direction::Read, Some(Instant::now()))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        src.evict().unwrap();
        let e = src.wait(Direction::Read).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
    assert_eq!(d.poller().descriptors_in_use(), 0);
}

/// The same at the poller level: an armed waiter of an unpollable file comes straight back.
#[test]
fn an_unpollable_file_arms_ready() {
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let f = std::fs::File::open("/dev/null").unwrap();
    let reg = p.open(f.as_fd()).unwrap();
    assert!(!reg.is_pollable());
    for dir in [Direction::Read, Direction::Write] {
        let armed = p.arm(&reg, dir, ThreadWaiter::current()).unwrap();
        assert!(matches!(armed, Armed::Ready(_)));
    }
    p.close(reg);
}

// ---- 6. Two parties on one direction -------------------------------------------------------

/// Two threads reading one source, with two bytes arriving at once: they take turns (the
/// second used to panic with "two waiters"), and the second gets the byte the first left,
/// with no new readiness edge to wake it: it waited for the first read to end, not for an
/// edge.
#[test]
fn two_readers_of_one_source_take_turns() {
    let d = Driver::start().unwrap();
    let (a, mut b) = pair();
    let src = Arc::new(d.register(a).unwrap());
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = Arc::clone(&src);
            thread::spawn(move || {
                let mut buf = [0u8; 1];
                s.read_with(|| s.get_ref().read(&mut buf)).map(|_| buf[0])
            })
        })
        .collect();
    // One parked on the semaphore, one queued for its turn.
    wait_for_waiters(d.poller(), 2);
    b.write_all(b"xy").unwrap();
    let mut got: Vec<u8> = readers
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, b"xy");
    assert!(!d.poller().has_waiters());
}

/// Eviction wakes both the reader parked on the semaphore and the one queued for its turn.
#[test]
fn evict_wakes_readers_queued_for_their_turn() {
    let d = Driver::start().unwrap();
    let (a, _b) = pair();
    let src = Arc::new(d.register(a).unwrap());
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let s = Arc::clone(&src);
            thread::spawn(move || {
                let mut buf = [0u8; 1];
                s.read_with(|| s.get_ref().read(&mut buf))
            })
        })
        .collect();
    wait_for_waiters(d.poller(), 3);
    src.evict().unwrap();
    for h in readers {
        let e = h.join().unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }
    assert!(!d.poller().has_waiters());
}

/// Writers take turns too, and a reader is not held up by them.
#[test]
fn writers_take_turns_and_readers_do_not_wait_for_them() {
    let d = Driver::start().unwrap();
    let (a, b) = pair();
    // Fill the send buffer so writers have to wait.
    let chunk = [0u8; 4096];
    while (&a).write(&chunk).is_ok() {}
    let src = Arc::new(d.register(a).unwrap());
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let s = Arc::clone(&src);
            thread::spawn(move || s.write_with(|| s.get_ref().write(b"w")))
        })
        .collect();
    wait_for_waiters(d.poller(), 2);
    // The read direction is free: with nothing to read it parks, and a past deadline ends it.
    src.set_deadline(Direction::Read, Some(Instant::now()))
        .unwrap();
    let e = src.wait(Direction::Read).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    // Drain the peer: both writers get through, one after the other.
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    let mut done = 0;
    let mut writers = writers;
    while !writers.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "writers stuck");
        let _ = (&b).read(&mut buf);
        if writers[0].is_finished() {
            assert_eq!(writers.remove(0).join().unwrap().unwrap(), 1);
            done += 1;
        } else {
            thread::sleep(Duration::from_millis(1));
        }
    }
    assert_eq!(done, 2);
}

/// `arm` does not queue: a direction held by an armed waiter refuses a second one.
#[test]
fn arming_a_held_direction_is_refused() {
    let p: Poller<ThreadWaiter> = Poller::new().unwrap();
    let (a, _b) = pair();
    let reg = p.open(a.as_fd()).unwrap();
    p.poll(Some(Duration::ZERO)).unwrap();
    let armed = p
        .arm(&reg, Direction::Read, ThreadWaiter::current())
        .unwrap();
    assert!(matches!(armed, Armed::Parked));
    let e = p
        .arm(&reg, Direction::Read, ThreadWaiter::current())
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
    // The write direction is independent.
    let armed = p
        .arm(&reg, Direction::Write, ThreadWaiter::current())
        .unwrap();
    assert!(matches!(armed, Armed::Ready(_)));
    p.evict(&reg).unwrap();
    ThreadWaiter::park(); // the eviction's wake of our armed waiter
    assert!(p.complete(&reg, Direction::Read).is_err());
    p.close(reg);
}
