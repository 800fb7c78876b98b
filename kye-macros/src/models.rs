//! `kye::models!("pokemon.kye", ...)`: Rust types from kye schemas, in one pass: parse the
//! file list ([`Input`]), read and compile the schemas (on errors: the errors plus stand-in
//! types, [`stand_ins`], so nothing cascades), then expand ([`Generator`]: enums, structs,
//! and the `Model`/`IndexAt`/`HasIndex` impls).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kye_lang::schema::{BinaryOp, Expr, ExprKind, Literal};
use kye_lang::{Cardinality, Diagnostic, Primitive, Schema, Severity, SourceMap, Type};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::{LitStr, Token};

use crate::ctxt::Ctxt;
use crate::names;

struct Input {
    krate: Option<syn::Path>,
    paths: Vec<LitStr>,
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut krate = None;
        let mut paths = Vec::new();
        while !input.is_empty() {
            if input.peek(Token![crate]) {
                input.parse::<Token![crate]>()?;
                input.parse::<Token![=]>()?;
                krate = Some(input.call(syn::Path::parse_mod_style)?);
            } else {
                let lit: LitStr = input.parse().map_err(|e| {
                    syn::Error::new(
                        e.span(),
                        "expected the path of a `.kye` file as a string literal, e.g. `kye::models!(\"pokemon.kye\")`",
                    )
                })?;
                paths.push(lit);
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        if paths.is_empty() {
            return Err(syn::Error::new(
                Span::call_site(),
                "expected at least one `.kye` file, e.g. `kye::models!(\"pokemon.kye\")` (paths are relative to the crate's Cargo.toml)",
            ));
        }
        Ok(Input { krate, paths })
    }
}

pub fn expand(input: TokenStream) -> TokenStream {
    match expand_inner(input) {
        Ok(ts) => ts,
        Err(e) => e.to_compile_error(),
    }
}

/// A diagnostic as one compile-error message: `file:line:col: message [code]`, then kye-lang's
/// rendering of the source lines (carets, labels, other files, the hint) without repeating the
/// location.
fn render(sources: &SourceMap, d: &Diagnostic) -> String {
    let source = d.render_source(sources, false, false);
    format!(
        "{}: {} [{}]\n{}",
        sources.location(d.primary.span),
        d.message,
        d.code,
        source.trim_end()
    )
}

fn expand_inner(input: TokenStream) -> syn::Result<TokenStream> {
    let input: Input = syn::parse2(input)?;
    let krate = input
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::kye));
    let p = quote!(#krate::__private);
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").map_err(|_| {
        syn::Error::new(
            Span::call_site(),
            "CARGO_MANIFEST_DIR is not set: kye::models! must be built by cargo",
        )
    })?;

    let mut sources = SourceMap::new();
    let mut files: Vec<(LitStr, PathBuf)> = Vec::new();
    for lit in &input.paths {
        let rel = lit.value();
        let mut abs = PathBuf::from(&manifest_dir).join(&rel);
        if !abs.is_file() {
            // Next, like `include_str!`: relative to the file that invokes the macro.
            if let Some(dir) = proc_macro::Span::call_site()
                .local_file()
                .and_then(|f| f.parent().map(PathBuf::from))
            {
                let beside = dir.join(&rel);
                if beside.is_file() {
                    abs = beside;
                }
            }
        }
        let text = std::fs::read_to_string(&abs).map_err(|e| {
            syn::Error::new(
                lit.span(),
                format!(
                    "cannot read `{rel}`: {e}; paths are relative to the directory of the crate's Cargo.toml, then to the file invoking `kye::models!`"
                ),
            )
        })?;
        sources.add(rel, text);
        files.push((lit.clone(), abs));
    }

    let schema = match kye_lang::compile(sources) {
        Ok(schema) => schema,
        Err(err) => {
            let mut combined: Option<syn::Error> = None;
            for d in err
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
            {
                let span = files
                    .get(d.primary.span.file.0 as usize)
                    .map(|(lit, _)| lit.span())
                    .unwrap_or_else(Span::call_site);
                let e = syn::Error::new(span, render(&err.sources, d));
                match &mut combined {
                    Some(c) => c.combine(e),
                    None => combined = Some(e),
                }
            }
            let combined = combined.unwrap_or_else(|| {
                syn::Error::new(
                    input.paths[0].span(),
                    format!("the schema does not compile: {err}"),
                )
            });
            let errors = combined.to_compile_error();
            let stand_ins = stand_ins(model_names_in(&err.sources), &p);
            return Ok(quote! { #errors #stand_ins });
        }
    };

    let cx = Ctxt::new();
    let gen = Generator::new(&cx, &schema, &p, input.paths[0].span());
    // A model name that is not a Rust identifier cannot be expanded at all.
    let items = if cx.has_errors() {
        TokenStream::new()
    } else {
        gen.items(&cx)
    };
    if let Err(err) = cx.check() {
        let errors = err.to_compile_error();
        let stand_ins = stand_ins(schema.models().iter().map(|m| m.name.clone()), &p);
        return Ok(quote! { #errors #stand_ins });
    }

    let source_entries = files.iter().map(|(lit, abs)| {
        let name = lit.value();
        let abs = abs.to_string_lossy().to_string();
        quote!((#name, ::core::include_str!(#abs)))
    });
    let impls = gen.impls();

    Ok(quote! {
        #items

        #[doc(hidden)]
        #[allow(non_upper_case_globals, clippy::all, clippy::pedantic, clippy::nursery)]
        const _: () = {
            static __KYE_SOURCES: &[(&str, &str)] = &[#(#source_entries),*];
            static __KYE_SCHEMA: ::std::sync::OnceLock<#p::Schema> = ::std::sync::OnceLock::new();
            fn __kye_schema() -> &'static #p::Schema {
                __KYE_SCHEMA.get_or_init(|| #p::compile_embedded(__KYE_SOURCES))
            }
            #impls
        };
    })
}

/// After a schema error: one stand-in type per model the files still define, implementing
/// what generated code and fetchers need, so that every use of a model (a fetcher, a
/// `Vec<Pokemon>`) compiles and the schema error is the only one reported, as thiserror's
/// fallback does. The crate never compiles, so nothing here runs.
fn stand_ins(model_names: impl IntoIterator<Item = String>, p: &TokenStream) -> TokenStream {
    let serde_crate = format!("{}::serde", p.to_string().replace(' ', ""));
    let mut seen = BTreeSet::new();
    let mut out = TokenStream::new();
    for name in model_names {
        if !names::is_plain_ident(&name) || !seen.insert(name.clone()) {
            continue;
        }
        let ident = format_ident!("{}", name);
        let doc = format!(
            "Stand-in for the `{name}` model: its schema does not compile (see the error)."
        );
        let stand_in = quote!(#p::kind::StandInIndex);
        out.extend(quote! {
                #[doc = #doc]
                #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, #p::serde::Serialize, #p::serde::Deserialize)]
                #[serde(crate = #serde_crate)]
                pub struct #ident {}

                #[doc(hidden)]
                #[allow(clippy::all)]
                const _: () = {
                    impl #p::Model for #ident {
                        const NAME: &'static str = #name;
                        const INDEXES: &'static [&'static [&'static str]] = &[];
                        fn schema() -> &'static #p::Schema {
                            ::core::unreachable!("a stand-in model of a schema that does not compile")
                        }
                    }
                    impl<const ID: u128> #p::HasIndex<ID> for #ident {
                        const POSITION: usize = 0;
                    }
                    impl<const N: usize> #p::IndexAt<N> for #ident {
                        type Kinds = (#stand_in, #stand_in, #stand_in, #stand_in, #stand_in, #stand_in, #stand_in, #stand_in);
                    }
                };
            });
    }
    out
}

/// The names of the models the files define, read from their syntax alone (the schema as a
/// whole does not compile).
fn model_names_in(sources: &SourceMap) -> Vec<String> {
    let mut out = Vec::new();
    for (id, file) in sources.files() {
        for item in kye_lang::parser::parse(id, &file.text).file.items {
            if let kye_lang::ast::Item::Model(m) = item {
                out.push(m.name.name);
            }
        }
    }
    out
}

/// A Rust enum generated for a set of string literals (`"red" | "blue"`).
struct EnumDef {
    name: String,
    variants: Vec<(String, String)>,
}

struct Generator<'a> {
    schema: &'a Schema,
    p: &'a TokenStream,
    span: Span,
    /// (model, edge) → enum name.
    enums_for_edges: BTreeMap<(String, String), String>,
    enums: BTreeMap<String, EnumDef>,
    /// (model, edge) pairs whose nested model type must be boxed (recursion).
    boxed: BTreeSet<(String, String)>,
}

fn string_set(e: &Expr, out: &mut Vec<String>) -> bool {
    match &e.kind {
        ExprKind::Literal(Literal::String(s)) => {
            if !out.contains(s) {
                out.push(s.clone());
            }
            true
        }
        ExprKind::Binary(BinaryOp::Or, a, b) => string_set(a, out) && string_set(b, out),
        ExprKind::Binary(BinaryOp::Eq, a, b) => match (&a.kind, &b.kind) {
            (ExprKind::This, ExprKind::Literal(Literal::String(s)))
            | (ExprKind::Literal(Literal::String(s)), ExprKind::This) => {
                if !out.contains(s) {
                    out.push(s.clone());
                }
                true
            }
            _ => false,
        },
        _ => false,
    }
}

impl<'a> Generator<'a> {
    /// Names the enums and finds the boxed edges; a model name that is not a Rust type name
    /// is recorded in `cx`.
    fn new(cx: &Ctxt, schema: &'a Schema, p: &'a TokenStream, span: Span) -> Self {
        let mut g = Generator {
            schema,
            p,
            span,
            enums_for_edges: BTreeMap::new(),
            enums: BTreeMap::new(),
            boxed: BTreeSet::new(),
        };
        let model_names: BTreeSet<&str> = schema.models().iter().map(|m| m.name.as_str()).collect();
        for m in schema.models() {
            if !names::is_plain_ident(&m.name) {
                cx.error(
                    span,
                    format!("model name `{}` is not a valid Rust type name", m.name),
                );
                continue;
            }
            for e in &m.edges {
                if let Type::Constrained {
                    base: Primitive::String,
                    constraint,
                    alias,
                } = &e.ty
                {
                    let mut lits = Vec::new();
                    if string_set(constraint, &mut lits) && !lits.is_empty() {
                        let mut name = match alias {
                            Some(a) if names::is_plain_ident(a) => names::pascal_case(a),
                            _ => format!("{}{}", m.name, names::pascal_case(&e.name)),
                        };
                        if model_names.contains(name.as_str()) {
                            name.push_str("Value");
                        }
                        // A differently-defined enum of the same name gets a per-edge name.
                        if let Some(existing) = g.enums.get(&name) {
                            let same = existing.variants.iter().map(|v| &v.1).eq(lits.iter());
                            if !same {
                                name = format!("{}{}", m.name, names::pascal_case(&e.name));
                            }
                        }
                        let mut used = BTreeSet::new();
                        let variants = lits
                            .iter()
                            .map(|l| {
                                let mut v = names::pascal_case(l);
                                let base = v.clone();
                                let mut n = 2;
                                while !used.insert(v.clone()) {
                                    v = format!("{base}{n}");
                                    n += 1;
                                }
                                (v, l.clone())
                            })
                            .collect();
                        g.enums_for_edges
                            .insert((m.name.clone(), e.name.clone()), name.clone());
                        g.enums
                            .entry(name.clone())
                            .or_insert(EnumDef { name, variants });
                    }
                }
            }
        }
        // Box single nested models that lead back to the model holding them.
        for m in schema.models() {
            for e in &m.edges {
                if let Type::Model(target) = &e.ty {
                    if !e.cardinality.is_multiple() && g.reaches(target, &m.name) {
                        g.boxed.insert((m.name.clone(), e.name.clone()));
                    }
                }
            }
        }
        g
    }

    /// Can `from` reach `to` through single (non-`Vec`) nested model edges?
    fn reaches(&self, from: &str, to: &str) -> bool {
        let mut stack = vec![from.to_string()];
        let mut seen = BTreeSet::new();
        while let Some(cur) = stack.pop() {
            if cur == to {
                return true;
            }
            if !seen.insert(cur.clone()) {
                continue;
            }
            if let Some(m) = self.schema.model(&cur) {
                for e in &m.edges {
                    if let Type::Model(t) = &e.ty {
                        if !e.cardinality.is_multiple() {
                            stack.push(t.clone());
                        }
                    }
                }
            }
        }
        false
    }

    /// The enums and structs; edges that clash as Rust fields are recorded in `cx`.
    fn items(&self, cx: &Ctxt) -> TokenStream {
        let p = self.p;
        let serde_crate = format!("{}::serde", p.to_string().replace(' ', ""));
        let mut out = TokenStream::new();
        for en in self.enums.values() {
            let name = format_ident!("{}", en.name);
            let variants = en.variants.iter().map(|(v, lit)| {
                let v = format_ident!("{}", v);
                quote! { #[serde(rename = #lit)] #[doc = #lit] #v }
            });
            let arms = en.variants.iter().map(|(v, lit)| {
                let v = format_ident!("{}", v);
                quote! { #name::#v => #lit }
            });
            let doc = format!("One of the values allowed by the schema for `{}`.", en.name);
            out.extend(quote! {
                #[doc = #doc]
                #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::cmp::PartialEq, ::core::cmp::Eq, ::core::hash::Hash, #p::serde::Serialize, #p::serde::Deserialize)]
                #[serde(crate = #serde_crate)]
                pub enum #name { #(#variants),* }

                impl #name {
                    /// The value as written in the schema.
                    pub fn as_str(&self) -> &'static str {
                        match self { #(#arms),* }
                    }
                }

                impl ::core::fmt::Display for #name {
                    fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        f.write_str(self.as_str())
                    }
                }
            });
        }
        for m in self.schema.models() {
            let name = format_ident!("{}", m.name);
            let mut fields = Vec::new();
            let mut seen = BTreeMap::new();
            for e in &m.edges {
                let field = names::snake_case(&e.name);
                if let Some(other) = seen.insert(field.clone(), e.name.clone()) {
                    cx.error(
                        self.span,
                        format!(
                            "edges `{other}` and `{}` of model `{}` both become the Rust field `{field}`; rename one",
                            e.name, m.name
                        ),
                    );
                    continue;
                }
                let ident = format_ident!("{}", field);
                let is_index = m.is_index_edge(&e.name);
                let base: TokenStream = match &e.ty {
                    Type::Model(t) => {
                        let t = format_ident!("{}", t);
                        if self.boxed.contains(&(m.name.clone(), e.name.clone())) {
                            quote!(::std::boxed::Box<#t>)
                        } else {
                            quote!(#t)
                        }
                    }
                    ty => match self.enums_for_edges.get(&(m.name.clone(), e.name.clone())) {
                        Some(en) => {
                            let en = format_ident!("{}", en);
                            quote!(#en)
                        }
                        None => match ty.primitive() {
                            Some(Primitive::Number) if is_index => quote!(i64),
                            Some(Primitive::Number) => quote!(f64),
                            Some(Primitive::Boolean) => quote!(bool),
                            _ => quote!(::std::string::String),
                        },
                    },
                };
                let mut attrs = Vec::new();
                if field != e.name {
                    let n = &e.name;
                    attrs.push(quote!(#[serde(rename = #n)]));
                }
                let ty = match e.cardinality {
                    Cardinality::One => base.clone(),
                    Cardinality::Optional => {
                        attrs.push(quote!(#[serde(default)]));
                        quote!(::core::option::Option<#base>)
                    }
                    Cardinality::Many | Cardinality::AtLeastOne => {
                        attrs.push(quote!(#[serde(default)]));
                        quote!(::std::vec::Vec<#base>)
                    }
                };
                if is_index
                    && e.cardinality == Cardinality::One
                    && e.ty.primitive() == Some(Primitive::Number)
                    && !self
                        .enums_for_edges
                        .contains_key(&(m.name.clone(), e.name.clone()))
                {
                    let f = format!("{}::deserialize_index_int", p.to_string().replace(' ', ""));
                    attrs.push(quote!(#[serde(deserialize_with = #f)]));
                }
                let doc = match &e.doc {
                    Some(d) => format!(
                        "{d}\n\n`{}: {}{}`",
                        e.name,
                        type_text(&e.ty),
                        e.cardinality.marker()
                    ),
                    None => format!(
                        "`{}: {}{}`",
                        e.name,
                        type_text(&e.ty),
                        e.cardinality.marker()
                    ),
                };
                fields.push(quote! {
                    #[doc = #doc]
                    #(#attrs)*
                    pub #ident: #ty
                });
            }
            let location = self.schema.location(m.span);
            let doc = match &m.doc {
                Some(d) => format!("{d}\n\nGenerated by `kye::models!` from `{location}`."),
                None => format!(
                    "The `{}` model, generated by `kye::models!` from `{location}`.",
                    m.name
                ),
            };
            let doc = format!(
                "{doc}\n\nIndexes (the identifiers `#[kye::get]` and requests take): {}.",
                index_list(m)
            );
            out.extend(quote! {
                #[doc = #doc]
                #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, #p::serde::Serialize, #p::serde::Deserialize)]
                #[serde(crate = #serde_crate)]
                pub struct #name { #(#fields),* }
            });
        }
        out
    }

    fn impls(&self) -> TokenStream {
        let p = self.p;
        let mut out = TokenStream::new();
        for m in self.schema.models() {
            let name = format_ident!("{}", m.name);
            let model_name = &m.name;
            let mut consts = Vec::new();
            let mut builders = Vec::new();
            let mut index_lists = Vec::new();
            for ix in &m.indexes {
                let edge_strs: Vec<&str> = ix.edges.iter().map(String::as_str).collect();
                index_lists.push(quote!(&[#(#edge_strs),*]));
                let mut kinds = Vec::new();
                let mut params = Vec::new();
                let mut values = Vec::new();
                let mut buildable = true;
                for edge in &ix.edges {
                    let e = m.edge(edge);
                    let prim = e.and_then(|e| e.ty.primitive());
                    let arg = format_ident!("{}", names::snake_case(edge));
                    match prim {
                        Some(Primitive::Number) => {
                            kinds.push(quote!(#p::kind::NumberIndex));
                            params.push(quote!(#arg: i64));
                            values.push(quote!(#p::KeyValue::Int(#arg)));
                        }
                        Some(Primitive::String) => {
                            kinds.push(quote!(#p::kind::StringIndex));
                            params.push(
                                quote!(#arg: impl ::core::convert::Into<::std::string::String>),
                            );
                            values.push(quote!(#p::KeyValue::String(#arg.into())));
                        }
                        Some(Primitive::Boolean) => {
                            kinds.push(quote!(#p::kind::BooleanIndex));
                            params.push(quote!(#arg: bool));
                            values.push(quote!(#p::KeyValue::Bool(#arg)));
                        }
                        None => {
                            kinds.push(quote!(#p::kind::ReferenceIndex));
                            buildable = false;
                        }
                    }
                }
                let position = consts.len();
                let id = proc_macro2::Literal::u128_suffixed(names::index_id(&ix.edges));
                consts.push(quote! {
                    impl #p::IndexAt<#position> for #name {
                        type Kinds = (#(#kinds,)*);
                    }
                    #[diagnostic::do_not_recommend]
                    impl #p::HasIndex<#id> for #name {
                        const POSITION: usize = #position;
                    }
                });
                if buildable {
                    let snake: Vec<String> = ix
                        .edges
                        .iter()
                        .map(|e| names::snake_case(e).trim_end_matches('_').to_string())
                        .collect();
                    let by = format_ident!("by_{}", snake.join("_"));
                    let text = if ix.edges.len() == 1 {
                        format!("{}.{}", m.name, ix.edges[0])
                    } else {
                        format!("{}({})", m.name, ix.edges.join(", "))
                    };
                    let doc = format!("A request for the `{}` whose `{text}` is the given key (resolve it with the runtime).", m.name);
                    builders.push(quote! {
                        #[doc = #doc]
                        pub fn #by(#(#params),*) -> #p::Request {
                            #p::Request::one(#model_name, &[#(#edge_strs),*], #p::Key::new(::std::vec![#(#values),*]))
                        }
                    });
                }
            }
            let index_list = index_list(m);
            out.extend(quote! {
                #(#consts)*

                impl #name {
                    #(#builders)*
                }

                impl #p::Model for #name {
                    const NAME: &'static str = #model_name;
                    const INDEXES: &'static [&'static [&'static str]] = &[#(#index_lists),*];
                    const INDEX_LIST: &'static str = #index_list;
                    fn schema() -> &'static #p::Schema {
                        __kye_schema()
                    }
                }

                #p::inventory::submit! {
                    #p::ModelRegistration {
                        name: #model_name,
                        schema: __kye_schema,
                        file: ::core::file!(),
                        line: ::core::line!(),
                        module_path: ::core::module_path!(),
                    }
                }
            });
        }
        out
    }
}

/// The model's indexes for messages and docs: `` `Pokemon.id`, `Pokemon.name` ``.
fn index_list(m: &kye_lang::Model) -> String {
    let listed: Vec<String> = m
        .indexes
        .iter()
        .map(|ix| {
            if ix.edges.len() == 1 {
                format!("`{}.{}`", m.name, ix.edges[0])
            } else {
                format!("`{}({})`", m.name, ix.edges.join(", "))
            }
        })
        .collect();
    if listed.is_empty() {
        // Read after "its indexes are" in the error of a `#[kye::get]` on this model.
        return format!(
            "none: `{}` is a value object (a model without an index), stored inside the records that nest it; write the fetcher for the model that holds it",
            m.name
        );
    }
    listed.join(", ")
}

fn type_text(ty: &Type) -> String {
    match ty {
        Type::Primitive(p) => p.to_string(),
        Type::Model(m) => m.clone(),
        Type::Constrained { base, alias, .. } => alias.clone().unwrap_or_else(|| base.to_string()),
    }
}
