//! What `#[derive(Trace)]` refuses: `compile_fail` doctests, compiled only under `cfg(doctest)`.
//!
//! Each example below is a small program that breaks one rule and nothing else; most have a
//! counterpart without the fault in `tests/derive.rs`. A `compile_fail` doctest passes for any
//! compile error (error codes are checked only on nightly), so each of these was checked to
//! fail with exactly the one error named above it.
//!
//! Errors from a map that cannot be built are `const` evaluation errors. For a type without
//! generic parameters the derive evaluates its map where the type is defined; for a generic
//! type the error comes only where `PTRS` is used at a concrete type (allocation does), so
//! those examples use it in a `const`.
//!
//! # A derived type cannot implement `Drop`
//!
//! A sweep frees the unreachable objects of a cycle together, so a destructor could read a
//! `Slot` whose object was already freed. Error E0119, conflicting implementations of trait
//! `__NodeMustNotImplDrop`:
//!
//! ```compile_fail,E0119
//! use gort_gc::{Slot, Trace};
//!
//! #[derive(Trace)]
//! struct Node {
//!     next: Slot<Node>,
//!     value: u64,
//! }
//!
//! impl Drop for Node {
//!     fn drop(&mut self) {}
//! }
//! ```
//!
//! The same holds for a generic type (the `impl Drop` must match the type's own bounds, so it
//! always conflicts):
//!
//! ```compile_fail,E0119
//! use gort_gc::{Slot, Trace};
//!
//! #[derive(Trace)]
//! struct Node<T: Trace> {
//!     next: Slot<Node<T>>,
//!     value: T,
//! }
//!
//! impl<T: Trace> Drop for Node<T> {
//!     fn drop(&mut self) {}
//! }
//! ```
//!
//! # `#[trace(drop)]` types hold no GC pointers
//!
//! `#[trace(drop)]` permits the destructor, and then every field must be noscan. Error E0080,
//! "#[trace(drop)] types cannot hold GC pointers", at the `Slot` field:
//!
//! ```compile_fail,E0080
//! use gort_gc::{Slot, Trace};
//!
//! #[derive(Trace)]
//! #[trace(drop)]
//! struct File {
//!     fd: i32,
//!     owner: Slot<File>,
//! }
//!
//! impl Drop for File {
//!     fn drop(&mut self) {}
//! }
//! ```
//!
//! Generic: the error comes when the map is used with a pointer-holding parameter.
//!
//! ```compile_fail,E0080
//! use gort_gc::{PtrMap, Slot, Trace};
//!
//! #[derive(Trace)]
//! #[trace(drop)]
//! struct Guard<T: Trace> {
//!     value: T,
//! }
//!
//! impl<T: Trace> Drop for Guard<T> {
//!     fn drop(&mut self) {}
//! }
//!
//! #[derive(Trace)]
//! struct Leaf {
//!     value: u64,
//! }
//!
//! const _: PtrMap = <Guard<Slot<Leaf>> as Trace>::PTRS;
//! ```
//!
//! # Enums cannot hold GC pointers
//!
//! A pointer bitmap cannot describe a word that is a pointer in one variant and an integer in
//! another. Error E0080, "enums cannot hold GC pointers", at the `Slot`:
//!
//! ```compile_fail,E0080
//! use gort_gc::{Slot, Trace};
//!
//! #[derive(Trace)]
//! struct Leaf {
//!     value: u64,
//! }
//!
//! #[derive(Trace)]
//! enum Value {
//!     Int(u64),
//!     Ref(Slot<Leaf>),
//! }
//! ```
//!
//! # Unions are refused
//!
//! The collector cannot know which field is live. Error "a union cannot derive Trace":
//!
//! ```compile_fail
//! use gort_gc::Trace;
//!
//! #[derive(Trace)]
//! union Bits {
//!     int: u64,
//!     float: f64,
//! }
//! ```
//!
//! # `#[repr(packed)]` is refused
//!
//! A field may lie at an unaligned offset. Error "a #[repr(packed)] type cannot derive Trace":
//!
//! ```compile_fail
//! use gort_gc::Trace;
//!
//! #[derive(Trace)]
//! #[repr(C, packed)]
//! struct Header {
//!     tag: u8,
//!     len: u64,
//! }
//! ```
//!
//! # Std containers cannot hold GC pointers
//!
//! The marker cannot read a `Vec`'s buffer while a mutator may be writing it through `&mut`.
//! The container's own `Trace` impl refuses it: error E0080, "a std container or cell cannot
//! hold GC pointers". In a generic type, at the use of the map:
//!
//! ```compile_fail,E0080
//! use gort_gc::{PtrMap, Slot, Trace};
//!
//! #[derive(Trace)]
//! struct Leaf {
//!     value: u64,
//! }
//!
//! #[derive(Trace)]
//! struct Children<T: Trace> {
//!     items: Vec<Slot<T>>,
//! }
//!
//! const _: PtrMap = <Children<Leaf> as Trace>::PTRS;
//! ```
//!
//! In a type without parameters, where it is defined:
//!
//! ```compile_fail,E0080
//! use gort_gc::{Slot, Trace};
//!
//! #[derive(Trace)]
//! struct Leaf {
//!     value: u64,
//! }
//!
//! #[derive(Trace)]
//! struct Children {
//!     len: usize,
//!     items: Vec<Slot<Leaf>>,
//! }
//! ```
//!
//! # No lifetime parameters
//!
//! Collected objects are `'static`. Error "a traced type cannot have lifetime parameters":
//!
//! ```compile_fail
//! use gort_gc::Trace;
//!
//! #[derive(Trace)]
//! struct Named<'a> {
//!     name: &'a str,
//! }
//! ```
//!
//! # A type that holds itself in std containers holds no GC pointers
//!
//! The derive accepts a field such as `Option<Box<Self>>` or `BTreeMap<String, Vec<Node>>`
//! (evaluated as written, its map would be a const-evaluation cycle); the containers would
//! then hold whatever the type holds, so the type must be noscan. Error E0080, "a type that
//! holds itself in a std container ... cannot hold GC pointers", at that field:
//!
//! ```compile_fail,E0080
//! use gort_gc::{Slot, Trace};
//!
//! #[derive(Trace)]
//! struct Leaf {
//!     value: u64,
//! }
//!
//! #[derive(Trace)]
//! struct Node {
//!     leaf: Slot<Leaf>,
//!     next: Option<Box<Node>>,
//! }
//! ```
//!
//! The containers are recognized by name, and the derive checks that the name is the std type:
//! a type of one's own called `Box` is refused (error E0308, mismatched types) rather than
//! trusted.
//!
//! ```compile_fail,E0308
//! use gort_gc::{Slot, Trace};
//!
//! #[derive(Trace)]
//! struct Box<T: Trace>(Slot<T>);
//!
//! #[derive(Trace)]
//! enum Expr {
//!     Num(u64),
//!     Neg(Box<Expr>),
//! }
//! ```
