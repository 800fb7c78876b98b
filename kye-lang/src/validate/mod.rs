//! Validating data against compiled models.
//!
//! Two entry points:
//!
//! - [`validate_record`]: one JSON record (what a fetch function returns), with nested records
//!   validated recursively. Returns the normalized record and every problem found.
//! - [`BatchValidator`]: many rows of one model, streaming. Rows that share an index value are
//!   one record (the original's semantics); uniqueness of every index, conflicts between indexes
//!   and cardinality across rows are checked. Memory grows with the number of distinct records
//!   (a few machine words each), never with the size of a row.
//!
//! # Semantics (shared with the original Python implementation)
//!
//! - A `Number` edge accepts numbers and strings that read as a number (`"1.0"`); a `String`
//!   edge accepts strings and numbers (kept as their text); a `Boolean` edge accepts booleans,
//!   `"true"`/`"false"` in any case, and `1`/`0`.
//! - Constants, enums and regular expressions are types: a value outside them is `InvalidType`.
//! - `null`, a missing field and (in CSV) an empty cell are all "no value".
//! - A list gives several values; a one-element list or a repeated identical value is fine for a
//!   single-valued edge, two different values are `MultipleValues`.
//! - Every assertion runs, including those over several edges (the original skipped them).
//!   An assertion whose edges have no value is not applicable; one over a multi-valued edge must
//!   hold for every value.
//!
//! # Nested records and references
//!
//! An edge whose type is a model (`types: PokemonType+`) holds, per value, either
//! - a **nested record**: a JSON object with at least one field that is not an index edge of the
//!   target model; it is validated recursively and errors carry a path such as `types[1].name`;
//! - a **reference**: a JSON object whose fields are all index edges of the target model
//!   (`{"id": 25}`), or a bare scalar, which is the value of the target's primary index when that
//!   index has one edge (`25`). A reference is type-checked against the index edges but not
//!   required to carry the target's other edges. In CSV a model-typed column always holds a
//!   reference.
//!
//! A target without an index is a **value object** ([`Model::is_value_object`]): every value
//! must be a nested record (an object, `{}` included); nothing can reference one.
//!
//! ```
//! # use kye_lang::validate::validate_record;
//! # fn schema() -> kye_lang::Schema { kye_lang::validate::doc_example_schema() }
//! let schema = schema(); // User(id) { id: Number, name: String, age?: Number, assert age >= 0 }
//! let report = validate_record(&schema, "User", &serde_json::json!({"id": "7", "name": "Ann", "age": -1}));
//! assert!(!report.is_valid());
//! assert_eq!(report.errors[0].kind.name(), "AssertionFailed");
//! assert_eq!(report.value["id"], 7); // "7" normalized to a number
//! ```

mod batch;
mod error;
mod record;
mod value;

pub use batch::{BatchValidator, Columns, PreparedRows, TextPreparer};
pub use error::{
    BatchReport, ErrorKind, RecordReport, ValidationError, MAX_EXAMPLE_CHARS, MAX_UNKNOWN_FIELDS,
    MAX_VALUE_CHARS,
};
pub use record::validate_record;

use crate::schema::{Edge, Expr, Model, Primitive, Schema, Type};

/// How the values of one edge are checked.
#[derive(Clone, Copy)]
pub(crate) enum EdgeKind<'s> {
    /// A primitive, maybe with a constraint.
    Prim(Primitive, Option<&'s Expr>),
    /// Another model: nested record or reference.
    Model(&'s Model),
    /// A model name missing from the schema (cannot happen for a checked schema).
    Unknown,
}

pub(crate) fn edge_kind<'s>(schema: &'s Schema, ty: &'s Type) -> EdgeKind<'s> {
    match ty {
        Type::Primitive(p) => EdgeKind::Prim(*p, None),
        Type::Constrained {
            base, constraint, ..
        } => EdgeKind::Prim(*base, Some(constraint)),
        Type::Model(name) => schema
            .model(name)
            .map(EdgeKind::Model)
            .unwrap_or(EdgeKind::Unknown),
    }
}

/// The primitive (and constraint) a reference to `target` holds: its single-edge primary index.
pub(crate) fn ref_prim<'s>(
    schema: &'s Schema,
    target: &'s Model,
) -> Option<(Primitive, Option<&'s Expr>, &'s Edge)> {
    let ix = target.primary_index()?;
    if ix.edges.len() != 1 {
        return None;
    }
    let e = target.edge(&ix.edges[0])?;
    match edge_kind(schema, &e.ty) {
        EdgeKind::Prim(p, c) => Some((p, c, e)),
        _ => None,
    }
}

/// The expected type as people read it: `Number`, `PokemonType`, the alias name, or the
/// constraint's source text (`"SHIPPED" | "DELIVERED"`).
pub(crate) fn expected_text(schema: &Schema, ty: &Type) -> String {
    match ty {
        Type::Primitive(p) => p.to_string(),
        Type::Model(m) => m.clone(),
        Type::Constrained {
            base,
            constraint,
            alias,
        } => {
            if let Some(a) = alias {
                return a.clone();
            }
            let text = schema
                .sources
                .get(constraint.span.file)
                .map(|f| f.slice(constraint.span).trim().to_string())
                .unwrap_or_default();
            if text.is_empty() {
                format!("constrained {base}")
            } else {
                text
            }
        }
    }
}

/// The schema used by the doc examples of this module (built by hand so the examples do not
/// depend on the parser).
#[doc(hidden)]
pub fn doc_example_schema() -> Schema {
    use crate::schema::*;
    use crate::span::{FileId, SourceMap, Span};
    let text = "User(id) { id: Number, name: String, age?: Number, assert age >= 0 }";
    let mut sources = SourceMap::new();
    let file = sources.add("doc.kye", text);
    let sp = |a: &str| {
        let s = text.find(a).unwrap_or(0);
        Span::new(file, s, s + a.len())
    };
    let edge = |name: &str, card, p| Edge {
        name: name.into(),
        title: None,
        cardinality: card,
        ty: Type::Primitive(p),
        span: sp(name),
        doc: None,
    };
    let ex = |kind| Expr {
        kind,
        span: sp("age >= 0"),
    };
    let _ = FileId(0);
    Schema::from_models(
        sources,
        vec![Model {
            name: "User".into(),
            span: sp("User"),
            indexes: vec![Index {
                edges: vec!["id".into()],
                span: sp("(id)"),
            }],
            edges: vec![
                edge("id", Cardinality::One, Primitive::Number),
                edge("name", Cardinality::One, Primitive::String),
                edge("age", Cardinality::Optional, Primitive::Number),
            ],
            assertions: vec![Assertion {
                expr: ex(ExprKind::Binary(
                    BinaryOp::Ge,
                    Box::new(ex(ExprKind::Edge("age".into()))),
                    Box::new(ex(ExprKind::Literal(Literal::Number(0.0)))),
                )),
                span: sp("assert age >= 0"),
                text: "age >= 0".into(),
                edges: vec!["age".into()],
            }],
            doc: None,
        }],
    )
}
