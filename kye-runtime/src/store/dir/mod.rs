//! The directory store: "save what the API returns into a folder".
//!
//! ```text
//! DIR/
//!   Pokemon/25.json            one JSON document per record (record + "_kye" provenance)
//!   PokemonType/grass.json
//!   _kye/runs.jsonl            one line per run (rewritten atomically)
//!   _kye/rejects.jsonl         one line per quarantined payload (appended)
//!   _kye/keys.jsonl            one line per key outcome (appended; the latest line wins)
//!   _kye/drift.jsonl           one line per (model, field) (rewritten atomically)
//!   _kye/cursors.jsonl         one line per list function's cursor (rewritten atomically)
//!   _kye/lock                  the writer lock
//! ```
//!
//! Documents are written to a temporary file in the same directory, fsynced and renamed
//! over the old one, so a reader or a crash sees the old or the new document, never half.
//! Key values become file names through [`encode_file_name`]: every byte outside
//! `[A-Za-z0-9_-]` is percent-encoded, so a key can never name another directory.
//!
//! Two handles: [`DirStore`], the writer (it holds the lock and reads its own writes), and
//! [`DirReader`], which has no write methods. A reader loads the store's indexes (runs, latest
//! key outcomes, drift, layouts) when opened: it sees what was written up to then, documents
//! as they are when read. This file opens them; `names` makes file names, `files` does the
//! atomic writes and JSON lines, `write` the writer's side and `read` every query.

mod files;
mod names;
mod read;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::key::{canonical_value, scalar_text};
use crate::store::layout::ModelLayout;
use crate::store::lock::WriterLock;
use crate::store::records::{col_values, edge_value};
use crate::store::traits::read_through;
use crate::store::{
    DriftInfo, KeyOutcomeInfo, KeyStatus, RunCounts, RunId, RunInfo, StoreError, Timestamp,
};
use files::{count_lines, io_err, read_lines, repair_tail};
use read::cmp_parts;

pub use names::{decode_file_name, encode_file_name};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyLine {
    run: RunId,
    model: String,
    key: String,
    status: KeyStatus,
    #[serde(default)]
    reason: Option<String>,
    at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RejectLine {
    id: i64,
    run: RunId,
    model: String,
    key: Option<Value>,
    fetcher: String,
    reason: String,
    errors: Value,
    payload: Value,
    at: Timestamp,
}

/// A read-only handle on a directory store: it implements only
/// [`StoreRead`](crate::store::StoreRead), so nothing can be written through it. Opened with
/// [`DirReader::open`] (or handed out by [`DirStore`]'s
/// [`reader`](crate::store::StoreWrite::reader)), it takes no lock.
#[derive(Debug)]
pub struct DirReader {
    root: PathBuf,
    meta: PathBuf,
    layouts: HashMap<String, ModelLayout>,
    runs: BTreeMap<i64, RunInfo>,
    latest: HashMap<(String, String), KeyOutcomeInfo>,
    /// Per key, the outcome of the newest run that finished it (see
    /// [`StoreRead::latest_done`](crate::store::StoreRead::latest_done)).
    done: HashMap<(String, String), KeyOutcomeInfo>,
    drift: BTreeMap<(String, String), DriftInfo>,
    /// List cursors by (model, lister).
    cursors: BTreeMap<(String, String), CursorLine>,
    /// The writer lock to ask when a run reads `running`: readers tell a dead writer's run by
    /// it. `None` inside the writer, which holds the lock itself.
    writer_lock: Option<PathBuf>,
}

/// One line of `_kye/cursors.jsonl`: a list function's saved cursor.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CursorLine {
    model: String,
    lister: String,
    value: serde_json::Value,
    finished: bool,
    run: crate::store::RunId,
    at: crate::store::Timestamp,
}

/// The directory store opened for writing. See the module docs and `docs/store.md`.
#[derive(Debug)]
pub struct DirStore {
    /// What the writer has written, read through as by a reader (kept up to date by each write).
    db: DirReader,
    next_reject: i64,
    _lock: WriterLock,
}

impl DirReader {
    /// Opens an existing directory store for reading only. Takes no lock.
    pub fn open(root: impl AsRef<Path>) -> Result<DirReader, StoreError> {
        let root = root.as_ref().to_path_buf();
        let meta = root.join("_kye");
        if !meta.is_dir() {
            return Err(StoreError::NotFound { path: root });
        }
        let lock = meta.join("lock");
        Self::load(root, meta, Some(lock))
    }

    fn load(
        root: PathBuf,
        meta: PathBuf,
        writer_lock: Option<PathBuf>,
    ) -> Result<DirReader, StoreError> {
        let runs: Vec<RunInfo> = read_lines(&meta.join("runs.jsonl"))?;
        let keys: Vec<KeyLine> = read_lines(&meta.join("keys.jsonl"))?;
        let drift: Vec<DriftInfo> = read_lines(&meta.join("drift.jsonl"))?;
        let layouts: Vec<ModelLayout> = read_lines(&meta.join("models.jsonl"))?;
        let cursors: Vec<CursorLine> = read_lines(&meta.join("cursors.jsonl"))?;
        let mut reader = DirReader {
            root,
            meta,
            layouts: layouts.into_iter().map(|l| (l.model.clone(), l)).collect(),
            runs: runs.into_iter().map(|r| (r.id.0, r)).collect(),
            latest: HashMap::new(),
            done: HashMap::new(),
            drift: drift
                .into_iter()
                .map(|d| ((d.model.clone(), d.path.clone()), d))
                .collect(),
            cursors: cursors
                .into_iter()
                .map(|c| ((c.model.clone(), c.lister.clone()), c))
                .collect(),
            writer_lock,
        };
        for k in keys {
            reader.note_outcome(k);
        }
        Ok(reader)
    }

    /// Takes a key outcome into the indexes: the latest outcome of its key (by time, then
    /// run, as SQLite orders them), and the outcome of the newest run that finished it.
    fn note_outcome(&mut self, k: KeyLine) {
        let info = KeyOutcomeInfo {
            run: k.run,
            status: k.status,
            reason: k.reason,
            at: k.at,
        };
        let slot = (k.model, k.key);
        if info.status.is_done() && self.done.get(&slot).is_none_or(|have| have.run <= info.run) {
            self.done.insert(slot.clone(), info.clone());
        }
        if self
            .latest
            .get(&slot)
            .is_none_or(|have| (have.at, have.run) <= (info.at, info.run))
        {
            self.latest.insert(slot, info);
        }
    }

    pub(super) fn model_dir(&self, model: &str) -> PathBuf {
        self.root.join(encode_file_name(&[model]))
    }

    pub(super) fn layout(&self, model: &str) -> Result<&ModelLayout, StoreError> {
        self.layouts
            .get(model)
            .ok_or_else(|| StoreError::UnknownModel {
                model: model.to_string(),
            })
    }

    /// Key parts (text of each primary key primitive, in layout order) of a record.
    pub(super) fn key_parts(
        &self,
        l: &ModelLayout,
        obj: &Map<String, Value>,
    ) -> Result<(Vec<String>, Value), StoreError> {
        let mut parts = Vec::new();
        let mut key_obj = Map::new();
        for e in &l.key_edges {
            let edge = l.edge(e).ok_or_else(|| StoreError::UnknownModel {
                model: l.model.clone(),
            })?;
            let missing = || StoreError::MissingKey {
                model: l.model.clone(),
                edge: e.clone(),
            };
            let v = edge_value(obj, edge).ok_or_else(missing)?;
            for (_, x) in col_values(edge, Some(v)) {
                match x {
                    Some(x @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                        parts.push(scalar_text(x))
                    }
                    _ => return Err(missing()),
                }
            }
            key_obj.insert(e.clone(), canonical_value(v));
        }
        Ok((parts, Value::Object(key_obj)))
    }

    pub(super) fn read_doc(path: &Path) -> Result<Option<Map<String, Value>>, StoreError> {
        match fs::read(path) {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(o)) => Ok(Some(o)),
                _ => Err(StoreError::Corrupt {
                    path: path.to_path_buf(),
                    message: "not a JSON object".to_string(),
                }),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", path)(e)),
        }
    }

    /// All document paths of a model, in key order (numbers numerically).
    pub(super) fn doc_paths(&self, model: &str) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.model_dir(model);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("cannot list", &dir)(e)),
        };
        let mut named: Vec<(Vec<String>, PathBuf)> = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("cannot list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue; // temporary files of interrupted writes
            }
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            let parts = decode_file_name(stem).unwrap_or_else(|| vec![stem.to_string()]);
            named.push((parts, entry.path()));
        }
        named.sort_by(|a, b| cmp_parts(&a.0, &b.0));
        Ok(named.into_iter().map(|(_, p)| p).collect())
    }

    pub(super) fn counts_from_lines(&self, run: RunId) -> Result<RunCounts, StoreError> {
        let mut by_key: HashMap<(String, String), KeyStatus> = HashMap::new();
        let f = match File::open(self.meta.join("keys.jsonl")) {
            Ok(f) => f,
            Err(_) => return Ok(RunCounts::default()),
        };
        for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
            if let Ok(k) = serde_json::from_slice::<KeyLine>(&line) {
                if k.run == run {
                    by_key.insert((k.model, k.key), k.status);
                }
            }
        }
        let mut counts = RunCounts::default();
        for s in by_key.into_values() {
            counts.add(s);
        }
        Ok(counts)
    }
}

impl DirStore {
    /// Opens (creating if needed) the directory store at `root` for writing and takes its lock.
    pub fn open(root: impl AsRef<Path>) -> Result<DirStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let meta = root.join("_kye");
        fs::create_dir_all(&meta).map_err(io_err("cannot create directory", &meta))?;
        let lock = WriterLock::acquire(&meta.join("lock"), &root)?;
        for f in ["rejects.jsonl", "keys.jsonl"] {
            repair_tail(&meta.join(f))?;
        }
        let next_reject = count_lines(&meta.join("rejects.jsonl"))? as i64 + 1;
        let mut store = DirStore {
            db: DirReader::load(root, meta, None)?,
            next_reject,
            _lock: lock,
        };
        store.recover_runs()?;
        store.remove_stale_temp_files()?;
        Ok(store)
    }
}

read_through!(DirStore, db);
