//! Goroutine stacks: fixed virtual regions carved from slabs, guards, pooling, overflow reports.

mod advise;
mod guard;
mod overflow;
mod pool;
mod region;
mod registry;

pub use guard::GuardMode;
pub use guard::guard_mode;
pub(crate) use overflow::{AltStack, install_overflow_handler, set_current_goid};
pub(crate) use pool::StackPool;
pub use region::{MAX_STACK_SIZE, MIN_STACK_SIZE};
pub(crate) use region::{Stack, page_size};
