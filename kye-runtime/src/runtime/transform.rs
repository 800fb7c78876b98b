//! Running transformers (`#[kye::transform]`): which outputs are stale (lineage against the
//! inputs' content hashes), calling the function for each, validating its output against the
//! output model and storing it with its lineage in the same transaction.
//!
//! One run per transformer, recorded in the runs table as `transform <function>`: its counts
//! are stored = transformed, skipped = unchanged, rejected, failed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kye_lang::validate::validate_record;
use serde_json::Value;

use super::process::summarize;
use super::summary::{KeyProblem, SUMMARY_EXAMPLES};
use super::{Runtime, SharedStore};
use crate::error::{Error, Result};
use crate::redact::redact_text;
use crate::registry::Registry;
use crate::store::{
    IndexKey, KeyStatus, Lineage, LineageInput, NewRun, Provenance, RecordQuery, RecordWrite,
    RejectWrite, RunCounts, RunEnd, RunId, RunStatus, StaleCounts, Timestamp, WriteItem,
};
use crate::transform::{primary_key_of, Inputs, TransformContext, TransformerRegistration};

/// Outputs written per store transaction.
const BATCH: usize = 1024;

/// What one transformer did in a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TransformCounts {
    /// The transformer (its function's name).
    pub transformer: String,
    /// The model it produces.
    pub output: String,
    /// The run it was recorded as.
    pub run: RunId,
    /// Outputs computed, validated and stored.
    pub transformed: u64,
    /// Primary inputs whose inputs had not changed since their output was computed.
    pub unchanged: u64,
    /// Outputs that failed validation (quarantined in rejects).
    pub rejected: u64,
    /// Calls that returned an error (or an output the store refused); tried again next run.
    pub failed: u64,
    /// Calls that returned no output (`Ok(None)`).
    pub empty: u64,
    /// Stored outputs whose primary input is no longer stored (kept, lineage kept).
    pub orphaned: u64,
    /// Wall time.
    #[serde(serialize_with = "super::summary::ser_secs")]
    pub elapsed: Duration,
    /// The first failures and rejects.
    pub problems: Vec<KeyProblem>,
}

/// The result of [`Runtime::transform`]: one entry per transformer run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TransformSummary {
    /// Per transformer, in the order they ran.
    pub transformers: Vec<TransformCounts>,
}

impl TransformSummary {
    /// Outputs transformed, over all transformers.
    pub fn transformed(&self) -> u64 {
        self.transformers.iter().map(|t| t.transformed).sum()
    }

    /// Unchanged inputs, over all transformers.
    pub fn unchanged(&self) -> u64 {
        self.transformers.iter().map(|t| t.unchanged).sum()
    }

    /// Rejected outputs, over all transformers.
    pub fn rejected(&self) -> u64 {
        self.transformers.iter().map(|t| t.rejected).sum()
    }

    /// Failed calls, over all transformers.
    pub fn failed(&self) -> u64 {
        self.transformers.iter().map(|t| t.failed).sum()
    }
}

impl fmt::Display for TransformSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.transformers.is_empty() {
            return write!(f, "no transformer ran");
        }
        for (i, t) in self.transformers.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "transform {} -> {} (run {}): {} transformed, {} unchanged, {} rejected, {} failed",
                t.transformer, t.output, t.run, t.transformed, t.unchanged, t.rejected, t.failed
            )?;
            if t.empty > 0 {
                write!(f, ", {} without output", t.empty)?;
            }
            if t.orphaned > 0 {
                write!(f, ", {} orphaned", t.orphaned)?;
            }
            write!(f, " in {:.2}s", t.elapsed.as_secs_f64())?;
            for p in &t.problems {
                write!(f, "\n  {} {} {}: {}", p.status, p.model, p.key, p.reason)?;
            }
        }
        Ok(())
    }
}

impl Runtime {
    /// Runs the transformers producing `output` (every transformer when `None`), each over the
    /// stored records of its inputs: an output is computed again only when one of the records
    /// it was computed from changed or is new. Transformers run in dependency order (one that
    /// reads another's output runs after it).
    pub async fn transform(&self, output: Option<&str>) -> Result<TransformSummary> {
        self.transform_chosen(output, false).await
    }

    /// [`Runtime::transform`] computing every output again, whatever its lineage says: after
    /// the transformer's code changed (lineage tracks the inputs, not the code), or to rebuild
    /// every output (`kye transform --refresh`).
    pub async fn retransform(&self, output: Option<&str>) -> Result<TransformSummary> {
        self.transform_chosen(output, true).await
    }

    async fn transform_chosen(&self, output: Option<&str>, all: bool) -> Result<TransformSummary> {
        let registry = self.registry();
        if let Some(m) = output {
            if registry.model(m).is_none() {
                return Err(Error::permanent(format!("no model `{m}` is registered")));
            }
            if !registry.transformers().iter().any(|t| t.output == m) {
                return Err(Error::permanent(format!(
                    "no transformer produces `{m}` (`kye list` shows the transformers)"
                )));
            }
        }
        let chosen: Vec<_> = ordered(registry)
            .into_iter()
            .filter(|t| output.is_none_or(|m| t.output == m))
            .collect();
        self.run_transformers(chosen, all).await
    }

    /// Runs the transformers reading any of `models` (what a fetch stored), and those reading
    /// their outputs in turn, in dependency order. `kye fetch` calls this after a run that
    /// stored records (unless `--no-transform`).
    pub async fn transform_after(&self, models: &[&str]) -> Result<TransformSummary> {
        let mut touched: HashSet<&str> = models.iter().copied().collect();
        let mut chosen = Vec::new();
        for t in ordered(self.registry()) {
            if t.inputs.iter().any(|m| touched.contains(m)) {
                touched.insert(t.output);
                chosen.push(t);
            }
        }
        self.run_transformers(chosen, false).await
    }

    /// Runs `chosen` in order; with `all`, every output is computed again.
    async fn run_transformers(
        &self,
        chosen: Vec<&'static TransformerRegistration>,
        all: bool,
    ) -> Result<TransformSummary> {
        let mut summary = TransformSummary::default();
        for t in chosen {
            let store = self.inner.store.clone();
            let schema = self
                .registry()
                .model(t.output)
                .map(|m| m.schema())
                .ok_or_else(|| {
                    Error::permanent(format!("no model `{}` is registered", t.output))
                })?;
            let edges = primary_edges(self.registry(), t)?;
            let handle = tokio::runtime::Handle::current();
            let counts = tokio::task::spawn_blocking(move || {
                run_one(&handle, &store, t, schema, &edges, all)
            })
            .await
            .map_err(|e| Error::permanent(format!("transformer {} panicked: {e}", t.function)))??;
            summary.transformers.push(counts);
        }
        Ok(summary)
    }
}

/// Transformers in dependency order: one reading another's output after it (a cycle keeps
/// the registry's order for the rest).
fn ordered(registry: &Registry) -> Vec<&'static TransformerRegistration> {
    let mut left: Vec<_> = registry.transformers().to_vec();
    let mut out = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let ready = left.iter().position(|t| {
            !t.inputs
                .iter()
                .any(|m| left.iter().any(|o| o.output == *m && !std::ptr::eq(*o, *t)))
        });
        out.push(left.remove(ready.unwrap_or(0)));
    }
    out
}

/// The primary index edges of the output and of every input model.
fn primary_edges(
    registry: &Registry,
    t: &TransformerRegistration,
) -> Result<HashMap<&'static str, Vec<String>>> {
    let mut out = HashMap::new();
    for m in std::iter::once(&t.output).chain(t.inputs) {
        let model = registry
            .model(m)
            .ok_or_else(|| Error::permanent(format!("no model `{m}` is registered")))?;
        let ix = model.definition().primary_index().ok_or_else(|| {
            Error::permanent(format!(
                "transformer {}: `{m}` has no index, so its records cannot be keyed",
                t.function
            ))
        })?;
        out.insert(*m, ix.edges.clone());
    }
    Ok(out)
}

fn run_one(
    handle: &tokio::runtime::Handle,
    store: &SharedStore,
    t: &'static TransformerRegistration,
    schema: &'static kye_lang::Schema,
    edges: &HashMap<&'static str, Vec<String>>,
    all: bool,
) -> Result<TransformCounts> {
    let started = Instant::now();
    let store_err = |e| Error::other(e).context(format!("transformer {}", t.function));
    let (scan, lookups) = {
        let s = store.lock().unwrap_or_else(|p| p.into_inner());
        (
            s.reader().map_err(store_err)?,
            s.reader().map_err(store_err)?,
        )
    };
    let primary = t.primary();
    // The primary keys to compute again, with their content hashes: the store judges the
    // lineage against the inputs as stored now (with `all`, every stored primary input).
    let mut stale: Vec<(String, IndexKey, String)> = Vec::new();
    let mut keep = |key: IndexKey, hash: String| {
        stale.push((key.canonical(), key, hash));
        Ok(())
    };
    let judged = if all {
        let primary_edges: Vec<&str> = edges[primary].iter().map(String::as_str).collect();
        scan.content_hashes(primary, &primary_edges, &mut keep)
            .map(|()| StaleCounts::default())
    } else {
        let input_edges: Vec<(&str, Vec<&str>)> = t
            .inputs
            .iter()
            .map(|m| (*m, edges[m].iter().map(String::as_str).collect()))
            .collect();
        let inputs: Vec<(&str, &[&str])> = input_edges
            .iter()
            .map(|(m, e)| (*m, e.as_slice()))
            .collect();
        scan.stale_inputs(t.function, &inputs, &mut keep)
    };
    let StaleCounts {
        unchanged,
        orphaned,
    } = judged.map_err(|e| {
        Error::other(e).context(format!(
            "transformer {}: cannot judge which outputs are stale",
            t.function
        ))
    })?;
    // In key order, as the store reads them.
    stale.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let primary_count = stale.len() as u64 + unchanged;

    let run = {
        let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
        let mut new = NewRun::new(t.provenance());
        new.source = crate::source::source_version_of(t.function);
        s.begin_run(&new).map_err(store_err)?
    };
    let inputs = Arc::new(Inputs {
        transformer: t,
        reader: Mutex::new(lookups),
        hashes: Mutex::new(HashMap::new()),
        looked_up: Mutex::new(HashMap::new()),
        primary_edges: t.inputs.iter().map(|m| (*m, edges[m].clone())).collect(),
    });
    let mut counts = TransformCounts {
        transformer: t.function.to_string(),
        output: t.output.to_string(),
        run,
        transformed: 0,
        unchanged,
        rejected: 0,
        failed: 0,
        empty: 0,
        orphaned,
        elapsed: Duration::ZERO,
        problems: Vec::new(),
    };
    let mut batch = Batch {
        store,
        items: Vec::with_capacity(BATCH),
        keys: Vec::with_capacity(BATCH),
    };
    let mut each = |record: Value, key: &IndexKey, hash: &str| -> Result<()> {
        let primary_input = LineageInput {
            model: primary.to_string(),
            key: key.clone(),
            hash: Some(hash.to_string()),
        };
        let ctx = TransformContext::new(inputs.clone(), primary_input);
        let outcome = handle.block_on((t.call)(record, ctx.clone()));
        match settle(t, schema, &edges[t.output], run, key, outcome, &ctx) {
            Settled::Item(status, item) => {
                batch.items.push(item);
                batch.keys.push((key.to_string(), status));
                if batch.items.len() >= BATCH {
                    batch.flush(&mut counts)?;
                }
            }
            Settled::Empty => counts.empty += 1,
            Settled::Failed(reason) => counts.fail(primary, key, reason),
        }
        Ok(())
    };
    // A few stale keys are read one by one; many are read in one pass over the model.
    let result = if (stale.len() as u64) * 10 < primary_count {
        stale.iter().try_for_each(|(_, key, hash)| {
            match scan.record(primary, key).map_err(store_err)? {
                Some(record) => each(record, key, hash),
                None => Ok(()),
            }
        })
    } else {
        let wanted: HashMap<&str, &str> = stale
            .iter()
            .map(|(k, _, h)| (k.as_str(), h.as_str()))
            .collect();
        let mut query = RecordQuery::new(primary);
        query.depth = 0;
        let mut failure = None;
        let primary_edges: Vec<&str> = edges[primary].iter().map(String::as_str).collect();
        let read = scan.for_each_record(&query, &mut |record| {
            let key = primary_key_of(&primary_edges, &record);
            if let Some(hash) = wanted.get(key.canonical().as_str()) {
                if let Err(e) = each(record, &key, hash) {
                    failure = Some(e);
                    return Err(crate::store::StoreError::Unsupported {
                        store: "transform",
                        what: "stopped".into(),
                    });
                }
            }
            Ok(())
        });
        match (failure, read) {
            (Some(e), _) => Err(e),
            (None, r) => r.map_err(store_err),
        }
    };
    let result = result.and_then(|()| batch.flush(&mut counts));
    let status = if result.is_ok() {
        RunStatus::Completed
    } else {
        RunStatus::Failed
    };
    let mut end = RunEnd::new(
        status,
        RunCounts {
            stored: counts.transformed,
            rejected: counts.rejected,
            missing: 0,
            failed: counts.failed,
            skipped: counts.unchanged,
        },
    );
    end.error = result.as_ref().err().map(|e| redact_text(&e.to_string()));
    {
        let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
        s.finish_run(run, &end).map_err(store_err)?;
    }
    result?;
    counts.elapsed = started.elapsed();
    Ok(counts)
}

enum Settled {
    Item(KeyStatus, WriteItem),
    Empty,
    Failed(String),
}

/// A call's outcome as the write it makes: the output stored with its lineage, or rejected.
fn settle(
    t: &TransformerRegistration,
    schema: &kye_lang::Schema,
    output_edges: &[String],
    run: RunId,
    input_key: &IndexKey,
    outcome: Result<Option<Value>>,
    ctx: &TransformContext,
) -> Settled {
    let payload = match outcome {
        Ok(Some(v)) => v,
        Ok(None) => return Settled::Empty,
        Err(e) => return Settled::Failed(redact_text(&e.to_string())),
    };
    let report = validate_record(schema, t.output, &payload);
    let edges: Vec<&str> = output_edges.iter().map(String::as_str).collect();
    if report.is_valid() {
        let output_key = primary_key_of(&edges, &report.value);
        let lineage = Lineage {
            transformer: t.function.to_string(),
            output_key,
            inputs: ctx.lineage(),
        };
        let prov = Provenance::new(run, t.provenance())
            .with_source(crate::source::source_version_of(t.function));
        let record = RecordWrite::new(t.output, report.value, prov).with_lineage(lineage);
        Settled::Item(KeyStatus::Stored, WriteItem::Record(record))
    } else {
        let reason = redact_text(&format!(
            "output for {} {input_key}: {}",
            t.primary(),
            summarize(&report.errors)
        ));
        let key = edges
            .iter()
            .all(|e| payload.get(*e).is_some())
            .then(|| primary_key_of(&edges, &payload));
        let reject = RejectWrite {
            run,
            model: t.output.to_string(),
            key,
            fetcher: t.provenance(),
            payload,
            errors: serde_json::to_value(&report.errors).unwrap_or(Value::Null),
            reason,
            at: Timestamp::now(),
        };
        Settled::Item(KeyStatus::Rejected, WriteItem::Reject(reject))
    }
}

impl TransformCounts {
    fn fail(&mut self, model: &str, key: &IndexKey, reason: String) {
        self.failed += 1;
        tracing::warn!(transformer = %self.transformer, model, key = %key, reason = %reason, "transform failed");
        self.problem(model, key.to_string(), KeyStatus::Failed, reason);
    }

    fn problem(&mut self, model: &str, key: String, status: KeyStatus, reason: String) {
        if self.problems.len() < SUMMARY_EXAMPLES {
            self.problems.push(KeyProblem {
                model: model.to_string(),
                key,
                status,
                reason,
            });
        }
    }
}

/// Outputs waiting to be written, one transaction per [`BATCH`].
struct Batch<'a> {
    store: &'a SharedStore,
    items: Vec<WriteItem>,
    /// The primary input key and status of each item.
    keys: Vec<(String, KeyStatus)>,
}

impl Batch<'_> {
    fn flush(&mut self, counts: &mut TransformCounts) -> Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        let results = {
            let mut s = self.store.lock().unwrap_or_else(|p| p.into_inner());
            s.write_batch(&self.items).map_err(|e| {
                Error::other(e).context("cannot write to the store; the transform stops")
            })?
        };
        let primary = counts.output.clone();
        for ((result, (key, status)), item) in results
            .into_iter()
            .zip(self.keys.drain(..))
            .zip(self.items.drain(..))
        {
            match (result, status) {
                (Ok(()), KeyStatus::Stored) => counts.transformed += 1,
                (Ok(()), _) => {
                    counts.rejected += 1;
                    if let WriteItem::Reject(r) = item {
                        counts.problem(&primary, key, KeyStatus::Rejected, r.reason);
                    }
                }
                (Err(e), _) => {
                    counts.failed += 1;
                    let reason = redact_text(&format!("not stored: {e}"));
                    counts.problem(&primary, key, KeyStatus::Failed, reason);
                }
            }
        }
        Ok(())
    }
}
