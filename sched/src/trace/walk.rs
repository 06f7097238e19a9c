//! Walking a stack by its chain of frame records, strictly inside given stack bounds.
//!
//! # Frame records
//!
//! With frame pointers kept (the workspace builds with `-C force-frame-pointers=yes`, see
//! `.cargo/config.toml`; the precompiled std keeps them too), every function's prologue
//! pushes a two-word *frame record* and points the frame-pointer register at it:
//!
//! ```text
//!   fp + 8: return address into the caller     (x86_64: pushed by `call`; AArch64: x30)
//!   fp + 0: the caller's frame pointer          (x86_64: rbp;              AArch64: x29)
//! ```
//!
//! so the records form a linked list from the innermost frame outward, toward higher
//! addresses. Both supported architectures store the record the same way, so the walk
//! itself has no per-architecture code; where a walk *starts* does (`start.rs`).
//!
//! # Why a walk cannot fault
//!
//! The chain is data on a stack, and a frame compiled without frame pointers (foreign
//! code, hand-written assembly) leaves a stale or arbitrary value in the register, so any
//! link may be garbage. The walk therefore trusts nothing it reads: it only reads inside
//! `[lo, hi)`, which the caller promises is mapped, and it stops at the first link that is
//! zero, misaligned, outside the bounds, or not above the previous one. Because each
//! accepted frame pointer is strictly higher than the last and all lie in a finite range,
//! the walk ends even on a chain that loops.
//!
//! # Alignment
//!
//! Both ABIs keep the stack pointer 16-byte aligned at calls, and the record sits at a
//! 16-byte boundary: on x86_64 `call` leaves rsp ≡ 8 (mod 16) and `push rbp` makes it 0,
//! which `mov rbp, rsp` copies; on AArch64 the record is stored with `stp x29, x30` at a
//! 16-byte aligned slot of the frame. The tests check this against real chains (our code,
//! std, the test harness), and it rejects most garbage pointers outright.

/// The alignment every frame record has; see the module documentation.
const RECORD_ALIGN: usize = 16;

/// Size of a frame record: the saved frame pointer and the return address.
const RECORD_BYTES: usize = 2 * size_of::<usize>();

/// Collects the return addresses of a stack into `out` and returns how many it wrote.
///
/// `out[0]` is `start_pc`, the address at which the innermost frame stands (for the
/// starts in `start.rs`, a return address); then, for each frame record reached from
/// `start_fp`, the return address it holds — one per caller, innermost first. The walk
/// stops at the first record that is not trustworthy (see the module documentation), at a
/// zero return address, or when `out` is full. A zero `start_pc` or an empty `out` gives 0.
///
/// # Safety
/// `[lo, hi)` must be readable memory for the whole call — a goroutine's stack region, or
/// the calling thread's stack — and no other thread may write it meanwhile (the goroutine
/// is parked and the world is stopped, or it is the calling thread's own stack). Nothing
/// else is assumed: the contents may be anything, and nothing outside `[lo, hi)` is read.
pub(crate) unsafe fn walk(
    start_pc: usize,
    start_fp: usize,
    lo: usize,
    hi: usize,
    out: &mut [usize],
) -> usize {
    if start_pc == 0 || out.is_empty() {
        return 0;
    }
    out[0] = start_pc;
    let mut n = 1;
    // The highest address at which a whole record still fits below `hi`.
    let Some(last) = hi.checked_sub(RECORD_BYTES) else {
        return n;
    };
    let mut fp = start_fp;
    let mut floor = lo; // every accepted record lies at or above this
    while n < out.len() {
        if fp == 0 || !fp.is_multiple_of(RECORD_ALIGN) || fp < floor || fp > last {
            break;
        }
        // SAFETY: `lo <= fp` and `fp + 16 <= hi`, so both words lie in `[lo, hi)`, which the
        // caller promises is readable and not written by anyone during the call; `fp` is
        // 16-byte aligned, so both reads are aligned. Volatile: these are plain machine
        // words of a stack the compiler knows nothing about.
        let (caller_fp, ret) = unsafe {
            let record = fp as *const usize;
            (record.read_volatile(), record.add(1).read_volatile())
        };
        if ret == 0 {
            break;
        }
        out[n] = ret;
        n += 1;
        // Strictly increasing: the next record must lie above this one.
        floor = fp + RECORD_BYTES;
        fp = caller_fp;
    }
    n
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A word-aligned buffer standing in for a stack, 16-byte aligned.
    #[repr(C, align(16))]
    struct FakeStack([usize; 64]);

    impl FakeStack {
        fn lo(&self) -> usize {
            self.0.as_ptr() as usize
        }
        fn hi(&self) -> usize {
            self.lo() + size_of_val(&self.0)
        }
        fn addr(&self, word: usize) -> usize {
            self.lo() + word * size_of::<usize>()
        }
    }

    fn walk_fake(stack: &FakeStack, pc: usize, fp: usize, out: &mut [usize]) -> usize {
        // SAFETY: the bounds are exactly `stack`'s array, borrowed for the call.
        unsafe { walk(pc, fp, stack.lo(), stack.hi(), out) }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a walk reads frames at integer addresses, which strict provenance forbids"
    )]
    fn follows_a_chain_to_its_end() {
        let mut s = FakeStack([0; 64]);
        // Records at words 4, 10 and 20; the last one's saved fp is 0.
        let (a, b, c) = (s.addr(4), s.addr(10), s.addr(20));
        s.0[4] = b;
        s.0[5] = 0x1111;
        s.0[10] = c;
        s.0[11] = 0x2222;
        s.0[20] = 0;
        s.0[21] = 0x3333;
        let mut out = [0; 8];
        let n = walk_fake(&s, 0x99, a, &mut out);
        assert_eq!(&out[..n], &[0x99, 0x1111, 0x2222, 0x3333]);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a walk reads frames at integer addresses, which strict provenance forbids"
    )]
    fn stops_when_out_is_full_or_start_is_empty() {
        let mut s = FakeStack([0; 64]);
        let (a, b) = (s.addr(2), s.addr(6));
        s.0[2] = b;
        s.0[3] = 0x10;
        s.0[6] = 0;
        s.0[7] = 0x20;
        let mut out = [0; 2];
        assert_eq!(walk_fake(&s, 0x5, a, &mut out), 2);
        assert_eq!(out, [0x5, 0x10]);
        assert_eq!(walk_fake(&s, 0x5, a, &mut []), 0);
        assert_eq!(walk_fake(&s, 0, a, &mut out), 0);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a walk reads frames at integer addresses, which strict provenance forbids"
    )]
    fn a_record_pointing_to_itself_ends_the_walk() {
        let mut s = FakeStack([0; 64]);
        let a = s.addr(8);
        s.0[8] = a;
        s.0[9] = 0x77;
        let mut out = [0; 16];
        let n = walk_fake(&s, 0x1, a, &mut out);
        assert_eq!(&out[..n], &[0x1, 0x77]);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a walk reads frames at integer addresses, which strict provenance forbids"
    )]
    fn a_chain_pointing_back_down_ends_the_walk() {
        let mut s = FakeStack([0; 64]);
        let (a, b) = (s.addr(8), s.addr(16));
        s.0[8] = b;
        s.0[9] = 0x10;
        s.0[16] = a; // back to the first record: a cycle of two
        s.0[17] = 0x20;
        let mut out = [0; 16];
        let n = walk_fake(&s, 0x1, a, &mut out);
        assert_eq!(&out[..n], &[0x1, 0x10, 0x20]);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a walk reads frames at integer addresses, which strict provenance forbids"
    )]
    fn rejects_misaligned_out_of_bounds_and_zero_links() {
        let mut s = FakeStack([0; 64]);
        let a = s.addr(4);
        let mut out = [0; 8];
        // Misaligned (8 mod 16) next link.
        s.0[4] = s.addr(9);
        s.0[5] = 0x10;
        assert_eq!(walk_fake(&s, 0x1, a, &mut out), 2);
        // A record at `hi`: aligned, but outside (an aligned record cannot straddle `hi`,
        // which is itself aligned here).
        s.0[4] = s.hi();
        assert_eq!(walk_fake(&s, 0x1, a, &mut out), 2);
        // The highest record that fits is accepted.
        let top = s.hi() - RECORD_BYTES;
        s.0[4] = top;
        s.0[62] = 0;
        s.0[63] = 0x30;
        assert_eq!(walk_fake(&s, 0x1, a, &mut out), 3);
        assert_eq!(out[2], 0x30);
        // Below `lo`, and a zero return address.
        assert_eq!(walk_fake(&s, 0x1, s.lo() - 16, &mut out), 1);
        s.0[4] = top;
        s.0[63] = 0;
        assert_eq!(walk_fake(&s, 0x1, a, &mut out), 2);
        // Bounds too small to hold a record at all.
        // SAFETY: the (empty) bounds lie inside `s`.
        let n = unsafe { walk(0x1, s.lo(), s.lo(), s.lo() + 8, &mut out) };
        assert_eq!(n, 1);
    }

    /// A region of `pages` readable pages between two inaccessible guard pages: any read
    /// outside it faults, which fails the test.
    struct Guarded {
        base: *mut u8,
        page: usize,
        pages: usize,
    }

    impl Guarded {
        fn new(pages: usize) -> Guarded {
            // SAFETY: sysconf has no memory-safety preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
            let len = (pages + 2) * page;
            // SAFETY: a fresh anonymous mapping; no existing memory is affected.
            let base = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANON,
                    -1,
                    0,
                )
            };
            assert_ne!(base, libc::MAP_FAILED, "mmap failed");
            let base = base as *mut u8;
            // SAFETY: the middle pages lie inside the mapping just made.
            let r = unsafe {
                libc::mprotect(
                    base.add(page).cast(),
                    pages * page,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
            };
            assert_eq!(r, 0, "mprotect failed");
            Guarded { base, page, pages }
        }

        /// The readable region, `[lo, hi)`.
        fn bounds(&self) -> (usize, usize) {
            let lo = self.base as usize + self.page;
            (lo, lo + self.pages * self.page)
        }

        fn words(&mut self) -> &mut [usize] {
            // SAFETY: the middle pages are mapped read-write, page-aligned, owned by `self`,
            // and anonymous memory starts zeroed (initialised).
            unsafe {
                core::slice::from_raw_parts_mut(
                    self.base.add(self.page).cast(),
                    self.pages * self.page / size_of::<usize>(),
                )
            }
        }
    }

    impl Drop for Guarded {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly the mapping made in `new`, no longer borrowed.
            unsafe { libc::munmap(self.base.cast(), (self.pages + 2) * self.page) };
        }
    }

    /// xorshift64*: deterministic, so a failure reproduces.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    #[test]
    #[cfg_attr(miri, ignore = "mmap and mprotect are system calls miri cannot run")]
    fn garbage_never_reads_outside_the_bounds() {
        let mut g = Guarded::new(1);
        let (lo, hi) = g.bounds();
        let (mut deep, mut near_top) = (0, 0);
        let mut out = [0usize; 64];
        for seed in 1..=2000u64 {
            let mut st = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            // Mostly pointers near or inside the region (some misaligned, some just past
            // either end), some arbitrary words, some zeros.
            let words = g.words();
            for w in words.iter_mut() {
                let r = next(&mut st);
                *w = match r % 8 {
                    0 => 0,
                    1 => r as usize,
                    2 => (hi - 16 + (r as usize % 64)) & !15,
                    3 => (lo - 32 + (r as usize % 64)) & !15,
                    4 => lo + (r as usize % (hi - lo)),
                    _ => (lo + (r as usize % (hi - lo))) & !15,
                };
            }
            let top_ret = words[words.len() - 1];
            let start = (lo + (next(&mut st) as usize % (hi - lo))) & !15;
            // SAFETY: `[lo, hi)` is the mapped middle page; nothing else writes it.
            let n = unsafe { walk(0x1, start, lo, hi, &mut out) };
            assert!((1..=out.len()).contains(&n));
            deep += usize::from(n >= 4);
            // A walk that read the last record of the region returned its return address.
            near_top += usize::from(top_ret != 0 && out[1..n].contains(&top_ret));
        }
        // The chains really went somewhere, up to the very top of the region.
        assert!(
            deep >= 20,
            "random chains were too short to mean anything: {deep}"
        );
        assert!(
            near_top >= 20,
            "the last record was rarely reached: {near_top}"
        );
    }
}
