//! The end of a queued run (`fetch --queue`, `worker`), shared by the queue and the store: a
//! run ends when its keys are all recorded and its batches all done; a run whose recording
//! process died (its enqueue lock free) is ended like a recording that stopped on an error,
//! once the batches it recorded are done.

use postgres::Client;
use sha2::{Digest, Sha256};

/// Why a queued run whose recording process died ends `failed`.
pub(crate) const ENQUEUER_GONE: &str = "the process recording the run's keys stopped before it \
     recorded them all (killed or crashed); the keys it recorded were done: record the request \
     again for the rest";

/// The advisory lock class of a schema's enqueuers (`pg_advisory_lock(class, run)`, held
/// while a run's keys are recorded; the server releases it when the process dies).
pub(crate) fn enqueue_lock_class(schema: &str) -> i32 {
    let h = Sha256::digest(format!("kye-queue:{schema}").as_bytes());
    i32::from_be_bytes([h[0], h[1], h[2], h[3]]) & 0x7fff_ffff
}

/// SQL true when the enqueue lock of run `q.run_id` is held (`$1`: the class).
pub(crate) const ENQUEUER_ALIVE: &str = "EXISTS (SELECT 1 FROM pg_locks l WHERE \
     l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE \
     datname = current_database()) AND l.classid = $1::int::oid \
     AND l.objid = q.run_id::int::oid AND l.objsubid = 2 AND l.granted)";

/// Opens the runs whose keys were being recorded by a process that is gone, with
/// [`ENQUEUER_GONE`] as their error, so that [`finish_if_drained`] ends them `failed` once the
/// batches recorded are done. Returns them.
pub(crate) fn adopt_dead_enqueuers(
    client: &mut Client,
    class: i32,
) -> Result<Vec<i64>, postgres::Error> {
    let sql = format!(
        "WITH dead AS (UPDATE _kye_queue_runs q SET state = 'open' \
         WHERE q.state = 'enqueuing' AND NOT {ENQUEUER_ALIVE} RETURNING q.run_id) \
         UPDATE _kye_runs r SET error = coalesce(r.error, $2) FROM dead \
         WHERE r.id = dead.run_id RETURNING r.id"
    );
    Ok(client
        .query(&sql, &[&class, &ENQUEUER_GONE])?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Ends queued run `run` when its keys are all recorded and its batches all completed:
/// `completed` (`failed` when recording its keys stopped on an error), with counts the sum of
/// its batches'. Returns whether it ended now; the run ends once, whoever calls.
pub(crate) fn finish_if_drained(client: &mut Client, run: i64) -> Result<bool, postgres::Error> {
    let mut tx = client.transaction()?;
    let state: Option<String> = tx
        .query_opt(
            "SELECT state FROM _kye_queue_runs WHERE run_id = $1 FOR UPDATE",
            &[&run],
        )?
        .map(|r| r.get(0));
    if state.as_deref() != Some("open") {
        return Ok(false);
    }
    let busy: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM _kye_queue_batches \
             WHERE run_id = $1 AND state IN ('queued', 'claimed'))",
            &[&run],
        )?
        .get(0);
    if busy {
        return Ok(false);
    }
    tx.execute(
        "UPDATE _kye_runs r SET ended_at = now(), \
         status = CASE WHEN r.error IS NULL THEN 'completed' ELSE 'failed' END, \
         stored = c.stored, rejected = c.rejected, missing = c.missing, \
         failed = c.failed, skipped = c.skipped \
         FROM (SELECT coalesce(sum(stored), 0)::bigint AS stored, \
               coalesce(sum(rejected), 0)::bigint AS rejected, \
               coalesce(sum(missing), 0)::bigint AS missing, \
               coalesce(sum(failed), 0)::bigint AS failed, \
               coalesce(sum(skipped), 0)::bigint AS skipped \
               FROM _kye_queue_batches WHERE run_id = $1) c \
         WHERE r.id = $1",
        &[&run],
    )?;
    tx.execute(
        "UPDATE _kye_queue_runs SET state = 'done', finished_at = now() WHERE run_id = $1",
        &[&run],
    )?;
    tx.commit()?;
    Ok(true)
}
