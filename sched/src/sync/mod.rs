//! Go's `sync` for goroutines and plain threads: `Mutex` (with starvation mode), `RwLock`,
//! `WaitGroup`, `Once`, `Cond` and a counting `Semaphore`, all parking goroutines and
//! blocking threads on one semaphore with direct hand-off (`sema.rs`).

mod cond;
mod mutex;
mod once;
mod rwlock;
mod sema;
mod semaphore;
mod waitgroup;

pub use cond::Cond;
pub use mutex::{Mutex, MutexGuard};
pub use once::Once;
pub use rwlock::{ReadGuard, RwLock, WriteGuard};
pub use semaphore::Semaphore;
pub use waitgroup::WaitGroup;
