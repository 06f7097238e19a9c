//! Heap bits: one bit per 8-byte word of an arena, set when the word holds a GC pointer.
//!
//! Written when an object is allocated, from its `Shape` (or, for a span whose small objects
//! all share one layout, only when a second layout arrives: see `Span::ptrmask`), by the
//! cache that owns the span
//! (the only writer: a bitmap word covers 512 bytes, which never straddles two spans because
//! spans are page-aligned), with a plain load and store; the Release store of the object's
//! alloc bit publishes them, and readers (markers) load them after an Acquire of that bit.
//! Bits of a freed object are left stale: nobody reads them until the slot is allocated again
//! and rewritten. Noscan spans never have their bits written or read.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::arena::Words;
use crate::shape::Shape;

/// Write the pointer bits of object words `[first, first + nwords)`, which start at arena
/// word `start`.
///
/// `hb` is the arena's heap-bit array; the caller owns the span holding the object.
#[inline(always)]
pub(crate) fn write(
    hb: Words<'_, AtomicU64>,
    start: usize,
    first: usize,
    nwords: usize,
    shape: Shape<'_>,
) {
    let b = start % 64;
    if b + nwords <= 64 {
        // The common case: a small object's bits sit in one bitmap word.
        store_bits(&hb[start / 64], b, nwords, shape.bits(first, nwords));
    } else {
        write_long(hb, start, first, nwords, shape);
    }
}

/// Write `bits` (bit i: word i holds a pointer) as the pointer bits of the `nwords` (at most
/// 64) object words that start at arena word `start`.
#[inline]
pub(crate) fn write_mask(hb: Words<'_, AtomicU64>, start: usize, nwords: usize, bits: u64) {
    debug_assert!(nwords > 0 && nwords <= 64);
    let b = start % 64;
    let here = nwords.min(64 - b);
    store_bits(&hb[start / 64], b, here, bits);
    if here < nwords {
        store_bits(&hb[start / 64 + 1], 0, nwords - here, bits >> here);
    }
}

/// Bits `[b, b + len)` of bitmap word `w` become the low `len` bits of `bits`.
#[inline(always)]
fn store_bits(w: &AtomicU64, b: usize, len: usize, bits: u64) {
    let mask = if len == 64 {
        u64::MAX
    } else {
        ((1u64 << len) - 1) << b
    };
    w.store(
        (w.load(Ordering::Relaxed) & !mask) | ((bits << b) & mask),
        Ordering::Relaxed,
    );
}

/// `write` for objects whose bits span several bitmap words.
#[inline(never)]
fn write_long(
    hb: Words<'_, AtomicU64>,
    start: usize,
    first: usize,
    nwords: usize,
    shape: Shape<'_>,
) {
    let mut i = 0;
    while i < nwords {
        let w = (start + i) / 64;
        let b = (start + i) % 64;
        let len = (64 - b).min(nwords - i);
        store_bits(&hb[w], b, len, shape.bits(first + i, len));
        i += len;
    }
}

/// Call `f` with the word index (relative to `start`) of every pointer word of the object.
#[inline]
pub(crate) fn for_each(
    hb: Words<'_, AtomicU64>,
    start: usize,
    nwords: usize,
    mut f: impl FnMut(usize),
) {
    let b = start % 64;
    if nwords == 0 {
        return;
    }
    if b + nwords <= 64 {
        // The common case, an object whose bits lie in one bitmap word: one load, one shift.
        let mut bits = hb[start / 64].load(Ordering::Relaxed) >> b;
        if nwords < 64 {
            bits &= (1u64 << nwords) - 1;
        }
        while bits != 0 {
            f(bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
        return;
    }
    let mut i = 0;
    while i < nwords {
        let w = (start + i) / 64;
        let b = (start + i) % 64;
        let len = (64 - b).min(nwords - i);
        let mask = if len == 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        };
        let mut bits = (hb[w].load(Ordering::Relaxed) >> b) & mask;
        while bits != 0 {
            let t = bits.trailing_zeros() as usize;
            f(i + t);
            bits &= bits - 1;
        }
        i += len;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Every range of up to 140 words from every start in the first two bitmap words — both
    /// sides of the one-word shortcut, ranges ending exactly at a word's end, whole words,
    /// empty ranges — reports exactly the set bits, as a bit-by-bit reading does.
    #[test]
    fn every_range_reads_the_bits_one_by_one_would() {
        let pattern = [
            0x8000_0000_0000_0001u64,
            0xdead_beef_0123_4567,
            u64::MAX,
            0x5555_0000_ffff_aaaa,
        ];
        let v: Vec<AtomicU64> = pattern.iter().map(|&w| AtomicU64::new(w)).collect();
        let hb = Words::of(&v);
        let step = if cfg!(miri) { 13 } else { 1 };
        for start in (0..128).step_by(step) {
            for n in (0..=(256 - start).min(140)).step_by(step) {
                let mut got = Vec::new();
                for_each(hb, start, n, |i| got.push(i));
                let want: Vec<usize> = (0..n)
                    .filter(|&i| pattern[(start + i) / 64] >> ((start + i) % 64) & 1 == 1)
                    .collect();
                assert_eq!(got, want, "start {start}, {n} words");
            }
        }
    }

    #[test]
    fn bits_written_are_the_bits_read_across_words() {
        let v: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(u64::MAX)).collect();
        let hb = Words::of(&v);
        let bm = [0b1011u64 | (1 << 63), 0b1];
        let shape = Shape::pointers(&bm);
        // 70 words from arena word 60: three bitmap words, neighbours left as they were.
        write(hb, 60, 0, 70, shape);
        let mut got = Vec::new();
        for_each(hb, 60, 70, |i| got.push(i));
        assert_eq!(got, vec![0, 1, 3, 63, 64]);
        assert_eq!(
            hb[0].load(Ordering::Relaxed) & ((1 << 60) - 1),
            (1 << 60) - 1
        );
        assert_eq!(hb[2].load(Ordering::Relaxed) >> 2, u64::MAX >> 2);
        // A small object inside one word, at its end.
        write(hb, 190, 0, 2, Shape::NOSCAN);
        let mut none = 0;
        for_each(hb, 190, 2, |_| none += 1);
        assert_eq!(none, 0);
    }

    /// A mask written at every start, across a bitmap word's end or not, reads back as
    /// itself and leaves every other bit alone.
    #[test]
    fn a_mask_written_anywhere_reads_back_and_spares_its_neighbours() {
        for nwords in [1, 2, 3, 5, 7, 64] {
            for start in 0..128 {
                let v: Vec<AtomicU64> = (0..3)
                    .map(|_| AtomicU64::new(0xa5a5_a5a5_a5a5_a5a5))
                    .collect();
                let hb = Words::of(&v);
                let bits = 0x9249_2492_4924_9249u64 & (u64::MAX >> (64 - nwords));
                write_mask(hb, start, nwords, bits);
                let mut got = 0u64;
                for_each(hb, start, nwords, |i| got |= 1 << i);
                assert_eq!(got, bits, "{nwords} words at {start}");
                for w in (0..192).filter(|w| !(start..start + nwords).contains(w)) {
                    let bit = v[w / 64].load(Ordering::Relaxed) >> (w % 64) & 1;
                    assert_eq!(bit, 0xa5a5_a5a5_a5a5_a5a5u64 >> (w % 64) & 1, "word {w}");
                }
            }
        }
    }
}
