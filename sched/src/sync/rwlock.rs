//! A goroutine-aware reader-writer lock (Go's `sync.RWMutex`): a writer waits for the
//! readers already inside and blocks new ones, so writers are not starved.
//!
//! `readers` counts readers inside (or waiting); a writer subtracts `MAX_READERS` to announce
//! itself, so later readers see a negative count and wait on `reader_sema`. `departing`
//! counts the readers the writer still waits for; the last of them releases `writer_sema`.
//! Writers serialize on a `RawMutex`. The algorithm is Go's.

use super::mutex::RawMutex;
use super::sema::Sema;
use crate::WaitReason;
use crate::loom::{AtomicI32, Ordering, UnsafeCell};

const MAX_READERS: i32 = 1 << 30;

/// A reader-writer lock holding its data.
pub struct RwLock<T> {
    writer: RawMutex,
    writer_sema: Sema,
    reader_sema: Sema,
    /// Readers inside or waiting; `- MAX_READERS` while a writer is pending or inside.
    readers: AtomicI32,
    /// Readers the pending writer still waits for.
    departing: AtomicI32,
    data: UnsafeCell<T>,
}

// SAFETY: the lock gives shared access to readers and exclusive access to one writer.
unsafe impl<T: Send> Send for RwLock<T> {}
// SAFETY: as above; readers share `&T`, so `T: Sync` is needed too.
unsafe impl<T: Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    /// An unlocked lock holding `value`.
    pub fn new(value: T) -> RwLock<T> {
        RwLock {
            writer: RawMutex::default(),
            writer_sema: Sema::new(0),
            reader_sema: Sema::new(0),
            readers: AtomicI32::new(0),
            departing: AtomicI32::new(0),
            data: UnsafeCell::new(value),
        }
    }

    /// Locks for reading, waiting while a writer holds or waits for the lock.
    pub fn read(&self) -> ReadGuard<'_, T> {
        // Acquire: pairs with the writer's Release in `write_unlock`.
        if self.readers.fetch_add(1, Ordering::AcqRel) < 0 {
            self.reader_sema
                .acquire(false, WaitReason::SyncRWMutexRLock);
        }
        ReadGuard { l: self }
    }

    fn read_unlock(&self) {
        let r = self.readers.fetch_sub(1, Ordering::AcqRel) - 1;
        if r < 0 {
            assert!(
                r + 1 != 0 && r + 1 != -MAX_READERS,
                "sync: RUnlock of unlocked RWMutex"
            );
            // A writer is pending: the last departing reader lets it in.
            if self.departing.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.writer_sema.release();
            }
        }
    }

    /// Locks for writing, waiting for the readers inside to leave.
    pub fn write(&self) -> WriteGuard<'_, T> {
        self.writer.lock();
        let r = self.readers.fetch_sub(MAX_READERS, Ordering::AcqRel);
        if r != 0 && self.departing.fetch_add(r, Ordering::AcqRel) + r != 0 {
            self.writer_sema.acquire(false, WaitReason::SyncRWMutexLock);
        }
        WriteGuard { l: self }
    }

    fn write_unlock(&self) {
        let r = self.readers.fetch_add(MAX_READERS, Ordering::AcqRel) + MAX_READERS;
        assert!(r < MAX_READERS, "sync: Unlock of unlocked RWMutex");
        for _ in 0..r {
            self.reader_sema.release();
        }
        self.writer.unlock();
    }

    /// The value, consuming the lock.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> std::fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock").finish_non_exhaustive()
    }
}

/// Shared access; unlocks when dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ReadGuard<'a, T> {
    l: &'a RwLock<T>,
}

/// Exclusive access; unlocks when dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct WriteGuard<'a, T> {
    l: &'a RwLock<T>,
}

impl<T> std::ops::Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: readers only share the data; no writer is inside while we are.
        self.l.data.with(|p| unsafe { &*p })
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        self.l.read_unlock();
    }
}

impl<T> std::ops::Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the writer is alone inside.
        self.l.data.with(|p| unsafe { &*p })
    }
}

impl<T> std::ops::DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above.
        self.l.data.with_mut(|p| unsafe { &mut *p })
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        self.l.write_unlock();
    }
}
