//! Reading from SQLite: records with nested references, runs with live counts, key outcomes,
//! rejects and drift.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::types::Value as Sql;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{Map, Value};

use crate::store::key::canonical_json;
use crate::store::layout::{self, Col, EdgeLayout, ModelLayout, Prim, POSITION};
use crate::store::lock::writer_alive;
use crate::store::records::{filter_edge, index_of, key_object, ref_value, value_object_out};
use crate::store::stale;
use crate::store::{
    mark_dead, DriftInfo, FetchedAges, Filter, IndexKey, KeyOutcomeInfo, KeyStatus, LineageRow,
    ListCursorInfo, RecordQuery, RejectInfo, RunCounts, RunId, RunInfo, RunStatus, StaleCounts,
    StoreError, StoreRead, Timestamp,
};

use super::convert::{edge_cols_sql, from_sql, json_to_sql, sql_to_json, to_sql};
use super::ddl::{list, q, where_eq};
use super::SqliteReader;

/// What a query returns: how many rows, how deep, with or without provenance.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    limit: Option<usize>,
    depth: usize,
    provenance: bool,
}

pub(super) struct Reader<'a> {
    conn: &'a Connection,
    path: &'a Path,
    layouts: &'a HashMap<String, ModelLayout>,
    no_source: &'a std::collections::HashSet<String>,
}

impl Reader<'_> {
    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.to_path_buf(),
            source,
        }
    }

    fn select_cols(l: &ModelLayout) -> Vec<(&EdgeLayout, &Col)> {
        l.edges
            .iter()
            .filter(|e| !e.in_child_table())
            .flat_map(|e| e.cols.iter().map(move |c| (e, c)))
            .collect()
    }

    /// Rows of `l` matching `where_sql`, as records.
    fn query(
        &self,
        l: &ModelLayout,
        where_sql: &str,
        args: &[Sql],
        shape: Shape,
        visiting: &mut Vec<(String, String)>,
    ) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        self.query_each(l, where_sql, args, shape, visiting, &mut |v| {
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Reader::query`] handing each record to `each` as its row is read: memory does not
    /// grow with the number of records.
    fn query_each(
        &self,
        l: &ModelLayout,
        where_sql: &str,
        args: &[Sql],
        shape: Shape,
        visiting: &mut Vec<(String, String)>,
        each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let Shape {
            limit,
            depth,
            provenance,
        } = shape;
        let cols = Self::select_cols(l);
        let mut names: Vec<&str> = cols.iter().map(|(_, c)| c.name.as_str()).collect();
        names.extend(layout::PROVENANCE);
        let mut select = list(&names);
        if self.no_source.contains(&l.table) {
            // A table from before issue 18 that no writer has given its source column yet.
            select = list(&names[..names.len() - 1]) + ", NULL";
        }
        let mut sql = format!("SELECT {select} FROM {} AS t", q(&l.table));
        if !where_sql.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(where_sql);
        }
        sql.push_str(" ORDER BY ");
        sql.push_str(
            &l.key
                .iter()
                .map(|c| format!("t.{}", q(&c.name)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if let Some(n) = limit {
            sql.push_str(&format!(" LIMIT {}", n.min(i64::MAX as usize)));
        }
        let mut st = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let mut rows = st
            .query(rusqlite::params_from_iter(args.iter()))
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Vec<Value>> {
                let mut out = Vec::with_capacity(names.len());
                for (i, (_, c)) in cols.iter().enumerate() {
                    out.push(from_sql(r.get_ref(i)?, c.prim));
                }
                let n = cols.len();
                out.push(from_sql(r.get_ref(n)?, Prim::Number));
                for j in 1..layout::PROVENANCE.len() {
                    out.push(from_sql(r.get_ref(n + j)?, Prim::String));
                }
                Ok(out)
            };
            let row = read(r).map_err(|e| self.err(e))?;
            each(self.build(l, &cols, &row, depth, provenance, visiting)?)?;
        }
        Ok(())
    }

    fn build(
        &self,
        l: &ModelLayout,
        cols: &[(&EdgeLayout, &Col)],
        row: &[Value],
        depth: usize,
        provenance: bool,
        visiting: &mut Vec<(String, String)>,
    ) -> Result<Value, StoreError> {
        let mut obj = Map::new();
        let key_vals: Vec<Sql> = l
            .key
            .iter()
            .map(|k| {
                let i = cols.iter().position(|(_, c)| c.name == k.name).unwrap_or(0);
                json_to_sql(&row[i], k.prim)
            })
            .collect();
        let me = (
            l.model.clone(),
            canonical_json(&Value::Array(key_vals.iter().map(sql_to_json).collect())),
        );
        visiting.push(me);
        for e in &l.edges {
            if e.in_child_table() {
                let table = e.table.as_deref().unwrap_or_default();
                let sql = format!(
                    "SELECT {} FROM {} WHERE {} ORDER BY {}",
                    list(e.cols.iter().map(|c| &c.name)),
                    q(table),
                    where_eq("", &l.parent_cols),
                    q(POSITION)
                );
                let item_rows: Vec<Vec<Value>> = {
                    let mut st = self.conn.prepare_cached(&sql).map_err(|x| self.err(x))?;
                    let mapped = st
                        .query_map(rusqlite::params_from_iter(key_vals.iter()), |r| {
                            (0..e.cols.len())
                                .map(|i| Ok(from_sql(r.get_ref(i)?, e.cols[i].prim)))
                                .collect()
                        })
                        .map_err(|x| self.err(x))?;
                    mapped.collect::<Result<_, _>>().map_err(|x| self.err(x))?
                };
                let mut arr = Vec::with_capacity(item_rows.len());
                for vals in item_rows {
                    arr.push(if e.value_object {
                        value_object_out(e, vals)
                    } else {
                        self.edge_out(e, &vals, depth, visiting)?
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
                    .map(|(i, _)| row[i].clone())
                    .collect();
                obj.insert(e.name.clone(), self.edge_out(e, &vals, depth, visiting)?);
            }
        }
        visiting.pop();
        if provenance {
            let n = cols.len();
            let mut p = Map::new();
            p.insert("run".into(), row[n].clone());
            p.insert("fetcher".into(), row[n + 1].clone());
            p.insert("fetched_at".into(), row[n + 2].clone());
            p.insert("hash".into(), row[n + 3].clone());
            p.insert("source".into(), row[n + 4].clone());
            obj.insert("_kye".into(), Value::Object(p));
        }
        Ok(Value::Object(obj))
    }

    /// One value of an edge: a primitive, or a reference (embedded when stored and depth allows).
    fn edge_out(
        &self,
        e: &EdgeLayout,
        vals: &[Value],
        depth: usize,
        visiting: &mut Vec<(String, String)>,
    ) -> Result<Value, StoreError> {
        let Some(target) = e.target.as_deref() else {
            return Ok(vals.first().cloned().unwrap_or(Value::Null));
        };
        let reference = ref_value(&e.cols, vals);
        if depth == 0 || reference.is_null() {
            return Ok(reference);
        }
        let Some(tl) = self.layouts.get(target) else {
            return Ok(reference);
        };
        let me = (
            target.to_string(),
            canonical_json(&Value::Array(vals.to_vec())),
        );
        if visiting.contains(&me) {
            return Ok(reference);
        }
        let args: Vec<Sql> = tl
            .key
            .iter()
            .zip(vals)
            .map(|(k, v)| json_to_sql(v, k.prim))
            .collect();
        let where_sql = where_eq("t.", tl.key.iter().map(|c| &c.name));
        let mut found = self.query(
            tl,
            &where_sql,
            &args,
            Shape {
                limit: Some(1),
                depth: depth - 1,
                provenance: false,
            },
            visiting,
        )?;
        Ok(found.pop().unwrap_or(reference))
    }
}

/// The columns of a looked-up key and their values.
type KeyColumns = (Vec<String>, Vec<Sql>);

/// The key columns and values of `key` for one of `l`'s indexes; `None` when no stored
/// record can have them (a value that cannot be stored in the key's columns, or none).
fn index_lookup(l: &ModelLayout, key: &IndexKey) -> Result<Option<KeyColumns>, StoreError> {
    index_of(l, key)?;
    let obj = key_object(key);
    let mut cols = Vec::new();
    let mut vals = Vec::new();
    for name in &key.edges {
        let e = l.edge(name).ok_or_else(|| StoreError::UnknownModel {
            model: l.model.clone(),
        })?;
        let v = match edge_cols_sql(&l.model, e, obj.get(name)) {
            Ok(v) => v,
            // A value that cannot be stored in the key's columns was never stored.
            Err(StoreError::InvalidValue { .. }) => return Ok(None),
            Err(x) => return Err(x),
        };
        for (c, s) in e.cols.iter().zip(v) {
            cols.push(c.name.clone());
            vals.push(s);
        }
    }
    if vals.iter().any(|v| matches!(v, Sql::Null)) {
        return Ok(None);
    }
    Ok(Some((cols, vals)))
}

pub(super) fn run_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunInfo> {
    let ts = |s: Option<String>| s.and_then(|s| s.parse::<Timestamp>().ok());
    let status: String = r.get(4)?;
    Ok(RunInfo {
        id: RunId(r.get(0)?),
        request: r.get(1)?,
        started_at: ts(r.get(2)?).unwrap_or(Timestamp::from_unix_millis(0)),
        ended_at: ts(r.get(3)?),
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        counts: RunCounts {
            stored: r.get::<_, i64>(5)? as u64,
            rejected: r.get::<_, i64>(6)? as u64,
            missing: r.get::<_, i64>(7)? as u64,
            failed: r.get::<_, i64>(8)? as u64,
            skipped: r.get::<_, i64>(9)? as u64,
        },
        error: r.get(10)?,
        resumed_from: r.get::<_, Option<i64>>(11)?.map(RunId),
        source: r.get(12)?,
    })
}

pub(super) const RUN_COLS: &str =
    "id, request, started_at, ended_at, status, stored, rejected, missing, failed, skipped, error, resumed_from, source";
/// [`RUN_COLS`] of a store whose `_kye_runs` predates the `source` column.
const OLD_RUN_COLS: &str =
    "id, request, started_at, ended_at, status, stored, rejected, missing, failed, skipped, error, resumed_from, NULL";

impl SqliteReader {
    /// The columns of a run row this store has (`source` came with issue 18).
    fn run_cols(&self) -> &'static str {
        if self.runs_source {
            RUN_COLS
        } else {
            OLD_RUN_COLS
        }
    }

    fn live_counts(&self, mut runs: Vec<RunInfo>) -> Result<Vec<RunInfo>, StoreError> {
        for r in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
            r.counts = self.outcome_counts(r.id)?;
        }
        // A reader is told a run is dead by the writer lock: when no writer holds it, a run
        // still `running` (read again, after asking the lock) belongs to a process that died.
        // The writer's own handle has no lock to ask: it holds it.
        let Some(lock) = &self.writer_lock else {
            return Ok(runs);
        };
        if runs.iter().any(|r| r.status == RunStatus::Running) && writer_alive(lock) == Some(false)
        {
            for r in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
                let now = self.sql(|c| {
                    c.prepare_cached(&format!(
                        "SELECT {} FROM _kye_runs WHERE id = ?1",
                        self.run_cols()
                    ))?
                    .query_row([r.id.0], run_from_row)
                    .optional()
                })?;
                match now {
                    Some(now) if now.status == RunStatus::Running => {
                        mark_dead(r);
                    }
                    Some(now) => *r = now,
                    None => {}
                }
            }
        }
        Ok(runs)
    }
}

impl StoreRead for SqliteReader {
    fn edge_names(&self, model: &str) -> Option<Vec<String>> {
        layout::edge_names(&self.layouts, model)
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> &Path {
        &self.path
    }

    fn last_stored(&self, model: &str, key: &IndexKey) -> Result<Option<Timestamp>, StoreError> {
        let l = self.layout(model)?;
        let Some((cols, vals)) = index_lookup(l, key)? else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT \"_kye_fetched_at\" FROM {} WHERE {}",
            q(&l.table),
            where_eq("", &cols)
        );
        let at: Option<String> = self.sql(|c| {
            c.prepare_cached(&sql)?
                .query_row(rusqlite::params_from_iter(vals.iter()), |r| r.get(0))
                .optional()
        })?;
        Ok(at.and_then(|s| s.parse().ok()))
    }

    fn latest_outcome(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
        if !self.initialized {
            return Ok(None);
        }
        self.sql(|c| {
            c.prepare_cached(
                "SELECT run_id, status, reason, at FROM _kye_keys WHERE model = ?1 AND key = ?2 \
                 ORDER BY at DESC, run_id DESC LIMIT 1",
            )?
            .query_row(params![model, key.canonical()], outcome_row)
            .optional()
        })
    }

    fn latest_done(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
        self.sql(|c| {
            c.prepare_cached(
                "SELECT run_id, status, reason, at FROM _kye_keys WHERE model = ?1 AND key = ?2 \
                 AND status IN ('stored', 'missing', 'rejected', 'skipped') \
                 ORDER BY run_id DESC LIMIT 1",
            )?
            .query_row(params![model, key.canonical()], outcome_row)
            .optional()
        })
    }

    fn record(&self, model: &str, key: &IndexKey) -> Result<Option<Value>, StoreError> {
        let l = self.layout(model)?;
        let Some((cols, vals)) = index_lookup(l, key)? else {
            return Ok(None);
        };
        let reader = Reader {
            conn: &self.conn,
            path: &self.path,
            layouts: &self.layouts,
            no_source: &self.no_source,
        };
        let mut found = reader.query(
            l,
            &where_eq("t.", &cols),
            &vals,
            Shape {
                limit: Some(1),
                depth: 0,
                provenance: false,
            },
            &mut Vec::new(),
        )?;
        Ok(found.pop())
    }

    fn latest_run_of(&self, request: &str) -> Result<Option<RunInfo>, StoreError> {
        let run = self.sql(|c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM _kye_runs WHERE request = ?1 ORDER BY id DESC LIMIT 1",
                self.run_cols()
            ))?
            .query_row([request], run_from_row)
            .optional()
        })?;
        Ok(self.live_counts(run.into_iter().collect())?.pop())
    }

    fn outcome_counts(&self, run: RunId) -> Result<RunCounts, StoreError> {
        if !self.initialized {
            return Ok(RunCounts::default());
        }
        let rows: Vec<(String, i64)> = self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT status, count(*) FROM _kye_keys WHERE run_id = ?1 GROUP BY status",
            )?;
            let rows = st.query_map([run.0], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })?;
        let mut counts = RunCounts::default();
        for (status, n) in rows {
            let n = n as u64;
            match KeyStatus::parse(&status) {
                Some(KeyStatus::Stored) => counts.stored += n,
                Some(KeyStatus::Rejected) => counts.rejected += n,
                Some(KeyStatus::Missing) => counts.missing += n,
                Some(KeyStatus::Skipped) => counts.skipped += n,
                Some(KeyStatus::Failed) | None => counts.failed += n,
            }
        }
        Ok(counts)
    }

    fn for_each_record(
        &self,
        query: &RecordQuery,
        each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let l = self.layout(&query.model)?;
        let reader = Reader {
            conn: &self.conn,
            path: &self.path,
            layouts: &self.layouts,
            no_source: &self.no_source,
        };
        let (where_sql, args) = match &query.filter {
            None => (String::new(), Vec::new()),
            Some(f) => filter_sql(l, f)?,
        };
        reader.query_each(
            l,
            &where_sql,
            &args,
            Shape {
                limit: query.limit,
                depth: query.depth,
                provenance: query.provenance,
            },
            &mut Vec::new(),
            each,
        )
    }

    fn runs(&self, limit: Option<usize>) -> Result<Vec<RunInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        let limit = limit.map(|n| n.min(i64::MAX as usize) as i64).unwrap_or(-1);
        let runs = self.sql(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {} FROM _kye_runs ORDER BY id DESC LIMIT ?1",
                self.run_cols()
            ))?;
            let rows = st.query_map([limit], run_from_row)?;
            rows.collect::<Result<Vec<_>, _>>()
        })?;
        self.live_counts(runs)
    }

    fn run(&self, id: RunId) -> Result<Option<RunInfo>, StoreError> {
        if !self.initialized {
            return Ok(None);
        }
        let run = self.sql(|c| {
            c.prepare_cached(&format!(
                "SELECT {} FROM _kye_runs WHERE id = ?1",
                self.run_cols()
            ))?
            .query_row([id.0], run_from_row)
            .optional()
        })?;
        Ok(self.live_counts(run.into_iter().collect())?.pop())
    }

    fn rejects(
        &self,
        run: Option<RunId>,
        limit: Option<usize>,
    ) -> Result<Vec<RejectInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        let limit = limit.map(|n| n.min(i64::MAX as usize) as i64).unwrap_or(-1);
        self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, run_id, model, key, fetcher, reason, errors, payload, at FROM _kye_rejects \
                 WHERE (?1 IS NULL OR run_id = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![run.map(|r| r.0), limit], |r| {
                let json = |s: Option<String>| s.and_then(|s| serde_json::from_str::<Value>(&s).ok());
                let at: String = r.get(8)?;
                Ok(RejectInfo {
                    id: r.get(0)?,
                    run: RunId(r.get(1)?),
                    model: r.get(2)?,
                    key: json(r.get(3)?),
                    fetcher: r.get(4)?,
                    reason: r.get(5)?,
                    errors: json(r.get(6)?).unwrap_or(Value::Null),
                    payload: json(r.get(7)?).unwrap_or(Value::Null),
                    at: at.parse().unwrap_or(Timestamp::from_unix_millis(0)),
                })
            })?;
            rows.collect()
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
        let sql = format!(
            "SELECT {}, \"_kye_hash\" FROM {} ORDER BY {}",
            list(l.key.iter().map(|c| &c.name)),
            q(&l.table),
            list(l.key.iter().map(|c| &c.name)),
        );
        let n = l.key.len();
        let mut failure = None;
        self.sql(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = st.query([])?;
            while let Some(row) = rows.next()? {
                let values: Vec<Value> = l
                    .key
                    .iter()
                    .enumerate()
                    .map(|(i, col)| row.get_ref(i).map(|v| from_sql(v, col.prim)))
                    .collect::<rusqlite::Result<_>>()?;
                let hash: String = row.get(n)?;
                if let Err(e) = each(IndexKey::new(key_edges.iter().copied(), values), hash) {
                    failure = Some(e);
                    break;
                }
            }
            Ok(())
        })?;
        failure.map_or(Ok(()), Err)
    }

    fn fetched_ages(&self, model: &str, cutoff: Timestamp) -> Result<FetchedAges, StoreError> {
        let l = self.layout(model)?;
        // Fetch times are fixed-width UTC text: they compare and sort as text.
        let sql = format!(
            "SELECT COALESCE(SUM(\"_kye_fetched_at\" >= ?1), 0), \
             COALESCE(SUM(\"_kye_fetched_at\" < ?1), 0), MIN(\"_kye_fetched_at\") FROM {}",
            q(&l.table)
        );
        let (since, before, oldest): (i64, i64, Option<String>) = self.sql(|c| {
            c.prepare_cached(&sql)?
                .query_row([cutoff.to_string()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
        })?;
        Ok(FetchedAges {
            since: u64::try_from(since).unwrap_or(0),
            before: u64::try_from(before).unwrap_or(0),
            oldest: oldest.and_then(|t| t.parse().ok()),
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
        // A record without a value for a key edge (a secondary index's optional edge) has
        // no key by these edges: passed over, as the default does.
        let not_null: String = cols
            .iter()
            .map(|c| format!(" AND {} IS NOT NULL", q(&c.name)))
            .collect();
        let sql = format!(
            "SELECT \"_kye_fetched_at\", {} FROM {} WHERE \"_kye_fetched_at\" < ?1{not_null} \
             ORDER BY \"_kye_fetched_at\", {} LIMIT ?2",
            list(cols.iter().map(|c| &c.name)),
            q(&l.table),
            list(l.key.iter().map(|c| &c.name)),
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.sql(|c| {
            let mut st = c.prepare_cached(&sql)?;
            let mut rows = st.query(params![cutoff.to_string(), limit])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let at: String = row.get(0)?;
                let values: Vec<Value> = cols
                    .iter()
                    .enumerate()
                    .map(|(i, col)| row.get_ref(i + 1).map(|v| from_sql(v, col.prim)))
                    .collect::<rusqlite::Result<_>>()?;
                out.push((at, values));
            }
            Ok(out)
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(at, values)| {
                Some((
                    at.parse().ok()?,
                    IndexKey::new(key_edges.iter().copied(), values),
                ))
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
        let mut failure = None;
        self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT output_model, output_key, input_model, input_key, input_hash, input_primary \
                 FROM _kye_lineage WHERE transformer = ?1 ORDER BY output_key, input_model, input_key",
            )?;
            let mut rows = st.query([transformer])?;
            while let Some(r) = rows.next()? {
                let row = LineageRow {
                    output_model: r.get(0)?,
                    output_key: r.get(1)?,
                    input_model: r.get(2)?,
                    input_key: r.get(3)?,
                    input_hash: r.get(4)?,
                    input_primary: r.get(5)?,
                };
                if let Err(e) = each(row) {
                    failure = Some(e);
                    break;
                }
            }
            Ok(())
        })?;
        failure.map_or(Ok(()), Err)
    }

    fn stale_inputs(
        &self,
        transformer: &str,
        inputs: &[(&str, &[&str])],
        each: &mut dyn FnMut(IndexKey, String) -> Result<(), StoreError>,
    ) -> Result<StaleCounts, StoreError> {
        let Some((primary, primary_edges)) = inputs.first() else {
            return Ok(StaleCounts::default());
        };
        let l = self.layout(primary)?;
        if !self.initialized || !l.keys_are_columns(primary_edges) {
            return stale::stale_inputs_by_reads(self, transformer, inputs, each);
        }
        // The default's judgement, reading borrowed column values: no key, record or lineage
        // row is built for a row that is not stale. While this connection reads the lineage,
        // a second one reads the primary input's hashes (the two scans take about as long).
        let table = q(&l.table);
        // A row is found again by its rowid under a name none of the table's columns hides
        // (an edge may be called `rowid`); when every name is taken, no side scan.
        let rowid = self.rowid_name(&l.table)?;
        let side_scan = rowid.is_some()
            && self.sql(|c| {
                c.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM _kye_lineage WHERE transformer = ?1)",
                )?
                .query_row([transformer], |r| r.get::<_, bool>(0))
            })?;
        let rowid = rowid.unwrap_or("rowid");
        let (mut verdict, side) = std::thread::scope(|scope| {
            let (path, side_table) = (self.path.clone(), table.clone());
            let side =
                side_scan.then(|| scope.spawn(move || hashes_by_rowid(&path, &side_table, rowid)));
            let verdict = self.judge_lineage(transformer, inputs)?;
            let side = side.and_then(|h| h.join().ok()).and_then(Result::ok);
            Ok::<_, StoreError>((verdict, side))
        })?;
        let read_key = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(String, IndexKey)> {
            let values: Vec<Value> = l
                .key
                .iter()
                .enumerate()
                .map(|(i, col)| row.get_ref(i + 1).map(|v| from_sql(v, col.prim)))
                .collect::<rusqlite::Result<_>>()?;
            let hash: String = row.get(0)?;
            Ok((hash, IndexKey::new(primary_edges.iter().copied(), values)))
        };
        let select = format!(
            "SELECT \"_kye_hash\", {} FROM {table}",
            list(l.key.iter().map(|c| &c.name)),
        );
        let mut unchanged = 0u64;
        let mut failure = None;
        // Hands a stale record over; false once `each` failed (kept in `failure`).
        let mut hand = |verdict: &mut stale::Verdict, key: IndexKey, hash: String| {
            verdict.note_stale(&key);
            each(key, hash).map_err(|e| failure = Some(e)).is_ok()
        };
        let mut handed = false;
        // Few stale records (the usual second run): their keys read by rowid.
        if let Some(rows) = side {
            let stale: Vec<i64> = rows
                .iter()
                .filter_map(|(hash, rowid)| {
                    let fresh = verdict.unchanged_digest(*hash);
                    unchanged += u64::from(fresh);
                    (!fresh).then_some(*rowid)
                })
                .collect();
            if stale.len() * 10 <= rows.len() {
                let sql = format!("{select} WHERE {rowid} = ?1");
                self.sql(|c| {
                    let mut st = c.prepare(&sql)?;
                    for rowid in stale {
                        if let Some((hash, key)) = st.query_row([rowid], read_key).optional()? {
                            if !hand(&mut verdict, key, hash) {
                                break;
                            }
                        }
                    }
                    Ok(())
                })?;
                handed = true;
            } else {
                unchanged = 0;
            }
        }
        // Many stale records (a first run): every key read in one pass.
        if !handed {
            self.sql(|c| {
                let mut st = c.prepare(&select)?;
                let mut rows = st.query([])?;
                while let Some(row) = rows.next()? {
                    if verdict.unchanged(row.get_ref(0)?.as_str()?) {
                        unchanged += 1;
                        continue;
                    }
                    let (hash, key) = read_key(row)?;
                    if !hand(&mut verdict, key, hash) {
                        break;
                    }
                }
                Ok(())
            })?;
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(StaleCounts {
                unchanged,
                orphaned: verdict.orphaned(self, primary)?,
            }),
        }
    }

    fn drift(&self) -> Result<Vec<DriftInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        self.sql(|c| {
            let mut st = c.prepare_cached(
                "SELECT model, path, first_seen, last_seen, first_run, last_run, example, count \
                 FROM _kye_drift ORDER BY model, path",
            )?;
            let rows = st.query_map([], |r| {
                let ts = |s: String| s.parse().unwrap_or(Timestamp::from_unix_millis(0));
                let example: String = r.get(6)?;
                Ok(DriftInfo {
                    model: r.get(0)?,
                    path: r.get(1)?,
                    first_seen: ts(r.get(2)?),
                    last_seen: ts(r.get(3)?),
                    first_run: RunId(r.get(4)?),
                    last_run: RunId(r.get(5)?),
                    example: serde_json::from_str(&example).unwrap_or(Value::String(example)),
                    count: r.get::<_, i64>(7)? as u64,
                })
            })?;
            rows.collect()
        })
    }

    fn list_cursor(&self, model: &str, lister: &str) -> Result<Option<ListCursorInfo>, StoreError> {
        // A store a writer of an older kye made has no cursor table until a writer opens it.
        if !self.initialized || !self.has_table("_kye_list_cursors")? {
            return Ok(None);
        }
        self.sql(|c| {
            c.prepare_cached(
                "SELECT cursor, finished, run_id, at FROM _kye_list_cursors \
                 WHERE model = ?1 AND lister = ?2",
            )?
            .query_row(params![model, lister], |r| {
                let cursor: String = r.get(0)?;
                let at: String = r.get(3)?;
                Ok(ListCursorInfo {
                    value: serde_json::from_str(&cursor).unwrap_or(Value::String(cursor)),
                    finished: r.get(1)?,
                    run: RunId(r.get(2)?),
                    at: at.parse().unwrap_or(Timestamp::from_unix_millis(0)),
                })
            })
            .optional()
        })
    }
}

/// `WHERE` text and arguments for an `edge = value` filter.
pub(super) fn filter_sql(l: &ModelLayout, f: &Filter) -> Result<(String, Vec<Sql>), StoreError> {
    let bad = |message: String| StoreError::InvalidFilter {
        model: l.model.clone(),
        message,
    };
    let e = filter_edge(l, f)?;
    let c = &e.cols[0];
    let v = to_sql(&f.value, c.prim).map_err(|m| bad(format!("edge {}: {m}", e.name)))?;
    if e.multiple {
        let table = e.table.as_deref().unwrap_or_default();
        let join = l
            .parent_cols
            .iter()
            .zip(&l.key)
            .map(|(p, k)| format!("c.{} = t.{}", q(p), q(&k.name)))
            .collect::<Vec<_>>()
            .join(" AND ");
        Ok((
            format!(
                "EXISTS (SELECT 1 FROM {} AS c WHERE {join} AND c.{} = ?)",
                q(table),
                q(&c.name)
            ),
            vec![v],
        ))
    } else {
        Ok((format!("t.{} = ?", q(&c.name)), vec![v]))
    }
}

/// A `run_id, status, reason, at` row of `_kye_keys` as a key outcome.
pub(super) fn outcome_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyOutcomeInfo> {
    let status: String = r.get(1)?;
    let at: String = r.get(3)?;
    Ok(KeyOutcomeInfo {
        run: RunId(r.get(0)?),
        status: KeyStatus::parse(&status).unwrap_or(KeyStatus::Failed),
        reason: r.get(2)?,
        at: at.parse().unwrap_or(Timestamp::from_unix_millis(0)),
    })
}

impl SqliteReader {
    /// The lineage of `transformer` judged against the current hashes of its inputs other
    /// than the primary one ([`stale::Judge`]).
    /// The first of SQLite's names for a row's rowid (`rowid`, `_rowid_`, `oid`) that no
    /// column of `table` hides, as the table is (not as its layout says: a column may have
    /// been added by hand); `None` when every one is a column's name.
    fn rowid_name(&self, table: &str) -> Result<Option<&'static str>, StoreError> {
        let columns: Vec<String> = self.sql(|c| {
            let mut st = c.prepare("SELECT name FROM pragma_table_info(?1)")?;
            let names = st.query_map([table], |r| r.get::<_, String>(0))?;
            names.collect()
        })?;
        Ok(["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|n| !columns.iter().any(|c| c.eq_ignore_ascii_case(n))))
    }

    fn judge_lineage(
        &self,
        transformer: &str,
        inputs: &[(&str, &[&str])],
    ) -> Result<stale::Verdict, StoreError> {
        let hashes = |model: &str, set: &mut stale::Digests| {
            let sql = format!(
                "SELECT \"_kye_hash\" FROM {}",
                q(&self.layout(model)?.table)
            );
            self.sql(|c| {
                let mut st = c.prepare(&sql)?;
                let mut rows = st.query([])?;
                while let Some(row) = rows.next()? {
                    set.insert(stale::Digest::of(row.get_ref(0)?.as_str()?));
                }
                Ok(())
            })
        };
        let lineage = |judge: &mut stale::Judge| {
            self.sql(|c| {
                let mut st = c.prepare_cached(
                    "SELECT output_key, input_model, input_key, input_hash, input_primary \
                     FROM _kye_lineage WHERE transformer = ?1 \
                     ORDER BY output_key, input_model, input_key",
                )?;
                let mut rows = st.query([transformer])?;
                while let Some(r) = rows.next()? {
                    judge.row(
                        r.get_ref(0)?.as_str()?,
                        r.get_ref(1)?.as_str()?,
                        r.get_ref(2)?.as_str()?,
                        r.get_ref(3)?.as_str_or_null()?,
                        r.get::<_, bool>(4)?,
                    );
                }
                Ok(())
            })
        };
        let mut judge = stale::Judge::new(inputs.iter().map(|(m, _)| *m));
        for model in judge.to_read() {
            if let Some(set) = judge.current(&model) {
                hashes(&model, set)?;
            }
        }
        lineage(&mut judge)?;
        if judge.wants_primary_hashes() {
            let primary = inputs.first().map(|(m, _)| *m).unwrap_or_default();
            judge = judge.with_primary_hashes(|set| hashes(primary, set))?;
            lineage(&mut judge)?;
        }
        Ok(judge.finish())
    }
}

/// Every row's content hash and rowid (read as `rowid`, a name no column of `table` hides) of
/// `table`, read on a connection of its own (beside the reader's scan of the lineage).
fn hashes_by_rowid(
    path: &Path,
    table: &str,
    rowid: &str,
) -> rusqlite::Result<Vec<(stale::Digest, i64)>> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut st = conn.prepare(&format!("SELECT \"_kye_hash\", {rowid} FROM {table}"))?;
    let mut rows = st.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push((stale::Digest::of(row.get_ref(0)?.as_str()?), row.get(1)?));
    }
    Ok(out)
}
