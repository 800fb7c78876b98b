//! The items of a batch besides records, written in the batch's transaction: key outcomes,
//! rejects, drift and list cursors (as parts of one statement, see `upsert`), a transformer's
//! lineage, and a queued batch's completion behind its lease.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::Transaction;

use crate::store::key::canonical_json;
use crate::store::{
    drift_example, fold_path, KeyStatus, Lineage, QueueBatchWrite, RunCounts, WriteItem,
};

use super::batch::{cached, Cache};
use super::convert::{json_text, kye_text};
use super::ddl::key_id;
use super::upsert::{Param, Part};

/// Replaces the lineage rows of every stored output with lineage, in the batch's transaction:
/// one `DELETE` and one `INSERT` over arrays.
pub(super) fn write_lineage<E>(
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

/// Writes a queued batch's key outcomes (a key whose record was refused is `failed`, with
/// why) and marks the batch `done` (or `failed`) with its counts, only while `q.lease` still
/// holds it. Returns false when it does not: the caller rolls the transaction back.
pub(super) fn complete_queued(
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

/// The insert of key outcomes, as columns (run, model, key, status, reason, at).
macro_rules! insert_keys {
    () => {
        "INSERT INTO _kye_keys (run_id, model, key, status, reason, at) \
         SELECT x.a::bigint, x.b, x.c, x.d, x.e, x.f::timestamptz \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
         AS x(a, b, c, d, e, f)"
    };
}

/// Key outcomes by a plain insert, for a run that has not written these keys' outcomes before.
pub(super) const KEYS_INSERT_SQL: &str = insert_keys!();

/// Key outcomes, replacing the run's earlier outcome of a key.
pub(super) const KEYS_SQL: &str = concat!(
    insert_keys!(),
    " ON CONFLICT (model, ",
    key_id!("key"),
    ", run_id) DO UPDATE SET status = EXCLUDED.status, reason = EXCLUDED.reason, at = EXCLUDED.at"
);

/// The rejects, drift and key outcomes of a batch, as columns for one statement each.
pub(super) struct OtherItems {
    rejects: Vec<Vec<Option<String>>>,
    drift: Vec<Vec<Option<String>>>,
    keys: Vec<Vec<Option<String>>>,
    cursors: Vec<Vec<Option<String>>>,
}

impl OtherItems {
    /// The items' rows, as columns.
    pub(super) fn new(items: &[WriteItem]) -> OtherItems {
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

    /// The statements writing these items, on kye's own tables (none for an empty kind); key
    /// outcomes by a plain insert when `fresh_outcomes` (a repeated one then fails the
    /// statement with a unique violation).
    pub(super) fn parts(&self, fresh_outcomes: bool) -> Vec<Part<'_>> {
        fn part<'p>(sql: &str, cols: &'p [Vec<Option<String>>]) -> Option<Part<'p>> {
            if cols.first().is_none_or(Vec::is_empty) {
                return None;
            }
            Some(Part {
                sql: sql.to_string(),
                params: cols.iter().map(|c| c as Param<'p>).collect(),
            })
        }
        [
            part(REJECTS_SQL, &self.rejects),
            part(DRIFT_SQL, &self.drift),
            part(
                if fresh_outcomes {
                    KEYS_INSERT_SQL
                } else {
                    KEYS_SQL
                },
                &self.keys,
            ),
            // In the same statement (one transaction) as the outcomes of the keys they cover.
            part(CURSORS_SQL, &self.cursors),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Rejects, as columns (run, model, key, fetcher, reason, errors, payload, at), kept in order.
const REJECTS_SQL: &str =
    "INSERT INTO _kye_rejects (run_id, model, key, fetcher, reason, errors, payload, at) \
     SELECT x.a::bigint, x.b, x.c::json, x.d, x.e, x.f::json, x.g::json, x.h::timestamptz \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[]) WITH ORDINALITY AS x(a, b, c, d, e, f, g, h, n) ORDER BY x.n";

/// Drift, as columns (model, path, first and last seen, first and last run, example, count).
const DRIFT_SQL: &str = "INSERT INTO _kye_drift (model, path, first_seen, last_seen, first_run, last_run, example, count) \
     SELECT x.a, x.b, x.c::timestamptz, x.d::timestamptz, x.e::bigint, x.f::bigint, x.g::json, x.h::bigint \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[]) AS x(a, b, c, d, e, f, g, h) \
     ON CONFLICT (model, path_md5) DO UPDATE SET \
     last_seen = greatest(_kye_drift.last_seen, EXCLUDED.last_seen), \
     last_run = greatest(_kye_drift.last_run, EXCLUDED.last_run), \
     example = EXCLUDED.example, count = _kye_drift.count + EXCLUDED.count";

/// List cursors, as columns (model, lister, cursor, finished, run, at).
const CURSORS_SQL: &str =
    "INSERT INTO _kye_list_cursors (model, lister, cursor, finished, run_id, at) \
     SELECT x.a, x.b, x.c::jsonb, x.d::boolean, x.e::bigint, x.f::timestamptz \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
     AS x(a, b, c, d, e, f) \
     ON CONFLICT (model, lister) DO UPDATE SET cursor = EXCLUDED.cursor, \
     finished = EXCLUDED.finished, run_id = EXCLUDED.run_id, at = EXCLUDED.at";
