//! `#[derive(Trace)]` for gort-gc (placeholder until the macro lands).
use proc_macro::TokenStream;

/// Derive `gort_gc::Trace`.
#[proc_macro_derive(Trace, attributes(trace))]
pub fn derive_trace(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
