//! x86_64 System V context switch: a naked `switch` and the first-frame trampoline.

use super::Context;

// Frame that `switch` leaves on a suspended stack, from the saved stack pointer upward:
//   [sp+0]  mxcsr (4 bytes) | x87 control word (2 bytes) | padding
//   [sp+8]  r15, r14, r13, r12, rbx, rbp
//   [sp+56] return address
const FRAME_WORDS: usize = 8;

/// Saves the callee-saved state of the running context into `from` and resumes `to`.
/// MXCSR and the x87 control word are saved always and loaded only when they differ from
/// the running ones (they are callee-saved in the System V ABI, and rarely changed).
///
/// Returns when something switches back to `from`.
///
/// # Safety
/// `to` must hold a context saved by `switch` or prepared by `init_stack`, on a stack that is
/// mapped, not running on any thread, and not resumed by anyone else; `from` must stay valid
/// until the context is resumed.
#[unsafe(naked)]
pub(crate) unsafe extern "C" fn switch(from: *mut Context, to: *const Context) {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "sub rsp, 8",
        "stmxcsr [rsp]",
        "fnstcw [rsp + 4]",
        // Keep the current control words: the other side usually has the same ones, and
        // loading them (`fldcw` especially) costs more than the rest of the switch.
        "mov eax, [rsp]",
        "movzx ecx, word ptr [rsp + 4]",
        "mov [rdi], rsp",
        "mov rsp, [rsi]",
        "cmp eax, [rsp]",
        "jne 3f",
        "2:",
        "cmp cx, word ptr [rsp + 4]",
        "jne 5f",
        "4:",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
        "3:",
        "ldmxcsr [rsp]",
        "jmp 2b",
        "5:",
        "fldcw [rsp + 4]",
        "jmp 4b",
    )
}

// The first frame of every goroutine. `switch` "returns" into it with the entry argument in
// r12 and the entry function in r13. `.cfi_undefined rip` tells unwinders that this frame has
// no caller, so backtraces end here cleanly instead of walking into garbage.
core::arch::global_asm!(
    ".pushsection .text.gort_sched_trampoline,\"ax\",@progbits",
    ".globl gort_sched_trampoline",
    ".hidden gort_sched_trampoline",
    ".type gort_sched_trampoline,@function",
    "gort_sched_trampoline:",
    ".cfi_startproc",
    ".cfi_undefined rip",
    "xor ebp, ebp",
    "mov rdi, r12",
    "call r13",
    "ud2",
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
    // The trampoline is entered by `ret`, so the slot after the return address must be 16-byte
    // aligned for its `call` to give `entry` a correctly aligned frame: put the return address
    // at top - 24 and leave two zero words above it.
    let sp = top.wrapping_sub(24 + (FRAME_WORDS - 1) * 8) as *mut u64;
    let frame: [u64; FRAME_WORDS + 2] = [
        0x037F_u64 << 32 | 0x1F80,          // default x87 control word and MXCSR
        0,                                  // r15
        0,                                  // r14
        entry as *const () as usize as u64, // r13
        arg as u64,                         // r12
        0,                                  // rbx
        0,                                  // rbp
        gort_sched_trampoline as *const () as usize as u64,
        0,
        0,
    ];
    // SAFETY: the caller hands us exclusive use of the region below `top`; the frame spans
    // `top - 80 .. top`, inside it.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), sp, frame.len()) };
    Context { sp: sp as *mut u8 }
}
