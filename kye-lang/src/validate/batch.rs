//! Streaming validation of many rows of one model.
//!
//! # How it works
//!
//! Each row is checked on its own as it arrives (types, constraints, index completeness,
//! multiple values inside the row, assertions). Rows whose index is complete are then folded
//! into records: for every record the validator keeps only
//!
//! - one 64-bit hash per index (the index's values hashed in order: `1`, `1.0` and `"1"` read as
//!   a Number are the same key),
//! - the row numbers of its rows (one `u32` when the record has one row),
//! - one 32-bit hash per single-valued (or `+`) non-index edge, enough to notice that a later row
//!   gives a different value,
//! - a flag byte,
//!
//! plus one slot per record in a hash table per index. Memory therefore grows with the number of
//! distinct index values and with the number of edges, never with the size of the values.
//! Messages quote the offending values of the row being read when a conflict is found.
//!
//! Hash collisions: two different index values sharing a 64-bit hash would be taken for one
//! key (about 1 in 10^7 for 10^9 distinct keys); two different edge values sharing a 32-bit hash in the
//! same record would hide a `MultipleValues` (1 in 4·10^9 per compared pair).

use std::collections::HashMap;
use std::hash::Hasher;

use hashbrown::HashTable;
use serde_json::Value;

use super::error::{cut, show_json, show_rows, BatchReport, ErrorKind, ValidationError};
use super::record::{check_assertion, edge_for_field, unknown_model, AssertOutcome, RecordCx};
use super::value::{coerce_json, coerce_text, eval, hash_val, hasher, satisfies, truthy, Val};
use super::{edge_kind, expected_text, ref_prim, EdgeKind};
use crate::schema::{Assertion, Edge, Expr, Model, Primitive, Schema};

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

/// The mapping of a text header to edges, from [`BatchValidator::columns`].
#[derive(Debug, Clone)]
pub struct Columns {
    map: Vec<Option<u32>>,
}

impl Columns {
    /// The edge position column `i` feeds, if any.
    pub fn edge_of(&self, i: usize) -> Option<usize> {
        self.map.get(i).copied().flatten().map(|p| p as usize)
    }
}

/// Values of the assertion edges of a record split over several rows, and the assertions
/// (bit set) still to check on the merged values.
type Pending = (Vec<Vec<Val<'static>>>, u64);

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
    PendingAssertion(u32, u32),
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
    schema: &'s Schema,
    model: &'s Model,
    info: Vec<EdgeInfo<'s>>,
    indexes: Vec<Vec<usize>>,
    index_edges: Vec<usize>,
    assertions: Vec<(&'s Assertion, Vec<Option<usize>>)>,
    k: usize,
    e: usize,
    seen: Vec<bool>,
    rows: usize,

    // The current row.
    text: String,
    slots: Vec<Vec<SVal>>,
    invalid: Vec<bool>,
    cell_scratch: Vec<u32>,
    sub_scratch: Vec<u64>,
    owner_scratch: Vec<Option<u32>>,

    // Records.
    subs: Vec<u64>,
    first_row: Vec<u32>,
    more_rows: HashMap<u32, Vec<u32>>,
    cells: Vec<u32>,
    flags: Vec<u8>,
    /// Records whose primary index value was already taken by another record (only in
    /// `NonUniqueSubIndex` cases), by full key.
    side: HashMap<u64, u32>,
    by_index: Vec<HashTable<u32>>,
    /// Assertion values of records split over several rows: record → per edge values, and the
    /// assertions still to check.
    pending: HashMap<u32, Pending>,

    errors: Vec<ValidationError>,
    warnings: Vec<ValidationError>,
    groups: HashMap<Group, usize>,
    unknown_fields: HashMap<String, usize>,
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

impl<'s> BatchValidator<'s> {
    /// A validator for rows of `model`. Fails with [`ErrorKind::UnknownModel`] when the schema
    /// has no such model.
    #[allow(clippy::result_large_err)] // Built once per batch; the error is the report's own type.
    pub fn new(schema: &'s Schema, model: &str) -> Result<Self, ValidationError> {
        let model = schema
            .model(model)
            .ok_or_else(|| unknown_model(schema, model))?;
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
                && (!edge.cardinality.is_multiple()
                    || edge.cardinality == crate::schema::Cardinality::AtLeastOne)
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
        let n = model.edges.len();
        let k = indexes.len().max(1);
        Ok(BatchValidator {
            schema,
            model,
            info,
            indexes,
            index_edges,
            assertions,
            k,
            e,
            seen: vec![false; n],
            rows: 0,
            text: String::new(),
            slots: vec![Vec::new(); n],
            invalid: vec![false; n],
            cell_scratch: vec![NONE; e],
            sub_scratch: vec![0; k],
            owner_scratch: vec![None; k],
            subs: Vec::new(),
            first_row: Vec::new(),
            more_rows: HashMap::new(),
            cells: Vec::new(),
            flags: Vec::new(),
            side: HashMap::new(),
            by_index: (0..k).map(|_| HashTable::new()).collect(),
            pending: HashMap::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            groups: HashMap::new(),
            unknown_fields: HashMap::new(),
        })
    }

    /// Reserves room for about `records` distinct records (avoids rehashing when known).
    pub fn reserve(&mut self, records: usize) {
        self.subs.reserve(records * self.k);
        self.first_row.reserve(records);
        self.cells.reserve(records * self.e);
        self.flags.reserve(records);
        let subs = &self.subs;
        let k = self.k;
        for (i, t) in self.by_index.iter_mut().enumerate() {
            t.reserve(records, |&r| subs[r as usize * k + i]);
        }
    }

    /// The model being validated.
    pub fn model(&self) -> &'s Model {
        self.model
    }

    /// Number of rows pushed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Maps a header row to edges: a column matches an edge by title, else by name. Unknown
    /// columns are reported once as [`ErrorKind::UnknownEdge`] warnings and ignored.
    pub fn columns<S: AsRef<str>>(&mut self, header: &[S]) -> Columns {
        let mut map = Vec::with_capacity(header.len());
        for h in header {
            let h = h.as_ref();
            match edge_for_field(self.model, h) {
                Some((p, _)) => {
                    self.seen[p] = true;
                    map.push(Some(p as u32));
                }
                None => {
                    let mut w = ValidationError::new(
                        ErrorKind::UnknownEdge,
                        &self.model.name,
                        format!(
                            "column '{h}' is not an edge of {}; ignored",
                            self.model.name
                        ),
                    );
                    w.edges.push(h.to_string());
                    self.warnings.push(w.at(self.schema, self.model.span));
                    map.push(None);
                }
            }
        }
        Columns { map }
    }

    /// Pushes one row of text cells (a CSV record), in header order. Cells are cast per the
    /// edge's type; an empty cell is no value.
    pub fn push_text_row<'r, I>(&mut self, columns: &Columns, cells: I)
    where
        I: IntoIterator<Item = &'r str>,
    {
        let row = self.rows;
        for (i, cell) in cells.into_iter().enumerate() {
            let Some(Some(p)) = columns.map.get(i) else {
                continue;
            };
            if cell.is_empty() {
                continue;
            }
            let p = *p as usize;
            let info = &self.info[p];
            let Some(prim) = info.prim else {
                self.invalid_value(
                    row,
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
                _ => self.invalid_value(row, p, cell, ""),
            }
        }
        self.end_row();
    }

    /// Pushes one row given as a JSON object (a record, or part of one). A list gives several
    /// values; nested records of model-typed edges are validated recursively.
    pub fn push_record(&mut self, record: &Value) {
        let row = self.rows;
        let Value::Object(obj) = record else {
            let mut e = ValidationError::new(
                ErrorKind::InvalidType,
                &self.model.name,
                format!(
                    "row {row}: expected a {} record (an object), found {}",
                    self.model.name,
                    show_json(record)
                ),
            );
            e.rows.push(row);
            e.value = Some(show_json(record));
            e.expected = Some(self.model.name.clone());
            self.errors.push(e.at(self.schema, self.model.span));
            self.rows += 1;
            return;
        };
        for (k, v) in obj {
            let Some((p, _)) = edge_for_field(self.model, k) else {
                self.unknown_field(row, k, v);
                continue;
            };
            self.seen[p] = true;
            match v {
                Value::Null => {}
                Value::Array(items) => {
                    for (j, item) in items.iter().enumerate() {
                        if !item.is_null() {
                            self.json_value(
                                row,
                                p,
                                item,
                                &format!("{}[{j}]", self.info[p].edge.name),
                            );
                        }
                    }
                }
                _ => {
                    let path = self.info[p].edge.name.clone();
                    self.json_value(row, p, v, &path);
                }
            }
        }
        self.end_row();
    }

    /// Counts a row that could not be read at all (e.g. a line of JSON Lines that is not JSON,
    /// a CSV record that is not UTF-8) and reports it as an [`ErrorKind::Unreadable`] error
    /// of that row, so the positions of later rows stay right.
    pub fn push_unreadable_row(&mut self, message: impl Into<String>) {
        let row = self.rows;
        self.rows += 1;
        let mut e = ValidationError::new(
            ErrorKind::Unreadable,
            &self.model.name,
            format!("row {row}: {}", message.into()),
        );
        e.rows.push(row);
        e.expected = Some(format!("a {} row", self.model.name));
        self.errors.push(e);
    }

    fn unknown_field(&mut self, row: usize, k: &str, v: &Value) {
        if let Some(&i) = self.unknown_fields.get(k) {
            self.warnings[i].rows.push(row);
            return;
        }
        let mut w = ValidationError::new(
            ErrorKind::UnknownEdge,
            &self.model.name,
            format!("'{k}' is not an edge of {}; dropped", self.model.name),
        );
        w.edges.push(k.to_string());
        w.rows.push(row);
        w.value = Some(show_json(v));
        self.unknown_fields
            .insert(k.to_string(), self.warnings.len());
        self.warnings.push(w.at(self.schema, self.model.span));
    }

    fn json_value(&mut self, row: usize, p: usize, item: &Value, path: &str) {
        let info = &self.info[p];
        let is_object = item.is_object();
        if let (Some(prim), false) = (info.prim.filter(|_| info.target.is_none()), is_object) {
            match coerce_json(prim, item) {
                Ok(v) if info.constraint.is_none_or(|c| satisfies(c, &v)) => {
                    self.store(p, v);
                }
                _ => self.invalid_value(row, p, &show_json(item), ""),
            }
            return;
        }
        // Model-typed edge: nested record or reference, checked like in validate_record.
        let mut cx = RecordCx::new(self.schema);
        let got = cx.value(self.model, info.edge, item, path, 1);
        for mut e in cx.errors {
            e.rows.push(row);
            self.errors.push(e);
        }
        for mut w in cx.warnings {
            w.rows.push(row);
            self.warnings.push(w);
        }
        match got {
            Some((v, _)) => self.store(p, v),
            None => self.invalid[p] = true,
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

    fn invalid_value(&mut self, row: usize, p: usize, shown: &str, extra: &str) {
        self.invalid[p] = true;
        let info = &self.info[p];
        if let Some(&i) = self.groups.get(&Group::Invalid(p as u32)) {
            self.errors[i].rows.push(row);
            return;
        }
        let mut e = ValidationError::new(
            ErrorKind::InvalidType,
            &self.model.name,
            format!(
                "{}.{}: '{}' is not a valid {}{extra}",
                self.model.name,
                info.edge.name,
                cut(shown),
                info.expected
            ),
        );
        e.edges.push(info.edge.name.clone());
        e.rows.push(row);
        e.value = Some(cut(shown));
        e.expected = Some(info.expected.clone());
        let e = e.at(self.schema, info.edge.span);
        self.groups
            .insert(Group::Invalid(p as u32), self.errors.len());
        self.errors.push(e);
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

    /// `id=3, name=b` from the current row's values of the given edges.
    fn show_key(&self, edges: &[usize]) -> String {
        edges
            .iter()
            .map(|&p| {
                let v = self.slots[p]
                    .first()
                    .map(|&v| self.val(v).show())
                    .unwrap_or_default();
                format!("{}={v}", self.info[p].edge.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn group_error(&mut self, g: Group, row: usize, make: impl FnOnce(&Self) -> ValidationError) {
        if let Some(&i) = self.groups.get(&g) {
            self.errors[i].rows.push(row);
            return;
        }
        let mut e = make(self);
        e.rows.push(row);
        self.groups.insert(g, self.errors.len());
        self.errors.push(e);
    }

    fn end_row(&mut self) {
        let row = self.rows;
        self.rows += 1;
        let n = self.info.len();

        // Several values for a single-valued edge inside the row.
        for p in 0..n {
            if self.slots[p].len() < 2 || self.info[p].edge.cardinality.is_multiple() {
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
            self.group_error(Group::RowMultiple(p as u32), row, |me| {
                let info = &me.info[p];
                let mut e = ValidationError::new(
                    ErrorKind::MultipleValues,
                    &me.model.name,
                    format!(
                        "{}.{} holds one value, a row gives {}: {}",
                        me.model.name,
                        info.edge.name,
                        shown.len(),
                        shown.join(", ")
                    ),
                );
                e.edges.push(info.edge.name.clone());
                e.value = Some(cut(&shown.join(", ")));
                e.expected = Some(format!("one {}", info.expected));
                e.at(me.schema, info.edge.span)
            });
            self.slots[p].clear();
            self.invalid[p] = true;
        }

        // Index completeness.
        let mut keyed = true;
        for i in 0..self.index_edges.len() {
            let p = self.index_edges[i];
            if !self.slots[p].is_empty() {
                continue;
            }
            keyed = false;
            if self.invalid[p] {
                continue;
            }
            self.group_error(Group::MissingIndex(p as u32), row, |me| {
                let info = &me.info[p];
                let mut e = ValidationError::new(
                    ErrorKind::MissingIndex,
                    &me.model.name,
                    format!(
                        "{}.{} is an index edge but has no value",
                        me.model.name, info.edge.name
                    ),
                );
                e.edges.push(info.edge.name.clone());
                e.expected = Some(info.expected.clone());
                let span = me
                    .model
                    .indexes
                    .iter()
                    .find(|ix| ix.edges.contains(&info.edge.name))
                    .map(|ix| ix.span)
                    .unwrap_or(info.edge.span);
                e.at(me.schema, span)
            });
        }

        // Assertions on the row's values.
        let mut partial: u64 = 0;
        for ai in 0..self.assertions.len() {
            let (a, pos) = &self.assertions[ai];
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
                let a: &'s Assertion = a;
                self.assertion_failed(Group::Assertion(ai as u32), row, a, &shown, None);
            }
        }

        if keyed {
            self.fold(row, partial);
        }

        for p in 0..n {
            self.slots[p].clear();
            self.invalid[p] = false;
        }
        self.text.clear();
    }

    fn assertion_failed(
        &mut self,
        g: Group,
        row: usize,
        a: &'s Assertion,
        shown: &str,
        key: Option<String>,
    ) {
        self.group_error(g, row, |me| {
            let mut e = ValidationError::new(
                ErrorKind::AssertionFailed,
                &me.model.name,
                format!(
                    "{}: assertion `{}` failed for {shown}",
                    me.model.name, a.text
                ),
            );
            e.edges = a.edges.clone();
            e.value = Some(cut(shown));
            e.expected = Some(a.text.clone());
            e.key = key;
            e.at(me.schema, a.span)
        });
    }

    /// Folds a row with a complete index into its record.
    fn fold(&mut self, row: usize, partial: u64) {
        let k = self.k;
        // Index hashes of the row.
        let mut subs = std::mem::take(&mut self.sub_scratch);
        for (i, ix) in self.indexes.iter().enumerate() {
            let mut h = hasher();
            for &p in ix {
                self.hash_one(self.slots[p][0], &mut h);
            }
            subs[i] = h.finish();
        }
        let full = mix(&subs);
        // Cell hashes.
        let mut cells = std::mem::take(&mut self.cell_scratch);
        for (p, info) in self.info.iter().enumerate() {
            let Some(s) = info.slot else { continue };
            cells[s] = if self.slots[p].is_empty() {
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

        // The record: by primary index value; when that value belongs to several records
        // (a NonUniqueSubIndex case), by full key in the side table.
        // All index lookups first: they are independent, so their cache misses overlap.
        let s = &self.subs;
        let mut owners = std::mem::take(&mut self.owner_scratch);
        for (i, table) in self.by_index.iter().enumerate() {
            let h = subs[i];
            owners[i] = table.find(h, |&r| s[r as usize * k + i] == h).copied();
        }
        let first = owners[0];
        let same = |r: u32| s[r as usize * k..(r as usize + 1) * k] == subs[..];
        let found = match first {
            None => None,
            Some(r) if same(r) => Some(r),
            Some(_) => self.side.get(&full).copied().filter(|&r| same(r)),
        };
        let rec = match found {
            Some(r) => {
                self.duplicate_row(r, row, &cells, &subs);
                r
            }
            None => self.new_record(row, &cells, &subs, full, &owners),
        };
        self.owner_scratch = owners;

        // Assertions over edges that this row does not all carry: keep their values.
        if partial != 0 || (!self.pending.is_empty() && self.pending.contains_key(&rec)) {
            let n = self.info.len();
            let mut entry = self
                .pending
                .remove(&rec)
                .unwrap_or_else(|| (vec![Vec::new(); n], 0));
            entry.1 |= partial;
            for (_, pos) in &self.assertions {
                for p in pos.iter().flatten() {
                    for &v in &self.slots[*p] {
                        let v = self.val(v).into_owned();
                        if !entry.0[*p].contains(&v) {
                            entry.0[*p].push(v);
                        }
                    }
                }
            }
            self.pending.insert(rec, entry);
        }
        self.sub_scratch = subs;
        self.cell_scratch = cells;
    }

    fn new_record(
        &mut self,
        row: usize,
        cells: &[u32],
        subs: &[u64],
        full: u64,
        owners: &[Option<u32>],
    ) -> u32 {
        let k = self.k;
        let r = self.first_row.len() as u32;
        self.subs.extend_from_slice(subs);
        self.first_row.push(row as u32);
        self.cells.extend_from_slice(cells);
        self.flags.push(0);
        match owners[0] {
            None => {
                let s = &self.subs;
                self.by_index[0].insert_unique(subs[0], r, |&x| s[x as usize * k]);
            }
            Some(o) => {
                self.side.insert(full, r);
                self.non_unique(0, subs[0], o, r, row);
            }
        }
        if k > 1 {
            for i in 1..k {
                let h = subs[i];
                match owners[i] {
                    None => {
                        let s = &self.subs;
                        self.by_index[i].insert_unique(h, r, |&x| s[x as usize * k + i]);
                    }
                    Some(o) => self.non_unique(i, h, o, r, row),
                }
            }
        }
        r
    }

    /// A second record has the same value for index `i` as record `o`.
    fn non_unique(&mut self, i: usize, h: u64, o: u32, r: u32, row: usize) {
        self.flags[r as usize] |= F_NON_UNIQUE;
        let g = Group::NonUnique(i as u32, h);
        if let Some(&e) = self.groups.get(&g) {
            self.errors[e].rows.push(row);
            return;
        }
        self.flags[o as usize] |= F_NON_UNIQUE;
        let mut rows = self.record_rows(o);
        rows.push(row);
        let ix = &self.indexes[i];
        let names: Vec<String> = ix.iter().map(|&p| self.info[p].edge.name.clone()).collect();
        let value = self.show_key(ix);
        let full_key = self.show_key(&self.index_edges);
        let mut e = ValidationError::new(
            ErrorKind::NonUniqueSubIndex,
            &self.model.name,
            format!(
                "{}: index ({}) value {value} belongs to several records (e.g. {full_key} in row {row} and another in row {})",
                self.model.name,
                names.join(", "),
                self.first_row[o as usize]
            ),
        );
        e.edges = names;
        e.rows = rows;
        e.value = Some(cut(&value));
        e.key = Some(value);
        e.expected = Some("a unique index value".to_string());
        let span = self
            .model
            .indexes
            .get(i)
            .map(|ix| ix.span)
            .unwrap_or(self.model.span);
        let e = e.at(self.schema, span);
        self.groups.insert(g, self.errors.len());
        self.errors.push(e);
    }

    fn record_rows(&self, r: u32) -> Vec<usize> {
        let mut rows = vec![self.first_row[r as usize] as usize];
        if let Some(more) = self.more_rows.get(&r) {
            rows.extend(more.iter().map(|&x| x as usize));
        }
        rows
    }

    fn duplicate_row(&mut self, r: u32, row: usize, cells: &[u32], subs: &[u64]) {
        self.more_rows.entry(r).or_default().push(row as u32);
        let e = self.e;
        let flags = self.flags[r as usize];
        if flags & F_NON_UNIQUE != 0 {
            for (i, &h) in subs.iter().enumerate() {
                if let Some(&ei) = self.groups.get(&Group::NonUnique(i as u32, h)) {
                    self.errors[ei].rows.push(row);
                }
            }
        }
        for (p, info) in self.info.iter().enumerate() {
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
            if old == new && !self.groups.contains_key(&g) {
                continue;
            }
            if let Some(&ei) = self.groups.get(&g) {
                self.errors[ei].rows.push(row);
                continue;
            }
            // A different value than an earlier row of the same record.
            self.flags[r as usize] |= F_MULTIPLE;
            let mut rows: Vec<usize> = self.record_rows(r);
            rows.retain(|&x| x != row);
            rows.push(row);
            let key = self.show_key(&self.index_edges);
            let shown = self.slots[p]
                .first()
                .map(|&v| self.val(v).show())
                .unwrap_or_default();
            let first = self.first_row[r as usize];
            let mut err = ValidationError::new(
                ErrorKind::MultipleValues,
                &self.model.name,
                format!(
                    "{}({key}).{} holds one value, but row {row} gives '{shown}', different from an earlier row (row {first})",
                    self.model.name, info.edge.name
                ),
            );
            err.edges.push(info.edge.name.clone());
            err.rows = rows;
            err.key = Some(key);
            err.value = Some(shown);
            err.expected = Some(format!("one {}", info.expected));
            let err = err.at(self.schema, info.edge.span);
            self.groups.insert(g, self.errors.len());
            self.errors.push(err);
        }
    }

    /// Ends the batch: checks what needs every row (missing values, conflicts between indexes,
    /// assertions over records split across rows) and returns the report. Rows in each error
    /// are sorted.
    pub fn finish(mut self) -> BatchReport {
        let records = self.first_row.len();
        let e = self.e;
        let k = self.k;

        // Missing values of required edges whose column the batch has.
        for (p, info) in self.info.iter().enumerate() {
            if info.edge.cardinality.allows_none() || info.in_index {
                continue;
            }
            let Some(s) = info.slot else { continue };
            if !self.seen[p] {
                let mut w = ValidationError::new(
                    ErrorKind::MissingColumn,
                    &self.model.name,
                    format!(
                        "{}.{} is required but no row has a '{}' field; not checked",
                        self.model.name,
                        info.edge.name,
                        info.edge.column()
                    ),
                );
                w.edges.push(info.edge.name.clone());
                self.warnings.push(w.at(self.schema, info.edge.span));
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
                    &self.model.name,
                    format!(
                        "{}.{} is required ({}{}) but has no value",
                        self.model.name,
                        info.edge.name,
                        info.expected,
                        info.edge.cardinality.marker()
                    ),
                );
                err.edges.push(info.edge.name.clone());
                err.rows = rows;
                err.expected = Some(info.expected.clone());
                let err = err.at(self.schema, info.edge.span);
                self.errors.push(err);
            }
        }

        // Conflicts between indexes of the same arity.
        if k > 1 {
            for i in 0..k {
                for j in 0..k {
                    // Values of different types never compare equal (a Number is not a
                    // String), so only indexes of the same arity and edge types can conflict.
                    if i == j || !self.comparable(i, j) {
                        continue;
                    }
                    let (lo, hi) = (i.min(j), i.max(j));
                    for r in 0..records as u32 {
                        if self.flags[r as usize] != 0 {
                            continue;
                        }
                        let h = self.subs[r as usize * k + j];
                        let s = &self.subs;
                        let Some(&o) = self.by_index[i].find(h, |&x| s[x as usize * k + i] == h)
                        else {
                            continue;
                        };
                        if o == r || self.flags[o as usize] != 0 {
                            continue;
                        }
                        let g = Group::Conflict(lo as u32, hi as u32, h);
                        let mut rows = self.record_rows(o);
                        rows.extend(self.record_rows(r));
                        if let Some(&ei) = self.groups.get(&g) {
                            self.errors[ei].rows.extend(rows);
                            continue;
                        }
                        let mut names: Vec<String> = Vec::new();
                        for &p in self.indexes[lo].iter().chain(&self.indexes[hi]) {
                            let n = &self.info[p].edge.name;
                            if !names.contains(n) {
                                names.push(n.clone());
                            }
                        }
                        let ni = self.index_names(i);
                        let nj = self.index_names(j);
                        let mut err = ValidationError::new(
                            ErrorKind::IndexConflict,
                            &self.model.name,
                            format!(
                                "{}: the ({nj}) value of the record in row {} equals the ({ni}) value of the record in row {}; a lookup by that value is ambiguous",
                                self.model.name,
                                self.first_row[r as usize],
                                self.first_row[o as usize]
                            ),
                        );
                        err.edges = names;
                        err.rows = rows;
                        err.expected = Some(format!(
                            "({ni}) and ({nj}) values that do not overlap across records"
                        ));
                        let err = err.at(self.schema, self.model.indexes[j].span);
                        self.groups.insert(g, self.errors.len());
                        self.errors.push(err);
                    }
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
            for ai in 0..self.assertions.len().min(64) {
                if mask & (1 << ai) == 0 {
                    continue;
                }
                let (a, pos) = &self.assertions[ai];
                let a: &'s Assertion = a;
                let lists: Vec<&[Val<'static>]> = pos
                    .iter()
                    .map(|p| p.map(|p| values[p].as_slice()).unwrap_or(&[]))
                    .collect();
                if let AssertOutcome::Fails(shown) = check_assertion(a, &|i| lists[i]) {
                    let rows = self.record_rows(r);
                    let g = Group::PendingAssertion(ai as u32, r as u64 as u32);
                    for row in rows {
                        self.assertion_failed(g, row, a, &shown, None);
                    }
                }
            }
        }

        for err in self.errors.iter_mut().chain(self.warnings.iter_mut()) {
            err.rows.sort_unstable();
            err.rows.dedup();
            if err.rows.len() > 1 || (err.rows.len() == 1 && !err.message.contains("row")) {
                err.message = format!("{} ({})", err.message, show_rows(&err.rows));
            }
        }
        BatchReport {
            valid: self.errors.is_empty(),
            errors: self.errors,
            warnings: self.warnings,
            rows: self.rows,
            records,
        }
    }

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
