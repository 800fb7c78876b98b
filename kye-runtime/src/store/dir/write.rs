//! Writing to the directory store: layouts, runs, and batches of documents, rejects, drift
//! and key outcomes.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use kye_lang::Schema;
use serde_json::{Map, Value};

use super::super::key::{canonical_json, content_hash, cut};
use super::super::layout::{self, ModelLayout};
use super::super::{
    drift_example, fold_path, DriftInfo, IndexKey, KeyOutcomeInfo, NewRun, Provenance, RunCounts,
    RunEnd, RunId, RunInfo, RunStatus, StoreError, StoreRead, StoreWrite, WriteItem,
};
use super::files::{append_lines, io_err, sync_dir, write_atomic};
use super::{decode_file_name, encode_file_name, note_done, DirStore, KeyLine, RejectLine};

/// A document to write and the model directory it goes to.
pub(super) struct Doc {
    dir: PathBuf,
    path: PathBuf,
    bytes: Vec<u8>,
    /// Written as a record nested in another one (checked against what this run stored).
    nested: bool,
}

/// The document with that path written earlier in this batch or stored, as an object.
pub(super) fn previous_doc(
    earlier: &[&Doc],
    path: &Path,
) -> Result<Option<Map<String, Value>>, StoreError> {
    match earlier.iter().rev().find(|d| d.path == path) {
        Some(d) => Ok(serde_json::from_slice::<Value>(&d.bytes)
            .ok()
            .and_then(|v| match v {
                Value::Object(o) => Some(o),
                _ => None,
            })),
        None => DirStore::read_doc(path),
    }
}

/// A nested document contradicting the one another record of the same run nested under its
/// key (see `StoreError::NestedConflict`).
pub(super) fn nested_conflict(
    earlier: &[&Doc],
    doc: &Doc,
    model: &str,
    run: RunId,
) -> Result<Option<StoreError>, StoreError> {
    let Some(old) = previous_doc(earlier, &doc.path)? else {
        return Ok(None);
    };
    let Ok(Value::Object(new)) = serde_json::from_slice::<Value>(&doc.bytes) else {
        return Ok(None);
    };
    let meta = |o: &Map<String, Value>, k: &str| o.get("_kye").and_then(|m| m.get(k)).cloned();
    if meta(&old, "run") != Some(Value::from(run.0)) || meta(&old, "hash") == meta(&new, "hash") {
        return Ok(None);
    }
    let shown = |v: Option<&Value>| cut(&canonical_json(v.unwrap_or(&Value::Null)), 100);
    let differs = new
        .keys()
        .chain(old.keys())
        .filter(|k| *k != "_kye")
        .find(|k| new.get(*k) != old.get(*k))
        .map(|k| {
            format!(
                "edge {k}: {} here, {} before",
                shown(new.get(k)),
                shown(old.get(k))
            )
        })
        .unwrap_or_default();
    let key = meta(&new, "key")
        .and_then(|k| match k {
            Value::Object(o) => Some(
                o.iter()
                    .map(|(e, v)| format!("{e} = {}", cut(&canonical_json(v), 100)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            _ => None,
        })
        .unwrap_or_default();
    Ok(Some(StoreError::NestedConflict {
        model: model.to_string(),
        key,
        differs,
    }))
}

impl DirStore {
    /// The documents one record write produces (nested full records first).
    fn docs_for(
        &self,
        model: &str,
        value: &Value,
        prov: &Provenance,
        depth: usize,
        out: &mut Vec<Doc>,
    ) -> Result<(), StoreError> {
        let l = self.layout(model)?;
        let obj = super::super::record_object(model, value)?;
        if depth < 32 {
            // Value objects stay inside this document: they belong to this record alone.
            for e in l.edges.iter().filter(|e| !e.value_object) {
                let (Some(target), Some(v)) = (e.target.as_deref(), obj.get(&e.name)) else {
                    continue;
                };
                let Some(tl) = self.layouts.get(target) else {
                    continue;
                };
                let idx: HashSet<&str> = tl
                    .key_edges
                    .iter()
                    .chain(tl.uniques.iter().flat_map(|u| u.edges.iter()))
                    .map(String::as_str)
                    .collect();
                let nested: Vec<&Value> = match v {
                    Value::Array(a) if e.multiple => a.iter().collect(),
                    other => vec![other],
                };
                for n in nested {
                    if let Value::Object(o) = n {
                        if o.keys()
                            .any(|k| !idx.contains(k.as_str()) && tl.edge(k).is_some())
                        {
                            self.docs_for(target, n, prov, depth + 1, out)?;
                        }
                    }
                }
            }
        }
        let (parts, key_obj) = self.key_parts(l, obj)?;
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let dir = self.model_dir(model);
        let path = dir.join(format!("{}.json", encode_file_name(&refs)));
        let mut doc = obj.clone();
        let mut p = Map::new();
        p.insert("run".into(), Value::from(prov.run.0));
        p.insert("fetcher".into(), Value::from(prov.fetcher.clone()));
        p.insert(
            "fetched_at".into(),
            Value::from(prov.fetched_at.to_string()),
        );
        p.insert("hash".into(), Value::from(content_hash(value)));
        p.insert("key".into(), key_obj);
        doc.insert("_kye".into(), Value::Object(p));
        let bytes = serde_json::to_vec_pretty(&Value::Object(doc)).unwrap_or_default();
        out.push(Doc {
            dir,
            path,
            bytes,
            nested: depth > 0,
        });
        Ok(())
    }
}

impl StoreWrite for DirStore {
    /// A snapshot: a directory reader loads the store's indexes when opened, so it sees what
    /// was written up to then.
    fn reader(&self) -> Result<Box<dyn StoreRead>, StoreError> {
        Ok(Box::new(DirStore::open_read_only(&self.root)?))
    }

    /// Records the models' layouts (`_kye/models.jsonl`). JSON documents take any shape, so
    /// schema changes never need a migration here; index or name problems are still refused.
    fn prepare(&mut self, schema: &Schema) -> Result<(), StoreError> {
        self.check_writable()?;
        let layouts = layout::layouts_of(schema)?;
        for l in layouts {
            self.layouts.insert(l.model.clone(), l);
        }
        let mut all: Vec<&ModelLayout> = self.layouts.values().collect();
        all.sort_by(|a, b| a.model.cmp(&b.model));
        self.save_snapshot("models.jsonl", all.into_iter())
    }

    fn begin_run(&mut self, run: &NewRun) -> Result<RunId, StoreError> {
        self.check_writable()?;
        let id = self.runs.keys().next_back().copied().unwrap_or(0) + 1;
        self.runs.insert(
            id,
            RunInfo {
                id: RunId(id),
                request: run.request.clone(),
                started_at: run.started_at,
                ended_at: None,
                status: RunStatus::Running,
                counts: RunCounts::default(),
                error: None,
                resumed_from: run.resumed_from,
            },
        );
        if let Err(e) = self.save_runs() {
            self.runs.remove(&id);
            return Err(e);
        }
        Ok(RunId(id))
    }

    fn finish_run(&mut self, run: RunId, end: &RunEnd) -> Result<(), StoreError> {
        self.check_writable()?;
        let r = self
            .runs
            .get_mut(&run.0)
            .ok_or(StoreError::UnknownRun(run))?;
        r.ended_at = Some(end.ended_at);
        r.status = end.status;
        r.counts = end.counts;
        r.error = end.error.clone();
        self.save_runs()
    }

    fn write_batch(
        &mut self,
        items: &[WriteItem],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.check_writable()?;
        let mut results = Vec::with_capacity(items.len());
        let mut docs: Vec<Doc> = Vec::new();
        let mut reject_lines = Vec::new();
        let mut key_lines = Vec::new();
        let mut drift_changed = false;
        let mut new_latest = Vec::new();
        let mut drift = self.drift.clone();
        let mut next_reject = self.next_reject;
        for item in items {
            match item {
                WriteItem::Record(r) => {
                    let mut mine = Vec::new();
                    let mut result = self.docs_for(&r.model, &r.value, &r.provenance, 0, &mut mine);
                    if result.is_ok() {
                        for (i, d) in mine.iter().enumerate().filter(|(_, d)| d.nested) {
                            let model = d
                                .dir
                                .file_name()
                                .and_then(|n| decode_file_name(&n.to_string_lossy()))
                                .and_then(|p| p.into_iter().next())
                                .unwrap_or_default();
                            let earlier: Vec<&Doc> = (docs.iter().chain(&mine[..i]))
                                .filter(|e| e.path == d.path)
                                .collect();
                            if let Some(e) = nested_conflict(&earlier, d, &model, r.provenance.run)?
                            {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    match result {
                        Ok(()) => {
                            docs.extend(mine);
                            results.push(Ok(()));
                        }
                        Err(e) if e.is_item_error() => results.push(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
                WriteItem::Reject(r) => {
                    let line = RejectLine {
                        id: next_reject,
                        run: r.run,
                        model: r.model.clone(),
                        key: r.key.as_ref().map(IndexKey::to_object),
                        fetcher: r.fetcher.clone(),
                        reason: r.reason.clone(),
                        errors: r.errors.clone(),
                        payload: r.payload.clone(),
                        at: r.at,
                    };
                    next_reject += 1;
                    reject_lines.push(serde_json::to_string(&line).unwrap_or_default());
                    results.push(Ok(()));
                }
                WriteItem::Drift(d) => {
                    let path = fold_path(&d.path);
                    let example = drift_example(&d.example);
                    drift
                        .entry((d.model.clone(), path.clone()))
                        .and_modify(|x| {
                            x.last_seen = x.last_seen.max(d.seen_at);
                            x.last_run = x.last_run.max(d.run);
                            x.example = example.clone();
                            x.count += 1;
                        })
                        .or_insert_with(|| DriftInfo {
                            model: d.model.clone(),
                            path,
                            first_seen: d.seen_at,
                            last_seen: d.seen_at,
                            first_run: d.run,
                            last_run: d.run,
                            example: example.clone(),
                            count: 1,
                        });
                    drift_changed = true;
                    results.push(Ok(()));
                }
                WriteItem::KeyOutcome(k) => {
                    let line = KeyLine {
                        run: k.run,
                        model: k.model.clone(),
                        key: k.key.canonical(),
                        status: k.status,
                        reason: k.reason.clone(),
                        at: k.at,
                    };
                    key_lines.push(serde_json::to_string(&line).unwrap_or_default());
                    new_latest.push(line);
                    results.push(Ok(()));
                }
            }
        }
        // Records first, so that an outcome line never names a record that is not there.
        let mut dirs: Vec<PathBuf> = Vec::new();
        for d in &docs {
            if !dirs.contains(&d.dir) {
                fs::create_dir_all(&d.dir).map_err(io_err("cannot create directory", &d.dir))?;
                dirs.push(d.dir.clone());
            }
            write_atomic(&d.path, &d.bytes)?;
        }
        if !dirs.is_empty() {
            sync_dir(&self.root)?;
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        append_lines(&self.meta.join("rejects.jsonl"), &reject_lines)?;
        append_lines(&self.meta.join("keys.jsonl"), &key_lines)?;
        self.next_reject = next_reject;
        if drift_changed {
            self.drift = drift;
            self.save_snapshot("drift.jsonl", self.drift.values())?;
        }
        for k in new_latest {
            let info = KeyOutcomeInfo {
                run: k.run,
                status: k.status,
                reason: k.reason,
                at: k.at,
            };
            note_done(&mut self.done, &k.model, &k.key, &info);
            self.latest.insert((k.model, k.key), info);
        }
        Ok(results)
    }
}
