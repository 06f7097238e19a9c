//! AArch64 (AAPCS64) context switch: a naked `switch` and the first-frame trampoline.

use super::Context;

// Frame that `switch` leaves on a suspended stack, from the saved stack pointer upward:
//   [sp+0]   x19 .. x28, x29 (fp), x30 (lr)   12 words
//   [sp+96]  d8 .. d15                         8 words
//   [sp+160] fpcr, padding                     2 words
const FRAME_BYTES: usize = 176;

/// Saves the callee-saved state of the running context into `from` and resumes `to`.
///
/// # Safety
/// As for the x86_64 version: `to` must hold a context saved by `switch` or prepared by
/// `init_stack`, on a mapped stack that nothing else runs or resumes; `from` must stay valid
/// until the context is resumed.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn switch(from: *mut Context, to: *const Context) {
    core::arch::naked_asm!(
        "sub sp, sp, #176",
        "stp x19, x20, [sp, #0]",
        "stp x21, x22, [sp, #16]",
        "stp x23, x24, [sp, #32]",
        "stp x25, x26, [sp, #48]",
        "stp x27, x28, [sp, #64]",
        "stp x29, x30, [sp, #80]",
        "stp d8, d9, [sp, #96]",
        "stp d10, d11, [sp, #112]",
        "stp d12, d13, [sp, #128]",
        "stp d14, d15, [sp, #144]",
        "mrs x9, fpcr",
        "str x9, [sp, #160]",
        "mov x9, sp",
        "str x9, [x0]",
        "ldr x9, [x1]",
        "mov sp, x9",
        "ldp x19, x20, [sp, #0]",
        "ldp x21, x22, [sp, #16]",
        "ldp x23, x24, [sp, #32]",
        "ldp x25, x26, [sp, #48]",
        "ldp x27, x28, [sp, #64]",
        "ldp x29, x30, [sp, #80]",
        "ldp d8, d9, [sp, #96]",
        "ldp d10, d11, [sp, #112]",
        "ldp d12, d13, [sp, #128]",
        "ldp d14, d15, [sp, #144]",
        "ldr x9, [sp, #160]",
        "msr fpcr, x9",
        "add sp, sp, #176",
        "ret",
    )
}

// The first frame of every goroutine: `switch` returns into it (through x30) with the entry
// argument in x19 and the entry function in x20. `.cfi_undefined x30` ends backtraces here.
core::arch::global_asm!(
    ".pushsection .text.gort_sched_trampoline,\"ax\",@progbits",
    ".globl gort_sched_trampoline",
    ".hidden gort_sched_trampoline",
    ".type gort_sched_trampoline,%function",
    "gort_sched_trampoline:",
    ".cfi_startproc",
    ".cfi_undefined x30",
    "mov x29, #0",
    "mov x0, x19",
    "blr x20",
    "brk #0",
    ".cfi_endproc",
    ".size gort_sched_trampoline, . - gort_sched_trampoline",
    ".popsection",
);

unsafe extern "C" {
    fn gort_sched_trampoline();
}

/// Prepares a fresh context at the top of a stack so that the first `switch` to it calls
/// `entry(arg)` on that stack. `entry` must never return.
///
/// # Safety
/// `top` must be the 16-byte aligned, exclusive upper end of a writable stack region of at
/// least a page that nothing else uses.
pub(crate) unsafe fn init_stack(
    top: *mut u8,
    entry: unsafe extern "C" fn(*mut u8) -> !,
    arg: *mut u8,
) -> Context {
    debug_assert_eq!(top as usize % 16, 0);
    let sp = top.wrapping_sub(FRAME_BYTES) as *mut u64;
    let mut frame = [0u64; FRAME_BYTES / 8];
    frame[0] = arg as u64; // x19
    frame[1] = entry as *const () as usize as u64; // x20
    frame[11] = gort_sched_trampoline as *const () as usize as u64; // x30
    // SAFETY: the caller hands us exclusive use of the region below `top`; the frame spans
    // `top - 176 .. top`, inside it.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), sp, frame.len()) };
    Context { sp: sp as *mut u8 }
}
