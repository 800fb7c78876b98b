//! Steps 2–4 of a key: skip it (done by the resumed runs, or fresh), or fetch it through its
//! fetcher and validate what came back ([`Processor::process`], on the executor's workers); then
//! settle it ([`settle`], on the task driving the run): the outcome becomes the writes it
//! makes (record, reject, drift, key outcome).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kye_lang::validate::{validate_record, ErrorKind, RecordReport, ValidationError};
use serde_json::Value;

use super::job::Job;
use super::writer::PendingKey;
use crate::context::Context;
use crate::error::{Error, ErrorClass, Result};
use crate::exec::{Finished, Outcome};
use crate::model::KeyValue;
use crate::redact::redact_text;
use crate::store::{
    DriftWrite, KeyStatus, Provenance, RecordWrite, RejectWrite, RunId, StoreRead, Timestamp,
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

    /// One attempt at one key: skipped, or fetched and validated.
    pub async fn process(&self, job: Arc<Job>, attempt: u32) -> Result<KeyResult> {
        if attempt == 1 {
            if let Some(reason) = self.skip_reason(&job)? {
                // Its references are followed as if it had been fetched (and are skipped in
                // turn when they are fresh or done).
                let record = if self.skip.follow_depth > job.depth {
                    self.read(|s| s.record(job.model(), &job.index_key))?
                        .flatten()
                } else {
                    None
                };
                return Ok(KeyResult::Skipped { reason, record });
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
        let model = job.model();
        let mut report = validate_record(job.target.model.schema(), model, &payload);
        report.warnings.extend(crate::json_dups::warnings(
            model,
            &job.key.to_string(),
            duplicates.take(),
        ));
        if report.is_valid() {
            if let Some(e) = key_mismatch(&job, &report.value) {
                report.errors.push(e);
            }
        }
        // What validation says quotes the payload, which may echo a credential: reasons,
        // rejects' errors, drift and warnings are kye's text and never carry one.
        for e in report.errors.iter_mut().chain(report.warnings.iter_mut()) {
            redact_finding(e);
        }
        let payload = (!report.is_valid()).then_some(payload);
        Ok(KeyResult::Fetched { payload, report })
    }
}

/// The record must carry the key it was requested by (a fetcher returning record 26 for key
/// 25 is a bug that would otherwise overwrite the wrong row).
fn key_mismatch(job: &Job, record: &Value) -> Option<ValidationError> {
    for (edge, want) in job.target.fetcher.identifier.iter().zip(job.key.values()) {
        let got = record.get(*edge);
        let same = match (got, want) {
            (Some(Value::Number(n)), KeyValue::Int(i)) => n.as_f64() == Some(*i as f64),
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
                let prov = Provenance::new(run, pending.job.target.provenance.clone());
                pending.record = Some(RecordWrite::new(pending.job.model(), value, prov));
            } else {
                let reason = summarize(&errors);
                pending = PendingKey::new(job, KeyStatus::Rejected, Some(reason.clone()));
                pending.reject = Some(RejectWrite {
                    run,
                    model: pending.job.model().to_string(),
                    key: Some(pending.job.index_key.clone()),
                    fetcher: pending.job.target.provenance.clone(),
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
