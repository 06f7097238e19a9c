//! `#[derive(Trace)]` for gort-gc: a type's pointer map, computed at compile time from its fields.
//!
//! # What it generates
//!
//! For a struct (named or tuple fields, with type and const parameters)
//!
//! ```ignore
//! #[derive(Trace)]
//! struct Node<V: Trace> { left: Slot<Node<V>>, hits: u64, right: Slot<Node<V>>, value: V }
//! ```
//!
//! it writes an impl that places each field's map at that field's offset:
//!
//! ```ignore
//! unsafe impl<V: Trace> ::gort_gc::Trace for Node<V> where V: ::gort_gc::Trace {
//!     const PTRS: ::gort_gc::PtrMap = ::gort_gc::PtrMap::EMPTY
//!         .with(::core::mem::offset_of!(Self, left), <Slot<Node<V>> as ::gort_gc::Trace>::PTRS)
//!         .with(::core::mem::offset_of!(Self, hits), <u64 as ::gort_gc::Trace>::PTRS)
//!         /* ... one `.with` per field ... */;
//! }
//! ```
//!
//! The map is exact by construction: a `Slot`'s map is its one word, other implementations
//! combine their parts' maps the same way (arrays by stride, std containers refuse pointers),
//! and `offset_of!` is the compiler's own layout, whatever field order it chose. The allocator copies the map into
//! the span's heap bits, so an object needs no header to be scanned. Every type parameter gets
//! a `Trace` bound; lifetime parameters are refused, since a collected object outlives any
//! borrow (it is `'static`). For a type without generic parameters the derive also evaluates
//! `PTRS` in a `const _` item, so a map that cannot be built (a `Vec<Slot<_>>` field, a
//! pointer in a `#[trace(drop)]` type, an unaligned pointer) is a compile error where the type
//! is defined; for a generic type that error comes where `PTRS` is first used at a concrete
//! type (a post-monomorphization error, at the latest when such an object is allocated).
//!
//! # No `impl Drop`
//!
//! The type must not implement `Drop`. A sweep frees every unreachable object of a cycle at
//! once, in no particular order, so a destructor of an object holding GC pointers could read a
//! `Slot` whose object the same sweep already freed. The derive enforces this with a hidden
//! trait implemented both for every `T: Drop` and for the type itself, which conflict (error
//! E0119, "conflicting implementations of trait `__NodeMustNotImplDrop`") exactly when the type
//! implements `Drop`. Drop glue of the fields (a `String`, a `Vec<u8>`, a `Box<u64>`) is
//! fine: those types cannot hold GC pointers, and their glue runs later on the finalizer
//! thread, never inside an allocation or a sweep.
//!
//! `#[trace(drop)]` on the type lifts the rule for a type that holds no GC pointers: its map
//! must be empty, checked by a `const` assertion on each field's map (so the error names the
//! field that holds a pointer). The rule is the same for enums, although they never hold GC
//! pointers: a destructor on a traced type is always declared.
//!
//! # Enums, unions, packed structs
//!
//! An enum is accepted only if no field of any variant holds GC pointers; its map is then
//! empty. A bitmap cannot describe an enum that holds a pointer, since the same word may be a
//! pointer in one variant and a discriminant or an integer in another; a nullable `Slot` field
//! usually replaces an `Option`-like enum. Unions are refused (the active field is not known
//! to the collector), and so are `#[repr(packed)]` structs (a field may lie at an unaligned
//! offset, and a `Slot` is an atomic word the marker reads while the program runs).
//!
//! # Types that hold themselves in std containers
//!
//! A noscan type may hold itself through std containers: `Option<Box<Self>>`,
//! `Vec<Expr>`, `BTreeMap<String, Json>`. Written as is, such a field's map is a
//! const-evaluation cycle (a container's map checks its contents' map, the one being
//! computed), so the derive recognizes a field type that is a chain of `Option`, `Box`, `Vec`,
//! `VecDeque`, `Arc`, `Mutex`, `RwLock`, `OnceLock`, `HashSet`, `BTreeSet` or the value of a
//! `HashMap` / `BTreeMap`, ending in `Self` (or the type's name with its own parameters). It
//! evaluates the same containers around `()` instead (still checking map keys), asserts that
//! the type's own map is empty (the containers would hold whatever the type holds), and checks
//! that the field's type equals the std containers spelled by absolute path, so a type of
//! one's own called `Box` is refused (a type mismatch) rather than taken for the std one.
//! Other shapes — a tuple in a `Box`, two types holding each other — remain a cycle (error
//! E0391); link such objects with `Slot` fields.
//!
//! Whatever the input, the macro itself never panics: a problem it sees in the syntax is a
//! `compile_error!` spanned on the offending token; the rest are compiler errors in the
//! generated code (type checks, `const` evaluation), spanned on the field where possible.

use proc_macro::TokenStream;
use proc_macro2::{TokenStream as TokenStream2, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Fields, GenericArgument, GenericParam, Generics, Ident, Member,
    Meta, PathArguments, Type, parse_macro_input, parse_quote,
};

/// Derives `gort_gc::Trace`: the type's pointer map from its fields' maps and offsets.
///
/// Rejects an `impl Drop` on the type unless it is marked `#[trace(drop)]`, in which case it
/// must hold no GC pointers; accepts enums only when they hold no GC pointers; rejects unions,
/// `#[repr(packed)]` structs and lifetime parameters. See the crate docs for the generated
/// code and the reasons.
#[proc_macro_derive(Trace, attributes(trace))]
pub fn derive_trace(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

/// Errors found so far; all of them are reported, not just the first.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// What the derive learned about the type before writing any code.
struct Shape<'a> {
    /// `#[trace(drop)]`: an `impl Drop` is allowed, GC pointers are not.
    allow_drop: bool,
    fields: Vec<Field<'a>>,
    is_enum: bool,
}

struct Field<'a> {
    /// How `offset_of!` names the field (`None` in an enum).
    member: Option<Member>,
    ty: &'a Type,
    /// Set when the field holds the type itself through std containers.
    recursive: Option<SelfInContainers>,
}

/// A field type such as `Option<Box<Self>>` or `BTreeMap<String, Vec<Node>>`: std containers
/// around the deriving type itself.
///
/// Its map cannot be evaluated as written: a container's map checks its contents' map, which
/// is the map being computed (a const-evaluation cycle, E0391). Given that the type itself
/// holds no GC pointers (which the derive then asserts), the field's map is that of the same
/// containers around `()`: each std container's map is empty or an error, depending only on
/// whether its contents hold pointers (map keys are still checked as written).
struct SelfInContainers {
    /// The containers spelled by absolute path around `Self`; the derive checks that the field's
    /// type is this type, so a user type named `Box` is not taken for the std one.
    canonical: TokenStream2,
    /// The same containers around `()`.
    around_unit: TokenStream2,
}

/// The deriving type as field types may name it: `Self`, or its name with its own parameters.
struct SelfType {
    name: Ident,
    params: Vec<Ident>,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let mut errors = Errors::default();
    let allow_drop = type_options(&input.attrs, &mut errors);
    reject_packed(&input.attrs, &mut errors);
    reject_lifetimes(&input.generics, &mut errors);

    let this = SelfType {
        name: input.ident.clone(),
        params: input
            .generics
            .params
            .iter()
            .filter_map(|p| match p {
                GenericParam::Type(t) => Some(t.ident.clone()),
                GenericParam::Const(c) => Some(c.ident.clone()),
                GenericParam::Lifetime(_) => None,
            })
            .collect(),
    };
    let mut shape = Shape {
        allow_drop,
        fields: Vec::new(),
        is_enum: false,
    };
    match &input.data {
        Data::Struct(data) => {
            collect_fields(&data.fields, true, &this, &mut shape.fields, &mut errors)
        }
        Data::Enum(data) => {
            shape.is_enum = true;
            for variant in &data.variants {
                reject_field_options(&variant.attrs, "variants", &mut errors);
                collect_fields(
                    &variant.fields,
                    false,
                    &this,
                    &mut shape.fields,
                    &mut errors,
                );
            }
        }
        Data::Union(data) => errors.push(syn::Error::new_spanned(
            data.union_token,
            "gort-gc: a union cannot derive Trace: the collector cannot know which field is \
             live, so it cannot tell whether a word holds a GC pointer; use a struct with Slot \
             fields",
        )),
    }
    errors.finish()?;
    Ok(generate(input, &shape))
}

/// Reads the type's `#[trace(...)]` options; returns whether `#[trace(drop)]` was given.
fn type_options(attrs: &[Attribute], errors: &mut Errors) -> bool {
    let mut allow_drop = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("trace")) {
        if !matches!(attr.meta, Meta::List(_)) {
            errors.push(syn::Error::new_spanned(
                attr,
                "gort-gc: expected `#[trace(drop)]`",
            ));
            continue;
        }
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("drop") {
                if allow_drop {
                    return Err(meta.error("gort-gc: duplicate `drop` option"));
                }
                allow_drop = true;
                Ok(())
            } else {
                Err(meta.error(
                    "gort-gc: unknown option; the only one is `#[trace(drop)]` (allow an \
                     `impl Drop` on a type that holds no GC pointers)",
                ))
            }
        });
        if let Err(err) = parsed {
            errors.push(err);
        }
    }
    allow_drop
}

/// `#[trace]` means something only on the type itself.
fn reject_field_options(attrs: &[Attribute], what: &str, errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("trace")) {
        errors.push(syn::Error::new_spanned(
            attr,
            format!(
                "gort-gc: #[trace] takes no options on {what}; `#[trace(drop)]` goes on the type"
            ),
        ));
    }
}

/// Refuses `#[repr(packed)]` and `#[repr(packed(N))]`.
fn reject_packed(attrs: &[Attribute], errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("repr")) {
        let Meta::List(list) = &attr.meta else {
            continue;
        };
        for token in list.tokens.clone() {
            if let TokenTree::Ident(ident) = token
                && ident == "packed"
            {
                errors.push(syn::Error::new(
                    ident.span(),
                    "gort-gc: a #[repr(packed)] type cannot derive Trace: its fields may lie at \
                     unaligned offsets, and a Slot is an atomic word that must be 8-byte aligned \
                     for the marker to read it while the program runs",
                ));
            }
        }
    }
}

fn reject_lifetimes(generics: &Generics, errors: &mut Errors) {
    for param in &generics.params {
        if let GenericParam::Lifetime(lt) = param {
            errors.push(syn::Error::new_spanned(
                &lt.lifetime,
                "gort-gc: a traced type cannot have lifetime parameters: objects in the \
                 collected heap are 'static (they outlive any borrow); hold GC pointers in Slot \
                 fields",
            ));
        }
    }
}

fn collect_fields<'a>(
    fields: &'a Fields,
    in_struct: bool,
    this: &SelfType,
    out: &mut Vec<Field<'a>>,
    errors: &mut Errors,
) {
    for (i, field) in fields.iter().enumerate() {
        reject_field_options(&field.attrs, "fields", errors);
        let member = in_struct.then(|| match &field.ident {
            Some(ident) => Member::Named(ident.clone()),
            None => Member::Unnamed(syn::Index {
                index: i as u32,
                span: field.ty.span(),
            }),
        });
        out.push(Field {
            member,
            ty: &field.ty,
            recursive: self_in_containers(&field.ty, this),
        });
    }
}

/// `ty` without invisible groups (from `macro_rules!` fragments) and parentheses.
fn strip(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(g) => ty = &g.elem,
            Type::Paren(p) => ty = &p.elem,
            _ => return ty,
        }
    }
}

/// Whether `ty` names the deriving type: `Self`, or `Name` / `Name<P1, P2, ..>` with its own
/// parameters in order.
fn is_self(ty: &Type, this: &SelfType) -> bool {
    let Type::Path(path) = strip(ty) else {
        return false;
    };
    if path.qself.is_some() || path.path.leading_colon.is_some() || path.path.segments.len() != 1 {
        return false;
    }
    let segment = &path.path.segments[0];
    if segment.ident == "Self" {
        return segment.arguments.is_none();
    }
    if segment.ident != this.name {
        return false;
    }
    match &segment.arguments {
        PathArguments::None => this.params.is_empty(),
        PathArguments::AngleBracketed(args) => {
            args.args.len() == this.params.len()
                && args
                    .args
                    .iter()
                    .zip(&this.params)
                    .all(|(arg, param)| match arg {
                        GenericArgument::Type(Type::Path(p)) => {
                            p.qself.is_none() && p.path.is_ident(param)
                        }
                        _ => false,
                    })
        }
        PathArguments::Parenthesized(_) => false,
    }
}

/// Recognizes std containers around the deriving type (see [`SelfInContainers`]).
fn self_in_containers(ty: &Type, this: &SelfType) -> Option<SelfInContainers> {
    let Type::Path(path) = strip(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return None;
    };
    let types = args
        .args
        .iter()
        .map(|arg| match arg {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect::<Option<Vec<&Type>>>()?;
    // The containers of gort_gc's `Trace` impls whose map is empty or an error; for a map,
    // the recursion must be in the value.
    let (container, arity) = match segment.ident.to_string().as_str() {
        "Option" => (quote!(::core::option::Option), 1),
        "Box" => (quote!(::std::boxed::Box), 1),
        "Vec" => (quote!(::std::vec::Vec), 1),
        "VecDeque" => (quote!(::std::collections::VecDeque), 1),
        "Arc" => (quote!(::std::sync::Arc), 1),
        "Mutex" => (quote!(::std::sync::Mutex), 1),
        "RwLock" => (quote!(::std::sync::RwLock), 1),
        "OnceLock" => (quote!(::std::sync::OnceLock), 1),
        "HashSet" => (quote!(::std::collections::HashSet), 1),
        "BTreeSet" => (quote!(::std::collections::BTreeSet), 1),
        "HashMap" => (quote!(::std::collections::HashMap), 2),
        "BTreeMap" => (quote!(::std::collections::BTreeMap), 2),
        _ => return None,
    };
    let (inner, keys) = types.split_last()?;
    if types.len() != arity {
        return None;
    }
    let (canonical, around_unit) = if is_self(inner, this) {
        (quote!(Self), quote!(()))
    } else {
        let nested = self_in_containers(inner, this)?;
        (nested.canonical, nested.around_unit)
    };
    Some(SelfInContainers {
        canonical: quote!(#container<#(#keys,)* #canonical>),
        around_unit: quote!(#container<#(#keys,)* #around_unit>),
    })
}

fn generate(input: &DeriveInput, shape: &Shape<'_>) -> TokenStream2 {
    let name = &input.ident;

    // Every type parameter must be `Trace` (its map is part of ours).
    let mut generics = input.generics.clone();
    let params: Vec<Ident> = generics.type_params().map(|p| p.ident.clone()).collect();
    let where_clause = generics.make_where_clause();
    for param in &params {
        where_clause
            .predicates
            .push(parse_quote!(#param: ::gort_gc::Trace));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    // A field's map; for a field holding the type itself in std containers, the same containers'
    // map around `()` (see `SelfInContainers`).
    let map_of = |field: &Field<'_>| {
        let ty = field.ty;
        match &field.recursive {
            None => quote_spanned!(ty.span()=> <#ty as ::gort_gc::Trace>::PTRS),
            Some(rec) => {
                let around_unit = &rec.around_unit;
                quote_spanned!(ty.span()=> <#around_unit as ::gort_gc::Trace>::PTRS)
            }
        }
    };
    // Those fields' types must be the std containers the derive took them for: a type
    // equality the compiler checks (a mismatch is an error at the field).
    let same_types = shape.fields.iter().filter_map(|field| {
        let ty = field.ty;
        let canonical = &field.recursive.as_ref()?.canonical;
        Some(quote_spanned!(ty.span()=> let _: fn(#ty) -> #canonical = |same| same;))
    });
    let same_types = quote!(#(#same_types)*);
    let ptrs = if shape.is_enum || shape.allow_drop {
        // Noscan by rule: each field's map must be empty. One assertion per field, spanned on
        // the field's type, so a const-evaluation error points at the field that holds
        // pointers.
        let message = if shape.is_enum {
            "gort-gc: enums cannot hold GC pointers (a discriminant and a pointer may share a \
             word); use Slot fields, which are nullable"
        } else {
            "gort-gc: #[trace(drop)] types cannot hold GC pointers (a destructor could read a \
             pointer whose object the same sweep already freed); move the pointers to a type \
             without `impl Drop`"
        };
        let asserts = shape.fields.iter().map(|field| {
            let map = map_of(field);
            quote_spanned!(field.ty.span()=> ::core::assert!(#map.is_empty(), #message);)
        });
        quote!({
            #same_types
            #(#asserts)*
            ::gort_gc::PtrMap::EMPTY
        })
    } else {
        let withs = shape.fields.iter().map(|field| {
            let map = map_of(field);
            let member = &field.member;
            quote_spanned!(field.ty.span()=> .with(::core::mem::offset_of!(Self, #member), #map))
        });
        let chain = quote!(::gort_gc::PtrMap::EMPTY #(#withs)*);
        if let Some(first) = shape.fields.iter().find(|f| f.recursive.is_some()) {
            // Spanned on that field: it is why the type must be noscan.
            let check = quote_spanned!(first.ty.span()=>
                ::core::assert!(
                    map.is_empty(),
                    "gort-gc: a type that holds itself in a std container (Box, Option, Vec, ...) \
                     cannot hold GC pointers, since the container would hold them too; link \
                     objects with Slot<Self> fields instead"
                );
            );
            quote!({
                #same_types
                let map = #chain;
                #check
                map
            })
        } else {
            chain
        }
    };

    let drop_check = (!shape.allow_drop).then(|| {
        let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
        let marker = format_ident!("__{}MustNotImplDrop", name, span = name.span());
        let this_impl = quote_spanned!(name.span()=>
            impl #impl_generics #marker for #name #ty_generics #where_clause {}
        );
        quote! {
            // A type that implements `Drop` gets the blanket impl too: conflicting impls.
            const _: () = {
                #[doc(hidden)]
                #[allow(non_camel_case_types, dead_code)]
                trait #marker {}
                #[allow(drop_bounds)]
                impl<__T: ::core::ops::Drop> #marker for __T {}
                #this_impl
            };
        }
    });

    let eager = input.generics.params.is_empty().then(|| {
        quote! {
            // Build the map where the type is defined, so a map that cannot be built is an
            // error here rather than where the type is first allocated.
            const _: ::gort_gc::PtrMap = <#name as ::gort_gc::Trace>::PTRS;
        }
    });

    quote! {
        #[automatically_derived]
        unsafe impl #impl_generics ::gort_gc::Trace for #name #ty_generics #where_clause {
            const PTRS: ::gort_gc::PtrMap = #ptrs;
        }
        #drop_check
        #eager
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(src: &str) -> Result<String, String> {
        let input: DeriveInput = syn::parse_str(src).map_err(|e| e.to_string())?;
        expand(&input).map(|t| t.to_string()).map_err(|e| {
            e.into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(" | ")
        })
    }

    fn this(src: &str) -> SelfType {
        let input: DeriveInput = syn::parse_str(src).unwrap();
        SelfType {
            name: input.ident,
            params: input
                .generics
                .type_params()
                .map(|p| p.ident.clone())
                .collect(),
        }
    }

    #[test]
    fn recognizes_std_containers_around_self() {
        let list = this("struct List { x: u8 }");
        let tree = this("struct Tree<T> { x: T }");
        let yes = |this: &SelfType, ty: &str| {
            let ty: Type = syn::parse_str(ty).unwrap();
            self_in_containers(&ty, this)
                .map(|r| (r.canonical.to_string(), r.around_unit.to_string()))
        };
        let (canonical, unit) = yes(&list, "Option<Box<List>>").unwrap();
        assert_eq!(
            canonical,
            ":: core :: option :: Option < :: std :: boxed :: Box < Self > >"
        );
        assert_eq!(
            unit,
            ":: core :: option :: Option < :: std :: boxed :: Box < () > >"
        );
        let (canonical, unit) =
            yes(&list, "std::collections::BTreeMap<String, Vec<Self>>").unwrap();
        assert!(canonical.ends_with("BTreeMap < String , :: std :: vec :: Vec < Self > >"));
        assert!(unit.ends_with("BTreeMap < String , :: std :: vec :: Vec < () > >"));
        assert!(yes(&tree, "Vec<Tree<T>>").is_some());
        assert!(yes(&tree, "Arc<Mutex<Self>>").is_some());
        for no in [
            "List",                      // not in a container (and infinitely large)
            "Box<(List, u8)>",           // a tuple in the box
            "Box<other::List>",          // another module's List
            "Vec<Slot<List>>",           // Slot is not a std container
            "Result<Box<List>, String>", // not in the list
            "HashMap<List, u8>",         // recursion in a key
            "Box<<List as Tr>::Assoc>",  // a projection
        ] {
            assert!(yes(&list, no).is_none(), "{no}");
        }
        assert!(yes(&tree, "Vec<Tree<u64>>").is_none());
        assert!(yes(&tree, "Vec<Tree>").is_none());
    }

    #[test]
    fn refusals_are_errors_not_panics() {
        let cases = [
            ("union U { a: u64, b: f64 }", "a union cannot derive Trace"),
            (
                "#[repr(C, packed(2))] struct P { a: u64 }",
                "#[repr(packed)]",
            ),
            ("struct B<'a, T> { a: &'a T }", "lifetime parameters"),
            ("#[trace(dorp)] struct S;", "unknown option"),
            ("#[trace(drop, drop)] struct S;", "duplicate `drop`"),
            ("#[trace] struct S;", "expected `#[trace(drop)]`"),
            ("#[trace = 1] struct S;", "expected `#[trace(drop)]`"),
            ("struct S { #[trace(drop)] a: u8 }", "no options on fields"),
            ("enum E { #[trace] A }", "no options on variants"),
        ];
        for (src, want) in cases {
            let err = expand_str(src).expect_err(src);
            assert!(err.contains(want), "{src}: {err}");
        }
        // Every problem is reported, not just the first.
        let err = expand_str("#[trace(x)] #[repr(packed)] struct S<'a> { #[trace] a: &'a u8 }")
            .unwrap_err();
        assert_eq!(err.matches(" | ").count(), 3, "{err}");
    }

    #[test]
    fn expands_odd_but_valid_inputs() {
        for src in [
            "struct r#type { r#fn: u8 }",
            "struct Unit;",
            "struct Empty {}",
            "struct T();",
            "enum Never {}",
            "struct D<T = u8, const N: usize = 3>([T; N]) where T: Copy;",
            "#[repr(C, align(64))] struct A { a: u8 }",
            "#[repr(u8)] enum E { A = 1, B = 2 }",
        ] {
            expand_str(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        }
        let out = expand_str("struct r#type { a: u8 }").unwrap();
        assert!(out.contains("__typeMustNotImplDrop"), "{out}");
        // `#[trace(drop)]` drops the Drop check; generic types get no eager `const _`.
        let out = expand_str("#[trace(drop)] struct G<T>(T);").unwrap();
        assert!(!out.contains("MustNotImplDrop") && !out.contains("const _ : :: gort_gc"));
    }
}
