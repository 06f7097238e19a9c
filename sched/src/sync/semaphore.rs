//! A counting semaphore for goroutines and threads.

use super::sema::Sema;
use crate::WaitReason;

/// A counting semaphore: `acquire` takes a permit, waiting (FIFO) while none is free;
/// `release` returns one, handing it straight to the longest waiter.
#[derive(Debug)]
pub struct Semaphore {
    sema: Sema,
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            sema: Sema::new(permits),
        }
    }

    /// Takes a permit, waiting for one.
    pub fn acquire(&self) {
        self.sema.acquire(false, WaitReason::SemAcquire);
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> bool {
        self.sema.try_acquire()
    }

    /// Returns a permit.
    pub fn release(&self) {
        self.sema.release();
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.sema.available()
    }
}
