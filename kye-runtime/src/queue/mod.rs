//! Many workers through PostgreSQL (feature `postgres`): a run's keys recorded in batches in the
//! store's `_kye_queue_*` tables ([`Queue::enqueue`]), claimed by any number of workers on any
//! number of machines with `SELECT ... FOR UPDATE SKIP LOCKED` ([`Queue::claim`]), each held
//! under a lease the worker renews while it works, and completed in the transaction that writes
//! the batch's records (`WriteItem::QueueBatch`, fenced by the lease): a batch's effects commit
//! exactly once. An entry point above the runtime: it calls the runtime's steps for a batch's
//! keys (`runtime::queued`) and the store's writer for its writes; neither knows the queue.
//!
//! `worker.rs` is the loop a `kye worker` runs; `budget.rs` shares each host's rate among the
//! workers.

mod budget;
mod worker;

use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

pub use worker::{BatchEnd, WorkerOptions, WorkerReport};

use crate::error::{Error, Result};
use crate::model::Key;
use crate::runtime::{FetchRequest, Runtime};
use crate::store::{queued, Conn, PgSpec, RunCounts, RunId, StoreError};

/// Keys per batch: small enough that a lost batch costs little, large enough that claiming
/// and committing cost little per key.
pub const BATCH_KEYS: usize = 100;

/// Claims of one batch (leases that expired count) before its keys are failed.
pub const BATCH_ATTEMPTS: i32 = 3;

/// Keys recorded per enqueue transaction.
const ENQUEUE_CHUNK: usize = 20 * BATCH_KEYS;

/// The queue of a PostgreSQL store: queued runs, their batches, their workers.
///
/// Open it after the store has been opened for writing (a [`Runtime`] with a `postgres://`
/// store), which creates the queue's tables.
pub struct Queue {
    conn: Mutex<Conn>,
    spec: PgSpec,
    batch_attempts: i32,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({})", self.spec)
    }
}

/// A batch a worker holds under a lease ([`Queue::claim`]).
#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    /// The batch (`_kye_queue_batches.id`).
    pub id: i64,
    /// Its run.
    pub run: RunId,
    /// The model its keys are of.
    pub model: String,
    /// How many times it was claimed, this claim included.
    pub attempts: u32,
    /// Its keys.
    pub keys: Vec<Key>,
    lease: i64,
    /// Why the batch was last put back, if it was.
    reason: Option<String>,
    fetcher: Vec<String>,
    depth: u32,
    follow: u32,
    max_attempts: u32,
}

/// How far a queued run is ([`Queue::progress`]; `kye runs` shows it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueProgress {
    /// The run.
    pub run: RunId,
    /// `enqueuing` (keys are still being recorded), `open` or `done`.
    pub state: String,
    /// Batches waiting for a worker.
    pub queued: u64,
    /// Batches a worker holds.
    pub claimed: u64,
    /// Batches completed.
    pub done: u64,
    /// Batches that gave up (their keys failed).
    pub failed: u64,
    /// Keys recorded so far (requested and followed).
    pub keys: u64,
    /// Outcomes of the completed batches.
    pub counts: RunCounts,
    /// The workers holding batches now, with how many each holds and when its first lease
    /// expires (UTC).
    pub workers: Vec<WorkerLease>,
}

/// A worker of a run: the batches it holds now and what it has committed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerLease {
    /// Its name (`--name`, default `host:pid`).
    pub worker: String,
    /// Batches it holds now.
    pub batches: u64,
    /// When its earliest lease expires (`2026-12-07T08:40:50.123Z`); empty when it holds none.
    pub expires: String,
    /// Batches of the run it committed.
    pub done: u64,
    /// Keys of those batches (stored, rejected, missing, failed or skipped).
    pub keys: u64,
    /// Its rate over this run: keys committed a second, from its first claim of a batch it
    /// committed to its last commit (`None` before its first commit).
    pub keys_per_second: Option<f64>,
}

impl QueueProgress {
    /// True once every batch completed (or gave up) and the run was ended.
    pub fn is_done(&self) -> bool {
        self.state == "done"
    }
}

fn store_err(e: StoreError) -> Error {
    Error::other(e)
}

impl Queue {
    /// Opens the queue of the store at `spec`; the store must have been opened for writing
    /// before (it creates the queue's tables).
    pub fn open(spec: &PgSpec) -> Result<Queue> {
        let mut conn = Conn::open(spec).map_err(store_err)?;
        let present: bool = conn
            .run(|s| {
                Ok(s.client
                    .query_one("SELECT to_regclass('_kye_queue_batches') IS NOT NULL", &[])?
                    .get(0))
            })
            .map_err(store_err)?;
        if !present {
            return Err(Error::permanent(format!(
                "{spec} has no queue tables: open it for writing first (any kye command with \
                 --db {spec} that writes, e.g. `fetch --queue`, creates them)"
            )));
        }
        Ok(Queue {
            conn: Mutex::new(conn),
            spec: spec.clone(),
            batch_attempts: BATCH_ATTEMPTS,
        })
    }

    /// How often a batch of the runs this queue enqueues may be claimed before its keys are
    /// failed (default [`BATCH_ATTEMPTS`]; at least 1). Each claim whose worker died, lost
    /// its lease or could not reach the source counts; a worker stopped by SIGTERM puts its
    /// batch back without counting. Raise it where workers are often killed (spot machines).
    pub fn batch_attempts(mut self, claims: u32) -> Queue {
        self.batch_attempts = i32::try_from(claims.max(1)).unwrap_or(i32::MAX);
        self
    }

    /// The advisory lock class of this store's enqueuers (`pg_advisory_lock(class, run)`, held
    /// while a run's keys are recorded; released by the server when the process dies).
    fn enqueue_class(&self) -> i32 {
        queued::enqueue_lock_class(&self.spec.schema)
    }

    /// The fleet's rate budget of this store (a connection of its own).
    fn budget(&self) -> Result<budget::PgBudget> {
        budget::PgBudget::open(&self.spec).map_err(store_err)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Conn> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a run of `request` and its keys, in batches of [`BATCH_KEYS`], for workers to
    /// take; returns the run. Keys are recorded in transactions of a few thousand, so workers
    /// start on the first while the rest are recorded; the run can end only once all are. A
    /// bare model's keys come from its list function, recorded as its pages arrive (its
    /// cursors are not saved, and the records its pages carry are fetched again by the workers).
    pub async fn enqueue(&self, rt: &Runtime, request: &FetchRequest) -> Result<RunId> {
        let resolved = rt.resolve(&request.request)?;
        let (model, fetcher, keys) = resolved.into_parts();
        let lister = keys.lister();
        // The run names the source of what it was asked for, as a run in one process does.
        let source = lister
            .and_then(|l| crate::source::source_version_of(l.function))
            .or_else(|| crate::source::source_version_of(&fetcher.identifier_text()));
        let model = model.name().to_string();
        let edges: Vec<String> = fetcher.identifier.iter().map(|e| e.to_string()).collect();
        let text = request.request.replace('\0', "\u{2400}");
        let follow = request.follow as i32;
        let pid = i64::from(std::process::id());
        let class = self.enqueue_class();
        let attempts = self.batch_attempts;
        let run = self
            .conn()
            .run(move |s| {
                let mut tx = s.client.transaction()?;
                let id: i64 = tx
                    .query_one(
                        "INSERT INTO _kye_runs (request, started_at, status, pid, source) \
                         VALUES ($1, now(), 'running', $2, $3) RETURNING id",
                        &[&text, &pid, &source],
                    )?
                    .get(0);
                // Held while the keys are recorded: workers waiting to exit when idle know a
                // live enqueuer from a dead one (the server releases it with the connection).
                tx.execute("SELECT pg_advisory_lock($1, $2)", &[&class, &(id as i32)])?;
                tx.execute(
                    "INSERT INTO _kye_queue_runs (run_id, follow, max_attempts, state, created_at) \
                     VALUES ($1, $2, $3, 'enqueuing', now())",
                    &[&id, &follow, &attempts],
                )?;
                tx.commit()?;
                Ok(RunId(id))
            })
            .map_err(store_err)?;
        // Taken again if the connection is lost and comes back while the keys are recorded.
        self.conn().hold_enqueue_lock(class, run);
        tracing::info!(run = %run, request = %request.request, "queued run started");
        let record = |chunk: Vec<Key>| {
            let new: Vec<NewKey> = chunk
                .into_iter()
                .map(|key| NewKey::new(&model, &edges, key, 0))
                .collect();
            self.insert_keys(run, new, RecordedBy::Enqueuer).map(|_| ())
        };
        let recorded: Result<()> = async {
            match lister {
                // A list function's keys, as its pages arrive.
                Some(l) => rt
                    .list_queued(l, fetcher, BATCH_KEYS, record)
                    .await
                    .map(|_| ()),
                None => {
                    let mut keys = keys.into_keys().peekable();
                    while keys.peek().is_some() {
                        record(keys.by_ref().take(ENQUEUE_CHUNK).collect())?;
                    }
                    Ok(())
                }
            }
        }
        .await;
        // Open either way: the keys recorded are done and the run can end; when recording
        // stopped on an error, the run keeps it as its error. Only a run still `enqueuing`:
        // one another process ended (taking this one for dead) stays ended.
        let error = recorded
            .as_ref()
            .err()
            .map(|e| crate::redact::redact_text(&e.to_string()).replace('\0', "\u{2400}"));
        let mut conn = self.conn();
        conn.forget_enqueue_lock(run);
        let opened = conn
            .run(move |s| {
                let mut tx = s.client.transaction()?;
                let opened = tx.execute(
                    "UPDATE _kye_queue_runs SET state = 'open' \
                     WHERE run_id = $1 AND state = 'enqueuing'",
                    &[&run.0],
                )? == 1;
                if let (true, Some(e)) = (opened, &error) {
                    tx.execute(
                        "UPDATE _kye_runs SET error = $2 WHERE id = $1",
                        &[&run.0, e],
                    )?;
                }
                tx.commit()?;
                s.client.execute(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&class, &(run.0 as i32)],
                )?;
                Ok(opened)
            })
            .map_err(store_err)?;
        drop(conn);
        if !opened {
            tracing::warn!(run = %run, "{}", ended_elsewhere(run));
            recorded?;
            return Err(Error::permanent(ended_elsewhere(run)));
        }
        recorded?;
        // A run of no keys is drained at once.
        self.finish_if_drained(run)?;
        Ok(run)
    }

    /// Records `keys` as batches of `run` (grouped by model, fetcher and depth). For followed
    /// references, a key the run has seen is left out; requested keys are always recorded (and
    /// marked seen, so a reference to one is not queued again), while the run is `enqueuing`.
    fn insert_keys(&self, run: RunId, keys: Vec<NewKey>, by: RecordedBy) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let dedupe = by == RecordedBy::References;
        let recorded = self
            .conn()
            .run(move |s| {
                let mut tx = s.client.transaction()?;
                // The enqueuer records keys only while the run is `enqueuing`: a process that
                // found its enqueue lock free (the connection was lost a while) may have opened
                // or ended it. The row stays locked until the batches are in.
                if by == RecordedBy::Enqueuer {
                    let state: Option<String> = tx
                        .query_opt(
                            "SELECT state FROM _kye_queue_runs WHERE run_id = $1 FOR SHARE",
                            &[&run.0],
                        )?
                        .map(|r| r.get(0));
                    if state.as_deref() != Some("enqueuing") {
                        return Ok(None);
                    }
                }
                let seen: Vec<String> = keys.iter().map(|k| k.seen.clone()).collect();
                let fresh: Vec<String> = tx
                    .query(
                        "INSERT INTO _kye_queue_seen (run_id, key) \
                         SELECT $1, k FROM unnest($2::text[]) AS k \
                         ON CONFLICT DO NOTHING RETURNING key",
                        &[&run.0, &seen],
                    )?
                    .into_iter()
                    .map(|r| r.get(0))
                    .collect();
                let fresh: std::collections::HashSet<String> = fresh.into_iter().collect();
                let mut groups: Vec<(Group, Vec<&Key>)> = Vec::new();
                for k in &keys {
                    if dedupe && !fresh.contains(&k.seen) {
                        continue;
                    }
                    let g = (k.model.clone(), k.fetcher.clone(), k.depth);
                    match groups.iter_mut().find(|(id, _)| *id == g) {
                        Some((_, list)) => list.push(&k.key),
                        None => groups.push((g, vec![&k.key])),
                    }
                }
                let mut n = 0;
                let st = tx.prepare(
                    "INSERT INTO _kye_queue_batches (run_id, model, fetcher, depth, keys, state, created_at) \
                     SELECT $1, $2, $3, $4, k::jsonb, 'queued', now() FROM unnest($5::text[]) AS k",
                )?;
                for ((model, fetcher, depth), list) in groups {
                    let batches: Vec<String> = list
                        .chunks(BATCH_KEYS)
                        .map(|c| serde_json::to_string(c).unwrap_or_else(|_| "[]".into()))
                        .collect();
                    n += list.len() as u64;
                    tx.execute(&st, &[&run.0, &model, &fetcher, &(depth as i32), &batches])?;
                }
                tx.commit()?;
                Ok(Some(n))
            })
            .map_err(store_err)?;
        recorded.ok_or_else(|| Error::permanent(ended_elsewhere(run)))
    }

    /// Takes the oldest batch waiting (or whose lease expired) for `worker`, under a lease of
    /// `lease`; `None` when there is none. Concurrent claimers skip each other's rows.
    pub fn claim(&self, worker: &str, lease: Duration) -> Result<Option<ClaimedBatch>> {
        let token = fastrand::i64(1..i64::MAX);
        let ms = lease.as_millis().min(i64::MAX as u128) as i64;
        let worker = worker.to_string();
        let row = self
            .conn()
            .run(move |s| {
                s.client.query_opt(
                    "WITH c AS (SELECT id FROM _kye_queue_batches \
                       WHERE state = 'queued' OR (state = 'claimed' AND lease_until < now()) \
                       ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
                     UPDATE _kye_queue_batches b SET state = 'claimed', lease = $1, \
                       lease_until = now() + $2 * interval '1 millisecond', worker = $3, \
                       attempts = b.attempts + 1, claimed_at = now() \
                     FROM c WHERE b.id = c.id \
                     RETURNING b.id, b.run_id, b.model, b.fetcher, b.depth, b.keys::text, b.attempts, \
                       (SELECT follow FROM _kye_queue_runs r WHERE r.run_id = b.run_id), \
                       (SELECT max_attempts FROM _kye_queue_runs r WHERE r.run_id = b.run_id), \
                       b.reason",
                    &[&token, &(ms as f64), &worker],
                )
            })
            .map_err(store_err)?;
        let Some(r) = row else { return Ok(None) };
        let id: i64 = r.get(0);
        let keys_text: String = r.get(5);
        let fetcher: String = r.get(3);
        let keys: Vec<Key> = serde_json::from_str(&keys_text).map_err(|e| {
            Error::permanent(format!("queued batch {id}: its keys cannot be read: {e}"))
        })?;
        Ok(Some(ClaimedBatch {
            id,
            run: RunId(r.get(1)),
            model: r.get(2),
            fetcher: fetcher.split(',').map(str::to_string).collect(),
            depth: r.get::<_, i32>(4).max(0) as u32,
            attempts: r.get::<_, i32>(6).max(0) as u32,
            keys,
            lease: token,
            reason: r.get(9),
            follow: r.get::<_, Option<i32>>(7).unwrap_or(0).max(0) as u32,
            max_attempts: r.get::<_, Option<i32>>(8).unwrap_or(BATCH_ATTEMPTS).max(1) as u32,
        }))
    }

    /// Extends the lease on `batch` by `lease` from now; false when it is no longer held (the
    /// lease expired and another worker took it).
    pub fn renew(&self, batch: &ClaimedBatch, lease: Duration) -> Result<bool> {
        let ms = lease.as_millis().min(i64::MAX as u128) as f64;
        let (id, token) = (batch.id, batch.lease);
        let n = self
            .conn()
            .run(move |s| {
                s.client.execute(
                    "UPDATE _kye_queue_batches SET lease_until = now() + $3 * interval '1 millisecond' \
                     WHERE id = $1 AND lease = $2 AND state = 'claimed'",
                    &[&id, &token, &ms],
                )
            })
            .map_err(store_err)?;
        Ok(n == 1)
    }

    /// Puts `batch` back for another worker (a worker stopping before it finished it); the
    /// claim does not count as an attempt.
    pub fn release(&self, batch: &ClaimedBatch, why: &str) -> Result<()> {
        let (id, token) = (batch.id, batch.lease);
        let why = why.replace('\0', "\u{2400}");
        self.conn()
            .run(move |s| {
                s.client.execute(
                    "UPDATE _kye_queue_batches SET state = 'queued', lease = NULL, lease_until = NULL, \
                     worker = NULL, attempts = greatest(attempts - 1, 0), reason = $3 \
                     WHERE id = $1 AND lease = $2 AND state = 'claimed'",
                    &[&id, &token, &why],
                )
            })
            .map_err(store_err)?;
        Ok(())
    }

    /// Puts `batch` back after a failure of the worker's own (its write failed): the claim
    /// counts as an attempt, and `why` is kept as the batch's reason.
    fn expire(&self, batch: &ClaimedBatch, why: &str) -> Result<()> {
        let (id, token) = (batch.id, batch.lease);
        let why = crate::redact::redact_text(why).replace('\0', "\u{2400}");
        self.conn()
            .run(move |s| {
                s.client.execute(
                    "UPDATE _kye_queue_batches SET state = 'queued', lease = NULL, lease_until = NULL, \
                     worker = NULL, reason = $3 WHERE id = $1 AND lease = $2 AND state = 'claimed'",
                    &[&id, &token, &why],
                )
            })
            .map_err(store_err)?;
        Ok(())
    }

    /// Enqueues followed references into `run` (each key once per run).
    fn enqueue_references(&self, run: RunId, refs: Vec<crate::runtime::Reference>) -> Result<u64> {
        let keys = refs
            .into_iter()
            .map(|r| NewKey {
                model: r.model,
                fetcher: r.fetcher.join(","),
                key: r.key,
                depth: r.depth,
                seen: r.seen,
            })
            .collect();
        self.insert_keys(run, keys, RecordedBy::References)
    }

    /// Ends `run` when its keys are all recorded and its batches all completed: `completed`
    /// (`failed` when recording its keys stopped on an error, or the process recording them
    /// died), with counts the sum of its batches'. Returns whether it ended now. Any worker
    /// (and the process waiting for the run) may call it; the run ends once.
    pub fn finish_if_drained(&self, run: RunId) -> Result<bool> {
        self.conn()
            .run(move |s| queued::finish_if_drained(s.client, run.0))
            .map_err(store_err)
            .inspect(|ended| {
                if *ended {
                    tracing::info!(run = %run, "queued run completed");
                }
            })
    }

    /// Whether any batch of any run waits for a worker or is held by one, or a run's keys are
    /// still being recorded (by a process that is alive: it holds the run's enqueue lock).
    pub fn has_work(&self) -> Result<bool> {
        let class = self.enqueue_class();
        self.conn()
            .run(|s| {
                Ok(s.client
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM _kye_queue_batches WHERE state IN ('queued', 'claimed')) \
                         OR EXISTS (SELECT 1 FROM _kye_queue_runs q WHERE q.state = 'enqueuing' \
                           AND EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                             AND classid = $1::int::oid AND objid = q.run_id::int::oid \
                             AND objsubid = 2 AND granted))",
                        &[&class],
                    )?
                    .get(0))
            })
            .map_err(store_err)
    }

    /// Runs whose queue is open (ends them when drained, see [`Queue::finish_if_drained`]),
    /// after opening those whose recording process died (see `store::queued`).
    fn open_runs(&self) -> Result<Vec<RunId>> {
        let class = self.enqueue_class();
        self.conn()
            .run(move |s| {
                for run in queued::adopt_dead_enqueuers(s.client, class)? {
                    tracing::warn!(run, "{}", queued::ENQUEUER_GONE);
                }
                Ok(s.client
                    .query(
                        "SELECT run_id FROM _kye_queue_runs WHERE state = 'open' ORDER BY run_id",
                        &[],
                    )?
                    .iter()
                    .map(|r| RunId(r.get(0)))
                    .collect())
            })
            .map_err(store_err)
    }

    /// How far queued run `run` is; `None` when it is not a queued run.
    pub fn progress(&self, run: RunId) -> Result<Option<QueueProgress>> {
        self.conn()
            .run(move |s| {
                let Some(state) = s
                    .client
                    .query_opt(
                        "SELECT state FROM _kye_queue_runs WHERE run_id = $1",
                        &[&run.0],
                    )?
                    .map(|r| r.get::<_, String>(0))
                else {
                    return Ok(None);
                };
                let r = s.client.query_one(
                    "SELECT count(*) FILTER (WHERE state = 'queued'), \
                     count(*) FILTER (WHERE state = 'claimed'), \
                     count(*) FILTER (WHERE state = 'done'), \
                     count(*) FILTER (WHERE state = 'failed'), \
                     coalesce(sum(jsonb_array_length(keys)), 0)::bigint, \
                     coalesce(sum(stored), 0)::bigint, coalesce(sum(rejected), 0)::bigint, \
                     coalesce(sum(missing), 0)::bigint, coalesce(sum(failed), 0)::bigint, \
                     coalesce(sum(skipped), 0)::bigint \
                     FROM _kye_queue_batches WHERE run_id = $1",
                    &[&run.0],
                )?;
                let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
                // Every worker that holds or committed a batch of the run; a worker's done
                // batches keep its name (a batch put back loses it).
                let workers = s
                    .client
                    .query(
                        "SELECT worker, count(*) FILTER (WHERE state = 'claimed'), \
                         to_char(min(lease_until) FILTER (WHERE state = 'claimed') AT TIME ZONE 'UTC', \
                           'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
                         count(*) FILTER (WHERE state = 'done'), \
                         coalesce(sum(stored + rejected + missing + failed + skipped) \
                           FILTER (WHERE state = 'done'), 0)::bigint, \
                         extract(epoch FROM max(finished_at) FILTER (WHERE state = 'done') \
                           - min(claimed_at) FILTER (WHERE state = 'done'))::float8 \
                         FROM _kye_queue_batches WHERE run_id = $1 AND worker IS NOT NULL \
                           AND state IN ('claimed', 'done') \
                         GROUP BY worker ORDER BY worker",
                        &[&run.0],
                    )?
                    .iter()
                    .map(|w| {
                        let keys = w.get::<_, i64>(4).max(0) as u64;
                        let secs = w.get::<_, Option<f64>>(5);
                        WorkerLease {
                            worker: w.get::<_, Option<String>>(0).unwrap_or_default(),
                            batches: w.get::<_, i64>(1).max(0) as u64,
                            expires: w.get::<_, Option<String>>(2).unwrap_or_default(),
                            done: w.get::<_, i64>(3).max(0) as u64,
                            keys,
                            keys_per_second: secs
                                .filter(|_| keys > 0)
                                .map(|s| keys as f64 / s.max(0.001)),
                        }
                    })
                    .collect();
                Ok(Some(QueueProgress {
                    run,
                    state,
                    queued: n(0),
                    claimed: n(1),
                    done: n(2),
                    failed: n(3),
                    keys: n(4),
                    counts: RunCounts {
                        stored: n(5),
                        rejected: n(6),
                        missing: n(7),
                        failed: n(8),
                        skipped: n(9),
                    },
                    workers,
                }))
            })
            .map_err(store_err)
    }
}

/// Why a run's enqueuer stopped: another process ended the run while its keys were recorded.
fn ended_elsewhere(run: RunId) -> String {
    format!(
        "queued run {run}: another process ended the run while its keys were being recorded \
         (this process's connection to the server was lost a while, and its enqueue lock with \
         it); the keys recorded before are done: record the request again for the rest"
    )
}

/// Who records keys into a run ([`Queue::insert_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordedBy {
    /// The process recording the run's keys: only while the run is `enqueuing`.
    Enqueuer,
    /// A worker following references: each key once per run.
    References,
}

/// The keys a batch shares: model, fetcher, depth.
type Group = (String, String, u32);

/// A key to record in a run's queue.
struct NewKey {
    model: String,
    /// The fetcher's identifier edges, comma-separated.
    fetcher: String,
    key: Key,
    depth: u32,
    seen: String,
}

impl NewKey {
    fn new(model: &str, edges: &[String], key: Key, depth: u32) -> NewKey {
        let index = crate::store::IndexKey::new(
            edges.iter().map(String::as_str),
            key.values().iter().map(crate::model::KeyValue::to_json),
        );
        NewKey {
            seen: format!("{model}:{}", index.canonical()),
            model: model.to_string(),
            fetcher: edges.join(","),
            key,
            depth,
        }
    }
}
