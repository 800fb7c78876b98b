//! Procedural macros for kye. Use them through the `kye` facade crate: `#[kye::get]`,
//! `#[kye::list]`, `#[kye::transform]` and `kye::models!`. Their documentation lives there.
//!
//! Generated code names only `::kye::__private::...` (or `<crate>::__private::...` with a
//! `crate = path` override), so user crates never depend on `inventory` or `serde` directly.

#![warn(missing_docs)]

use proc_macro::TokenStream;

mod ctxt;
mod get;
mod list;
mod models;
mod names;
mod source;
#[cfg(test)]
mod test_util;
mod transform;

/// Registers a fetch function for a model identifier. See `kye::get`.
#[proc_macro_attribute]
pub fn get(attr: TokenStream, item: TokenStream) -> TokenStream {
    get::expand(attr.into(), item.into()).into()
}

/// Registers a list function: the keys of a model, found page by page. See `kye::list`.
#[proc_macro_attribute]
pub fn list(attr: TokenStream, item: TokenStream) -> TokenStream {
    list::expand(attr.into(), item.into()).into()
}

/// Registers a transformer: records of one model computed from stored records of others.
/// See `kye::transform`.
#[proc_macro_attribute]
pub fn transform(attr: TokenStream, item: TokenStream) -> TokenStream {
    transform::expand(attr.into(), item.into()).into()
}

/// Generates Rust types from `.kye` schemas. See `kye::models!`.
#[proc_macro]
pub fn models(input: TokenStream) -> TokenStream {
    models::expand(input.into()).into()
}

/// Declares a source: its hosts, configuration keys, secrets and probe. See `kye::source!`.
#[proc_macro]
pub fn source(input: TokenStream) -> TokenStream {
    source::expand(input.into()).into()
}
