//! Proptest: random register / ready / wait / deadline / close programs over socketpairs and
//! pipes, checked step by step against a sequential model of the poll descriptors.
#![cfg(not(loom))]

use gort_netpoll::{Direction, Poller, Registration, Waiter};
use proptest::prelude::*;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A waiter that counts its wakes.
struct Counting(Arc<AtomicUsize>);

// SAFETY: `Arc::into_raw` gives a non-null pointer to an 8-aligned AtomicUsize (> 2), and
// `from_raw` rebuilds the same Arc.
unsafe impl Waiter for Counting {
    fn into_raw(self) -> usize {
        Arc::into_raw(self.0) as usize
    }
    unsafe fn from_raw(raw: usize) -> Self {
        // SAFETY: the poller converts each published word back exactly once.
        Counting(unsafe { Arc::from_raw(raw as *const AtomicUsize) })
    }
    fn wake(self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// How a parked wait is resolved from inside its park closure.
#[derive(Debug, Clone, Copy)]
enum Resolve {
    PeerWriteAndPoll,
    PastDeadline,
    Evict,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Open(usize),
    PeerWrite(usize),
    Poll,
    Drain(usize),
    Deadline(usize, Option<bool>), // None: clear; Some(true): past; Some(false): far future
    Wait(usize, Resolve),
    Close(usize),
}

const SLOTS: usize = 4;

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let resolve = prop_oneof![
        Just(Resolve::PeerWriteAndPoll),
        Just(Resolve::PastDeadline),
        Just(Resolve::Evict)
    ];
    prop_oneof![
        slot.clone().prop_map(Op::Open),
        slot.clone().prop_map(Op::PeerWrite),
        Just(Op::Poll),
        slot.clone().prop_map(Op::Drain),
        (slot.clone(), prop::option::of(any::<bool>())).prop_map(|(s, d)| Op::Deadline(s, d)),
        (slot.clone(), resolve).prop_map(|(s, r)| Op::Wait(s, r)),
        slot.prop_map(Op::Close),
    ]
}

/// The model of one slot's read direction.
#[derive(Debug, Default)]
struct Model {
    /// Unread bytes in the registered end.
    data: bool,
    /// A kernel readiness edge not yet fetched by a poll (only ever set with `data`).
    edge: bool,
    /// The read semaphore holds READY.
    ready: bool,
    /// The read deadline has passed.
    expired: bool,
    /// Evicted: every wait fails.
    closed: bool,
}

/// A registered read end and the peer that writes to it.
struct Slot {
    reg: Option<Registration<OwnedFd>>,
    ours: OwnedFd,
    peer: OwnedFd,
    model: Model,
}

fn new_slot(p: &Poller<Counting>, pipe: bool) -> Slot {
    let (ours, peer): (OwnedFd, OwnedFd) = if pipe {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 returns.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        assert_eq!(r, 0);
        // SAFETY: fresh descriptors owned by nobody else.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    } else {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a.into(), b.into())
    };
    let reg = p.open(ours.try_clone().unwrap()).unwrap();
    Slot {
        reg: Some(reg),
        ours,
        peer,
        model: Model::default(),
    }
}

fn write1(fd: &OwnedFd) {
    let f = std::fs::File::from(fd.try_clone().unwrap());
    (&f).write_all(b"x").unwrap();
}

fn drain(fd: &OwnedFd) {
    let f = std::fs::File::from(fd.try_clone().unwrap());
    let mut buf = [0u8; 64];
    loop {
        match (&f).read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("drain: {e}"),
        }
    }
}

fn poll_all(p: &Poller<Counting>, slots: &mut [Option<Slot>]) -> usize {
    let n = p.poll(Some(Duration::ZERO)).unwrap();
    for s in slots.iter_mut().flatten() {
        if s.model.edge {
            s.model.edge = false;
            s.model.ready = true;
        }
    }
    n
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let p: Poller<Counting> = Poller::new().unwrap();
    let mut slots: Vec<Option<Slot>> = (0..SLOTS).map(|_| None).collect();
    for op in ops {
        match op {
            Op::Open(i) => {
                if slots[i].is_none() {
                    slots[i] = Some(new_slot(&p, i % 2 == 0));
                }
            }
            Op::PeerWrite(i) => {
                if let Some(s) = &mut slots[i]
                    && !s.model.data
                {
                    write1(&s.peer);
                    s.model.data = true;
                    s.model.edge = true;
                }
            }
            Op::Poll => {
                // Single-threaded: no waiter is parked, so nobody is woken.
                prop_assert_eq!(poll_all(&p, &mut slots), 0);
            }
            Op::Drain(i) => {
                if let Some(s) = &mut slots[i] {
                    drain(&s.ours);
                    s.model.data = false;
                    // An edge-triggered report is re-evaluated when fetched: with the data
                    // gone, the pending edge reports nothing readable.
                    s.model.edge = false;
                }
            }
            Op::Deadline(i, d) => {
                if let Some(s) = &mut slots[i] {
                    let when = d.map(|past| {
                        if past {
                            Instant::now() - Duration::from_millis(1)
                        } else {
                            Instant::now() + Duration::from_secs(3600)
                        }
                    });
                    let r = p.set_deadline(s.reg.as_ref().unwrap(), Direction::Read, when);
                    if s.model.closed {
                        prop_assert!(r.is_err());
                    } else {
                        r.unwrap();
                        s.model.expired = d == Some(true);
                    }
                }
            }
            Op::Wait(i, resolve) => {
                let Some(mut s) = slots[i].take() else {
                    continue;
                };
                let m = &s.model;
                let expect_park = !m.closed && !m.expired && !m.ready;
                let wakes = Arc::new(AtomicUsize::new(0));
                let mut parked = 0;
                let reg = s.reg.take().unwrap();
                let mut others = std::mem::take(&mut slots);
                let r = p.wait(&reg, Direction::Read, |c| {
                    parked += 1;
                    assert!(
                        c.commit(Counting(Arc::clone(&wakes))).is_ok(),
                        "commit failed"
                    );
                    match resolve {
                        Resolve::PeerWriteAndPoll => {
                            if !s.model.edge {
                                drain(&s.ours);
                                write1(&s.peer);
                                s.model.data = true;
                            }
                            s.model.edge = false;
                            // The edge wakes exactly our waiter.
                            assert_eq!(poll_all(&p, &mut others), 1);
                        }
                        Resolve::PastDeadline => {
                            p.set_deadline(&reg, Direction::Read, Some(Instant::now()))
                                .unwrap();
                            s.model.expired = true;
                        }
                        Resolve::Evict => {
                            p.evict(&reg).unwrap();
                            s.model.closed = true;
                        }
                    }
                    assert_eq!(
                        wakes.load(Ordering::SeqCst),
                        1,
                        "waiter not woken exactly once"
                    );
                });
                slots = others;
                let m = &mut s.model;
                let want =
                    if m.closed && (parked == 0 || !matches!(resolve, Resolve::PeerWriteAndPoll)) {
                        Err(libc::EBADF)
                    } else if m.expired
                        && !(parked == 1 && matches!(resolve, Resolve::PeerWriteAndPoll))
                    {
                        Err(libc::ETIMEDOUT)
                    } else {
                        Ok(())
                    };
                prop_assert_eq!(parked, usize::from(expect_park));
                if !expect_park && !m.closed && !m.expired {
                    m.ready = false; // consumed
                }
                let got = r.map_err(|e| {
                    if e.kind() == io::ErrorKind::TimedOut {
                        libc::ETIMEDOUT
                    } else {
                        e.raw_os_error().unwrap()
                    }
                });
                prop_assert_eq!(got, want);
                prop_assert!(!p.has_waiters());
                s.reg = Some(reg);
                slots[i] = Some(s);
            }
            Op::Close(i) => {
                if let Some(mut s) = slots[i].take() {
                    drop(p.close(s.reg.take().unwrap()));
                }
            }
        }
        prop_assert_eq!(p.descriptors_in_use(), slots.iter().flatten().count());
    }
    for s in slots.iter_mut().flatten() {
        drop(p.close(s.reg.take().unwrap()));
    }
    prop_assert_eq!(p.descriptors_in_use(), 0);
    Ok(())
}

proptest! {
    #[test]
    fn poller_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
