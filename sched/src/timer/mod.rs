//! Timers: per-P 4-ary heaps, lockable by any M, and the cells they point at.

mod cell;
mod heap;
mod home;

pub(crate) use cell::{Action, TimerCell};
pub(crate) use home::{FOREIGN_HEAP, NOT_POLLING, TimerHome};
