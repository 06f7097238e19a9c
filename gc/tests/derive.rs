//! `#[derive(Trace)]`: the maps it computes for structs, tuples, generics, nesting and arrays.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicUsize, Ordering};

use gort_gc::{PtrMap, Slot, Trace};

/// The pointer words of `T`'s map, for comparing with a list.
fn words<T: Trace>() -> Vec<usize> {
    (0..gort_gc::PTRMAP_WORDS)
        .filter(|&i| T::PTRS.get(i))
        .collect()
}

#[derive(Trace)]
struct Leaf {
    value: u64,
}

#[derive(Trace)]
#[repr(C)]
struct Node {
    left: Slot<Node>,
    hits: u64,
    right: Slot<Node>,
}

#[test]
fn named_struct_maps_its_slots() {
    assert_eq!(std::mem::offset_of!(Node, hits), 8);
    assert_eq!(words::<Node>(), [0, 2]);
    assert_eq!(Node::PTRS.bitmap(), &[0b101]);
    assert!(Leaf::PTRS.is_empty());
}

#[test]
fn default_repr_uses_the_compilers_offsets() {
    // Without `repr(C)` the compiler may reorder fields; the map follows its layout.
    #[derive(Trace)]
    struct Mixed {
        a: u8,
        slot: Slot<Leaf>,
        b: u16,
        c: u64,
    }
    let slot_word = std::mem::offset_of!(Mixed, slot) / 8;
    assert_eq!(words::<Mixed>(), [slot_word]);
}

#[derive(Trace)]
#[repr(C)]
struct Tuple(u64, Slot<Leaf>, Slot<Leaf>);

#[derive(Trace)]
#[repr(C)]
struct RawNames {
    r#type: u64,
    r#fn: Slot<Leaf>,
}

#[test]
fn tuple_struct() {
    assert_eq!(words::<Tuple>(), [1, 2]);
    assert_eq!(words::<RawNames>(), [1]);
}

#[derive(Trace)]
#[repr(C)]
struct Pair<A: Trace, B: Trace> {
    a: A,
    b: B,
}

#[test]
fn generic_struct_takes_its_parameters_maps() {
    assert_eq!(words::<Pair<Slot<Leaf>, u64>>(), [0]);
    assert_eq!(words::<Pair<u64, Slot<Leaf>>>(), [1]);
    assert_eq!(words::<Pair<Slot<Leaf>, Slot<Leaf>>>(), [0, 1]);
    assert!(<Pair<u64, u64> as Trace>::PTRS.is_empty());
    // Nested generics: a pair of pairs.
    assert_eq!(words::<Pair<Pair<u64, Slot<Leaf>>, Node>>(), [1, 2, 4]);
}

#[test]
fn generic_struct_with_where_clause_and_const_parameter() {
    #[derive(Trace)]
    #[repr(C)]
    struct Buf<T, const N: usize>
    where
        T: Send,
    {
        len: usize,
        items: [T; N],
    }
    assert_eq!(words::<Buf<Slot<Leaf>, 3>>(), [1, 2, 3]);
    assert!(<Buf<u32, 8> as Trace>::PTRS.is_empty());

    #[derive(Trace)]
    #[repr(C)]
    struct Defaults<T = Slot<Leaf>, const N: usize = 2>(u64, [T; N]);
    assert_eq!(words::<Defaults>(), [1, 2]);
}

#[derive(Trace)]
#[repr(C)]
struct Outer {
    tag: u64,
    flag: u64,
    inner: Node,
    last: Slot<Node>,
}

#[test]
fn nested_struct_map_shifts_by_its_offset() {
    // `inner` starts at word 2: its words 0 and 2 become 2 and 4.
    assert_eq!(words::<Outer>(), [2, 4, 5]);
}

#[derive(Trace)]
#[repr(C)]
struct Arrays {
    len: u64,
    kids: [Slot<Node>; 3],
    nodes: [Node; 2],
}

#[test]
fn array_fields_repeat_the_element_map() {
    // kids: words 1..=3; nodes at word 4, 3 words each: 4, 6 and 7, 9.
    assert_eq!(words::<Arrays>(), [1, 2, 3, 4, 6, 7, 9]);
}

#[test]
fn self_referential_and_recursive_through_slots() {
    #[derive(Trace)]
    struct List {
        next: Slot<Self>,
        value: Slot<Leaf>,
    }
    assert_eq!(words::<List>().len(), 2);
}

#[test]
fn noscan_fields_give_an_empty_map() {
    #[derive(Trace)]
    struct Plain {
        a: u64,
        b: (u8, i32),
        c: [u16; 7],
        d: Option<Box<u64>>,
        e: Vec<u8>,
        f: std::sync::Mutex<Vec<String>>,
    }
    #[derive(Trace)]
    struct Unit;
    #[derive(Trace)]
    struct Empty {}
    assert!(Plain::PTRS.is_empty());
    assert!(Unit::PTRS.is_empty());
    assert!(Empty::PTRS.is_empty());
}

#[test]
fn enum_of_noscan_fields_is_empty() {
    #[derive(Trace)]
    #[allow(dead_code)]
    enum Shape {
        Empty,
        Point(u64, u64),
        Named { name: String, sides: Vec<u32> },
    }
    #[derive(Trace)]
    #[allow(dead_code)]
    enum Either<A, B> {
        Left(A),
        Right(B),
    }
    assert!(Shape::PTRS.is_empty());
    assert!(<Either<u64, String> as Trace>::PTRS.is_empty());

    // A noscan enum inside a struct adds nothing to the struct's map.
    #[derive(Trace)]
    #[repr(C)]
    struct Holder {
        shape: Shape,
        slot: Slot<Leaf>,
    }
    assert_eq!(words::<Holder>(), [std::mem::offset_of!(Holder, slot) / 8]);
}

#[test]
fn trace_drop_allows_a_destructor_on_a_noscan_type() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);

    #[derive(Trace)]
    #[trace(drop)]
    struct Handle {
        fd: i32,
        name: String,
    }
    impl Drop for Handle {
        fn drop(&mut self) {
            assert!(self.fd >= 0 && !self.name.is_empty());
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[derive(Trace)]
    #[trace(drop)]
    struct Guard<T: Trace> {
        value: T,
    }
    impl<T: Trace> Drop for Guard<T> {
        fn drop(&mut self) {
            let _ = &self.value;
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }

    assert!(Handle::PTRS.is_empty());
    assert!(<Guard<u64> as Trace>::PTRS.is_empty());
    drop(Handle {
        fd: 3,
        name: "log".into(),
    });
    drop(Guard { value: 1u64 });
    assert_eq!(DROPS.load(Ordering::Relaxed), 2);

    // A type holding a `#[trace(drop)]` one needs no option itself: that is field drop glue.
    #[derive(Trace)]
    #[repr(C)]
    struct Owner {
        slot: Slot<Leaf>,
        handle: Handle,
    }
    assert_eq!(words::<Owner>(), [0]);
}

#[test]
fn fields_with_drop_glue_are_fine() {
    #[derive(Trace)]
    #[repr(C)]
    struct Named {
        next: Slot<Named>,
        name: String,
        bytes: Vec<u8>,
        boxed: Box<(u64, u64)>,
    }
    assert!(std::mem::needs_drop::<Named>());
    assert_eq!(words::<Named>(), [0]);
    let n = Named {
        next: Slot::null(),
        name: "x".repeat(3),
        bytes: vec![1, 2],
        boxed: Box::new((7, 4)),
    };
    assert_eq!(n.name.len() + n.bytes.len() + n.boxed.1 as usize, 9);
}

#[test]
fn maps_are_constants() {
    // `PTRS` is usable in const contexts, as allocation needs it.
    const OUTER: PtrMap = <Outer as Trace>::PTRS;
    const LEN: usize = OUTER.len();
    assert_eq!(LEN, 6);
}

#[test]
fn noscan_types_may_hold_themselves_in_std_containers() {
    use std::collections::{BTreeMap, HashMap};

    // Without the derive's help these are const-evaluation cycles: `Box<Expr>`'s map checks
    // `Expr`'s map, which is being computed.
    #[derive(Trace)]
    #[allow(dead_code)]
    enum Expr {
        Num(u64),
        Add(Box<Expr>, Box<Self>),
        Call(String, Vec<Expr>),
        Maybe(Option<Box<Expr>>),
    }
    #[derive(Trace)]
    #[allow(dead_code)]
    enum Json {
        Null,
        Num(f64),
        Str(String),
        Arr(Vec<Json>),
        Obj(BTreeMap<String, Json>),
        Index(HashMap<u64, std::sync::Arc<Json>>),
    }
    #[derive(Trace)]
    struct List {
        value: u64,
        next: Option<Box<List>>,
    }
    #[derive(Trace)]
    #[allow(dead_code)]
    struct Tree<T: Trace, const N: usize> {
        value: T,
        kids: Vec<Tree<T, N>>,
        arr: [u8; N],
    }
    #[derive(Trace)]
    #[trace(drop)]
    struct Chain {
        next: Option<Box<Chain>>,
    }
    impl Drop for Chain {
        fn drop(&mut self) {
            // Unlink iteratively (the usual reason for a destructor on a list).
            let mut next = self.next.take();
            while let Some(mut node) = next {
                next = node.next.take();
            }
        }
    }

    assert!(Expr::PTRS.is_empty());
    assert!(Json::PTRS.is_empty());
    assert!(List::PTRS.is_empty());
    assert!(<Tree<u64, 4> as Trace>::PTRS.is_empty());
    assert!(Chain::PTRS.is_empty());
    let list = List {
        value: 1,
        next: Some(Box::new(List {
            value: 2,
            next: None,
        })),
    };
    assert_eq!(list.value + list.next.map_or(0, |n| n.value), 3);

    // Such a type inside a traced object with pointers is fine: it is a noscan field.
    #[derive(Trace)]
    #[repr(C)]
    struct Holder {
        expr: Expr,
        next: Slot<Holder>,
    }
    assert_eq!(words::<Holder>(), [std::mem::offset_of!(Holder, next) / 8]);
}
