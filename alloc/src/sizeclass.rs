//! Go's size-class table (data taken from Go 1.19's `sizeclasses.go`) and the lookups built on it.
//!
//! Class 0 stands for "large": an object over [`MAX_SMALL_SIZE`] bytes that gets a span of its
//! own. Classes 1..=67 each have an object size and a span length in pages chosen (by Go's
//! generator) so that tail waste stays under 12.5%.

/// Bytes in a heap page. Spans are runs of pages.
pub const PAGE_SIZE: usize = 8192;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 13;
/// Number of size classes, counting class 0 (large objects).
pub const NUM_SIZE_CLASSES: usize = 68;
/// Number of span classes: each size class with and without pointers.
pub const NUM_SPAN_CLASSES: usize = NUM_SIZE_CLASSES * 2;
/// The largest size served by a size class; anything larger gets its own span.
pub const MAX_SMALL_SIZE: usize = 32768;
/// Noscan objects strictly smaller than this are packed into tiny blocks of this size.
pub const TINY_SIZE: usize = 16;
/// The size class of a tiny block (16 bytes).
pub const TINY_CLASS: usize = 2;
/// Most objects one span can hold (an 8 KiB span of 8-byte objects).
pub const MAX_OBJECTS_PER_SPAN: usize = PAGE_SIZE / 8;
/// 64-bit words in a per-span object bitmap.
pub const SPAN_BITMAP_WORDS: usize = MAX_OBJECTS_PER_SPAN / 64;

/// Object size of each class, in bytes (Go's `class_to_size`).
pub const CLASS_TO_SIZE: [u16; NUM_SIZE_CLASSES] = [
    0, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256, 288, 320,
    352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792,
    2048, 2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728,
    10240, 10880, 12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672,
    32768,
];

/// Pages in a span of each class (Go's `class_to_allocnpages`).
pub const CLASS_TO_NPAGES: [u8; NUM_SIZE_CLASSES] = [
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 2, 1, 2, 1, 2, 1, 3, 2, 3, 1, 3, 2, 3, 4, 5, 6, 1, 7, 6, 5, 4, 3, 5, 7, 2, 9, 7, 5, 8,
    3, 10, 7, 4,
];

const SMALL_SIZE_MAX: usize = 1024;
const SMALL_SIZE_DIV: usize = 8;
const LARGE_SIZE_DIV: usize = 128;

const fn build_class8() -> [u8; SMALL_SIZE_MAX / SMALL_SIZE_DIV + 1] {
    let mut t = [0u8; SMALL_SIZE_MAX / SMALL_SIZE_DIV + 1];
    let mut i = 1;
    while i < t.len() {
        let size = i * SMALL_SIZE_DIV;
        let mut c = 1;
        while (CLASS_TO_SIZE[c] as usize) < size {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

const fn build_class128() -> [u8; (MAX_SMALL_SIZE - SMALL_SIZE_MAX) / LARGE_SIZE_DIV + 1] {
    let mut t = [0u8; (MAX_SMALL_SIZE - SMALL_SIZE_MAX) / LARGE_SIZE_DIV + 1];
    let mut i = 0;
    while i < t.len() {
        let size = SMALL_SIZE_MAX + i * LARGE_SIZE_DIV;
        let mut c = 1;
        while (CLASS_TO_SIZE[c] as usize) < size {
            c += 1;
        }
        t[i] = c as u8;
        i += 1;
    }
    t
}

// `const`, not `static`: a call with a constant size then folds to a constant class.
const SIZE_TO_CLASS8: [u8; SMALL_SIZE_MAX / SMALL_SIZE_DIV + 1] = build_class8();
const SIZE_TO_CLASS128: [u8; (MAX_SMALL_SIZE - SMALL_SIZE_MAX) / LARGE_SIZE_DIV + 1] =
    build_class128();

/// The size class serving `size` bytes; `size` must be in `1..=MAX_SMALL_SIZE`.
#[inline(always)]
pub fn size_to_class(size: usize) -> usize {
    if size <= SMALL_SIZE_MAX {
        SIZE_TO_CLASS8[size.div_ceil(SMALL_SIZE_DIV)] as usize
    } else {
        SIZE_TO_CLASS128[(size - SMALL_SIZE_MAX).div_ceil(LARGE_SIZE_DIV)] as usize
    }
}

/// Object size of `class` in bytes.
#[inline(always)]
pub fn class_size(class: usize) -> usize {
    CLASS_TO_SIZE[class] as usize
}

/// Pages in a span of `class`.
#[inline]
pub fn class_npages(class: usize) -> usize {
    CLASS_TO_NPAGES[class] as usize
}

/// Objects in one span of `class`.
#[inline]
pub fn class_nelems(class: usize) -> usize {
    class_npages(class) * PAGE_SIZE / class_size(class)
}

/// Span class: size class times two, plus one when the objects hold no pointers.
#[inline(always)]
pub fn span_class(class: usize, noscan: bool) -> usize {
    class * 2 + noscan as usize
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_size_maps_to_the_smallest_class_that_fits() {
        // Under Miri every 37th size (and both ends of each class, below) keeps it quick.
        let step = if cfg!(miri) { 37 } else { 1 };
        let edges = (1..NUM_SIZE_CLASSES).flat_map(|c| [class_size(c), class_size(c - 1) + 1]);
        for size in (1..=MAX_SMALL_SIZE).step_by(step).chain(edges) {
            let c = size_to_class(size);
            assert!(class_size(c) >= size, "size {size} class {c}");
            assert!(
                class_size(c - 1) < size || c == 1,
                "size {size} class {c} not smallest"
            );
        }
    }

    #[test]
    fn spans_hold_at_most_the_bitmap_capacity_and_waste_little() {
        for c in 1..NUM_SIZE_CLASSES {
            let n = class_nelems(c);
            assert!((1..=MAX_OBJECTS_PER_SPAN).contains(&n));
            let waste = class_npages(c) * PAGE_SIZE - n * class_size(c);
            assert!(
                waste * 8 <= class_npages(c) * PAGE_SIZE,
                "class {c} wastes {waste}"
            );
        }
    }
}
