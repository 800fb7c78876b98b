//! `#[kye::get]`: registers a fetch function, in three steps.
//!
//! 1. [`parse`]: the attribute's arguments and the function.
//! 2. [`analyze`]: the function's shape, its context and key parameters, the model and the
//!    index edges; every mistake is recorded in one [`Ctxt`] and all are reported together.
//! 3. [`expand`]: the registration, spanned so that rustc reports the type questions at the
//!    user's tokens (unknown model, identifier that is not an index, key type mismatch).
//!
//! On any mistake the user's function is emitted unchanged next to the errors, so its body
//! still type-checks and nothing else cascades.

mod analyze;
mod expand;
mod parse;

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};

use crate::ctxt::Ctxt;

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let args = parse::args(&cx, attr);
    let Some(func) = parse::item(&cx, item.clone()) else {
        return match cx.check() {
            Err(err) => with_error(item, err),
            Ok(()) => item,
        };
    };
    let fetcher = analyze::analyze(&cx, args, &func);
    match cx.check() {
        Err(err) => with_error(func.into_token_stream(), err),
        Ok(()) => match fetcher {
            Some(f) => {
                let registration = expand::registration(&f);
                quote! { #func #registration }
            }
            // analyze returns None only after recording an error; never leave the user
            // without a message if that ever breaks.
            None => with_error(
                func.into_token_stream(),
                syn::Error::new(
                    proc_macro2::Span::call_site(),
                    "kye-macros: the function was rejected without a message (bug)",
                ),
            ),
        },
    }
}

/// The user's item unchanged, plus the errors: no cascade of follow-on errors.
fn with_error(item: TokenStream, err: syn::Error) -> TokenStream {
    let err = err.to_compile_error();
    quote! { #item #err }
}
