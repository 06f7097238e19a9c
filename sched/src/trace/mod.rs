//! Goroutine dumps with real frames: frame-pointer stack walks, symbolization, Go's text format.

mod format;
mod start;
mod symbolize;
mod symtab;
mod walk;

pub(crate) use format::{MAX_FRAMES, write_frames, write_goroutine};
pub(crate) use start::{current_start, parked_start};
pub(crate) use symbolize::symbolize_stack;
pub(crate) use walk::walk;
