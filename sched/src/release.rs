//! Handing idle memory back to the OS: pooled stacks and free Gs beyond a working reserve.
//!
//! Idle Ms drive it (`M::stop_m`): each call does a bounded step and says when to call again,
//! and the M waiting in the idle hook uses that as its poll timeout, so a burst's memory comes
//! back within seconds with no dedicated thread and no wake-ups once nothing is left.

use crate::sched::{Shared, lock};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Free Gs kept in the runtime-wide list at least (the per-P caches are small already); more
/// while more warm stacks are pooled, so free Gs age with the stacks they ran on.
const FREE_G_KEEP: usize = 1024;

/// Most free Gs one step drops.
const FREE_G_BATCH: usize = 16 * 1024;

/// When to look at the free-G list again while it is above the reserve.
const FREE_G_TICK: Duration = Duration::from_millis(2);

/// Gs freed (by every runtime of the process) before the allocator is asked to trim: a
/// program whose free list hovers just above the reserve does not trim at every idle.
const TRIM_AFTER: usize = 4096;

/// Gs freed since the last trim, process-wide like the allocator itself.
static FREED_SINCE_TRIM: AtomicUsize = AtomicUsize::new(0);

impl Shared {
    /// One bounded step of releasing idle memory: pages of pooled stacks that sat unused
    /// (beyond a warm reserve), and free Gs beyond a reserve. Returns when to call again, or
    /// `None` when nothing is left to release.
    #[cold]
    pub(crate) fn release_idle_memory(&self) -> Option<Duration> {
        let stacks = self.stacks.release_step();
        let gs = self.release_free_gs(FREE_G_KEEP.max(self.stacks.warm()));
        match (stacks, gs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Drops up to `FREE_G_BATCH` free Gs beyond `keep`.
    fn release_free_gs(&self, keep: usize) -> Option<Duration> {
        let dropped = {
            let mut free = lock(&self.free_gs);
            let n = free.len().saturating_sub(keep).min(FREE_G_BATCH);
            if n == 0 {
                return None;
            }
            let at = free.len() - n;
            let dropped = free.split_off(at);
            // The list's own buffer (8 bytes a G) goes back too once a burst is gone.
            if free.capacity() > 4 * keep {
                free.shrink_to(2 * keep);
            }
            dropped
        };
        // Freed outside the lock: spawns refilling their caches are not held up.
        let freed = FREED_SINCE_TRIM.fetch_add(dropped.len(), Ordering::Relaxed) + dropped.len();
        drop(dropped);
        if lock(&self.free_gs).len() > keep {
            return Some(FREE_G_TICK);
        }
        if freed >= TRIM_AFTER && FREED_SINCE_TRIM.swap(0, Ordering::Relaxed) >= TRIM_AFTER {
            trim_malloc();
        }
        None
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
