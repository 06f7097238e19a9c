//! Architecture-specific context switch: declarations and re-exports only.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(target_arch = "aarch64")]
pub(crate) use aarch64::{init_stack, switch};
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::{init_stack, switch};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("gort-sched supports x86_64 and aarch64 only");

/// A suspended execution context: the stack pointer at which `switch` pushed the callee-saved
/// registers. Everything else lives on the suspended stack itself.
///
/// Written by `switch` when its owner is switched out (on the thread that runs the owner) and
/// read by `switch` when the owner is resumed (on the thread that resumes it, after acquiring
/// the owner through the run queue or the park protocol, which orders the two).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Context {
    pub(crate) sp: *mut u8,
}

impl Context {
    pub(crate) const fn empty() -> Self {
        Context {
            sp: core::ptr::null_mut(),
        }
    }
}
