//! A record read against its model's layout, the same way by every store before it writes or
//! looks anything up: the value of an edge, the values of its columns, the items of a
//! multi-valued edge, the nested records stored as records of their own, which index a
//! requested key names, and which edge a filter names.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::layout::{Col, EdgeLayout, ModelLayout};
use super::{Filter, IndexKey, StoreError};

/// The value an edge has in a record object (by name, else by title); `None` when absent or
/// null.
pub(crate) fn edge_value<'a>(obj: &'a Map<String, Value>, e: &EdgeLayout) -> Option<&'a Value> {
    obj.get(&e.name)
        .or_else(|| e.title.as_ref().and_then(|t| obj.get(t)))
        .filter(|v| !v.is_null())
}

/// The value of each column of an edge for one value of the edge (`None`: no value there).
pub(crate) fn col_values<'e, 'v>(
    e: &'e EdgeLayout,
    v: Option<&'v Value>,
) -> impl Iterator<Item = (&'e Col, Option<&'v Value>)> {
    let single = e.cols.len() == 1;
    e.cols
        .iter()
        .map(move |c| (c, v.and_then(|v| extract(v, &c.path, single))))
}

/// Follows `path` inside a value of an edge. A scalar stands for the whole key when the
/// key has one column (`"grass"` for `{"name": "grass"}`).
pub(crate) fn extract<'a>(v: &'a Value, path: &[String], single: bool) -> Option<&'a Value> {
    match (path.split_first(), v) {
        (None, _) => Some(v),
        (Some((first, rest)), Value::Object(o)) => extract(o.get(first)?, rest, single),
        (Some(_), Value::Null) => None,
        (Some(_), scalar) if single => Some(scalar),
        _ => None,
    }
}

/// Items of a multi-valued edge's value (an array; a lone value counts as one item).
pub(crate) fn items(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    let all: &[Value] = match v {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => std::slice::from_ref(other),
    };
    all.iter().filter(|x| !x.is_null())
}

/// True when a nested value carries a record of its own (more than index edges).
pub(crate) fn is_full_record(target: &ModelLayout, v: &Value) -> bool {
    match v {
        Value::Object(o) => o.keys().any(|k| {
            !is_index_edge(target, k)
                && target
                    .edges
                    .iter()
                    .any(|e| &e.name == k || e.title.as_deref() == Some(k))
        }),
        _ => false,
    }
}

/// True when `edge` is an edge of any index of `l` (a nested object with only these is a
/// reference). Indexes have few edges: comparing them beats building a set per value.
fn is_index_edge(l: &ModelLayout, edge: &str) -> bool {
    l.key_edges
        .iter()
        .chain(l.uniques.iter().flat_map(|u| u.edges.iter()))
        .any(|e| e == edge)
}

/// The nested records of a record that are stored as records of their own model: values of
/// model-typed edges (not value objects, which stay with their parent) carrying more than
/// the target's index edges. Yields the target model's layout and the nested value.
pub(crate) fn nested_records<'a>(
    layouts: &'a HashMap<String, ModelLayout>,
    l: &'a ModelLayout,
    obj: &'a Map<String, Value>,
) -> impl Iterator<Item = (&'a ModelLayout, &'a Value)> {
    l.edges.iter().flat_map(move |e| {
        // Edges without a target model first: no lookup in the record for them.
        let target = e
            .target
            .as_deref()
            .filter(|_| !e.value_object)
            .and_then(|t| layouts.get(t));
        let v = target.and_then(|_| edge_value(obj, e));
        let (one, many) = match v {
            Some(v) if e.multiple => (None, Some(items(Some(v)))),
            one => (one, None),
        };
        one.into_iter()
            .chain(many.into_iter().flatten())
            .filter_map(move |n| {
                let tl = target?;
                is_full_record(tl, n).then_some((tl, n))
            })
    })
}

/// An index of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Index {
    /// The primary index.
    Primary,
    /// The secondary index at this position of [`ModelLayout::uniques`].
    Unique(usize),
}

/// Which index of `l` a requested key names (its edges in any order), or the error listing
/// the model's indexes.
pub(crate) fn index_of(l: &ModelLayout, key: &IndexKey) -> Result<Index, StoreError> {
    let mut want: Vec<&str> = key.edges.iter().map(String::as_str).collect();
    want.sort_unstable();
    let matches = |edges: &[String]| {
        let mut e: Vec<&str> = edges.iter().map(String::as_str).collect();
        e.sort_unstable();
        e == want
    };
    if matches(&l.key_edges) {
        return Ok(Index::Primary);
    }
    if let Some(i) = l.uniques.iter().position(|u| matches(&u.edges)) {
        return Ok(Index::Unique(i));
    }
    Err(StoreError::InvalidFilter {
        model: l.model.clone(),
        message: format!(
            "({}) is not an index of {}; its indexes are {}",
            key.edges.join(", "),
            l.model,
            std::iter::once(&l.key_edges)
                .chain(l.uniques.iter().map(|u| &u.edges))
                .map(|ix| format!("({})", ix.join(", ")))
                .collect::<Vec<_>>()
                .join("")
        ),
    })
}

/// A requested key as a record object (edge → value), to read its columns like a record's.
pub(crate) fn key_object(key: &IndexKey) -> Map<String, Value> {
    key.edges
        .iter()
        .cloned()
        .zip(key.values.iter().cloned())
        .collect()
}

/// The edge a filter names, or why it cannot filter: no such edge, an edge holding value
/// objects, or a reference to a model with a composite key.
pub(crate) fn filter_edge<'l>(
    l: &'l ModelLayout,
    f: &Filter,
) -> Result<&'l EdgeLayout, StoreError> {
    let bad = |message: String| StoreError::InvalidFilter {
        model: l.model.clone(),
        message,
    };
    let e = l.edge(&f.edge).ok_or_else(|| {
        bad(format!(
            "{} has no edge {:?}; its edges are {}",
            l.model,
            f.edge,
            l.edges
                .iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if e.value_object {
        return Err(bad(format!(
            "edge {} holds {} value objects (records without an index); filter on an edge of {} itself",
            e.name,
            e.target.as_deref().unwrap_or("nested"),
            l.model
        )));
    }
    if e.cols.len() != 1 {
        return Err(bad(format!(
            "edge {} refers to a model with a composite key; filter on one of its own edges instead",
            e.name
        )));
    }
    Ok(e)
}

/// Builds a reference value `{"name": "grass"}` (nested for composite keys) from columns.
pub(crate) fn ref_value(cols: &[Col], vals: &[Value]) -> Value {
    if vals.iter().all(Value::is_null) {
        return Value::Null;
    }
    let mut root = Map::new();
    for (c, v) in cols.iter().zip(vals) {
        let mut node = &mut root;
        for (i, p) in c.path.iter().enumerate() {
            if i + 1 == c.path.len() {
                node.insert(p.clone(), v.clone());
            } else {
                let next = node
                    .entry(p.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !next.is_object() {
                    *next = Value::Object(Map::new());
                }
                node = match next {
                    Value::Object(m) => m,
                    _ => unreachable!(),
                };
            }
        }
    }
    Value::Object(root)
}

/// A value object read back from its child row: its edges with a value, by name (as the
/// validator gives them: an edge without a value is left out).
pub(crate) fn value_object_out(e: &EdgeLayout, vals: Vec<Value>) -> Value {
    Value::Object(
        e.cols
            .iter()
            .zip(vals)
            .filter(|(_, v)| !v.is_null())
            .map(|(c, v)| (c.name.clone(), v))
            .collect(),
    )
}
