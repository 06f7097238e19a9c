//! Channels with Go's semantics, for goroutines and plain threads alike, and `select!`.

mod core;
mod error;
mod handle;
mod macros;
mod select;
pub(crate) mod waiter;

pub use error::{
    CloseError, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};
pub use handle::{IntoIter, Iter, Receiver, Sender, chan};
#[doc(hidden)]
pub use select::{RecvArm, RecvSource, SelectArm, SendArm, SendSource, select};
#[doc(hidden)]
pub use waiter::{Group, Won};
