//! What the collector knows about a type: the `Trace` trait and the pointer map it carries.

use std::marker::PhantomData;

/// Words a [`PtrMap`] describes: 4096 words, 32 KiB — every small object. A traced type
/// whose pointer words reach beyond that fails to compile (use a [`crate::GcVec`] for long
/// runs of pointers).
pub const PTRMAP_WORDS: usize = 4096;

/// Which 8-byte words of a value hold GC pointers ([`crate::Slot`]s): bit `i` set = word `i`.
///
/// Computed at compile time by `#[derive(Trace)]` from the fields' maps and offsets; the
/// allocator copies it into the span's heap bits, so an object needs no header to be scanned.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PtrMap {
    words: [u64; PTRMAP_WORDS / 64],
    /// The type is traced by code, not by a map (a [`crate::GcCell`]): it must be an object
    /// of its own, never a field, so `with` refuses it.
    opaque: bool,
}

impl std::fmt::Debug for PtrMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set: Vec<usize> = (0..PTRMAP_WORDS).filter(|&i| self.get(i)).collect();
        f.debug_struct("PtrMap")
            .field("pointer_words", &set)
            .finish()
    }
}

impl PtrMap {
    /// No pointer words.
    pub const EMPTY: PtrMap = PtrMap {
        words: [0; PTRMAP_WORDS / 64],
        opaque: false,
    };

    /// The map of a type traced by code ([`crate::GcCell`]): no pointer words, and it cannot
    /// be a field of another traced type.
    pub(crate) const OPAQUE: PtrMap = PtrMap {
        words: [0; PTRMAP_WORDS / 64],
        opaque: true,
    };

    /// One pointer word: word 0 (a [`crate::Slot`]).
    pub const ONE: PtrMap = {
        let mut words = [0; PTRMAP_WORDS / 64];
        words[0] = 1;
        PtrMap {
            words,
            opaque: false,
        }
    };

    /// Whether word `i` holds a pointer.
    pub const fn get(&self, i: usize) -> bool {
        i < PTRMAP_WORDS && self.words[i / 64] & (1 << (i % 64)) != 0
    }

    /// Whether the type is traced by code and must be an object of its own.
    pub const fn is_opaque(&self) -> bool {
        self.opaque
    }

    /// Whether no word holds a pointer and no code traces it (the type is *noscan*).
    pub const fn is_empty(&self) -> bool {
        if self.opaque {
            return false;
        }
        let mut i = 0;
        while i < self.words.len() {
            if self.words[i] != 0 {
                return false;
            }
            i += 1;
        }
        true
    }

    /// Words up to and including the last pointer word (0 when empty).
    pub const fn len(&self) -> usize {
        let mut i = self.words.len();
        while i > 0 {
            i -= 1;
            if self.words[i] != 0 {
                return i * 64 + 64 - self.words[i].leading_zeros() as usize;
            }
        }
        0
    }

    /// The bitmap words that cover [`PtrMap::len`] (what allocation writes).
    pub const fn bitmap(&self) -> &[u64] {
        let (head, _) = self.words.split_at(self.len().div_ceil(64));
        head
    }

    /// This map with `field`'s map added at byte offset `offset` (a field of a struct).
    ///
    /// Fails compilation (a panic in const evaluation) when a field holding pointers is not
    /// 8-byte aligned (a `#[repr(packed)]` struct) or reaches past [`PTRMAP_WORDS`].
    pub const fn with(self, offset: usize, field: PtrMap) -> PtrMap {
        assert!(
            !field.opaque,
            "gort-gc: a GcCell cannot be a field (or element) of another traced type: allocate \
             it on its own and refer to it through a Slot"
        );
        if field.is_empty() {
            return self;
        }
        assert!(
            offset.is_multiple_of(8),
            "gort-gc: a field holding GC pointers must be 8-byte aligned (no #[repr(packed)])"
        );
        let shift = offset / 8;
        assert!(
            shift + field.len() <= PTRMAP_WORDS,
            "gort-gc: a traced type's GC pointers must lie in its first 32 KiB; use GcVec for \
             long runs of pointers"
        );
        // Word at a time: bits [64k, 64k + 64) of the field land at 64k + shift.
        let (ws, bs) = (shift / 64, shift % 64);
        let mut out = self;
        let mut k = 0;
        let used = field.len().div_ceil(64);
        while k < used {
            let w = field.words[k];
            if w != 0 {
                out.words[k + ws] |= w << bs;
                if bs != 0 && k + ws + 1 < out.words.len() {
                    out.words[k + ws + 1] |= w >> (64 - bs);
                }
            }
            k += 1;
        }
        out
    }

    /// The map of `[T; n]` given `T`'s map and size.
    pub const fn repeat(elem: PtrMap, elem_size: usize, n: usize) -> PtrMap {
        let mut out = PtrMap::EMPTY;
        if elem.is_empty() {
            return out;
        }
        if elem_size == 8 && elem.len() == 1 && !elem.opaque {
            // An array of pointer words (`[Slot<T>; n]`): the first `n` bits.
            assert!(
                n <= PTRMAP_WORDS,
                "gort-gc: a traced type's GC pointers must lie in its first 32 KiB; use GcVec \
                 for long runs of pointers"
            );
            let mut k = 0;
            while k < n / 64 {
                out.words[k] = u64::MAX;
                k += 1;
            }
            if !n.is_multiple_of(64) {
                out.words[n / 64] = (1u64 << (n % 64)) - 1;
            }
            return out;
        }
        let mut k = 0;
        while k < n {
            out = out.with(k * elem_size, elem);
            k += 1;
        }
        out
    }
}

/// A type that can live in the collected heap.
///
/// `PTRS` says which words of a value hold GC pointers; every such word must be a
/// [`crate::Slot`] (an atomic word the collector reads while the program runs), and no other
/// word may hold one. Derive it: `#[derive(Trace)]` computes the map from the fields, and
/// rejects an `impl Drop` on the type (a destructor could read a pointer whose object was
/// already freed in the same cycle; drop glue of fields still runs, on the finalizer thread).
///
/// Objects are `Send + Sync` (markers on other threads read them) and `'static` (they outlive
/// any borrow). Std containers and cells implement `Trace` only for contents without GC
/// pointers: the marker cannot read memory a mutator may be writing through `&mut`, so a
/// `Vec<Slot<T>>` or a `Mutex<Slot<T>>` is a compile error — use [`crate::GcVec`].
///
/// # Safety
/// `PTRS` must mark exactly the words of `Self` that are `Slot`s (directly or in fields), and
/// every other word must never hold a GC pointer the program relies on to keep an object
/// alive. A wrong map lets the collector free a reachable object, or read a non-pointer word
/// as a pointer.
pub unsafe trait Trace: Send + Sync + 'static {
    /// The pointer words of a value of this type.
    const PTRS: PtrMap;

    /// For types traced by code ([`crate::GcCell`], whose map is opaque): call `f` with every
    /// pointer the value at the given address holds, or return false when it cannot be read
    /// now (its lock is held) and must be scanned again later.
    #[doc(hidden)]
    const TRACE: Option<TraceFn> = None;
}

/// See [`Trace::TRACE`].
#[doc(hidden)]
pub type TraceFn = unsafe fn(usize, &mut dyn FnMut(usize)) -> bool;

/// Implements `Trace` with an empty map for types that cannot hold GC pointers.
macro_rules! noscan {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: the type holds no `Slot`, so the empty map is exact.
        unsafe impl Trace for $t {
            const PTRS: PtrMap = PtrMap::EMPTY;
        }
    )*};
}

noscan!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str,
    std::time::Duration,
    std::time::Instant,
    std::sync::atomic::AtomicBool,
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
);

/// The map of a container that must not hold GC pointers: empty, or a compile error.
const fn no_pointers_in(inner: PtrMap, what: &str) -> PtrMap {
    if !inner.is_empty() {
        // `what` names the container; const panics cannot format, so the message is generic.
        let _ = what;
        panic!(
            "gort-gc: a std container or cell cannot hold GC pointers (the marker could read \
             it while it is being written); use GcVec, or Slot fields in a traced object"
        );
    }
    PtrMap::EMPTY
}

macro_rules! container {
    ($($name:literal => [$($g:ident),*] $t:ty),* $(,)?) => {$(
        // SAFETY: the map is empty, and `no_pointers_in` refuses (at compile time) contents
        // that hold a `Slot`, so the container holds none.
        unsafe impl<$($g: Trace),*> Trace for $t {
            const PTRS: PtrMap = {
                $(let _ = no_pointers_in(<$g as Trace>::PTRS, $name);)*
                PtrMap::EMPTY
            };
        }
    )*};
}

container!(
    "Option" => [T] Option<T>,
    "Box" => [T] Box<T>,
    "Vec" => [T] Vec<T>,
    "VecDeque" => [T] std::collections::VecDeque<T>,
    "Arc" => [T] std::sync::Arc<T>,
    "Mutex" => [T] std::sync::Mutex<T>,
    "RwLock" => [T] std::sync::RwLock<T>,
    "OnceLock" => [T] std::sync::OnceLock<T>,
    "HashMap" => [K, V] std::collections::HashMap<K, V>,
    "BTreeMap" => [K, V] std::collections::BTreeMap<K, V>,
    "HashSet" => [T] std::collections::HashSet<T>,
    "BTreeSet" => [T] std::collections::BTreeSet<T>,
    "Result" => [T, E] Result<T, E>,
);

// SAFETY: `PhantomData` is zero-sized and holds nothing.
unsafe impl<T: ?Sized + Send + Sync + 'static> Trace for PhantomData<T> {
    const PTRS: PtrMap = PtrMap::EMPTY;
}

// SAFETY: element `k` of an array lies at `k * size_of::<T>()`, so repeating `T`'s exact map
// at that stride is exact.
unsafe impl<T: Trace, const N: usize> Trace for [T; N] {
    const PTRS: PtrMap = PtrMap::repeat(T::PTRS, std::mem::size_of::<T>(), N);
}

macro_rules! tuples {
    ($(($($t:ident . $i:tt),+)),* $(,)?) => {$(
        // SAFETY: each element's map is placed at that element's offset, so the union is
        // exact.
        unsafe impl<$($t: Trace),+> Trace for ($($t,)+) {
            const PTRS: PtrMap = {
                let m = PtrMap::EMPTY;
                $(let m = m.with(std::mem::offset_of!(Self, $i), <$t as Trace>::PTRS);)+
                m
            };
        }
    )*};
}

tuples!(
    (A.0),
    (A.0, B.1),
    (A.0, B.1, C.2),
    (A.0, B.1, C.2, D.3),
    (A.0, B.1, C.2, D.3, E.4),
    (A.0, B.1, C.2, D.3, E.4, F.5),
);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn maps_compose_by_offset_and_stride() {
        let m = PtrMap::EMPTY.with(8, PtrMap::ONE).with(24, PtrMap::ONE);
        assert!(m.get(1) && m.get(3) && !m.get(0) && !m.get(2));
        assert_eq!(m.len(), 4);
        assert_eq!(m.bitmap(), &[0b1010]);
        let r = PtrMap::repeat(m, 32, 3);
        assert_eq!(r.bitmap(), &[0b1010_1010_1010]);
        assert!(PtrMap::EMPTY.is_empty() && PtrMap::EMPTY.bitmap().is_empty());
        let far = PtrMap::EMPTY.with(8 * 300, PtrMap::ONE);
        assert_eq!(far.len(), 301);
        assert_eq!(far.bitmap().len(), 5);
    }

    #[test]
    fn word_shifts_cross_word_boundaries() {
        let f = PtrMap::EMPTY
            .with(0, PtrMap::ONE)
            .with(63 * 8, PtrMap::ONE)
            .with(64 * 8, PtrMap::ONE);
        for shift in [1usize, 63, 64, 65, 200] {
            let m = PtrMap::EMPTY.with(shift * 8, f);
            let got: Vec<usize> = (0..PTRMAP_WORDS).filter(|&i| m.get(i)).collect();
            assert_eq!(got, vec![shift, shift + 63, shift + 64], "shift {shift}");
        }
        let all = PtrMap::repeat(PtrMap::ONE, 8, PTRMAP_WORDS);
        assert_eq!(all.len(), PTRMAP_WORDS);
        assert!((0..PTRMAP_WORDS).all(|i| all.get(i)));
        let some = PtrMap::repeat(PtrMap::ONE, 8, 70);
        assert_eq!((some.len(), some.get(69), some.get(70)), (70, true, false));
    }

    #[test]
    fn noscan_containers_have_empty_maps() {
        assert!(<Vec<u64> as Trace>::PTRS.is_empty());
        assert!(<(u8, String, [u64; 4]) as Trace>::PTRS.is_empty());
        assert!(<Option<Box<u32>> as Trace>::PTRS.is_empty());
    }
}
