//! `kye::source!`: declares a source (a package of data) next to its fetchers: its hosts,
//! configuration keys, secrets and how each is sent, and an optional probe. Parse → check →
//! expand as the other macros do, every mistake recorded in one [`Ctxt`] with its span.
//!
//! ```text
//! kye::source! {
//!     /// The cat API: cats and their owners.
//!     pub cats {
//!         hosts: ["api.cats.example"],
//!         config: {
//!             /// Where the API lives.
//!             base_url: url = "https://api.cats.example/v1",
//!             /// Cats per page.
//!             page_size: integer = 50,
//!             /// A region to restrict to.
//!             region: string?,
//!         },
//!         secrets: {
//!             /// The API token.
//!             CATAPI_TOKEN: bearer,
//!             /// A key for the partner endpoints.
//!             CAT_PARTNER_KEY: header("X-Partner-Key")?,
//!         },
//!         probe: "Cat.id = 1",                 // or: probe: get("{base_url}/health"),
//!     }
//! }
//! ```
//!
//! The expansion defines a hidden `const` of type `SourceId` named after the source
//! (`__kye_source_cats`: what `source = cats` in `#[kye::get]`, `#[kye::list]` and
//! `#[kye::transform]` names, so an undeclared source is rustc's error at the attribute) and submits a `SourceRegistration`
//! with the crate's name and version from Cargo.

use std::collections::BTreeMap;

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, LitStr, Token, Visibility};

use crate::ctxt::Ctxt;

/// kye.toml's own sections: a source's values live in the table named after it.
const RESERVED: &[&str] = &[
    "run",
    "http",
    "hosts",
    "fetchers",
    "store",
    "secrets",
    "serve",
    "server",
    "queue",
    "sources",
    "transform",
    "transformers",
    "log",
    "kye",
    "roles",
    "freshness",
    "auth",
];

const SHAPE: &str = "expected a source: `kye::source! { /// What it is.\n name { hosts: [\"api.example.com\"], config: { ... }, secrets: { ... }, probe: \"Model.id = 1\" } }`";

/// The macro's input as written.
struct Input {
    attrs: Vec<Attribute>,
    vis: Visibility,
    name: Ident,
    /// The sections in order: (section name, its content).
    sections: Vec<(Ident, Section)>,
}

enum Section {
    Hosts(Vec<LitStr>),
    Config(Vec<ConfigEntry>),
    Secrets(Vec<SecretEntry>),
    Probe(ProbeEntry),
    Crate(syn::Path),
}

struct ConfigEntry {
    attrs: Vec<Attribute>,
    name: Ident,
    kind: Ident,
    optional: Option<Token![?]>,
    default: Option<syn::Lit>,
}

struct SecretEntry {
    attrs: Vec<Attribute>,
    name: Ident,
    send: Ident,
    /// `header("X")`, `query("x")`, `basic(username = "u" | key)`.
    arg: Option<SendArg>,
    optional: Option<Token![?]>,
}

enum SendArg {
    Name(LitStr),
    BasicLiteral(LitStr),
    BasicConfig(Ident),
}

enum ProbeEntry {
    Key(LitStr),
    Get(LitStr),
}

impl Parse for Input {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let name: Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), SHAPE))?;
        let body;
        syn::braced!(body in input);
        let mut sections = Vec::new();
        while !body.is_empty() {
            let key: Ident = if body.peek(Token![crate]) {
                let t: Token![crate] = body.parse()?;
                Ident::new("crate", t.span)
            } else {
                body.parse()?
            };
            body.parse::<Token![:]>()?;
            let section = match key.to_string().as_str() {
                "hosts" => {
                    let content;
                    syn::bracketed!(content in body);
                    Section::Hosts(
                        Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?
                            .into_iter()
                            .collect(),
                    )
                }
                "config" => {
                    let content;
                    syn::braced!(content in body);
                    Section::Config(
                        Punctuated::<ConfigEntry, Token![,]>::parse_terminated(&content)?
                            .into_iter()
                            .collect(),
                    )
                }
                "secrets" => {
                    let content;
                    syn::braced!(content in body);
                    Section::Secrets(
                        Punctuated::<SecretEntry, Token![,]>::parse_terminated(&content)?
                            .into_iter()
                            .collect(),
                    )
                }
                "probe" => {
                    if body.peek(LitStr) {
                        Section::Probe(ProbeEntry::Key(body.parse()?))
                    } else {
                        let word: Ident = body.parse()?;
                        if word != "get" {
                            return Err(syn::Error::new(
                                word.span(),
                                "a probe is a request (`probe: \"Cat.id = 1\"`) or a GET (`probe: get(\"{base_url}/health\")`)",
                            ));
                        }
                        let content;
                        syn::parenthesized!(content in body);
                        Section::Probe(ProbeEntry::Get(content.parse()?))
                    }
                }
                "crate" => Section::Crate(body.call(syn::Path::parse_mod_style)?),
                _ => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown section `{key}`: a source has `hosts`, `config`, `secrets`, `probe` (and `crate` to name kye through a re-export)"
                        ),
                    ))
                }
            };
            sections.push((key, section));
            if !body.is_empty() {
                body.parse::<Token![,]>()?;
            }
        }
        if !input.is_empty() {
            return Err(input.error("one source per `kye::source!`"));
        }
        Ok(Input {
            attrs,
            vis,
            name,
            sections,
        })
    }
}

impl Parse for ConfigEntry {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let name: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let kind: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the key's type: string, url, integer, number or boolean",
            )
        })?;
        let optional: Option<Token![?]> = input.parse()?;
        let default = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            // A negative number: `-1`.
            if input.peek(Token![-]) {
                input.parse::<Token![-]>()?;
                let lit: syn::Lit = input.parse()?;
                Some(match lit {
                    syn::Lit::Int(i) => syn::Lit::Int(syn::LitInt::new(
                        &format!("-{}", i.base10_digits()),
                        i.span(),
                    )),
                    syn::Lit::Float(f) => syn::Lit::Float(syn::LitFloat::new(
                        &format!("-{}", f.base10_digits()),
                        f.span(),
                    )),
                    other => other,
                })
            } else {
                Some(input.parse()?)
            }
        } else {
            None
        };
        Ok(ConfigEntry {
            attrs,
            name,
            kind,
            optional,
            default,
        })
    }
}

impl Parse for SecretEntry {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let name: Ident = input.parse()?;
        input.parse::<Token![:]>()?;
        let send: Ident = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected how the secret is sent: bearer, header(\"X-Api-Key\"), query(\"appid\"), basic(username = \"user\") or fetcher",
            )
        })?;
        let arg = if input.peek(syn::token::Paren) {
            let content;
            syn::parenthesized!(content in input);
            if content.peek(Ident) && content.peek2(Token![=]) {
                let word: Ident = content.parse()?;
                if word != "username" {
                    return Err(syn::Error::new(
                        word.span(),
                        "expected `username = \"user\"` or `username = config_key`",
                    ));
                }
                content.parse::<Token![=]>()?;
                if content.peek(LitStr) {
                    Some(SendArg::BasicLiteral(content.parse()?))
                } else {
                    Some(SendArg::BasicConfig(content.parse()?))
                }
            } else {
                Some(SendArg::Name(content.parse()?))
            }
        } else {
            None
        };
        let optional: Option<Token![?]> = input.parse()?;
        Ok(SecretEntry {
            attrs,
            name,
            send,
            arg,
            optional,
        })
    }
}

/// The doc comment of an entry, joined into one line.
fn doc(attrs: &[Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if nv.path.is_ident("doc") {
                if let syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) = &nv.value
                {
                    lines.push(s.value().trim().to_string());
                }
            }
        }
    }
    lines.join(" ").trim().to_string()
}

pub fn expand(input: TokenStream) -> TokenStream {
    let parsed: Input = match syn::parse2(input) {
        Ok(i) => i,
        Err(e) => return e.to_compile_error(),
    };
    let cx = Ctxt::new();
    let checked = check(&cx, &parsed);
    match cx.check() {
        Err(e) => {
            // The source's name is still defined, so fetchers naming it do not cascade.
            let name = mangled(&parsed.name);
            let vis = &parsed.vis;
            let krate = &checked.krate;
            let err = e.to_compile_error();
            quote! {
                #[allow(non_upper_case_globals, dead_code)]
                #vis const #name: #krate::__private::SourceId = #krate::__private::SourceId::new("");
                #err
            }
        }
        Ok(()) => emit(&parsed, &checked),
    }
}

/// What the check found, ready to expand.
struct Checked {
    krate: syn::Path,
    description: String,
    hosts: Vec<String>,
    config: Vec<TokenStream>,
    secrets: Vec<TokenStream>,
    probe: TokenStream,
}

fn check(cx: &Ctxt, input: &Input) -> Checked {
    let name = input.name.to_string();
    let p_krate: syn::Path = input
        .sections
        .iter()
        .find_map(|(_, s)| match s {
            Section::Crate(p) => Some(p.clone()),
            _ => None,
        })
        .unwrap_or_else(|| syn::parse_quote!(::kye));
    let p = quote!(#p_krate::__private);
    if !is_lower_name(&name) {
        cx.error(
            input.name.span(),
            format!("a source's name is lowercase (`a-z`, digits, `_`): it names its table in kye.toml, e.g. `{}`", name.to_ascii_lowercase()),
        );
    } else if RESERVED.contains(&name.as_str()) {
        cx.error(
            input.name.span(),
            format!("`{name}` is one of kye.toml's own sections; name the source otherwise"),
        );
    }
    let description = doc(&input.attrs);
    if description.is_empty() {
        cx.error(
            input.name.span(),
            format!("source `{name}` needs a one-line description: a `///` comment above its name"),
        );
    }
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    for (key, _) in &input.sections {
        let k = key.to_string();
        if seen.insert(k.clone(), key.span()).is_some() {
            cx.error(key.span(), format!("section `{k}` is given twice"));
        }
    }

    let mut hosts = Vec::new();
    let mut config = Vec::new();
    let mut secrets = Vec::new();
    let mut probe = quote!(::core::option::Option::None);
    let config_entries: Vec<&ConfigEntry> = input
        .sections
        .iter()
        .filter_map(|(_, s)| match s {
            Section::Config(c) => Some(c.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut config_names: BTreeMap<String, Span> = BTreeMap::new();
    for c in &config_entries {
        let key = c.name.to_string();
        if let Some(first) = config_names.insert(key.clone(), c.name.span()) {
            let _ = first;
            cx.error(
                c.name.span(),
                format!("configuration key `{key}` is declared twice in source `{name}`"),
            );
        }
        if !is_lower_name(&key) {
            cx.error(
                c.name.span(),
                "a configuration key is lowercase (`a-z`, digits, `_`): `base_url`",
            );
        }
        let kind = match c.kind.to_string().as_str() {
            "string" => Some((quote!(String), "string")),
            "url" => Some((quote!(Url), "url")),
            "integer" => Some((quote!(Integer), "integer")),
            "number" => Some((quote!(Number), "number")),
            "boolean" => Some((quote!(Boolean), "boolean")),
            other => {
                cx.error(
                    c.kind.span(),
                    format!("unknown type `{other}`: a configuration key is a string, url, integer, number or boolean"),
                );
                None
            }
        };
        let description = doc(&c.attrs);
        if description.is_empty() {
            cx.error(
                c.name.span(),
                format!("configuration key `{key}` needs a description: a `///` comment above it"),
            );
        }
        if let (Some(q), Some(_)) = (&c.optional, &c.default) {
            cx.error(
                q.span,
                "a key with a default is never unset: drop the `?` or the default",
            );
        }
        let default = match (&c.default, &kind) {
            (None, _) => quote!(::core::option::Option::None),
            (Some(lit), Some((_, k))) => match default_literal(lit, k) {
                Ok(text) => quote!(::core::option::Option::Some(#text)),
                Err(message) => {
                    cx.error(lit.span(), message);
                    quote!(::core::option::Option::None)
                }
            },
            (Some(_), None) => quote!(::core::option::Option::None),
        };
        if let Some((variant, _)) = kind {
            let optional = c.optional.is_some();
            config.push(quote! {
                #p::ConfigKey {
                    name: #key,
                    kind: #p::ConfigKind::#variant,
                    default: #default,
                    optional: #optional,
                    description: #description,
                }
            });
        }
    }

    let mut secret_names: BTreeMap<String, Span> = BTreeMap::new();
    for (_, section) in &input.sections {
        match section {
            Section::Hosts(list) => {
                if list.is_empty() {
                    cx.error(
                        Span::call_site(),
                        "`hosts` names at least one host: `hosts: [\"api.example.com\"]`",
                    );
                }
                for h in list {
                    let v = h.value();
                    if v.is_empty()
                        || v.contains("://")
                        || v.contains('/')
                        || v.chars().any(char::is_whitespace)
                    {
                        cx.error(
                            h.span(),
                            "a host is a name or `name:port`, without scheme or path: `api.example.com`",
                        );
                    }
                    hosts.push(v.to_ascii_lowercase());
                }
            }
            Section::Secrets(list) => {
                for s in list {
                    let secret = s.name.to_string();
                    if secret_names.insert(secret.clone(), s.name.span()).is_some() {
                        cx.error(
                            s.name.span(),
                            format!("secret `{secret}` is declared twice in source `{name}`"),
                        );
                    }
                    let description = doc(&s.attrs);
                    if description.is_empty() {
                        cx.error(
                            s.name.span(),
                            format!(
                                "secret `{secret}` needs a description: a `///` comment above it"
                            ),
                        );
                    }
                    let send = match (s.send.to_string().as_str(), &s.arg) {
                        ("bearer", None) => Some(quote!(#p::SendAs::Bearer)),
                        ("fetcher", None) => Some(quote!(#p::SendAs::Fetcher)),
                        ("header", Some(SendArg::Name(h))) => {
                            let v = h.value();
                            if v.is_empty()
                                || !v.bytes().all(|b| {
                                    b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b)
                                })
                            {
                                cx.error(h.span(), format!("`{v}` is not a valid header name"));
                            }
                            Some(quote!(#p::SendAs::Header(#v)))
                        }
                        ("query", Some(SendArg::Name(q))) => {
                            let v = q.value();
                            if v.is_empty() {
                                cx.error(q.span(), "the query parameter needs a name");
                            }
                            Some(quote!(#p::SendAs::Query(#v)))
                        }
                        ("basic", Some(SendArg::BasicLiteral(u))) => {
                            let v = u.value();
                            Some(quote!(#p::SendAs::Basic { username: #p::BasicUser::Literal(#v) }))
                        }
                        ("basic", Some(SendArg::BasicConfig(k))) => {
                            let v = k.to_string();
                            if !config_names.contains_key(&v) {
                                cx.error(
                                    k.span(),
                                    format!("`{v}` is not a configuration key of source `{name}`: declare it under `config`"),
                                );
                            }
                            Some(quote!(#p::SendAs::Basic { username: #p::BasicUser::Config(#v) }))
                        }
                        ("bearer" | "fetcher", Some(_)) => {
                            cx.error(s.send.span(), format!("`{}` takes no arguments", s.send));
                            None
                        }
                        ("header" | "query", _) => {
                            cx.error(
                                s.send.span(),
                                format!(
                                    "`{}` needs the name it is sent under: `{}(\"...\")`",
                                    s.send, s.send
                                ),
                            );
                            None
                        }
                        ("basic", _) => {
                            cx.error(
                                s.send.span(),
                                "`basic` needs the user name: `basic(username = \"user\")` or `basic(username = config_key)`",
                            );
                            None
                        }
                        (other, _) => {
                            cx.error(
                                s.send.span(),
                                format!("unknown way to send a secret `{other}`: bearer, header(\"X-Api-Key\"), query(\"appid\"), basic(username = \"user\") or fetcher"),
                            );
                            None
                        }
                    };
                    if let Some(send) = send {
                        let optional = s.optional.is_some();
                        secrets.push(quote! {
                            #p::SecretKey {
                                name: #secret,
                                send: #send,
                                optional: #optional,
                                description: #description,
                            }
                        });
                    }
                }
            }
            Section::Probe(ProbeEntry::Key(r)) => {
                let v = r.value();
                if v.trim().is_empty() {
                    cx.error(
                        r.span(),
                        "the probe is a request for one key: `\"Cat.id = 1\"`",
                    );
                }
                probe = quote!(::core::option::Option::Some(#p::Probe::Key(#v)));
            }
            Section::Probe(ProbeEntry::Get(u)) => {
                let v = u.value();
                for placeholder in placeholders(&v) {
                    if !config_names.contains_key(&placeholder) {
                        cx.error(
                            u.span(),
                            format!(
                                "`{{{placeholder}}}` is not a configuration key of source `{name}`"
                            ),
                        );
                    }
                }
                if !(v.starts_with("http://") || v.starts_with("https://") || v.starts_with('{')) {
                    cx.error(
                        u.span(),
                        "a probe URL is absolute or starts with a configuration key: `{base_url}/health`",
                    );
                }
                probe = quote!(::core::option::Option::Some(#p::Probe::Get(#v)));
            }
            Section::Config(_) | Section::Crate(_) => {}
        }
    }
    if !input.sections.iter().any(|(k, _)| k == "hosts") {
        cx.error(
            input.name.span(),
            format!("source `{name}` names the hosts it talks to: `hosts: [\"api.example.com\"]` (its credentials go to these only)"),
        );
    }
    Checked {
        krate: p_krate,
        description,
        hosts,
        config,
        secrets,
        probe,
    }
}

fn emit(input: &Input, c: &Checked) -> TokenStream {
    let krate = &c.krate;
    let p = quote!(#krate::__private);
    let vis = &input.vis;
    let ident = &input.name;
    let name = ident.to_string();
    let constant = mangled(ident);
    let description = &c.description;
    let hosts = &c.hosts;
    let config = &c.config;
    let secrets = &c.secrets;
    let probe = &c.probe;
    let line = quote_spanned!(ident.span()=> ::core::line!());
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, dead_code)]
        #vis const #constant: #p::SourceId = #p::SourceId::new(#name);

        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all, clippy::pedantic)]
        const _: () = {
            #p::inventory::submit! {
                #p::SourceRegistration {
                    name: #name,
                    description: #description,
                    crate_name: ::core::env!("CARGO_PKG_NAME"),
                    version: ::core::env!("CARGO_PKG_VERSION"),
                    hosts: &[#(#hosts),*],
                    config: &[#(#config),*],
                    secrets: &[#(#secrets),*],
                    probe: #probe,
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: #line,
                }
            }
        };
    }
}

/// The name of the constant `kye::source!` defines for source `name`: `__kye_source_name`
/// (a lowercase constant of the source's own name would turn every `let name = ...` in the
/// module into a pattern against it). `source = name` names it (see [`member_path`]).
pub(crate) fn mangled(name: &Ident) -> Ident {
    Ident::new(&format!("__kye_source_{name}"), name.span())
}

/// The path `source = path` names: the last segment mangled as [`mangled`], spans kept.
pub(crate) fn member_path(path: &syn::Path) -> syn::Path {
    let mut out = path.clone();
    if let Some(last) = out.segments.last_mut() {
        last.ident = mangled(&last.ident);
    }
    out
}

/// Whether `s` is `[a-z][a-z0-9_]*`.
fn is_lower_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The `{key}` placeholders of a probe URL.
fn placeholders(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = url;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    out
}

/// The default as a TOML literal, or why it does not fit the key's type.
fn default_literal(lit: &syn::Lit, kind: &str) -> Result<String, String> {
    match (lit, kind) {
        (syn::Lit::Str(s), "string") => Ok(toml_string(&s.value())),
        (syn::Lit::Str(s), "url") => {
            let v = s.value();
            let rest = v
                .strip_prefix("https://")
                .or_else(|| v.strip_prefix("http://"));
            match rest {
                Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(toml_string(&v)),
                _ => Err(format!("`{v}` is not an absolute http(s) URL")),
            }
        }
        (syn::Lit::Int(i), "integer" | "number") if i.suffix().is_empty() => {
            Ok(i.base10_digits().to_string())
        }
        (syn::Lit::Float(f), "number") if f.suffix().is_empty() => {
            Ok(f.base10_digits().to_string())
        }
        (syn::Lit::Bool(b), "boolean") => Ok(b.value.to_string()),
        _ => Err(format!("the default is not a value of type {kind}")),
    }
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::errors_of;

    #[test]
    fn every_mistake_of_a_declaration_is_reported() {
        let out = expand(quote! {
            /// Cats.
            cats {
                hosts: ["https://api.cats.example/"],
                config: {
                    /// Base.
                    base_url: url = "nope",
                    /// Again.
                    base_url: string,
                    /// Size.
                    page_size: float,
                },
                secrets: {
                    /// Token.
                    TOKEN: bearer,
                    /// Twice.
                    TOKEN: header("X-Key"),
                    /// User from an undeclared key.
                    PASSWORD: basic(username = user),
                },
                probe: get("{base}/health"),
            }
        });
        let errors = errors_of(&out);
        for expected in [
            "without scheme or path",
            "not an absolute http(s) URL",
            "`base_url` is declared twice",
            "unknown type `float`",
            "secret `TOKEN` is declared twice",
            "`user` is not a configuration key",
            "`{base}` is not a configuration key",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(expected)),
                "{expected:?} not in {errors:#?}"
            );
        }
        // The name stays defined: fetchers naming the source do not cascade.
        assert!(out.to_string().contains("const __kye_source_cats"), "{out}");
    }

    #[test]
    fn a_valid_declaration_expands() {
        let out = expand(quote! {
            /// Cats.
            pub cats {
                hosts: ["api.cats.example", "127.0.0.1"],
                config: {
                    /// Base.
                    base_url: url = "https://api.cats.example/v1",
                    /// Size.
                    page_size: integer = 50,
                    /// Region.
                    region: string?,
                },
                secrets: {
                    /// Token.
                    CATAPI_TOKEN: bearer,
                    /// Key.
                    CAT_KEY: query("appid")?,
                },
                probe: "Cat.id = 1",
            }
        });
        assert!(errors_of(&out).is_empty(), "{out}");
        let text = out.to_string();
        assert!(text.contains("SourceRegistration"), "{text}");
        assert!(text.contains("CARGO_PKG_VERSION"), "{text}");
    }

    #[test]
    fn reserved_and_undescribed_names_are_refused() {
        let out = expand(quote! {
            run { hosts: ["a.example"] }
        });
        let errors = errors_of(&out);
        assert!(
            errors.iter().any(|e| e.contains("kye.toml's own sections")),
            "{errors:#?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("one-line description")),
            "{errors:#?}"
        );
    }
}
