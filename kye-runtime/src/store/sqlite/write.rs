//! Writing to SQLite: `prepare`, runs, and batches of records, rejects, drift and key outcomes
//! in one transaction each.

use std::collections::HashMap;
use std::path::Path;

use kye_lang::Schema;
use rusqlite::types::Value as Sql;
use rusqlite::{params, CachedStatement, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use super::super::key::{canonical_json, content_hash, cut};
use super::super::layout::{self, ModelLayout};
use super::super::{
    drift_example, fold_path, IndexKey, NewRun, Provenance, RunEnd, RunId, StoreError, StoreRead,
    StoreWrite, Timestamp, WriteItem,
};
use super::convert::{
    edge_args, edge_value, has_nested_records, is_full_record, items, key_display, sql_to_json,
    to_sql_values, with_key, Arg,
};
use super::ddl::model_sql;
use super::{SqliteStore, FORMAT_VERSION, MAX_NESTING};

/// The statements one `write_batch` runs, each prepared once per batch.
///
/// `prepare_cached` hashes and compares the whole SQL text on every call; here a statement
/// is found by the address of its text. That is sound because every text is borrowed for
/// `'s` (the layouts' statements, string literals), so none is freed and its address reused
/// while the batch runs.
pub(super) struct Statements<'c, 's> {
    conn: &'c Connection,
    prepared: Vec<(&'s str, CachedStatement<'c>)>,
}

impl<'c, 's> Statements<'c, 's> {
    fn new(conn: &'c Connection) -> Self {
        Statements {
            conn,
            prepared: Vec::new(),
        }
    }

    /// The statement of `sql`, prepared (from the connection's cache) on first use.
    fn get(&mut self, sql: &'s str) -> rusqlite::Result<&mut CachedStatement<'c>> {
        let i = match self
            .prepared
            .iter()
            .position(|(s, _)| std::ptr::eq(*s, sql))
        {
            Some(i) => i,
            None => {
                let st = self.conn.prepare_cached(sql)?;
                self.prepared.push((sql, st));
                self.prepared.len() - 1
            }
        };
        Ok(&mut self.prepared[i].1)
    }

    /// Runs `sql` with `args`: the number of rows changed.
    fn execute<P: rusqlite::Params>(&mut self, sql: &'s str, args: P) -> rusqlite::Result<usize> {
        self.get(sql)?.execute(args)
    }
}

/// The text of the last timestamp formatted, reused while timestamps repeat (a batch's
/// records and outcomes mostly share a few milliseconds).
#[derive(Default)]
pub(super) struct TimeText {
    last: Option<(Timestamp, String)>,
}

impl TimeText {
    fn get(&mut self, t: Timestamp) -> &str {
        match &mut self.last {
            Some((at, text)) if *at == t => {}
            last => *last = Some((t, t.to_string())),
        }
        self.last
            .as_ref()
            .map(|(_, s)| s.as_str())
            .unwrap_or_default()
    }
}

/// True when an SQLite error is a `UNIQUE` constraint failing.
pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// The child rows of one multi-valued edge of a record: `items` rows of `e.cols.len()`
/// arguments each, flattened.
pub(super) struct ChildRows<'a> {
    items: usize,
    args: Vec<Arg<'a>>,
}

/// Wraps an SQLite error of the database at `path`.
pub(super) fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the records of one batch inside its transaction.
pub(super) struct BatchWriter<'c, 's> {
    st: Statements<'c, 's>,
    path: &'s Path,
    layouts: &'s HashMap<String, ModelLayout>,
    times: TimeText,
}

impl<'c, 's> BatchWriter<'c, 's> {
    /// Stores one record (and the nested records it carries) inside the caller's transaction.
    ///
    /// Every item error (missing key, a value that does not fit, an index clash) is found
    /// before this record's own first write, or by that write (a secondary index clash
    /// fails the insert, which SQLite rolls back). Errors after that point are fatal (they
    /// abort the batch). Nested records are written first, so a caller storing a record with
    /// nested records wraps it in a savepoint; a record without them needs none.
    fn store_record(
        &mut self,
        model: &str,
        value: &Value,
        prov: &Provenance,
        depth: usize,
    ) -> Result<(), StoreError> {
        let layouts = self.layouts;
        let sqlerr = sql_error(self.path);
        let l = layouts.get(model).ok_or_else(|| StoreError::UnknownModel {
            model: model.to_string(),
        })?;
        let obj = super::super::record_object(model, value)?;

        // 1. Compute everything: key, inline columns, child rows.
        let mut key_vals = Vec::with_capacity(l.key.len());
        for e in l.key_edges.iter() {
            let edge = l.edge(e).ok_or_else(|| StoreError::UnknownModel {
                model: model.to_string(),
            })?;
            let start = key_vals.len();
            edge_args(model, edge, edge_value(obj, edge), &mut key_vals)?;
            if key_vals[start..].iter().any(Arg::is_null) {
                return Err(StoreError::MissingKey {
                    model: model.to_string(),
                    edge: e.clone(),
                });
            }
        }
        let key_text = || key_display(l, &to_sql_values(&key_vals));
        // The inserted row: inline columns in edge order, then provenance.
        let mut row: Vec<Arg> = Vec::with_capacity(l.edges.len() + layout::PROVENANCE.len());
        let mut child_rows: Vec<ChildRows> = Vec::new();
        for e in l.edges.iter() {
            let v = edge_value(obj, e);
            if e.in_child_table() {
                let mut rows = ChildRows {
                    items: 0,
                    args: Vec::new(),
                };
                for item in items(v) {
                    edge_args(model, e, Some(item), &mut rows.args)
                        .map_err(|x| with_key(x, key_text))?;
                    rows.items += 1;
                }
                child_rows.push(rows);
            } else {
                edge_args(model, e, v, &mut row).map_err(|x| with_key(x, key_text))?;
            }
        }

        // 2. Nested records of their own model (written now; the caller holds a savepoint).
        if depth < MAX_NESTING {
            for e in l.edges.iter() {
                let Some(target) = e.target.as_deref().filter(|_| !e.value_object) else {
                    continue;
                };
                let Some(v) = edge_value(obj, e) else {
                    continue;
                };
                let Some(tl) = layouts.get(target) else {
                    continue;
                };
                let nested: Vec<&Value> = if e.multiple {
                    items(Some(v)).collect()
                } else {
                    vec![v]
                };
                for n in nested {
                    if is_full_record(tl, n) {
                        self.store_record(target, n, prov, depth + 1)?;
                    }
                }
            }
        }

        // 3. Insert, or replace the stored row and its child rows. Past the first
        // statement nothing can fail for this record's data any more: any error aborts the
        // batch.
        let sql = model_sql(l);
        row.push(Arg::Value(Sql::Integer(prov.run.0)));
        row.push(Arg::Text(&prov.fetcher));
        row.push(Arg::Value(Sql::Text(
            self.times.get(prov.fetched_at).to_string(),
        )));
        row.push(Arg::Value(Sql::Text(content_hash(value))));
        // A new key takes one statement; a value of a secondary index held by another
        // record fails it (and SQLite undoes it).
        match self
            .st
            .execute(&sql.insert_new, rusqlite::params_from_iter(&row))
        {
            Ok(0) => {
                // The key is stored: replace it, unless the new values of its secondary
                // indexes are held by other records, or it is a nested record contradicting
                // the one another record of this run nested under the same key.
                if depth > 0 {
                    self.check_nested(l, &row, &key_vals, prov.run)?;
                }
                self.check_uniques(l, &row, &key_vals)?;
                let keys = || rusqlite::params_from_iter(&key_vals);
                self.st.execute(&sql.delete, keys()).map_err(&sqlerr)?;
                for delete in &sql.child_deletes {
                    self.st.execute(delete, keys()).map_err(&sqlerr)?;
                }
                self.st
                    .execute(&sql.insert, rusqlite::params_from_iter(&row))
                    .map_err(&sqlerr)?;
            }
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                self.check_uniques(l, &row, &key_vals)?;
                // No other record holds the values (cannot happen): the error is fatal.
                return Err(sqlerr(e));
            }
            Err(e) => return Err(sqlerr(e)),
        }
        let position = |pos: usize| Arg::Value(Sql::Integer(pos as i64));
        for ((rows, insert), e) in child_rows
            .iter()
            .zip(&sql.child_inserts)
            .zip(l.edges.iter().filter(|e| e.in_child_table()))
        {
            let width = e.cols.len();
            for pos in 0..rows.items {
                let pos_arg = position(pos);
                let item = &rows.args[pos * width..(pos + 1) * width];
                let args = key_vals.iter().chain(std::iter::once(&pos_arg)).chain(item);
                self.st
                    .execute(insert, rusqlite::params_from_iter(args))
                    .map_err(&sqlerr)?;
            }
        }
        Ok(())
    }

    /// A nested record whose key this run already stored with other content: two parents
    /// disagree about one record, so the index does not identify it (or the source is
    /// inconsistent). Replacing it would silently rewrite what the first parent said.
    fn check_nested(
        &mut self,
        l: &'s ModelLayout,
        row: &[Arg<'_>],
        key_vals: &[Arg<'_>],
        run: RunId,
    ) -> Result<(), StoreError> {
        let sql = model_sql(l);
        let inline = row.len() - layout::PROVENANCE.len();
        let stored: Option<Vec<Sql>> = self
            .st
            .get(&sql.stored_row)
            .and_then(|st| {
                st.query_row(rusqlite::params_from_iter(key_vals.iter()), |r| {
                    (0..row.len()).map(|i| r.get::<_, Sql>(i)).collect()
                })
                .optional()
            })
            .map_err(sql_error(self.path))?;
        let Some(stored) = stored else {
            return Ok(());
        };
        let same_run = stored[inline] == Sql::Integer(run.0);
        let hash = &stored[inline + 3];
        if !same_run || *hash == row[inline + 3].to_sql_value() {
            return Ok(());
        }
        let show = |v: &Sql| cut(&canonical_json(&sql_to_json(v)), 100);
        let cols = l
            .edges
            .iter()
            .filter(|e| !e.in_child_table())
            .flat_map(|e| e.cols.iter().map(move |c| (e, c)));
        let differs = cols
            .zip(row.iter().zip(&stored))
            .find(|(_, (new, old))| {
                canonical_json(&sql_to_json(&new.to_sql_value()))
                    != canonical_json(&sql_to_json(old))
            })
            .map(|((e, _), (new, old))| {
                format!(
                    "edge {}: {} here, {} before",
                    e.name,
                    show(&new.to_sql_value()),
                    show(old)
                )
            })
            .unwrap_or_else(|| "the values of its multi-valued edges differ".to_string());
        Err(StoreError::NestedConflict {
            model: l.model.clone(),
            key: key_display(l, &to_sql_values(key_vals)),
            differs,
        })
    }

    /// Secondary indexes: a value held by another record is an error, not an overwrite.
    /// `row` holds the record's inline columns first; `key_vals` its primary key.
    fn check_uniques(
        &mut self,
        l: &'s ModelLayout,
        row: &[Arg<'_>],
        key_vals: &[Arg<'_>],
    ) -> Result<(), StoreError> {
        let sql = model_sql(l);
        const NULL: Arg<'static> = Arg::Value(Sql::Null);
        for ((u, select), positions) in l
            .uniques
            .iter()
            .zip(&sql.unique_selects)
            .zip(&sql.unique_positions)
        {
            let vals: Vec<&Arg> = positions
                .iter()
                .map(|p| p.and_then(|i| row.get(i)).unwrap_or(&NULL))
                .collect();
            if vals.iter().any(|v| v.is_null()) {
                continue;
            }
            let existing: Option<Vec<Sql>> = self
                .st
                .get(select)
                .and_then(|st| {
                    st.query_row(rusqlite::params_from_iter(vals.iter()), |r| {
                        (0..l.key.len()).map(|i| r.get::<_, Sql>(i)).collect()
                    })
                    .optional()
                })
                .map_err(sql_error(self.path))?;
            let Some(existing) = existing else {
                continue;
            };
            let key = to_sql_values(key_vals);
            let same = existing
                .iter()
                .zip(&key)
                .all(|(a, b)| canonical_json(&sql_to_json(a)) == canonical_json(&sql_to_json(b)));
            if !same {
                return Err(StoreError::IndexConflict {
                    model: l.model.clone(),
                    index: format!("({})", u.edges.join(", ")),
                    value: vals
                        .iter()
                        .map(|v| cut(&canonical_json(&sql_to_json(&v.to_sql_value())), 100))
                        .collect::<Vec<_>>()
                        .join(", "),
                    existing: key_display(l, &existing),
                    incoming: key_display(l, &key),
                });
            }
        }
        Ok(())
    }
}

impl StoreWrite for SqliteStore {
    fn reader(&self) -> Result<Box<dyn StoreRead>, StoreError> {
        Ok(Box::new(SqliteStore::open_read_only(&self.path)?))
    }

    fn prepare(&mut self, schema: &Schema) -> Result<(), StoreError> {
        self.check_writable()?;
        let new_layouts = layout::layouts_of(schema)?;
        // Table names must not clash with each other nor with stored models left out of this schema.
        let mut all = new_layouts.clone();
        for (name, l) in &self.layouts {
            if schema.model(name).is_none() {
                all.push(l.clone());
            }
        }
        layout::check_tables(&all)?;
        // Tables of that name (in any case, as SQLite compares names) that kye did not create
        // are not ours to touch: checked before anything is written, kye's own tables included.
        for l in &new_layouts {
            let old_tables = self
                .layouts
                .get(&l.model)
                .map(ModelLayout::tables)
                .unwrap_or_default();
            for t in l.tables() {
                if old_tables.iter().any(|o| o.eq_ignore_ascii_case(t)) || !self.has_table(t)? {
                    continue;
                }
                return Err(StoreError::SchemaChange {
                    model: l.model.clone(),
                    edge: None,
                    message: format!(
                        "{} already has a table named {:?} that kye did not create; \
                         rename or drop it, or use another database file",
                        self.path.display(),
                        self.table_name_as_stored(t)?
                            .unwrap_or_else(|| t.to_string())
                    ),
                });
            }
        }
        self.ensure_initialized()?;
        let now = Timestamp::now().to_string();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        for l in &new_layouts {
            let old = self.layouts.get(&l.model);
            if old == Some(l) {
                continue;
            }
            Self::apply_plan(&tx, old, l).map_err(|(edge, message, source)| {
                if message.is_empty() {
                    StoreError::Sqlite {
                        path: path.clone(),
                        source,
                    }
                } else {
                    StoreError::SchemaChange {
                        model: l.model.clone(),
                        edge,
                        message: format!(
                            "{message}. {} holds records of {} in the old shape and was left unchanged. \
                             Restore the old definition, or store into a new database file (--db), \
                             or export and drop the table {:?} (and its {}__* child tables) with sqlite3 \
                             to start over.",
                            path.display(),
                            l.model,
                            l.table,
                            l.table
                        ),
                    }
                }
            })?;
            let text = serde_json::to_string(l).unwrap_or_default();
            tx.execute(
                "INSERT INTO _kye_models (model, fingerprint, layout, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4) \
                 ON CONFLICT (model) DO UPDATE SET fingerprint = excluded.fingerprint, \
                 layout = excluded.layout, updated_at = excluded.updated_at",
                params![l.model, l.fingerprint(), text, now],
            )
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        }
        if new_layouts.iter().any(ModelLayout::has_value_objects) {
            tx.execute(
                "UPDATE _kye_meta SET value = ?1 WHERE key = 'format_version' AND CAST(value AS INTEGER) < ?1",
                [FORMAT_VERSION],
            )
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        }
        tx.commit()
            .map_err(|source| StoreError::Sqlite { path, source })?;
        for l in new_layouts {
            self.layouts.insert(l.model.clone(), l);
        }
        Ok(())
    }

    fn begin_run(&mut self, run: &NewRun) -> Result<RunId, StoreError> {
        self.check_writable()?;
        self.ensure_initialized()?;
        self.sql(|c| {
            c.execute(
                "INSERT INTO _kye_runs (request, started_at, status, resumed_from, pid) VALUES (?1, ?2, 'running', ?3, ?4)",
                params![
                    run.request,
                    run.started_at.to_string(),
                    run.resumed_from.map(|r| r.0),
                    i64::from(std::process::id())
                ],
            )?;
            Ok(RunId(c.last_insert_rowid()))
        })
    }

    fn finish_run(&mut self, run: RunId, end: &RunEnd) -> Result<(), StoreError> {
        self.check_writable()?;
        self.ensure_initialized()?;
        let n = self.sql(|c| {
            c.execute(
                "UPDATE _kye_runs SET ended_at = ?2, status = ?3, stored = ?4, rejected = ?5, missing = ?6, \
                 failed = ?7, skipped = ?8, error = ?9 WHERE id = ?1",
                params![
                    run.0,
                    end.ended_at.to_string(),
                    end.status.as_str(),
                    end.counts.stored as i64,
                    end.counts.rejected as i64,
                    end.counts.missing as i64,
                    end.counts.failed as i64,
                    end.counts.skipped as i64,
                    end.error
                ],
            )
        })?;
        if n == 0 {
            return Err(StoreError::UnknownRun(run));
        }
        Ok(())
    }

    fn write_batch(
        &mut self,
        items: &[WriteItem],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.check_writable()?;
        self.ensure_initialized()?;
        let path = self.path.clone();
        let fatal = |source: rusqlite::Error| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fatal)?;
        let mut w = BatchWriter {
            st: Statements::new(&tx),
            path: &path,
            layouts: &self.layouts,
            times: TimeText::default(),
        };
        let mut key_text = String::new();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let result = match item {
                WriteItem::Record(r) => {
                    // A failed record leaves nothing behind while the rest of the batch
                    // commits.
                    if has_nested_records(w.layouts, &r.model, &r.value) {
                        w.st.execute("SAVEPOINT kye_item", []).map_err(fatal)?;
                        match w.store_record(&r.model, &r.value, &r.provenance, 0) {
                            Ok(()) => {
                                w.st.execute("RELEASE kye_item", []).map_err(fatal)?;
                                Ok(())
                            }
                            Err(e) if e.is_item_error() => {
                                w.st.execute("ROLLBACK TO kye_item", []).map_err(fatal)?;
                                w.st.execute("RELEASE kye_item", []).map_err(fatal)?;
                                Err(e)
                            }
                            Err(e) => return Err(e),
                        }
                    } else {
                        // Item errors of a record without nested records come before its
                        // first write or fail that write, which SQLite undoes: nothing to
                        // roll back.
                        w.store_record(&r.model, &r.value, &r.provenance, 0)
                    }
                }
                WriteItem::Reject(r) => w
                    .st
                    .execute(
                        "INSERT INTO _kye_rejects (run_id, model, key, fetcher, reason, errors, payload, at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            r.run.0,
                            r.model,
                            r.key.as_ref().map(IndexKey::canonical),
                            r.fetcher,
                            r.reason,
                            serde_json::to_string(&r.errors).unwrap_or_else(|_| "null".into()),
                            serde_json::to_string(&r.payload).unwrap_or_else(|_| "null".into()),
                            r.at.to_string()
                        ],
                    )
                    .map(|_| ())
                    .map_err(fatal),
                WriteItem::Drift(d) => w
                    .st
                    .execute(
                        "INSERT INTO _kye_drift (model, path, first_seen, last_seen, first_run, last_run, example, count) \
                         VALUES (?1, ?2, ?3, ?3, ?4, ?4, ?5, 1) \
                         ON CONFLICT (model, path) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), \
                         last_run = max(last_run, excluded.last_run), example = excluded.example, count = count + 1",
                        params![
                            d.model,
                            fold_path(&d.path),
                            d.seen_at.to_string(),
                            d.run.0,
                            canonical_json(&drift_example(&d.example))
                        ],
                    )
                    .map(|_| ())
                    .map_err(fatal),
                WriteItem::KeyOutcome(k) => {
                    key_text.clear();
                    k.key.write_canonical(&mut key_text);
                    let at = w.times.get(k.at);
                    w.st.execute(
                        "INSERT OR REPLACE INTO _kye_keys (run_id, model, key, status, reason, at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            k.run.0,
                            k.model,
                            key_text,
                            k.status.as_str(),
                            k.reason,
                            at
                        ],
                    )
                    .map(|_| ())
                    .map_err(fatal)
                }
            };
            match result {
                Ok(()) => results.push(Ok(())),
                Err(e) if e.is_item_error() => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        drop(w);
        tx.commit().map_err(fatal)?;
        Ok(results)
    }
}
