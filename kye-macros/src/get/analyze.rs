//! Step 2 of `#[kye::get]`: analyze. From the parsed attribute and function to a [`Fetcher`]:
//! the shape of the function (no generics, no `self`, no `const fn`, a return type), which
//! parameter is the context and which are keys, the model and index edges (written, or
//! inferred from the return type and the parameter names), and one key parameter per edge.
//!
//! Every check records its mistake in the [`Ctxt`] and the analysis goes on, so all mistakes
//! of one attribute are reported together. Type questions (is the model a model, is the
//! identifier an index, can the parameter hold the key) are left to rustc: [`super::expand`]
//! emits code spanned at the user's tokens for them.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, ReturnType, Type};

use super::parse::Args;
use crate::ctxt::Ctxt;

/// Everything [`super::expand`] needs to register one fetcher.
pub struct Fetcher<'a> {
    pub func: &'a ItemFn,
    /// The facade crate's path (`::kye` or the `crate = path` override).
    pub krate: syn::Path,
    pub model: syn::Path,
    /// The index edges, in the order of the identifier (`Date(year, month, day)`).
    pub edges: Vec<Ident>,
    /// The function's parameters in order, keys grouped as the function takes them.
    pub params: Vec<Param>,
    /// The return type, `Result<...>`.
    pub output: Box<Type>,
    pub has_ctx: bool,
    /// `batch = N`: the key parameter is a `Vec` of keys (its element type is in `params`)
    /// and one call takes up to N keys.
    pub batch: Option<usize>,
    /// `source = path`: the declared source it belongs to.
    pub source: Option<syn::Path>,
}

/// One key parameter of the function.
pub enum KeyParam {
    /// A parameter holding one key value.
    Scalar { ty: Box<Type> },
    /// A tuple parameter holding several key values.
    Tuple { elems: Vec<Type> },
}

pub struct CtxParam {
    pub by_ref: bool,
    /// The parameter's type, where a wrong context type is reported.
    pub span: Span,
}

pub enum Param {
    Key(KeyParam),
    Ctx(CtxParam),
}

/// A key parameter as written: pattern, type and the span of the whole parameter.
struct KeyPat {
    pat: Box<Pat>,
    ty: Box<Type>,
    span: Span,
}

/// Analyzes the function; `None` when any mistake was recorded in `cx`. `args` is `None`
/// when the attribute did not parse (its error is already recorded): the function's own
/// shape is still checked, the identifier is not.
pub fn analyze<'a>(cx: &Ctxt, args: Option<Args>, func: &'a ItemFn) -> Option<Fetcher<'a>> {
    check_shape(cx, func);
    let (mut params, key_pats, has_ctx) = classify(cx, func);
    let output = match &func.sig.output {
        ReturnType::Type(_, ty) => Some(ty.clone()),
        ReturnType::Default => None, // recorded by check_shape
    };
    let args = args?;
    let krate = args
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::kye));
    let batch = batch_size(cx, args.batch.as_ref());
    let mut key_pats = key_pats;
    check_many_keys(
        cx,
        func,
        &args,
        output.as_deref(),
        &mut key_pats,
        &mut params,
    );
    if args.batch.is_some() && args.target.is_none() {
        return None; // recorded: a batch fetcher names its model and index
    }

    // The model and its identifier: written, or inferred from the return type and parameter names.
    let (model, edges) = match args.target {
        Some(t) => (t.model, t.edges),
        None => infer_target(cx, func, output.as_deref()?, &key_pats)?,
    };
    match_keys(cx, func, &model, &edges, &key_pats, &mut params);
    if cx.has_errors() {
        return None;
    }
    Some(Fetcher {
        func,
        krate,
        model,
        edges,
        params,
        output: output?,
        has_ctx,
        batch,
        source: args.source,
    })
}

/// `batch = N` as a number of keys: at least 1.
fn batch_size(cx: &Ctxt, lit: Option<&syn::LitInt>) -> Option<usize> {
    let lit = lit?;
    match lit.base10_parse::<usize>() {
        Ok(0) => {
            cx.error(
                lit.span(),
                "`batch = 0`: a batch fetcher takes at least one key per call; write the most keys the source answers at once, e.g. `batch = 50`",
            );
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            cx.error(
                lit.span(),
                "`batch` is the most keys one call takes, a positive integer such as `batch = 50`",
            );
            None
        }
    }
}

/// The element type of `Vec<T>` (any path ending in `Vec` with one type argument).
fn vec_elem(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    match (types.next(), types.next()) {
        (Some(t), None) => Some(t),
        _ => None,
    }
}

/// The `Ok` type of a `Result<T, E>`-like return type, when it can be seen.
fn ok_type(output: &Type) -> Option<&Type> {
    let Type::Path(p) = output else { return None };
    let PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

/// A batch fetcher (`batch = N`) takes a `Vec` of keys and returns a `Vec` of records; a
/// fetcher without `batch` takes no `Vec`. With `batch`, the key parameters' types become
/// their element types, so [`match_keys`] matches them to the index edges as for one key.
fn check_many_keys(
    cx: &Ctxt,
    func: &ItemFn,
    args: &Args,
    output: Option<&Type>,
    key_pats: &mut [KeyPat],
    params: &mut [Param],
) {
    let Some(lit) = &args.batch else {
        let (ident, model) = match &args.target {
            Some(t) => (
                identifier_text(&t.model, &t.edges),
                t.model.to_token_stream().to_string().replace(' ', ""),
            ),
            None => ("Cat.id".to_string(), "Cat".to_string()),
        };
        for k in key_pats.iter() {
            if vec_elem(&k.ty).is_some() {
                cx.error(
                    k.ty.span(),
                    format!(
                        "`{}` takes many keys: a fetcher of many keys says how many one call takes, e.g. `#[kye::get({ident}, batch = 50)]`, and returns `kye::Result<Vec<{model}>>`",
                        k.ty.to_token_stream().to_string().replace(' ', "")
                    ),
                );
            }
        }
        return;
    };
    let n = lit.base10_digits();
    if args.target.is_none() {
        cx.error(
            func.sig.ident.span(),
            format!("a batch fetcher names its model and index: e.g. `#[kye::get(Cat.id, batch = {n})]`"),
        );
    }
    let mut key_types = params.iter_mut().filter_map(|p| match p {
        Param::Key(KeyParam::Scalar { ty }) => Some(ty),
        _ => None,
    });
    for k in key_pats.iter_mut() {
        let ty = key_types.next();
        match vec_elem(&k.ty).cloned() {
            Some(elem) => {
                *k.ty = elem.clone();
                if let Some(ty) = ty {
                    **ty = elem;
                }
            }
            None => cx.error(
                k.ty.span(),
                format!(
                    "with `batch = {n}` the key parameter takes many keys: `Vec<{}>`, not `{}`",
                    k.ty.to_token_stream().to_string().replace(' ', ""),
                    k.ty.to_token_stream().to_string().replace(' ', "")
                ),
            ),
        }
    }
    if key_pats.is_empty() {
        cx.error(
            func.sig.paren_token.span.join(),
            format!("a batch fetcher takes its keys as one `Vec` parameter, e.g. `fn {}(ids: Vec<i64>, ctx: &kye::Context)`", func.sig.ident),
        );
    }
    if let Some(ok) = output.and_then(ok_type) {
        if vec_elem(ok).is_none() {
            cx.error(
                ok.span(),
                format!(
                    "a batch fetcher returns the records of many keys: `Vec<...>` of the model or of `serde_json::Value`, not `{}` (a key the answer lacks is missing)",
                    ok.to_token_stream().to_string().replace(' ', "")
                ),
            );
        }
    }
}

/// `Pokemon.id` or `Date(year, month, day)`, as the user would write it.
pub fn identifier_text(model: &syn::Path, edges: &[Ident]) -> String {
    let model_text = model.to_token_stream().to_string().replace(' ', "");
    let list: Vec<String> = edges.iter().map(Ident::to_string).collect();
    if list.len() == 1 {
        format!("{model_text}.{}", list[0])
    } else {
        format!("{model_text}({})", list.join(", "))
    }
}

/// What kye cannot call: `const`, `unsafe`, `extern`, generic or variadic functions, `self`,
/// `impl Trait` parameters, and functions without a return type.
fn check_shape(cx: &Ctxt, func: &ItemFn) {
    let sig = &func.sig;
    if let Some(c) = &sig.constness {
        cx.error(
            c.span(),
            "`#[kye::get]` cannot be used on a `const fn`: a fetcher does I/O",
        );
    }
    if let syn::Safety::Unsafe(u) = &sig.safety {
        cx.error(
            u.span(),
            "`#[kye::get]` cannot be used on an `unsafe fn`: kye calls fetchers for you",
        );
    }
    if let Some(abi) = &sig.abi {
        cx.error(abi.span(), "`#[kye::get]` cannot be used on an `extern` fn");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error(
            sig.generics.span(),
            "a fetcher cannot be generic: kye calls it with concrete key types; use a concrete type such as `i64` or `String`",
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error(v.span(), "a fetcher cannot be variadic");
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => cx.error(
                r.span(),
                "a fetcher cannot take `self`: write a free function (kye calls it with the key and an optional `ctx: &kye::Context`)",
            ),
            FnArg::Typed(t) => {
                if let Type::ImplTrait(_) = &*t.ty {
                    cx.error(
                        t.ty.span(),
                        "a fetcher cannot be generic (`impl Trait` parameter): use a concrete type such as `i64` or `String`",
                    );
                }
            }
        }
    }
    if let ReturnType::Default = sig.output {
        cx.error(
            sig.ident.span(),
            format!(
                "a fetcher must return `Result<Model, E>`, `Result<Option<Model>, E>` or `Result<serde_json::Value, E>`: e.g. `fn {}(..) -> kye::Result<Pokemon>`",
                sig.ident
            ),
        );
    }
}

/// Splits the parameters into the context (at most one) and key parameters.
fn classify(cx: &Ctxt, func: &ItemFn) -> (Vec<Param>, Vec<KeyPat>, bool) {
    let mut params = Vec::new();
    let mut key_pats = Vec::new();
    let mut saw_ctx = false;
    for arg in &func.sig.inputs {
        let FnArg::Typed(t) = arg else { continue };
        // The context: a `Context` type (any path), or a parameter named `ctx`/`context`
        // (e.g. behind a type alias); rustc checks that the type really is `kye::Context`.
        let named_ctx = matches!(&*t.pat, Pat::Ident(i) if ["ctx", "_ctx", "context", "_context"]
            .iter()
            .any(|n| i.ident == n));
        let ctx = ctx_param(cx, &t.ty).or_else(|| {
            named_ctx.then(|| CtxParam {
                by_ref: matches!(&*t.ty, Type::Reference(_)),
                span: t.ty.span(),
            })
        });
        if let Some(ctx) = ctx {
            if saw_ctx {
                cx.error(
                    t.span(),
                    "a fetcher takes at most one `kye::Context` parameter",
                );
            }
            saw_ctx = true;
            params.push(Param::Ctx(ctx));
            continue;
        }
        key_pats.push(KeyPat {
            pat: t.pat.clone(),
            ty: t.ty.clone(),
            span: t.span(),
        });
        params.push(Param::Key(KeyParam::Scalar { ty: t.ty.clone() }));
    }
    (params, key_pats, saw_ctx)
}

/// Is this the `kye::Context` parameter? Decided by the type's last path segment
/// (`Context`, `&Context`, `&kye::Context`); rustc checks the real type. A `&mut` context is
/// recorded as a mistake and still counts as the context.
fn ctx_param(cx: &Ctxt, ty: &Type) -> Option<CtxParam> {
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
        cx.error(
            ty.span(),
            "the context is shared: take it as `ctx: &kye::Context` (or by value), not `&mut`",
        );
    }
    Some(CtxParam {
        by_ref,
        span: ty.span(),
    })
}

/// The model from the return type and the index edges from the key parameters' names.
fn infer_target(
    cx: &Ctxt,
    func: &ItemFn,
    output: &Type,
    key_pats: &[KeyPat],
) -> Option<(syn::Path, Vec<Ident>)> {
    let sig = &func.sig;
    let model = match infer_model(output) {
        Ok(m) => m,
        Err(message) => {
            cx.error(output.span(), message);
            return None;
        }
    };
    let model_text = model.to_token_stream().to_string().replace(' ', "");
    if key_pats.is_empty() {
        cx.error(
            sig.paren_token.span.join(),
            format!(
                "a fetcher needs a key parameter, e.g. `fn {}(id: i64)`, named after the index edge it takes",
                sig.ident
            ),
        );
        return None;
    }
    let mut edges = Vec::new();
    let mut ok = true;
    for k in key_pats {
        let names = pattern_names(&k.pat);
        let ambiguous = match (&names, &*k.ty) {
            (None, _) => true,
            (Some(n), Type::Tuple(_)) => n.len() == 1,
            _ => false,
        };
        if ambiguous {
            cx.error(
                k.span,
                format!(
                    "cannot infer which index of `{model_text}` this parameter is; name it after the index edge (`id: i64`), destructure a tuple (`(year, month, day): (i64, i64, i64)`), or write the explicit form `#[kye::get({model_text}.edge)]`"
                ),
            );
            ok = false;
        }
        edges.extend(names.unwrap_or_default());
    }
    ok.then_some((model, edges))
}

/// Matches key parameters to index edges: one parameter per edge, or one tuple of all of
/// them (then the single key parameter becomes a [`KeyParam::Tuple`]).
fn match_keys(
    cx: &Ctxt,
    func: &ItemFn,
    model: &syn::Path,
    edges: &[Ident],
    key_pats: &[KeyPat],
    params: &mut [Param],
) {
    let ident_text = identifier_text(model, edges);
    let n_edges = edges.len();
    let n_keys = key_pats.len();
    if n_keys > n_edges {
        for k in &key_pats[n_edges..] {
            cx.error(
                k.span,
                format!(
                    "unexpected parameter: `{ident_text}` is keyed by {n_edges} value(s), so the fetcher takes {n_edges} key parameter(s) and optionally `ctx: &kye::Context`"
                ),
            );
        }
        return;
    }
    if n_keys == n_edges {
        return;
    }
    let tuple_ok =
        n_keys == 1 && matches!(&*key_pats[0].ty, Type::Tuple(t) if t.elems.len() == n_edges);
    if !tuple_ok {
        let missing: Vec<String> = edges[n_keys..].iter().map(|e| format!("`{e}`")).collect();
        let span = key_pats
            .first()
            .map(|k| k.span)
            .unwrap_or_else(|| func.sig.paren_token.span.join());
        cx.error(
            span,
            format!(
                "missing key parameter(s) for {}: `{ident_text}` is keyed by {n_edges} values; take one parameter per edge or one tuple of {n_edges}",
                missing.join(", ")
            ),
        );
        return;
    }
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
