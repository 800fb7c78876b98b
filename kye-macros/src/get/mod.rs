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
pub(crate) mod expand;
pub(crate) mod parse;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::errors_of;

    #[test]
    fn every_mistake_of_one_fetcher_is_reported() {
        let out = expand(
            quote!(Pokemon.id),
            quote! {
                const fn get_pokemon<T>(&self, id: i64, ctx: &mut kye::Context) {}
            },
        );
        let errors = errors_of(&out);
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(errors[0].contains("`const fn`"), "{errors:#?}");
        assert!(errors[1].contains("cannot be generic"), "{errors:#?}");
        assert!(errors[2].contains("cannot take `self`"), "{errors:#?}");
        assert!(errors[3].contains("must return"), "{errors:#?}");
        assert!(errors[4].contains("not `&mut`"), "{errors:#?}");
        // The user's function is still emitted, unchanged.
        assert!(out.to_string().contains("fn get_pokemon"), "{out}");
    }

    #[test]
    fn every_ambiguous_key_parameter_is_reported() {
        let out = expand(
            TokenStream::new(),
            quote! {
                fn get_date(a: (i64, i64), (b, c): (i64, i64)) -> kye::Result<Date> {}
            },
        );
        let errors = errors_of(&out);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let out = expand(
            TokenStream::new(),
            quote! {
                fn get_date(_: i64, key: (i64, i64)) -> kye::Result<Date> {}
            },
        );
        let errors = errors_of(&out);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors
            .iter()
            .all(|e| e.contains("cannot infer which index of `Date`")));
    }

    #[test]
    fn a_valid_fetcher_expands_outside_a_macro_context() {
        // `Span::unwrap` (for the registration's line) panics outside a proc-macro context;
        // the registration uses `::core::line!()` instead.
        let out = expand(
            quote!(Pokemon.id),
            quote! {
                async fn get_pokemon(id: i64) -> kye::Result<Pokemon> { todo!() }
            },
        );
        let text = out.to_string();
        assert!(errors_of(&out).is_empty(), "{text}");
        assert!(text.contains("line : :: core :: line ! ()"), "{text}");
        assert!(text.contains("HasIndex"), "{text}");
    }
}
