//! A poll descriptor: its two semaphores, its two direction locks and the info word
//! (sequence number, closing and deadline-expired bits) that waiters read without a lock.

use crate::lock::FdLock;
use crate::loom::{AtomicU64, Ordering, fence};
use crate::sema::{Reserve, Sema};

/// Which way a waiter waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Wait until the fd is readable (or hung up, or in error).
    Read,
    /// Wait until the fd is writable (or hung up, or in error).
    Write,
}

impl Direction {
    /// 0 for read, 1 for write: the low bit of a deadline key.
    #[inline]
    pub(crate) fn index(self) -> u32 {
        match self {
            Direction::Read => 0,
            Direction::Write => 1,
        }
    }

    /// The info bit saying this direction's deadline has passed.
    #[inline]
    pub(crate) fn expired_bit(self) -> u64 {
        match self {
            Direction::Read => READ_EXPIRED,
            Direction::Write => WRITE_EXPIRED,
        }
    }
}

/// The descriptor was closed or evicted: every wait fails.
pub(crate) const CLOSING: u64 = 1;
/// The read deadline has passed: read waits time out.
pub(crate) const READ_EXPIRED: u64 = 2;
/// The write deadline has passed: write waits time out.
pub(crate) const WRITE_EXPIRED: u64 = 4;
/// The kernel reported end-of-file, a hang-up or an error for the descriptor. Set by event
/// dispatch before the readiness it comes with, sticky until the descriptor is reopened; a
/// wait ignores it. It voids `Poller::io_stream`'s drained note: once the peer has closed,
/// a short read no longer means the next one would block (it returns end-of-file), and the
/// edge that reported the close may already have been consumed, with none to follow.
pub(crate) const HUNG_UP: u64 = 8;

/// The sequence number held in an info word.
#[inline]
pub(crate) fn info_seq(info: u64) -> u32 {
    (info >> 32) as u32
}

/// One poll descriptor. Descriptors live in the table for the poller's lifetime and are
/// recycled; `info`'s sequence number tells owners (and events) apart.
#[derive(Debug)]
pub(crate) struct PollDesc {
    /// `seq << 32 | flags`. The sequence number is written by `open` (Release, read with
    /// Acquire by event dispatch and waiters); flags are set by close and deadlines and
    /// cleared by deadlines with RMWs followed by a SeqCst fence that pairs with the waiter's
    /// fence between `reserve` and its info check.
    pub(crate) info: AtomicU64,
    /// Readers' semaphore.
    pub(crate) read: Sema,
    /// Writers' semaphore.
    pub(crate) write: Sema,
    /// Serialises readers (Go's fdMutex read lock): one party at a time uses `read`.
    pub(crate) rlock: FdLock,
    /// Serialises writers.
    pub(crate) wlock: FdLock,
}

impl PollDesc {
    pub(crate) fn new() -> Self {
        PollDesc {
            info: AtomicU64::new(CLOSING),
            read: Sema::new(),
            write: Sema::new(),
            rlock: FdLock::new(),
            wlock: FdLock::new(),
        }
    }

    #[inline]
    pub(crate) fn lock(&self, dir: Direction) -> &FdLock {
        match dir {
            Direction::Read => &self.rlock,
            Direction::Write => &self.wlock,
        }
    }

    #[inline]
    pub(crate) fn sema(&self, dir: Direction) -> &Sema {
        match dir {
            Direction::Read => &self.read,
            Direction::Write => &self.write,
        }
    }

    /// Current info word (Acquire: pairs with the Release/SeqCst writers above).
    #[inline]
    pub(crate) fn info(&self) -> u64 {
        self.info.load(Ordering::Acquire)
    }

    /// The error a waiter of owner `seq` in `dir` must report now, if any.
    #[inline]
    pub(crate) fn check(&self, seq: u32, dir: Direction) -> Result<(), WaitError> {
        let info = self.info();
        if info & (CLOSING | dir.expired_bit()) == 0 && info_seq(info) == seq {
            Ok(())
        } else if info & CLOSING != 0 || info_seq(info) != seq {
            Err(WaitError::Closed)
        } else {
            Err(WaitError::TimedOut)
        }
    }

    /// The waiter's side of the protocol: consume readiness, or reserve, re-check the flags
    /// and call `park` (which commits a waiter and blocks, or returns at once if its commit
    /// fails), until readiness is delivered or an error flag is seen.
    #[inline]
    pub(crate) fn wait(
        &self,
        seq: u32,
        dir: Direction,
        mut park: impl FnMut(&Sema),
    ) -> Result<(), WaitError> {
        let sema = self.sema(dir);
        loop {
            self.check(seq, dir)?;
            if sema.reserve() == Reserve::Ready {
                return Ok(());
            }
            // Pairs with the fence in `flag_and_release`: either the unblocker sees our
            // reservation and releases it, or we see its flag here.
            fence(Ordering::SeqCst);
            if self.check(seq, dir).is_ok() {
                park(sema);
            }
            if sema.finish() {
                return Ok(());
            }
        }
    }

    /// Set `flags` (CLOSING or an expired bit), then release the waiters of `dirs` without
    /// readiness; returns the raw waiters taken, which the caller must wake.
    #[inline]
    pub(crate) fn flag_and_release(&self, flags: u64, dirs: &[Direction]) -> [Option<usize>; 2] {
        self.info.fetch_or(flags, Ordering::SeqCst);
        // Pairs with the waiter's fence in `wait`.
        fence(Ordering::SeqCst);
        let mut out = [None, None];
        for &d in dirs {
            out[d.index() as usize] = self.sema(d).unblock(false);
        }
        out
    }

    /// Clear a deadline's expired bit (the deadline was moved to the future or removed).
    #[inline]
    pub(crate) fn clear_flag(&self, flag: u64) {
        self.info.fetch_and(!flag, Ordering::SeqCst);
    }

    /// Record readiness in `dir`; returns the raw waiter taken, which the caller must wake.
    #[inline]
    pub(crate) fn ready(&self, dir: Direction) -> Option<usize> {
        self.sema(dir).unblock(true)
    }
}

/// Why a wait ended without readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitError {
    /// The descriptor was closed or evicted (or the handle is stale).
    Closed,
    /// The direction's deadline has passed.
    TimedOut,
}

/// Loom models of the semaphore protocol: a waiter against ready, close and deadline
/// unblockers. A parked waiter sleeps in loom's `park`, so a lost wake-up is a deadlock loom
/// reports; every taken waiter is counted, so a double wake fails the final assertion.
#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use crate::loom::{Arc, AtomicUsize, thread};

    /// The raw word of the one waiter in these models.
    const TOKEN: usize = 8;

    struct Shared {
        desc: PollDesc,
        /// Commits that succeeded (written by the waiter).
        commits: AtomicUsize,
        /// Waiters taken out of a semaphore and woken (written by unblockers).
        wakes: AtomicUsize,
    }

    fn shared() -> Arc<Shared> {
        let desc = PollDesc::new();
        desc.info.store(0, Ordering::Relaxed); // owner with sequence number 0, no flags
        Arc::new(Shared {
            desc,
            commits: AtomicUsize::new(0),
            wakes: AtomicUsize::new(0),
        })
    }

    /// Wake the waiter, if an unblock took one.
    fn wake(s: &Shared, taken: Option<usize>, waiter: &thread::Thread) {
        if let Some(raw) = taken {
            assert_eq!(raw, TOKEN);
            s.wakes.fetch_add(1, Ordering::Release);
            waiter.unpark();
        }
    }

    /// The waiter: commit TOKEN and park until woken.
    fn wait(s: &Shared) -> Result<(), WaitError> {
        s.desc.wait(0, Direction::Read, |sema| {
            if sema.commit(TOKEN) {
                let n = s.commits.fetch_add(1, Ordering::Relaxed) + 1;
                while s.wakes.load(Ordering::Acquire) < n {
                    thread::park();
                }
            }
        })
    }

    fn run(
        unblockers: Vec<Box<dyn Fn(&Shared, &thread::Thread) + Send + Sync>>,
    ) -> (Result<(), WaitError>, usize) {
        let s = shared();
        let me = thread::current();
        let hs: Vec<_> = unblockers
            .into_iter()
            .map(|f| {
                let (s, me) = (Arc::clone(&s), me.clone());
                thread::spawn(move || f(&s, &me))
            })
            .collect();
        let r = wait(&s);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(
            s.wakes.load(Ordering::Relaxed),
            s.commits.load(Ordering::Relaxed)
        );
        // Every committed waiter above was woken exactly once.
        assert!(!s.desc.read.has_waiter());
        (r, s.commits.load(Ordering::Relaxed))
    }

    fn ready() -> Box<dyn Fn(&Shared, &thread::Thread) + Send + Sync> {
        Box::new(|s, w| wake(s, s.desc.ready(Direction::Read), w))
    }

    fn close() -> Box<dyn Fn(&Shared, &thread::Thread) + Send + Sync> {
        Box::new(|s, w| {
            let [r, _] = s
                .desc
                .flag_and_release(CLOSING, &[Direction::Read, Direction::Write]);
            wake(s, r, w)
        })
    }

    fn expire() -> Box<dyn Fn(&Shared, &thread::Thread) + Send + Sync> {
        Box::new(|s, w| {
            let [r, _] = s.desc.flag_and_release(READ_EXPIRED, &[Direction::Read]);
            wake(s, r, w)
        })
    }

    #[test]
    fn ready_vs_wait() {
        loom::model(|| {
            let (r, commits) = run(vec![ready()]);
            assert!(commits <= 1);
            assert_eq!(r, Ok(()));
        });
    }

    #[test]
    fn close_vs_wait() {
        loom::model(|| {
            let (r, commits) = run(vec![close()]);
            assert!(commits <= 1);
            assert_eq!(r, Err(WaitError::Closed));
        });
    }

    #[test]
    fn deadline_vs_wait() {
        loom::model(|| {
            let (r, commits) = run(vec![expire()]);
            assert!(commits <= 1);
            assert_eq!(r, Err(WaitError::TimedOut));
        });
    }

    #[test]
    fn ready_vs_close_vs_wait() {
        loom::model(|| {
            let (r, commits) = run(vec![ready(), close()]);
            assert!(commits <= 1);
            assert!(matches!(r, Ok(()) | Err(WaitError::Closed)));
        });
    }

    #[test]
    fn ready_vs_deadline_vs_wait() {
        loom::model(|| {
            let (r, commits) = run(vec![ready(), expire()]);
            assert!(commits <= 1);
            assert!(matches!(r, Ok(()) | Err(WaitError::TimedOut)));
        });
    }

    #[test]
    fn close_vs_deadline_vs_wait() {
        loom::model(|| {
            let (r, commits) = run(vec![close(), expire()]);
            assert!(commits <= 1);
            assert!(r.is_err());
        });
    }

    /// A deadline that expires and is then moved to the future, followed by readiness: the
    /// waiter ends either timed out or ready, never stuck.
    #[test]
    fn moved_deadline_then_ready_vs_wait() {
        loom::model(|| {
            let (r, _) = run(vec![Box::new(|s, w| {
                let [r, _] = s.desc.flag_and_release(READ_EXPIRED, &[Direction::Read]);
                wake(s, r, w);
                s.desc.clear_flag(READ_EXPIRED);
                wake(s, s.desc.ready(Direction::Read), w);
            })]);
            assert!(matches!(r, Ok(()) | Err(WaitError::TimedOut)));
        });
    }
}
