//! Writing to PostgreSQL: `prepare` (the shared [`plan`](crate::store::plan) carried out in
//! DDL under an advisory lock, so writers starting together take turns), runs (ids from an
//! identity sequence, each holding an advisory lock while it runs), and each batch of
//! records, rejects, drift and key outcomes in one transaction, retried a bounded number of
//! times when PostgreSQL reports a serialization failure, a deadlock or a secondary-index
//! value taken by a concurrent writer.

use std::collections::HashMap;
use std::time::Duration;

use kye_lang::Schema;
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::Transaction;

use crate::store::key::canonical_json;
use crate::store::layout::ModelLayout;
use crate::store::plan::{self, Action};
use crate::store::{
    drift_example, fold_path, KeyStatus, Lineage, NewRun, QueueBatchWrite, RunCounts, RunEnd,
    RunId, StoreError, StoreRead, StoreWrite, WriteItem, DEAD_RUN,
};

use super::batch::{cached, record_rows, Cache, Row, State, Writes};
use super::convert::{json_text, kye_text};
use super::ddl::{self, ident, INTERNAL_TABLES};
use super::{PgReader, PgStore, FORMAT_VERSION};

/// Attempts of one batch before its error is returned.
const ATTEMPTS: u32 = 6;

/// SQLSTATEs after which a batch is tried again: serialization failure, deadlock, and a
/// unique value another writer committed meanwhile (the new attempt sees it).
fn retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres { code: Some(c), .. } if c == "40001" || c == "40P01" || c == "23505")
}

impl PgStore {
    /// Marks runs left `running` by writers that are gone (their advisory lock is free) as
    /// interrupted, with counts from their key outcomes.
    pub(super) fn recover_runs(&mut self) -> Result<(), StoreError> {
        let class = self.db.conn().lock_class;
        for attempt in 0..4 {
            let held = self.db.conn().run(move |s| {
                let mut tx = s.client.transaction()?;
                let ids: Vec<i64> = tx
                    // A queued run is alive while its queue is open, whoever holds no lock.
                    .query(
                        "SELECT id FROM _kye_runs WHERE status = 'running' AND id NOT IN \
                         (SELECT run_id FROM _kye_queue_runs WHERE state <> 'done')",
                        &[],
                    )?
                    .iter()
                    .map(|r| r.get(0))
                    .collect();
                let mut held = 0;
                for id in ids {
                    // Taking the run's lock proves its writer gone; released at commit.
                    let free: bool = tx
                        .query_one("SELECT pg_try_advisory_xact_lock($1, $2)", &[&class, &(id as i32)])?
                        .get(0);
                    if !free {
                        held += 1;
                        continue;
                    }
                    tx.execute(
                        "UPDATE _kye_runs r SET status = 'interrupted', error = $2, \
                         stored = c.stored, rejected = c.rejected, missing = c.missing, \
                         failed = c.failed, skipped = c.skipped \
                         FROM (SELECT count(*) FILTER (WHERE status = 'stored') AS stored, \
                               count(*) FILTER (WHERE status = 'rejected') AS rejected, \
                               count(*) FILTER (WHERE status = 'missing') AS missing, \
                               count(*) FILTER (WHERE status NOT IN ('stored', 'rejected', 'missing', 'skipped')) AS failed, \
                               count(*) FILTER (WHERE status = 'skipped') AS skipped \
                               FROM _kye_keys WHERE run_id = $1) c \
                         WHERE r.id = $1 AND r.status = 'running'",
                        &[&id, &DEAD_RUN],
                    )?;
                }
                tx.commit()?;
                Ok(held)
            })?;
            // A writer killed a moment ago may still hold its lock until the server notices.
            if held == 0 || attempt == 3 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Creates the internal tables a store made by an earlier kye lacks (`_kye_list_cursors`,
    /// `_kye_lineage`, the queue's `_kye_queue_*`),
    /// under a lock, so that writers opening it at once do not both create them.
    pub(super) fn add_internal_tables(&mut self) -> Result<(), StoreError> {
        if self.db.has_table("_kye_list_cursors")?
            && self.db.has_table("_kye_lineage")?
            && self.db.has_table("_kye_queue_rates")?
            && self.db.has_column("_kye_runs", "source")?
        {
            return Ok(());
        }
        let class = self.db.conn().lock_class;
        self.db.conn().run(move |s| {
            let mut tx = s.client.transaction()?;
            // The prepare lock (READ COMMITTED: the statements after it see what the writer
            // before committed).
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&class])?;
            tx.batch_execute(INTERNAL_TABLES)?;
            // Runs name their source since issue 18 (old runs: NULL).
            tx.batch_execute("ALTER TABLE _kye_runs ADD COLUMN IF NOT EXISTS source text")?;
            tx.commit()
        })
    }

    /// Creates kye's own tables if they are not there yet (inside `prepare`'s transaction).
    fn ensure_initialized(&mut self) -> Result<(), StoreError> {
        if self.db.initialized {
            return Ok(());
        }
        let schema = self.db.spec.schema.clone();
        self.db.conn().run(move |s| {
            let mut tx = s.client.transaction()?;
            init_tables(&mut tx, &schema)?;
            tx.commit()
        })?;
        self.db.initialized = true;
        Ok(())
    }
}

/// kye's schema and tables, and format 1 in a new store.
fn init_tables(tx: &mut postgres::Transaction<'_>, schema: &str) -> Result<(), postgres::Error> {
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", ddl::q(schema)))?;
    tx.batch_execute(INTERNAL_TABLES)?;
    tx.execute(
        "INSERT INTO _kye_meta (key, value) VALUES ('format_version', '1') ON CONFLICT (key) DO NOTHING",
        &[],
    )?;
    Ok(())
}

impl StoreWrite for PgStore {
    fn reader(&self) -> Result<Box<dyn StoreRead>, StoreError> {
        Ok(Box::new(PgReader::open(&self.db.spec)?))
    }

    fn prepare(&mut self, schema: &Schema) -> Result<(), StoreError> {
        let class = self.db.conn().lock_class;
        let schema_name = self.db.spec.schema.clone();
        let shown = self.db.location.clone();
        // One transaction under the prepare lock: writers starting together take turns, and
        // each plans against the layouts the others recorded. The lock is a session lock taken
        // before the transaction begins, so the transaction starts after the previous writer's
        // commit and sees its tables and layouts (a transaction that began before, waiting on a
        // lock inside it, could plan against what it saw then and create a table twice).
        let outcome = self.db.conn().run(move |s| {
            s.client
                .execute("SELECT pg_advisory_lock($1, 0)", &[&class])?;
            let body = |client: &mut postgres::Client| -> Result<Result<(), StoreError>, postgres::Error> {
            let mut tx = client.transaction()?;
            let exists: bool = tx
                .query_one(
                    "SELECT to_regclass(format('%I.%I', $1::text, '_kye_models')) IS NOT NULL",
                    &[&schema_name],
                )?
                .get(0);
            let mut stored = HashMap::new();
            if exists {
                for r in tx.query("SELECT model, layout FROM _kye_models", &[])? {
                    let (model, text): (String, String) = (r.get(0), r.get(1));
                    match serde_json::from_str::<ModelLayout>(&text) {
                        Ok(l) => stored.insert(model, l),
                        Err(e) => {
                            return Ok(Err(StoreError::Corrupt {
                                path: shown.clone(),
                                message: format!("stored layout of model {model} is unreadable: {e}"),
                            }))
                        }
                    };
                }
            }
            let preparation = match plan::prepare(schema, &stored) {
                Ok(p) => p,
                Err(e) => return Ok(Err(e)),
            };
            let mut all: Vec<&ModelLayout> = preparation.steps.iter().map(|s| &s.layout).collect();
            all.extend(stored.values().filter(|l| schema.model(&l.model).is_none()));
            if let Some((a, b, phys)) = ddl::name_clash(all) {
                return Ok(Err(StoreError::InvalidName {
                    what: "model",
                    name: b.clone(),
                    reason: format!(
                        "{a:?} and {b:?} would both be named {phys:?} in PostgreSQL, which keeps \
                         63 bytes of a name (longer names are cut and end in a hash); rename one"
                    ),
                }));
            }
            // Tables kye did not create are not ours: checked before anything is written.
            for step in &preparation.steps {
                for t in step.new_tables() {
                    let found: bool = tx
                        .query_one(
                            "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL",
                            &[&schema_name, &ident(t).as_ref()],
                        )?
                        .get(0);
                    if found {
                        return Ok(Err(StoreError::SchemaChange {
                            model: step.layout.model.clone(),
                            edge: None,
                            message: format!(
                                "{} already has a table named {:?} (schema {schema_name}) that \
                                 kye did not create; rename or drop it, or use another schema \
                                 (?schema=NAME)",
                                shown.display(),
                                ident(t)
                            ),
                        }));
                    }
                }
            }
            init_tables(&mut tx, &schema_name)?;
            for step in &preparation.steps {
                if let Action::Refuse { edge, message } = &step.action {
                    let old = step.old.as_ref().map(|o| o.tables()).unwrap_or_default();
                    for t in old {
                        let any: bool = tx
                            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {})", ddl::qi(t)), &[])?
                            .get(0);
                        if any {
                            return Ok(Err(plan::refused(step, edge.clone(), message, &shown, "psql")));
                        }
                    }
                }
                if matches!(step.action, Action::Keep) {
                    // A table unchanged since before issue 18 still gets the source column
                    // (the layout holds no provenance columns, so it compares equal).
                    ddl::ensure_source_column(&mut tx, &step.layout.table)?;
                    continue;
                }
                ddl::apply(&mut tx, step)?;
                let l = &step.layout;
                let text = serde_json::to_string(l).unwrap_or_default();
                tx.execute(
                    "INSERT INTO _kye_models (model, fingerprint, layout, created_at, updated_at) \
                     VALUES ($1, $2, $3, now(), now()) \
                     ON CONFLICT (model) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
                     layout = EXCLUDED.layout, updated_at = EXCLUDED.updated_at",
                    &[&l.model, &l.fingerprint(), &text],
                )?;
            }
            if preparation.stores_value_objects() {
                tx.execute(
                    "UPDATE _kye_meta SET value = $1 WHERE key = 'format_version' AND value::int < $2",
                    &[&FORMAT_VERSION.to_string(), &(FORMAT_VERSION as i32)],
                )?;
            }
            tx.commit()?;
            Ok(Ok(()))
            };
            let result = body(s.client);
            let unlocked = s
                .client
                .execute("SELECT pg_advisory_unlock($1, 0)", &[&class]);
            let result = result?;
            unlocked?;
            Ok(result)
        })?;
        outcome?;
        self.db.initialized = true;
        self.db.conn().forget_statements();
        // Every layout of the store, also those other writers recorded.
        self.db.load_layouts()?;
        Ok(())
    }

    fn begin_run(&mut self, run: &NewRun) -> Result<RunId, StoreError> {
        self.ensure_initialized()?;
        let class = self.db.conn().lock_class;
        let request = kye_text(&run.request).into_owned();
        let started = run.started_at.to_string();
        let resumed = run.resumed_from.map(|r| r.0);
        let pid = i64::from(std::process::id());
        let source = run.source.clone();
        let id = self.db.conn().run(move |s| {
            let mut tx = s.client.transaction()?;
            let id: i64 = tx
                .query_one(
                    "SELECT nextval(pg_get_serial_sequence('_kye_runs', 'id'))",
                    &[],
                )?
                .get(0);
            // Held by this connection while the run runs (session lock: kept after commit).
            tx.execute("SELECT pg_advisory_lock($1, $2)", &[&class, &(id as i32)])?;
            tx.execute(
                "INSERT INTO _kye_runs (id, request, started_at, status, resumed_from, pid, source) \
                 VALUES ($1, $2, $3::text::timestamptz, 'running', $4, $5, $6)",
                &[&id, &request, &started, &resumed, &pid, &source],
            )?;
            tx.commit()?;
            Ok(id)
        })?;
        self.db.conn().running.push(RunId(id));
        Ok(RunId(id))
    }

    fn finish_run(&mut self, run: RunId, end: &RunEnd) -> Result<(), StoreError> {
        self.ensure_initialized()?;
        let class = self.db.conn().lock_class;
        let ended = end.ended_at.to_string();
        let status = end.status.as_str();
        let c = end.counts;
        let counts = [c.stored, c.rejected, c.missing, c.failed, c.skipped].map(|n| n as i64);
        let error = end.error.as_deref().map(|e| kye_text(e).into_owned());
        let n = self.db.conn().run(move |s| {
            let n = s.client.execute(
                "UPDATE _kye_runs SET ended_at = $2::text::timestamptz, status = $3, stored = $4, \
                 rejected = $5, missing = $6, failed = $7, skipped = $8, error = $9 WHERE id = $1",
                &[
                    &run.0, &ended, &status, &counts[0], &counts[1], &counts[2], &counts[3],
                    &counts[4], &error,
                ],
            )?;
            s.client.execute(
                "SELECT pg_advisory_unlock($1, $2)",
                &[&class, &(run.0 as i32)],
            )?;
            Ok(n)
        })?;
        self.db.conn().running.retain(|r| *r != run);
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
        let layouts = &self.db.layouts;
        // Every record read into rows before anything is sent.
        let mut units: Vec<Result<Vec<Row<'_>>, StoreError>> = Vec::new();
        for item in items {
            if let WriteItem::Record(r) = item {
                let mut rows = Vec::new();
                units.push(
                    record_rows(layouts, &r.model, &r.value, &r.provenance, 0, &mut rows)
                        .map(|()| rows),
                );
            }
        }
        let other = OtherItems::new(items);
        // The lineage of each record item (a transformer's output), in record order.
        let lineages: Vec<Option<(&str, &Lineage)>> = items
            .iter()
            .filter_map(|i| match i {
                WriteItem::Record(r) => Some(r.lineage.as_ref().map(|l| (r.model.as_str(), l))),
                _ => None,
            })
            .collect();
        // A queued batch's completion: the position of each record item among the records, so
        // its outcomes can read whether their record was written.
        let queued: Vec<&QueueBatchWrite> = items
            .iter()
            .filter_map(|i| match i {
                WriteItem::QueueBatch(q) => Some(q),
                _ => None,
            })
            .collect();
        let mut record_slot: Vec<Option<usize>> = Vec::with_capacity(items.len());
        let mut records_seen = 0;
        for item in items {
            if let WriteItem::Record(_) = item {
                record_slot.push(Some(records_seen));
                records_seen += 1;
            } else {
                record_slot.push(None);
            }
        }
        let mut sequential = false;
        let mut attempt = 0;
        // The models with secondary indexes this batch writes, in name order: each is locked
        // for the transaction before the stored rows are read, so two writers of one such
        // model take turns (their row locks cannot be put in one order, see `Writes::write`)
        // instead of deadlocking; writers of other models go on at once.
        let class = self.db.conn().lock_class.wrapping_add(1);
        let mut unique_models: Vec<i32> = units
            .iter()
            .flatten()
            .flatten()
            .filter(|r| !r.layout.uniques.is_empty())
            .map(|r| model_lock_id(&r.layout.model))
            .collect();
        unique_models.sort_unstable();
        unique_models.dedup();
        // The layouts this writer plans its rows by, checked in the batch's transaction against
        // what `_kye_models` records: another kye whose schema differs may have migrated a
        // model since this one prepared, and rows of the old shape would mix with the new.
        // One fingerprint per model (a hash of its serialized layout), not one per row.
        let mut layouts: Vec<&ModelLayout> =
            units.iter().flatten().flatten().map(|r| r.layout).collect();
        layouts.sort_by(|a, b| a.model.cmp(&b.model));
        layouts.dedup_by(|a, b| a.model == b.model);
        let (planned_models, planned_prints): (Vec<String>, Vec<String>) = layouts
            .iter()
            .map(|l| (l.model.clone(), l.fingerprint()))
            .unzip();
        let shown = self.db.location.clone();
        loop {
            attempt += 1;
            let units_ref = &units;
            let other = &other;
            let unique_models = &unique_models;
            let lineages = &lineages;
            let (planned_models, planned_prints) = (&planned_models, &planned_prints);
            let (queued, record_slot) = (&queued, &record_slot);
            let result = self.db.conn().run(move |s| {
                let cache = &mut *s.statements;
                let mut tx = s.client.transaction()?;
                for id in unique_models {
                    tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&class, id])?;
                }
                if !planned_models.is_empty() {
                    let changed = tx.query(
                        "SELECT m.model FROM _kye_models m \
                         JOIN unnest($1::text[], $2::text[]) AS w(model, fingerprint) \
                         ON m.model = w.model WHERE m.fingerprint <> w.fingerprint \
                         ORDER BY m.model LIMIT 1",
                        &[planned_models, planned_prints],
                    )?;
                    if let Some(row) = changed.first() {
                        return Ok(Err(Refusal::Schema(row.get::<_, String>(0))));
                    }
                }
                let all: Vec<&Row<'_>> = units_ref.iter().flatten().flatten().collect();
                let mut state = State::load(&mut tx, cache, &all, sequential)?;
                let mut writes = Writes::default();
                let mut results = Vec::with_capacity(units_ref.len());
                for unit in units_ref {
                    let r = match unit {
                        Err(_) => Err(None),
                        Ok(rows) => state.apply(rows).map_err(Some).map(|()| {
                            if sequential {
                                let mut one = Writes::default();
                                rows.iter().for_each(|r| one.add(r));
                                Some(one)
                            } else {
                                rows.iter().for_each(|r| writes.add(r));
                                None
                            }
                        }),
                    };
                    match r {
                        Ok(Some(one)) => {
                            // Record by record after a unique violation: one that still
                            // violates a constraint (a clash kye's checks did not foresee) is
                            // refused alone and the rest of the batch is written.
                            tx.batch_execute("SAVEPOINT kye_item")?;
                            match one.write(&mut tx, cache) {
                                Ok(()) => {
                                    tx.batch_execute("RELEASE SAVEPOINT kye_item")?;
                                    results.push(Ok(()));
                                }
                                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                                    tx.batch_execute("ROLLBACK TO SAVEPOINT kye_item")?;
                                    let (model, key) = unit
                                        .as_ref()
                                        .ok()
                                        .and_then(|rows| rows.last())
                                        .map(|r| r.describe())
                                        .unwrap_or_default();
                                    let message = e
                                        .as_db_error()
                                        .map(|d| match d.detail() {
                                            Some(detail) => format!("{} ({detail})", d.message()),
                                            None => d.message().to_string(),
                                        })
                                        .unwrap_or_else(|| e.to_string());
                                    results.push(Err(Some(StoreError::Refused {
                                        model,
                                        key,
                                        message: crate::redact::redact_text(&message),
                                    })));
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        Ok(None) => results.push(Ok(())),
                        Err(e) => results.push(Err(e)),
                    }
                }
                writes.write(&mut tx, cache)?;
                other.write(&mut tx, cache)?;
                write_lineage(&mut tx, lineages, &results)?;
                for q in queued {
                    // Why the record of item `i` was not written, if it was not.
                    let not_stored = |i: usize| -> Option<String> {
                        let k = record_slot.get(i).copied().flatten()?;
                        match (results.get(k)?, units_ref.get(k)?) {
                            (Err(Some(e)), _) | (Err(None), Err(e)) => Some(e.to_string()),
                            _ => None,
                        }
                    };
                    if !complete_queued(&mut tx, cache, q, &not_stored)? {
                        // The lease is gone: nothing of this transaction is committed.
                        return Ok(Err(Refusal::Lease(q.batch, q.run)));
                    }
                }
                tx.commit()?;
                Ok(Ok(results))
            });
            match result {
                Ok(Err(Refusal::Lease(batch, run))) => {
                    return Err(StoreError::LeaseLost { batch, run });
                }
                Ok(Err(Refusal::Schema(model))) => {
                    return Err(StoreError::SchemaChange {
                        model,
                        edge: None,
                        message: format!(
                            "another kye, whose schema differs from this one's, changed the \
                             model's tables in {} since this run prepared them; nothing of this \
                             batch was written. Run again with the same schema as the other \
                             writer (or let it finish first)",
                            shown.display()
                        ),
                    });
                }
                Ok(Ok(record_results)) => {
                    // Records that could not be read into rows fail with that error.
                    let mut record_results =
                        record_results
                            .into_iter()
                            .zip(units)
                            .map(|(r, unit)| match (r, unit) {
                                (Err(None), Err(e)) => Err(e),
                                (Err(Some(e)), _) => Err(e),
                                _ => Ok(()),
                            });
                    return Ok(items
                        .iter()
                        .map(|i| match i {
                            WriteItem::Record(_) => record_results.next().unwrap_or(Ok(())),
                            _ => Ok(()),
                        })
                        .collect());
                }
                Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                    // A unique value taken mid-statement: write record by record, as SQLite.
                    if matches!(&e, StoreError::Postgres { code: Some(c), .. } if c == "23505") {
                        sequential = true;
                    }
                    tracing::debug!(attempt, error = %e, "PostgreSQL batch retried");
                    std::thread::sleep(Duration::from_millis(
                        10 * u64::from(attempt) + fastrand::u64(0..20),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Replaces the lineage rows of every stored output with lineage, in the batch's transaction:
/// one `DELETE` and one `INSERT` over arrays.
fn write_lineage<E>(
    tx: &mut Transaction<'_>,
    lineages: &[Option<(&str, &Lineage)>],
    results: &[Result<(), E>],
) -> Result<(), postgres::Error> {
    // The last write of an output wins (as SQLite's replacing rows in order).
    let mut outputs: HashMap<(&str, String), (&str, &Lineage)> = HashMap::new();
    for (l, r) in lineages.iter().zip(results) {
        if let (Some((model, l)), Ok(())) = (l, r) {
            outputs.insert(
                (l.transformer.as_str(), l.output_key.canonical()),
                (*model, *l),
            );
        }
    }
    if outputs.is_empty() {
        return Ok(());
    }
    let mut cols: [Vec<Option<String>>; 7] = Default::default();
    let mut rows: HashMap<(String, String, String, String), usize> = HashMap::new();
    let (mut del_t, mut del_k) = (Vec::new(), Vec::new());
    for ((transformer, output_key), (model, l)) in &outputs {
        del_t.push(transformer.to_string());
        del_k.push(output_key.clone());
        // The primary input comes first.
        for (i, input) in l.inputs.iter().enumerate() {
            let row = [
                Some(transformer.to_string()),
                Some(model.to_string()),
                Some(output_key.clone()),
                Some(input.model.clone()),
                Some(input.key.canonical()),
                input.hash.clone(),
                Some((i == 0).to_string()),
            ];
            let id = (
                transformer.to_string(),
                output_key.clone(),
                input.model.clone(),
                input.key.canonical(),
            );
            match rows.get(&id) {
                // An input read twice keeps its last hash, and is primary if either was.
                Some(&at) => {
                    cols[5][at] = row[5].clone();
                    if i == 0 {
                        cols[6][at] = row[6].clone();
                    }
                }
                None => {
                    rows.insert(id, cols[0].len());
                    for (c, v) in cols.iter_mut().zip(row) {
                        c.push(v);
                    }
                }
            }
        }
    }
    tx.execute(
        "DELETE FROM _kye_lineage l USING unnest($1::text[], $2::text[]) AS d(transformer, output_key) \
         WHERE l.transformer = d.transformer AND l.output_key = d.output_key",
        &[&del_t, &del_k],
    )?;
    tx.execute(
        "INSERT INTO _kye_lineage (transformer, output_model, output_key, input_model, input_key, input_hash, input_primary) \
         SELECT a, b, c, d, e, f, g::boolean FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
         AS x(a, b, c, d, e, f, g)",
        &[&cols[0], &cols[1], &cols[2], &cols[3], &cols[4], &cols[5], &cols[6]],
    )?;
    Ok(())
}

/// Why a batch's transaction was rolled back without a database error.
enum Refusal {
    /// Another writer changed this model's layout.
    Schema(String),
    /// A queued batch's lease was lost (batch, run).
    Lease(i64, RunId),
}

/// Writes a queued batch's key outcomes (a key whose record was refused is `failed`, with
/// why) and marks the batch `done` (or `failed`) with its counts, only while `q.lease` still
/// holds it. Returns false when it does not: the caller rolls the transaction back.
fn complete_queued(
    tx: &mut postgres::Transaction<'_>,
    cache: &mut Cache,
    q: &QueueBatchWrite,
    not_stored: &dyn Fn(usize) -> Option<String>,
) -> Result<bool, postgres::Error> {
    // The fence first: a worker that lost its lease writes nothing (and waits for no row
    // lock of the batch's outcomes).
    let st = cached(
        tx,
        cache,
        "UPDATE _kye_queue_batches SET state = 'claimed' \
         WHERE id = $1 AND lease = $2 AND state = 'claimed'",
    )?;
    if tx.execute(&st, &[&q.batch, &q.lease])? == 0 {
        return Ok(false);
    }
    let mut counts = RunCounts::default();
    let mut cols: Vec<Vec<Option<String>>> = (0..6)
        .map(|_| Vec::with_capacity(q.outcomes.len()))
        .collect();
    for o in &q.outcomes {
        let k = &o.outcome;
        let (status, reason) = match o.record.and_then(not_stored) {
            Some(why) => (KeyStatus::Failed, Some(format!("not stored: {why}"))),
            None => (k.status, k.reason.clone()),
        };
        counts.add(status);
        let row = [
            Some(k.run.0.to_string()),
            Some(kye_text(&k.model).into_owned()),
            Some(k.key.canonical()),
            Some(status.as_str().to_string()),
            reason.as_deref().map(|r| kye_text(r).into_owned()),
            Some(k.at.to_string()),
        ];
        for (col, v) in cols.iter_mut().zip(row) {
            col.push(v);
        }
    }
    if !q.outcomes.is_empty() {
        let st = cached(tx, cache, KEYS_SQL)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            cols.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        tx.execute(&st, &params)?;
    }
    let c = [
        counts.stored,
        counts.rejected,
        counts.missing,
        counts.failed,
        counts.skipped,
    ]
    .map(|n| n as i64);
    let state = if q.failed { "failed" } else { "done" };
    let st = cached(
        tx,
        cache,
        "UPDATE _kye_queue_batches SET state = $3, stored = $4, rejected = $5, missing = $6, \
         failed = $7, skipped = $8, finished_at = now(), lease_until = NULL WHERE id = $1 AND lease = $2",
    )?;
    tx.execute(
        &st,
        &[
            &q.batch, &q.lease, &state, &c[0], &c[1], &c[2], &c[3], &c[4],
        ],
    )?;
    Ok(true)
}

/// Key outcomes, as columns (run, model, key, status, reason, at).
const KEYS_SQL: &str = "INSERT INTO _kye_keys (run_id, model, key, status, reason, at) \
     SELECT x.a::bigint, x.b, x.c, x.d, x.e, x.f::timestamptz \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
     AS x(a, b, c, d, e, f) \
     ON CONFLICT (model, key_md5, run_id) DO UPDATE SET status = EXCLUDED.status, \
     reason = EXCLUDED.reason, at = EXCLUDED.at";

/// The rejects, drift and key outcomes of a batch, as columns for one statement each.
struct OtherItems {
    rejects: Vec<Vec<Option<String>>>,
    drift: Vec<Vec<Option<String>>>,
    keys: Vec<Vec<Option<String>>>,
    cursors: Vec<Vec<Option<String>>>,
}

impl OtherItems {
    fn new(items: &[WriteItem]) -> OtherItems {
        let mut rejects = vec![Vec::new(); 8];
        let mut drift_rows: Vec<[String; 7]> = Vec::new();
        let mut drift_index: HashMap<(String, String), usize> = HashMap::new();
        let mut drift_counts: Vec<i64> = Vec::new();
        let mut key_rows: Vec<[Option<String>; 6]> = Vec::new();
        let mut key_index: HashMap<(i64, String, String), usize> = HashMap::new();
        // The last cursor of each list function in the batch.
        let mut cursor_rows: Vec<[Option<String>; 6]> = Vec::new();
        for item in items {
            match item {
                WriteItem::Record(_) => {}
                WriteItem::Reject(r) => {
                    let vals = [
                        Some(r.run.0.to_string()),
                        Some(kye_text(&r.model).into_owned()),
                        r.key.as_ref().map(|k| k.canonical()),
                        Some(kye_text(&r.fetcher).into_owned()),
                        Some(kye_text(&r.reason).into_owned()),
                        Some(json_text(&r.errors)),
                        Some(json_text(&r.payload)),
                        Some(r.at.to_string()),
                    ];
                    for (col, v) in rejects.iter_mut().zip(vals) {
                        col.push(v);
                    }
                }
                WriteItem::Drift(d) => {
                    let model = kye_text(&d.model).into_owned();
                    let path = kye_text(&fold_path(&d.path)).into_owned();
                    let seen = d.seen_at;
                    let example = canonical_json(&drift_example(&d.example));
                    match drift_index.get(&(model.clone(), path.clone())) {
                        Some(&i) => {
                            let row = &mut drift_rows[i];
                            if seen.to_string() > row[3] {
                                row[3] = seen.to_string();
                            }
                            if d.run.0 > row[5].parse().unwrap_or(0) {
                                row[5] = d.run.0.to_string();
                            }
                            row[6] = example;
                            drift_counts[i] += 1;
                        }
                        None => {
                            drift_index.insert((model.clone(), path.clone()), drift_rows.len());
                            drift_rows.push([
                                model,
                                path,
                                seen.to_string(),
                                seen.to_string(),
                                d.run.0.to_string(),
                                d.run.0.to_string(),
                                example,
                            ]);
                            drift_counts.push(1);
                        }
                    }
                }
                WriteItem::KeyOutcome(k) => {
                    let row = [
                        Some(k.run.0.to_string()),
                        Some(kye_text(&k.model).into_owned()),
                        Some(k.key.canonical()),
                        Some(k.status.as_str().to_string()),
                        k.reason.as_deref().map(|r| kye_text(r).into_owned()),
                        Some(k.at.to_string()),
                    ];
                    let id = (k.run.0, k.model.clone(), row[2].clone().unwrap_or_default());
                    match key_index.get(&id) {
                        Some(&i) => key_rows[i] = row,
                        None => {
                            key_index.insert(id, key_rows.len());
                            key_rows.push(row);
                        }
                    }
                }
                WriteItem::QueueBatch(_) => {}
                WriteItem::ListCursor(c) => {
                    let row = [
                        Some(kye_text(&c.model).into_owned()),
                        Some(kye_text(&c.lister).into_owned()),
                        Some(json_text(&c.value)),
                        Some(c.finished.to_string()),
                        Some(c.run.0.to_string()),
                        Some(c.at.to_string()),
                    ];
                    cursor_rows.retain(|r| (&r[0], &r[1]) != (&row[0], &row[1]));
                    cursor_rows.push(row);
                }
            }
        }
        // Drift rows in (model, path) order: shared paths are locked in one order by every
        // writer, as records are (see `Writes::write`).
        let mut drift_rows: Vec<([String; 7], i64)> =
            drift_rows.into_iter().zip(drift_counts).collect();
        drift_rows.sort_by(|a, b| (&a.0[0], &a.0[1]).cmp(&(&b.0[0], &b.0[1])));
        let mut drift = vec![Vec::new(); 8];
        for (row, count) in drift_rows {
            for (col, v) in drift.iter_mut().zip(row) {
                col.push(Some(v));
            }
            drift[7].push(Some(count.to_string()));
        }
        let mut keys = vec![Vec::new(); 6];
        for row in key_rows {
            for (col, v) in keys.iter_mut().zip(row) {
                col.push(v);
            }
        }
        let mut cursors = vec![Vec::new(); 6];
        for row in cursor_rows {
            for (col, v) in cursors.iter_mut().zip(row) {
                col.push(v);
            }
        }
        OtherItems {
            rejects,
            drift,
            keys,
            cursors,
        }
    }

    fn write(
        &self,
        tx: &mut postgres::Transaction<'_>,
        cache: &mut Cache,
    ) -> Result<(), postgres::Error> {
        let mut run =
            |tx: &mut postgres::Transaction<'_>, sql: &str, cols: &[Vec<Option<String>>]| {
                if cols.first().is_none_or(Vec::is_empty) {
                    return Ok(0);
                }
                let params: Vec<&(dyn ToSql + Sync)> =
                    cols.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
                let st = cached(tx, cache, sql)?;
                tx.execute(&st, &params)
            };
        run(
            tx,
            "INSERT INTO _kye_rejects (run_id, model, key, fetcher, reason, errors, payload, at) \
             SELECT x.a::bigint, x.b, x.c::json, x.d, x.e, x.f::json, x.g::json, x.h::timestamptz \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[]) WITH ORDINALITY AS x(a, b, c, d, e, f, g, h, n) ORDER BY x.n",
            &self.rejects,
        )?;
        run(
            tx,
            "INSERT INTO _kye_drift (model, path, first_seen, last_seen, first_run, last_run, example, count) \
             SELECT x.a, x.b, x.c::timestamptz, x.d::timestamptz, x.e::bigint, x.f::bigint, x.g::json, x.h::bigint \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[]) AS x(a, b, c, d, e, f, g, h) \
             ON CONFLICT (model, path_md5) DO UPDATE SET \
             last_seen = greatest(_kye_drift.last_seen, EXCLUDED.last_seen), \
             last_run = greatest(_kye_drift.last_run, EXCLUDED.last_run), \
             example = EXCLUDED.example, count = _kye_drift.count + EXCLUDED.count",
            &self.drift,
        )?;
        run(tx, KEYS_SQL, &self.keys)?;
        // After the outcomes of the keys the cursors cover, in the same transaction.
        run(
            tx,
            "INSERT INTO _kye_list_cursors (model, lister, cursor, finished, run_id, at) \
             SELECT x.a, x.b, x.c::jsonb, x.d::boolean, x.e::bigint, x.f::timestamptz \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
             AS x(a, b, c, d, e, f) \
             ON CONFLICT (model, lister) DO UPDATE SET cursor = EXCLUDED.cursor, \
             finished = EXCLUDED.finished, run_id = EXCLUDED.run_id, at = EXCLUDED.at",
            &self.cursors,
        )?;
        Ok(())
    }
}

/// The advisory lock id of a model's writers (a stable hash of its name).
fn model_lock_id(model: &str) -> i32 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(model.as_bytes());
    i32::from_be_bytes([h[0], h[1], h[2], h[3]])
}
