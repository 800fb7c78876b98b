//! Writing to PostgreSQL: `prepare` (the shared [`plan`](crate::store::plan) carried out in
//! DDL under an advisory lock, so writers starting together take turns), runs (ids from an
//! identity sequence, each holding an advisory lock while it runs), and each batch of
//! records, rejects, drift and key outcomes in one transaction, retried a bounded number of
//! times when PostgreSQL reports a serialization failure or a deadlock, and written again
//! knowing more after a unique violation (`clash`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kye_lang::Schema;
use postgres::Transaction;

use crate::store::layout::ModelLayout;
use crate::store::plan::{self, Action};
use crate::store::{
    Lineage, NewRun, QueueBatchWrite, RunEnd, RunId, StoreError, StoreRead, StoreWrite, WriteItem,
    DEAD_RUN,
};

use super::batch::{cached, record_rows, Cache, Row, State, Writes, Written};
use super::clash::{self, Clash, Violation};
use super::convert::kye_text;
use super::ddl::{self, ident, INTERNAL_TABLES, TO_FORMAT_3};
use super::items::{complete_queued, write_lineage, OtherItems};
use super::{queued, PgReader, PgStore, FORMAT_VERSION};

/// The models with secondary indexes a batch writes locked in order (`$1` the class, `$2` their
/// ids, sorted), then the first model (of `$3`) whose layout differs from the one this writer
/// planned by (`$4`, fingerprints), if any; and the plan cache mode of the rest of the
/// transaction (`$5`, see [`Mode`]).
const LOCK_AND_CHECK: &str = "SELECT \
     (SELECT count(*) FROM (SELECT pg_advisory_xact_lock($1, l) FROM unnest($2::int4[]) AS l) s), \
     (SELECT m.model FROM _kye_models m \
      JOIN unnest($3::text[], $4::text[]) AS w(model, fingerprint) \
      ON m.model = w.model WHERE m.fingerprint <> w.fingerprint \
      ORDER BY m.model LIMIT 1), \
     set_config('plan_cache_mode', $5, true)";

/// What a writer's last batches found stored, which decides how its next batch is written:
/// most batches of a first load store only new keys, and plain inserts cost the server less
/// than upserts (see [`upsert`](super::upsert::upsert)). Learned per store handle; a guess
/// that is wrong costs one statement that fails and the batch written again as an upsert.
#[derive(Debug, Default)]
pub(super) struct Expect {
    /// Models whose last batch found some of its keys stored (or whose plain insert failed).
    stored: HashSet<String>,
    /// A key's outcome was written twice in one run (its plain insert failed): outcomes are
    /// upserted from then on.
    repeated_outcomes: bool,
}

/// How one attempt of a batch is written.
struct Mode {
    /// Models written by plain inserts.
    fresh: HashSet<String>,
    /// Key outcomes written by a plain insert.
    fresh_outcomes: bool,
}

impl Mode {
    fn upserts() -> Mode {
        Mode {
            fresh: HashSet::new(),
            fresh_outcomes: false,
        }
    }

    /// What unique violation `v` teaches when it may be one of this mode's plain inserts
    /// meeting a stored key (on a table of a model it inserts) or outcome (on the key
    /// outcomes); `None` when this mode does not explain it.
    fn explains(&self, layouts: &HashMap<String, ModelLayout>, v: &Violation) -> Option<Lesson> {
        match clash::model_of(layouts, v) {
            Some(model) if self.fresh.contains(model) => Some(Lesson::Stored(model.to_string())),
            None if self.fresh_outcomes && v.table == "_kye_keys" => Some(Lesson::Outcomes),
            _ => None,
        }
    }
}

/// What a plain insert that failed teaches the writer.
enum Lesson {
    /// The model has stored keys.
    Stored(String),
    /// The run writes some key's outcome twice.
    Outcomes,
}

/// Attempts of one batch before its error is returned.
const ATTEMPTS: u32 = 6;

/// SQLSTATEs after which a batch is tried again as it was: serialization failure and
/// deadlock, which a concurrent writer causes and the next attempt may not meet. A unique
/// violation never is (see `clash`).
fn retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres { code: Some(c), .. } if c == "40001" || c == "40P01")
}

impl PgStore {
    /// Marks runs left `running` by writers that are gone (their advisory lock is free) as
    /// interrupted, with counts from their key outcomes; ends queued runs whose recording
    /// process is gone once the batches it recorded are done (see `queued`).
    pub(super) fn recover_runs(&mut self) -> Result<(), StoreError> {
        let enqueue_class = queued::enqueue_lock_class(&self.db.spec.schema);
        self.db.conn().run(move |s| {
            for run in queued::adopt_dead_enqueuers(s.client, enqueue_class)? {
                tracing::warn!(run, "{}", queued::ENQUEUER_GONE);
            }
            let open: Vec<i64> = s
                .client
                .query(
                    "SELECT run_id FROM _kye_queue_runs WHERE state = 'open'",
                    &[],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for run in open {
                queued::finish_if_drained(s.client, run)?;
            }
            Ok(())
        })?;
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
    /// `_kye_lineage`, the queue's `_kye_queue_*`) and brings `_kye_keys` and `_kye_queue_seen`
    /// of a format 2 store to format 3 (see [`FORMAT_VERSION`]), under a lock, so that writers
    /// opening it at once do not both do it.
    pub(super) fn add_internal_tables(&mut self) -> Result<(), StoreError> {
        let schema = self.db.spec.schema.clone();
        let (asked, class) = (schema.clone(), self.db.conn().lock_class);
        // One round trip for the common case, a store this kye made (a remote warehouse's
        // round trips are what opening it costs).
        let current: bool = self.db.conn().run(move |s| {
            let row = s.client.query_one(
                "SELECT to_regclass(format('%I._kye_list_cursors', $1::text)) IS NOT NULL \
                 AND to_regclass(format('%I._kye_lineage', $1::text)) IS NOT NULL \
                 AND to_regclass(format('%I._kye_queue_rates', $1::text)) IS NOT NULL \
                 AND EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1::text \
                     AND table_name = '_kye_runs' AND column_name = 'source') \
                 AND NOT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1::text \
                     AND column_name = 'key_md5' AND table_name IN ('_kye_keys', '_kye_queue_seen'))",
                &[&asked],
            )?;
            Ok(row.get::<_, Option<bool>>(0).unwrap_or(false))
        })?;
        if current {
            return Ok(());
        }
        // A writer of an older kye mid-batch holds its tables in another order than this
        // transaction takes them: a deadlock, one side of which PostgreSQL ends. When it ends
        // this one, it runs again once that batch is in.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let schema = schema.clone();
            match self.upgrade_internal_tables(class, schema) {
                Err(e) if retryable(&e) && attempt < 6 => {
                    std::thread::sleep(Duration::from_millis(20 * attempt));
                }
                Err(StoreError::Postgres {
                    message,
                    code: Some(code),
                    ..
                }) if code == "2BP01" || code == "0A000" => {
                    return Err(StoreError::Corrupt {
                        path: self.db.location.clone(),
                        message: format!(
                            "cannot make the store format 3 (kye's key outcomes indexed by the \
                             key's text): {message}. Drop the views or rules that use \
                             _kye_keys or _kye_queue_seen, open the store once with this kye's \
                             writer (fetch, worker), then create them again; see docs/store.md, \
                             \"Format 3\""
                        ),
                    });
                }
                other => return other,
            }
        }
    }

    /// [`PgStore::add_internal_tables`]' transaction, once.
    fn upgrade_internal_tables(&mut self, class: i32, schema: String) -> Result<(), StoreError> {
        self.db.conn().run(move |s| {
            let mut tx = s.client.transaction()?;
            // The prepare lock (READ COMMITTED: the statements after it see what the writer
            // before committed).
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&class])?;
            let md5_tables: Vec<String> = tx
                .query(
                    "SELECT table_name::text FROM information_schema.columns \
                     WHERE table_schema = $1 AND column_name = 'key_md5' \
                     AND table_name IN ('_kye_keys', '_kye_queue_seen')",
                    &[&schema],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for (table, sql) in TO_FORMAT_3 {
                if md5_tables.iter().any(|t| t == table) {
                    tracing::info!(schema = %schema, table, "store format 3: indexing by the key's text");
                    tx.batch_execute(sql)?;
                }
            }
            if !md5_tables.is_empty() {
                tx.execute(
                    "UPDATE _kye_meta SET value = $1 WHERE key = 'format_version' AND value::int < $2",
                    &[&FORMAT_VERSION.to_string(), &(FORMAT_VERSION as i32)],
                )?;
            }
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

/// kye's schema and tables, and this kye's format in a new store.
fn init_tables(tx: &mut postgres::Transaction<'_>, schema: &str) -> Result<(), postgres::Error> {
    tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {}", ddl::q(schema)))?;
    tx.batch_execute(INTERNAL_TABLES)?;
    tx.execute(
        "INSERT INTO _kye_meta (key, value) VALUES ('format_version', $1) ON CONFLICT (key) DO NOTHING",
        &[&FORMAT_VERSION.to_string()],
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
            let body =
                |client: &mut postgres::Client| -> Result<Result<(), StoreError>, postgres::Error> {
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
                                        message: format!(
                                            "stored layout of model {model} is unreadable: {e}"
                                        ),
                                    }))
                                }
                            };
                        }
                    }
                    let preparation = match plan::prepare(schema, &stored) {
                        Ok(p) => p,
                        Err(e) => return Ok(Err(e)),
                    };
                    let mut all: Vec<&ModelLayout> =
                        preparation.steps.iter().map(|s| &s.layout).collect();
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
                                    .query_one(
                                        &format!("SELECT EXISTS (SELECT 1 FROM {})", ddl::qi(t)),
                                        &[],
                                    )?
                                    .get(0);
                                if any {
                                    return Ok(Err(plan::refused(
                                        step,
                                        edge.clone(),
                                        message,
                                        &shown,
                                        "psql",
                                    )));
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
                    // No format change here: value objects (format 2) need no more than format 3,
                    // which every store is once a writer of this kye has opened it.
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
        let mut planned: Vec<&ModelLayout> =
            units.iter().flatten().flatten().map(|r| r.layout).collect();
        planned.sort_by(|a, b| a.model.cmp(&b.model));
        planned.dedup_by(|a, b| a.model == b.model);
        let (planned_models, planned_prints): (Vec<String>, Vec<String>) = planned
            .iter()
            .map(|l| (l.model.clone(), l.fingerprint()))
            .unzip();
        let batch = Batch {
            units: &units,
            other: &other,
            lineages: &lineages,
            queued: &queued,
            record_slot: &record_slot,
            class,
            unique_models: &unique_models,
            planned_models: &planned_models,
            planned_prints: &planned_prints,
            layouts,
        };
        let shown = self.db.location.clone();
        // How much is checked before writing (see `clash`): first nothing more; after a unique
        // violation on a secondary index, the stored holders of the batch's index values; after
        // any other (or a second) one on a model's tables, record by record.
        let (mut holders, mut one_by_one) = (false, false);
        // First as the last batches suggest (plain inserts where nothing was stored); after a
        // unique violation, as upserts, and from there as before.
        let mut mode = Mode {
            fresh: planned_models
                .iter()
                .filter(|m| !self.expect.stored.contains(*m))
                .cloned()
                .collect(),
            fresh_outcomes: !self.expect.repeated_outcomes
                && items.iter().any(|i| matches!(i, WriteItem::KeyOutcome(_))),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (batch, attempt_mode) = (&batch, &mode);
            let result = self.db.conn().run(move |s| {
                let cache = &mut *s.statements;
                let mut tx = s.client.transaction()?;
                match batch.write(&mut tx, cache, holders, one_by_one, attempt_mode) {
                    Ok(Ok(results)) => {
                        tx.commit()?;
                        Ok(Ok(results))
                    }
                    // Dropping the transaction rolls it back.
                    Ok(Err(refusal)) => Ok(Err(refusal)),
                    Err(e) => match Violation::of(&e) {
                        Some(v) => Ok(Err(Refusal::Unique(v))),
                        None => Err(e),
                    },
                }
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
                Ok(Err(Refusal::Unique(v))) => {
                    // A plain insert met a stored key (or outcome): upserts from here on.
                    if let Some(lesson) = mode.explains(layouts, &v) {
                        tracing::debug!(
                            constraint = %v.constraint,
                            table = %v.table,
                            "PostgreSQL batch met a stored key; written again as upserts"
                        );
                        match lesson {
                            Lesson::Stored(model) => {
                                self.expect.stored.insert(model);
                            }
                            Lesson::Outcomes => self.expect.repeated_outcomes = true,
                        }
                        mode = Mode::upserts();
                        // Not a failure of the batch: its attempts are for what may go away.
                        attempt -= 1;
                        continue;
                    }
                    // Never tried again as it was: written again knowing more, at most twice.
                    let clash = clash::classify(layouts, &v);
                    tracing::debug!(
                        constraint = %v.constraint,
                        table = %v.table,
                        "PostgreSQL batch met a unique violation; written again knowing more"
                    );
                    // From here as before this writer guessed: upserts only.
                    mode = Mode::upserts();
                    match clash {
                        Clash::Index { .. } if !holders => holders = true,
                        Clash::Index { .. } | Clash::Edge { .. } | Clash::Model if !one_by_one => {
                            (holders, one_by_one) = (true, true)
                        }
                        _ => return Err(v.batch_error(self.db.spec.to_string())),
                    }
                }
                Ok(Ok((record_results, written))) => {
                    // What the models written found (a plain insert that succeeded found
                    // nothing); models none of whose records were written tell nothing.
                    for (model, stored) in written {
                        if stored {
                            self.expect.stored.insert(model);
                        } else {
                            self.expect.stored.remove(&model);
                        }
                    }
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

/// One batch, read into rows and columns once, written in as many transactions as it takes.
struct Batch<'b, 'a> {
    /// Per record item: its rows (nested records first), or why it cannot be stored.
    units: &'b [Result<Vec<Row<'a>>, StoreError>],
    other: &'b OtherItems,
    lineages: &'b [Option<(&'a str, &'a Lineage)>],
    queued: &'b [&'a QueueBatchWrite],
    /// Per item: its position among the record items, if it is one.
    record_slot: &'b [Option<usize>],
    /// The advisory lock class of writers of models with secondary indexes.
    class: i32,
    unique_models: &'b [i32],
    planned_models: &'b [String],
    planned_prints: &'b [String],
    layouts: &'a HashMap<String, ModelLayout>,
}

/// Per record item: written, or refused (`Some`: here; `None`: its rows could not be read).
type RecordResults = Vec<Result<(), Option<StoreError>>>;

impl Batch<'_, '_> {
    /// Writes the batch in `tx` (not committed). With `holders`, the stored holders of the
    /// batch's secondary-index values are read first; with `one_by_one`, each record is
    /// written in a savepoint, and one that violates a unique constraint is refused alone.
    ///
    /// Returns, besides each record's result, each model written with whether some of its
    /// records were stored already.
    fn write(
        &self,
        tx: &mut Transaction<'_>,
        cache: &mut Cache,
        holders: bool,
        one_by_one: bool,
        mode: &Mode,
    ) -> Result<Result<(RecordResults, Written), Refusal>, postgres::Error> {
        let all: Vec<&Row<'_>> = self.units.iter().flatten().flatten().collect();
        if !(self.unique_models.is_empty() && self.planned_models.is_empty()) {
            // Generic plans (planned once per connection) when every statement of the
            // transaction is a plain insert: custom plans otherwise, since a generic plan
            // would cast bound key arrays for every row it scans instead of probing an index
            // (see `Conn::connect`).
            let generic = !one_by_one
                && self.planned_models.iter().all(|m| mode.fresh.contains(m))
                && self.lineages.iter().all(Option::is_none)
                && !State::reads(&all, holders);
            let plans = if generic {
                "force_generic_plan"
            } else {
                "force_custom_plan"
            };
            // One statement: the locks, in order, then the layouts compared.
            let st = cached(tx, cache, LOCK_AND_CHECK)?;
            let row = tx.query_one(
                &st,
                &[
                    &self.class,
                    &self.unique_models,
                    &self.planned_models,
                    &self.planned_prints,
                    &plans,
                ],
            )?;
            if let Some(model) = row.get::<_, Option<String>>(1) {
                return Ok(Err(Refusal::Schema(model)));
            }
        }
        let mut written = Vec::new();
        let mut state = State::load(tx, cache, &all, holders || one_by_one)?;
        // A model some of whose batch keys (or index values) the holders just read show stored
        // is upserted at once, rather than by a plain insert bound to fail.
        let fresh: HashSet<String> = (mode.fresh.iter())
            .filter(|m| !state.finds_stored(m))
            .cloned()
            .collect();
        let mut writes = Writes::default();
        let mut results = Vec::with_capacity(self.units.len());
        for unit in self.units {
            let rows = match unit {
                Err(_) => {
                    results.push(Err(None));
                    continue;
                }
                Ok(rows) => rows,
            };
            let applied = match state.apply(rows) {
                Ok(applied) => applied,
                Err(e) => {
                    results.push(Err(Some(e)));
                    continue;
                }
            };
            if !one_by_one {
                rows.iter().for_each(|r| writes.add(r));
                results.push(Ok(()));
                continue;
            }
            let mut one = Writes::default();
            rows.iter().for_each(|r| one.add(r));
            tx.batch_execute("SAVEPOINT kye_item")?;
            match one.write(tx, cache, Vec::new(), &HashSet::new()) {
                Ok(models) => {
                    written.extend(models);
                    tx.batch_execute("RELEASE SAVEPOINT kye_item")?;
                    results.push(Ok(()));
                }
                Err(e) => {
                    let Some(v) = Violation::of(&e) else {
                        return Err(e);
                    };
                    tx.batch_execute("ROLLBACK TO SAVEPOINT kye_item")?;
                    // Not written: its keys and index values are free for the records after.
                    state.undo(applied);
                    match clash::record_error(tx, self.layouts, rows, &v)? {
                        Some(refused) => results.push(Err(Some(refused))),
                        // Not about the record's tables: the batch's error.
                        None => return Err(e),
                    }
                }
            }
        }
        // The other items go into the last upsert's statement (alone when one by one).
        written.extend(writes.write(tx, cache, self.other.parts(mode.fresh_outcomes), &fresh)?);
        write_lineage(tx, self.lineages, &results)?;
        for q in self.queued {
            // Why the record of item `i` was not written, if it was not.
            let not_stored = |i: usize| -> Option<String> {
                let k = self.record_slot.get(i).copied().flatten()?;
                match (results.get(k)?, self.units.get(k)?) {
                    (Err(Some(e)), _) | (Err(None), Err(e)) => Some(e.to_string()),
                    _ => None,
                }
            };
            if !complete_queued(tx, cache, q, &not_stored)? {
                // The lease is gone: nothing of this transaction is committed.
                return Ok(Err(Refusal::Lease(q.batch, q.run)));
            }
        }
        Ok(Ok((results, written)))
    }
}

/// Why a batch's transaction was rolled back.
enum Refusal {
    /// Another writer changed this model's layout.
    Schema(String),
    /// A queued batch's lease was lost (batch, run).
    Lease(i64, RunId),
    /// A unique violation (see `clash`).
    Unique(Violation),
}

/// The advisory lock id of a model's writers (a stable hash of its name).
fn model_lock_id(model: &str) -> i32 {
    use sha2::Digest;
    let h = sha2::Sha256::digest(model.as_bytes());
    i32::from_be_bytes([h[0], h[1], h[2], h[3]])
}
