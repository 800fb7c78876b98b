//! Runs as every handle shows them, the writer's included: live counts while running, and a
//! run whose process is gone shown `interrupted` at once (its advisory lock is free; a queued
//! run, see `queued`, by its queue's state and its recorder's lock).

use postgres::types::ToSql;
use postgres::Row as PgRow;

use crate::store::{
    mark_dead, KeyStatus, RunCounts, RunId, RunInfo, RunStatus, StoreError, Timestamp,
};

use super::{queued, PgReader};

const RUN_COLS: &str = "id, request, (extract(epoch from started_at) * 1000)::bigint, \
     (extract(epoch from ended_at) * 1000)::bigint, status, stored, rejected, missing, failed, \
     skipped, error, resumed_from, source";
/// [`RUN_COLS`] of a store whose `_kye_runs` predates the `source` column.
const OLD_RUN_COLS: &str = "id, request, (extract(epoch from started_at) * 1000)::bigint, \
     (extract(epoch from ended_at) * 1000)::bigint, status, stored, rejected, missing, failed, \
     skipped, error, resumed_from, NULL::text";

fn run_from_row(r: &PgRow) -> RunInfo {
    let status: String = r.get(4);
    RunInfo {
        id: RunId(r.get(0)),
        request: r.get(1),
        started_at: Timestamp::from_unix_millis(r.get(2)),
        ended_at: r.get::<_, Option<i64>>(3).map(Timestamp::from_unix_millis),
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        counts: RunCounts {
            stored: r.get::<_, i64>(5) as u64,
            rejected: r.get::<_, i64>(6) as u64,
            missing: r.get::<_, i64>(7) as u64,
            failed: r.get::<_, i64>(8) as u64,
            skipped: r.get::<_, i64>(9) as u64,
        },
        error: r.get(10),
        resumed_from: r.get::<_, Option<i64>>(11).map(RunId),
        source: r.get(12),
    }
}

impl PgReader {
    /// The columns of a run row this store has (`source` came with issue 18).
    pub(super) fn run_cols(&self) -> &'static str {
        if self.runs_source {
            RUN_COLS
        } else {
            OLD_RUN_COLS
        }
    }

    /// Runs read from `sql`, with live counts while running; a run whose writer is gone (its
    /// advisory lock free) is shown interrupted.
    pub(super) fn runs_where(
        &self,
        sql: String,
        args: Vec<i64>,
    ) -> Result<Vec<RunInfo>, StoreError> {
        if !self.initialized {
            return Ok(Vec::new());
        }
        let class = self.conn().lock_class;
        // A writer knows its own runs are alive; any other run (another process's, which may
        // have died since this writer started) is alive only while its lock is held.
        let own: Vec<RunId> = if self.writer {
            self.conn().running.clone()
        } else {
            Vec::new()
        };
        // Queued runs (`fetch --queue`) hold no run lock: they are alive while their queue is
        // open, or while their keys are being recorded by a process that is alive (its enqueue
        // lock held) or that recorded batches still to do; otherwise the process recording
        // them died, and the next worker or writer ends the run (see `queued`).
        let queue = self.has_table("_kye_queue_runs")?;
        let enqueue_class = queued::enqueue_lock_class(&self.spec.schema);
        let queued_alive = format!(
            "SELECT EXISTS (SELECT 1 FROM _kye_queue_runs q WHERE q.run_id = $2 AND \
             (q.state = 'open' OR (q.state = 'enqueuing' AND ({} OR EXISTS (SELECT 1 \
             FROM _kye_queue_batches b WHERE b.run_id = q.run_id \
             AND b.state IN ('queued', 'claimed'))))))",
            queued::ENQUEUER_ALIVE
        );
        let (mut runs, alive, counts) = self.conn().run(move |s| {
            let params: Vec<&(dyn ToSql + Sync)> =
                args.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let runs: Vec<RunInfo> = s.client.query(&sql, &params)?.iter().map(run_from_row).collect();
            let mut alive = Vec::new();
            let mut counts = Vec::new();
            for r in runs.iter().filter(|r| r.status == RunStatus::Running) {
                let queued = queue
                    && s.client
                        .query_one(queued_alive.as_str(), &[&enqueue_class, &r.id.0])?
                        .get::<_, bool>(0);
                let held: bool = own.contains(&r.id)
                    || queued
                    || s.client
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                             AND classid = $1::int::oid AND objid = $2::int::oid AND objsubid = 2 AND granted)",
                            &[&class, &(r.id.0 as i32)],
                        )?
                        .get(0);
                alive.push((r.id, held));
                counts.push((r.id, outcome_counts_on(s.client, r.id)?));
            }
            Ok((runs, alive, counts))
        })?;
        for r in runs.iter_mut().filter(|r| r.status == RunStatus::Running) {
            if let Some((_, c)) = counts.iter().find(|(id, _)| *id == r.id) {
                r.counts = *c;
            }
            if alive.iter().any(|(id, held)| *id == r.id && !held) {
                mark_dead(r);
            }
        }
        Ok(runs)
    }
}

pub(super) fn outcome_counts_on(
    client: &mut postgres::Client,
    run: RunId,
) -> Result<RunCounts, postgres::Error> {
    let mut counts = RunCounts::default();
    for r in client.query(
        "SELECT status, count(*) FROM _kye_keys WHERE run_id = $1 GROUP BY status",
        &[&run.0],
    )? {
        let status: String = r.get(0);
        let n = r.get::<_, i64>(1) as u64;
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
