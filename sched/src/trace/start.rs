//! Where a stack walk starts: the calling function's own frame, or a goroutine parked by `switch`.
//!
//! A start is a pair `(pc, fp)` for [`walk`](super::walk): `pc` is where the innermost
//! frame stands and `fp` is that frame's frame pointer, the address of its record. Both
//! starts here give a *return address* as `pc` (the address after a call instruction), like
//! every other address of the walk, so symbolization looks each one up at `pc - 1`.

/// Where a walk starts: `pc`, a return address in the innermost frame, and `fp`, that
/// frame's frame pointer. `repr(C)` because [`current_start`] returns it in two registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct WalkStart {
    pub(crate) pc: usize,
    pub(crate) fp: usize,
}

/// The start of a walk of the calling thread's stack, from the function that calls this:
/// `pc` is the return address into the caller and `fp` the caller's frame pointer.
///
/// Naked, so it has no frame of its own under any compiler flags and can never be inlined:
/// the frame-pointer register still holds the caller's, and the return address is where
/// the call put it (on top of the stack on x86_64, in x30 on AArch64). The caller's frame
/// stays live until the caller returns, so the caller can pass the result to
/// [`walk`](super::walk) itself. (A non-naked helper would return its *own* frame pointer,
/// whose record is dead, and soon overwritten, once it returns.)
///
/// Only meaningful when the caller keeps frame pointers, as the whole workspace does;
/// otherwise `fp` is whatever the register holds, which the walk tolerates.
#[cfg(target_arch = "x86_64")]
#[unsafe(naked)]
pub(crate) extern "C" fn current_start() -> WalkStart {
    // SAFETY (of the naked body): it reads only [rsp], the return address the call just
    // pushed, writes only the return registers (rax:rdx hold a two-word struct), returns.
    core::arch::naked_asm!("mov rax, [rsp]", "mov rdx, rbp", "ret")
}

/// As the x86_64 version; the result comes back in x0:x1.
#[cfg(target_arch = "aarch64")]
#[unsafe(naked)]
pub(crate) extern "C" fn current_start() -> WalkStart {
    // SAFETY (of the naked body): it reads two registers, writes the return registers, and
    // returns.
    core::arch::naked_asm!("mov x0, x30", "mov x1, x29", "ret")
}

// Where `switch` (arch/) leaves the switched-out side's frame pointer and return address,
// as byte offsets from the stack pointer it saves in `Context::sp`. They must follow the
// push order and frame size in arch/x86_64.rs and arch/aarch64.rs; the tests switch through
// the real `switch` to hold them to it.

/// x86_64: mxcsr/x87 word at +0, then r15, r14, r13, r12, rbx, rbp (+48), then the return
/// address `call switch` pushed (+56).
#[cfg(target_arch = "x86_64")]
const PARKED_FP: usize = 48;
#[cfg(target_arch = "x86_64")]
const PARKED_PC: usize = 56;

/// AArch64: x19..x28 at +0..+80, then the pair x29 (+80), x30 (+88), the return address
/// `bl switch` left in the link register.
#[cfg(target_arch = "aarch64")]
const PARKED_FP: usize = 80;
#[cfg(target_arch = "aarch64")]
const PARKED_PC: usize = 88;

/// The start of a walk of a goroutine switched out by `switch`, from its saved stack
/// pointer (`Context::sp`).
///
/// `pc` is the return address into the function that called `switch`, and `fp` that
/// function's frame pointer, both as `switch` saved them. A context prepared by
/// `init_stack` and never run gives the trampoline's address and a zero `fp`.
///
/// # Safety
/// `ctx_sp` must be a stack pointer saved by `switch` or prepared by `init_stack` for a
/// context that is not running and is not resumed during the call, on a stack that stays
/// mapped meanwhile.
pub(crate) unsafe fn parked_start(ctx_sp: usize) -> WalkStart {
    let sp = ctx_sp as *const u8;
    // SAFETY: per the caller's promise the saved frame lies at `sp` on a mapped stack that
    // nobody writes during the call; both offsets fall inside that frame, and `sp` is
    // 16-byte aligned (as `switch` and `init_stack` leave it), so the words are aligned.
    unsafe {
        WalkStart {
            pc: sp.add(PARKED_PC).cast::<usize>().read_volatile(),
            fp: sp.add(PARKED_FP).cast::<usize>().read_volatile(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::arch::{Context, init_stack, switch};
    use crate::trace::{symbolize_stack, walk};
    use std::hint::black_box;

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a walk reads frames at integer addresses, which strict provenance forbids"
    )]
    fn parked_start_reads_the_saved_frame_pointer_and_return_address() {
        // A frame laid out as `switch` leaves it, every word distinct.
        #[repr(C, align(16))]
        struct Frame([usize; 24]);
        let mut f = Frame([0; 24]);
        for (i, w) in f.0.iter_mut().enumerate() {
            *w = 0x1000 + i;
        }
        // SAFETY: `f` is a 16-byte aligned, readable, unshared frame big enough for both
        // architectures' layouts.
        let WalkStart { pc, fp } = unsafe { parked_start(f.0.as_ptr() as usize) };
        let word = |off: usize| 0x1000 + off / size_of::<usize>();
        assert_eq!((pc, fp), (word(PARKED_PC), word(PARKED_FP)));
        #[cfg(target_arch = "x86_64")]
        assert_eq!((pc, fp), (0x1007, 0x1006));
        #[cfg(target_arch = "aarch64")]
        assert_eq!((pc, fp), (0x100b, 0x100a));
    }

    /// The two contexts of the switch test: the test thread's and the probe goroutine's.
    struct Contexts {
        main: Context,
        g: Context,
    }

    /// The probe goroutine's entry: calls two probes, the inner of which switches back.
    ///
    /// # Safety
    /// Only as an `init_stack` entry whose `arg` is a `*mut Contexts` valid while the
    /// probe runs.
    unsafe extern "C" fn parked_probe_entry(arg: *mut u8) -> ! {
        parked_probe_outer(arg.cast());
        // The test never resumes the probe.
        std::process::abort()
    }

    #[inline(never)]
    fn parked_probe_outer(cx: *mut Contexts) {
        parked_probe_inner(cx);
        black_box(cx); // work after the call: no tail call, so this frame stays on the stack
    }

    #[inline(never)]
    fn parked_probe_inner(cx: *mut Contexts) {
        // SAFETY: `cx` points at the test's live contexts; `main` holds the test thread,
        // which is waiting in its own `switch` to us and is resumed by nobody else.
        unsafe { switch(&raw mut (*cx).g, &raw const (*cx).main) };
        black_box(cx);
    }

    #[test]
    #[cfg_attr(miri, ignore = "switches stacks and symbolizes, which miri cannot run")]
    fn parked_start_walks_a_goroutine_switched_out_by_switch() {
        let mut stack = vec![0u128; 4096]; // 64 KiB, 16-byte aligned
        let range = stack.as_mut_ptr_range();
        let (lo, hi) = (range.start as usize, range.end as usize);
        let cx = Box::into_raw(Box::new(Contexts {
            main: Context::empty(),
            g: Context::empty(),
        }));
        // SAFETY: `hi` is the aligned end of a 64 KiB region that only the probe uses; `cx`
        // stays valid until the end of the test. The switch runs the probe until it switches
        // back into `main`; it is never resumed.
        unsafe {
            (*cx).g = init_stack(range.end.cast(), parked_probe_entry, cx.cast());
            switch(&raw mut (*cx).main, &raw const (*cx).g);
        }
        // SAFETY: the probe is switched out for good and its stack stays alive below.
        let sp = unsafe { (*cx).g.sp } as usize;
        assert!((lo..hi).contains(&sp));
        // SAFETY: as above: a context saved by `switch`, not running, on a live stack.
        let WalkStart { pc, fp } = unsafe { parked_start(sp) };
        let mut pcs = [0usize; 16];
        // SAFETY: `[lo, hi)` is the probe's stack, alive and written by nobody meanwhile.
        let n = unsafe { walk(pc, fp, lo, hi, &mut pcs) };
        let names: Vec<String> = symbolize_stack(&pcs[..n], false)
            .into_iter()
            .map(|f| f.function)
            .collect();
        // Inner, outer, entry, then the trampoline, whose zeroed frame pointer ends the walk.
        assert_eq!(n, 4, "{names:?}");
        let expect = [
            "parked_probe_inner",
            "parked_probe_outer",
            "parked_probe_entry",
            "gort_sched_trampoline",
        ];
        for (name, want) in names.iter().zip(expect) {
            assert!(name.ends_with(want), "{names:?}");
        }
        // SAFETY: the probe never runs again and nothing else refers to the box.
        drop(unsafe { Box::from_raw(cx) });
        drop(stack);
    }

    /// Returns its own frame pointer, the start `current_start` gave it, and its caller's
    /// return address read from its own (live) record.
    #[inline(never)]
    fn current_start_probe() -> (usize, WalkStart, usize) {
        let start = current_start();
        let here = start.fp;
        // SAFETY: `start.fp` is this function's own frame record (frame pointers are kept),
        // live while it runs; 16-byte aligned, as the test checks below.
        let ret = unsafe { (here as *const usize).add(1).read_volatile() };
        (here, black_box(start), ret)
    }

    #[test]
    #[cfg_attr(miri, ignore = "inline assembly")]
    fn current_start_gives_the_callers_return_address_and_frame() {
        let (fp, start, ret) = current_start_probe();
        let f = current_start_probe as *const () as usize;
        // The pc is a return address inside the probe, shortly after its entry.
        assert!(
            start.pc > f && start.pc < f + 256,
            "{start:x?}, probe at {f:#x}"
        );
        assert_eq!(start.fp, fp);
        assert_eq!(fp % 16, 0, "frame pointer {fp:#x}");
        // The probe's record holds the return address into this test.
        let t = current_start_gives_the_callers_return_address_and_frame as *const () as usize;
        assert!(ret > t && ret < t + 4096, "return {ret:#x}, test at {t:#x}");
    }
}
