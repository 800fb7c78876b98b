//! Writing to SQLite: kye's own tables on first use, `prepare` (carrying out the shared
//! [`plan`](crate::store::plan) in DDL), runs, and each batch of records, rejects, drift and
//! key outcomes in one transaction.

use kye_lang::Schema;
use std::path::Path;

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use crate::store::key::canonical_json;
use crate::store::plan::{self, Action};
use crate::store::{
    drift_example, fold_path, IndexKey, Lineage, NewRun, RunEnd, RunId, StoreError, StoreRead,
    StoreWrite, Timestamp, WriteItem, DEAD_RUN,
};

use super::batch::{has_nested_records, sql_error, BatchWriter, Statements, TimeText};
use super::ddl::{self, INTERNAL_TABLES};
use super::{SqliteReader, SqliteStore, FORMAT_VERSION};

/// Replaces the lineage rows of one output of a transformer (inside the record's savepoint).
fn write_lineage(
    st: &mut Statements<'_, '_>,
    output_model: &str,
    l: &Lineage,
) -> rusqlite::Result<()> {
    let output_key = l.output_key.canonical();
    st.execute(ddl::LINEAGE_DELETE, params![l.transformer, output_key])?;
    // The primary input comes first.
    for (i, input) in l.inputs.iter().enumerate() {
        st.execute(
            ddl::LINEAGE_INSERT,
            params![
                l.transformer,
                output_model,
                output_key,
                input.model,
                input.key.canonical(),
                input.hash,
                i == 0
            ],
        )?;
    }
    Ok(())
}

/// Begins a write transaction on the database at `path`, taking SQLite's write lock at once.
fn immediate<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_error(path))
}

impl SqliteStore {
    /// Creates kye's tables (and switches to WAL) if that has not happened yet.
    fn ensure_initialized(&mut self) -> Result<(), StoreError> {
        if !self.db.initialized {
            self.init_writer()?;
        }
        Ok(())
    }

    /// Switches to WAL mode and creates kye's own tables, recording format 1 in a new store.
    pub(super) fn init_writer(&mut self) -> Result<(), StoreError> {
        let db = &mut self.db;
        // A newer kye's store is refused before anything is written to it.
        if db.has_table("_kye_meta")? {
            db.check_format_version()?;
        }
        let mode: String =
            db.sql(|c| c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path: db.path.clone(),
                message: format!("could not switch to WAL journal mode (got {mode})"),
            });
        }
        if self.checkpointer.is_none() {
            self.checkpointer = super::checkpoint::Checkpointer::start(&mut db.conn, &db.path);
        }
        db.sql(|c| {
            c.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;")?;
            c.execute_batch(&format!("BEGIN IMMEDIATE; {INTERNAL_TABLES} COMMIT;"))?;
            // Stores made before runs named their source get the column (old runs: NULL).
            let has_source: bool = c.query_row(
                "SELECT count(*) > 0 FROM pragma_table_info('_kye_runs') WHERE name = 'source'",
                [],
                |r| r.get(0),
            )?;
            if !has_source {
                c.execute_batch("ALTER TABLE _kye_runs ADD COLUMN source TEXT")?;
            }
            Ok(())
        })?;
        db.runs_source = true;
        if db.format_version()?.is_none() {
            db.sql(|c| {
                c.execute(
                    "INSERT INTO _kye_meta (key, value) VALUES ('format_version', ?1)",
                    // Format 1 until a value object is stored (see FORMAT_VERSION).
                    [1.to_string()],
                )
            })?;
        }
        db.initialized = true;
        Ok(())
    }

    /// Marks runs left `running` as interrupted, with counts from their key outcomes.
    /// Safe because we hold the writer lock: no live process is running them.
    pub(super) fn recover_runs(&mut self) -> Result<(), StoreError> {
        let ids: Vec<i64> = self.db.sql(|c| {
            let mut st = c.prepare("SELECT id FROM _kye_runs WHERE status = 'running'")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        for id in ids {
            let counts = self.db.outcome_counts(RunId(id))?;
            self.db.sql(|c| {
                c.execute(
                    "UPDATE _kye_runs SET status = 'interrupted', stored = ?2, rejected = ?3, missing = ?4, \
                     failed = ?5, skipped = ?6, error = ?7 WHERE id = ?1 AND status = 'running'",
                    params![
                        id,
                        counts.stored as i64,
                        counts.rejected as i64,
                        counts.missing as i64,
                        counts.failed as i64,
                        counts.skipped as i64,
                        DEAD_RUN
                    ],
                )
            })?;
        }
        Ok(())
    }
}

impl StoreWrite for SqliteStore {
    fn reader(&self) -> Result<Box<dyn StoreRead>, StoreError> {
        Ok(Box::new(SqliteReader::open(&self.db.path)?))
    }

    fn prepare(&mut self, schema: &Schema) -> Result<(), StoreError> {
        let preparation = plan::prepare(schema, &self.db.layouts)?;
        // Tables of that name (in any case, as SQLite compares names) that kye did not create
        // are not ours to touch: checked before anything is written, kye's own tables included.
        for step in &preparation.steps {
            for t in step.new_tables() {
                if !self.db.has_table(t)? {
                    continue;
                }
                return Err(StoreError::SchemaChange {
                    model: step.layout.model.clone(),
                    edge: None,
                    message: format!(
                        "{} already has a table named {:?} that kye did not create; \
                         rename or drop it, or use another database file",
                        self.db.path.display(),
                        self.db
                            .table_name_as_stored(t)?
                            .unwrap_or_else(|| t.to_string())
                    ),
                });
            }
        }
        self.ensure_initialized()?;
        let now = Timestamp::now().to_string();
        let path = self.db.path.clone();
        let sql = sql_error(&path);
        let tx = immediate(&mut self.db.conn, &path)?;
        for step in &preparation.steps {
            if matches!(step.action, Action::Keep) {
                // A table unchanged since before issue 18 still gets the source column (the
                // layout does not hold provenance columns, so it compares equal).
                ddl::ensure_source_column(&tx, &step.layout.table).map_err(&sql)?;
                continue;
            }
            ddl::apply(&tx, step, &path)?;
            let l = &step.layout;
            let text = serde_json::to_string(l).unwrap_or_default();
            tx.execute(
                "INSERT INTO _kye_models (model, fingerprint, layout, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4) \
                 ON CONFLICT (model) DO UPDATE SET fingerprint = excluded.fingerprint, \
                 layout = excluded.layout, updated_at = excluded.updated_at",
                params![l.model, l.fingerprint(), text, now],
            )
            .map_err(&sql)?;
        }
        if preparation.stores_value_objects() {
            tx.execute(
                "UPDATE _kye_meta SET value = ?1 WHERE key = 'format_version' AND CAST(value AS INTEGER) < ?1",
                [FORMAT_VERSION],
            )
            .map_err(&sql)?;
        }
        tx.commit().map_err(&sql)?;
        for step in preparation.steps {
            let l = step.layout;
            self.sql.insert(l.model.clone(), ddl::model_sql(&l));
            self.db.layouts.insert(l.model.clone(), l);
        }
        self.db.find_old_tables()
    }

    fn begin_run(&mut self, run: &NewRun) -> Result<RunId, StoreError> {
        self.ensure_initialized()?;
        self.db.sql(|c| {
            c.execute(
                "INSERT INTO _kye_runs (request, started_at, status, resumed_from, pid, source) VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
                params![
                    run.request,
                    run.started_at.to_string(),
                    run.resumed_from.map(|r| r.0),
                    i64::from(std::process::id()),
                    run.source
                ],
            )?;
            Ok(RunId(c.last_insert_rowid()))
        })
    }

    fn finish_run(&mut self, run: RunId, end: &RunEnd) -> Result<(), StoreError> {
        self.ensure_initialized()?;
        let n = self.db.sql(|c| {
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
        self.ensure_initialized()?;
        let path = self.db.path.clone();
        let fatal = sql_error(&path);
        let tx = immediate(&mut self.db.conn, &path)?;
        let mut w = BatchWriter {
            st: Statements::new(&tx),
            path: &path,
            layouts: &self.db.layouts,
            sql: &self.sql,
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
                        w.st.execute("SAVEPOINT kye_item", []).map_err(&fatal)?;
                        let stored = w
                            .store_record(&r.model, &r.value, &r.provenance, 0)
                            .and_then(|()| match &r.lineage {
                                Some(l) => write_lineage(&mut w.st, &r.model, l).map_err(&fatal),
                                None => Ok(()),
                            });
                        match stored {
                            Ok(()) => {
                                w.st.execute("RELEASE kye_item", []).map_err(&fatal)?;
                                Ok(())
                            }
                            Err(e) if e.is_item_error() => {
                                w.st.execute("ROLLBACK TO kye_item", []).map_err(&fatal)?;
                                w.st.execute("RELEASE kye_item", []).map_err(&fatal)?;
                                Err(e)
                            }
                            Err(e) => return Err(e),
                        }
                    } else {
                        // Item errors of a record without nested records come before its
                        // first write or fail that write, which SQLite undoes: nothing to
                        // roll back. Its lineage follows a stored record only (a failure
                        // there is the batch's).
                        w.store_record(&r.model, &r.value, &r.provenance, 0).and_then(|()| {
                            match &r.lineage {
                                Some(l) => write_lineage(&mut w.st, &r.model, l).map_err(&fatal),
                                None => Ok(()),
                            }
                        })
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
                    .map_err(&fatal),
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
                    .map_err(&fatal),
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
                    .map_err(&fatal)
                }
                WriteItem::ListCursor(c) => w
                    .st
                    .execute(
                        "INSERT OR REPLACE INTO _kye_list_cursors (model, lister, cursor, finished, run_id, at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            c.model,
                            c.lister,
                            canonical_json(&c.value),
                            c.finished,
                            c.run.0,
                            c.at.to_string()
                        ],
                    )
                    .map(|_| ())
                    .map_err(&fatal),
                WriteItem::QueueBatch(_) => Err(StoreError::Unsupported {
                    store: "sqlite",
                    what: "cannot complete a queued batch; queued runs need a PostgreSQL store (--db postgres://...)".to_string(),
                }),
            };
            match result {
                Ok(()) => results.push(Ok(())),
                Err(e) if e.is_item_error() => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
        drop(w);
        tx.commit().map_err(&fatal)?;
        Ok(results)
    }
}
