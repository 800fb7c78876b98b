//! Step 1 of `#[kye::get]`: parse. The attribute's arguments (`Model.edge`, `Model(a, b)`,
//! `crate = path`) and the item, which must be a function. Nothing here knows what a model or
//! an index is; [`super::analyze`] does.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Ident, ItemFn, Token};

use crate::ctxt::Ctxt;

/// `Model.edge`, `Model(a, b)`, optionally followed by `batch = N`, `source = name` and
/// `crate = path`; or just `crate = path`.
pub struct Args {
    pub target: Option<Target>,
    pub krate: Option<syn::Path>,
    /// `batch = N` as written (checked by [`super::analyze`]).
    pub batch: Option<syn::LitInt>,
    /// `source = path`: the declared source (`kye::source!`) the function belongs to.
    pub source: Option<syn::Path>,
}

pub struct Target {
    pub model: syn::Path,
    pub edges: Vec<Ident>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args {
            target: None,
            krate: None,
            batch: None,
            source: None,
        };
        while !input.is_empty() {
            if input.peek(Ident)
                && input.peek2(Token![=])
                && input.fork().parse::<Ident>().is_ok_and(|i| i == "batch")
            {
                let name: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                if args.batch.is_some() {
                    return Err(syn::Error::new(name.span(), "`batch` given twice"));
                }
                args.batch = Some(input.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected the most keys one call takes, e.g. `batch = 50`",
                    )
                })?);
            } else if input.peek(Ident)
                && input.peek2(Token![=])
                && input.fork().parse::<Ident>().is_ok_and(|i| i == "source")
            {
                let name: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                if args.source.is_some() {
                    return Err(syn::Error::new(name.span(), "`source` given twice"));
                }
                args.source = Some(input.call(syn::Path::parse_mod_style).map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected the source the function belongs to, as `kye::source!` declares it: `source = cats`",
                    )
                })?);
            } else if input.peek(Token![crate]) && input.peek2(Token![=]) {
                input.parse::<Token![crate]>()?;
                input.parse::<Token![=]>()?;
                if args.krate.is_some() {
                    return Err(input.error("`crate` given twice"));
                }
                args.krate = Some(input.call(syn::Path::parse_mod_style)?);
            } else if args.target.is_none() && args.krate.is_none() {
                let model = input.call(syn::Path::parse_mod_style).map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected `Model.edge` or `Model(edge, ...)`, e.g. `#[kye::get(Pokemon.id)]`",
                    )
                })?;
                let edges = if input.peek(Token![.]) {
                    input.parse::<Token![.]>()?;
                    let edge: Ident = input.parse().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "expected an edge name after `.`, e.g. `Pokemon.id`",
                        )
                    })?;
                    vec![edge]
                } else if input.peek(syn::token::Paren) {
                    let content;
                    syn::parenthesized!(content in input);
                    let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
                    if list.is_empty() {
                        return Err(syn::Error::new(
                            model.span(),
                            "expected the index edges inside the parentheses, e.g. `Date(year, month, day)`",
                        ));
                    }
                    list.into_iter().collect()
                } else {
                    return Err(syn::Error::new(
                        model.span(),
                        format!(
                            "expected `.edge` or `(edge, ...)` after the model: e.g. `#[kye::get({}.id)]`",
                            model.to_token_stream()
                        ),
                    ));
                };
                args.target = Some(Target { model, edges });
            } else {
                return Err(input.error(
                    "unexpected argument; `#[kye::get]` takes `Model.edge` or `Model(edge, ...)`, an optional `batch = N`, `source = name` and `crate = path`",
                ));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// The attribute's arguments; a malformed attribute is recorded in `cx` and read as empty,
/// so the function's own mistakes are still reported.
pub fn args(cx: &Ctxt, attr: TokenStream) -> Option<Args> {
    match syn::parse2(attr) {
        Ok(args) => Some(args),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    }
}

/// The function the attribute is on, or `None` (with the error recorded) for any other item.
pub fn item(cx: &Ctxt, item: TokenStream) -> Option<ItemFn> {
    match syn::parse2(item) {
        Ok(f) => Some(f),
        Err(_) => {
            cx.error(
                proc_macro2::Span::call_site(),
                "`#[kye::get]` goes on a function: `async fn get_pokemon(id: i64) -> kye::Result<Pokemon>`",
            );
            None
        }
    }
}
