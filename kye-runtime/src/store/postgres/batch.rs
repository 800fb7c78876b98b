//! One batch of records in PostgreSQL: each record read into rows (its own and its nested
//! records', every value checked) before anything is sent; the stored holders of the batch's
//! keys and secondary-index values loaded in one query per model; the records applied in
//! order against them (secondary-index clashes and contradicting nested records fail their
//! item, as in SQLite); then one multi-row upsert per model table (`INSERT ... SELECT FROM
//! unnest(...) ON CONFLICT ... DO UPDATE`) and, per child table, one delete of the batch's
//! parents' rows and one multi-row insert.

use std::borrow::Cow;
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Statement, Transaction};
use serde_json::Value;

use crate::store::key::{canonical_json, content_hash, cut};
use crate::store::layout::{ModelLayout, Prim, POSITION};
use crate::store::records::{edge_value, items, nested_records};
use crate::store::values::{key_display, with_key};
use crate::store::{record_object, Provenance, StoreError};

use super::convert::{edge_texts, from_text, kye_text, normal_text};
use super::ddl::{inline_cols, q, qi, sql_type};
use super::MAX_NESTING;

type Text<'a> = Option<Cow<'a, str>>;

/// One row of a model table with its child rows, read from a record.
pub(crate) struct Row<'a> {
    pub layout: &'a ModelLayout,
    /// Primary key texts, as bound.
    key: Vec<Text<'a>>,
    /// The key's normalized texts joined (see `joined`): the same for the same key, stored
    /// or not, and different for different keys.
    key_id: String,
    inline: Vec<Text<'a>>,
    /// Per child-table edge (in edge order): its rows, each the edge's columns.
    children: Vec<Vec<Vec<Text<'a>>>>,
    /// Per secondary index: its normalized values joined, `None` when one is null.
    uniques: Vec<Option<String>>,
    depth: usize,
    run: i64,
    fetcher: Cow<'a, str>,
    fetched_at: String,
    hash: String,
    source: Option<Cow<'a, str>>,
}

impl Row<'_> {
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
    for (u, pos) in l.uniques.iter().zip(unique_positions(l)) {
        let texts: Vec<Text<'_>> = pos.iter().map(|&i| inline[i].clone()).collect();
        check_index_size(l, &texts, &u.edges, key_text)?;
    }
    if depth < MAX_NESTING {
        for (target, n) in nested_records(layouts, l, obj) {
            record_rows(layouts, &target.model, n, prov, depth + 1, out)?;
        }
    }
    let prims = inline_prims(l);
    let uniques = unique_positions(l)
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

/// A stored (or, earlier in this batch, written) row of a key.
#[derive(Clone)]
struct Holder {
    key: Vec<Value>,
    uniques: Vec<Option<String>>,
    run: i64,
    hash: String,
    /// The inline columns as JSON (loaded for models nested in this batch).
    inline: Option<Vec<Value>>,
}

#[derive(Default)]
struct ModelState {
    holders: HashMap<String, Holder>,
    by_unique: Vec<HashMap<String, String>>,
}

/// What [`State::apply`] changed for one record, newest last.
pub(crate) struct Applied(Vec<Undo>);

enum Undo {
    Holder(String, String, Option<Holder>),
    Unique(String, usize, String, Option<String>),
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

/// The holders of a batch's keys and secondary-index values, as the transaction sees them.
pub(crate) struct State {
    models: HashMap<String, ModelState>,
}

fn text_array<'a>(rows: impl Iterator<Item = &'a Text<'a>>) -> Vec<Option<&'a str>> {
    rows.map(|t| t.as_deref()).collect()
}

/// `SELECT x.a1::numeric, x.a2::text FROM unnest($1::text[], $2::text[]) AS x(a1, a2)`
/// over `prims`, parameters numbered from `first`.
fn unnest_select(prims: &[&str], first: usize) -> String {
    let casts: Vec<String> = prims
        .iter()
        .enumerate()
        .map(|(i, t)| format!("x.a{i}::{t}"))
        .collect();
    let args: Vec<String> = (0..prims.len())
        .map(|i| format!("${}::text[]", first + i))
        .collect();
    let names: Vec<String> = (0..prims.len()).map(|i| format!("a{i}")).collect();
    format!(
        "SELECT {} FROM unnest({}) AS x({})",
        casts.join(", "),
        args.join(", "),
        names.join(", ")
    )
}

/// `WHERE` text matching rows whose `cols` (quoted, with their types) equal one of the rows of
/// text arrays bound from parameter `first` on: `= ANY(array)` for one column (an index scan
/// whatever the table's size), a row comparison with `unnest` for several.
fn matching(cols: &[(String, &str)], first: usize) -> String {
    match cols {
        [(c, t)] => format!("{c} = ANY(${first}::text[]::{t}[])"),
        _ => {
            let types: Vec<&str> = cols.iter().map(|(_, t)| *t).collect();
            format!(
                "({}) IN ({})",
                cols.iter()
                    .map(|(c, _)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                unnest_select(&types, first)
            )
        }
    }
}

impl State {
    /// Loads, for each model of `rows` that needs it (nested records in this batch, or
    /// secondary indexes when `uniques` asks), the stored rows holding one of the batch's keys
    /// or index values. Without `uniques` a value held by a stored record is found by the
    /// table's own `UNIQUE` constraint, which fails the batch (23505), and the batch is
    /// written again with `uniques` (see `clash`): clashes are rare, the lookup would be paid
    /// by every batch.
    pub(crate) fn load(
        tx: &mut Transaction<'_>,
        cache: &mut Cache,
        rows: &[&Row<'_>],
        uniques: bool,
    ) -> Result<State, postgres::Error> {
        let mut by_model: Vec<(&ModelLayout, Vec<&Row<'_>>)> = Vec::new();
        for r in rows {
            match by_model.iter_mut().find(|(l, _)| l.model == r.layout.model) {
                Some((_, v)) => v.push(r),
                None => by_model.push((r.layout, vec![r])),
            }
        }
        let mut models = HashMap::new();
        for (l, rs) in by_model {
            let nested = rs.iter().any(|r| r.depth > 0);
            let mut st = ModelState {
                holders: HashMap::new(),
                by_unique: vec![HashMap::new(); l.uniques.len()],
            };
            // A key written twice in the batch hides the first write from the table's
            // constraint (only the last is sent): then the holders are looked up too.
            let twice = {
                let mut seen = std::collections::HashSet::new();
                !rs.iter().all(|r| seen.insert(r.key_id.as_str()))
            };
            if (l.uniques.is_empty() || !(uniques || twice)) && !nested {
                models.insert(l.model.clone(), st);
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
                        st.by_unique[i].insert(u.clone(), key_id.clone());
                    }
                }
                let key = key
                    .iter()
                    .zip(&l.key)
                    .map(|(t, c)| from_text(t.as_deref(), c.prim))
                    .collect();
                st.holders.insert(
                    key_id,
                    Holder {
                        key,
                        uniques,
                        run,
                        hash,
                        inline,
                    },
                );
            }
            models.insert(l.model.clone(), st);
        }
        Ok(State { models })
    }

    /// Applies the rows of one record in order: a secondary-index value held by another
    /// record, or a nested record contradicting one nested earlier in the same run, fails
    /// the whole record and leaves the state as it was. What it changed can be taken back
    /// ([`State::undo`]) when the record is refused later.
    pub(crate) fn apply(&mut self, unit: &[Row<'_>]) -> Result<Applied, StoreError> {
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
    pub(crate) fn undo(&mut self, applied: Applied) {
        for u in applied.0.into_iter().rev() {
            match u {
                Undo::Holder(m, k, old) => {
                    let holders = &mut self.model(&m).holders;
                    match old {
                        Some(h) => holders.insert(k, h),
                        None => holders.remove(&k),
                    };
                }
                Undo::Unique(m, i, v, old) => {
                    let map = &mut self.model(&m).by_unique[i];
                    match old {
                        Some(h) => map.insert(v, h),
                        None => map.remove(&v),
                    };
                }
            }
        }
    }

    fn model(&mut self, model: &str) -> &mut ModelState {
        self.models.entry(model.to_string()).or_default()
    }

    fn apply_row(&mut self, row: &Row<'_>, undo: &mut Vec<Undo>) -> Result<(), StoreError> {
        let l = row.layout;
        let prims = inline_prims(l);
        let inline: Vec<Value> = row
            .inline
            .iter()
            .zip(&prims)
            .map(|(t, p)| from_text(t.as_deref(), *p))
            .collect();
        let key: Vec<Value> = row
            .key
            .iter()
            .zip(&l.key)
            .map(|(t, c)| from_text(t.as_deref(), c.prim))
            .collect();
        let st = self.model(&l.model);
        if st.by_unique.len() < l.uniques.len() {
            st.by_unique.resize_with(l.uniques.len(), HashMap::new);
        }
        let old = st.holders.get(&row.key_id).cloned();
        if let (true, Some(h)) = (row.depth > 0, &old) {
            if h.run == row.run && h.hash != row.hash {
                let show = |v: &Value| cut(&canonical_json(v), 100);
                let differs = h
                    .inline
                    .as_ref()
                    .and_then(|before| {
                        inline_cols(l)
                            .zip(inline.iter().zip(before))
                            .find(|(_, (new, old))| canonical_json(new) != canonical_json(old))
                            .map(|((e, _), (new, old))| {
                                format!("edge {}: {} here, {} before", e.name, show(new), show(old))
                            })
                    })
                    .unwrap_or_else(|| "the values of its multi-valued edges differ".to_string());
                return Err(StoreError::NestedConflict {
                    model: l.model.clone(),
                    key: key_display(l, &key),
                    differs,
                });
            }
        }
        for (i, (u, value)) in l.uniques.iter().zip(&row.uniques).enumerate() {
            let Some(value) = value else { continue };
            let Some(holder) = st.by_unique[i].get(value) else {
                continue;
            };
            if *holder != row.key_id {
                let existing = st
                    .holders
                    .get(holder)
                    .map(|h| key_display(l, &h.key))
                    .unwrap_or_default();
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
                    incoming: key_display(l, &key),
                });
            }
        }
        let model = l.model.clone();
        if let Some(old) = &old {
            for (i, v) in old.uniques.iter().enumerate() {
                if let Some(v) = v {
                    if st.by_unique[i].get(v) == Some(&row.key_id) {
                        let prev = st.by_unique[i].remove(v);
                        undo.push(Undo::Unique(model.clone(), i, v.clone(), prev));
                    }
                }
            }
        }
        for (i, v) in row.uniques.iter().enumerate() {
            if let Some(v) = v {
                let prev = st.by_unique[i].insert(v.clone(), row.key_id.clone());
                undo.push(Undo::Unique(model.clone(), i, v.clone(), prev));
            }
        }
        let prev = st.holders.insert(
            row.key_id.clone(),
            Holder {
                key,
                uniques: row.uniques.clone(),
                run: row.run,
                hash: row.hash.clone(),
                inline: Some(inline),
            },
        );
        undo.push(Undo::Holder(model, row.key_id.clone(), prev));
        Ok(())
    }
}

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
    pub(crate) fn write(
        &self,
        tx: &mut Transaction<'_>,
        cache: &mut Cache,
    ) -> Result<(), postgres::Error> {
        let mut models: Vec<_> = self.models.iter().collect();
        models.sort_by(|a, b| a.0.model.cmp(&b.0.model));
        for (l, rows, _) in models {
            let mut rows = rows.clone();
            if l.uniques.is_empty() {
                rows.sort_by(|a, b| a.key_id.cmp(&b.key_id));
            }
            upsert(tx, cache, l, &rows)?;
        }
        Ok(())
    }
}

fn upsert(
    tx: &mut Transaction<'_>,
    cache: &mut Cache,
    l: &ModelLayout,
    rows: &[&Row<'_>],
) -> Result<(), postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let cols: Vec<(&str, &str)> = inline_cols(l)
        .map(|(_, c)| (c.name.as_str(), sql_type(c.prim)))
        .chain([
            ("_kye_run_id", "bigint"),
            ("_kye_fetcher", "text"),
            ("_kye_fetched_at", "timestamptz"),
            ("_kye_hash", "text"),
            (crate::store::layout::SOURCE_COLUMN, "text"),
        ])
        .collect();
    let types: Vec<&str> = cols.iter().map(|(_, t)| *t).collect();
    let n_inline = cols.len() - 5;
    let mut arrays: Vec<Vec<Option<&str>>> = (0..n_inline)
        .map(|i| text_array(rows.iter().map(|r| &r.inline[i])))
        .collect();
    let runs: Vec<String> = rows.iter().map(|r| r.run.to_string()).collect();
    arrays.push(runs.iter().map(|s| Some(s.as_str())).collect());
    arrays.push(rows.iter().map(|r| Some(r.fetcher.as_ref())).collect());
    arrays.push(rows.iter().map(|r| Some(r.fetched_at.as_str())).collect());
    arrays.push(rows.iter().map(|r| Some(r.hash.as_str())).collect());
    arrays.push(rows.iter().map(|r| r.source.as_deref()).collect());
    let key_cols: Vec<&str> = l.key.iter().map(|c| c.name.as_str()).collect();
    let updates: Vec<String> = cols
        .iter()
        .filter(|(n, _)| !key_cols.contains(n))
        .map(|(n, _)| format!("{0} = EXCLUDED.{0}", qi(n)))
        .collect();
    // `xmax <> 0`: the row was there and is updated (a new row has none), so only those
    // parents can have child rows to replace.
    let returning: Vec<String> = key_cols
        .iter()
        .map(|n| format!("{}::text", qi(n)))
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) {} ON CONFLICT ({}) DO UPDATE SET {} RETURNING {}, xmax <> 0",
        qi(&l.table),
        cols.iter()
            .map(|(n, _)| qi(n))
            .collect::<Vec<_>>()
            .join(", "),
        unnest_select(&types, 1),
        key_cols
            .iter()
            .map(|n| qi(n))
            .collect::<Vec<_>>()
            .join(", "),
        updates.join(", "),
        returning.join(", ")
    );
    let params: Vec<&(dyn ToSql + Sync)> =
        arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    let st = cached(tx, cache, &sql)?;
    let mut existed: Vec<Vec<Option<String>>> = vec![Vec::new(); l.key.len()];
    for r in tx.query(&st, &params)? {
        if r.get::<_, bool>(l.key.len()) {
            for (i, col) in existed.iter_mut().enumerate() {
                col.push(r.get(i));
            }
        }
    }
    // Child rows: replaced as a set for every written parent (new parents have none).
    let key_types: Vec<&str> = l.key.iter().map(|c| sql_type(c.prim)).collect();
    let keys: Vec<Vec<Option<&str>>> = existed
        .iter()
        .map(|col| col.iter().map(|t| t.as_deref()).collect())
        .collect();
    let parent_cols: Vec<(String, &str)> = l
        .parent_cols
        .iter()
        .zip(&key_types)
        .map(|(p, t)| (qi(p), *t))
        .collect();
    for (ci, e) in l.edges.iter().filter(|e| e.in_child_table()).enumerate() {
        let table = qi(e.table.as_deref().unwrap_or_default());
        if keys.first().is_some_and(|k| !k.is_empty()) {
            exec_arrays(
                tx,
                cache,
                &format!("DELETE FROM {table} WHERE {}", matching(&parent_cols, 1)),
                &keys,
            )?;
        }
        let width = e.cols.len();
        let mut child: Vec<Vec<Option<&str>>> = vec![Vec::new(); l.key.len() + 1 + width];
        let mut positions: Vec<String> = Vec::new();
        for r in rows {
            for (pos, item) in r.children[ci].iter().enumerate() {
                for (i, k) in r.key.iter().enumerate() {
                    child[i].push(k.as_deref());
                }
                positions.push(pos.to_string());
                for (j, v) in item.iter().enumerate() {
                    child[l.key.len() + 1 + j].push(v.as_deref());
                }
            }
        }
        if positions.is_empty() {
            continue;
        }
        child[l.key.len()] = positions.iter().map(|p| Some(p.as_str())).collect();
        let mut types = key_types.clone();
        types.push("integer");
        types.extend(e.cols.iter().map(|c| sql_type(c.prim)));
        let mut names: Vec<&str> = l.parent_cols.iter().map(String::as_str).collect();
        names.push(POSITION);
        names.extend(e.cols.iter().map(|c| c.name.as_str()));
        exec_arrays(
            tx,
            cache,
            &format!(
                "INSERT INTO {table} ({}) {}",
                names
                    .iter()
                    .map(|n| if *n == POSITION { q(n) } else { qi(n) })
                    .collect::<Vec<_>>()
                    .join(", "),
                unnest_select(&types, 1)
            ),
            &child,
        )?;
    }
    Ok(())
}

fn exec_arrays(
    tx: &mut Transaction<'_>,
    cache: &mut Cache,
    sql: &str,
    arrays: &[Vec<Option<&str>>],
) -> Result<u64, postgres::Error> {
    let params: Vec<&(dyn ToSql + Sync)> =
        arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
    let st = cached(tx, cache, sql)?;
    tx.execute(&st, &params)
}
