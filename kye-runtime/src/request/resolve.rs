//! Requests, step 3: a parsed [`Request`] checked against the [`Registry`]: the model, the
//! identifier (an index of the model), every value against the index's edge types, a fetcher
//! for the identifier, and every key against the fetcher's parameter types, all before anything
//! is fetched. Typo suggestions are kye-lang's [`did_you_mean`], as in schemas.

use std::ops::Range;

use kye_lang::diagnostic::did_you_mean;
use kye_lang::{Primitive, Type};

use super::{KeySet, KeySpec, Request, RequestError, RequestErrorKind, ResolvedRequest};
use crate::model::{Key, KeyValue};
use crate::registry::{identifier_text, Registry};

/// Resolution is the request language's: the registry knows models and fetchers, and these
/// methods put a request to it.
impl Registry {
    /// Resolves a parsed request to its fetcher and keys, checking every value first.
    pub fn resolve(&self, request: &Request) -> Result<ResolvedRequest, RequestError> {
        resolve(self, request)
    }

    /// Parses and resolves a request such as `Pokemon.id in 1..=151`.
    pub fn resolve_str(&self, request: &str) -> Result<ResolvedRequest, RequestError> {
        self.resolve(&Request::parse(request)?)
    }
}

fn list_indexes(model: &kye_lang::Model) -> String {
    model
        .indexes
        .iter()
        .map(|ix| identifier_text(&model.name, &ix.edges))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The error for a request of a value object (a model without an index): nothing identifies
/// its records, which live inside the records of the models that nest it.
fn value_object_request(registry: &Registry, def: &kye_lang::Model) -> RequestError {
    let parents: Vec<&str> = registry
        .models()
        .filter(|m| {
            m.definition()
                .edges
                .iter()
                .any(|e| matches!(&e.ty, Type::Model(t) if *t == def.name))
        })
        .map(|m| m.name())
        .collect();
    let err = RequestError::new(
        RequestErrorKind::NotAnIndex,
        format!(
            "`{}` has no index: it is a value object, stored inside the records that nest it, and cannot be requested on its own",
            def.name
        ),
    );
    if parents.is_empty() {
        err.help(format!(
            "request the model that holds it, or give `{}` an index if some edges identify its records",
            def.name
        ))
    } else {
        err.help(format!(
            "request the model that holds it ({})",
            parents.join(", ")
        ))
    }
}

fn resolve(registry: &Registry, req: &Request) -> Result<ResolvedRequest, RequestError> {
    let src = req.source.as_ref();
    let model_span = src.map(|s| s.model.clone());
    let ident_span = src.and_then(|s| s.identifier.clone());

    // 1. The model.
    let Some(model) = registry.model(&req.model) else {
        let mut err = RequestError::new(
            RequestErrorKind::UnknownModel,
            format!("unknown model `{}`", req.model),
        )
        .at(src, model_span);
        let names: Vec<&str> = registry.models().map(|m| m.name()).collect();
        err = match did_you_mean(&req.model, names.iter().copied()) {
            Some(s) => err.help(format!("did you mean `{s}`?")),
            None if names.is_empty() => err.help(
                "no models are registered in this binary: declare them with `kye::models!`; if they live in another crate, name that crate once (`use my_sources as _;`) so the linker keeps it",
            ),
            None => err.help(format!("known models: {}", names.join(", "))),
        };
        return Err(err);
    };
    let def = model.definition();
    if def.is_value_object() {
        return Err(value_object_request(registry, def).at(src, model_span));
    }

    // A bare model: the keys its list function finds, fetched by the fetcher of their index.
    if req.keys == KeySpec::All {
        let Some(lister) = registry.lister(&def.name) else {
            let example = def
                .primary_index()
                .map(|ix| identifier_text(&def.name, &ix.edges))
                .unwrap_or_else(|| def.name.clone());
            return Err(RequestError::new(
                RequestErrorKind::NoLister,
                format!(
                    "`{}` has no list function, so kye cannot find its keys by itself",
                    def.name
                ),
            )
            .at(src, model_span)
            .help(format!(
                "name the keys (`{example} = ...` or `{example} in [...]`), or write a `#[kye::list({example})]` function"
            )));
        };
        let identifier: Vec<String> = lister.identifier.iter().map(|e| e.to_string()).collect();
        let Some(fetcher) = registry.fetcher(&def.name, &identifier) else {
            return Err(RequestError::new(
                RequestErrorKind::NoFetcher,
                format!(
                    "no fetcher is keyed by `{}`, the keys `{}` lists",
                    lister.identifier_text(),
                    lister.function
                ),
            )
            .at(src, model_span));
        };
        return Ok(ResolvedRequest {
            model: model.clone(),
            identifier,
            fetcher,
            keys: KeySet::Listed(lister),
        });
    }

    // 2. The identifier (default: the primary index).
    let identifier: Vec<String> = match &req.identifier {
        None => def
            .primary_index()
            .map(|ix| ix.edges.clone())
            .unwrap_or_default(),
        Some(edges) => {
            for edge in edges {
                if def.edge(edge).is_none() {
                    let mut err = RequestError::new(
                        RequestErrorKind::UnknownEdge,
                        format!("model `{}` has no edge `{edge}`", def.name),
                    )
                    .at(src, ident_span.clone());
                    let index_edges = def
                        .indexes
                        .iter()
                        .flat_map(|ix| ix.edges.iter().map(String::as_str));
                    let all_edges = def.edges.iter().map(|e| e.name.as_str());
                    err = match did_you_mean(edge, index_edges)
                        .or_else(|| did_you_mean(edge, all_edges))
                    {
                        Some(s) => err.help(format!("did you mean `{s}`?")),
                        None => err.help(format!("its indexes are {}", list_indexes(def))),
                    };
                    return Err(err);
                }
            }
            let names: Vec<&str> = edges.iter().map(String::as_str).collect();
            if def.index_named(&names).is_none() {
                return Err(RequestError::new(
                    RequestErrorKind::NotAnIndex,
                    format!(
                        "`{}` is not an index of `{}`",
                        identifier_text(&def.name, edges),
                        def.name
                    ),
                )
                .at(src, ident_span)
                .help(format!("its indexes are {}", list_indexes(def))));
            }
            edges.clone()
        }
    };
    let ident_text = identifier_text(&def.name, &identifier);

    // 3. Every value against the index's edge types.
    let mut kinds = Vec::new();
    for edge_name in &identifier {
        let Some(edge) = def.edge(edge_name) else {
            return Err(RequestError::new(
                RequestErrorKind::UnknownEdge,
                format!("model `{}` has no edge `{edge_name}`", def.name),
            ));
        };
        match &edge.ty {
            Type::Model(target) => {
                return Err(RequestError::new(
                    RequestErrorKind::InvalidValue,
                    format!(
                        "`{ident_text}` includes `{edge_name}`, a reference to model `{target}`; requests by reference are not supported"
                    ),
                )
                .at(src, ident_span.or(model_span)))
            }
            ty => kinds.push((edge_name.as_str(), ty.primitive().unwrap_or(Primitive::String))),
        }
    }
    let value_spans =
        |i: usize| -> Option<&Vec<Range<usize>>> { src.and_then(|s| s.values.get(i)) };
    let check_key = |key: &Key, i: usize| -> Result<Key, RequestError> {
        let spans = value_spans(i);
        let whole = spans.and_then(|s| Some(s.first()?.start..s.last()?.end));
        if key.len() != kinds.len() {
            let expected = if kinds.len() == 1 {
                "one value".to_string()
            } else {
                format!(
                    "a tuple of {} values ({})",
                    kinds.len(),
                    identifier.join(", ")
                )
            };
            return Err(RequestError::new(
                RequestErrorKind::InvalidValue,
                format!("`{ident_text}` takes {expected}, found {key}"),
            )
            .at(src, whole));
        }
        let mut out = Vec::with_capacity(kinds.len());
        for (j, (v, (edge, prim))) in key.values().iter().zip(&kinds).enumerate() {
            let span = spans.and_then(|s| s.get(j).cloned());
            let bad = |expected: &str| {
                RequestError::new(
                    RequestErrorKind::InvalidValue,
                    format!(
                        "`{}.{edge}` is a {prim} index and takes {expected}; {v} is {} {}",
                        def.name,
                        article(v.kind()),
                        v.kind()
                    ),
                )
                .at(src, span.clone())
            };
            let converted = match (prim, v) {
                (Primitive::Number, KeyValue::Int(_)) => v.clone(),
                (Primitive::Number, KeyValue::Float(x))
                    if x.fract() == 0.0 && *x >= i64::MIN as f64 && *x < i64::MAX as f64 =>
                {
                    KeyValue::Int(*x as i64)
                }
                (Primitive::Number, KeyValue::Float(_)) => {
                    return Err(bad("integers").help("Number indexes hold integers"))
                }
                (Primitive::Number, _) => return Err(bad("integers")),
                (Primitive::String, KeyValue::String(_)) => v.clone(),
                (Primitive::String, KeyValue::Int(_) | KeyValue::Float(_)) => {
                    return Err(bad("strings").help(format!("quote it: \"{v}\"")))
                }
                (Primitive::String, _) => return Err(bad("strings")),
                (Primitive::Boolean, KeyValue::Bool(_)) => v.clone(),
                (Primitive::Boolean, _) => return Err(bad("`true` or `false`")),
            };
            out.push(converted);
        }
        Ok(Key::new(out))
    };
    // Position in the request of each kept key (duplicates are dropped), for error carets.
    let mut positions: Vec<usize> = vec![0];
    let keys = match &req.keys {
        // Resolved above, with the list function; never reached.
        KeySpec::All => {
            return Err(RequestError::new(
                RequestErrorKind::NoLister,
                format!("`{}` names no keys", def.name),
            ))
        }
        KeySpec::One(k) => KeySet::Keys(vec![check_key(k, 0)?]),
        KeySpec::List(list) => {
            positions.clear();
            let mut seen = std::collections::HashSet::new();
            let mut keys = Vec::with_capacity(list.len());
            for (i, k) in list.iter().enumerate() {
                let k = check_key(k, i)?;
                if seen.insert(k.to_string()) {
                    keys.push(k);
                    positions.push(i);
                }
            }
            KeySet::Keys(keys)
        }
        KeySpec::Range {
            start,
            end,
            inclusive,
        } => {
            let whole = src.and_then(|s| {
                Some(s.values.first()?.first()?.start..s.values.get(1)?.first()?.end)
            });
            if kinds.len() != 1 || kinds[0].1 != Primitive::Number {
                return Err(RequestError::new(
                    RequestErrorKind::InvalidValue,
                    format!("a range needs a single Number index; `{ident_text}` is not one"),
                )
                .at(src, whole)
                .help("list the keys instead: `in [...]`"));
            }
            let end = if *inclusive {
                Some(*end)
            } else {
                end.checked_sub(1)
            };
            match end {
                Some(end) if end >= *start => KeySet::Range { start: *start, end },
                _ => {
                    return Err(RequestError::new(
                        RequestErrorKind::EmptyRange,
                        format!(
                            "range {start}..{} is empty: nothing to fetch",
                            req_end(&req.keys)
                        ),
                    )
                    .at(src, whole))
                }
            }
        }
    };

    // 4. A fetcher for the identifier.
    let Some(fetcher) = registry.fetcher(&def.name, &identifier) else {
        let others: Vec<String> = registry
            .fetchers_for(&def.name)
            .map(|f| {
                format!(
                    "{} (`{}` at {})",
                    f.identifier_text(),
                    f.function,
                    f.location()
                )
            })
            .collect();
        let err = RequestError::new(
            RequestErrorKind::NoFetcher,
            format!("no fetcher is registered for `{ident_text}`"),
        )
        .at(src, ident_span.or(model_span));
        return Err(if others.is_empty() {
            err.help(format!(
                "model `{}` has no fetcher at all; if its fetchers live in a crate this binary never names, the linker dropped that crate: add `use my_sources as _;` (with that crate's name) to the binary",
                def.name
            ))
        } else {
            err.help(format!("fetchers exist for: {}", others.join(", ")))
        });
    };

    // 5. The fetcher's parameter types.
    let fit = |key: &Key, span: Option<Range<usize>>| -> Result<(), RequestError> {
        fetcher.check_key(key).map_err(|e| {
            RequestError::new(
                RequestErrorKind::InvalidValue,
                format!(
                    "key {key} cannot be given to `{}`: {}",
                    fetcher.function,
                    e.message()
                ),
            )
            .at(src, span)
        })
    };
    match &keys {
        KeySet::Keys(list) => {
            for (k, &i) in list.iter().zip(&positions) {
                fit(
                    k,
                    value_spans(i).and_then(|s| Some(s.first()?.start..s.last()?.end)),
                )?;
            }
        }
        KeySet::Listed(_) => {}
        KeySet::Range { start, end } => {
            // Parameter conversions are monotonic range checks: both ends fitting means all fit.
            fit(
                &Key::single(*start),
                value_spans(0).and_then(|s| s.first().cloned()),
            )?;
            fit(
                &Key::single(*end),
                value_spans(1).and_then(|s| s.first().cloned()),
            )?;
        }
    }

    Ok(ResolvedRequest {
        model: model.clone(),
        identifier,
        fetcher,
        keys,
    })
}

fn req_end(keys: &KeySpec) -> String {
    match keys {
        KeySpec::Range { end, inclusive, .. } => {
            format!("{}{end}", if *inclusive { "=" } else { "" })
        }
        _ => String::new(),
    }
}

fn article(kind: &str) -> &'static str {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}
