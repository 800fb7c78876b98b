//! Writing one batch inside its transaction: each record checked whole before its first
//! write (key, values, nested records, secondary-index clashes), then inserted or replaced
//! with its child rows; each statement prepared once per batch.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{CachedStatement, Connection, OptionalExtension};
use serde_json::Value;

use crate::store::key::{canonical_json, content_hash, cut};
use crate::store::layout::{self, EdgeLayout, ModelLayout};
use crate::store::records::{edge_value, items, nested_records};
use crate::store::{record_object, Provenance, RunId, StoreError, Timestamp};

use super::convert::{edge_args, key_display, sql_to_json, to_sql_values, with_key, Arg};
use super::ddl::ModelSql;
use super::MAX_NESTING;

/// True when storing this record also stores nested records (which then needs a savepoint,
/// because they are written before the record's own checks).
pub(super) fn has_nested_records(
    layouts: &HashMap<String, ModelLayout>,
    model: &str,
    value: &Value,
) -> bool {
    let (Some(l), Some(obj)) = (layouts.get(model), value.as_object()) else {
        return false;
    };
    nested_records(layouts, l, obj).next().is_some()
}

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
    pub(super) fn new(conn: &'c Connection) -> Self {
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
    pub(super) fn execute<P: rusqlite::Params>(
        &mut self,
        sql: &'s str,
        args: P,
    ) -> rusqlite::Result<usize> {
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
    pub(super) fn get(&mut self, t: Timestamp) -> &str {
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
    pub st: Statements<'c, 's>,
    pub path: &'s Path,
    pub layouts: &'s HashMap<String, ModelLayout>,
    pub sql: &'s HashMap<String, ModelSql>,
    pub times: TimeText,
}

impl<'c, 's> BatchWriter<'c, 's> {
    /// The statements of a model's writes.
    fn statements(&self, l: &ModelLayout) -> Result<&'s ModelSql, StoreError> {
        self.sql
            .get(&l.model)
            .ok_or_else(|| StoreError::UnknownModel {
                model: l.model.clone(),
            })
    }

    /// Stores one record (and the nested records it carries) inside the caller's transaction.
    ///
    /// Every item error (missing key, a value that does not fit, an index clash) is found
    /// before this record's own first write, or by that write (a secondary index clash
    /// fails the insert, which SQLite rolls back). Errors after that point are fatal (they
    /// abort the batch). Nested records are written first, so a caller storing a record with
    /// nested records wraps it in a savepoint; a record without them needs none.
    pub(super) fn store_record(
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
        let sql = self.statements(l)?;
        let obj = record_object(model, value)?;

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
            for (target, n) in nested_records(layouts, l, obj) {
                self.store_record(&target.model, n, prov, depth + 1)?;
            }
        }

        // 3. Insert, or replace the stored row and its child rows. Past the first
        // statement nothing can fail for this record's data any more: any error aborts the
        // batch.
        row.push(Arg::Value(Sql::Integer(prov.run.0)));
        row.push(Arg::Text(&prov.fetcher));
        row.push(Arg::Value(Sql::Text(
            self.times.get(prov.fetched_at).to_string(),
        )));
        row.push(Arg::Value(Sql::Text(content_hash(value))));
        row.push(match &prov.source {
            Some(s) => Arg::Text(s),
            None => Arg::Value(Sql::Null),
        });
        let child_edges: Vec<&EdgeLayout> = l.edges.iter().filter(|e| e.in_child_table()).collect();
        // Per multi-valued edge: its stored child rows are already these.
        let mut kept = vec![false; child_rows.len()];
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
                // Child rows that are what the record says already stay as they are (a
                // refresh or a changed scalar rewrites no list): read, not rewritten.
                for (i, (delete, select)) in
                    sql.child_deletes.iter().zip(&sql.child_selects).enumerate()
                {
                    let width = child_edges.get(i).map_or(0, |e| e.cols.len());
                    if self
                        .children_are(select, &key_vals, &child_rows[i], width)
                        .map_err(&sqlerr)?
                    {
                        kept[i] = true;
                        continue;
                    }
                    self.st.execute(delete, keys()).map_err(&sqlerr)?;
                }
                self.st
                    .execute(
                        &sql.update,
                        rusqlite::params_from_iter(row.iter().chain(&key_vals)),
                    )
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
        for (((rows, insert), e), kept) in child_rows
            .iter()
            .zip(&sql.child_inserts)
            .zip(child_edges)
            .zip(kept)
        {
            if kept {
                continue;
            }
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

    /// True when the stored child rows of the record with `key_vals` (read by `select`)
    /// are exactly `rows`, `width` columns each, in order.
    fn children_are(
        &mut self,
        select: &'s str,
        key_vals: &[Arg<'_>],
        rows: &ChildRows<'_>,
        width: usize,
    ) -> rusqlite::Result<bool> {
        let st = self.st.get(select)?;
        let mut stored = st.query(rusqlite::params_from_iter(key_vals.iter()))?;
        let mut n = 0;
        while let Some(r) = stored.next()? {
            let Some(item) = rows.args.get(n * width..(n + 1) * width) else {
                return Ok(false);
            };
            for (j, arg) in item.iter().enumerate() {
                let same = match (arg, r.get_ref(j)?) {
                    (Arg::Text(a), ValueRef::Text(b)) => a.as_bytes() == b,
                    (Arg::Value(a), b) => ValueRef::from(a) == b,
                    _ => false,
                };
                if !same {
                    return Ok(false);
                }
            }
            n += 1;
        }
        Ok(n == rows.items)
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
        let sql = self.statements(l)?;
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
        let sql = self.statements(l)?;
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
