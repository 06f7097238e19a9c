//! The OS layer: anonymous mappings that read as zero and are backed only where touched,
//! aligned reservations that keep no slack, and returning pages (`MADV_DONTNEED`).
//!
//! Under Miri the same calls map plain private-anonymous memory (no `MAP_NORESERVE`), keep
//! the alignment slack (Miri unmaps only whole mappings) and never `madvise`: returning pages
//! zeroes them by hand instead, which is all the heap relies on.

use crate::error::AllocError;

/// An anonymous read-write mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    /// The usable start (aligned as asked).
    base: usize,
    len: usize,
    /// What to unmap on drop (the whole mapping, slack included, under Miri).
    map_base: usize,
    map_len: usize,
}

// SAFETY: a `Mapping` is an owned region of address space; it holds no thread-affine state.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only exposes addresses and `discard`, whose callers guarantee exclusive
// use of the range they pass.
unsafe impl Sync for Mapping {}

fn mmap(len: usize) -> Result<usize, AllocError> {
    #[cfg(not(miri))]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    #[cfg(miri)]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no existing
    // memory; the arguments are valid for any `len`.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(AllocError::os(len, &std::io::Error::last_os_error()));
    }
    Ok(p as usize)
}

/// Unmap `[addr, addr + len)`, which this module mapped and nothing references any more.
fn munmap(addr: usize, len: usize) {
    if len == 0 {
        return;
    }
    // SAFETY: the range is (part of) a mapping made by `mmap` above that the caller owns and
    // no longer uses.
    let r = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    if r != 0 {
        panic!(
            "runtime: munmap of heap memory failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl Mapping {
    /// `len` bytes (a multiple of the OS page) of zeroed, lazily backed memory.
    pub(crate) fn new(len: usize) -> Result<Mapping, AllocError> {
        let base = mmap(len)?;
        Ok(Mapping {
            base,
            len,
            map_base: base,
            map_len: len,
        })
    }

    /// `len` bytes aligned to `align` (a power of two, at least the OS page). Maps
    /// `len + align` and unmaps the unaligned ends, so no address space is kept as slack.
    pub(crate) fn aligned(len: usize, align: usize) -> Result<Mapping, AllocError> {
        let total = len
            .checked_add(align)
            .ok_or_else(|| AllocError::too_large(len))?;
        let raw = mmap(total)?;
        let base = (raw + align - 1) & !(align - 1);
        if cfg!(miri) {
            return Ok(Mapping {
                base,
                len,
                map_base: raw,
                map_len: total,
            });
        }
        munmap(raw, base - raw);
        munmap(base + len, raw + total - (base + len));
        Ok(Mapping {
            base,
            len,
            map_base: base,
            map_len: len,
        })
    }

    pub(crate) fn base(&self) -> usize {
        self.base
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Return `[base + off, base + off + len)` to the OS; it reads as zero afterwards.
    ///
    /// # Safety
    /// The range lies inside the mapping, and no thread accesses it during the call (its
    /// contents are free memory whose old values nobody may observe).
    pub(crate) unsafe fn discard(&self, off: usize, len: usize) {
        debug_assert!(off + len <= self.len);
        let addr = self.base + off;
        #[cfg(not(miri))]
        {
            // SAFETY: inside our mapping (caller), page-aligned by the callers (runs of
            // pages), and nobody uses the bytes, so discarding them changes no observed value.
            let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
            if r != 0 {
                panic!(
                    "runtime: madvise(MADV_DONTNEED) on free heap memory failed: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        #[cfg(miri)]
        // SAFETY: as above: inside the mapping, and no thread accesses the range meanwhile.
        unsafe {
            std::ptr::write_bytes(addr as *mut u8, 0, len)
        };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        munmap(self.map_base, self.map_len);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn aligned_mappings_are_aligned_zeroed_and_discardable() {
        let align = if cfg!(miri) { 1 << 16 } else { 1 << 26 };
        let m = Mapping::aligned(3 * 4096, align).unwrap();
        assert_eq!(m.base() % align, 0);
        assert_eq!(m.len(), 3 * 4096);
        let p = m.base() as *mut u8;
        // SAFETY: inside the fresh mapping, which nothing else uses.
        unsafe {
            assert_eq!(*p.add(5000), 0);
            *p.add(5000) = 7;
            m.discard(4096, 4096);
            assert_eq!(*p.add(5000), 0, "discarded pages read as zero");
        }
    }
}
