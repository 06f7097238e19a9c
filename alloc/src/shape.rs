//! What the allocator needs to know about an object besides its size: which words hold GC
//! pointers, whether it carries a header word, whether it has drop glue.

/// Which words of an object hold GC pointers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ptrs<'a> {
    /// No pointers: the object lives in a noscan span and is never scanned.
    None,
    /// Bit `i` of the bitmap (word `i / 64`, bit `i % 64`) set = word `i` of the object holds
    /// a pointer. Words past the bitmap's end hold none.
    Bitmap(&'a [u64]),
    /// Every word holds a pointer (an array of references).
    All,
}

/// The layout facts the allocator records at allocation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape<'a> {
    /// Pointer words of the payload.
    pub ptrs: Ptrs<'a>,
    /// A header word to place before the payload (for layouts a bitmap cannot describe, e.g.
    /// a type-descriptor pointer): the object grows by 8 bytes, its word 0 holds this value and
    /// is never a pointer, and `ptrs` describes the words after it.
    pub header: Option<usize>,
    /// The object has drop glue: when a sweep finds it dead it goes to the heap's drop queue
    /// instead of being freed, and a later sweep frees it once `Heap::release_finalized` says
    /// the drop ran.
    pub finalize: bool,
}

impl<'a> Shape<'a> {
    /// No pointers, no header, no drop glue.
    pub const NOSCAN: Shape<'static> = Shape {
        ptrs: Ptrs::None,
        header: None,
        finalize: false,
    };

    /// Pointer words given by `bitmap`, nothing else.
    pub const fn pointers(bitmap: &'a [u64]) -> Shape<'a> {
        Shape {
            ptrs: Ptrs::Bitmap(bitmap),
            header: None,
            finalize: false,
        }
    }

    /// Every word a pointer.
    pub const ALL_POINTERS: Shape<'static> = Shape {
        ptrs: Ptrs::All,
        header: None,
        finalize: false,
    };

    /// Whether the object can live in a noscan span.
    #[inline(always)]
    pub fn is_noscan(&self) -> bool {
        matches!(self.ptrs, Ptrs::None) && self.header.is_none()
    }

    /// Whether anything beyond size and pointer bits must be recorded.
    #[inline(always)]
    pub(crate) fn is_plain(&self) -> bool {
        self.header.is_none() && !self.finalize
    }

    /// Pointer bits of object words `[off, off + len)` (`len <= 64`), header included.
    #[inline]
    pub(crate) fn bits(&self, off: usize, len: usize) -> u64 {
        debug_assert!(len <= 64 && len > 0);
        let mask = if len == 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        match (self.header, &self.ptrs) {
            (_, Ptrs::None) => 0,
            (None, Ptrs::All) => mask,
            (Some(_), Ptrs::All) => {
                if off == 0 {
                    mask & !1
                } else {
                    mask
                }
            }
            (None, Ptrs::Bitmap(b)) => extract(b, off, len) & mask,
            (Some(_), Ptrs::Bitmap(b)) => {
                if off == 0 {
                    (extract(b, 0, len.saturating_sub(1)) << 1) & mask
                } else {
                    extract(b, off - 1, len) & mask
                }
            }
        }
    }
}

/// Bits `[off, off + len)` of a bitmap, as the low bits of a word (`len <= 64`).
#[inline]
fn extract(b: &[u64], off: usize, len: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    let w = off / 64;
    let s = off % 64;
    let lo = b.get(w).copied().unwrap_or(0) >> s;
    let hi = if s == 0 {
        0
    } else {
        b.get(w + 1).copied().unwrap_or(0) << (64 - s)
    };
    let v = lo | hi;
    if len == 64 {
        v
    } else {
        v & ((1u64 << len) - 1)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bits_extract_across_words_and_shift_for_the_header() {
        let bm = [0b1011u64 << 62, 0b1];
        let s = Shape::pointers(&bm);
        assert_eq!(s.bits(62, 3), 0b111);
        assert_eq!(s.bits(0, 62), 0);
        let h = Shape {
            header: Some(7),
            ..Shape::pointers(&[0b11])
        };
        assert_eq!(h.bits(0, 4), 0b110);
        assert_eq!(
            Shape {
                header: Some(1),
                ..Shape::ALL_POINTERS
            }
            .bits(0, 3),
            0b110
        );
        assert_eq!(Shape::NOSCAN.bits(0, 64), 0);
    }
}
