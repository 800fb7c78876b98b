//! `#[kye::list(Model.edge)]`: registers a list function, parse → analyze → expand as
//! `#[kye::get]` does (the attribute's arguments are parsed by the same code).
//!
//! The function is `async fn name(ctx: &kye::Context, keys: kye::Keys<T>) -> kye::Result<()>`
//! (the two parameters in either order). rustc answers the type questions at the user's
//! tokens: an unknown model at the model, an identifier that is not an index at the edge, a
//! key type `T` that does not fit the index (a `String` for a `Number` index) at `T`.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, PathArguments, Type};

use crate::ctxt::Ctxt;
use crate::get::expand::{doc_of, index_lookup, respan, source_member};
use crate::get::parse;

/// What the function is, once checked.
struct Lister<'a> {
    func: &'a ItemFn,
    krate: syn::Path,
    model: syn::Path,
    edges: Vec<Ident>,
    /// The key type: `T` of `Keys<T>`.
    key_ty: Type,
    /// Whether the `Keys` parameter comes first.
    keys_first: bool,
    /// `source = path`.
    source: Option<syn::Path>,
}

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let args = parse::args(&cx, attr);
    let Ok(func) = syn::parse2::<ItemFn>(item.clone()) else {
        cx.error(
            Span::call_site(),
            "`#[kye::list]` goes on a function: `async fn all_pokemon(ctx: &kye::Context, keys: kye::Keys<u32>) -> kye::Result<()>`",
        );
        return with_error(item, cx.check().err());
    };
    let lister = analyze(&cx, args, &func);
    match (cx.check(), lister) {
        (Ok(()), Some(l)) => {
            let registration = registration(&l);
            quote! { #func #registration }
        }
        (result, _) => with_error(func.into_token_stream(), result.err()),
    }
}

/// The user's item unchanged, plus the errors: no cascade of follow-on errors.
fn with_error(item: TokenStream, err: Option<syn::Error>) -> TokenStream {
    let err = err
        .unwrap_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "kye-macros: the list function was rejected without a message (bug)",
            )
        })
        .to_compile_error();
    quote! { #item #err }
}

fn analyze<'a>(cx: &Ctxt, args: Option<parse::Args>, func: &'a ItemFn) -> Option<Lister<'a>> {
    let sig = &func.sig;
    let target = match args {
        Some(parse::Args {
            target: Some(t),
            krate,
            batch,
            source,
        }) => {
            if let Some(b) = batch {
                cx.error(
                    b.span(),
                    "`batch` belongs to `#[kye::get]`: a list function sends keys one by one, and the fetcher of the model groups them",
                );
            }
            Some((t, krate, source))
        }
        Some(parse::Args { target: None, .. }) => {
            cx.error(
                Span::call_site(),
                "`#[kye::list]` needs the keys it lists: `#[kye::list(Pokemon.id)]`",
            );
            None
        }
        None => None,
    };
    if sig.asyncness.is_none() {
        cx.error(
            sig.fn_token.span(),
            "a list function is `async`: it sends keys as it finds them (`keys.send(k).await?`)",
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error(sig.generics.span(), "a list function cannot be generic");
    }
    if let syn::ReturnType::Default = sig.output {
        cx.error(
            sig.ident.span(),
            "a list function must return `kye::Result<()>`",
        );
    }
    let mut ctx_seen = false;
    let mut keys: Option<(Type, usize)> = None;
    for (i, input) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(pt) = input else {
            cx.error(input.span(), "a list function cannot take `self`");
            continue;
        };
        if let Some(t) = keys_type(&pt.ty) {
            if keys.is_some() {
                cx.error(pt.ty.span(), "a list function takes one `kye::Keys<T>`");
            }
            keys = Some((t, i));
        } else if is_context_ref(&pt.ty) {
            ctx_seen = true;
        } else {
            cx.error(
                pt.ty.span(),
                "a list function takes `&kye::Context` and `kye::Keys<T>` (T: the index's key type, e.g. `u32` for `Pokemon.id`)",
            );
        }
    }
    if sig.inputs.len() != 2 || !ctx_seen || keys.is_none() {
        cx.error(
            sig.inputs.span(),
            "a list function takes two parameters: `ctx: &kye::Context, keys: kye::Keys<T>`",
        );
    }
    let ((target, krate, source), (key_ty, keys_at)) = (target?, keys?);
    if target.edges.len() != 1 {
        cx.error(
            target.model.span(),
            "a list function lists keys of one edge (`Model.edge`); composite indexes are not supported yet",
        );
        return None;
    }
    Some(Lister {
        func,
        krate: krate.unwrap_or_else(|| syn::parse_quote!(::kye)),
        model: target.model,
        edges: target.edges,
        key_ty,
        keys_first: keys_at == 0,
        source,
    })
}

/// `T` when `ty` is `Keys<T>` (any path ending in `Keys`).
fn keys_type(ty: &Type) -> Option<Type> {
    let Type::Path(tp) = ty else { return None };
    let last = tp.path.segments.last()?;
    if last.ident != "Keys" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>().as_slice() {
        [GenericArgument::Type(t)] => Some(t.clone()),
        _ => None,
    }
}

/// Whether `ty` is `&Context` (any path ending in `Context`, not `&mut`).
fn is_context_ref(ty: &Type) -> bool {
    let Type::Reference(r) = ty else { return false };
    if r.mutability.is_some() {
        return false;
    }
    matches!(&*r.elem, Type::Path(tp) if tp.path.segments.last().is_some_and(|s| s.ident == "Context"))
}

fn registration(l: &Lister<'_>) -> TokenStream {
    let krate = &l.krate;
    let p = quote!(#krate::__private);
    let fn_name = &l.func.sig.ident;
    let fn_name_str = fn_name.to_string();
    let model = &l.model;
    let key_ty = &l.key_ty;
    let edge_strs: Vec<String> = l.edges.iter().map(Ident::to_string).collect();
    let doc = doc_of(l.func);
    let line = quote_spanned!(fn_name.span()=> ::core::line!());
    let model_alias = quote_spanned! {model.span()=> type __KyeModel = #model; };
    let index_ref = respan(index_lookup(&p, model, &l.edges), l.edges[0].span());
    // The key type must be one a fetcher of this index could take.
    let fits = quote_spanned! {key_ty.span()=>
        fn __kye_key_fits(__kye_key: &#p::Key) -> ::core::result::Result<#key_ty, #p::KeyError> {
            #p::key_at::<__KyeKinds, 0, #key_ty>(__kye_key)
        }
    };
    let member = source_member(
        &p,
        l.source.as_ref(),
        "Lister",
        quote!(<__KyeModel as #p::Model>::NAME),
        &edge_strs,
        &fn_name_str,
    );
    let call = if l.keys_first {
        quote!(#fn_name(__kye_keys, &__kye_ctx))
    } else {
        quote!(#fn_name(&__kye_ctx, __kye_keys))
    };
    quote! {
        #[doc(hidden)]
        #[allow(
            non_upper_case_globals,
            non_snake_case,
            unused_qualifications,
            dead_code,
            clippy::all,
            clippy::pedantic,
            clippy::nursery
        )]
        const _: () = {
            #model_alias
            #index_ref
            #fits

            fn __kye_call(__kye_ctx: #p::Context, __kye_sender: #p::KeySender) -> #p::ListFuture {
                ::std::boxed::Box::pin(async move {
                    let __kye_keys = #p::Keys::<#key_ty>::new(__kye_sender);
                    #call.await
                })
            }

            #p::inventory::submit! {
                #p::ListerRegistration {
                    model: <__KyeModel as #p::Model>::NAME,
                    identifier: &[#(#edge_strs),*],
                    function: #fn_name_str,
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: #line,
                    doc: #doc,
                    call: __kye_call,
                }
            }
            #member
        };
    }
}
