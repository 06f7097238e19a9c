//! Handing idle memory back to the OS: pooled stacks and free Gs beyond a working reserve.
//!
//! Idle Ms drive it (`M::stop_m`): each call does a bounded step and says when to call again,
//! and the M waiting in the idle hook uses that as its poll timeout, so a burst's memory comes
//! back within seconds with no dedicated thread and no wake-ups once nothing is left.

use crate::sched::{Shared, lock};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Free Gs always kept in the runtime-wide list (the per-P caches are small already).
const FREE_G_KEEP: usize = 1024;

/// Most free Gs one step drops.
const FREE_G_BATCH: usize = 16 * 1024;

/// Items of a free list are released only after they sat unused for this long, so that a
/// program alternating between busy and idle phases keeps its working set.
const RELEASE_AGE: Duration = Duration::from_millis(100);

/// When to step again while a release pass has work left: short, so a burst's memory comes
/// back within seconds, yet leaving the idle M responsive.
const RELEASE_TICK: Duration = Duration::from_millis(2);

/// Gs freed (by every runtime of the process) before the allocator is asked to trim: a
/// program whose free list hovers just above the reserve does not trim at every idle.
const TRIM_AFTER: usize = 4096;

/// Gs freed since the last trim, process-wide like the allocator itself.
static FREED_SINCE_TRIM: AtomicUsize = AtomicUsize::new(0);

/// How much of a free list sat unused through a whole period: the fewest items it held since
/// the period began. What stayed beyond a reserve that long is released, a batch per step.
#[derive(Debug, Default)]
pub(crate) struct Aging {
    low: usize,
    since: Option<Instant>,
    /// Items the current pass may still release.
    budget: usize,
}

impl Aging {
    /// Records that the list held only `len` items (some were taken).
    #[inline]
    pub(crate) fn saw(&mut self, len: usize) {
        self.low = self.low.min(len);
    }

    /// For a list of `len` items: how many to release now (at most `batch`, never below
    /// `keep`), and when to step again — soon while a pass has work left, at the period's end
    /// while items beyond the reserve are ageing, `None` when nothing is beyond it.
    pub(crate) fn step(
        &mut self,
        len: usize,
        keep: usize,
        batch: usize,
    ) -> (usize, Option<Duration>) {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        if self.budget == 0 && now.duration_since(since) >= RELEASE_AGE {
            // A new period: what stayed unused through the last one may go.
            self.budget = self.low.min(len).saturating_sub(keep);
            self.low = len;
            self.since = Some(now);
        }
        let n = self.budget.min(batch).min(len.saturating_sub(keep));
        self.budget = if n == 0 { 0 } else { self.budget - n };
        self.saw(len - n);
        let next = if self.budget > 0 {
            Some(RELEASE_TICK)
        } else if len - n > keep {
            let age = now.duration_since(self.since.unwrap_or(now));
            Some(RELEASE_AGE.saturating_sub(age).max(RELEASE_TICK))
        } else {
            None
        };
        (n, next)
    }
}

/// Per-runtime state of the idle release (a field of `Shared`).
#[derive(Debug, Default)]
pub(crate) struct IdleRelease {
    /// Ageing of the runtime-wide free-G list. Takes from the list are not reported to it;
    /// the lengths idle Ms see stand in for them, which at worst releases a few Gs that are
    /// soon made again.
    free_gs: Mutex<Aging>,
}

impl Shared {
    /// One bounded step of releasing idle memory: pages of pooled stacks and free Gs that
    /// sat unused for a period, beyond warm reserves. Returns when to call again, or `None`
    /// when nothing is left to release.
    #[cold]
    pub(crate) fn release_idle_memory(&self) -> Option<Duration> {
        let stacks = self.stacks.release_step();
        let gs = self.release_free_gs();
        match (stacks, gs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops a batch of free Gs that sat unused for a period, beyond `FREE_G_KEEP`.
    fn release_free_gs(&self) -> Option<Duration> {
        let (dropped, next) = {
            let mut free = lock(&self.free_gs);
            let (n, next) = lock(&self.release.free_gs).step(free.len(), FREE_G_KEEP, FREE_G_BATCH);
            if n == 0 {
                return next;
            }
            let at = free.len() - n;
            let dropped = free.split_off(at);
            // The list's own buffer (8 bytes a G) goes back too once a burst is gone.
            let keep = 2 * FREE_G_KEEP.max(free.len());
            if free.capacity() > 2 * keep {
                free.shrink_to(keep);
            }
            (dropped, next)
        };
        // Freed outside the lock: spawns refilling their caches are not held up.
        let freed = FREED_SINCE_TRIM.fetch_add(dropped.len(), Ordering::Relaxed) + dropped.len();
        self.allgs.unregister_all(&dropped);
        drop(dropped);
        if next.is_none()
            && freed >= TRIM_AFTER
            && FREED_SINCE_TRIM.swap(0, Ordering::Relaxed) >= TRIM_AFTER
        {
            trim_malloc();
        }
        next
    }
}

/// Gs live in the system allocator, which keeps freed memory of its per-thread arenas
/// resident; once many Gs are gone, ask it to hand free pages back (glibc only; about a
/// millisecond, at the end of a release pass).
#[cold]
fn trim_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_what_sat_unused_a_whole_period_goes_in_batches_above_the_reserve() {
        let mut a = Aging::default();
        // The first period has no history: nothing goes, look again at its end.
        let (n, next) = a.step(1000, 100, 300);
        assert_eq!(n, 0);
        assert!(next.is_some_and(|d| d > RELEASE_TICK));
        // Items taken during the period (the list fell to 400) were in use.
        a.saw(400);
        std::thread::sleep(RELEASE_AGE);
        let (n, _) = a.step(1000, 100, 300);
        assert_eq!(n, 0, "the period began with no history");
        std::thread::sleep(RELEASE_AGE);
        // A whole period with 1000 untouched: 900 beyond the reserve go, 300 a step.
        let mut len = 1000;
        let mut steps = 0;
        loop {
            let (n, next) = a.step(len, 100, 300);
            len -= n;
            steps += 1;
            if next != Some(RELEASE_TICK) {
                break;
            }
        }
        assert_eq!((len, steps), (100, 3));
        assert_eq!(a.step(len, 100, 300), (0, None));
        // A list at or below its reserve never needs another look.
        assert_eq!(Aging::default().step(100, 100, 300), (0, None));
    }
}
