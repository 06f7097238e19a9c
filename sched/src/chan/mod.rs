//! Channels with Go's semantics, for goroutines and plain threads alike.

mod core;
mod error;
mod handle;
mod waiter;

pub use error::{CloseError, RecvError, SendError, TryRecvError, TrySendError};
pub use handle::{IntoIter, Iter, Receiver, Sender, chan};
