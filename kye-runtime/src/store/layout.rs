//! How a model maps onto tables and columns, for every store: one table per model with a
//! column per primitive of its single-valued edges, child tables for multi-valued edges and
//! value objects, the primary and secondary indexes, and the names that cannot be stored.
//!
//! A layout is derived from a model alone (plus the primary indexes of the models it
//! references), recorded by the store (`_kye_models.layout`, `_kye/models.jsonl`), and compared
//! with the stored one on every `prepare` ([`super::plan`]). Column types here are kye's
//! ([`Prim`]); each SQL store names them in its dialect.

use std::collections::{BTreeMap, HashSet};

use kye_lang::{Cardinality, Model, Primitive, Schema, Type};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::key::content_hash;
use super::StoreError;

/// Storage type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Prim {
    String,
    Number,
    Boolean,
    /// Any JSON value, kept as its canonical JSON text (the lists and nested records of a
    /// value object).
    Json,
}

impl Prim {
    fn from_primitive(p: Primitive) -> Self {
        match p {
            Primitive::String => Prim::String,
            Primitive::Number => Prim::Number,
            Primitive::Boolean => Prim::Boolean,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Prim::String => "String",
            Prim::Number => "Number",
            Prim::Boolean => "Boolean",
            Prim::Json => "JSON",
        }
    }
}

/// A stored column holding one primitive of an edge's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Col {
    /// Column name.
    pub name: String,
    /// Edges to follow inside the edge's value to reach the primitive (empty for primitives;
    /// the referenced model's key edges for references).
    pub path: Vec<String>,
    /// Type.
    pub prim: Prim,
}

/// One edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EdgeLayout {
    pub name: String,
    /// Source column name (title), if different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `!`/none or `+`.
    pub required: bool,
    /// `*` or `+`.
    pub multiple: bool,
    /// Referenced model for model-typed edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `Number`, `PokemonType+`, … for messages.
    pub ty: String,
    /// Child table for multi-valued edges and value objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The target is a value object (a model without an index): its records are stored in
    /// the child table, one row per value, one column per edge of the value object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub value_object: bool,
    /// Columns: in the model table (single-valued) or the value columns of the child table.
    pub cols: Vec<Col>,
}

impl EdgeLayout {
    /// True when the edge's values live in its child table (multi-valued edges and value
    /// objects), not in columns of the model table.
    pub(crate) fn in_child_table(&self) -> bool {
        self.multiple || self.value_object
    }
}

/// A secondary unique index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Unique {
    pub edges: Vec<String>,
    pub cols: Vec<String>,
}

/// The whole storage layout of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModelLayout {
    pub model: String,
    pub table: String,
    /// Primary index edges.
    pub key_edges: Vec<String>,
    /// Primary key columns in the model table, in order (`path` starts with the edge name).
    pub key: Vec<Col>,
    /// Names of the parent key columns in child tables (same order as `key`).
    pub parent_cols: Vec<String>,
    pub uniques: Vec<Unique>,
    pub edges: Vec<EdgeLayout>,
}

/// Column name of the position in child tables.
pub(crate) const POSITION: &str = "_kye_position";
/// Provenance columns of model tables. `_kye_source` (the declared source and its version,
/// `name@version`, NULL for a function of no declared source) came last, in issue 18: stores
/// made before it get the column when opened.
pub(crate) const PROVENANCE: [&str; 5] = [
    "_kye_run_id",
    "_kye_fetcher",
    "_kye_fetched_at",
    "_kye_hash",
    SOURCE_COLUMN,
];

/// The provenance column naming the source and its version.
pub(crate) const SOURCE_COLUMN: &str = "_kye_source";

/// The edges of a stored model in schema order, or `None` when `model` is not stored.
pub(crate) fn edge_names(
    layouts: &std::collections::HashMap<String, ModelLayout>,
    model: &str,
) -> Option<Vec<String>> {
    layouts
        .get(model)
        .map(|l| l.edges.iter().map(|e| e.name.clone()).collect())
}

impl ModelLayout {
    /// Whether keys by `key_edges` are plain values in their own columns (so a store reads
    /// them with the content hash alone): the primary key is `key_edges` and none of its
    /// columns is a reference's (a key column's path is its edge, then the referenced model's
    /// key edges, if any).
    pub(crate) fn keys_are_columns(&self, key_edges: &[&str]) -> bool {
        self.key.iter().all(|c| c.path.len() == 1)
            && self
                .key_edges
                .iter()
                .map(String::as_str)
                .eq(key_edges.iter().copied())
    }

    /// The column of each of `edges` when every one is a plain value (no reference, not
    /// multi-valued, not a value object) held in one column of the model's table, so that a
    /// key by these edges is read from those columns alone; `None` otherwise.
    pub(crate) fn plain_columns(&self, edges: &[&str]) -> Option<Vec<&Col>> {
        edges
            .iter()
            .map(|name| {
                let e = self.edge(name)?;
                let plain = e.target.is_none() && !e.in_child_table() && e.cols.len() == 1;
                plain.then(|| &e.cols[0])
            })
            .collect()
    }

    pub(crate) fn edge(&self, name: &str) -> Option<&EdgeLayout> {
        self.edges.iter().find(|e| e.name == name)
    }

    pub(crate) fn fingerprint(&self) -> String {
        content_hash(&serde_json::to_value(self).unwrap_or(Value::Null))
    }

    /// True when some edge holds value objects (stores holding one need format version 2).
    pub(crate) fn has_value_objects(&self) -> bool {
        self.edges.iter().any(|e| e.value_object)
    }

    /// Every table this layout uses.
    pub(crate) fn tables(&self) -> Vec<&str> {
        let mut t = vec![self.table.as_str()];
        t.extend(self.edges.iter().filter_map(|e| e.table.as_deref()));
        t
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| StoreError::InvalidName {
        what,
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.contains('\0') {
        return Err(bad("it contains a NUL character"));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("_kye_") || lower == "_kye" {
        return Err(bad(
            "names starting with `_kye_` are reserved for kye's own columns and tables",
        ));
    }
    if what == "model" && lower.starts_with("sqlite_") {
        return Err(bad("SQLite reserves table names starting with `sqlite_`"));
    }
    Ok(())
}

fn prim_of(ty: &Type) -> Option<Prim> {
    ty.primitive().map(Prim::from_primitive)
}

fn type_desc(ty: &Type, card: Cardinality) -> String {
    let base = match ty {
        Type::Primitive(p) | Type::Constrained { base: p, .. } => p.to_string(),
        Type::Model(m) => m.clone(),
    };
    format!("{base}{}", card.marker())
}

/// The primitives making up the primary key of `model`, as paths of edges from the model.
fn flatten_key(
    schema: &Schema,
    model: &str,
    depth: usize,
) -> Result<Vec<(Vec<String>, Prim)>, StoreError> {
    let m = schema
        .model(model)
        .ok_or_else(|| StoreError::UnknownModel {
            model: model.to_string(),
        })?;
    if depth > 8 {
        return Err(StoreError::SchemaChange {
            model: model.to_string(),
            edge: None,
            message: "its primary index refers to models whose primary index refers back to it; \
                      a key must end in String, Number or Boolean edges"
                .to_string(),
        });
    }
    let Some(primary) = m.primary_index() else {
        return Err(StoreError::SchemaChange {
            model: model.to_string(),
            edge: None,
            message: "it has no index (a value object), so nothing can reference it; \
                      it can only be nested"
                .to_string(),
        });
    };
    let mut out = Vec::new();
    for e in &primary.edges {
        let edge = m.edge(e).ok_or_else(|| StoreError::SchemaChange {
            model: model.to_string(),
            edge: Some(e.clone()),
            message: "the primary index names an edge the model does not have".to_string(),
        })?;
        if edge.cardinality.is_multiple() {
            return Err(StoreError::SchemaChange {
                model: model.to_string(),
                edge: Some(e.clone()),
                message: format!(
                    "index edges must be single-valued; {e} is {}",
                    type_desc(&edge.ty, edge.cardinality)
                ),
            });
        }
        match (&edge.ty, prim_of(&edge.ty)) {
            (_, Some(p)) => out.push((vec![e.clone()], p)),
            (Type::Model(t), None) => {
                for (mut sub, p) in flatten_key(schema, t, depth + 1)? {
                    sub.insert(0, e.clone());
                    out.push((sub, p));
                }
            }
            _ => unreachable!("a type without a primitive is a model type"),
        }
    }
    Ok(out)
}

/// Columns for a value of `ty`: one per primitive, named `base` when there is one,
/// `base.sub.path` otherwise.
fn value_cols(schema: &Schema, ty: &Type, base: &str) -> Result<Vec<Col>, StoreError> {
    match (ty, prim_of(ty)) {
        (_, Some(p)) => Ok(vec![Col {
            name: base.to_string(),
            path: Vec::new(),
            prim: p,
        }]),
        (Type::Model(t), None) => {
            let flat = flatten_key(schema, t, 1)?;
            let single = flat.len() == 1;
            Ok(flat
                .into_iter()
                .map(|(path, prim)| Col {
                    name: if single {
                        base.to_string()
                    } else {
                        format!("{base}.{}", path.join("."))
                    },
                    path,
                    prim,
                })
                .collect())
        }
        _ => unreachable!("a type without a primitive is a model type"),
    }
}

/// Columns of the child table of an edge holding value objects of `target`: one per edge,
/// typed for single-valued primitives, canonical JSON text for lists and nested records.
fn value_object_cols(target: &Model) -> Result<Vec<Col>, StoreError> {
    let mut cols = Vec::new();
    let mut seen = HashSet::new();
    for e in &target.edges {
        check_name("edge", &e.name)?;
        let lower = e.name.to_ascii_lowercase();
        if lower == POSITION || !seen.insert(lower) {
            return Err(StoreError::InvalidName {
                what: "edge",
                name: format!("{}.{}", target.name, e.name),
                reason: "its column would clash with another column of the value object's \
                         child tables (SQLite column names ignore case); rename the edge"
                    .to_string(),
            });
        }
        let prim = match prim_of(&e.ty) {
            Some(p) if !e.cardinality.is_multiple() => p,
            _ => Prim::Json,
        };
        cols.push(Col {
            name: e.name.clone(),
            path: vec![e.name.clone()],
            prim,
        });
    }
    Ok(cols)
}

/// The layouts of `schema`'s models that have tables of their own: every model but the value
/// objects, which are stored inside the records nesting them.
pub(crate) fn layouts_of(schema: &Schema) -> Result<Vec<ModelLayout>, StoreError> {
    schema
        .models()
        .iter()
        .filter(|m| !m.is_value_object())
        .map(|m| layout_of(schema, m))
        .collect()
}

/// Computes the layout of `model` (which must have an index).
pub(crate) fn layout_of(schema: &Schema, model: &Model) -> Result<ModelLayout, StoreError> {
    check_name("model", &model.name)?;
    let mut edges = Vec::new();
    for e in &model.edges {
        check_name("edge", &e.name)?;
        let multiple = e.cardinality.is_multiple();
        let value_object = match &e.ty {
            Type::Model(t) => schema.model(t).filter(|t| t.is_value_object()),
            _ => None,
        };
        let (table, cols) = if let Some(target) = value_object {
            let table = format!("{}__{}", model.name, e.name);
            (Some(table), value_object_cols(target)?)
        } else if multiple {
            let table = format!("{}__{}", model.name, e.name);
            (Some(table), value_cols(schema, &e.ty, "value")?)
        } else {
            (None, value_cols(schema, &e.ty, &e.name)?)
        };
        edges.push(EdgeLayout {
            name: e.name.clone(),
            title: e.title.clone().filter(|t| *t != e.name),
            required: matches!(e.cardinality, Cardinality::One | Cardinality::AtLeastOne),
            multiple,
            target: match &e.ty {
                Type::Model(t) => Some(t.clone()),
                _ => None,
            },
            ty: type_desc(&e.ty, e.cardinality),
            table,
            value_object: value_object.is_some(),
            cols,
        });
    }
    let index_cols = |ix: &[String]| -> Result<Vec<Col>, StoreError> {
        let mut cols = Vec::new();
        for name in ix {
            let edge =
                edges
                    .iter()
                    .find(|e| &e.name == name)
                    .ok_or_else(|| StoreError::SchemaChange {
                        model: model.name.clone(),
                        edge: Some(name.clone()),
                        message: "an index names an edge the model does not have".to_string(),
                    })?;
            if edge.in_child_table() {
                return Err(StoreError::SchemaChange {
                    model: model.name.clone(),
                    edge: Some(name.clone()),
                    message: format!("index edges must be single-valued; {name} is {}", edge.ty),
                });
            }
            for c in &edge.cols {
                let mut path = vec![name.clone()];
                path.extend(c.path.iter().cloned());
                cols.push(Col {
                    name: c.name.clone(),
                    path,
                    prim: c.prim,
                });
            }
        }
        Ok(cols)
    };
    let key_edges = model
        .primary_index()
        .map(|ix| ix.edges.clone())
        .ok_or_else(|| StoreError::SchemaChange {
            model: model.name.clone(),
            edge: None,
            message: "it has no index (a value object): it is stored inside the records \
                      nesting it, not in a table of its own"
                .to_string(),
        })?;
    let key = index_cols(&key_edges)?;
    let mut uniques = Vec::new();
    for ix in model.indexes.iter().skip(1) {
        uniques.push(Unique {
            edges: ix.edges.clone(),
            cols: index_cols(&ix.edges)?.into_iter().map(|c| c.name).collect(),
        });
    }
    // Parent key columns keep their names in child tables unless they would clash with the
    // value or position columns there.
    let value_object_cols: HashSet<String> = edges
        .iter()
        .filter(|e| e.value_object)
        .flat_map(|e| e.cols.iter().map(|c| c.name.to_ascii_lowercase()))
        .collect();
    let clashes = key.iter().any(|c| {
        let l = c.name.to_ascii_lowercase();
        l == "value" || l.starts_with("value.") || l == POSITION || value_object_cols.contains(&l)
    });
    let parent_cols = key
        .iter()
        .map(|c| {
            if clashes {
                format!("parent.{}", c.name)
            } else {
                c.name.clone()
            }
        })
        .collect();
    let layout = ModelLayout {
        model: model.name.clone(),
        table: model.name.clone(),
        key_edges,
        key,
        parent_cols,
        uniques,
        edges,
    };
    check_columns(&layout)?;
    Ok(layout)
}

/// Column names must be unique per table (SQLite compares them case-insensitively).
fn check_columns(l: &ModelLayout) -> Result<(), StoreError> {
    let mut seen: HashSet<String> = PROVENANCE.iter().map(|s| s.to_string()).collect();
    for e in l.edges.iter().filter(|e| !e.in_child_table()) {
        for c in &e.cols {
            if !seen.insert(c.name.to_ascii_lowercase()) {
                return Err(StoreError::InvalidName {
                    what: "edge",
                    name: format!("{}.{}", l.model, e.name),
                    reason: format!(
                        "its column {:?} clashes with another column of table {:?} \
                         (SQLite column names ignore case); rename the edge",
                        c.name, l.table
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Table names must be unique across all models (SQLite compares them case-insensitively).
pub(crate) fn check_tables(layouts: &[ModelLayout]) -> Result<(), StoreError> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for l in layouts {
        for t in l.tables() {
            if let Some(other) = seen.insert(t.to_ascii_lowercase(), l.model.clone()) {
                return Err(StoreError::InvalidName {
                    what: "model",
                    name: l.model.clone(),
                    reason: format!(
                        "its table {t:?} clashes with a table of model {other} \
                         (child tables are named <Model>__<edge>; SQLite table names ignore case)"
                    ),
                });
            }
        }
    }
    Ok(())
}
