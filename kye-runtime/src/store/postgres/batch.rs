//! One batch of records in PostgreSQL: each record read into rows (its own and its nested
//! records', every value checked) before anything is sent; the stored holders of the batch's
//! keys and secondary-index values loaded in one query per model; the records applied in
//! order against them (secondary-index clashes and contradicting nested records fail their
//! item, as in SQLite); then the rows written per model, in as few statements as `upsert`
//! can (one for a batch of new records).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use postgres::types::ToSql;
use postgres::{Statement, Transaction};
use serde_json::Value;

use crate::store::key::{canonical_json, content_hash, cut};
use crate::store::layout::{ModelLayout, Prim};
use crate::store::records::{edge_value, items, nested_records};
use crate::store::values::{key_display, with_key};
use crate::store::{record_object, Provenance, StoreError};

use super::convert::{edge_texts, from_text, kye_text, normal_text};
use super::ddl::{inline_cols, qi, sql_type};
use super::upsert::{matching, run_parts, text_array, upsert, Part};
use super::MAX_NESTING;

/// A column's value as bound text; `None` for NULL.
pub(crate) type Text<'a> = Option<Cow<'a, str>>;

/// One row of a model table with its child rows, read from a record.
pub(crate) struct Row<'a> {
    pub layout: &'a ModelLayout,
    /// Primary key texts, as bound.
    pub(crate) key: Vec<Text<'a>>,
    /// The key's normalized texts joined (see `joined`): the same for the same key, stored
    /// or not, and different for different keys.
    key_id: String,
    pub(crate) inline: Vec<Text<'a>>,
    /// Per child-table edge (in edge order): its rows, each the edge's columns.
    pub(crate) children: Vec<Vec<Vec<Text<'a>>>>,
    /// Per secondary index: its normalized values joined, `None` when one is null.
    uniques: Vec<Option<String>>,
    depth: usize,
    pub(crate) run: i64,
    pub(crate) fetcher: Cow<'a, str>,
    pub(crate) fetched_at: String,
    pub(crate) hash: String,
    pub(crate) source: Option<Cow<'a, str>>,
}

impl Row<'_> {
    /// The key's values as JSON.
    fn key_values(&self) -> Vec<Value> {
        self.key
            .iter()
            .zip(&self.layout.key)
            .map(|(t, c)| from_text(t.as_deref(), c.prim))
            .collect()
    }

    /// The inline columns' values as JSON.
    fn inline_values(&self) -> Vec<Value> {
        self.inline
            .iter()
            .zip(inline_prims(self.layout))
            .map(|(t, p)| from_text(t.as_deref(), p))
            .collect()
    }

    /// `Model key` of the row, as errors show it.
    pub(crate) fn describe(&self) -> (String, String) {
        let l = self.layout;
        let key: Vec<Value> = self
            .key
            .iter()
            .zip(&l.key)
            .map(|(t, c)| from_text(t.as_deref(), c.prim))
            .collect();
        (l.model.clone(), key_display(l, &key))
    }

    /// The texts of secondary index `index`'s columns, `None` when one is null.
    pub(crate) fn index_texts(&self, index: usize) -> Option<Vec<&str>> {
        let positions = unique_positions(self.layout).into_iter().nth(index)?;
        positions
            .iter()
            .map(|&i| self.inline[i].as_deref())
            .collect()
    }
}

/// The normalized texts of an index's parts as one text, each part prefixed by its length in
/// bytes (`3:abc1:d`): two different lists of parts never give the same text, whatever
/// characters the parts hold. `None` when a part is null.
fn joined(texts: &[Text<'_>], prims: impl Iterator<Item = Prim>) -> Option<String> {
    let mut out = String::new();
    for (t, p) in texts.iter().zip(prims) {
        let part = normal_text(t.as_deref(), p)?;
        out.push_str(&part.len().to_string());
        out.push(':');
        out.push_str(&part);
    }
    Some(out)
}

/// Where each secondary index's columns are among the inline columns.
fn unique_positions(l: &ModelLayout) -> Vec<Vec<usize>> {
    if l.uniques.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = inline_cols(l).map(|(_, c)| c.name.as_str()).collect();
    l.uniques
        .iter()
        .map(|u| {
            u.cols
                .iter()
                .filter_map(|c| names.iter().position(|n| n == c))
                .collect()
        })
        .collect()
}

fn inline_prims(l: &ModelLayout) -> Vec<Prim> {
    inline_cols(l).map(|(_, c)| c.prim).collect()
}

/// Reads a record (and the nested records it carries, which come first) into rows; any
/// value that cannot be stored is the item's error, found before anything is written.
pub(crate) fn record_rows<'a>(
    layouts: &'a HashMap<String, ModelLayout>,
    model: &str,
    value: &'a Value,
    prov: &'a Provenance,
    depth: usize,
    out: &mut Vec<Row<'a>>,
) -> Result<(), StoreError> {
    let l = layouts.get(model).ok_or_else(|| StoreError::UnknownModel {
        model: model.to_string(),
    })?;
    let obj = record_object(model, value)?;
    let mut key = Vec::with_capacity(l.key.len());
    for e in &l.key_edges {
        let edge = l.edge(e).ok_or_else(|| StoreError::UnknownModel {
            model: model.to_string(),
        })?;
        let start = key.len();
        edge_texts(model, edge, edge_value(obj, edge), &mut key)?;
        if key[start..].iter().any(Option::is_none) {
            return Err(StoreError::MissingKey {
                model: model.to_string(),
                edge: e.clone(),
            });
        }
    }
    let key_json = |key: &[Text<'_>]| -> Vec<Value> {
        key.iter()
            .zip(&l.key)
            .map(|(t, c)| from_text(t.as_deref(), c.prim))
            .collect()
    };
    let key_text = || key_display(l, &key_json(&key));
    check_index_size(l, &key, &l.key_edges, key_text)?;
    let mut inline = Vec::new();
    let mut children = Vec::new();
    for e in &l.edges {
        let v = edge_value(obj, e);
        if e.in_child_table() {
            let mut rows = Vec::new();
            for item in items(v) {
                let mut row = Vec::with_capacity(e.cols.len());
                edge_texts(model, e, Some(item), &mut row).map_err(|x| with_key(x, key_text))?;
                rows.push(row);
            }
            children.push(rows);
        } else {
            edge_texts(model, e, v, &mut inline).map_err(|x| with_key(x, key_text))?;
        }
    }
    let positions = unique_positions(l);
    for (u, pos) in l.uniques.iter().zip(&positions) {
        let texts: Vec<Text<'_>> = pos.iter().map(|&i| inline[i].clone()).collect();
        check_index_size(l, &texts, &u.edges, key_text)?;
    }
    if depth < MAX_NESTING {
        for (target, n) in nested_records(layouts, l, obj) {
            record_rows(layouts, &target.model, n, prov, depth + 1, out)?;
        }
    }
    let prims = if positions.is_empty() {
        Vec::new()
    } else {
        inline_prims(l)
    };
    let uniques = positions
        .iter()
        .map(|pos| {
            let texts: Vec<Text<'_>> = pos.iter().map(|&i| inline[i].clone()).collect();
            joined(&texts, pos.iter().map(|&i| prims[i]))
        })
        .collect();
    let key_id = joined(&key, l.key.iter().map(|c| c.prim)).unwrap_or_default();
    out.push(Row {
        layout: l,
        key,
        key_id,
        inline,
        children,
        uniques,
        depth,
        run: prov.run.0,
        fetcher: kye_text(&prov.fetcher),
        fetched_at: prov.fetched_at.to_string(),
        hash: content_hash(value),
        source: prov.source.as_deref().map(kye_text),
    });
    Ok(())
}

/// Bytes of an index entry kye writes: PostgreSQL's B-tree holds at most ~2.7 kB per entry
/// (a third of a page), and the primary key also heads every child row.
pub(crate) const MAX_INDEX_BYTES: usize = 2600;

/// An index value too long for PostgreSQL to index is the record's error.
fn check_index_size(
    l: &ModelLayout,
    texts: &[Text<'_>],
    edges: &[String],
    key: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    let n: usize = texts.iter().flatten().map(|t| t.len()).sum();
    if n <= MAX_INDEX_BYTES {
        return Ok(());
    }
    Err(StoreError::InvalidValue {
        model: l.model.clone(),
        key: cut(&key(), 100),
        edge: edges.first().cloned().unwrap_or_default(),
        message: format!(
            "the index ({}) value is {n} bytes; PostgreSQL indexes at most {MAX_INDEX_BYTES} \
             bytes per entry, so the record was not stored",
            edges.join(", ")
        ),
    })
}

/// A stored row of a key, as loaded.
struct Stored {
    key: Vec<Value>,
    uniques: Vec<Option<String>>,
    run: i64,
    hash: String,
    /// The inline columns as JSON (loaded for models nested in this batch).
    inline: Option<Vec<Value>>,
}

/// The row holding a key: one written earlier in this batch (its values are made JSON only
/// for an error's message), or a stored one.
#[derive(Clone)]
enum Holder<'r, 'a> {
    Row(&'r Row<'a>),
    Stored(Rc<Stored>),
}

impl Holder<'_, '_> {
    fn uniques(&self) -> &[Option<String>] {
        match self {
            Holder::Row(r) => &r.uniques,
            Holder::Stored(s) => &s.uniques,
        }
    }

    fn run(&self) -> i64 {
        match self {
            Holder::Row(r) => r.run,
            Holder::Stored(s) => s.run,
        }
    }

    fn hash(&self) -> &str {
        match self {
            Holder::Row(r) => &r.hash,
            Holder::Stored(s) => &s.hash,
        }
    }

    fn key(&self) -> Vec<Value> {
        match self {
            Holder::Row(r) => r.key_values(),
            Holder::Stored(s) => s.key.clone(),
        }
    }

    fn inline(&self) -> Option<Vec<Value>> {
        match self {
            Holder::Row(r) => Some(r.inline_values()),
            Holder::Stored(s) => s.inline.clone(),
        }
    }
}

#[derive(Default)]
struct ModelState<'r, 'a> {
    holders: HashMap<Cow<'r, str>, Holder<'r, 'a>>,
    /// Per secondary index: the key (`key_id`) holding each value.
    by_unique: Vec<HashMap<Cow<'r, str>, Cow<'r, str>>>,
}

/// What [`State::apply`] changed for one record, newest last.
pub(crate) struct Applied<'r, 'a>(Vec<Undo<'r, 'a>>);

enum Undo<'r, 'a> {
    Holder(&'a str, Cow<'r, str>, Option<Holder<'r, 'a>>),
    Unique(&'a str, usize, Cow<'r, str>, Option<Cow<'r, str>>),
}

/// Statements prepared on the connection, by SQL text (they outlive transactions).
pub(crate) type Cache = HashMap<String, Statement>;

/// The prepared statement of `sql`, prepared once per connection.
pub(crate) fn cached(
    tx: &mut Transaction<'_>,
    cache: &mut Cache,
    sql: &str,
) -> Result<Statement, postgres::Error> {
    if let Some(st) = cache.get(sql) {
        return Ok(st.clone());
    }
    let st = tx.prepare(sql)?;
    cache.insert(sql.to_string(), st.clone());
    Ok(st)
}

/// `rows` per model, in the order the models first come.
fn by_model<'r, 'a>(rows: &[&'r Row<'a>]) -> Vec<(&'a ModelLayout, Vec<&'r Row<'a>>)> {
    let mut by_model: Vec<(&ModelLayout, Vec<&Row<'_>>)> = Vec::new();
    for r in rows {
        match by_model.iter_mut().find(|(l, _)| l.model == r.layout.model) {
            Some((_, v)) => v.push(r),
            None => by_model.push((r.layout, vec![r])),
        }
    }
    by_model
}

/// Whether [`State::load`] reads the stored holders of `rs` (one model's rows): for nested
/// records, and for secondary indexes when `uniques` asks or a key comes twice (the first
/// write of a key written twice in the batch is hidden from the table's constraint: only the
/// last is sent).
fn reads_holders(rs: &[&Row<'_>], uniques: bool) -> bool {
    let Some(l) = rs.first().map(|r| r.layout) else {
        return false;
    };
    let nested = rs.iter().any(|r| r.depth > 0);
    let twice = {
        let mut seen = HashSet::new();
        !rs.iter().all(|r| seen.insert(r.key_id.as_str()))
    };
    nested || (!l.uniques.is_empty() && (uniques || twice))
}

/// The holders of a batch's keys and secondary-index values, as the transaction sees them.
pub(crate) struct State<'r, 'a> {
    models: HashMap<&'a str, ModelState<'r, 'a>>,
}

impl<'r, 'a> State<'r, 'a> {
    /// Loads, for each model of `rows` that needs it (nested records in this batch, or
    /// secondary indexes when `uniques` asks), the stored rows holding one of the batch's keys
    /// or index values. Without `uniques` a value held by a stored record is found by the
    /// table's own `UNIQUE` constraint, which fails the batch (23505), and the batch is
    /// written again with `uniques` (see `clash`): clashes are rare, the lookup would be paid
    /// by every batch.
    pub(crate) fn load(
        tx: &mut Transaction<'_>,
        cache: &mut Cache,
        rows: &[&'r Row<'a>],
        uniques: bool,
    ) -> Result<State<'r, 'a>, postgres::Error> {
        let mut models = HashMap::new();
        for (l, rs) in by_model(rows) {
            let nested = rs.iter().any(|r| r.depth > 0);
            let mut st = ModelState {
                holders: HashMap::new(),
                by_unique: vec![HashMap::new(); l.uniques.len()],
            };
            if !reads_holders(&rs, uniques) {
                models.insert(l.model.as_str(), st);
                continue;
            }
            let prims = inline_prims(l);
            let positions = unique_positions(l);
            let names: Vec<&str> = inline_cols(l).map(|(_, c)| c.name.as_str()).collect();
            let mut select: Vec<String> = l
                .key
                .iter()
                .map(|c| format!("{}::text", qi(&c.name)))
                .collect();
            for pos in &positions {
                select.extend(pos.iter().map(|&i| format!("{}::text", qi(names[i]))));
            }
            select.push("\"_kye_run_id\"".into());
            select.push("\"_kye_hash\"".into());
            if nested {
                select.extend(names.iter().map(|n| format!("{}::text", qi(n))));
            }
            let key_cols: Vec<(String, &str)> = l
                .key
                .iter()
                .map(|c| (qi(&c.name), sql_type(c.prim)))
                .collect();
            let mut wheres = vec![matching(&key_cols, 1)];
            let mut arrays: Vec<Vec<Option<&str>>> = (0..l.key.len())
                .map(|i| text_array(rs.iter().map(|r| &r.key[i])))
                .collect();
            for pos in &positions {
                let cols: Vec<(String, &str)> = pos
                    .iter()
                    .map(|&i| (qi(names[i]), sql_type(prims[i])))
                    .collect();
                wheres.push(matching(&cols, arrays.len() + 1));
                for &i in pos {
                    arrays.push(text_array(rs.iter().map(|r| &r.inline[i])));
                }
            }
            let sql = format!(
                "SELECT {} FROM {} WHERE {}",
                select.join(", "),
                qi(&l.table),
                wheres.join(" OR ")
            );
            let params: Vec<&(dyn ToSql + Sync)> =
                arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let select = cached(tx, cache, &sql)?;
            for row in tx.query(&select, &params)? {
                let text = |i: usize| row.get::<_, Option<String>>(i);
                let nk = l.key.len();
                let key: Vec<Option<String>> = (0..nk).map(text).collect();
                let key_texts: Vec<Text<'_>> = key
                    .iter()
                    .map(|t| t.as_deref().map(Cow::Borrowed))
                    .collect();
                let key_id = joined(&key_texts, l.key.iter().map(|c| c.prim)).unwrap_or_default();
                let mut at = nk;
                let mut uniques = Vec::new();
                for pos in &positions {
                    let vals: Vec<Text<'_>> =
                        pos.iter().map(|_| text(at).map(Cow::Owned)).collect();
                    uniques.push(joined(&vals, pos.iter().map(|&i| prims[i])));
                    at += pos.len();
                }
                let run: i64 = row.get(at);
                let hash: String = row.get(at + 1);
                let inline = nested.then(|| {
                    (0..names.len())
                        .map(|i| from_text(text(at + 2 + i).as_deref(), prims[i]))
                        .collect()
                });
                for (i, u) in uniques.iter().enumerate() {
                    if let Some(u) = u {
                        st.by_unique[i].insert(Cow::Owned(u.clone()), Cow::Owned(key_id.clone()));
                    }
                }
                let key = key
                    .iter()
                    .zip(&l.key)
                    .map(|(t, c)| from_text(t.as_deref(), c.prim))
                    .collect();
                st.holders.insert(
                    Cow::Owned(key_id),
                    Holder::Stored(Rc::new(Stored {
                        key,
                        uniques,
                        run,
                        hash,
                        inline,
                    })),
                );
            }
            models.insert(l.model.as_str(), st);
        }
        Ok(State { models })
    }

    /// Whether a stored row of `model` holds one of the batch's keys or index values, as
    /// loaded (nothing is known of a model whose holders were not loaded).
    pub(crate) fn finds_stored(&self, model: &str) -> bool {
        self.models
            .get(model)
            .is_some_and(|st| st.holders.values().any(|h| matches!(h, Holder::Stored(_))))
    }

    /// Whether [`State::load`] of `rows` reads anything from the database.
    pub(crate) fn reads(rows: &[&Row<'_>], uniques: bool) -> bool {
        by_model(rows)
            .iter()
            .any(|(_, rs)| reads_holders(rs, uniques))
    }

    /// Applies the rows of one record in order: a secondary-index value held by another
    /// record, or a nested record contradicting one nested earlier in the same run, fails
    /// the whole record and leaves the state as it was. What it changed can be taken back
    /// ([`State::undo`]) when the record is refused later.
    pub(crate) fn apply(&mut self, unit: &'r [Row<'a>]) -> Result<Applied<'r, 'a>, StoreError> {
        let mut undo = Vec::new();
        for row in unit {
            if let Err(e) = self.apply_row(row, &mut undo) {
                self.undo(Applied(undo));
                return Err(e);
            }
        }
        Ok(Applied(undo))
    }

    /// Takes back what [`State::apply`] did for a record (refused after all).
    pub(crate) fn undo(&mut self, applied: Applied<'r, 'a>) {
        for u in applied.0.into_iter().rev() {
            match u {
                Undo::Holder(m, k, old) => {
                    let holders = &mut self.model(m).holders;
                    match old {
                        Some(h) => holders.insert(k, h),
                        None => holders.remove(&k),
                    };
                }
                Undo::Unique(m, i, v, old) => {
                    let map = &mut self.model(m).by_unique[i];
                    match old {
                        Some(h) => map.insert(v, h),
                        None => map.remove(&v),
                    };
                }
            }
        }
    }

    fn model(&mut self, model: &'a str) -> &mut ModelState<'r, 'a> {
        self.models.entry(model).or_default()
    }

    fn apply_row(
        &mut self,
        row: &'r Row<'a>,
        undo: &mut Vec<Undo<'r, 'a>>,
    ) -> Result<(), StoreError> {
        let l: &'a ModelLayout = row.layout;
        let model = l.model.as_str();
        let st = self.model(model);
        if st.by_unique.len() < l.uniques.len() {
            st.by_unique.resize_with(l.uniques.len(), HashMap::new);
        }
        let old = st.holders.get(row.key_id.as_str()).cloned();
        if let (true, Some(h)) = (row.depth > 0, &old) {
            if h.run() == row.run && h.hash() != row.hash {
                let show = |v: &Value| cut(&canonical_json(v), 100);
                let inline = row.inline_values();
                let differs = h
                    .inline()
                    .and_then(|before| {
                        inline_cols(l)
                            .zip(inline.iter().zip(&before))
                            .find(|(_, (new, old))| canonical_json(new) != canonical_json(old))
                            .map(|((e, _), (new, old))| {
                                format!("edge {}: {} here, {} before", e.name, show(new), show(old))
                            })
                    })
                    .unwrap_or_else(|| "the values of its multi-valued edges differ".to_string());
                return Err(StoreError::NestedConflict {
                    model: l.model.clone(),
                    key: key_display(l, &row.key_values()),
                    differs,
                });
            }
        }
        for (i, (u, value)) in l.uniques.iter().zip(&row.uniques).enumerate() {
            let Some(value) = value else { continue };
            let Some(holder) = st.by_unique[i].get(value.as_str()) else {
                continue;
            };
            if *holder != row.key_id {
                let existing = st
                    .holders
                    .get(holder.as_ref())
                    .map(|h| key_display(l, &h.key()))
                    .unwrap_or_default();
                let inline = row.inline_values();
                let positions = &unique_positions(l)[i];
                return Err(StoreError::IndexConflict {
                    model: l.model.clone(),
                    index: format!("({})", u.edges.join(", ")),
                    value: positions
                        .iter()
                        .map(|&p| cut(&canonical_json(&inline[p]), 100))
                        .collect::<Vec<_>>()
                        .join(", "),
                    existing,
                    incoming: key_display(l, &row.key_values()),
                });
            }
        }
        if let Some(old) = &old {
            for (i, v) in old.uniques().iter().enumerate() {
                if let Some(v) = v {
                    let map = &mut st.by_unique[i];
                    if map.get(v.as_str()).is_some_and(|h| *h == row.key_id) {
                        if let Some((k, prev)) = map.remove_entry(v.as_str()) {
                            undo.push(Undo::Unique(model, i, k, Some(prev)));
                        }
                    }
                }
            }
        }
        for (i, v) in row.uniques.iter().enumerate() {
            if let Some(v) = v {
                let prev = st.by_unique[i].insert(
                    Cow::Borrowed(v.as_str()),
                    Cow::Borrowed(row.key_id.as_str()),
                );
                undo.push(Undo::Unique(model, i, Cow::Borrowed(v.as_str()), prev));
            }
        }
        let prev = st
            .holders
            .insert(Cow::Borrowed(row.key_id.as_str()), Holder::Row(row));
        undo.push(Undo::Holder(
            model,
            Cow::Borrowed(row.key_id.as_str()),
            prev,
        ));
        Ok(())
    }
}

/// Each model written, with whether some of its records were stored already.
pub(crate) type Written = Vec<(String, bool)>;

/// The rows to write, the last of each key per model (written in one lock order, see
/// [`Writes::write`]).
#[derive(Default)]
pub(crate) struct Writes<'r, 'a> {
    models: Vec<(&'a ModelLayout, Vec<&'r Row<'a>>, HashMap<&'r str, usize>)>,
}

impl<'r, 'a> Writes<'r, 'a> {
    pub(crate) fn add(&mut self, row: &'r Row<'a>) {
        let i = match self
            .models
            .iter()
            .position(|(l, _, _)| l.model == row.layout.model)
        {
            Some(i) => i,
            None => {
                self.models.push((row.layout, Vec::new(), HashMap::new()));
                self.models.len() - 1
            }
        };
        let (_, rows, index) = &mut self.models[i];
        match index.get(row.key_id.as_str()) {
            Some(&at) => rows[at] = row,
            None => {
                index.insert(&row.key_id, rows.len());
                rows.push(row);
            }
        }
    }

    /// Writes every model's rows: one upsert per model table, one delete and one insert per
    /// child table. Models go in the order of their names and rows in the order of their
    /// keys, whatever order the batch had: every writer takes its row locks in one global
    /// order, so two writers of shared records (nested ones above all) wait for each other
    /// instead of deadlocking. Rows of a model with secondary indexes keep the batch's order:
    /// who may take a value another record gives up in the same batch is decided in record
    /// order (as in SQLite); a deadlock there is retried.
    ///
    /// `extra` (statements on kye's own tables: key outcomes, rejects, ...) goes into the last
    /// model's upsert statement, or runs alone when there are no rows. The models in `fresh`
    /// are written by plain inserts (see [`upsert`]). Returns each model written, with
    /// whether some of its records were stored already.
    pub(crate) fn write(
        &self,
        tx: &mut Transaction<'_>,
        cache: &mut Cache,
        extra: Vec<Part<'_>>,
        fresh: &HashSet<String>,
    ) -> Result<Written, postgres::Error> {
        let mut models: Vec<_> = self.models.iter().collect();
        models.sort_by(|a, b| a.0.model.cmp(&b.0.model));
        let mut extra = Some(extra);
        let last = models.len().saturating_sub(1);
        let mut written = Vec::new();
        for (i, (l, rows, _)) in models.into_iter().enumerate() {
            let mut rows = rows.clone();
            if l.uniques.is_empty() {
                rows.sort_by(|a, b| a.key_id.cmp(&b.key_id));
            }
            let extra = if i == last { extra.take() } else { None };
            let insert = fresh.contains(&l.model);
            let stored = upsert(tx, cache, l, &rows, extra.unwrap_or_default(), insert)?;
            written.push((l.model.clone(), stored));
        }
        if let Some(extra) = extra {
            run_parts(tx, cache, extra)?;
        }
        Ok(written)
    }
}
