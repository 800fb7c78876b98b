//! `#[kye::get]`: registers a fetch function.
//!
//! The macro checks the shape of the function itself (no generics, no `self`, no `const fn`,
//! the right number of key parameters) and leaves every type question to rustc by emitting
//! spanned code: the model path is named once (unknown model → rustc's "cannot find type"
//! at the user's token), the index is named as a hidden associated constant of the model
//! (`Pokemon::__kye_index_id`: not an index → "no associated item" at the identifier), and each
//! key parameter type is converted through `FromKeyValue<Kind>` at the parameter's type.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Token, Type};

/// `Model.edge`, `Model(a, b)`, optionally followed by `crate = path`; or just `crate = path`.
struct Args {
    target: Option<Target>,
    krate: Option<syn::Path>,
}

struct Target {
    model: syn::Path,
    edges: Vec<Ident>,
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args {
            target: None,
            krate: None,
        };
        while !input.is_empty() {
            if input.peek(Token![crate]) && input.peek2(Token![=]) {
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
                    "unexpected argument; `#[kye::get]` takes `Model.edge` or `Model(edge, ...)` and an optional `crate = path`",
                ));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// One key parameter of the function.
enum KeyParam {
    /// A parameter holding one key value.
    Scalar { ty: Box<Type> },
    /// A tuple parameter holding several key values.
    Tuple { elems: Vec<Type> },
}

struct CtxParam {
    by_ref: bool,
    /// The parameter's type, where a wrong context type is reported.
    span: Span,
}

enum Param {
    Key(KeyParam),
    Ctx(CtxParam),
}

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let err = syn::Error::new(
                Span::call_site(),
                "`#[kye::get]` goes on a function: `async fn get_pokemon(id: i64) -> kye::Result<Pokemon>`",
            );
            return with_error(item, err);
        }
    };
    match expand_fn(attr, &func) {
        Ok(registration) => quote! { #func #registration },
        Err(err) => with_error(func.into_token_stream(), err),
    }
}

/// `ts` with every token at `span`, so that rustc reports errors in it at the user's token.
fn respan(ts: TokenStream, span: Span) -> TokenStream {
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

/// The user's item unchanged, plus the error: no cascade of follow-on errors.
fn with_error(item: TokenStream, err: syn::Error) -> TokenStream {
    let err = err.to_compile_error();
    quote! { #item #err }
}

/// Is this the `kye::Context` parameter? Decided by the type's last path segment
/// (`Context`, `&Context`, `&kye::Context`); rustc checks the real type.
fn ctx_param(ty: &Type) -> Option<syn::Result<CtxParam>> {
    let (inner, by_ref, mutable) = match ty {
        Type::Reference(r) => (&*r.elem, true, r.mutability.is_some()),
        other => (other, false, false),
    };
    let Type::Path(p) = inner else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Context" {
        return None;
    }
    if mutable {
        return Some(Err(syn::Error::new(
            ty.span(),
            "the context is shared: take it as `ctx: &kye::Context` (or by value), not `&mut`",
        )));
    }
    Some(Ok(CtxParam {
        by_ref,
        span: ty.span(),
    }))
}

fn check_shape(func: &ItemFn) -> syn::Result<()> {
    let sig = &func.sig;
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new(
            c.span(),
            "`#[kye::get]` cannot be used on a `const fn`: a fetcher does I/O",
        ));
    }
    if let syn::Safety::Unsafe(u) = &sig.safety {
        return Err(syn::Error::new(
            u.span(),
            "`#[kye::get]` cannot be used on an `unsafe fn`: kye calls fetchers for you",
        ));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new(
            abi.span(),
            "`#[kye::get]` cannot be used on an `extern` fn",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a fetcher cannot be generic: kye calls it with concrete key types; use a concrete type such as `i64` or `String`",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(v.span(), "a fetcher cannot be variadic"));
    }
    for arg in &sig.inputs {
        if let FnArg::Receiver(r) = arg {
            return Err(syn::Error::new(
                r.span(),
                "a fetcher cannot take `self`: write a free function (kye calls it with the key and an optional `ctx: &kye::Context`)",
            ));
        }
        if let FnArg::Typed(t) = arg {
            if let Type::ImplTrait(_) = &*t.ty {
                return Err(syn::Error::new(
                    t.ty.span(),
                    "a fetcher cannot be generic (`impl Trait` parameter): use a concrete type such as `i64` or `String`",
                ));
            }
        }
    }
    if let ReturnType::Default = sig.output {
        return Err(syn::Error::new(
            sig.ident.span(),
            format!(
                "a fetcher must return `Result<Model, E>`, `Result<Option<Model>, E>` or `Result<serde_json::Value, E>`: e.g. `fn {}(..) -> kye::Result<Pokemon>`",
                sig.ident
            ),
        ));
    }
    Ok(())
}

/// The model named by a return type `Result<M, _>` / `Result<Option<M>, _>`.
fn infer_model(output: &Type) -> Result<syn::Path, String> {
    let generic = |ty: &Type| -> Option<(String, Type)> {
        let Type::Path(p) = ty else { return None };
        let last = p.path.segments.last()?;
        let PathArguments::AngleBracketed(args) = &last.arguments else {
            return None;
        };
        let first = args.args.iter().find_map(|a| match a {
            GenericArgument::Type(t) => Some(t.clone()),
            _ => None,
        })?;
        Some((last.ident.to_string(), first))
    };
    let shape = "cannot infer the model from the return type; write it explicitly: `#[kye::get(Model.edge)]`";
    let Some((_, ok)) = generic(output) else {
        return Err(shape.to_string());
    };
    let inner = match generic(&ok) {
        Some((name, t)) if name == "Option" => t,
        _ => ok,
    };
    let Type::Path(p) = &inner else {
        return Err(shape.to_string());
    };
    let last = p.path.segments.last().map(|s| s.ident.to_string());
    if last.as_deref() == Some("Value") {
        return Err(
            "cannot infer the model of a fetcher returning `serde_json::Value`; write it explicitly: `#[kye::get(Model.edge)]`"
                .to_string(),
        );
    }
    if p.qself.is_some() || p.path.segments.iter().any(|s| !s.arguments.is_none()) {
        return Err(shape.to_string());
    }
    Ok(p.path.clone())
}

/// Names of a parameter pattern: `id` → [id]; `(year, month, day)` → [year, month, day].
fn pattern_names(pat: &Pat) -> Option<Vec<Ident>> {
    match pat {
        Pat::Ident(i) if i.subpat.is_none() => {
            let name = i.ident.to_string();
            let trimmed = name.trim_start_matches('_');
            if trimmed.is_empty() {
                None
            } else {
                Some(vec![Ident::new(trimmed, i.ident.span())])
            }
        }
        Pat::Tuple(t) => t
            .elems
            .iter()
            .map(|p| {
                pattern_names(p).and_then(|v| {
                    if v.len() == 1 {
                        v.into_iter().next()
                    } else {
                        None
                    }
                })
            })
            .collect(),
        Pat::Type(t) => pattern_names(&t.pat),
        _ => None,
    }
}

fn doc_of(func: &ItemFn) -> String {
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

fn expand_fn(attr: TokenStream, func: &ItemFn) -> syn::Result<TokenStream> {
    let args: Args = syn::parse2(attr)?;
    check_shape(func)?;
    let sig = &func.sig;
    let fn_name = &sig.ident;
    let krate = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::kye));
    let p = quote!(#krate::__private);

    // Classify parameters.
    let mut params = Vec::new();
    let mut key_pats = Vec::new();
    let mut saw_ctx = false;
    for arg in &sig.inputs {
        let FnArg::Typed(t) = arg else { continue };
        // The context: a `Context` type (any path), or a parameter named `ctx`/`context`
        // (e.g. behind a type alias); rustc checks that the type really is `kye::Context`.
        let named_ctx = matches!(&*t.pat, Pat::Ident(i) if ["ctx", "_ctx", "context", "_context"]
            .iter()
            .any(|n| i.ident == n));
        let ctx = ctx_param(&t.ty).or_else(|| {
            named_ctx.then(|| {
                Ok(CtxParam {
                    by_ref: matches!(&*t.ty, Type::Reference(_)),
                    span: t.ty.span(),
                })
            })
        });
        if let Some(ctx) = ctx {
            let ctx = ctx?;
            if saw_ctx {
                return Err(syn::Error::new(
                    t.span(),
                    "a fetcher takes at most one `kye::Context` parameter",
                ));
            }
            saw_ctx = true;
            params.push(Param::Ctx(ctx));
            continue;
        }
        key_pats.push((t.pat.clone(), t.ty.clone(), t.span()));
        params.push(Param::Key(KeyParam::Scalar { ty: t.ty.clone() }));
    }

    let output = match &sig.output {
        ReturnType::Type(_, ty) => ty.clone(),
        ReturnType::Default => unreachable!("checked in check_shape"),
    };

    // The model and its identifier: explicit, or inferred from the return type and parameter names.
    let (model, edges): (syn::Path, Vec<Ident>) = match args.target {
        Some(t) => (t.model, t.edges),
        None => {
            let model = infer_model(&output).map_err(|m| syn::Error::new(output.span(), m))?;
            let model_text = model.to_token_stream().to_string().replace(' ', "");
            if key_pats.is_empty() {
                return Err(syn::Error::new(
                    sig.paren_token.span.join(),
                    format!(
                        "a fetcher needs a key parameter, e.g. `fn {fn_name}(id: i64)`, named after the index edge it takes"
                    ),
                ));
            }
            let mut edges = Vec::new();
            for (pat, ty, span) in &key_pats {
                let names = pattern_names(pat);
                let ambiguous = match (&names, &**ty) {
                    (None, _) => true,
                    (Some(n), Type::Tuple(_)) => n.len() == 1,
                    _ => false,
                };
                if ambiguous {
                    return Err(syn::Error::new(
                        *span,
                        format!(
                            "cannot infer which index of `{model_text}` this parameter is; name it after the index edge (`id: i64`), destructure a tuple (`(year, month, day): (i64, i64, i64)`), or write the explicit form `#[kye::get({model_text}.edge)]`"
                        ),
                    ));
                }
                edges.extend(names.unwrap_or_default());
            }
            (model, edges)
        }
    };
    let ident_text = {
        let model_text = model.to_token_stream().to_string().replace(' ', "");
        let list: Vec<String> = edges.iter().map(Ident::to_string).collect();
        if list.len() == 1 {
            format!("{model_text}.{}", list[0])
        } else {
            format!("{model_text}({})", list.join(", "))
        }
    };

    // Match key parameters to index edges: one parameter per edge, or one tuple of all of them.
    let n_edges = edges.len();
    let n_keys = key_pats.len();
    if n_keys > n_edges {
        let (_, _, span) = &key_pats[n_edges.max(if n_edges == 0 { 0 } else { n_edges })];
        return Err(syn::Error::new(
            *span,
            format!(
                "unexpected parameter: `{ident_text}` is keyed by {n_edges} value(s), so the fetcher takes {n_edges} key parameter(s) and optionally `ctx: &kye::Context`"
            ),
        ));
    }
    if n_keys < n_edges {
        let tuple_ok =
            n_keys == 1 && matches!(&*key_pats[0].1, Type::Tuple(t) if t.elems.len() == n_edges);
        if !tuple_ok {
            let missing: Vec<String> = edges[n_keys..].iter().map(|e| format!("`{e}`")).collect();
            let span = key_pats
                .first()
                .map(|k| k.2)
                .unwrap_or_else(|| sig.paren_token.span.join());
            return Err(syn::Error::new(
                span,
                format!(
                    "missing key parameter(s) for {}: `{ident_text}` is keyed by {n_edges} values; take one parameter per edge or one tuple of {n_edges}",
                    missing.join(", ")
                ),
            ));
        }
        // Rewrite the single key param as a tuple param.
        for p in params.iter_mut() {
            if let Param::Key(k) = p {
                if let KeyParam::Scalar { ty } = k {
                    if let Type::Tuple(t) = &**ty {
                        *k = KeyParam::Tuple {
                            elems: t.elems.iter().cloned().collect(),
                        };
                    }
                }
            }
        }
    }

    // Conversions: one `key_at` per index edge, spanned at the parameter's type.
    let mut position = 0usize;
    let mut arg_tys = Vec::new();
    let mut conversions = Vec::new();
    let mut bindings = Vec::new();
    let mut call_args = Vec::new();
    for (i, param) in params.iter().enumerate() {
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
                let conv = quote_spanned! {ty.span()=>
                    #p::key_at::<__KyeKinds, #n, #ty>(__kye_key)?
                };
                conversions.push(conv);
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

    let is_async = sig.asyncness.is_some();
    let fn_name_str = fn_name.to_string();
    let edge_strs: Vec<String> = edges.iter().map(Ident::to_string).collect();
    let doc = doc_of(func);
    let line = fn_name.span().unwrap().line() as u32;
    let model_alias = quote_spanned! {model.span()=> type __KyeModel = #model; };
    let not_an_index_head = format!("`{ident_text}` is not an index of `");
    let index_ref = respan(
        quote! {
            const __KYE_INDEX: usize = {
                const NOT_AN_INDEX: #p::ConstMessage = #p::ConstMessage::concat(&[
                    #not_an_index_head,
                    <__KyeModel as #p::Model>::NAME,
                    "`; its indexes are ",
                    <__KyeModel as #p::Model>::INDEX_LIST,
                ]);
                #p::index_position(
                    <__KyeModel as #p::Model>::INDEXES,
                    &[#(#edge_strs),*],
                    NOT_AN_INDEX.as_str(),
                )
            };
            type __KyeKinds = <__KyeModel as #p::IndexAt<__KYE_INDEX>>::Kinds;
        },
        edges[0].span(),
    );
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
    let ctx_use = if saw_ctx {
        quote!()
    } else {
        quote!(let _ = &__kye_ctx;)
    };

    Ok(quote! {
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
                }
            }
        };
    })
}
