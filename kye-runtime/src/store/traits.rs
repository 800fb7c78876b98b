//! The two sides of a store: [`StoreRead`] (every query kye makes) and [`StoreWrite`]
//! (preparing tables, runs and batches of writes). A read-only handle implements only
//! [`StoreRead`].

use std::path::Path;

use kye_lang::Schema;
use serde_json::Value;

use super::{
    DriftInfo, FetchedAges, IndexKey, KeyOutcomeInfo, LineageRow, ListCursorInfo, NewRun,
    RecordQuery, RejectInfo, RunCounts, RunEnd, RunId, RunInfo, StaleCounts, StoreError, Timestamp,
    WriteItem,
};

/// The read side of a store: every query kye makes of stored records, runs, outcomes, rejects
/// and drift.
///
/// Each store has a reader type implementing only this trait ([`SqliteReader`],
/// [`DirReader`]): a handle opened with [`open_store_read_only`] cannot write, by construction.
/// A writer hands out read handles of its own store with [`StoreWrite::reader`], so that
/// readers (the runtime's skip checks, a server's lookups) never wait for the writer's batch.
///
/// [`SqliteReader`]: super::SqliteReader
/// [`DirReader`]: super::DirReader
/// [`open_store_read_only`]: super::open_store_read_only
pub trait StoreRead: Send {
    /// `sqlite` or `dir`.
    fn kind(&self) -> &'static str;

    /// The file or directory.
    fn location(&self) -> &Path;

    /// When the record of `model` with this key (any of its indexes) was last stored.
    fn last_stored(&self, model: &str, key: &IndexKey) -> Result<Option<Timestamp>, StoreError>;

    /// The latest recorded outcome of a requested key, across runs.
    fn latest_outcome(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError>;

    /// The outcome of a requested key recorded by the newest run (highest id) that finished it:
    /// stored, missing, rejected or skipped ([`KeyStatus::is_done`](super::KeyStatus::is_done)); outcomes that are not
    /// done (failed) are passed over. Resume reads this: a key whose newest finished outcome
    /// belongs to the resumed chain of runs, or to a run started since, is not fetched again.
    fn latest_done(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError>;

    /// The stored record of `model` with this key (any of its indexes), references left as
    /// keys (as [`RecordQuery`] with depth 0), without provenance; `None` when not stored.
    fn record(&self, model: &str, key: &IndexKey) -> Result<Option<Value>, StoreError>;

    /// The newest run of exactly this request text, whatever its status.
    fn latest_run_of(&self, request: &str) -> Result<Option<RunInfo>, StoreError> {
        Ok(self.runs(None)?.into_iter().find(|r| r.request == request))
    }

    /// Counts of the key outcomes recorded for `run`.
    fn outcome_counts(&self, run: RunId) -> Result<RunCounts, StoreError>;

    /// Stored records of a model as JSON objects with nested edges.
    fn records(&self, query: &RecordQuery) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        self.for_each_record(query, &mut |v| {
            out.push(v);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`StoreRead::records`] handing each record to `each` as it is read, so that memory does
    /// not grow with the number of records (`kye show` prints through it). An error from
    /// `each` stops the reading and is returned.
    fn for_each_record(
        &self,
        query: &RecordQuery,
        each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Runs, newest first.
    fn runs(&self, limit: Option<usize>) -> Result<Vec<RunInfo>, StoreError>;

    /// One run.
    fn run(&self, id: RunId) -> Result<Option<RunInfo>, StoreError>;

    /// Quarantined payloads, newest first, optionally of one run.
    fn rejects(
        &self,
        run: Option<RunId>,
        limit: Option<usize>,
    ) -> Result<Vec<RejectInfo>, StoreError>;

    /// Unknown fields seen, by model and path.
    fn drift(&self) -> Result<Vec<DriftInfo>, StoreError>;

    /// The cursor the list function `lister` (`module::function`) of `model` saved last, if
    /// any ([`WriteItem::ListCursor`](super::WriteItem::ListCursor)).
    fn list_cursor(&self, model: &str, lister: &str) -> Result<Option<ListCursorInfo>, StoreError>;

    /// The edges of a stored model in schema order (the order `show` prints them), or `None`
    /// when the store does not know the model.
    fn edge_names(&self, model: &str) -> Option<Vec<String>> {
        let _ = model;
        None
    }

    /// The primary key and content hash of every stored record of `model`, handed to `each`
    /// in primary key order. `key_edges` are the edges of the model's primary index. The
    /// default reads whole records through [`StoreRead::for_each_record`]; a store may read
    /// only the key and hash columns.
    fn content_hashes(
        &self,
        model: &str,
        key_edges: &[&str],
        each: &mut dyn FnMut(IndexKey, String) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        hashes_of_records(self, model, key_edges, each)
    }

    /// How many stored records of `model` were fetched at or after `cutoff` and how many
    /// before it, and when the oldest was fetched: a freshness report's numbers. The default
    /// reads every record's provenance through [`StoreRead::for_each_record`]; the SQL stores
    /// answer with one aggregate query over the fetch-time column.
    fn fetched_ages(&self, model: &str, cutoff: Timestamp) -> Result<FetchedAges, StoreError> {
        ages_of_records(self, model, cutoff)
    }

    /// The stored records of `model` fetched before `cutoff`, oldest first (equal times in
    /// primary key order), at most `limit`: when each was fetched and its key by `key_edges`
    /// (an index of the model, such as the edges a fetcher is keyed by). A record without a
    /// value for one of `key_edges` is passed over. The default reads every record through
    /// [`StoreRead::for_each_record`]; the SQL stores read only the stale rows' key and
    /// fetch-time columns when `key_edges` are plain columns of the model's table.
    fn fetched_before(
        &self,
        model: &str,
        key_edges: &[&str],
        cutoff: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Timestamp, IndexKey)>, StoreError> {
        keys_fetched_before(self, model, key_edges, cutoff, limit)
    }

    /// Every lineage row of `transformer` (what each of its stored outputs was computed
    /// from), ordered by output key. A store without a lineage table refuses with
    /// [`StoreError::Unsupported`].
    fn lineage(&self, transformer: &str) -> Result<Vec<LineageRow>, StoreError> {
        let mut out = Vec::new();
        self.for_each_lineage(transformer, &mut |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// The records of a transformer's primary input whose output must be computed again,
    /// judged by the store itself from the lineage table and the inputs' content hashes, so
    /// that only those leave the database: a record without a stored output, and one whose
    /// output was computed from an input that changed since (its content hash differs, it is
    /// no longer stored, or it was looked up and missing then). Each is handed to `each` with
    /// its primary key and content hash, in no particular order.
    ///
    /// `inputs` are the transformer's input models with their primary index edges, the
    /// primary input first. The default compares [`StoreRead::for_each_lineage`] with
    /// [`StoreRead::content_hashes`] (so a store without lineage refuses as that does); a
    /// store may judge closer to its data.
    fn stale_inputs(
        &self,
        transformer: &str,
        inputs: &[(&str, &[&str])],
        each: &mut dyn FnMut(IndexKey, String) -> Result<(), StoreError>,
    ) -> Result<StaleCounts, StoreError> {
        super::stale::stale_inputs_by_reads(self, transformer, inputs, each)
    }

    /// [`StoreRead::lineage`] handing each row to `each` as it is read (ordered by output
    /// key, then input model and key), so that a transformer's run compares a million rows
    /// without holding them. An error from `each` stops the reading and is returned.
    fn for_each_lineage(
        &self,
        transformer: &str,
        each: &mut dyn FnMut(LineageRow) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let _ = (transformer, each);
        Err(StoreError::Unsupported {
            store: self.kind(),
            what: "keeps no lineage, so it cannot run transformers; use the SQLite or PostgreSQL store".into(),
        })
    }
}

/// The write side of a store: preparing tables, runs and batches of writes. One writer per
/// store at a time (a second is refused with [`StoreError::Locked`] where the store can tell).
///
/// Writes come in batches: [`StoreWrite::write_batch`] applies a batch in one transaction
/// (SQLite) or with atomic renames (directory). The outer `Result` fails when nothing of the
/// batch could be written (an I/O or database error); the inner ones report per item, e.g. a
/// record whose secondary index clashes with another stored record. A failed item leaves
/// nothing behind; the other items of the batch are written.
///
/// A writer reads its own writes ([`StoreRead`] is its supertrait). Implementations are `Send`
/// so the runtime can own one in its writer thread.
pub trait StoreWrite: StoreRead {
    /// Creates or migrates storage for every model of `schema`. Additive changes (a new
    /// optional edge) are applied; incompatible ones are refused with
    /// [`StoreError::SchemaChange`] naming the model and edge, leaving stored data untouched.
    fn prepare(&mut self, schema: &Schema) -> Result<(), StoreError>;

    /// Records the start of a run and returns its id.
    fn begin_run(&mut self, run: &NewRun) -> Result<RunId, StoreError>;

    /// Records the end of a run.
    fn finish_run(&mut self, run: RunId, end: &RunEnd) -> Result<(), StoreError>;

    /// Writes a batch atomically per item; see the trait docs.
    fn write_batch(
        &mut self,
        items: &[WriteItem],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// A read handle on this store that does not wait for this writer: it sees what the writer
    /// has committed. Open it after [`StoreWrite::prepare`], so it knows every model.
    fn reader(&self) -> Result<Box<dyn StoreRead>, StoreError>;
}

/// [`StoreRead::content_hashes`] read through whole records (the default, and what a store
/// falls back to for keys it cannot read from columns alone).
pub(crate) fn hashes_of_records<S: StoreRead + ?Sized>(
    store: &S,
    model: &str,
    key_edges: &[&str],
    each: &mut dyn FnMut(IndexKey, String) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut query = RecordQuery::new(model);
    query.depth = 0;
    query.provenance = true;
    store.for_each_record(&query, &mut |v| {
        let values = key_edges
            .iter()
            .map(|e| v.get(*e).cloned().unwrap_or(Value::Null));
        let key = IndexKey::new(key_edges.iter().copied(), values);
        let hash = v
            .pointer("/_kye/hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        each(key, hash)
    })
}

/// When a record read with provenance was fetched.
fn fetched_at(record: &Value) -> Option<Timestamp> {
    record
        .pointer("/_kye/fetched_at")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
}

/// Every stored record of `model` with its provenance, handed to `each`.
fn each_with_provenance<S: StoreRead + ?Sized>(
    store: &S,
    model: &str,
    each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut query = RecordQuery::new(model);
    query.depth = 0;
    query.provenance = true;
    store.for_each_record(&query, each)
}

/// [`StoreRead::fetched_ages`] read through whole records (the default).
pub(crate) fn ages_of_records<S: StoreRead + ?Sized>(
    store: &S,
    model: &str,
    cutoff: Timestamp,
) -> Result<FetchedAges, StoreError> {
    let mut ages = FetchedAges::default();
    each_with_provenance(store, model, &mut |v| {
        let Some(at) = fetched_at(&v) else {
            return Ok(());
        };
        ages.oldest = Some(ages.oldest.map_or(at, |o| o.min(at)));
        if at >= cutoff {
            ages.since += 1;
        } else {
            ages.before += 1;
        }
        Ok(())
    })?;
    Ok(ages)
}

/// [`StoreRead::fetched_before`] read through whole records (the default, and what a store
/// falls back to for keys it cannot read from columns alone). Holds at most `limit` keys.
pub(crate) fn keys_fetched_before<S: StoreRead + ?Sized>(
    store: &S,
    model: &str,
    key_edges: &[&str],
    cutoff: Timestamp,
    limit: usize,
) -> Result<Vec<(Timestamp, IndexKey)>, StoreError> {
    // The records come in primary key order: a stable sort by time keeps it for equal times.
    let mut oldest: Vec<(Timestamp, IndexKey)> = Vec::new();
    if limit == 0 {
        return Ok(oldest);
    }
    each_with_provenance(store, model, &mut |v| {
        let Some(at) = fetched_at(&v).filter(|at| *at < cutoff) else {
            return Ok(());
        };
        if oldest.len() == limit && oldest.last().is_some_and(|(last, _)| *last <= at) {
            return Ok(());
        }
        let values: Option<Vec<Value>> = key_edges
            .iter()
            .map(|e| v.get(*e).filter(|x| !x.is_null()).cloned())
            .collect();
        let Some(values) = values else {
            return Ok(());
        };
        let at_pos = oldest.partition_point(|(t, _)| *t <= at);
        oldest.insert(
            at_pos,
            (at, IndexKey::new(key_edges.iter().copied(), values)),
        );
        oldest.truncate(limit);
        Ok(())
    })?;
    Ok(oldest)
}

/// Implements [`StoreRead`] for a writer by reading through the read handle it holds in
/// `$field` (of a type implementing [`StoreRead`]): a writer reads its own writes with the
/// same code as its readers, and a reader type never gains a write method.
macro_rules! read_through {
    ($writer:ty, $field:ident) => {
        impl $crate::store::StoreRead for $writer {
            fn kind(&self) -> &'static str {
                self.$field.kind()
            }

            fn location(&self) -> &::std::path::Path {
                self.$field.location()
            }

            fn last_stored(
                &self,
                model: &str,
                key: &$crate::store::IndexKey,
            ) -> Result<Option<$crate::store::Timestamp>, $crate::store::StoreError> {
                self.$field.last_stored(model, key)
            }

            fn latest_outcome(
                &self,
                model: &str,
                key: &$crate::store::IndexKey,
            ) -> Result<Option<$crate::store::KeyOutcomeInfo>, $crate::store::StoreError> {
                self.$field.latest_outcome(model, key)
            }

            fn latest_done(
                &self,
                model: &str,
                key: &$crate::store::IndexKey,
            ) -> Result<Option<$crate::store::KeyOutcomeInfo>, $crate::store::StoreError> {
                self.$field.latest_done(model, key)
            }

            fn record(
                &self,
                model: &str,
                key: &$crate::store::IndexKey,
            ) -> Result<Option<::serde_json::Value>, $crate::store::StoreError> {
                self.$field.record(model, key)
            }

            fn latest_run_of(
                &self,
                request: &str,
            ) -> Result<Option<$crate::store::RunInfo>, $crate::store::StoreError> {
                self.$field.latest_run_of(request)
            }

            fn outcome_counts(
                &self,
                run: $crate::store::RunId,
            ) -> Result<$crate::store::RunCounts, $crate::store::StoreError> {
                self.$field.outcome_counts(run)
            }

            fn records(
                &self,
                query: &$crate::store::RecordQuery,
            ) -> Result<Vec<::serde_json::Value>, $crate::store::StoreError> {
                self.$field.records(query)
            }

            fn for_each_record(
                &self,
                query: &$crate::store::RecordQuery,
                each: &mut dyn FnMut(::serde_json::Value) -> Result<(), $crate::store::StoreError>,
            ) -> Result<(), $crate::store::StoreError> {
                self.$field.for_each_record(query, each)
            }

            fn runs(
                &self,
                limit: Option<usize>,
            ) -> Result<Vec<$crate::store::RunInfo>, $crate::store::StoreError> {
                self.$field.runs(limit)
            }

            fn run(
                &self,
                id: $crate::store::RunId,
            ) -> Result<Option<$crate::store::RunInfo>, $crate::store::StoreError> {
                self.$field.run(id)
            }

            fn rejects(
                &self,
                run: Option<$crate::store::RunId>,
                limit: Option<usize>,
            ) -> Result<Vec<$crate::store::RejectInfo>, $crate::store::StoreError> {
                self.$field.rejects(run, limit)
            }

            fn drift(&self) -> Result<Vec<$crate::store::DriftInfo>, $crate::store::StoreError> {
                self.$field.drift()
            }

            fn list_cursor(
                &self,
                model: &str,
                lister: &str,
            ) -> Result<Option<$crate::store::ListCursorInfo>, $crate::store::StoreError> {
                self.$field.list_cursor(model, lister)
            }

            fn edge_names(&self, model: &str) -> Option<Vec<String>> {
                self.$field.edge_names(model)
            }

            fn content_hashes(
                &self,
                model: &str,
                key_edges: &[&str],
                each: &mut dyn FnMut(
                    $crate::store::IndexKey,
                    String,
                ) -> Result<(), $crate::store::StoreError>,
            ) -> Result<(), $crate::store::StoreError> {
                self.$field.content_hashes(model, key_edges, each)
            }

            fn fetched_ages(
                &self,
                model: &str,
                cutoff: $crate::store::Timestamp,
            ) -> Result<$crate::store::FetchedAges, $crate::store::StoreError> {
                self.$field.fetched_ages(model, cutoff)
            }

            fn fetched_before(
                &self,
                model: &str,
                key_edges: &[&str],
                cutoff: $crate::store::Timestamp,
                limit: usize,
            ) -> Result<
                Vec<($crate::store::Timestamp, $crate::store::IndexKey)>,
                $crate::store::StoreError,
            > {
                self.$field.fetched_before(model, key_edges, cutoff, limit)
            }

            fn lineage(
                &self,
                transformer: &str,
            ) -> Result<Vec<$crate::store::LineageRow>, $crate::store::StoreError> {
                self.$field.lineage(transformer)
            }

            fn stale_inputs(
                &self,
                transformer: &str,
                inputs: &[(&str, &[&str])],
                each: &mut dyn FnMut(
                    $crate::store::IndexKey,
                    String,
                ) -> Result<(), $crate::store::StoreError>,
            ) -> Result<$crate::store::StaleCounts, $crate::store::StoreError> {
                self.$field.stale_inputs(transformer, inputs, each)
            }

            fn for_each_lineage(
                &self,
                transformer: &str,
                each: &mut dyn FnMut(
                    $crate::store::LineageRow,
                ) -> Result<(), $crate::store::StoreError>,
            ) -> Result<(), $crate::store::StoreError> {
                self.$field.for_each_lineage(transformer, each)
            }
        }
    };
}

pub(crate) use read_through;
