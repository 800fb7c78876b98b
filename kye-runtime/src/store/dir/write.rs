//! Writing to the directory store: layouts, runs, and batches of documents, rejects, drift
//! and key outcomes.

use std::fs;
use std::path::{Path, PathBuf};

use kye_lang::Schema;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::store::key::{canonical_json, content_hash, cut};
use crate::store::layout::{self, ModelLayout};
use crate::store::records::nested_records;
use crate::store::{
    drift_example, fold_path, mark_dead, record_object, DriftInfo, IndexKey, NewRun, Provenance,
    RunCounts, RunEnd, RunId, RunInfo, RunStatus, StoreError, StoreRead, StoreWrite, WriteItem,
};

use super::files::{append_lines, io_err, sync_dir, write_atomic};
use super::{
    decode_file_name, encode_file_name, CursorLine, DirReader, DirStore, KeyLine, RejectLine,
};

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
        None => DirReader::read_doc(path),
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
    /// Marks runs left `running` as interrupted, with counts from their key outcomes. Safe
    /// because we hold the writer lock: no live process is running them.
    pub(super) fn recover_runs(&mut self) -> Result<(), StoreError> {
        let running: Vec<i64> = self
            .db
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Running)
            .map(|r| r.id.0)
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        for id in running {
            let counts = self.db.outcome_counts(RunId(id))?;
            if let Some(r) = self.db.runs.get_mut(&id) {
                r.status = RunStatus::Interrupted;
                r.counts = counts;
                mark_dead(r);
            }
        }
        self.save_runs()
    }

    /// Removes temporary files left by a writer that died mid-write. We hold the lock, so
    /// no live writer owns them.
    pub(super) fn remove_stale_temp_files(&self) -> Result<(), StoreError> {
        let mut dirs = vec![self.db.meta.clone()];
        dirs.extend(self.db.layouts.keys().map(|m| self.db.model_dir(m)));
        for dir in dirs {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.contains(".tmp-") {
                    let path = entry.path();
                    fs::remove_file(&path)
                        .map_err(io_err("cannot remove stale temporary file", &path))?;
                }
            }
        }
        Ok(())
    }

    fn save_runs(&self) -> Result<(), StoreError> {
        let mut text = String::new();
        for r in self.db.runs.values() {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        write_atomic(&self.db.meta.join("runs.jsonl"), text.as_bytes())?;
        sync_dir(&self.db.meta)
    }

    fn save_snapshot<T: Serialize>(
        &self,
        name: &str,
        items: impl Iterator<Item = T>,
    ) -> Result<(), StoreError> {
        let mut text = String::new();
        for d in items {
            text.push_str(&serde_json::to_string(&d).unwrap_or_default());
            text.push('\n');
        }
        write_atomic(&self.db.meta.join(name), text.as_bytes())?;
        sync_dir(&self.db.meta)
    }

    /// The documents one record write produces (nested full records first).
    fn docs_for(
        &self,
        model: &str,
        value: &Value,
        prov: &Provenance,
        depth: usize,
        out: &mut Vec<Doc>,
    ) -> Result<(), StoreError> {
        let db = &self.db;
        let l = db.layout(model)?;
        let obj = record_object(model, value)?;
        if depth < 32 {
            // Value objects stay inside this document: they belong to this record alone.
            for (target, n) in nested_records(&db.layouts, l, obj) {
                self.docs_for(&target.model, n, prov, depth + 1, out)?;
            }
        }
        let (parts, key_obj) = db.key_parts(l, obj)?;
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let dir = db.model_dir(model);
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
        p.insert("source".into(), Value::from(prov.source.clone()));
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
        Ok(Box::new(DirReader::open(&self.db.root)?))
    }

    /// Records the models' layouts (`_kye/models.jsonl`). JSON documents take any shape, so
    /// schema changes never need a migration here; index or name problems are still refused.
    fn prepare(&mut self, schema: &Schema) -> Result<(), StoreError> {
        let layouts = layout::layouts_of(schema)?;
        for l in layouts {
            self.db.layouts.insert(l.model.clone(), l);
        }
        let mut all: Vec<&ModelLayout> = self.db.layouts.values().collect();
        all.sort_by(|a, b| a.model.cmp(&b.model));
        self.save_snapshot("models.jsonl", all.into_iter())
    }

    fn begin_run(&mut self, run: &NewRun) -> Result<RunId, StoreError> {
        let id = self.db.runs.keys().next_back().copied().unwrap_or(0) + 1;
        self.db.runs.insert(
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
                source: run.source.clone(),
            },
        );
        if let Err(e) = self.save_runs() {
            self.db.runs.remove(&id);
            return Err(e);
        }
        Ok(RunId(id))
    }

    fn finish_run(&mut self, run: RunId, end: &RunEnd) -> Result<(), StoreError> {
        let r = self
            .db
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
        let mut results = Vec::with_capacity(items.len());
        let mut docs: Vec<Doc> = Vec::new();
        let mut reject_lines = Vec::new();
        let mut key_lines = Vec::new();
        let mut drift_changed = false;
        let mut new_latest = Vec::new();
        let mut drift = self.db.drift.clone();
        let mut cursors_changed = false;
        let mut cursors = self.db.cursors.clone();
        let mut next_reject = self.next_reject;
        for item in items {
            match item {
                WriteItem::Record(r) if r.lineage.is_some() => {
                    results.push(Err(StoreError::Unsupported {
                        store: "dir",
                        what: "keeps no lineage, so it cannot store a transformer's output; use the SQLite or PostgreSQL store".into(),
                    }));
                }
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
                WriteItem::ListCursor(c) => {
                    let line = CursorLine {
                        model: c.model.clone(),
                        lister: c.lister.clone(),
                        value: c.value.clone(),
                        finished: c.finished,
                        run: c.run,
                        at: c.at,
                    };
                    cursors.insert((c.model.clone(), c.lister.clone()), line);
                    cursors_changed = true;
                    results.push(Ok(()));
                }
                WriteItem::QueueBatch(_) => results.push(Err(StoreError::Unsupported {
                    store: "dir",
                    what: "cannot complete a queued batch; queued runs need a PostgreSQL store (--db postgres://...)".to_string(),
                })),
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
            sync_dir(&self.db.root)?;
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        append_lines(&self.db.meta.join("rejects.jsonl"), &reject_lines)?;
        append_lines(&self.db.meta.join("keys.jsonl"), &key_lines)?;
        self.next_reject = next_reject;
        if drift_changed {
            self.db.drift = drift;
            self.save_snapshot("drift.jsonl", self.db.drift.values())?;
        }
        for k in new_latest {
            self.db.note_outcome(k);
        }
        // After the outcomes of the keys the cursors cover (a crash in between lists those
        // keys again, never skips them).
        if cursors_changed {
            self.db.cursors = cursors;
            self.save_snapshot("cursors.jsonl", self.db.cursors.values())?;
        }
        Ok(results)
    }
}
