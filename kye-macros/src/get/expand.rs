//! Step 3 of `#[kye::get]`: expand. From an analyzed [`Fetcher`] to its registration: the
//! key conversions, the call (async or on a blocking thread) and the `FetcherRegistration`
//! submitted to the registry.
//!
//! Type questions are rustc's, at the user's tokens: the model path is named once (unknown
//! model → "cannot find type" at the model), the identifier is looked up through the
//! model's `HasIndex<ID>` impls (not an index → an `on_unimplemented` error at the edge that
//! names the identifier and the model), and each key parameter is converted through
//! `FromKeyValue<Kind>` at the parameter's type.

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ItemFn};

use super::analyze::{identifier_text, Fetcher, KeyParam, Param};
use crate::names;

/// The hidden `const _: () = { ... };` block that registers the fetcher.
pub fn registration(f: &Fetcher<'_>) -> TokenStream {
    let krate = &f.krate;
    let p = quote!(#krate::__private);
    let sig = &f.func.sig;
    let fn_name = &sig.ident;
    let output = &f.output;
    let model = &f.model;

    if let Some(size) = f.batch {
        return batch_registration(f, &p, size);
    }
    let (arg_tys, conversions, bindings, call_args) = arguments(f, &p);

    let is_async = sig.asyncness.is_some();
    let fn_name_str = fn_name.to_string();
    let edge_strs: Vec<String> = f.edges.iter().map(Ident::to_string).collect();
    let doc = doc_of(f.func);
    let line = quote_spanned!(fn_name.span()=> ::core::line!());
    let model_alias = quote_spanned! {model.span()=> type __KyeModel = #model; };
    let index_ref = respan(index_lookup(&p, model, &f.edges), f.edges[0].span());
    let finish = quote_spanned! {output.span()=>
        <#output as #p::FetchResult<__KyeModel>>::into_fetch_result(__kye_out)
    };
    let output_kind = quote_spanned! {output.span()=>
        <#output as #p::FetchResult<__KyeModel>>::OUTPUT
    };
    let body = if is_async {
        quote! {
            #p::catch_panics(#fn_name_str, async move {
                let __kye_out = #fn_name(#(#call_args),*).await;
                #finish
            })
        }
    } else {
        quote! {
            #p::run_blocking(#fn_name_str, move || {
                let __kye_out = #fn_name(#(#call_args),*);
                #finish
            })
        }
    };
    let member = source_member(
        &p,
        f.source.as_ref(),
        "Fetcher",
        quote!(<__KyeModel as #p::Model>::NAME),
        &edge_strs,
        &fn_name_str,
    );
    let ctx_use = if f.has_ctx {
        quote!()
    } else {
        quote!(let _ = &__kye_ctx;)
    };

    quote! {
        #[doc(hidden)]
        #[allow(
            non_upper_case_globals,
            non_snake_case,
            unused_qualifications,
            clippy::all,
            clippy::pedantic,
            clippy::nursery
        )]
        const _: () = {
            #model_alias
            #index_ref

            fn __kye_args(
                __kye_key: &#p::Key,
            ) -> ::core::result::Result<(#(#arg_tys,)*), #p::KeyError> {
                ::core::result::Result::Ok((#(#conversions,)*))
            }

            fn __kye_check(__kye_key: &#p::Key) -> ::core::result::Result<(), #p::KeyError> {
                __kye_args(__kye_key).map(|_| ())
            }

            fn __kye_call(__kye_key: &#p::Key, __kye_ctx: #p::Context) -> #p::FetchFuture {
                #ctx_use
                let (#(#bindings,)*) = match __kye_args(__kye_key) {
                    ::core::result::Result::Ok(__kye_a) => __kye_a,
                    ::core::result::Result::Err(__kye_e) => return #p::failed_call(__kye_e),
                };
                #body
            }

            #p::inventory::submit! {
                #p::FetcherRegistration {
                    model: <__KyeModel as #p::Model>::NAME,
                    identifier: &[#(#edge_strs),*],
                    function: #fn_name_str,
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: #line,
                    is_async: #is_async,
                    doc: #doc,
                    output: #output_kind,
                    call: __kye_call,
                    check: __kye_check,
                    batch: ::core::option::Option::None,
                }
            }
            #member
        };
    }
}

/// The registration of a batch fetcher (`batch = N`): one key's conversion (`__kye_one_key`, the
/// element of the `Vec` parameter), the call with a `Vec` of them, and `call` as a batch of one.
fn batch_registration(f: &Fetcher<'_>, p: &TokenStream, size: usize) -> TokenStream {
    let sig = &f.func.sig;
    let fn_name = &sig.ident;
    let output = &f.output;
    let model = &f.model;
    let (arg_tys, conversions, _, _) = arguments(f, p);
    let elem = &arg_tys[0];
    let conversion = &conversions[0];
    let call_args: Vec<TokenStream> = f
        .params
        .iter()
        .map(|param| match param {
            Param::Ctx(c) if c.by_ref => quote_spanned!(c.span=> &__kye_ctx),
            Param::Ctx(c) => quote_spanned!(c.span=> ::core::clone::Clone::clone(&__kye_ctx)),
            Param::Key(_) => quote!(__kye_keys),
        })
        .collect();
    let is_async = sig.asyncness.is_some();
    let fn_name_str = fn_name.to_string();
    let edge_strs: Vec<String> = f.edges.iter().map(Ident::to_string).collect();
    let member = source_member(
        p,
        f.source.as_ref(),
        "Fetcher",
        quote!(<__KyeModel as #p::Model>::NAME),
        &edge_strs,
        &fn_name_str,
    );
    let doc = doc_of(f.func);
    let line = quote_spanned!(fn_name.span()=> ::core::line!());
    let model_alias = quote_spanned! {model.span()=> type __KyeModel = #model; };
    let index_ref = respan(index_lookup(p, model, &f.edges), f.edges[0].span());
    let finish = quote_spanned! {output.span()=>
        <#output as #p::BatchResult<__KyeModel>>::into_batch_result(__kye_out)
    };
    let output_kind = quote_spanned! {output.span()=>
        <#output as #p::BatchResult<__KyeModel>>::OUTPUT
    };
    let body = if is_async {
        quote! {
            #p::catch_panics(#fn_name_str, async move {
                let __kye_out = #fn_name(#(#call_args),*).await;
                #finish
            })
        }
    } else {
        quote! {
            #p::run_blocking(#fn_name_str, move || {
                let __kye_out = #fn_name(#(#call_args),*);
                #finish
            })
        }
    };
    let ctx_use = if f.has_ctx {
        quote!()
    } else {
        quote!(let _ = &__kye_ctx;)
    };
    quote! {
        #[doc(hidden)]
        #[allow(
            non_upper_case_globals,
            non_snake_case,
            unused_qualifications,
            clippy::all,
            clippy::pedantic,
            clippy::nursery
        )]
        const _: () = {
            #model_alias
            #index_ref

            fn __kye_one_key(__kye_key: &#p::Key) -> ::core::result::Result<#elem, #p::KeyError> {
                ::core::result::Result::Ok(#conversion)
            }

            fn __kye_check(__kye_key: &#p::Key) -> ::core::result::Result<(), #p::KeyError> {
                __kye_one_key(__kye_key).map(|_| ())
            }

            fn __kye_batch(__kye_all: &[#p::Key], __kye_ctx: #p::Context) -> #p::BatchFuture {
                #ctx_use
                let __kye_keys: ::std::vec::Vec<#elem> = match __kye_all
                    .iter()
                    .map(__kye_one_key)
                    .collect::<::core::result::Result<_, _>>()
                {
                    ::core::result::Result::Ok(__kye_k) => __kye_k,
                    ::core::result::Result::Err(__kye_e) => return #p::failed_call(__kye_e),
                };
                #body
            }

            fn __kye_call(__kye_key: &#p::Key, __kye_ctx: #p::Context) -> #p::FetchFuture {
                #p::batch_of_one(
                    #fn_name_str,
                    __kye_batch(::core::slice::from_ref(__kye_key), __kye_ctx),
                )
            }

            #p::inventory::submit! {
                #p::FetcherRegistration {
                    model: <__KyeModel as #p::Model>::NAME,
                    identifier: &[#(#edge_strs),*],
                    function: #fn_name_str,
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: #line,
                    is_async: #is_async,
                    doc: #doc,
                    output: #output_kind,
                    call: __kye_call,
                    check: __kye_check,
                    batch: ::core::option::Option::Some(#p::BatchRegistration {
                        size: #size,
                        call: __kye_batch,
                    }),
                }
            }
            #member
        };
    }
}

/// The index's position among the model's indexes, `__KYE_INDEX`, and its edge kinds,
/// `__KyeKinds`. `kye::models!` implements `HasIndex<ID>` for each index (ID: a hash of its
/// edge names); the local trait turns a missing impl into an error about the identifier the
/// user wrote, with nothing of kye's internals in its notes.
pub(crate) fn index_lookup(p: &TokenStream, model: &syn::Path, edges: &[Ident]) -> TokenStream {
    let edge_strs: Vec<String> = edges.iter().map(Ident::to_string).collect();
    let id = Literal::u128_suffixed(names::index_id(&edge_strs));
    let ident_text = identifier_text(model, edges);
    let message = format!("`{ident_text}` is not an index of `{{Self}}`");
    let label = format!(
        "not an index of `{{Self}}`: no index of it is made of exactly {}",
        if edges.len() == 1 {
            format!("the edge `{}`", edge_strs[0])
        } else {
            format!("the edges ({}), in this order", edge_strs.join(", "))
        }
    );
    let note = "a fetcher takes one of the model's indexes: the edge lists in parentheses after the model's name in its `.kye` file, e.g. `Pokemon(id)(name)`; the documentation of the generated type lists them";
    quote! {
        const __KYE_INDEX: usize = {
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            trait KyeIndex {
                const POSITION: usize;
            }
            #[diagnostic::do_not_recommend]
            impl<M: #p::HasIndex<#id>> KyeIndex for M {
                const POSITION: usize = <M as #p::HasIndex<#id>>::POSITION;
            }
            <__KyeModel as KyeIndex>::POSITION
        };
        type __KyeKinds = <__KyeModel as #p::IndexAt<__KYE_INDEX>>::Kinds;
    }
}

/// Per parameter: the argument types, the conversions from the key (one `key_at` per index
/// edge, spanned at the parameter's type), the bindings and the call's arguments.
fn arguments(
    f: &Fetcher<'_>,
    p: &TokenStream,
) -> (
    Vec<TokenStream>,
    Vec<TokenStream>,
    Vec<Ident>,
    Vec<TokenStream>,
) {
    let mut position = 0usize;
    let mut arg_tys = Vec::new();
    let mut conversions = Vec::new();
    let mut bindings = Vec::new();
    let mut call_args = Vec::new();
    for (i, param) in f.params.iter().enumerate() {
        match param {
            Param::Ctx(c) => {
                call_args.push(if c.by_ref {
                    quote_spanned!(c.span=> &__kye_ctx)
                } else {
                    quote_spanned!(c.span=> ::core::clone::Clone::clone(&__kye_ctx))
                });
            }
            Param::Key(KeyParam::Scalar { ty }) => {
                let n = position;
                position += 1;
                conversions.push(quote_spanned! {ty.span()=>
                    #p::key_at::<__KyeKinds, #n, #ty>(__kye_key)?
                });
                arg_tys.push(quote!(#ty));
                let name = format_ident!("__kye_arg{}", i);
                bindings.push(name.clone());
                call_args.push(quote!(#name));
            }
            Param::Key(KeyParam::Tuple { elems }) => {
                let mut parts = Vec::new();
                for ty in elems {
                    let n = position;
                    position += 1;
                    parts.push(quote_spanned! {ty.span()=>
                        #p::key_at::<__KyeKinds, #n, #ty>(__kye_key)?
                    });
                }
                conversions.push(quote!((#(#parts,)*)));
                arg_tys.push(quote!((#(#elems,)*)));
                let name = format_ident!("__kye_arg{}", i);
                bindings.push(name.clone());
                call_args.push(quote!(#name));
            }
        }
    }
    (arg_tys, conversions, bindings, call_args)
}

/// `ts` with every token at `span`, so that rustc reports errors in it at the user's token.
pub(crate) fn respan(ts: TokenStream, span: Span) -> TokenStream {
    ts.into_iter()
        .map(|tt| match tt {
            TokenTree::Group(g) => {
                let mut ng = Group::new(g.delimiter(), respan(g.stream(), span));
                ng.set_span(span);
                TokenTree::Group(ng)
            }
            mut other => {
                other.set_span(span);
                other
            }
        })
        .collect()
}

/// The first paragraph of the function's doc comment, on one line.
/// The `SourceMember` registration of a function naming its source (`source = cats`): the
/// path is named at the user's tokens, so an undeclared source is rustc's error there.
pub(crate) fn source_member(
    p: &TokenStream,
    source: Option<&syn::Path>,
    kind: &str,
    model: TokenStream,
    edges: &[String],
    function: &str,
) -> TokenStream {
    let Some(path) = source else {
        return TokenStream::new();
    };
    let kind = Ident::new(kind, Span::call_site());
    let path = crate::source::member_path(path);
    let name = quote_spanned! {path.span()=> #p::SourceId::name(&#path) };
    quote! {
        #p::inventory::submit! {
            #p::SourceMember {
                source: #name,
                kind: #p::MemberKind::#kind,
                model: #model,
                identifier: &[#(#edges),*],
                function: #function,
            }
        }
    }
}

pub(crate) fn doc_of(func: &ItemFn) -> String {
    let mut lines = Vec::new();
    for attr in &func.attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                let v = s.value();
                lines.push(v.strip_prefix(' ').unwrap_or(&v).to_string());
            }
        }
    }
    let text = lines.join("\n");
    let para = text.trim().split("\n\n").next().unwrap_or("").to_string();
    para.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}
