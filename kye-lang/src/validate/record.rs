//! Validation of one JSON record, recursively through nested records.

use std::ops::Range;

use serde_json::{Map, Value};

use super::error::{
    cut, example_of, show_json, ErrorKind, RecordReport, ValidationError, MAX_UNKNOWN_FIELDS,
};
use super::value::{coerce_json, eval, satisfies, truthy, val_eq, Val};
use super::{edge_kind, expected_text, ref_prim, EdgeKind};
use crate::schema::{Assertion, Edge, Model, ModelLookup, Schema};

/// Nesting deeper than this is reported instead of followed (self-referencing models).
const MAX_DEPTH: usize = 64;
/// At most this many value combinations are tried for an assertion over multi-valued edges.
const MAX_COMBINATIONS: usize = 4096;

/// Validates one record (a JSON object) against `model` of `schema`.
///
/// Never stops at the first problem: every edge, every nested record and every assertion is
/// checked. Fields are matched to edges by title, else by name; unknown fields are dropped from
/// the normalized value and reported as [`ErrorKind::UnknownEdge`] warnings. All required edges
/// must have a value (a record is complete; partial rows are for [`super::BatchValidator`]).
///
/// ```
/// # let schema = kye_lang::validate::doc_example_schema();
/// use kye_lang::validate::validate_record;
/// let r = validate_record(&schema, "User", &serde_json::json!({"id": 1, "name": "Ann", "extra": 1}));
/// assert!(r.is_valid());
/// assert_eq!(r.warnings[0].kind.name(), "UnknownEdge");
/// assert_eq!(r.value, serde_json::json!({"id": 1, "name": "Ann"}));
/// ```
pub fn validate_record(schema: &Schema, model: &str, record: &Value) -> RecordReport {
    let mut cx = RecordCx::new(schema);
    let value = match schema.model(model) {
        Some(m) => cx.record(m, record, "", 0),
        None => {
            cx.errors.push(unknown_model(schema, model));
            Value::Null
        }
    };
    if cx.unknown_fields > MAX_UNKNOWN_FIELDS {
        let more = cx.unknown_fields - MAX_UNKNOWN_FIELDS;
        cx.warnings.push(ValidationError::new(
            ErrorKind::UnknownEdge,
            model,
            format!(
                "record: {more} more fields are not edges of {model} or its nested models; dropped \
                 (only the first {MAX_UNKNOWN_FIELDS} unknown fields of a record are listed and \
                 recorded as drift)"
            ),
        ));
    }
    RecordReport {
        value,
        errors: cx.errors,
        warnings: cx.warnings,
    }
}

pub(crate) fn unknown_model(schema: &Schema, model: &str) -> ValidationError {
    let known: Vec<&str> = schema.model_names().collect();
    ValidationError::new(
        ErrorKind::UnknownModel,
        model,
        format!(
            "no model named '{model}' in the schema (models: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ),
    )
}

/// Finds the edge a field name refers to: by title first, then by name.
pub(crate) fn edge_for_field<'m>(
    schema: &Schema,
    model: &'m Model,
    field: &str,
) -> Option<(usize, &'m Edge)> {
    let i = schema.lookup(model).field(field)?;
    Some((i, &model.edges[i]))
}

/// True when the value `(v, n)` (comparable, normalized) repeats one of `kept` (with their
/// normalized JSON `kept_json`): identical repeats are one value. A missing comparable value
/// compares by its normalized JSON.
fn repeats(kept: &[Val], kept_json: &[Value], v: &Val, n: &Value) -> bool {
    kept.iter().zip(kept_json).any(|(k, kn)| {
        if matches!(k, Val::Missing) {
            kn == n
        } else {
            val_eq(k, v)
        }
    })
}

pub(crate) fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Outcome of an assertion over the values of its edges.
pub(crate) enum AssertOutcome {
    Holds,
    NotApplicable,
    /// Failed for this combination of values, shown as `age=-14`.
    Fails(String),
}

/// Runs an assertion over every combination of the values of its edges. `values(i)` gives the
/// values of `a.edges[i]` (empty = missing).
pub(crate) fn check_assertion<'a>(
    a: &'a Assertion,
    values: &dyn Fn(usize) -> &'a [Val<'a>],
) -> AssertOutcome {
    const MISSING: &[Val<'static>] = &[Val::Missing];
    let list = |i: usize| -> &'a [Val<'a>] {
        let v = values(i);
        if v.is_empty() {
            MISSING
        } else {
            v
        }
    };
    // The position in each edge's value list: an odometer over all combinations, inline for
    // the usual few edges.
    let mut inline = [0usize; 4];
    let mut heap = Vec::new();
    let pos: &mut [usize] = if a.edges.len() <= inline.len() {
        &mut inline[..a.edges.len()]
    } else {
        heap.resize(a.edges.len(), 0);
        &mut heap
    };
    let mut any_true = false;
    for _ in 0..MAX_COMBINATIONS {
        let lookup = |name: &str| -> Val<'a> {
            match a.edges.iter().position(|e| e == name) {
                Some(i) => list(i)[pos[i]].clone(),
                None => Val::Missing,
            }
        };
        match truthy(&eval(&a.expr, &Val::Missing, &lookup)) {
            Some(false) => {
                let shown: Vec<String> = a
                    .edges
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{e}={}", list(i)[pos[i]].show()))
                    .collect();
                return AssertOutcome::Fails(shown.join(", "));
            }
            Some(true) => any_true = true,
            None => {}
        }
        // Odometer over the value lists.
        let mut i = 0;
        loop {
            if i == pos.len() {
                return if any_true {
                    AssertOutcome::Holds
                } else {
                    AssertOutcome::NotApplicable
                };
            }
            pos[i] += 1;
            if pos[i] < list(i).len() {
                break;
            }
            pos[i] = 0;
            i += 1;
        }
    }
    if any_true {
        AssertOutcome::Holds
    } else {
        AssertOutcome::NotApplicable
    }
}

/// One edge of a record being validated.
#[derive(Default)]
struct Slot<'r> {
    /// The field giving the edge its value(s), if any.
    field: Option<&'r Value>,
    /// The edge's distinct valid values: a range of the record's value buffer.
    vals: Range<usize>,
    /// The normalized value (`None`: the edge is left out of the record).
    out: Option<Value>,
}

pub(crate) struct RecordCx<'s> {
    pub(crate) schema: &'s Schema,
    pub(crate) errors: Vec<ValidationError>,
    pub(crate) warnings: Vec<ValidationError>,
    /// Unknown fields seen (listed up to [`MAX_UNKNOWN_FIELDS`]).
    pub(crate) unknown_fields: usize,
}

impl<'s> RecordCx<'s> {
    pub(crate) fn new(schema: &'s Schema) -> Self {
        RecordCx {
            schema,
            errors: Vec::new(),
            warnings: Vec::new(),
            unknown_fields: 0,
        }
    }

    fn err(
        &mut self,
        model: &Model,
        edge: Option<&Edge>,
        kind: ErrorKind,
        msg: String,
    ) -> &mut ValidationError {
        let mut e = ValidationError::new(kind, &model.name, msg);
        if let Some(edge) = edge {
            e.edges.push(edge.name.clone());
            e = e.at(self.schema, edge.span);
        }
        self.errors.push(e);
        self.errors.last_mut().expect("just pushed")
    }

    /// Validates `rec` as a `model` record at `path`; returns the normalized value.
    pub(crate) fn record(
        &mut self,
        model: &'s Model,
        rec: &Value,
        path: &str,
        depth: usize,
    ) -> Value {
        let schema = self.schema;
        let Value::Object(obj) = rec else {
            let e = self.err(
                model,
                None,
                ErrorKind::InvalidType,
                format!(
                    "{}: expected a {} record (an object), found {}",
                    if path.is_empty() { "record" } else { path },
                    model.name,
                    show_json(rec)
                ),
            );
            e.value = Some(show_json(rec));
            e.expected = Some(model.name.clone());
            e.path = (!path.is_empty()).then(|| path.to_string());
            e.span = Some(model.span);
            e.location = Some(schema.location(model.span));
            return Value::Null;
        };
        if depth > MAX_DEPTH {
            let e = self.err(
                model,
                None,
                ErrorKind::InvalidType,
                format!(
                    "{path}: records nested more than {MAX_DEPTH} levels deep are not followed"
                ),
            );
            e.path = Some(path.to_string());
            return Value::Null;
        }

        let lookup = schema.lookup(model);
        let mut slots = self.match_fields(model, &lookup, obj, path);

        // Every edge's distinct values, kept side by side in `vals` for the assertions.
        let count = slots.iter().map(|s| match s.field {
            Some(Value::Array(a)) => a.len(),
            _ => 1,
        });
        let mut vals: Vec<Val<'_>> = Vec::with_capacity(count.sum());
        let mut normalized: Vec<Value> = Vec::new();
        for (edge, slot) in model.edges.iter().zip(&mut slots) {
            let start = vals.len();
            normalized.clear();
            let had_invalid = self.edge_values(
                model,
                edge,
                slot.field,
                path,
                depth,
                &mut vals,
                &mut normalized,
            );
            self.check_count(model, edge, path, &normalized, had_invalid);
            slot.out = if edge.cardinality.is_multiple() {
                Some(Value::Array(std::mem::take(&mut normalized)))
            } else {
                // The first distinct value (more than one is a MultipleValues error).
                normalized.truncate(1);
                normalized.pop()
            };
            slot.vals = start..vals.len();
        }
        // Built in key order, the map needs no searching.
        let out: Map<String, Value> = lookup
            .name_order()
            .iter()
            .filter_map(|&i| Some((model.edges[i].name.clone(), slots[i].out.take()?)))
            .collect();

        // Assertions over the record's values.
        for (ai, a) in model.assertions.iter().enumerate() {
            let idx = lookup.assertion_edges(ai);
            let values = |i: usize| -> &[Val<'_>] {
                idx[i].map(|p| &vals[slots[p].vals.clone()]).unwrap_or(&[])
            };
            if let AssertOutcome::Fails(shown) = check_assertion(a, &values) {
                let mut e = ValidationError::new(
                    ErrorKind::AssertionFailed,
                    &model.name,
                    format!(
                        "{}assertion `{}` failed for {shown}",
                        if path.is_empty() {
                            String::new()
                        } else {
                            format!("{path}: ")
                        },
                        a.text
                    ),
                );
                e.edges = a.edges.clone();
                e.value = Some(cut(&shown));
                e.expected = Some(a.text.clone());
                e.path = (!path.is_empty()).then(|| path.to_string());
                self.errors.push(e.at(self.schema, a.span));
            }
        }

        Value::Object(out)
    }

    /// Matches the fields of `obj` to the edges of `model` (see [`ModelLookup::field`]): one
    /// slot per edge, holding the field that gives its value. A repeated edge (given by title
    /// and by name: the first counts) and unknown fields are warned about, in field order.
    fn match_fields<'r>(
        &mut self,
        model: &Model,
        lookup: &ModelLookup,
        obj: &'r Map<String, Value>,
        path: &str,
    ) -> Vec<Slot<'r>> {
        let mut slots: Vec<Slot<'r>> = model.edges.iter().map(|_| Slot::default()).collect();
        for (k, v) in obj {
            match lookup.field(k) {
                Some(i) if slots[i].field.is_none() => slots[i].field = Some(v),
                Some(i) => {
                    // Both the title and the name given: the first counts.
                    let e = &model.edges[i];
                    let mut w = ValidationError::new(
                        ErrorKind::UnknownEdge,
                        &model.name,
                        format!(
                            "{}: field '{k}' repeats edge {}.{} (given by title and by name); the second is ignored",
                            if path.is_empty() { "record" } else { path },
                            model.name,
                            e.name
                        ),
                    );
                    w.path = Some(join(path, k));
                    w.value = Some(show_json(v));
                    w.example = Some(example_of(v));
                    self.warnings.push(w);
                }
                None => {
                    self.unknown_fields += 1;
                    if self.unknown_fields > MAX_UNKNOWN_FIELDS {
                        continue;
                    }
                    let mut w = ValidationError::new(
                        ErrorKind::UnknownEdge,
                        &model.name,
                        format!(
                            "{}: '{k}' is not an edge of {}; dropped",
                            join(path, k),
                            model.name
                        ),
                    );
                    w.edges.push(k.clone());
                    w.path = Some(join(path, k));
                    w.value = Some(show_json(v));
                    w.example = Some(example_of(v));
                    self.warnings.push(w.at(self.schema, model.span));
                }
            }
        }
        slots
    }

    /// Checks the values `field` gives `edge` (one value, a list, or none) and appends the
    /// distinct valid ones to `vals` and, normalized, to `normalized` (identical repeats are one
    /// value). Returns true when some value was invalid (its error is recorded).
    #[allow(clippy::too_many_arguments)]
    fn edge_values<'r>(
        &mut self,
        model: &'s Model,
        edge: &'s Edge,
        field: Option<&'r Value>,
        path: &str,
        depth: usize,
        vals: &mut Vec<Val<'r>>,
        normalized: &mut Vec<Value>,
    ) -> bool
    where
        's: 'r,
    {
        let (items, is_list): (&[Value], bool) = match field {
            None | Some(Value::Null) => (&[], false),
            Some(Value::Array(a)) => (a, true),
            Some(v) => (std::slice::from_ref(v), false),
        };
        let start = vals.len();
        let mut had_invalid = false;
        for (j, item) in items.iter().filter(|v| !v.is_null()).enumerate() {
            let ipath = || {
                let epath = join(path, &edge.name);
                if is_list {
                    format!("{epath}[{j}]")
                } else {
                    epath
                }
            };
            match self.value(model, edge, item, &ipath, depth) {
                Some((v, n)) => {
                    if !repeats(&vals[start..], normalized, &v, &n) {
                        vals.push(v);
                        normalized.push(n);
                    }
                }
                None => had_invalid = true,
            }
        }
        had_invalid
    }

    /// Checks the number of distinct values of `edge` against its cardinality: more than one
    /// for a single-valued edge, or none (and none invalid) for a required one.
    fn check_count(
        &mut self,
        model: &Model,
        edge: &Edge,
        path: &str,
        distinct: &[Value],
        had_invalid: bool,
    ) {
        let schema = self.schema;
        let epath = || join(path, &edge.name);
        // A nested path leads the message (`types[1].name: PokemonType.name ...`); at the top
        // level it would only repeat the edge the message names already.
        let lead = |p: &str| {
            if p == edge.name {
                String::new()
            } else {
                format!("{p}: ")
            }
        };
        if !edge.cardinality.is_multiple() && distinct.len() > 1 {
            let epath = epath();
            let shown: Vec<String> = distinct.iter().map(show_json).collect();
            let e = self.err(
                model,
                Some(edge),
                ErrorKind::MultipleValues,
                format!(
                    "{}{}.{} holds one value, found {}: {}",
                    lead(&epath),
                    model.name,
                    edge.name,
                    distinct.len(),
                    shown.join(", ")
                ),
            );
            e.path = Some(epath.clone());
            e.value = Some(cut(&shown.join(", ")));
            e.expected = Some(format!("one {}", expected_text(schema, &edge.ty)));
        }
        if distinct.is_empty() && !had_invalid && !edge.cardinality.allows_none() {
            let epath = epath();
            let is_index = model.is_index_edge(&edge.name);
            let kind = if is_index {
                ErrorKind::MissingIndex
            } else {
                ErrorKind::MissingValue
            };
            let e = self.err(
                model,
                Some(edge),
                kind,
                format!(
                    "{}{}.{} is required{} but has no value",
                    lead(&epath),
                    model.name,
                    edge.name,
                    if is_index { " (index edge)" } else { "" }
                ),
            );
            e.path = Some(epath.clone());
            e.expected = Some(format!(
                "{}{}",
                expected_text(schema, &edge.ty),
                edge.cardinality.marker()
            ));
        }
    }

    /// Checks one value of `edge`. Returns the comparable value and the normalized JSON, or
    /// `None` when invalid (the error is recorded).
    pub(crate) fn value<'r>(
        &mut self,
        model: &'s Model,
        edge: &'s Edge,
        item: &'r Value,
        path: &dyn Fn() -> String,
        depth: usize,
    ) -> Option<(Val<'r>, Value)>
    where
        's: 'r,
    {
        match edge_kind(self.schema, &edge.ty) {
            EdgeKind::Prim(p, constraint) => {
                let bad = match coerce_json(p, item) {
                    Ok(v) => match constraint {
                        Some(c) if !satisfies(c, &v) => true,
                        _ => {
                            let n = v.to_json();
                            return Some((v, n));
                        }
                    },
                    Err(()) => true,
                };
                debug_assert!(bad);
                let expected = expected_text(self.schema, &edge.ty);
                let shown = show_json(item);
                let path = path();
                let e = self.err(
                    model,
                    Some(edge),
                    ErrorKind::InvalidType,
                    format!("{path}: '{shown}' is not a valid {expected}"),
                );
                e.path = Some(path.to_string());
                e.value = Some(shown);
                e.expected = Some(expected);
                None
            }
            EdgeKind::Model(target) => {
                let is_reference = match item {
                    // A value object has no index to reference it by: always a record.
                    Value::Object(_) if target.is_value_object() => false,
                    Value::Object(o) => {
                        let lookup = self.schema.lookup(target);
                        o.keys().all(|k| {
                            lookup
                                .field(k)
                                .is_some_and(|i| target.is_index_edge(&target.edges[i].name))
                        }) && !o.is_empty()
                    }
                    _ => true,
                };
                if let (true, Value::Object(_)) = (is_reference, item) {
                    // {"id": 25}: a reference by index edges; check their types only.
                    let before = self.errors.len();
                    let mut cx = RecordCx::new(self.schema);
                    let n = cx.record(target, item, &path(), depth + 1);
                    // Only type problems of the given index edges count for a reference.
                    let errs: Vec<ValidationError> = cx
                        .errors
                        .into_iter()
                        .filter(|e| {
                            !matches!(e.kind, ErrorKind::MissingValue | ErrorKind::MissingIndex)
                        })
                        .collect();
                    let ok = errs.is_empty();
                    self.errors.extend(errs);
                    self.warnings.extend(cx.warnings);
                    let _ = before;
                    return ok.then(|| (Val::Str(n.to_string().into()), n));
                }
                if !is_reference {
                    let before = self.errors.len();
                    let n = self.record(target, item, &path(), depth + 1);
                    if self.errors.len() > before {
                        return None;
                    }
                    return Some((Val::Str(n.to_string().into()), n));
                }
                // A bare scalar: the target's single-edge primary index value.
                let Some((p, constraint, ix_edge)) = ref_prim(self.schema, target) else {
                    let shown = show_json(item);
                    let path = path();
                    let e = self.err(
                        model,
                        Some(edge),
                        ErrorKind::InvalidType,
                        if target.is_value_object() {
                            format!(
                                "{path}: '{shown}' is not a {} record (an object); {} has no index, so a value cannot reference one",
                                target.name, target.name
                            )
                        } else {
                            format!(
                                "{path}: '{shown}' is not a {} record; a bare value can only reference a model with a one-edge primary index",
                                target.name
                            )
                        },
                    );
                    e.path = Some(path.to_string());
                    e.value = Some(shown);
                    e.expected = Some(target.name.clone());
                    return None;
                };
                match coerce_json(p, item) {
                    Ok(v) if constraint.is_none_or(|c| satisfies(c, &v)) => {
                        let n = v.to_json();
                        Some((v, n))
                    }
                    _ => {
                        let shown = show_json(item);
                        let path = path();
                        let expected = format!(
                            "{} (a {} record or its {} {})",
                            target.name,
                            target.name,
                            ix_edge.name,
                            expected_text(self.schema, &ix_edge.ty)
                        );
                        let e = self.err(
                            model,
                            Some(edge),
                            ErrorKind::InvalidType,
                            format!("{path}: '{shown}' is not a valid reference to {expected}"),
                        );
                        e.path = Some(path.to_string());
                        e.value = Some(shown);
                        e.expected = Some(expected);
                        None
                    }
                }
            }
            EdgeKind::Unknown => {
                let path = path();
                let mut e = ValidationError::new(
                    ErrorKind::UnknownModel,
                    &model.name,
                    format!(
                        "{path}: edge type {:?} is not a model of the schema",
                        edge.ty
                    ),
                );
                e.edges.push(edge.name.clone());
                e.path = Some(path.to_string());
                self.errors.push(e.at(self.schema, edge.span));
                None
            }
        }
    }
}
