//! The registers of a suspended thread, copied from its signal frame, as words for a conservative scan.
//!
//! Compilers keep pointers in vector registers too (a spilled pair, a memcpy in flight), so
//! the copy covers both register files:
//!
//! * **x86_64 Linux**: `uc_mcontext.gregs` (23 words: the general registers, rip, flags,
//!   and a few trap words), then the FPU area `uc_mcontext.fpregs` points to: the 512-byte
//!   FXSAVE image (x87/MMX, MXCSR, XMM0–15) and, when the kernel marks the frame as XSAVE
//!   (`_fpx_sw_bytes.magic1`, confirmed by `magic2` at its end), the whole XSAVE area up to
//!   `xstate_size` — so the upper halves of YMM0–15 (and ZMM, opmask registers on AVX-512
//!   machines) are included — capped at 4 KiB: only AMX tile data, present only when a
//!   process asked for AMX, is cut off. Components the frame marks as in their initial
//!   state (XSTATE_BV bit clear) may hold stale bytes: harmless for a conservative scan.
//! * **aarch64 Linux**: the whole `uc_mcontext` (fault address, x0–x30, sp, pc, pstate, and
//!   the 4 KiB record area whose first record is the FPSIMD context with v0–v31). SVE
//!   registers beyond their low 128 bits (which are v0–v31) and records spilled to an
//!   `extra_context` are not copied.
//! * **macOS**: `*uc_mcontext` up to `uc_mcsize` bytes (exception, thread and float/NEON
//!   state; on x86_64 with AVX, the AVX-extended state), capped at 4 KiB.

/// Bytes of register state beyond the general registers kept at most (x86_64 / macOS).
#[cfg(any(
    all(target_os = "linux", target_arch = "x86_64"),
    target_vendor = "apple"
))]
const EXTRA_MAX: usize = 4096;

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod layout {
    /// Words of `uc_mcontext.gregs`, copied first.
    pub(super) const GREGS: usize = 23;
    /// Capacity in words: the general registers, then the FPU / XSAVE area.
    pub(super) const WORDS: usize = GREGS + super::EXTRA_MAX / 8;
    pub(super) const PC: usize = libc::REG_RIP as usize;
    pub(super) const SP: usize = libc::REG_RSP as usize;
    pub(super) const FP: usize = libc::REG_RBP as usize;
    /// XMM0 in the FXSAVE image starts at byte 160.
    pub(super) const XMM0: usize = GREGS + 160 / 8;
    /// `_fpx_sw_bytes` lies at byte 464 of the FXSAVE image.
    pub(super) const SW_BYTES: usize = 464;
    pub(super) const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
    pub(super) const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
}

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
mod layout {
    /// The kernel's `struct sigcontext` (glibc's `mcontext_t`) is 4384 bytes.
    pub(super) const WORDS: usize = 4384 / 8;
    const _: () = assert!(size_of::<libc::mcontext_t>() == WORDS * 8);
    /// x0 is word 1 (after `fault_address`).
    pub(super) const X0: usize = 1;
    pub(super) const FP: usize = X0 + 29;
    pub(super) const SP: usize = 32;
    pub(super) const PC: usize = 33;
    /// The record area (`__reserved`, 16-byte aligned) starts at byte 288.
    pub(super) const RECORDS: usize = 288 / 8;
    pub(super) const FPSIMD_MAGIC: u32 = 0x4650_8001;
}

#[cfg(target_vendor = "apple")]
mod layout {
    pub(super) const WORDS: usize = super::EXTRA_MAX / 8;
    const SS: usize = std::mem::offset_of!(libc::__darwin_mcontext64, __ss);
    #[cfg(target_arch = "x86_64")]
    pub(super) const PC: usize =
        (SS + std::mem::offset_of!(libc::__darwin_x86_thread_state64, __rip)) / 8;
    #[cfg(target_arch = "x86_64")]
    pub(super) const SP: usize =
        (SS + std::mem::offset_of!(libc::__darwin_x86_thread_state64, __rsp)) / 8;
    #[cfg(target_arch = "x86_64")]
    pub(super) const FP: usize =
        (SS + std::mem::offset_of!(libc::__darwin_x86_thread_state64, __rbp)) / 8;
    #[cfg(target_arch = "aarch64")]
    pub(super) const PC: usize =
        (SS + std::mem::offset_of!(libc::__darwin_arm_thread_state64, __pc)) / 8;
    #[cfg(target_arch = "aarch64")]
    pub(super) const SP: usize =
        (SS + std::mem::offset_of!(libc::__darwin_arm_thread_state64, __sp)) / 8;
    #[cfg(target_arch = "aarch64")]
    pub(super) const FP: usize =
        (SS + std::mem::offset_of!(libc::__darwin_arm_thread_state64, __fp)) / 8;
}

use layout::*;

/// Bytes below the stack pointer a leaf function may use (the ABI's red zone).
#[cfg(any(target_arch = "x86_64", target_vendor = "apple"))]
const RED_ZONE: usize = 128;
#[cfg(not(any(target_arch = "x86_64", target_vendor = "apple")))]
const RED_ZONE: usize = 0;

/// A suspended thread's registers, as machine words (see the module docs for the layout).
/// Pre-allocated inside its slot; written only by the handler.
#[derive(Debug)]
#[repr(C, align(16))]
pub(crate) struct SavedContext {
    /// Words of `words` holding saved state (0 before the first capture).
    len: usize,
    words: [u64; WORDS],
}

impl SavedContext {
    /// An empty context (no capture yet).
    pub(crate) const fn new() -> Self {
        SavedContext {
            len: 0,
            words: [0; WORDS],
        }
    }

    /// Every saved register word, general and vector, for a conservative scan.
    pub(crate) fn as_words(&self) -> &[u64] {
        &self.words[..self.len]
    }

    /// The interrupted program counter.
    pub(crate) fn pc(&self) -> usize {
        self.words[PC] as usize
    }

    /// The interrupted stack pointer. A stack scan starts at [`stack_scan_start`], not here.
    ///
    /// [`stack_scan_start`]: Self::stack_scan_start
    pub(crate) fn sp(&self) -> usize {
        self.words[SP] as usize
    }

    /// Where a conservative scan of the interrupted stack must start: the stack pointer,
    /// less the red zone a leaf function may use below it without moving the stack pointer
    /// (128 bytes on x86_64 System V and on Apple arm64; none on aarch64 Linux). The kernel
    /// builds the signal frame below the red zone, so those bytes are intact.
    pub(crate) fn stack_scan_start(&self) -> usize {
        self.sp().wrapping_sub(RED_ZONE)
    }

    /// The interrupted frame pointer (rbp / x29).
    pub(crate) fn fp(&self) -> usize {
        self.words[FP] as usize
    }

    /// Stands for a capture in the loom models: marks `len` words as saved.
    #[cfg(all(test, loom))]
    pub(super) fn mark(&mut self, len: usize) {
        self.len = len;
    }
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
impl SavedContext {
    /// Copies the interrupted context out of a signal frame.
    ///
    /// # Safety
    ///
    /// `uc` is the `ucontext_t` the kernel passed to the `SA_SIGINFO` handler that is running
    /// now on this thread (its frame, and the FPU area it points to, stay valid meanwhile).
    #[cfg(not(loom))]
    pub(super) unsafe fn capture(&mut self, uc: *const libc::c_void) {
        // SAFETY: `uc` is a live ucontext_t by the contract.
        let mc = unsafe { &(*uc.cast::<libc::ucontext_t>()).uc_mcontext };
        for (w, g) in self.words[..GREGS].iter_mut().zip(mc.gregs) {
            *w = g as u64;
        }
        let fp = mc.fpregs.cast::<u8>().cast_const();
        let mut bytes = 0;
        if !fp.is_null() {
            bytes = 512;
            // SAFETY: the kernel's FPU area is at least the 512-byte FXSAVE image, whose
            // bytes 464.. hold `_fpx_sw_bytes` (magic1 at +0, xstate_size at +16).
            let (magic1, size) = unsafe {
                (
                    fp.add(SW_BYTES).cast::<u32>().read_unaligned(),
                    fp.add(SW_BYTES + 16).cast::<u32>().read_unaligned() as usize,
                )
            };
            if magic1 == FP_XSTATE_MAGIC1 && (512..=1 << 20).contains(&size) {
                // SAFETY: magic1 says the frame is an XSAVE frame of `size` bytes followed
                // by magic2 (the kernel's own check reads the same word).
                let magic2 = unsafe { fp.add(size).cast::<u32>().read_unaligned() };
                if magic2 == FP_XSTATE_MAGIC2 {
                    bytes = size;
                }
            }
            bytes = bytes.min(EXTRA_MAX) & !7;
            // SAFETY: `bytes` lie within the kernel's FPU area (above); the destination has
            // room for EXTRA_MAX bytes after the general registers and is ours alone.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    fp,
                    self.words[GREGS..].as_mut_ptr().cast::<u8>(),
                    bytes,
                );
            }
        }
        self.len = GREGS + bytes / 8;
    }

    /// The general registers as `uc_mcontext.gregs` lays them out (index with `libc::REG_*`).
    #[allow(dead_code)]
    pub(crate) fn general(&self) -> &[u64] {
        &self.words[..GREGS]
    }

    /// Vector register `n` (XMM0–15: the low 128 bits of YMM/ZMM), if saved.
    #[allow(dead_code)]
    pub(crate) fn vector(&self, n: usize) -> Option<u128> {
        let i = XMM0 + 2 * n;
        if n >= 16 || i + 2 > self.len {
            return None;
        }
        Some(u128::from(self.words[i]) | u128::from(self.words[i + 1]) << 64)
    }
}

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
impl SavedContext {
    /// Copies the interrupted context out of a signal frame.
    ///
    /// # Safety
    ///
    /// `uc` is the `ucontext_t` the kernel passed to the `SA_SIGINFO` handler that is running
    /// now on this thread (its frame stays valid meanwhile).
    #[cfg(not(loom))]
    pub(super) unsafe fn capture(&mut self, uc: *const libc::c_void) {
        // SAFETY: `uc` is a live ucontext_t by the contract; its mcontext is WORDS words
        // (checked at compile time), and the destination is ours alone.
        unsafe {
            let mc = std::ptr::addr_of!((*uc.cast::<libc::ucontext_t>()).uc_mcontext);
            std::ptr::copy_nonoverlapping(mc.cast::<u64>(), self.words.as_mut_ptr(), WORDS);
        }
        self.len = WORDS;
    }

    /// The general registers x0–x30.
    #[allow(dead_code)]
    pub(crate) fn general(&self) -> &[u64] {
        &self.words[X0..X0 + 31]
    }

    /// Vector register `n` (v0–v31), from the FPSIMD record, if saved.
    #[allow(dead_code)]
    pub(crate) fn vector(&self, n: usize) -> Option<u128> {
        if n >= 32 {
            return None;
        }
        let mut i = RECORDS;
        // Each record starts with a header word: magic (low half), size in bytes (high).
        while i < self.len {
            let magic = self.words[i] as u32;
            let size = (self.words[i] >> 32) as usize;
            if magic == 0 || size < 8 || !size.is_multiple_of(8) {
                return None;
            }
            if magic == FPSIMD_MAGIC {
                // Header (8 bytes), fpsr and fpcr (4 each), then vregs[32].
                let v = i + 2 + 2 * n;
                if v + 2 > self.len || 16 + 16 * 32 > size {
                    return None;
                }
                return Some(u128::from(self.words[v]) | u128::from(self.words[v + 1]) << 64);
            }
            i += size / 8;
        }
        None
    }
}

#[cfg(target_vendor = "apple")]
impl SavedContext {
    /// Copies the interrupted context out of a signal frame.
    ///
    /// # Safety
    ///
    /// `uc` is the `ucontext_t` the kernel passed to the `SA_SIGINFO` handler that is running
    /// now on this thread (its frame, and the mcontext it points to, stay valid meanwhile).
    #[cfg(not(loom))]
    pub(super) unsafe fn capture(&mut self, uc: *const libc::c_void) {
        // SAFETY: `uc` is a live ucontext_t by the contract; `uc_mcontext` points to
        // `uc_mcsize` readable bytes; we copy at most our capacity into memory that is ours.
        unsafe {
            let uc = &*uc.cast::<libc::ucontext_t>();
            let bytes = uc.uc_mcsize.min(WORDS * 8) & !7;
            std::ptr::copy_nonoverlapping(
                uc.uc_mcontext.cast::<u8>().cast_const(),
                self.words.as_mut_ptr().cast::<u8>(),
                bytes,
            );
            self.len = bytes / 8;
        }
    }
}
