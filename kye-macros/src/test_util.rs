//! What the macros' unit tests share.

use proc_macro2::TokenStream;

/// The messages of the `compile_error!`s in an expansion, in order.
pub(crate) fn errors_of(out: &TokenStream) -> Vec<String> {
    let text = out.to_string();
    text.match_indices("compile_error")
        .map(|(i, _)| {
            let rest = &text[i..];
            let start = rest.find('"').map_or(0, |s| s + 1);
            let end = rest[start..].find('"').map_or(rest.len(), |e| start + e);
            rest[start..end].to_string()
        })
        .collect()
}
