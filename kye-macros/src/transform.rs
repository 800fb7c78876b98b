//! `#[kye::transform(Output.edge, from(Primary, Other, ...))]`: registers a transformer,
//! parse → analyze → expand as `#[kye::get]` does, errors collected and spanned.
//!
//! The function is `async fn name(input: P, ctx: &kye::TransformContext) -> kye::Result<Output>`
//! where `P` is the primary input's generated type or `serde_json::Value` (the two parameters
//! in either order); it may also return `kye::Result<Option<Output>>` (no output for this
//! input) or `kye::Result<serde_json::Value>`. rustc answers the type questions at the user's
//! tokens: an unknown model at the model, an output identifier that is not an index of the
//! output model at the edge, an input parameter of the wrong type at its type.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Token, Type};

use crate::ctxt::Ctxt;
use crate::get::expand::{doc_of, index_lookup, respan, source_member};

/// `Output.edge, from(A, B), crate = path`.
struct Args {
    output: syn::Path,
    edges: Vec<Ident>,
    inputs: Vec<syn::Path>,
    krate: Option<syn::Path>,
    /// `source = path`.
    source: Option<syn::Path>,
}

const SHAPE: &str = "expected `#[kye::transform(Output.edge, from(Input, ...))]`, e.g. `#[kye::transform(PokemonCard.id, from(Pokemon, PokemonType))]`";

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let output = input
            .call(syn::Path::parse_mod_style)
            .map_err(|e| syn::Error::new(e.span(), SHAPE))?;
        let edges = if input.peek(Token![.]) {
            input.parse::<Token![.]>()?;
            vec![input.parse::<Ident>().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "expected an edge name after `.`, e.g. `PokemonCard.id`",
                )
            })?]
        } else if input.peek(syn::token::Paren) {
            let content;
            syn::parenthesized!(content in input);
            let list = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?;
            if list.is_empty() {
                return Err(syn::Error::new(
                    output.span(),
                    "expected the output's index edges inside the parentheses",
                ));
            }
            list.into_iter().collect()
        } else {
            return Err(syn::Error::new(
                output.span(),
                format!(
                    "expected `.edge` after the output model: e.g. `{}.id`",
                    output.to_token_stream()
                ),
            ));
        };
        let mut inputs = None;
        let mut krate = None;
        let mut source = None;
        while !input.is_empty() {
            input.parse::<Token![,]>()?;
            if input.is_empty() {
                break;
            }
            if input.peek(Token![crate]) && input.peek2(Token![=]) {
                input.parse::<Token![crate]>()?;
                input.parse::<Token![=]>()?;
                if krate.is_some() {
                    return Err(input.error("`crate` given twice"));
                }
                krate = Some(input.call(syn::Path::parse_mod_style)?);
                continue;
            }
            let word: Ident = input
                .parse()
                .map_err(|e| syn::Error::new(e.span(), SHAPE))?;
            if word == "source" && input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                if source.is_some() {
                    return Err(syn::Error::new(word.span(), "`source` given twice"));
                }
                source = Some(input.call(syn::Path::parse_mod_style)?);
                continue;
            }
            if word != "from" {
                return Err(syn::Error::new(
                    word.span(),
                    format!("unexpected `{word}`; {SHAPE}"),
                ));
            }
            if inputs.is_some() {
                return Err(syn::Error::new(word.span(), "`from(...)` given twice"));
            }
            let content;
            syn::parenthesized!(content in input);
            let list = Punctuated::<syn::Path, Token![,]>::parse_terminated_with(
                &content,
                syn::Path::parse_mod_style,
            )?;
            inputs = Some((word, list.into_iter().collect::<Vec<_>>()));
        }
        let inputs = match inputs {
            Some((word, list)) if list.is_empty() => {
                return Err(syn::Error::new(
                    word.span(),
                    "`from(...)` names the models the transformer reads, the primary one first",
                ))
            }
            Some((_, list)) => list,
            None => {
                return Err(syn::Error::new(
                    output.span(),
                    format!(
                        "a transformer declares the models it reads: add `from(Input, ...)`, e.g. `#[kye::transform({}.{}, from(Pokemon))]`",
                        output.to_token_stream(),
                        edges[0]
                    ),
                ))
            }
        };
        Ok(Args {
            output,
            edges,
            inputs,
            krate,
            source,
        })
    }
}

/// What the function is, once checked.
struct Transformer<'a> {
    func: &'a ItemFn,
    args: Args,
    /// The input parameter's type.
    input_ty: Type,
    /// The return type.
    output_ty: Type,
    /// Whether the context parameter comes first.
    ctx_first: bool,
}

pub fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let args = match syn::parse2::<Args>(attr) {
        Ok(a) => Some(a),
        Err(e) => {
            cx.syn_error(e);
            None
        }
    };
    let Ok(func) = syn::parse2::<ItemFn>(item.clone()) else {
        cx.error(
            Span::call_site(),
            "`#[kye::transform]` goes on a function: `async fn card(p: Pokemon, ctx: &kye::TransformContext) -> kye::Result<PokemonCard>`",
        );
        return with_error(item, cx.check().err());
    };
    let analyzed = analyze(&cx, args, &func);
    match (cx.check(), analyzed) {
        (Ok(()), Some(t)) => {
            let registration = registration(&t);
            quote! { #func #registration }
        }
        (result, _) => with_error(func.into_token_stream(), result.err()),
    }
}

/// The user's item unchanged, plus the errors.
fn with_error(item: TokenStream, err: Option<syn::Error>) -> TokenStream {
    let err = err
        .unwrap_or_else(|| {
            syn::Error::new(
                Span::call_site(),
                "kye-macros: the transformer was rejected without a message (bug)",
            )
        })
        .to_compile_error();
    quote! { #item #err }
}

fn analyze<'a>(cx: &Ctxt, args: Option<Args>, func: &'a ItemFn) -> Option<Transformer<'a>> {
    let sig = &func.sig;
    if let Some(a) = &args {
        let text = |p: &syn::Path| p.to_token_stream().to_string();
        let mut seen: Vec<String> = Vec::new();
        for p in &a.inputs {
            let t = text(p);
            if t == text(&a.output) {
                cx.error(
                    p.span(),
                    format!("a transformer cannot read its own output `{t}`"),
                );
            } else if seen.contains(&t) {
                cx.error(p.span(), format!("`{t}` is named twice in `from(...)`"));
            }
            seen.push(t);
        }
    }
    if sig.asyncness.is_none() {
        cx.error(
            sig.fn_token.span(),
            "a transformer is `async fn`: `async fn card(p: Pokemon, ctx: &kye::TransformContext) -> kye::Result<PokemonCard>`",
        );
    }
    if !sig.generics.params.is_empty() {
        cx.error(sig.generics.span(), "a transformer cannot be generic");
    }
    let output_ty = match &sig.output {
        syn::ReturnType::Type(_, ty) => Some((**ty).clone()),
        syn::ReturnType::Default => {
            cx.error(
                sig.ident.span(),
                "a transformer returns its output: `kye::Result<Output>` (or `kye::Result<Option<Output>>`)",
            );
            None
        }
    };
    let mut ctx_at = None;
    let mut input: Option<(Type, usize)> = None;
    for (i, arg) in sig.inputs.iter().enumerate() {
        let FnArg::Typed(pt) = arg else {
            cx.error(arg.span(), "a transformer cannot take `self`");
            continue;
        };
        if is_context_ref(&pt.ty) {
            ctx_at = Some(i);
        } else if input.is_none() {
            input = Some(((*pt.ty).clone(), i));
        } else {
            cx.error(
                pt.ty.span(),
                "a transformer takes its primary input and `&kye::TransformContext`; other inputs are read through the context (`ctx.get::<Model>(key)`)",
            );
        }
    }
    if sig.inputs.len() != 2 || ctx_at.is_none() || input.is_none() {
        cx.error(
            sig.inputs.span(),
            "a transformer takes two parameters: its primary input (the first model of `from(...)`, or `serde_json::Value`) and `ctx: &kye::TransformContext`",
        );
    }
    let (args, (input_ty, _), output_ty, ctx_at) = (args?, input?, output_ty?, ctx_at?);
    Some(Transformer {
        func,
        args,
        input_ty,
        output_ty,
        ctx_first: ctx_at == 0,
    })
}

/// Whether `ty` is `&TransformContext` (any path ending in `TransformContext`, not `&mut`).
fn is_context_ref(ty: &Type) -> bool {
    let Type::Reference(r) = ty else { return false };
    r.mutability.is_none()
        && matches!(&*r.elem, Type::Path(tp) if tp.path.segments.last().is_some_and(|s| s.ident == "TransformContext"))
}

fn registration(t: &Transformer<'_>) -> TokenStream {
    let a = &t.args;
    let krate = a.krate.clone().unwrap_or_else(|| syn::parse_quote!(::kye));
    let p = quote!(#krate::__private);
    let fn_name = &t.func.sig.ident;
    let fn_name_str = fn_name.to_string();
    let output = &a.output;
    let input_ty = &t.input_ty;
    let output_ty = &t.output_ty;
    let edge_strs: Vec<String> = a.edges.iter().map(Ident::to_string).collect();
    let doc = doc_of(t.func);
    let line = quote_spanned!(fn_name.span()=> ::core::line!());
    let model_alias = quote_spanned! {output.span()=> type __KyeModel = #output; };
    let index_ref = respan(index_lookup(&p, output, &a.edges), a.edges[0].span());
    let in_names: Vec<Ident> = (0..a.inputs.len())
        .map(|i| format_ident!("__KyeIn{}", i))
        .collect();
    let in_aliases = a.inputs.iter().zip(&in_names).map(|(m, n)| {
        quote_spanned! {m.span()=> type #n = #m; }
    });
    let in_model_names = in_names.iter().map(|n| quote!(<#n as #p::Model>::NAME));
    let primary = &in_names[0];
    let read_input = quote_spanned! {input_ty.span()=>
        <#input_ty as #p::TransformInput<#primary>>::from_stored(__kye_record)
    };
    let finish = quote_spanned! {output_ty.span()=>
        <#output_ty as #p::FetchResult<__KyeModel>>::into_fetch_result(__kye_out)
    };
    let member = source_member(
        &p,
        a.source.as_ref(),
        "Transformer",
        quote!(<__KyeModel as #p::Model>::NAME),
        &[],
        &fn_name_str,
    );
    let call = if t.ctx_first {
        quote!(#fn_name(&__kye_ctx, __kye_input))
    } else {
        quote!(#fn_name(__kye_input, &__kye_ctx))
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
            #(#in_aliases)*

            fn __kye_call(
                __kye_record: #p::serde_json::Value,
                __kye_ctx: #p::TransformContext,
            ) -> #p::FetchFuture {
                #p::catch_panics(#fn_name_str, async move {
                    let __kye_input: #input_ty = #read_input?;
                    let __kye_out = #call.await;
                    #finish
                })
            }

            #p::inventory::submit! {
                #p::TransformerRegistration {
                    output: <__KyeModel as #p::Model>::NAME,
                    identifier: &[#(#edge_strs),*],
                    inputs: &[#(#in_model_names),*],
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
