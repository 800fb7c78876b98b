//! Streaming validation of many rows of one model.
//!
//! # How it works
//!
//! Validation has two stages.
//!
//! 1. **Row stage** ([`RowStage`]): each row is checked on its own as it arrives (types,
//!    constraints, index completeness, multiple values inside the row, assertions) and, when its
//!    index is complete, reduced to hashes. This stage is pure per row, so for text input it can
//!    run on another thread ([`TextPreparer`]).
//! 2. **Record stage** ([`Records`]): rows are folded into records by index value. For every
//!    record only these are kept:
//!    - one 64-bit hash per index (the index's values hashed in order: `1`, `1.0` and `"1"` read
//!      as a Number are the same key),
//!    - the row numbers of its rows (one `u32` when the record has one row),
//!    - one 32-bit hash per single-valued (or `+`) non-index edge, enough to notice that a later
//!      row gives a different value,
//!    - a flag byte,
//!
//!    plus one slot per record in a hash table per index. Memory therefore grows with the number
//!    of distinct index values and with the number of edges, never with the size of the values.
//!    Messages quote the values of the row being read when a conflict is found.
//!
//! Hash collisions: two different index values sharing a 64-bit hash would be taken for one
//! key (about 1 in 10^7 for 10^9 distinct keys); two different edge values sharing a 32-bit hash
//! in the same record would hide a `MultipleValues` (1 in 4·10^9 per compared pair).

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::Arc;

use hashbrown::HashTable;
use serde_json::Value;

use super::error::{cut, show_json, show_rows, BatchReport, ErrorKind, ValidationError};
use super::record::{check_assertion, edge_for_field, unknown_model, AssertOutcome, RecordCx};
use super::value::{coerce_json, coerce_text, eval, hash_val, hasher, satisfies, truthy, Val};
use super::{edge_kind, expected_text, ref_prim, EdgeKind};
use crate::schema::{Assertion, Cardinality, Edge, Expr, Model, Primitive, Schema};

/// Cell hash of "no value".
const NONE: u32 = 0;
/// Cell hash of "had a value, but an invalid one" (no `MissingValue` on top of `InvalidType`).
const INVALID: u32 = 1;

/// Record flag: a value of one of its indexes also belongs to another record.
const F_NON_UNIQUE: u8 = 1;
/// Record flag: a single-valued edge has several values.
const F_MULTIPLE: u8 = 2;

/// A value of the current row. Strings live in the row's text buffer.
#[derive(Debug, Clone, Copy)]
enum SVal {
    Num(f64),
    Bool(bool),
    Str(u32, u32),
}

#[derive(Clone)]
struct EdgeInfo<'s> {
    edge: &'s Edge,
    /// Primitive a text cell (or scalar) is read as: the edge's own, or the referenced index's.
    prim: Option<Primitive>,
    constraint: Option<&'s Expr>,
    target: Option<&'s Model>,
    expected: String,
    /// Position among the record's cell hashes.
    slot: Option<usize>,
    in_index: bool,
}

/// What both stages know about the model, computed once.
struct Plan<'s> {
    schema: &'s Schema,
    model: &'s Model,
    info: Vec<EdgeInfo<'s>>,
    indexes: Vec<Vec<usize>>,
    index_edges: Vec<usize>,
    assertions: Vec<(&'s Assertion, Vec<Option<usize>>)>,
    k: usize,
    e: usize,
}

impl<'s> Plan<'s> {
    fn new(schema: &'s Schema, model: &'s Model) -> Self {
        let mut info = Vec::with_capacity(model.edges.len());
        let mut e = 0;
        for edge in &model.edges {
            let in_index = model.is_index_edge(&edge.name);
            let (prim, constraint, target) = match edge_kind(schema, &edge.ty) {
                EdgeKind::Prim(p, c) => (Some(p), c, None),
                EdgeKind::Model(t) => match ref_prim(schema, t) {
                    Some((p, c, _)) => (Some(p), c, Some(t)),
                    None => (None, None, Some(t)),
                },
                EdgeKind::Unknown => (None, None, None),
            };
            let slot = if !in_index
                && (!edge.cardinality.is_multiple() || edge.cardinality == Cardinality::AtLeastOne)
            {
                e += 1;
                Some(e - 1)
            } else {
                None
            };
            info.push(EdgeInfo {
                edge,
                prim,
                constraint,
                target,
                expected: expected_text(schema, &edge.ty),
                slot,
                in_index,
            });
        }
        let pos = |n: &String| model.edge_position(n).unwrap_or(0);
        let indexes: Vec<Vec<usize>> = model
            .indexes
            .iter()
            .map(|ix| ix.edges.iter().map(pos).collect())
            .collect();
        let mut index_edges: Vec<usize> = indexes.iter().flatten().copied().collect();
        index_edges.sort_unstable();
        index_edges.dedup();
        let assertions = model
            .assertions
            .iter()
            .map(|a| (a, a.edges.iter().map(|n| model.edge_position(n)).collect()))
            .collect();
        let k = indexes.len().max(1);
        Plan {
            schema,
            model,
            info,
            indexes,
            index_edges,
            assertions,
            k,
            e,
        }
    }

    /// Two indexes can hold equal values only with the same arity and value types.
    fn comparable(&self, i: usize, j: usize) -> bool {
        let (a, b) = (&self.indexes[i], &self.indexes[j]);
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(&x, &y)| self.info[x].prim == self.info[y].prim)
    }

    fn index_names(&self, i: usize) -> String {
        self.indexes[i]
            .iter()
            .map(|&p| self.info[p].edge.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The mapping of a text header to edges, from [`BatchValidator::columns`].
#[derive(Debug, Clone, Default)]
pub struct Columns {
    map: Vec<Option<u32>>,
    /// Per edge, the columns feeding it.
    edge_cols: Vec<Vec<u32>>,
}

impl Columns {
    /// The edge position column `i` feeds, if any.
    pub fn edge_of(&self, i: usize) -> Option<usize> {
        self.map.get(i).copied().flatten().map(|p| p as usize)
    }
}

/// Grouping key of errors that are reported once per rule with all their rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Group {
    Invalid(u32),
    RowMultiple(u32),
    MissingIndex(u32),
    Assertion(u32),
    NonUnique(u32, u64),
    Conflict(u32, u32, u64),
    RecordMultiple(u32, u32),
}

/// Values of the assertion edges of a record split over several rows, and the assertions
/// (bit set) still to check on the merged values.
type Pending = (Vec<Vec<Val<'static>>>, u64);

/// Errors and warnings of one stage, grouped by rule.
#[derive(Default)]
struct Sink {
    errors: Vec<ValidationError>,
    warnings: Vec<ValidationError>,
    groups: HashMap<Group, usize>,
    unknown_fields: HashMap<String, usize>,
}

impl Sink {
    fn group(&mut self, g: Group, row: usize, make: impl FnOnce() -> ValidationError) {
        if let Some(&i) = self.groups.get(&g) {
            self.errors[i].rows.push(row);
            return;
        }
        let mut e = make();
        e.rows.push(row);
        self.groups.insert(g, self.errors.len());
        self.errors.push(e);
    }

    /// Moves another stage's problems in, merging errors of the same rule.
    fn merge(&mut self, other: Sink) {
        let mut by_index: HashMap<usize, Group> = HashMap::new();
        for (g, i) in other.groups {
            by_index.insert(i, g);
        }
        for (i, e) in other.errors.into_iter().enumerate() {
            match by_index
                .get(&i)
                .and_then(|g| self.groups.get(g).map(|&j| (g, j)))
            {
                Some((_, j)) => self.errors[j].rows.extend(e.rows),
                None => {
                    if let Some(g) = by_index.get(&i) {
                        self.groups.insert(*g, self.errors.len());
                    }
                    self.errors.push(e);
                }
            }
        }
        let mut by_index: HashMap<usize, String> = HashMap::new();
        for (k, i) in other.unknown_fields {
            by_index.insert(i, k);
        }
        for (i, w) in other.warnings.into_iter().enumerate() {
            match by_index
                .get(&i)
                .and_then(|k| self.unknown_fields.get(k).map(|&j| (k, j)))
            {
                Some((_, j)) => self.warnings[j].rows.extend(w.rows),
                None => {
                    if let Some(k) = by_index.get(&i) {
                        self.unknown_fields.insert(k.clone(), self.warnings.len());
                    }
                    self.warnings.push(w);
                }
            }
        }
    }
}

/// The values of the row being folded, for messages and split-record assertions.
trait RowValues {
    /// The valid values of edge `p` in the row.
    fn values(&self, p: usize) -> Vec<Val<'_>>;
}

/// The row stage: checks one row at a time and hashes its keys.
struct RowStage<'s> {
    plan: Arc<Plan<'s>>,
    /// Number of the next row.
    rows: usize,
    text: String,
    slots: Vec<Vec<SVal>>,
    invalid: Vec<bool>,
    /// Outputs for the current row: index hashes and cell hashes.
    subs: Vec<u64>,
    cells: Vec<u32>,
    /// Edges some row mentioned (a CSV column or a JSON field, even when null).
    seen: Vec<bool>,
    sink: Sink,
}

/// What the row stage found about a row.
#[derive(Debug, Clone, Copy)]
struct RowOutcome {
    keyed: bool,
    /// Assertions (bit set) the row carries only some edges of.
    partial: u64,
}

impl<'s> RowStage<'s> {
    fn new(plan: Arc<Plan<'s>>, rows: usize) -> Self {
        let n = plan.info.len();
        let (k, e) = (plan.k, plan.e);
        RowStage {
            plan,
            rows,
            text: String::new(),
            slots: vec![Vec::new(); n],
            invalid: vec![false; n],
            subs: vec![0; k],
            cells: vec![NONE; e],
            seen: vec![false; n],
            sink: Sink::default(),
        }
    }

    fn val(&self, v: SVal) -> Val<'_> {
        match v {
            SVal::Num(n) => Val::Num(n),
            SVal::Bool(b) => Val::Bool(b),
            SVal::Str(a, b) => Val::Str(self.text[a as usize..b as usize].into()),
        }
    }

    fn same(&self, a: SVal, b: SVal) -> bool {
        match (a, b) {
            (SVal::Num(x), SVal::Num(y)) => x == y,
            (SVal::Bool(x), SVal::Bool(y)) => x == y,
            (SVal::Str(a0, a1), SVal::Str(b0, b1)) => {
                self.text[a0 as usize..a1 as usize] == self.text[b0 as usize..b1 as usize]
            }
            _ => false,
        }
    }

    fn hash_one(&self, v: SVal, h: &mut impl Hasher) {
        match v {
            SVal::Num(n) => hash_val(h, &Val::Num(n)),
            SVal::Bool(b) => hash_val(h, &Val::Bool(b)),
            SVal::Str(a, b) => hash_val(h, &Val::Str(self.text[a as usize..b as usize].into())),
        }
    }

    fn store(&mut self, p: usize, v: Val) {
        let sv = match v {
            Val::Num(n) => SVal::Num(n),
            Val::Bool(b) => SVal::Bool(b),
            Val::Str(s) => {
                let a = self.text.len() as u32;
                self.text.push_str(&s);
                SVal::Str(a, self.text.len() as u32)
            }
            Val::Missing => return,
        };
        self.slots[p].push(sv);
    }

    fn invalid_value(&mut self, p: usize, shown: &str, extra: &str) {
        self.invalid[p] = true;
        let plan = &self.plan;
        let info = &plan.info[p];
        self.sink.group(Group::Invalid(p as u32), self.rows, || {
            let mut e = ValidationError::new(
                ErrorKind::InvalidType,
                &plan.model.name,
                format!(
                    "{}.{}: '{}' is not a valid {}{extra}",
                    plan.model.name,
                    info.edge.name,
                    cut(shown),
                    info.expected
                ),
            );
            e.edges.push(info.edge.name.clone());
            e.value = Some(cut(shown));
            e.expected = Some(info.expected.clone());
            e.at(plan.schema, info.edge.span)
        });
    }

    /// Loads a row of text cells.
    fn load_text<'r>(&mut self, columns: &Columns, cells: impl IntoIterator<Item = &'r str>) {
        let plan = Arc::clone(&self.plan);
        for (i, cell) in cells.into_iter().enumerate() {
            let Some(Some(p)) = columns.map.get(i) else {
                continue;
            };
            if cell.is_empty() {
                continue;
            }
            let p = *p as usize;
            let info = &plan.info[p];
            let Some(prim) = info.prim else {
                self.invalid_value(
                    p,
                    cell,
                    " (a model with a composite index cannot be referenced from a text cell)",
                );
                continue;
            };
            match coerce_text(prim, cell) {
                Ok(v) if info.constraint.is_none_or(|c| satisfies(c, &v)) => {
                    let sv = match v {
                        Val::Num(n) => SVal::Num(n),
                        Val::Bool(b) => SVal::Bool(b),
                        _ => {
                            let s = self.text.len() as u32;
                            self.text.push_str(cell);
                            SVal::Str(s, self.text.len() as u32)
                        }
                    };
                    self.slots[p].push(sv);
                }
                _ => self.invalid_value(p, cell, ""),
            }
        }
    }

    /// Loads a JSON row. Returns false when the row is not an object (reported).
    fn load_json(&mut self, record: &Value) -> bool {
        let plan = Arc::clone(&self.plan);
        let row = self.rows;
        let Value::Object(obj) = record else {
            let mut e = ValidationError::new(
                ErrorKind::InvalidType,
                &plan.model.name,
                format!(
                    "row {row}: expected a {} record (an object), found {}",
                    plan.model.name,
                    show_json(record)
                ),
            );
            e.rows.push(row);
            e.value = Some(show_json(record));
            e.expected = Some(plan.model.name.clone());
            self.sink.errors.push(e.at(plan.schema, plan.model.span));
            return false;
        };
        for (k, v) in obj {
            let Some((p, _)) = edge_for_field(plan.schema, plan.model, k) else {
                self.unknown_field(k, v);
                continue;
            };
            self.seen[p] = true;
            match v {
                Value::Null => {}
                Value::Array(items) => {
                    for (j, item) in items.iter().enumerate() {
                        if !item.is_null() {
                            let path = format!("{}[{j}]", plan.info[p].edge.name);
                            self.json_value(p, item, &path);
                        }
                    }
                }
                _ => {
                    let path = plan.info[p].edge.name.clone();
                    self.json_value(p, v, &path);
                }
            }
        }
        true
    }

    fn unknown_field(&mut self, k: &str, v: &Value) {
        let row = self.rows;
        if let Some(&i) = self.sink.unknown_fields.get(k) {
            self.sink.warnings[i].rows.push(row);
            return;
        }
        let plan = &self.plan;
        let mut w = ValidationError::new(
            ErrorKind::UnknownEdge,
            &plan.model.name,
            format!("'{k}' is not an edge of {}; dropped", plan.model.name),
        );
        w.edges.push(k.to_string());
        w.rows.push(row);
        w.value = Some(show_json(v));
        let w = w.at(plan.schema, plan.model.span);
        self.sink
            .unknown_fields
            .insert(k.to_string(), self.sink.warnings.len());
        self.sink.warnings.push(w);
    }

    fn json_value(&mut self, p: usize, item: &Value, path: &str) {
        let plan = Arc::clone(&self.plan);
        let info = &plan.info[p];
        if let (Some(prim), false) = (
            info.prim.filter(|_| info.target.is_none()),
            item.is_object(),
        ) {
            match coerce_json(prim, item) {
                Ok(v) if info.constraint.is_none_or(|c| satisfies(c, &v)) => self.store(p, v),
                _ => self.invalid_value(p, &show_json(item), ""),
            }
            return;
        }
        // Model-typed edge: nested record or reference, checked like in validate_record.
        let mut cx = RecordCx::new(plan.schema);
        let got = cx.value(plan.model, info.edge, item, &|| path.to_string(), 1);
        for mut e in cx.errors {
            e.rows.push(self.rows);
            self.sink.errors.push(e);
        }
        for mut w in cx.warnings {
            w.rows.push(self.rows);
            self.sink.warnings.push(w);
        }
        match got {
            Some((v, _)) => self.store(p, v),
            None => self.invalid[p] = true,
        }
    }

    /// Checks the loaded row and, when its index is complete, hashes it into `subs`/`cells`.
    /// Advances the row counter; the loaded values stay until [`RowStage::clear`].
    fn check(&mut self) -> RowOutcome {
        let plan = Arc::clone(&self.plan);
        let row = self.rows;
        self.rows += 1;
        let n = plan.info.len();

        // Several values for a single-valued edge inside the row.
        for p in 0..n {
            if self.slots[p].len() < 2 || plan.info[p].edge.cardinality.is_multiple() {
                continue;
            }
            let first = self.slots[p][0];
            if self.slots[p].iter().all(|&v| self.same(v, first)) {
                self.slots[p].truncate(1);
                continue;
            }
            let mut shown: Vec<String> = Vec::new();
            for &v in &self.slots[p] {
                let s = self.val(v).show();
                if !shown.contains(&s) {
                    shown.push(s);
                }
            }
            let info = &plan.info[p];
            self.sink.group(Group::RowMultiple(p as u32), row, || {
                let mut e = ValidationError::new(
                    ErrorKind::MultipleValues,
                    &plan.model.name,
                    format!(
                        "{}.{} holds one value, a row gives {}: {}",
                        plan.model.name,
                        info.edge.name,
                        shown.len(),
                        shown.join(", ")
                    ),
                );
                e.edges.push(info.edge.name.clone());
                e.value = Some(cut(&shown.join(", ")));
                e.expected = Some(format!("one {}", info.expected));
                e.at(plan.schema, info.edge.span)
            });
            self.slots[p].clear();
            self.invalid[p] = true;
        }

        // Index completeness.
        let mut keyed = true;
        for &p in &plan.index_edges {
            if !self.slots[p].is_empty() {
                continue;
            }
            keyed = false;
            if self.invalid[p] {
                continue;
            }
            let info = &plan.info[p];
            self.sink.group(Group::MissingIndex(p as u32), row, || {
                let mut e = ValidationError::new(
                    ErrorKind::MissingIndex,
                    &plan.model.name,
                    format!(
                        "{}.{} is an index edge but has no value",
                        plan.model.name, info.edge.name
                    ),
                );
                e.edges.push(info.edge.name.clone());
                e.expected = Some(info.expected.clone());
                let span = plan
                    .model
                    .indexes
                    .iter()
                    .find(|ix| ix.edges.contains(&info.edge.name))
                    .map(|ix| ix.span)
                    .unwrap_or(info.edge.span);
                e.at(plan.schema, span)
            });
        }

        // Assertions on the row's values.
        let mut partial: u64 = 0;
        for (ai, (a, pos)) in plan.assertions.iter().enumerate() {
            let mut present = 0;
            let mut single = true;
            for p in pos.iter() {
                match p.map(|p| self.slots[p].len()).unwrap_or(0) {
                    0 => {}
                    1 => present += 1,
                    _ => {
                        present += 1;
                        single = false
                    }
                }
            }
            if present < pos.len() {
                if present > 0 && keyed && ai < 64 {
                    partial |= 1 << ai;
                }
                continue;
            }
            let outcome = if single {
                let lookup = |name: &str| -> Val<'_> {
                    match a.edges.iter().position(|e| e == name).and_then(|i| pos[i]) {
                        Some(p) => self.val(self.slots[p][0]),
                        None => Val::Missing,
                    }
                };
                match truthy(&eval(&a.expr, &Val::Missing, &lookup)) {
                    Some(false) => AssertOutcome::Fails(
                        pos.iter()
                            .zip(&a.edges)
                            .map(|(p, name)| {
                                format!(
                                    "{name}={}",
                                    p.map(|p| self.val(self.slots[p][0]).show())
                                        .unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    _ => AssertOutcome::Holds,
                }
            } else {
                let lists: Vec<Vec<Val<'_>>> = pos
                    .iter()
                    .map(|p| {
                        p.map(|p| self.slots[p].iter().map(|&v| self.val(v)).collect())
                            .unwrap_or_default()
                    })
                    .collect();
                check_assertion(a, &|i| lists[i].as_slice())
            };
            if let AssertOutcome::Fails(shown) = outcome {
                self.sink.group(Group::Assertion(ai as u32), row, || {
                    assertion_error(&plan, a, &shown)
                });
            }
        }

        if keyed {
            for (i, ix) in plan.indexes.iter().enumerate() {
                let mut h = hasher();
                for &p in ix {
                    self.hash_one(self.slots[p][0], &mut h);
                }
                self.subs[i] = h.finish();
            }
            for (p, info) in plan.info.iter().enumerate() {
                let Some(s) = info.slot else { continue };
                self.cells[s] = if self.slots[p].is_empty() {
                    if self.invalid[p] {
                        INVALID
                    } else {
                        NONE
                    }
                } else if info.edge.cardinality.is_multiple() {
                    2
                } else {
                    let mut h = hasher();
                    self.hash_one(self.slots[p][0], &mut h);
                    (h.finish() as u32).max(2)
                };
            }
        }
        RowOutcome { keyed, partial }
    }

    fn clear(&mut self) {
        for s in &mut self.slots {
            s.clear();
        }
        for f in &mut self.invalid {
            *f = false;
        }
        self.text.clear();
    }

    fn unreadable(&mut self, message: String) {
        let row = self.rows;
        self.rows += 1;
        let mut e = ValidationError::new(
            ErrorKind::Unreadable,
            &self.plan.model.name,
            format!("row {row}: {message}"),
        );
        e.rows.push(row);
        e.expected = Some(format!("a {} row", self.plan.model.name));
        self.sink.errors.push(e);
    }
}

impl RowValues for RowStage<'_> {
    fn values(&self, p: usize) -> Vec<Val<'_>> {
        self.slots[p].iter().map(|&v| self.val(v)).collect()
    }
}

fn assertion_error(plan: &Plan<'_>, a: &Assertion, shown: &str) -> ValidationError {
    let mut e = ValidationError::new(
        ErrorKind::AssertionFailed,
        &plan.model.name,
        format!(
            "{}: assertion `{}` failed for {shown}",
            plan.model.name, a.text
        ),
    );
    e.edges = a.edges.clone();
    e.value = Some(cut(shown));
    e.expected = Some(a.text.clone());
    e.at(plan.schema, a.span)
}

/// The record stage: rows folded into records by index value.
struct Records<'s> {
    plan: Arc<Plan<'s>>,
    subs: Vec<u64>,
    first_row: Vec<u32>,
    more_rows: HashMap<u32, Vec<u32>>,
    cells: Vec<u32>,
    flags: Vec<u8>,
    by_index: Vec<HashTable<u32>>,
    /// Records whose primary index value was already taken by another record (only in
    /// `NonUniqueSubIndex` cases), by full key.
    side: HashMap<u64, u32>,
    pending: HashMap<u32, Pending>,
    owners: Vec<Option<u32>>,
    sink: Sink,
}

fn mix(subs: &[u64]) -> u64 {
    if subs.len() == 1 {
        return subs[0];
    }
    let mut h = hasher();
    for s in subs {
        h.write_u64(*s);
    }
    h.finish()
}

/// `id=3, name=b` from a row's values of the given edges.
fn show_key(plan: &Plan<'_>, values: &dyn RowValues, edges: &[usize]) -> String {
    edges
        .iter()
        .map(|&p| {
            let v = values.values(p).first().map(Val::show).unwrap_or_default();
            format!("{}={v}", plan.info[p].edge.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'s> Records<'s> {
    fn new(plan: Arc<Plan<'s>>) -> Self {
        let k = plan.k;
        Records {
            plan,
            subs: Vec::new(),
            first_row: Vec::new(),
            more_rows: HashMap::new(),
            cells: Vec::new(),
            flags: Vec::new(),
            by_index: (0..k).map(|_| HashTable::new()).collect(),
            side: HashMap::new(),
            pending: HashMap::new(),
            owners: vec![None; k],
            sink: Sink::default(),
        }
    }

    fn reserve(&mut self, records: usize) {
        let (k, e) = (self.plan.k, self.plan.e);
        self.subs.reserve(records * k);
        self.first_row.reserve(records);
        self.cells.reserve(records * e);
        self.flags.reserve(records);
        let subs = &self.subs;
        for (i, t) in self.by_index.iter_mut().enumerate() {
            t.reserve(records, |&r| subs[r as usize * k + i]);
        }
    }

    fn record_rows(&self, r: u32) -> Vec<usize> {
        let mut rows = vec![self.first_row[r as usize] as usize];
        if let Some(more) = self.more_rows.get(&r) {
            rows.extend(more.iter().map(|&x| x as usize));
        }
        rows
    }

    /// Folds a row with a complete index into its record.
    fn fold(
        &mut self,
        row: usize,
        subs: &[u64],
        cells: &[u32],
        partial: u64,
        values: &dyn RowValues,
    ) {
        let k = self.plan.k;
        let full = mix(subs);
        // All index lookups first: they are independent, so their cache misses overlap.
        let s = &self.subs;
        let mut owners = std::mem::take(&mut self.owners);
        for (i, table) in self.by_index.iter().enumerate() {
            let h = subs[i];
            owners[i] = table.find(h, |&r| s[r as usize * k + i] == h).copied();
        }
        let same = |r: u32| s[r as usize * k..(r as usize + 1) * k] == *subs;
        let found = match owners[0] {
            None => None,
            Some(r) if same(r) => Some(r),
            Some(_) => self.side.get(&full).copied().filter(|&r| same(r)),
        };
        let rec = match found {
            Some(r) => {
                self.duplicate_row(r, row, cells, subs, values);
                r
            }
            None => self.new_record(row, cells, subs, full, &owners, values),
        };
        self.owners = owners;

        // Assertions over edges that this row does not all carry: keep their values.
        if partial != 0 || (!self.pending.is_empty() && self.pending.contains_key(&rec)) {
            let n = self.plan.info.len();
            let mut entry = self
                .pending
                .remove(&rec)
                .unwrap_or_else(|| (vec![Vec::new(); n], 0));
            entry.1 |= partial;
            for (_, pos) in &self.plan.assertions {
                for p in pos.iter().flatten() {
                    for v in values.values(*p) {
                        let v = v.into_owned();
                        if !entry.0[*p].contains(&v) {
                            entry.0[*p].push(v);
                        }
                    }
                }
            }
            self.pending.insert(rec, entry);
        }
    }

    fn new_record(
        &mut self,
        row: usize,
        cells: &[u32],
        subs: &[u64],
        full: u64,
        owners: &[Option<u32>],
        values: &dyn RowValues,
    ) -> u32 {
        let k = self.plan.k;
        let r = self.first_row.len() as u32;
        self.subs.extend_from_slice(subs);
        self.first_row.push(row as u32);
        self.cells.extend_from_slice(cells);
        self.flags.push(0);
        for (i, owner) in owners.iter().enumerate() {
            let h = subs[i];
            match owner {
                None => {
                    let s = &self.subs;
                    self.by_index[i].insert_unique(h, r, |&x| s[x as usize * k + i]);
                }
                Some(o) => {
                    if i == 0 {
                        self.side.insert(full, r);
                    }
                    self.non_unique(i, h, *o, r, row, values);
                }
            }
        }
        r
    }

    /// A second record has the same value for index `i` as record `o`.
    fn non_unique(&mut self, i: usize, h: u64, o: u32, r: u32, row: usize, values: &dyn RowValues) {
        self.flags[r as usize] |= F_NON_UNIQUE;
        let g = Group::NonUnique(i as u32, h);
        if let Some(&e) = self.sink.groups.get(&g) {
            self.sink.errors[e].rows.push(row);
            return;
        }
        self.flags[o as usize] |= F_NON_UNIQUE;
        let plan = Arc::clone(&self.plan);
        let mut rows = self.record_rows(o);
        rows.push(row);
        let ix = &plan.indexes[i];
        let names: Vec<String> = ix.iter().map(|&p| plan.info[p].edge.name.clone()).collect();
        let value = show_key(&plan, values, ix);
        let full_key = show_key(&plan, values, &plan.index_edges);
        let mut e = ValidationError::new(
            ErrorKind::NonUniqueSubIndex,
            &plan.model.name,
            format!(
                "{}: index ({}) value {value} belongs to several records (e.g. {full_key} in row {row} and another in row {})",
                plan.model.name,
                names.join(", "),
                self.first_row[o as usize]
            ),
        );
        e.edges = names;
        e.rows = rows;
        e.value = Some(cut(&value));
        e.key = Some(value);
        e.expected = Some("a unique index value".to_string());
        let span = plan
            .model
            .indexes
            .get(i)
            .map(|ix| ix.span)
            .unwrap_or(plan.model.span);
        let e = e.at(plan.schema, span);
        self.sink.groups.insert(g, self.sink.errors.len());
        self.sink.errors.push(e);
    }

    fn duplicate_row(
        &mut self,
        r: u32,
        row: usize,
        cells: &[u32],
        subs: &[u64],
        values: &dyn RowValues,
    ) {
        self.more_rows.entry(r).or_default().push(row as u32);
        let plan = Arc::clone(&self.plan);
        let e = plan.e;
        if self.flags[r as usize] & F_NON_UNIQUE != 0 {
            for (i, &h) in subs.iter().enumerate() {
                if let Some(&ei) = self.sink.groups.get(&Group::NonUnique(i as u32, h)) {
                    self.sink.errors[ei].rows.push(row);
                }
            }
        }
        for (p, info) in plan.info.iter().enumerate() {
            let Some(s) = info.slot else { continue };
            let new = cells[s];
            let at = r as usize * e + s;
            let old = self.cells[at];
            if new == NONE || new == INVALID {
                if old == NONE {
                    self.cells[at] = new;
                }
                continue;
            }
            if old == NONE || old == INVALID || info.edge.cardinality.is_multiple() {
                self.cells[at] = new;
                continue;
            }
            let g = Group::RecordMultiple(r, p as u32);
            if old == new && !self.sink.groups.contains_key(&g) {
                continue;
            }
            if let Some(&ei) = self.sink.groups.get(&g) {
                self.sink.errors[ei].rows.push(row);
                continue;
            }
            // A different value than an earlier row of the same record.
            self.flags[r as usize] |= F_MULTIPLE;
            let mut rows: Vec<usize> = self.record_rows(r);
            rows.retain(|&x| x != row);
            rows.push(row);
            let key = show_key(&plan, values, &plan.index_edges);
            let shown = values.values(p).first().map(Val::show).unwrap_or_default();
            let first = self.first_row[r as usize];
            let mut err = ValidationError::new(
                ErrorKind::MultipleValues,
                &plan.model.name,
                format!(
                    "{}({key}).{} holds one value, but row {row} gives '{shown}', different from an earlier row (row {first})",
                    plan.model.name, info.edge.name
                ),
            );
            err.edges.push(info.edge.name.clone());
            err.rows = rows;
            err.key = Some(key);
            err.value = Some(shown);
            err.expected = Some(format!("one {}", info.expected));
            let err = err.at(plan.schema, info.edge.span);
            self.sink.groups.insert(g, self.sink.errors.len());
            self.sink.errors.push(err);
        }
    }

    /// The checks that need every row.
    fn finish(&mut self, seen: &[bool]) {
        let plan = Arc::clone(&self.plan);
        let records = self.first_row.len();
        let (e, k) = (plan.e, plan.k);

        // Missing values of required edges whose column the batch has.
        for (p, info) in plan.info.iter().enumerate() {
            if info.edge.cardinality.allows_none() || info.in_index {
                continue;
            }
            let Some(s) = info.slot else { continue };
            if !seen[p] {
                let mut w = ValidationError::new(
                    ErrorKind::MissingColumn,
                    &plan.model.name,
                    format!(
                        "{}.{} is required but no row has a '{}' field; not checked",
                        plan.model.name,
                        info.edge.name,
                        info.edge.column()
                    ),
                );
                w.edges.push(info.edge.name.clone());
                self.sink.warnings.push(w.at(plan.schema, info.edge.span));
                continue;
            }
            let mut rows = Vec::new();
            for r in 0..records {
                if self.cells[r * e + s] == NONE && self.flags[r] & F_NON_UNIQUE == 0 {
                    rows.extend(self.record_rows(r as u32));
                }
            }
            if !rows.is_empty() {
                let mut err = ValidationError::new(
                    ErrorKind::MissingValue,
                    &plan.model.name,
                    format!(
                        "{}.{} is required ({}{}) but has no value",
                        plan.model.name,
                        info.edge.name,
                        info.expected,
                        info.edge.cardinality.marker()
                    ),
                );
                err.edges.push(info.edge.name.clone());
                err.rows = rows;
                err.expected = Some(info.expected.clone());
                self.sink.errors.push(err.at(plan.schema, info.edge.span));
            }
        }

        // Conflicts between indexes that can hold equal values.
        for i in 0..k {
            for j in 0..k {
                if i == j || !plan.comparable(i, j) {
                    continue;
                }
                let (lo, hi) = (i.min(j), i.max(j));
                for r in 0..records as u32 {
                    if self.flags[r as usize] != 0 {
                        continue;
                    }
                    let h = self.subs[r as usize * k + j];
                    let s = &self.subs;
                    let Some(&o) = self.by_index[i].find(h, |&x| s[x as usize * k + i] == h) else {
                        continue;
                    };
                    if o == r || self.flags[o as usize] != 0 {
                        continue;
                    }
                    let g = Group::Conflict(lo as u32, hi as u32, h);
                    let mut rows = self.record_rows(o);
                    rows.extend(self.record_rows(r));
                    if let Some(&ei) = self.sink.groups.get(&g) {
                        self.sink.errors[ei].rows.extend(rows);
                        continue;
                    }
                    let mut names: Vec<String> = Vec::new();
                    for &p in plan.indexes[lo].iter().chain(&plan.indexes[hi]) {
                        let n = &plan.info[p].edge.name;
                        if !names.contains(n) {
                            names.push(n.clone());
                        }
                    }
                    let ni = plan.index_names(i);
                    let nj = plan.index_names(j);
                    let mut err = ValidationError::new(
                        ErrorKind::IndexConflict,
                        &plan.model.name,
                        format!(
                            "{}: the ({nj}) value of the record in row {} equals the ({ni}) value of the record in row {}; a lookup by that value is ambiguous",
                            plan.model.name,
                            self.first_row[r as usize],
                            self.first_row[o as usize]
                        ),
                    );
                    err.edges = names;
                    err.rows = rows;
                    err.expected = Some(format!(
                        "({ni}) and ({nj}) values that do not overlap across records"
                    ));
                    let err = err.at(plan.schema, plan.model.indexes[j].span);
                    self.sink.groups.insert(g, self.sink.errors.len());
                    self.sink.errors.push(err);
                }
            }
        }

        // Assertions over records split across rows.
        let mut pending: Vec<(u32, Pending)> = self.pending.drain().collect();
        pending.sort_by_key(|(r, _)| *r);
        for (r, (values, mask)) in pending {
            if self.flags[r as usize] != 0 {
                continue;
            }
            for (ai, (a, pos)) in plan.assertions.iter().enumerate().take(64) {
                if mask & (1 << ai) == 0 {
                    continue;
                }
                let lists: Vec<&[Val<'static>]> = pos
                    .iter()
                    .map(|p| p.map(|p| values[p].as_slice()).unwrap_or(&[]))
                    .collect();
                if let AssertOutcome::Fails(shown) = check_assertion(a, &|i| lists[i]) {
                    let mut err = assertion_error(&plan, a, &shown);
                    err.rows = self.record_rows(r);
                    self.sink.errors.push(err);
                }
            }
        }
    }
}

/// Validates a stream of rows of one model. See the module docs for what is kept in memory.
///
/// ```
/// # let schema = kye_lang::validate::doc_example_schema();
/// use kye_lang::validate::BatchValidator;
/// use serde_json::json;
/// let mut b = BatchValidator::new(&schema, "User").unwrap();
/// b.push_record(&json!({"id": 1, "name": "Ann"}));
/// b.push_record(&json!({"id": 1, "name": "Bob"}));   // same record, different name
/// let cols = b.columns(&["id", "name", "age"]);
/// b.push_text_row(&cols, ["2", "Cy", "-3"]);          // assertion age >= 0 fails
/// let report = b.finish();
/// let kinds: Vec<&str> = report.errors.iter().map(|e| e.kind.name()).collect();
/// assert_eq!(kinds, ["MultipleValues", "AssertionFailed"]);
/// assert_eq!(report.errors[0].rows, [0, 1]);
/// ```
pub struct BatchValidator<'s> {
    plan: Arc<Plan<'s>>,
    stage: RowStage<'s>,
    records: Records<'s>,
}

impl<'s> BatchValidator<'s> {
    /// A validator for rows of `model`. Fails with [`ErrorKind::UnknownModel`] when the schema
    /// has no such model.
    #[allow(clippy::result_large_err)] // Built once per batch; the error is the report's own type.
    pub fn new(schema: &'s Schema, model: &str) -> Result<Self, ValidationError> {
        let model = schema
            .model(model)
            .ok_or_else(|| unknown_model(schema, model))?;
        let plan = Arc::new(Plan::new(schema, model));
        Ok(BatchValidator {
            stage: RowStage::new(Arc::clone(&plan), 0),
            records: Records::new(Arc::clone(&plan)),
            plan,
        })
    }

    /// Reserves room for about `records` distinct records (avoids rehashing when known).
    pub fn reserve(&mut self, records: usize) {
        self.records.reserve(records);
    }

    /// The model being validated.
    pub fn model(&self) -> &'s Model {
        self.plan.model
    }

    /// Number of rows pushed so far.
    pub fn rows(&self) -> usize {
        self.stage.rows
    }

    /// Maps a header row to edges: a column matches an edge by title, else by name. Unknown
    /// columns are reported once as [`ErrorKind::UnknownEdge`] warnings and ignored.
    pub fn columns<S: AsRef<str>>(&mut self, header: &[S]) -> Columns {
        let plan = &self.plan;
        let mut map = Vec::with_capacity(header.len());
        let mut edge_cols = vec![Vec::new(); plan.info.len()];
        for (c, h) in header.iter().enumerate() {
            let h = h.as_ref();
            match edge_for_field(plan.schema, plan.model, h) {
                Some((p, _)) => {
                    self.stage.seen[p] = true;
                    map.push(Some(p as u32));
                    edge_cols[p].push(c as u32);
                }
                None => {
                    let mut w = ValidationError::new(
                        ErrorKind::UnknownEdge,
                        &plan.model.name,
                        format!(
                            "column '{h}' is not an edge of {}; ignored",
                            plan.model.name
                        ),
                    );
                    w.edges.push(h.to_string());
                    self.stage
                        .sink
                        .warnings
                        .push(w.at(plan.schema, plan.model.span));
                    map.push(None);
                }
            }
        }
        Columns { map, edge_cols }
    }

    fn fold_current(&mut self, outcome: RowOutcome) {
        if outcome.keyed {
            let row = self.stage.rows - 1;
            let stage = &self.stage;
            self.records
                .fold(row, &stage.subs, &stage.cells, outcome.partial, stage);
        }
        self.stage.clear();
    }

    /// Pushes one row of text cells (a CSV record), in header order. Cells are cast per the
    /// edge's type; an empty cell is no value.
    pub fn push_text_row<'r, I>(&mut self, columns: &Columns, cells: I)
    where
        I: IntoIterator<Item = &'r str>,
    {
        self.stage.load_text(columns, cells);
        let outcome = self.stage.check();
        self.fold_current(outcome);
    }

    /// Pushes one row given as a JSON object (a record, or part of one). A list gives several
    /// values; nested records of model-typed edges are validated recursively.
    pub fn push_record(&mut self, record: &Value) {
        if self.stage.load_json(record) {
            let outcome = self.stage.check();
            self.fold_current(outcome);
        } else {
            self.stage.rows += 1;
            self.stage.clear();
        }
    }

    /// Counts a row that could not be read at all (e.g. a line of JSON Lines that is not JSON,
    /// a CSV record that is not UTF-8) and reports it as an [`ErrorKind::Unreadable`] error
    /// of that row, so the positions of later rows stay right.
    pub fn push_unreadable_row(&mut self, message: impl Into<String>) {
        self.stage.unreadable(message.into());
    }

    /// A row checker for text rows that can run on another thread: it does the per-row work
    /// (casting, constraints, assertions, hashing) and hands batches to
    /// [`BatchValidator::push_prepared`], which only folds rows into records. Rows it checks
    /// are numbered after the rows pushed so far; push rows only through it until
    /// [`BatchValidator::join`].
    pub fn text_preparer(&self, columns: &Columns) -> TextPreparer<'s> {
        TextPreparer {
            stage: RowStage::new(Arc::clone(&self.plan), self.stage.rows),
            columns: columns.clone(),
        }
    }

    /// Folds a batch of rows checked by a [`TextPreparer`] into records, and empties it for
    /// reuse.
    pub fn push_prepared(&mut self, batch: &mut PreparedRows) {
        let plan = Arc::clone(&self.plan);
        let (k, e) = (plan.k, plan.e);
        let mut keyed = 0usize;
        for (i, row) in batch.rows.iter().enumerate() {
            let Some(fields) = row.fields else { continue };
            if !row.keyed {
                continue;
            }
            let view = PreparedView {
                plan: &plan,
                columns: &batch.columns,
                text: &batch.text,
                ends: &batch.ends,
                first: fields.0 as usize,
                len: fields.1 as usize,
            };
            self.records.fold(
                batch.first_row + i,
                &batch.subs[keyed * k..(keyed + 1) * k],
                &batch.cells[keyed * e..(keyed + 1) * e],
                row.partial,
                &view,
            );
            keyed += 1;
        }
        self.stage.rows = self.stage.rows.max(batch.first_row + batch.rows.len());
        batch.clear();
    }

    /// Takes back a [`TextPreparer`]'s problems and row count once its rows are all pushed.
    pub fn join(&mut self, preparer: TextPreparer<'s>) {
        let stage = preparer.stage;
        self.stage.rows = self.stage.rows.max(stage.rows);
        for (s, o) in self.stage.seen.iter_mut().zip(&stage.seen) {
            *s |= *o;
        }
        self.stage.sink.merge(stage.sink);
    }

    /// Ends the batch: checks what needs every row (missing values, conflicts between indexes,
    /// assertions over records split across rows) and returns the report. Errors are in the
    /// order of their first row; rows in each error are sorted.
    pub fn finish(mut self) -> BatchReport {
        self.records.finish(&self.stage.seen);
        let records = self.records.first_row.len();
        let rows = self.stage.rows;
        let mut sink = std::mem::take(&mut self.stage.sink);
        sink.merge(std::mem::take(&mut self.records.sink));
        let mut errors = sink.errors;
        let mut warnings = sink.warnings;
        for err in errors.iter_mut().chain(warnings.iter_mut()) {
            err.rows.sort_unstable();
            err.rows.dedup();
            if err.rows.len() > 1 || (err.rows.len() == 1 && !err.message.contains("row")) {
                err.message = format!("{} ({})", err.message, show_rows(&err.rows));
            }
        }
        let first = |e: &ValidationError| e.rows.first().copied().unwrap_or(usize::MAX);
        errors.sort_by_key(first);
        BatchReport {
            valid: errors.is_empty(),
            errors,
            warnings,
            rows,
            records,
        }
    }
}

/// Checks text rows for a [`BatchValidator`], possibly on another thread
/// (see [`BatchValidator::text_preparer`]).
pub struct TextPreparer<'s> {
    stage: RowStage<'s>,
    columns: Columns,
}

impl TextPreparer<'_> {
    /// Checks one row of text cells and adds it to `batch`.
    pub fn push<'r, I>(&mut self, batch: &mut PreparedRows, cells: I)
    where
        I: IntoIterator<Item = &'r str>,
    {
        if batch.rows.is_empty() {
            batch.first_row = self.stage.rows;
            if batch.columns.map.len() != self.columns.map.len() {
                batch.columns = self.columns.clone();
            }
        }
        let first = batch.ends.len() as u32;
        for cell in cells {
            batch.text.push_str(cell);
            batch.ends.push(batch.text.len() as u32);
        }
        let len = batch.ends.len() as u32 - first;
        let view_cells = {
            let start = if first == 0 {
                0
            } else {
                batch.ends[first as usize - 1] as usize
            };
            let ends = &batch.ends[first as usize..];
            let text = &batch.text;
            let mut at = start;
            ends.iter().map(move |&e| {
                let f = text.get(at..e as usize).unwrap_or("");
                at = e as usize;
                f
            })
        };
        self.stage.load_text(&self.columns, view_cells);
        let outcome = self.stage.check();
        if outcome.keyed {
            batch.subs.extend_from_slice(&self.stage.subs);
            batch.cells.extend_from_slice(&self.stage.cells);
        }
        batch.rows.push(PreparedRow {
            fields: Some((first, len)),
            keyed: outcome.keyed,
            partial: outcome.partial,
        });
        self.stage.clear();
    }

    /// Counts a row that could not be read (see [`BatchValidator::push_unreadable_row`]).
    pub fn push_unreadable(&mut self, batch: &mut PreparedRows, message: impl Into<String>) {
        if batch.rows.is_empty() {
            batch.first_row = self.stage.rows;
        }
        self.stage.unreadable(message.into());
        batch.rows.push(PreparedRow {
            fields: None,
            keyed: false,
            partial: 0,
        });
    }
}

/// A batch of text rows checked by a [`TextPreparer`], waiting to be folded into records.
#[derive(Default)]
pub struct PreparedRows {
    first_row: usize,
    columns: Columns,
    text: String,
    ends: Vec<u32>,
    rows: Vec<PreparedRow>,
    subs: Vec<u64>,
    cells: Vec<u32>,
}

impl PreparedRows {
    /// Number of rows in the batch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.rows.clear();
        self.subs.clear();
        self.cells.clear();
    }
}

struct PreparedRow {
    /// First field (index into `ends`) and field count; `None` for an unreadable row.
    fields: Option<(u32, u32)>,
    keyed: bool,
    partial: u64,
}

/// A prepared row's values, cast again from its text when a message or a split-record
/// assertion needs them (rare).
struct PreparedView<'a, 's> {
    plan: &'a Plan<'s>,
    columns: &'a Columns,
    text: &'a str,
    ends: &'a [u32],
    first: usize,
    len: usize,
}

impl RowValues for PreparedView<'_, '_> {
    fn values(&self, p: usize) -> Vec<Val<'_>> {
        let info = &self.plan.info[p];
        let Some(prim) = info.prim else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &c in self
            .columns
            .edge_cols
            .get(p)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let c = c as usize;
            if c >= self.len {
                continue;
            }
            let i = self.first + c;
            let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
            let cell = self.text.get(start..self.ends[i] as usize).unwrap_or("");
            if cell.is_empty() {
                continue;
            }
            if let Ok(v) = coerce_text(prim, cell) {
                if info.constraint.is_none_or(|c| satisfies(c, &v)) {
                    out.push(v);
                }
            }
        }
        out
    }
}
