//! Steps 2–4 of a key: skip it (done by the resumed runs, or fresh), or fetch it through its
//! fetcher and validate what came back ([`Processor::process`], on the executor's workers); then
//! settle it ([`settle`], on the task driving the run): the outcome becomes the writes it
//! makes (record, reject, drift, key outcome).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kye_lang::validate::{validate_record, ErrorKind, RecordReport, ValidationError};
use serde_json::Value;

use std::collections::HashMap;

use super::job::{Batch, Job, Unit};
use super::writer::PendingKey;
use crate::context::Context;
use crate::error::{Error, ErrorClass, Result};
use crate::exec::{Finished, Outcome};
use crate::model::KeyValue;
use crate::redact::redact_text;
use crate::store::{
    DriftWrite, IndexKey, KeyStatus, Provenance, RecordWrite, RejectWrite, RunId, StoreRead,
    Timestamp,
};

/// What one key's call produced (before writing).
pub(super) enum KeyResult {
    Skipped {
        reason: String,
        /// The stored record, read when its references are to be followed.
        record: Option<Value>,
    },
    Fetched {
        /// The payload as fetched, kept only when it is invalid (for the rejects table); a
        /// valid payload is dropped on the worker that fetched it.
        payload: Option<Value>,
        report: RecordReport,
    },
}

/// When a key of a run is not fetched: finished by the chain of runs being resumed, or
/// stored less than `max_age` ago (unless `refresh`).
pub(super) struct SkipPolicy {
    pub refresh: bool,
    pub max_age: Option<Duration>,
    /// The first run of the chain of interrupted runs being resumed.
    pub resume_since: Option<RunId>,
    /// `--follow` depth: a skipped key above it still has its stored references followed.
    pub follow_depth: u32,
}

impl SkipPolicy {
    /// Whether any key could be skipped (and the store must be read for each).
    pub fn reads_store(&self) -> bool {
        self.resume_since.is_some() || (!self.refresh && self.max_age.is_some())
    }
}

/// The per-key step of a run, shared by the executor's workers.
pub(super) struct Processor {
    ctx: Context,
    skip: SkipPolicy,
    /// A read handle of the store, for the skip checks (never the writer's lock: a skip check
    /// does not wait for a batch being written). Present when the policy reads the store.
    reader: Option<Mutex<Box<dyn StoreRead>>>,
}

impl Processor {
    pub fn new(ctx: Context, skip: SkipPolicy, reader: Option<Box<dyn StoreRead>>) -> Processor {
        Processor {
            ctx,
            skip,
            reader: reader.map(Mutex::new),
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&dyn StoreRead) -> std::result::Result<T, crate::store::StoreError>,
    ) -> Result<Option<T>> {
        match &self.reader {
            Some(r) => {
                let r = r.lock().unwrap_or_else(|p| p.into_inner());
                f(r.as_ref()).map(Some).map_err(Error::other)
            }
            None => Ok(None),
        }
    }

    /// Why `job` need not be fetched, if it need not.
    fn skip_reason(&self, job: &Job) -> Result<Option<String>> {
        if !self.skip.reads_store() {
            return Ok(None);
        }
        let model = job.model();
        if let Some(since) = self.skip.resume_since {
            // Finished by a run of the resumed chain, or by any run started since it began
            // (its record is at least as new): not fetched again.
            let done = self
                .read(|s| s.latest_done(model, &job.index_key))?
                .flatten();
            if let Some(o) = done.filter(|o| o.run >= since) {
                return Ok(Some(format!("{} by run {}", o.status, o.run)));
            }
        }
        if let (false, Some(max_age)) = (self.skip.refresh, self.skip.max_age) {
            let stored = self
                .read(|s| s.last_stored(model, &job.index_key))?
                .flatten();
            if let Some(at) = stored {
                let age = at.age(Timestamp::now());
                if age < max_age {
                    return Ok(Some(format!(
                        "fresh: stored {} ago (max-age {})",
                        crate::duration::human(age),
                        crate::duration::human(max_age)
                    )));
                }
            }
        }
        Ok(None)
    }

    /// One attempt at one unit: a key, or a group of keys of a batch fetcher.
    pub async fn process_unit(&self, unit: Arc<Unit>, attempt: u32) -> Result<UnitResult> {
        match &*unit {
            Unit::One(job) => self
                .process(job.clone(), attempt)
                .await
                .map(UnitResult::One),
            Unit::Batch(batch) => self.process_batch(batch, attempt).await,
        }
    }

    /// Why `job` is skipped, as a result, with its stored record when its references are to
    /// be followed.
    fn skipped(&self, job: &Job) -> Result<Option<KeyResult>> {
        let Some(reason) = self.skip_reason(job)? else {
            return Ok(None);
        };
        // Its references are followed as if it had been fetched (and are skipped in
        // turn when they are fresh or done).
        let record = if self.skip.follow_depth > job.depth {
            self.read(|s| s.record(job.model(), &job.index_key))?
                .flatten()
        } else {
            None
        };
        Ok(Some(KeyResult::Skipped { reason, record }))
    }

    /// What a key of a group settles as without the group's call: skipped (done, or fresh),
    /// or refused by the fetcher's key check; `None` when the call was for it. Asked again
    /// after the group's call failed for good, so that only the keys it was for take its
    /// error (a store that cannot be read counts as the call's: `None`).
    pub(super) fn before_call(&self, job: &Job) -> Option<Result<KeyResult>> {
        if let Ok(Some(skipped)) = self.skipped(job) {
            return Some(Ok(skipped));
        }
        if let Err(e) = job.target.fetcher.check_key(&job.key) {
            return Some(Err(Error::from(e)));
        }
        None
    }

    /// One attempt at one key: skipped, or fetched and validated.
    pub async fn process(&self, job: Arc<Job>, attempt: u32) -> Result<KeyResult> {
        if attempt == 1 {
            if let Some(skipped) = self.skipped(&job)? {
                return Ok(skipped);
            }
        }
        let duplicates = crate::json_dups::notes();
        let ctx = self
            .ctx
            .for_fetcher_name(job.target.name.clone())
            .with_attempt(attempt)
            .with_duplicate_notes(duplicates.clone());
        let fetched = match job.take_listed_record() {
            Some(record) => Some(record),
            None => job.target.fetcher.call(&job.key, ctx).await?,
        };
        let Some(payload) = fetched else {
            return Err(Error::missing(format!(
                "{} returned no record for {} = {}",
                job.target.fetcher.function, job.target.name, job.key
            )));
        };
        Ok(check_record(&job, payload, duplicates.take()))
    }

    /// One attempt at a group of keys of a batch fetcher: each key skipped, refused (its
    /// values do not fit the parameters) or asked in one call, whose records are matched back
    /// to the keys by their index values and validated one by one. An error of the call is
    /// the group's (retried as one); a key the answer lacks is missing; a record no key asked
    /// for is a stray, rejected on its own.
    async fn process_batch(&self, batch: &Batch, attempt: u32) -> Result<UnitResult> {
        let target = &batch.target;
        let fetcher = target.fetcher;
        let mut results: Vec<Option<Result<KeyResult>>> = Vec::with_capacity(batch.jobs.len());
        let mut asked: HashMap<String, Vec<usize>> = HashMap::with_capacity(batch.jobs.len());
        let mut keys = Vec::with_capacity(batch.jobs.len());
        for (i, job) in batch.jobs.iter().enumerate() {
            // Every attempt: a retried group must not fetch what the first attempt skipped.
            if let Some(skipped) = self.skipped(job)? {
                results.push(Some(Ok(skipped)));
                continue;
            }
            if let Err(e) = fetcher.check_key(&job.key) {
                results.push(Some(Err(Error::from(e))));
                continue;
            }
            results.push(None);
            let text = super::batch::key_text(job.key.values());
            let same = asked.entry(text).or_default();
            if same.is_empty() {
                keys.push(job.key.clone());
            }
            same.push(i);
        }
        let mut strays = Vec::new();
        if !keys.is_empty() {
            let duplicates = crate::json_dups::notes();
            let ctx = self
                .ctx
                .for_fetcher_name(target.name.clone())
                .with_attempt(attempt)
                .with_duplicate_notes(duplicates.clone());
            let call = fetcher.call_batch(&keys, ctx).ok_or_else(|| {
                Error::permanent(format!(
                    "{} is not a batch fetcher (bug: its keys were grouped)",
                    fetcher.function
                ))
            })?;
            let records = call.await?;
            let mut notes = duplicates.take();
            let mut answered: Vec<String> = Vec::new();
            for record in records {
                let text = super::batch::record_key_text(&record, fetcher.identifier);
                let same = text.as_ref().and_then(|t| asked.remove(t));
                match (same, text) {
                    (Some(same), Some(text)) => {
                        // The call's repeated-key notes go with the first record.
                        let notes = std::mem::take(&mut notes);
                        let result = check_record(&batch.jobs[same[0]], record, notes);
                        // The same key twice in one group: asked once, one result each.
                        for &j in &same[1..] {
                            results[j] = Some(Ok(result.copy_for_same_key()));
                        }
                        results[same[0]] = Some(Ok(result));
                        answered.push(text);
                    }
                    (_, text) => {
                        let twice = text.is_some_and(|t| answered.contains(&t));
                        strays.push(stray(batch, record, twice));
                    }
                }
            }
        }
        let results = batch
            .jobs
            .iter()
            .zip(results)
            .map(|(job, r)| {
                r.unwrap_or_else(|| {
                    Err(Error::missing(format!(
                        "{} returned no record for {} = {} (asked in a batch of {})",
                        fetcher.function,
                        target.name,
                        job.key,
                        keys.len()
                    )))
                })
            })
            .collect();
        Ok(UnitResult::Batch { results, strays })
    }
}

/// A record of a batch answer that no key of the group asked for: rejected on its own, with a
/// reason naming the fetcher, the model, the key it carries and the keys asked.
fn stray(batch: &Batch, record: Value, twice: bool) -> Stray {
    let fetcher = batch.target.fetcher;
    let model = batch.target.model.name();
    let edges = fetcher.identifier;
    let shown = redact_text(&super::batch::record_key_shown(&record, edges));
    let edge_text = if edges.len() == 1 {
        edges[0].to_string()
    } else {
        format!("({})", edges.join(", "))
    };
    let what = if twice {
        "a second time in the answer to"
    } else {
        "that"
    };
    let reason = redact_text(&format!(
        "{model} returned {edge_text} {shown} {what} the batch {} {} (fetcher `{}`)",
        batch.keys_text(),
        if twice {
            "(the first was kept)"
        } else {
            "did not ask for"
        },
        fetcher.function
    ));
    let mut e = ValidationError::new(ErrorKind::IndexConflict, model, reason.clone());
    e.edges = edges.iter().map(|s| s.to_string()).collect();
    e.value = Some(shown.clone());
    let key = edges
        .iter()
        .map(|edge| record.get(*edge).cloned())
        .collect::<Option<Vec<Value>>>()
        .map(|values| IndexKey::new(edges.iter().copied(), values));
    Stray {
        key,
        shown,
        payload: record,
        error: e,
        reason,
    }
}

/// A record of a batch answer no key asked for (see [`Processor::process_batch`]).
pub(super) struct Stray {
    pub key: Option<IndexKey>,
    pub shown: String,
    pub payload: Value,
    pub error: ValidationError,
    pub reason: String,
}

/// What one attempt at a unit produced.
pub(super) enum UnitResult {
    One(KeyResult),
    Batch {
        /// One per key of the group, in its order.
        results: Vec<Result<KeyResult>>,
        /// Records no key asked for.
        strays: Vec<Stray>,
    },
}

/// Validates what the fetcher returned for `job` (and checks that it is `job`'s record).
fn check_record(
    job: &Job,
    payload: Value,
    duplicates: Vec<(String, crate::json_dups::Duplicates)>,
) -> KeyResult {
    let model = job.model();
    let mut report = validate_record(job.target.model.schema(), model, &payload);
    report.warnings.extend(crate::json_dups::warnings(
        model,
        &job.key.to_string(),
        duplicates,
    ));
    if report.is_valid() {
        if let Some(e) = key_mismatch(job, &report.value) {
            report.errors.push(e);
        }
    }
    // What validation says quotes the payload, which may echo a credential: reasons,
    // rejects' errors, drift and warnings are kye's text and never carry one.
    for e in report.errors.iter_mut().chain(report.warnings.iter_mut()) {
        redact_finding(e);
    }
    let payload = (!report.is_valid()).then_some(payload);
    KeyResult::Fetched { payload, report }
}

impl KeyResult {
    /// The result of the same key asked twice in one group.
    fn copy_for_same_key(&self) -> KeyResult {
        match self {
            KeyResult::Skipped { reason, record } => KeyResult::Skipped {
                reason: reason.clone(),
                record: record.clone(),
            },
            KeyResult::Fetched { payload, report } => KeyResult::Fetched {
                payload: payload.clone(),
                report: report.clone(),
            },
        }
    }
}

/// The record must carry the key it was requested by (a fetcher returning record 26 for key
/// 25 is a bug that would otherwise overwrite the wrong row).
fn key_mismatch(job: &Job, record: &Value) -> Option<ValidationError> {
    for (edge, want) in job.target.fetcher.identifier.iter().zip(job.key.values()) {
        let got = record.get(*edge);
        let same = match (got, want) {
            // Integers compare exactly (two ids beyond 2^53 differ); a whole float within
            // f64's exact range matches its integer.
            (Some(Value::Number(n)), KeyValue::Int(i)) => match n.as_i64() {
                Some(got) => got == *i,
                None => n.as_f64().is_some_and(|x| {
                    x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 && x as i64 == *i
                }),
            },
            (Some(Value::Number(n)), KeyValue::Float(x)) => n.as_f64() == Some(*x),
            (Some(Value::String(s)), KeyValue::String(w)) => s == w,
            (Some(Value::Bool(b)), KeyValue::Bool(w)) => b == w,
            _ => false,
        };
        if !same {
            let shown = got
                .map(|v| v.to_string())
                .unwrap_or_else(|| "nothing".into());
            let mut e = ValidationError::new(
                ErrorKind::IndexConflict,
                job.model(),
                format!(
                    "requested {}.{edge} = {want} but the record has {edge} = {shown}",
                    job.model()
                ),
            );
            e.edges = vec![edge.to_string()];
            e.value = Some(shown);
            e.expected = Some(want.to_string());
            return Some(e);
        }
    }
    None
}

/// A finished key, settled: the writes it makes, and what `get` reports of it.
pub(super) struct Settled {
    /// The key's writes: outcome, record or reject, drift.
    pub pending: PendingKey,
    /// The stored record of a skipped key (read to follow its references).
    pub skipped_record: Option<Value>,
    /// Validation errors of a rejected payload.
    pub errors: Vec<ValidationError>,
    /// Non-fatal findings (unknown fields, repeated JSON keys).
    pub warnings: Vec<ValidationError>,
}

impl Settled {
    /// The record whose references follow reads: the one to store, or a skipped key's.
    pub fn record(&self) -> Option<&Value> {
        self.pending
            .record
            .as_ref()
            .map(|r| &r.value)
            .or(self.skipped_record.as_ref())
    }
}

/// Turns a finished key into its writes; `None` when it was interrupted (nothing is recorded:
/// the next run fetches it).
pub(super) fn settle(run: RunId, finished: Finished<Job, KeyResult>) -> Option<Settled> {
    let job = finished.item;
    let settled = |pending| Settled {
        pending,
        skipped_record: None,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    match finished.outcome {
        Outcome::Interrupted => None,
        Outcome::Failed(e) => {
            let status = match e.class() {
                ErrorClass::Missing => KeyStatus::Missing,
                _ => KeyStatus::Failed,
            };
            let reason = redact_text(&e.to_string());
            if status == KeyStatus::Failed {
                tracing::warn!(model = job.model(), key = %job.key, reason = %reason, "key failed");
            }
            Some(settled(PendingKey::new(job, status, Some(reason))))
        }
        Outcome::Done(KeyResult::Skipped { reason, record }) => {
            let mut s = settled(PendingKey::new(job, KeyStatus::Skipped, Some(reason)));
            s.skipped_record = record;
            Some(s)
        }
        Outcome::Done(KeyResult::Fetched { payload, report }) => {
            let mut drift = drift_of(run, job.model(), &report);
            for d in &mut drift {
                redact_value(&mut d.example);
            }
            let RecordReport {
                value,
                errors,
                warnings,
            } = report;
            let mut pending;
            if errors.is_empty() {
                pending = PendingKey::new(job, KeyStatus::Stored, None);
                let prov = Provenance::new(run, pending.job.provenance())
                    .with_source(pending.job.target.source.clone());
                pending.record = Some(RecordWrite::new(pending.job.model(), value, prov));
            } else {
                let reason = summarize(&errors);
                pending = PendingKey::new(job, KeyStatus::Rejected, Some(reason.clone()));
                pending.reject = Some(RejectWrite {
                    run,
                    model: pending.job.model().to_string(),
                    key: Some(pending.job.index_key.clone()),
                    fetcher: pending.job.provenance(),
                    payload: payload.unwrap_or(Value::Null),
                    errors: serde_json::to_value(&errors).unwrap_or(Value::Null),
                    reason,
                    at: Timestamp::now(),
                });
            }
            pending.drift = drift;
            Some(Settled {
                pending,
                skipped_record: None,
                errors,
                warnings,
            })
        }
    }
}

/// Replaces known secrets in the text of a validation finding.
fn redact_finding(e: &mut ValidationError) {
    let texts = std::iter::once(&mut e.message)
        .chain(e.key.as_mut())
        .chain(e.path.as_mut())
        .chain(e.value.as_mut())
        .chain(e.expected.as_mut());
    for t in texts {
        let r = redact_text(t);
        if r != *t {
            *t = r;
        }
    }
}

/// Replaces known secrets in every string (and object key) of a JSON value.
fn redact_value(v: &mut Value) {
    match v {
        Value::String(s) => {
            let r = redact_text(s);
            if r != *s {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::Object(obj) => {
            let leaks = obj.keys().any(|k| redact_text(k) != *k);
            if leaks {
                let old = std::mem::take(obj);
                for (k, mut x) in old {
                    redact_value(&mut x);
                    obj.insert(redact_text(&k), x);
                }
            } else {
                obj.values_mut().for_each(redact_value);
            }
        }
        _ => {}
    }
}

/// One line for the rejects table and the summary: the first errors, `path: message`.
pub(super) fn summarize(errors: &[ValidationError]) -> String {
    let mut parts: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| match (&e.path, e.edges.first()) {
            // The validator's message usually names the path already; don't say it twice.
            (Some(p), _) if !e.message.contains(p.as_str()) => format!("{p}: {}", e.message),
            (None, Some(edge)) if !e.message.contains(edge.as_str()) => {
                format!("{edge}: {}", e.message)
            }
            _ => e.message.clone(),
        })
        .collect();
    if errors.len() > 3 {
        parts.push(format!("and {} more", errors.len() - 3));
    }
    parts.join("; ")
}

/// Unknown fields (validator warnings of kind `UnknownEdge`) as drift rows: at most
/// `kye_lang::validate::MAX_UNKNOWN_FIELDS` per record, each example the value as it came.
/// The validator's "N more fields" warning (no example) is logged, not a drift row.
fn drift_of(run: RunId, model: &str, report: &RecordReport) -> Vec<DriftWrite> {
    report
        .warnings
        .iter()
        .filter(|w| w.kind == ErrorKind::UnknownEdge)
        .filter_map(|w| {
            let Some(example) = w.example.clone() else {
                tracing::warn!(model, "{}", w.message);
                return None;
            };
            let path = w
                .path
                .clone()
                .or_else(|| w.edges.first().cloned())
                .unwrap_or_else(|| "?".to_string());
            Some(DriftWrite {
                run,
                // The path is relative to the top-level record (`types[].slot`).
                model: model.to_string(),
                path,
                example,
                seen_at: Timestamp::now(),
            })
        })
        .collect()
}
