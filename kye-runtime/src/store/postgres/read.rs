//! Reading from PostgreSQL: records with nested references (streamed through a cursor), runs
//! (as `runs` shows them), key outcomes, rejects and drift.

use std::collections::HashMap;
use std::path::Path;

use postgres::types::ToSql;
use postgres::{Row as PgRow, Transaction};
use serde_json::{Map, Value};

use crate::store::key::canonical_json;
use crate::store::layout::{self, Col, EdgeLayout, ModelLayout, Prim, POSITION};
use crate::store::records::{filter_edge, index_of, key_object, ref_value, value_object_out};
use crate::store::values::edge_values;
use crate::store::{
    DriftInfo, FetchedAges, Filter, IndexKey, KeyOutcomeInfo, KeyStatus, LineageRow,
    ListCursorInfo, RecordQuery, RejectInfo, RunCounts, RunId, RunInfo, StoreError, StoreRead,
    Timestamp,
};

use super::convert::{col_text, from_text};
use super::ddl::{inline_cols, key_id, q, qi, sql_type};
use super::runs::outcome_counts_on;
use super::PgReader;

/// Rows fetched per round trip when streaming records.
const CHUNK: i32 = 500;

/// `$i::text::type`: a text parameter cast to a column's type.
fn param(i: usize, prim: Prim) -> String {
    format!("${i}::text::{}", sql_type(prim))
}

/// The values of a row's primary key columns, in key order.
fn key_values(l: &ModelLayout, cols: &[(&EdgeLayout, &Col)], row: &RowValues) -> Vec<Value> {
    l.key
        .iter()
        .map(|k| {
            let i = cols.iter().position(|(_, c)| c.name == k.name).unwrap_or(0);
            row.inline[i].clone()
        })
        .collect()
}

/// What a query returns.
#[derive(Clone, Copy)]
struct Shape {
    limit: Option<usize>,
    depth: usize,
    provenance: bool,
}

/// Reads records inside one transaction (one snapshot-per-statement connection).
struct Reader<'a, 't> {
    tx: &'a mut Transaction<'t>,
    layouts: &'a HashMap<String, ModelLayout>,
    no_source: &'a std::collections::HashSet<String>,
    /// Statements prepared in this transaction, by text: a child table's rows are read for
    /// every record, and preparing is a round trip of its own.
    prepared: HashMap<String, postgres::Statement>,
}

impl Reader<'_, '_> {
    /// The statement of `sql`, prepared once per reading.
    fn statement(&mut self, sql: String) -> Result<postgres::Statement, postgres::Error> {
        if let Some(st) = self.prepared.get(&sql) {
            return Ok(st.clone());
        }
        let st = self.tx.prepare(&sql)?;
        self.prepared.insert(sql, st.clone());
        Ok(st)
    }
}

/// The SELECT list of a model's rows: inline columns as text, then provenance (a NULL source
/// for a table from before issue 18 that no writer has given the column yet).
fn select_list(l: &ModelLayout, no_source: &std::collections::HashSet<String>) -> String {
    let mut cols: Vec<String> = inline_cols(l)
        .map(|(_, c)| format!("t.{}::text", qi(&c.name)))
        .collect();
    cols.push("t.\"_kye_run_id\"".into());
    cols.push("t.\"_kye_fetcher\"".into());
    cols.push("(extract(epoch from t.\"_kye_fetched_at\") * 1000)::bigint".into());
    cols.push("t.\"_kye_hash\"".into());
    if no_source.contains(&l.table) {
        cols.push("NULL::text".into());
    } else {
        cols.push(format!("t.{}", qi(crate::store::layout::SOURCE_COLUMN)));
    }
    cols.join(", ")
}

fn order_by(l: &ModelLayout) -> String {
    l.key
        .iter()
        .map(|c| format!("t.{}", qi(&c.name)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A model row: inline values as JSON, then provenance.
struct RowValues {
    inline: Vec<Value>,
    run: i64,
    fetcher: String,
    fetched_at: i64,
    hash: String,
    source: Option<String>,
}

fn row_values(l: &ModelLayout, r: &PgRow) -> RowValues {
    let cols: Vec<&Col> = inline_cols(l).map(|(_, c)| c).collect();
    let n = cols.len();
    RowValues {
        inline: cols
            .iter()
            .enumerate()
            .map(|(i, c)| from_text(r.get::<_, Option<&str>>(i), c.prim))
            .collect(),
        run: r.get(n),
        fetcher: r.get(n + 1),
        fetched_at: r.get(n + 2),
        hash: r.get(n + 3),
        source: r.get(n + 4),
    }
}

impl Reader<'_, '_> {
    fn query(
        &mut self,
        l: &ModelLayout,
        where_sql: &str,
        args: &[Option<String>],
        shape: Shape,
        visiting: &mut Vec<(String, String)>,
    ) -> Result<Vec<Value>, postgres::Error> {
        let mut sql = format!(
            "SELECT {} FROM {} AS t",
            select_list(l, self.no_source),
            qi(&l.table)
        );
        if !where_sql.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(where_sql);
        }
        sql.push_str(&format!(" ORDER BY {}", order_by(l)));
        if let Some(n) = shape.limit {
            sql.push_str(&format!(" LIMIT {}", n.min(i64::MAX as usize)));
        }
        let params: Vec<&(dyn ToSql + Sync)> =
            args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
        let st = self.statement(sql)?;
        let rows = self.tx.query(&st, &params)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let v = row_values(l, &r);
            out.push(self.build(l, v, shape, visiting, None)?);
        }
        Ok(out)
    }

    /// The child rows of every row of a chunk, one query per child table: per row (in chunk
    /// order), per multi-valued edge of `l` (in edge order), its items' column values in
    /// position order. The rows' keys are matched in SQL, cast to the key's type, as reading
    /// one record's child rows matches them.
    fn children_of(
        &mut self,
        l: &ModelLayout,
        rows: &[RowValues],
    ) -> Result<Vec<Vec<Vec<Vec<Value>>>>, postgres::Error> {
        let multi: Vec<&EdgeLayout> = l.edges.iter().filter(|e| e.in_child_table()).collect();
        let mut out = vec![vec![Vec::new(); multi.len()]; rows.len()];
        if multi.is_empty() || rows.is_empty() {
            return Ok(out);
        }
        let cols: Vec<(&EdgeLayout, &Col)> = inline_cols(l).collect();
        let keys: Vec<Vec<Option<String>>> = rows
            .iter()
            .map(|row| key_values(l, &cols, row).iter().map(key_text).collect())
            .collect();
        // One text array per key column.
        let arrays: Vec<Vec<Option<String>>> = (0..l.key.len())
            .map(|i| keys.iter().map(|k| k[i].clone()).collect())
            .collect();
        let unnest = (1..=arrays.len())
            .map(|i| format!("${i}::text[]"))
            .collect::<Vec<_>>()
            .join(", ");
        let names = (0..arrays.len())
            .map(|i| format!("k{i}, "))
            .collect::<String>();
        let on = l
            .parent_cols
            .iter()
            .zip(&l.key)
            .enumerate()
            .map(|(i, (p, k))| format!("c.{} = p.k{i}::{}", qi(p), sql_type(k.prim)))
            .collect::<Vec<_>>()
            .join(" AND ");
        for (n, e) in multi.iter().enumerate() {
            let sql = format!(
                "SELECT p.ord, {} FROM unnest({unnest}) WITH ORDINALITY AS p({names}ord) \
                 JOIN {} AS c ON {on} ORDER BY p.ord, c.{}",
                e.cols
                    .iter()
                    .map(|c| format!("c.{}::text", qi(&c.name)))
                    .collect::<Vec<_>>()
                    .join(", "),
                qi(e.table.as_deref().unwrap_or_default()),
                q(POSITION)
            );
            let params: Vec<&(dyn ToSql + Sync)> =
                arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let st = self.statement(sql)?;
            for r in self.tx.query(&st, &params)? {
                let ord: i64 = r.get(0);
                let vals: Vec<Value> = e
                    .cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| from_text(r.get::<_, Option<&str>>(i + 1), c.prim))
                    .collect();
                if let Some(row) = usize::try_from(ord - 1).ok().and_then(|i| out.get_mut(i)) {
                    row[n].push(vals);
                }
            }
        }
        Ok(out)
    }

    /// The record of a row. `children`: its child rows per multi-valued edge (in edge order),
    /// read beforehand for a whole chunk ([`Reader::children_of`]); `None` reads them here.
    fn build(
        &mut self,
        l: &ModelLayout,
        row: RowValues,
        shape: Shape,
        visiting: &mut Vec<(String, String)>,
        mut children: Option<Vec<Vec<Vec<Value>>>>,
    ) -> Result<Value, postgres::Error> {
        let cols: Vec<(&EdgeLayout, &Col)> = inline_cols(l).collect();
        let key_vals = key_values(l, &cols, &row);
        let key_texts: Vec<Option<String>> = key_vals.iter().map(key_text).collect();
        let mut child_edge = 0;
        visiting.push((
            l.model.clone(),
            canonical_json(&Value::Array(key_vals.clone())),
        ));
        let mut obj = Map::new();
        for e in &l.edges {
            if e.in_child_table() {
                let table = e.table.as_deref().unwrap_or_default();
                let wheres = l
                    .parent_cols
                    .iter()
                    .zip(&l.key)
                    .enumerate()
                    .map(|(i, (p, k))| format!("{} = {}", qi(p), param(i + 1, k.prim)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
                let sql = format!(
                    "SELECT {} FROM {} WHERE {wheres} ORDER BY {}",
                    e.cols
                        .iter()
                        .map(|c| format!("{}::text", qi(&c.name)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    qi(table),
                    q(POSITION)
                );
                let item_rows: Vec<Vec<Value>> = match children.as_mut() {
                    Some(read) => read
                        .get_mut(child_edge)
                        .map(std::mem::take)
                        .unwrap_or_default(),
                    None => {
                        let params: Vec<&(dyn ToSql + Sync)> =
                            key_texts.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                        let st = self.statement(sql)?;
                        self.tx
                            .query(&st, &params)?
                            .iter()
                            .map(|r| {
                                e.cols
                                    .iter()
                                    .enumerate()
                                    .map(|(i, c)| from_text(r.get::<_, Option<&str>>(i), c.prim))
                                    .collect()
                            })
                            .collect()
                    }
                };
                child_edge += 1;
                let mut arr = Vec::with_capacity(item_rows.len());
                for vals in item_rows {
                    arr.push(if e.value_object {
                        value_object_out(e, vals)
                    } else {
                        self.edge_out(e, &vals, shape.depth, visiting)?
                    });
                }
                if e.multiple {
                    obj.insert(e.name.clone(), Value::Array(arr));
                } else {
                    obj.insert(
                        e.name.clone(),
                        arr.into_iter().next().unwrap_or(Value::Null),
                    );
                }
            } else {
                let vals: Vec<Value> = cols
                    .iter()
                    .enumerate()
                    .filter(|(_, (ce, _))| ce.name == e.name)
                    .map(|(i, _)| row.inline[i].clone())
                    .collect();
                let v = self.edge_out(e, &vals, shape.depth, visiting)?;
                obj.insert(e.name.clone(), v);
            }
        }
        visiting.pop();
        if shape.provenance {
            let mut p = Map::new();
            p.insert("run".into(), Value::from(row.run));
            p.insert("fetcher".into(), Value::String(row.fetcher));
            p.insert(
                "fetched_at".into(),
                Value::String(Timestamp::from_unix_millis(row.fetched_at).to_string()),
            );
            p.insert("hash".into(), Value::String(row.hash));
            p.insert("source".into(), Value::from(row.source));
            obj.insert("_kye".into(), Value::Object(p));
        }
        Ok(Value::Object(obj))
    }

    /// One value of an edge: a primitive, or a reference (embedded when stored and depth
    /// allows).
    fn edge_out(
        &mut self,
        e: &EdgeLayout,
        vals: &[Value],
        depth: usize,
        visiting: &mut Vec<(String, String)>,
    ) -> Result<Value, postgres::Error> {
        let Some(target) = e.target.as_deref() else {
            return Ok(vals.first().cloned().unwrap_or(Value::Null));
        };
        let reference = ref_value(&e.cols, vals);
        if depth == 0 || reference.is_null() {
            return Ok(reference);
        }
        let layouts = self.layouts;
        let Some(tl) = layouts.get(target) else {
            return Ok(reference);
        };
        let me = (
            target.to_string(),
            canonical_json(&Value::Array(vals.to_vec())),
        );
        if visiting.contains(&me) {
            return Ok(reference);
        }
        let args: Vec<Option<String>> = vals.iter().map(key_text).collect();
        let where_sql = tl
            .key
            .iter()
            .enumerate()
            .map(|(i, c)| format!("t.{} = {}", qi(&c.name), param(i + 1, c.prim)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let shape = Shape {
            limit: Some(1),
            depth: depth - 1,
            provenance: false,
        };
        let mut found = self.query(tl, &where_sql, &args, shape, visiting)?;
        Ok(found.pop().unwrap_or(reference))
    }
}

/// A value read back (a key column) as the text to bind when looking it up again.
fn key_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(canonical_json(other)),
    }
}

/// A `WHERE` text and its text arguments.
type Lookup = (String, Vec<Option<String>>);

/// The `WHERE` of a looked-up key (one of the model's indexes) and its arguments; `None`
/// when no stored record can have it (a value that cannot be stored in the key's columns).
fn index_lookup(l: &ModelLayout, key: &IndexKey) -> Result<Option<Lookup>, StoreError> {
    index_of(l, key)?;
    let obj = key_object(key);
    let mut wheres = Vec::new();
    let mut args = Vec::new();
    for name in &key.edges {
        let e = l.edge(name).ok_or_else(|| StoreError::UnknownModel {
            model: l.model.clone(),
        })?;
        let mut vals = Vec::new();
        match edge_values(&l.model, e, obj.get(name), &mut vals) {
            Ok(()) => {}
            Err(StoreError::InvalidValue { .. }) => return Ok(None),
            Err(x) => return Err(x),
        }
        for (c, v) in e.cols.iter().zip(&vals) {
            let Ok(Some(t)) = col_text(v) else {
                return Ok(None);
            };
            args.push(Some(t.into_owned()));
            wheres.push(format!("t.{} = {}", qi(&c.name), param(args.len(), c.prim)));
        }
    }
    Ok(Some((wheres.join(" AND "), args)))
}

fn outcome_row(r: &PgRow) -> KeyOutcomeInfo {
    let status: String = r.get(1);
    KeyOutcomeInfo {
        run: RunId(r.get(0)),
        status: KeyStatus::parse(&status).unwrap_or(KeyStatus::Failed),
        reason: r.get(2),
        at: Timestamp::from_unix_millis(r.get(3)),
    }
}

/// Turns a chunk of rows into items, in the reading transaction (see [`PgReader::stream`]).
type BuildChunk<'a, T> =
    dyn Fn(&mut Transaction<'_>, &[postgres::Row]) -> Result<Vec<T>, postgres::Error> + Sync + 'a;

impl PgReader {
    /// Reads the rows of `sql` through a portal, in chunks, on a thread of its own: `build`
    /// turns each chunk into items (it may query more in the same read-only transaction), and
    /// `each` gets them on the caller's thread while the next chunk is read. Memory holds a
    /// chunk or two, however many rows there are; an error from `each` stops the reading.
    fn stream<T: Send>(
        &self,
        sql: String,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
        each: &mut dyn FnMut(T) -> Result<(), StoreError>,
        build: &BuildChunk<'_, T>,
    ) -> Result<(), StoreError> {
        let mut guard = self.conn();
        let conn: &mut super::Conn = &mut guard;
        let (send, receive) = std::sync::mpsc::sync_channel::<Vec<T>>(1);
        std::thread::scope(|scope| {
            let producer = scope.spawn(move || {
                conn.run(move |s| {
                    let mut tx = s.client.build_transaction().read_only(true).start()?;
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                    let portal = tx.bind(sql.as_str(), &refs)?;
                    loop {
                        let rows = tx.query_portal(&portal, CHUNK)?;
                        let last = rows.len() < CHUNK as usize;
                        let chunk = build(&mut tx, &rows)?;
                        // The reader stopped (its `each` failed): stop too.
                        if send.send(chunk).is_err() || last {
                            break;
                        }
                    }
                    drop(portal);
                    tx.commit()
                })
            });
            let mut failed = None;
            while let Ok(chunk) = receive.recv() {
                for item in chunk {
                    if let Err(e) = each(item) {
                        failed = Some(e);
                        break;
                    }
                }
                if failed.is_some() {
                    break;
                }
            }
            drop(receive);
            let produced = match producer.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            match failed {
                Some(e) => Err(e),
                None => produced,
            }
        })
    }
}

impl StoreRead for PgReader {
    fn edge_names(&self, model: &str) -> Option<Vec<String>> {
        layout::edge_names(&self.layouts, model)
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> &Path {
        &self.location
    }

    fn last_stored(&self, model: &str, key: &IndexKey) -> Result<Option<Timestamp>, StoreError> {
        let l = self.layout(model)?;
        let Some((where_sql, args)) = index_lookup(l, key)? else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT (extract(epoch from t.\"_kye_fetched_at\") * 1000)::bigint FROM {} AS t WHERE {where_sql}",
            qi(&l.table)
        );
        self.conn().run(move |s| {
            let st = s.prepare(&sql)?;
            let params: Vec<&(dyn ToSql + Sync)> =
                args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            Ok(s.client
                .query_opt(&st, &params)?
                .map(|r| Timestamp::from_unix_millis(r.get(0))))
        })
    }

    fn latest_outcome(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
        if !self.initialized {
            return Ok(None);
        }
        let (model, key) = (model.to_string(), key.canonical());
        self.conn().run(move |s| {
            let st = s.prepare(concat!(
                "SELECT run_id, status, reason, (extract(epoch from at) * 1000)::bigint FROM _kye_keys \
                 WHERE model = $1 AND ",
                key_id!("key"),
                " = ",
                key_id!("$2::text"),
                " AND key = $2 ORDER BY at DESC, run_id DESC LIMIT 1"
            ))?;
            Ok(s.client.query_opt(&st, &[&model, &key])?.as_ref().map(outcome_row))
        })
    }

    fn latest_done(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
        if !self.initialized {
            return Ok(None);
        }
        let (model, key) = (model.to_string(), key.canonical());
        self.conn().run(move |s| {
            let st = s.prepare(concat!(
                "SELECT run_id, status, reason, (extract(epoch from at) * 1000)::bigint FROM _kye_keys \
                 WHERE model = $1 AND ",
                key_id!("key"),
                " = ",
                key_id!("$2::text"),
                " AND key = $2 AND status IN ('stored', 'missing', 'rejected', 'skipped') \
                 ORDER BY run_id DESC LIMIT 1"
            ))?;
            Ok(s.client.query_opt(&st, &[&model, &key])?.as_ref().map(outcome_row))
        })
    }

    fn record(&self, model: &str, key: &IndexKey) -> Result<Option<Value>, StoreError> {
        let l = self.layout(model)?;
        let Some((where_sql, args)) = index_lookup(l, key)? else {
            return Ok(None);
        };
        let layouts = &self.layouts;
        let no_source = &self.no_source;
        self.conn().run(move |s| {
            let mut tx = s.client.transaction()?;
            let mut r = Reader {
                tx: &mut tx,
                layouts,
                no_source,
                prepared: HashMap::new(),
            };
            let shape = Shape {
                limit: Some(1),
                depth: 0,
                provenance: false,
            };
            let mut found = r.query(l, &where_sql, &args, shape, &mut Vec::new())?;
            tx.commit()?;
            Ok(found.pop())
        })
    }

    fn outcome_counts(&self, run: RunId) -> Result<RunCounts, StoreError> {
        if !self.initialized {
            return Ok(RunCounts::default());
        }
        self.conn().run(move |s| outcome_counts_on(s.client, run))
    }

    fn for_each_record(
        &self,
        query: &RecordQuery,
        each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let l = self.layout(&query.model)?;
        let (where_sql, args) = match &query.filter {
            None => (String::new(), Vec::new()),
            Some(f) => filter_sql(l, f)?,
        };
        let shape = Shape {
            limit: query.limit,
            depth: query.depth,
            provenance: query.provenance,
        };
        let mut sql = format!(
            "SELECT {} FROM {} AS t",
            select_list(l, &self.no_source),
            qi(&l.table)
        );
        if !where_sql.is_empty() {
            sql.push_str(&format!(" WHERE {where_sql}"));
        }
        sql.push_str(&format!(" ORDER BY {}", order_by(l)));
        if let Some(n) = shape.limit {
            sql.push_str(&format!(" LIMIT {}", n.min(i64::MAX as usize)));
        }
        let layouts = &self.layouts;
        let no_source = &self.no_source;
        let params: Vec<Box<dyn ToSql + Sync + Send>> = args
            .into_iter()
            .map(|a| Box::new(a) as Box<dyn ToSql + Sync + Send>)
            .collect();
        // Each chunk's records built (child rows, references) before the next is fetched.
        self.stream(sql, params, each, &|tx, rows| {
            let mut r = Reader {
                tx,
                layouts,
                no_source,
                prepared: HashMap::new(),
            };
            let values: Vec<RowValues> = rows.iter().map(|row| row_values(l, row)).collect();
            let children = r.children_of(l, &values)?;
            let mut chunk = Vec::with_capacity(rows.len());
            for (v, children) in values.into_iter().zip(children) {
                chunk.push(r.build(l, v, shape, &mut Vec::new(), Some(children))?);
            }
            Ok(chunk)
        })
    }

    fn runs(&self, limit: Option<usize>) -> Result<Vec<RunInfo>, StoreError> {
        let limit = limit
            .map(|n| n.min(i64::MAX as usize) as i64)
            .unwrap_or(i64::MAX);
        self.runs_where(
            format!(
                "SELECT {} FROM _kye_runs ORDER BY id DESC LIMIT $1",
                self.run_cols()
            ),
            vec![limit],
        )
    }

    fn latest_run_of(&self, request: &str) -> Result<Option<RunInfo>, StoreError> {
        if !self.initialized {
            return Ok(None);
        }
        let request = super::convert::kye_text(request).into_owned();
        let id: Option<i64> = self.conn().run(move |s| {
            Ok(s.client
                .query_opt(
                    "SELECT id FROM _kye_runs WHERE request = $1 ORDER BY id DESC LIMIT 1",
                    &[&request],
                )?
                .map(|r| r.get(0)))
        })?;
        match id {
            Some(id) => self.run(RunId(id)),
            None => Ok(None),
        }
    }

    fn run(&self, id: RunId) -> Result<Option<RunInfo>, StoreError> {
        Ok(self
            .runs_where(
                format!("SELECT {} FROM _kye_runs WHERE id = $1", self.run_cols()),
                vec![id.0],
            )?
            .pop())
    }

    fn rejects(
        &self,
        run: Option<RunId>,
        limit: Option<usize>,
    ) -> Result<Vec<RejectInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        let limit = limit
            .map(|n| n.min(i64::MAX as usize) as i64)
            .unwrap_or(i64::MAX);
        let run = run.map(|r| r.0);
        self.conn().run(move |s| {
            let rows = s.client.query(
                "SELECT id, run_id, model, key::text, fetcher, reason, errors::text, payload::text, \
                 (extract(epoch from at) * 1000)::bigint FROM _kye_rejects \
                 WHERE ($1::bigint IS NULL OR run_id = $1) ORDER BY id DESC LIMIT $2",
                &[&run, &limit],
            )?;
            let json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
            Ok(rows
                .iter()
                .map(|r| RejectInfo {
                    id: r.get(0),
                    run: RunId(r.get(1)),
                    model: r.get(2),
                    key: json(r.get(3)),
                    fetcher: r.get(4),
                    reason: r.get(5),
                    errors: json(r.get(6)).unwrap_or(Value::Null),
                    payload: json(r.get(7)).unwrap_or(Value::Null),
                    at: Timestamp::from_unix_millis(r.get(8)),
                })
                .collect())
        })
    }

    fn content_hashes(
        &self,
        model: &str,
        key_edges: &[&str],
        each: &mut dyn FnMut(IndexKey, String) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let l = self.layout(model)?;
        // Keys of plain values are read from their columns with the hash, nothing else;
        // others (a reference as primary key) through whole records.
        if !l.keys_are_columns(key_edges) {
            return crate::store::traits::hashes_of_records(self, model, key_edges, each);
        }
        let cols: Vec<String> = l
            .key
            .iter()
            .map(|c| format!("t.{}::text", qi(&c.name)))
            .collect();
        let sql = format!(
            "SELECT {}, t.\"_kye_hash\" FROM {} AS t ORDER BY {}",
            cols.join(", "),
            qi(&l.table),
            order_by(l)
        );
        let n = l.key.len();
        let rows: Vec<(Vec<Option<String>>, String)> = self.conn().run(move |s| {
            let rows = s.client.query(sql.as_str(), &[])?;
            Ok(rows
                .iter()
                .map(|r| ((0..n).map(|i| r.get(i)).collect(), r.get(n)))
                .collect())
        })?;
        for (texts, hash) in rows {
            let values = l
                .key
                .iter()
                .zip(&texts)
                .map(|(c, t)| from_text(t.as_deref(), c.prim));
            each(IndexKey::new(key_edges.iter().copied(), values), hash)?;
        }
        Ok(())
    }

    fn fetched_ages(&self, model: &str, cutoff: Timestamp) -> Result<FetchedAges, StoreError> {
        let l = self.layout(model)?;
        let sql = format!(
            "SELECT count(*) FILTER (WHERE t.\"_kye_fetched_at\" >= $1::text::timestamptz), \
             count(*) FILTER (WHERE t.\"_kye_fetched_at\" < $1::text::timestamptz), \
             (extract(epoch from min(t.\"_kye_fetched_at\")) * 1000)::bigint FROM {} AS t",
            qi(&l.table)
        );
        let cutoff = cutoff.to_string();
        let (since, before, oldest): (i64, i64, Option<i64>) = self.conn().run(move |s| {
            let st = s.prepare(&sql)?;
            let r = s.client.query_one(&st, &[&cutoff])?;
            Ok((r.get(0), r.get(1), r.get(2)))
        })?;
        Ok(FetchedAges {
            since: u64::try_from(since).unwrap_or(0),
            before: u64::try_from(before).unwrap_or(0),
            oldest: oldest.map(Timestamp::from_unix_millis),
        })
    }

    fn fetched_before(
        &self,
        model: &str,
        key_edges: &[&str],
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Timestamp, IndexKey)>, StoreError> {
        let l = self.layout(model)?;
        let Some(cols) = l.plain_columns(key_edges) else {
            return crate::store::traits::keys_fetched_before(
                self, model, key_edges, cutoff, limit,
            );
        };
        let texts: Vec<String> = cols
            .iter()
            .map(|c| format!("t.{}::text", qi(&c.name)))
            .collect();
        // A record without a value for a key edge (a secondary index's optional edge) has
        // no key by these edges: passed over, as the default does.
        let not_null: String = cols
            .iter()
            .map(|c| format!(" AND t.{} IS NOT NULL", qi(&c.name)))
            .collect();
        let sql = format!(
            "SELECT (extract(epoch from t.\"_kye_fetched_at\") * 1000)::bigint, {} FROM {} AS t \
             WHERE t.\"_kye_fetched_at\" < $1::text::timestamptz{not_null} \
             ORDER BY t.\"_kye_fetched_at\", {} LIMIT $2",
            texts.join(", "),
            qi(&l.table),
            order_by(l)
        );
        let (cutoff, n) = (cutoff.to_string(), cols.len());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows: Vec<(i64, Vec<Option<String>>)> = self.conn().run(move |s| {
            let st = s.prepare(&sql)?;
            let rows = s.client.query(&st, &[&cutoff, &limit])?;
            Ok(rows
                .iter()
                .map(|r| (r.get(0), (1..=n).map(|i| r.get(i)).collect()))
                .collect())
        })?;
        Ok(rows
            .into_iter()
            .map(|(at, texts)| {
                let values = cols
                    .iter()
                    .zip(&texts)
                    .map(|(c, t)| from_text(t.as_deref(), c.prim));
                (
                    Timestamp::from_unix_millis(at),
                    IndexKey::new(key_edges.iter().copied(), values),
                )
            })
            .collect())
    }

    fn for_each_lineage(
        &self,
        transformer: &str,
        each: &mut dyn FnMut(LineageRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        if !self.initialized {
            return Ok(());
        }
        // Memory holds one chunk of rows, however many outputs the transformer has.
        let params: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(transformer.to_string())];
        self.stream(
            "SELECT output_model, output_key, input_model, input_key, input_hash, input_primary \
             FROM _kye_lineage WHERE transformer = $1 ORDER BY output_key, input_model, input_key"
                .to_string(),
            params,
            each,
            &|_, rows| {
                Ok(rows
                    .iter()
                    .map(|r| LineageRow {
                        output_model: r.get(0),
                        output_key: r.get(1),
                        input_model: r.get(2),
                        input_key: r.get(3),
                        input_hash: r.get(4),
                        input_primary: r.get(5),
                    })
                    .collect())
            },
        )
    }

    fn drift(&self) -> Result<Vec<DriftInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        self.conn().run(|s| {
            let rows = s.client.query(
                "SELECT model, path, (extract(epoch from first_seen) * 1000)::bigint, \
                 (extract(epoch from last_seen) * 1000)::bigint, first_run, last_run, example::text, count \
                 FROM _kye_drift ORDER BY model COLLATE \"C\", path COLLATE \"C\"",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let example: String = r.get(6);
                    DriftInfo {
                        model: r.get(0),
                        path: r.get(1),
                        first_seen: Timestamp::from_unix_millis(r.get(2)),
                        last_seen: Timestamp::from_unix_millis(r.get(3)),
                        first_run: RunId(r.get(4)),
                        last_run: RunId(r.get(5)),
                        example: serde_json::from_str(&example).unwrap_or(Value::String(example)),
                        count: r.get::<_, i64>(7) as u64,
                    }
                })
                .collect())
        })
    }

    fn list_cursor(&self, model: &str, lister: &str) -> Result<Option<ListCursorInfo>, StoreError> {
        // A store an earlier kye made has no cursor table until a writer opens it.
        if !self.initialized || !self.has_table("_kye_list_cursors")? {
            return Ok(None);
        }
        let (model, lister) = (model.to_string(), lister.to_string());
        self.conn().run(move |s| {
            let row = s.client.query_opt(
                "SELECT cursor::text, finished, run_id, (extract(epoch from at) * 1000)::bigint \
                 FROM _kye_list_cursors WHERE model = $1 AND lister = $2",
                &[&model, &lister],
            )?;
            Ok(row.map(|r| {
                let cursor: String = r.get(0);
                ListCursorInfo {
                    value: serde_json::from_str(&cursor).unwrap_or(Value::String(cursor)),
                    finished: r.get(1),
                    run: RunId(r.get(2)),
                    at: Timestamp::from_unix_millis(r.get(3)),
                }
            }))
        })
    }
}

/// `WHERE` text and arguments for an `edge = value` filter.
fn filter_sql(l: &ModelLayout, f: &Filter) -> Result<Lookup, StoreError> {
    let e = filter_edge(l, f)?;
    let c = &e.cols[0];
    let bad = |message: String| StoreError::InvalidFilter {
        model: l.model.clone(),
        message: format!("edge {}: {message}", e.name),
    };
    let v = crate::store::values::column_value(&f.value, c.prim).map_err(bad)?;
    let text = col_text(&v).map_err(bad)?.map(|t| t.into_owned());
    if e.multiple {
        let join = l
            .parent_cols
            .iter()
            .zip(&l.key)
            .map(|(p, k)| format!("c.{} = t.{}", qi(p), qi(&k.name)))
            .collect::<Vec<_>>()
            .join(" AND ");
        Ok((
            format!(
                "EXISTS (SELECT 1 FROM {} AS c WHERE {join} AND c.{} = {})",
                qi(e.table.as_deref().unwrap_or_default()),
                qi(&c.name),
                param(1, c.prim)
            ),
            vec![text],
        ))
    } else {
        Ok((
            format!("t.{} = {}", qi(&c.name), param(1, c.prim)),
            vec![text],
        ))
    }
}
