//! Reading from the directory store: documents by key or by scan, runs with live counts, key
//! outcomes from the in-memory index, rejects and drift from their JSON lines.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::store::key::scalar_text;
use crate::store::layout::{self, EdgeLayout};
use crate::store::lock::writer_alive;
use crate::store::records::{
    col_values, edge_value, filter_edge, index_of, items, key_object, Index,
};
use crate::store::{
    mark_dead, DriftInfo, IndexKey, KeyOutcomeInfo, RecordQuery, RejectInfo, RunCounts, RunId,
    RunInfo, RunStatus, StoreError, StoreRead, Timestamp,
};

use super::files::read_lines;
use super::{encode_file_name, DirReader, RejectLine};

pub(super) fn cmp_parts(a: &[String], b: &[String]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(p), Ok(q)) => p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal),
            _ => x.cmp(y),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Does a stored edge value match a filter value? Numbers compare numerically, arrays match
/// when an item does, references when their single key value does.
/// Does a stored edge value match a filter value? The edge's one column is compared: a
/// reference's key (nested record or not), each item of a multi-valued edge.
fn edge_matches(e: &EdgeLayout, v: &Value, want: &Value) -> bool {
    let matches = |item: &Value| {
        col_values(e, Some(item))
            .next()
            .and_then(|(_, x)| x)
            .is_some_and(|x| value_matches(x, want))
    };
    if e.multiple {
        items(Some(v)).any(matches)
    } else {
        matches(v)
    }
}

pub(super) fn value_matches(v: &Value, want: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(|x| value_matches(x, want)),
        Value::Object(o) if o.len() == 1 => {
            o.values().next().is_some_and(|x| value_matches(x, want))
        }
        Value::Number(n) => {
            let w = match want {
                Value::Number(w) => w.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            n.as_f64().is_some() && n.as_f64() == w
        }
        Value::Bool(b) => match want {
            Value::Bool(w) => b == w,
            Value::String(s) => s.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
            _ => false,
        },
        Value::String(s) => match want {
            Value::String(w) => s == w,
            other => *s == scalar_text(other),
        },
        _ => false,
    }
}

impl DirReader {
    /// The stored document (with its `_kye` provenance) of `model` with this key, by any index.
    fn find_doc(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<Map<String, Value>>, StoreError> {
        let l = self.layout(model)?;
        if index_of(l, key)? == Index::Primary {
            let (parts, _) = self.key_parts(l, &key_object(key))?;
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let path = self
                .model_dir(model)
                .join(format!("{}.json", encode_file_name(&refs)));
            return Self::read_doc(&path);
        }
        // A secondary index: scan the model's documents.
        for path in self.doc_paths(model)? {
            if let Some(doc) = Self::read_doc(&path)? {
                let hit = key
                    .edges
                    .iter()
                    .zip(&key.values)
                    .all(|(e, v)| doc.get(e).is_some_and(|d| value_matches(d, v)));
                if hit {
                    return Ok(Some(doc));
                }
            }
        }
        Ok(None)
    }
}

impl StoreRead for DirReader {
    fn edge_names(&self, model: &str) -> Option<Vec<String>> {
        layout::edge_names(&self.layouts, model)
    }

    fn kind(&self) -> &'static str {
        "dir"
    }

    fn location(&self) -> &Path {
        &self.root
    }

    fn last_stored(&self, model: &str, key: &IndexKey) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.find_doc(model, key)?.as_ref().and_then(|doc| {
            doc.get("_kye")
                .and_then(|p| p.get("fetched_at"))
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<Timestamp>().ok())
        }))
    }

    fn record(&self, model: &str, key: &IndexKey) -> Result<Option<Value>, StoreError> {
        Ok(self.find_doc(model, key)?.map(|mut doc| {
            doc.remove("_kye");
            Value::Object(doc)
        }))
    }

    fn latest_done(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
        Ok(self
            .done
            .get(&(model.to_string(), key.canonical()))
            .cloned())
    }

    fn latest_run_of(&self, request: &str) -> Result<Option<RunInfo>, StoreError> {
        let Some(r) = self.runs.values().rev().find(|r| r.request == request) else {
            return Ok(None);
        };
        let mut r = r.clone();
        if r.status == RunStatus::Running {
            r.counts = self.outcome_counts(r.id)?;
        }
        Ok(Some(r))
    }

    fn latest_outcome(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
        Ok(self
            .latest
            .get(&(model.to_string(), key.canonical()))
            .cloned())
    }

    fn outcome_counts(&self, run: RunId) -> Result<RunCounts, StoreError> {
        self.counts_from_lines(run)
    }

    fn for_each_record(
        &self,
        query: &RecordQuery,
        each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let l = self.layout(&query.model)?;
        let filter = match &query.filter {
            Some(f) => Some((filter_edge(l, f)?, &f.value)),
            None => None,
        };
        let mut found = 0;
        for path in self.doc_paths(&query.model)? {
            if query.limit.is_some_and(|n| found >= n) {
                break;
            }
            let Some(mut doc) = Self::read_doc(&path)? else {
                continue;
            };
            if let Some((e, want)) = filter {
                if !edge_value(&doc, e).is_some_and(|v| edge_matches(e, v, want)) {
                    continue;
                }
            }
            let prov = doc.remove("_kye");
            if query.provenance {
                if let Some(Value::Object(mut p)) = prov {
                    p.remove("key");
                    doc.insert("_kye".into(), Value::Object(p));
                }
            }
            found += 1;
            each(Value::Object(doc))?;
        }
        Ok(())
    }

    fn runs(&self, limit: Option<usize>) -> Result<Vec<RunInfo>, StoreError> {
        let mut out = Vec::new();
        for r in self.runs.values().rev().take(limit.unwrap_or(usize::MAX)) {
            let mut r = r.clone();
            if r.status == RunStatus::Running {
                r.counts = self.outcome_counts(r.id)?;
            }
            out.push(r);
        }
        // A reader is told a run is dead by the writer lock: when no writer holds it, a run
        // still `running` in runs.jsonl (read again, after asking the lock) belongs to a
        // process that died.
        // The writer's own handle has no lock to ask: it holds it.
        let Some(lock) = &self.writer_lock else {
            return Ok(out);
        };
        if out.iter().any(|r| r.status == RunStatus::Running) && writer_alive(lock) == Some(false) {
            let now: HashMap<i64, RunInfo> = read_lines::<RunInfo>(&self.meta.join("runs.jsonl"))?
                .into_iter()
                .map(|r| (r.id.0, r))
                .collect();
            for r in out.iter_mut().filter(|r| r.status == RunStatus::Running) {
                match now.get(&r.id.0) {
                    Some(n) if n.status != RunStatus::Running => *r = n.clone(),
                    _ => mark_dead(r),
                }
            }
        }
        Ok(out)
    }

    fn run(&self, id: RunId) -> Result<Option<RunInfo>, StoreError> {
        Ok(self.runs(None)?.into_iter().find(|r| r.id == id))
    }

    fn rejects(
        &self,
        run: Option<RunId>,
        limit: Option<usize>,
    ) -> Result<Vec<RejectInfo>, StoreError> {
        let lines: Vec<RejectLine> = read_lines(&self.meta.join("rejects.jsonl"))?;
        Ok(lines
            .into_iter()
            .rev()
            .filter(|r| run.is_none_or(|id| r.run == id))
            .take(limit.unwrap_or(usize::MAX))
            .map(|r| RejectInfo {
                id: r.id,
                run: r.run,
                model: r.model,
                key: r.key,
                fetcher: r.fetcher,
                reason: r.reason,
                errors: r.errors,
                payload: r.payload,
                at: r.at,
            })
            .collect())
    }

    fn drift(&self) -> Result<Vec<DriftInfo>, StoreError> {
        Ok(self.drift.values().cloned().collect())
    }

    fn list_cursor(
        &self,
        model: &str,
        lister: &str,
    ) -> Result<Option<crate::store::ListCursorInfo>, StoreError> {
        Ok(self
            .cursors
            .get(&(model.to_string(), lister.to_string()))
            .map(|c| crate::store::ListCursorInfo {
                value: c.value.clone(),
                finished: c.finished,
                run: c.run,
                at: c.at,
            }))
    }
}
