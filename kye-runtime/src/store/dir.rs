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
//!   _kye/lock                  the writer lock
//! ```
//!
//! Documents are written to a temporary file in the same directory, fsynced and renamed
//! over the old one, so a reader or a crash sees the old or the new document, never half.
//! Key values become file names through [`encode_file_name`]: every byte outside
//! `[A-Za-z0-9_-]` is percent-encoded, so a key can never name another directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kye_lang::Schema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::key::{canonical_json, canonical_value, content_hash, cut, scalar_text};
use super::layout::{self, extract, ModelLayout};
use super::lock::WriterLock;
use super::{
    drift_example, fold_path, DriftInfo, IndexKey, KeyOutcomeInfo, KeyStatus, NewRun, Provenance,
    RecordQuery, RejectInfo, RunCounts, RunEnd, RunId, RunInfo, RunStatus, StoreError, StoreRead,
    StoreWrite, Timestamp, WriteItem,
};

/// Encoded names longer than this are shortened with a hash (the document keeps the key).
const MAX_NAME: usize = 200;

const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

fn push_pct(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

fn encode_part(s: &str) -> String {
    if s.is_empty() {
        return "~".to_string();
    }
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            push_pct(&mut out, b);
        }
    }
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&out)) {
        let first = out.as_bytes()[0];
        let mut t = String::new();
        push_pct(&mut t, first);
        t.push_str(&out[1..]);
        out = t;
    }
    out
}

/// The file-system-safe name of a key (without `.json`): each part percent-encoded (every
/// byte outside `[A-Za-z0-9_-]`, so no `/`, `\`, `.`, `:`, NUL or leading dot survives),
/// an empty part written `~`, Windows device names (`CON`, `NUL`, …) escaped, parts joined
/// with `,`. Names longer than 200 bytes are cut and end in `~` and a hash of the key; those
/// are the only names [`decode_file_name`] cannot reverse (the document holds the key).
pub fn encode_file_name(parts: &[&str]) -> String {
    let name = parts
        .iter()
        .map(|p| encode_part(p))
        .collect::<Vec<_>>()
        .join(",");
    if name.len() <= MAX_NAME {
        return name;
    }
    let mut cut_at = 120;
    // Do not split a %XX escape.
    while cut_at > 0 && name.as_bytes()[cut_at - 1..cut_at.min(name.len())].contains(&b'%')
        || (cut_at >= 2 && name.as_bytes()[cut_at - 2] == b'%')
    {
        cut_at -= 1;
    }
    let digest = Sha256::digest(parts.join("\u{0}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{}~{hex}", &name[..cut_at])
}

/// Reverses [`encode_file_name`]; `None` for names it cannot have produced or hashed names.
pub fn decode_file_name(name: &str) -> Option<Vec<String>> {
    name.split(',')
        .map(|part| {
            if part == "~" {
                return Some(String::new());
            }
            let b = part.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'%' => {
                        let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                        out.push(u8::from_str_radix(hex, 16).ok()?);
                        i += 3;
                    }
                    c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                        out.push(c);
                        i += 1;
                    }
                    _ => return None,
                }
            }
            String::from_utf8(out).ok()
        })
        .collect()
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename.
/// The directory itself is fsynced by the caller ([`sync_dir`]) once per batch.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        cut(&name, 100),
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io_err("cannot create", &tmp))?;
        f.write_all(bytes).map_err(io_err("cannot write", &tmp))?;
        f.sync_all().map_err(io_err("cannot fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("cannot rename into place", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("cannot fsync directory", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Cuts a torn last line (a write killed mid-append) so the next append starts clean.
fn repair_tail(path: &Path) -> Result<(), StoreError> {
    let Ok(mut f) = OpenOptions::new().read(true).write(true).open(path) else {
        return Ok(());
    };
    let len = f.metadata().map_err(io_err("cannot stat", path))?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))
        .map_err(io_err("cannot read", path))?;
    f.read_exact(&mut last)
        .map_err(io_err("cannot read", path))?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the last newline, reading backwards in chunks.
    let mut end = len;
    let mut keep = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))
            .map_err(io_err("cannot read", path))?;
        f.read_exact(&mut buf[..n])
            .map_err(io_err("cannot read", path))?;
        if let Some(p) = buf[..n].iter().rposition(|&b| b == b'\n') {
            keep = start + p as u64 + 1;
            break;
        }
        end = start;
    }
    f.set_len(keep).map_err(io_err("cannot truncate", path))?;
    f.sync_all().map_err(io_err("cannot fsync", path))
}

/// JSON lines of a file; unreadable lines (a torn tail) are skipped.
fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, StoreError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("cannot open", path)(e)),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).split(b'\n') {
        let line = line.map_err(io_err("cannot read", path))?;
        if let Ok(v) = serde_json::from_slice::<T>(&line) {
            out.push(v);
        }
    }
    Ok(out)
}

fn append_lines(path: &Path, lines: &[String]) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("cannot open", path))?;
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())
        .map_err(io_err("cannot append to", path))?;
    f.sync_data().map_err(io_err("cannot fsync", path))
}

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

/// The directory store. See the module docs and `docs/store.md`.
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
    meta: PathBuf,
    read_only: bool,
    layouts: HashMap<String, ModelLayout>,
    runs: BTreeMap<i64, RunInfo>,
    latest: HashMap<(String, String), KeyOutcomeInfo>,
    /// Per key, the outcome of the newest run that finished it (see [`StoreRead::latest_done`](super::StoreRead::latest_done)).
    done: HashMap<(String, String), KeyOutcomeInfo>,
    drift: BTreeMap<(String, String), DriftInfo>,
    next_reject: i64,
    _lock: Option<WriterLock>,
}

/// A document to write and the model directory it goes to.
struct Doc {
    dir: PathBuf,
    path: PathBuf,
    bytes: Vec<u8>,
    /// Written as a record nested in another one (checked against what this run stored).
    nested: bool,
}

/// The document with that path written earlier in this batch or stored, as an object.
fn previous_doc(earlier: &[&Doc], path: &Path) -> Result<Option<Map<String, Value>>, StoreError> {
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
fn nested_conflict(
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
    /// Opens (creating if needed) the directory store at `root` for writing and takes its lock.
    pub fn open(root: impl AsRef<Path>) -> Result<DirStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let meta = root.join("_kye");
        fs::create_dir_all(&meta).map_err(io_err("cannot create directory", &meta))?;
        let lock = WriterLock::acquire(&meta.join("lock"), &root)?;
        for f in ["rejects.jsonl", "keys.jsonl"] {
            repair_tail(&meta.join(f))?;
        }
        let mut store = Self::load(root, meta, false)?;
        store._lock = Some(lock);
        store.recover_runs()?;
        store.remove_stale_temp_files()?;
        Ok(store)
    }

    /// Opens an existing directory store for reading only.
    pub fn open_read_only(root: impl AsRef<Path>) -> Result<DirStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let meta = root.join("_kye");
        if !meta.is_dir() {
            return Err(StoreError::NotFound { path: root });
        }
        Self::load(root, meta, true)
    }

    fn load(root: PathBuf, meta: PathBuf, read_only: bool) -> Result<DirStore, StoreError> {
        let runs: Vec<RunInfo> = read_lines(&meta.join("runs.jsonl"))?;
        let keys: Vec<KeyLine> = read_lines(&meta.join("keys.jsonl"))?;
        let drift: Vec<DriftInfo> = read_lines(&meta.join("drift.jsonl"))?;
        let layouts: Vec<ModelLayout> = read_lines(&meta.join("models.jsonl"))?;
        let next_reject = count_lines(&meta.join("rejects.jsonl"))? as i64 + 1;
        let mut latest: HashMap<(String, String), KeyOutcomeInfo> = HashMap::new();
        let mut done: HashMap<(String, String), KeyOutcomeInfo> = HashMap::new();
        for k in keys {
            let info = KeyOutcomeInfo {
                run: k.run,
                status: k.status,
                reason: k.reason,
                at: k.at,
            };
            note_done(&mut done, &k.model, &k.key, &info);
            let slot = latest
                .entry((k.model, k.key))
                .or_insert_with(|| info.clone());
            if (info.at, info.run) >= (slot.at, slot.run) {
                *slot = info;
            }
        }
        Ok(DirStore {
            root,
            meta,
            read_only,
            layouts: layouts.into_iter().map(|l| (l.model.clone(), l)).collect(),
            runs: runs.into_iter().map(|r| (r.id.0, r)).collect(),
            latest,
            done,
            drift: drift
                .into_iter()
                .map(|d| ((d.model.clone(), d.path.clone()), d))
                .collect(),
            next_reject,
            _lock: None,
        })
    }

    fn recover_runs(&mut self) -> Result<(), StoreError> {
        let running: Vec<i64> = self
            .runs
            .values()
            .filter(|r| r.status == RunStatus::Running)
            .map(|r| r.id.0)
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        for id in running {
            let counts = self.outcome_counts(RunId(id))?;
            if let Some(r) = self.runs.get_mut(&id) {
                r.status = RunStatus::Interrupted;
                r.counts = counts;
                super::mark_dead(r);
            }
        }
        self.save_runs()
    }

    /// Removes temporary files left by a writer that died mid-write. We hold the lock, so
    /// no live writer owns them.
    fn remove_stale_temp_files(&self) -> Result<(), StoreError> {
        let mut dirs = vec![self.meta.clone()];
        dirs.extend(self.layouts.keys().map(|m| self.model_dir(m)));
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
        for r in self.runs.values() {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        write_atomic(&self.meta.join("runs.jsonl"), text.as_bytes())?;
        sync_dir(&self.meta)
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
        write_atomic(&self.meta.join(name), text.as_bytes())?;
        sync_dir(&self.meta)
    }

    fn check_writable(&self) -> Result<(), StoreError> {
        if self.read_only {
            Err(StoreError::ReadOnly {
                path: self.root.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn model_dir(&self, model: &str) -> PathBuf {
        self.root.join(encode_file_name(&[model]))
    }

    fn layout(&self, model: &str) -> Result<&ModelLayout, StoreError> {
        self.layouts
            .get(model)
            .ok_or_else(|| StoreError::UnknownModel {
                model: model.to_string(),
            })
    }

    /// Key parts (text of each primary key primitive, in layout order) of a record.
    fn key_parts(
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
            let v = obj
                .get(e)
                .or_else(|| edge.title.as_ref().and_then(|t| obj.get(t)))
                .filter(|v| !v.is_null())
                .ok_or_else(missing)?;
            let single = edge.cols.len() == 1;
            for c in &edge.cols {
                match extract(v, &c.path, single) {
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
        let obj = super::record_object(model, value)?;
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

    fn read_doc(path: &Path) -> Result<Option<Map<String, Value>>, StoreError> {
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
    fn doc_paths(&self, model: &str) -> Result<Vec<PathBuf>, StoreError> {
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

    fn counts_from_lines(&self, run: RunId) -> Result<RunCounts, StoreError> {
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

fn count_lines(path: &Path) -> Result<usize, StoreError> {
    match File::open(path) {
        Ok(f) => Ok(BufReader::new(f).split(b'\n').count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err("cannot open", path)(e)),
    }
}

fn cmp_parts(a: &[String], b: &[String]) -> std::cmp::Ordering {
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
fn value_matches(v: &Value, want: &Value) -> bool {
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

impl DirStore {
    /// The stored document (with its `_kye` provenance) of `model` with this key, by any index.
    fn find_doc(
        &self,
        model: &str,
        key: &IndexKey,
    ) -> Result<Option<Map<String, Value>>, StoreError> {
        let l = self.layout(model)?;
        let mut want: Vec<&String> = key.edges.iter().collect();
        want.sort();
        let mut primary: Vec<&String> = l.key_edges.iter().collect();
        primary.sort();
        if want == primary {
            let obj: Map<String, Value> = key
                .edges
                .iter()
                .cloned()
                .zip(key.values.iter().cloned())
                .collect();
            let (parts, _) = self.key_parts(l, &obj)?;
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

/// Keeps in `done` the outcome of the newest run that finished each key.
fn note_done(
    done: &mut HashMap<(String, String), KeyOutcomeInfo>,
    model: &str,
    key: &str,
    info: &KeyOutcomeInfo,
) {
    if !info.status.is_done() {
        return;
    }
    let slot = (model.to_string(), key.to_string());
    match done.get(&slot) {
        Some(have) if have.run > info.run => {}
        _ => {
            done.insert(slot, info.clone());
        }
    }
}

impl StoreRead for DirStore {
    fn edge_names(&self, model: &str) -> Option<Vec<String>> {
        self.layouts
            .get(model)
            .map(|l| l.edges.iter().map(|e| e.name.clone()).collect())
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
        if let Some(f) = &query.filter {
            if l.edge(&f.edge).is_none() {
                return Err(StoreError::InvalidFilter {
                    model: l.model.clone(),
                    message: format!(
                        "{} has no edge {:?}; its edges are {}",
                        l.model,
                        f.edge,
                        l.edges
                            .iter()
                            .map(|e| e.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let mut found = 0;
        for path in self.doc_paths(&query.model)? {
            if query.limit.is_some_and(|n| found >= n) {
                break;
            }
            let Some(mut doc) = Self::read_doc(&path)? else {
                continue;
            };
            if let Some(f) = &query.filter {
                if !doc.get(&f.edge).is_some_and(|v| value_matches(v, &f.value)) {
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
        if self.read_only
            && out.iter().any(|r| r.status == RunStatus::Running)
            && super::lock::writer_alive(&self.meta.join("lock")) == Some(false)
        {
            let now: HashMap<i64, RunInfo> = read_lines::<RunInfo>(&self.meta.join("runs.jsonl"))?
                .into_iter()
                .map(|r| (r.id.0, r))
                .collect();
            for r in out.iter_mut().filter(|r| r.status == RunStatus::Running) {
                match now.get(&r.id.0) {
                    Some(n) if n.status != RunStatus::Running => *r = n.clone(),
                    _ => super::mark_dead(r),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_stay_inside() {
        for key in [
            "pikachu",
            "../../etc/passwd",
            "a/b\\c:d",
            ".hidden",
            "..",
            "nul\u{0}byte",
            "CON",
            "nul",
            "Mr. Mime",
            "café ☕",
            "%41",
            "~",
            "",
            "a,b",
        ] {
            let name = encode_file_name(&[key]);
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-%~,".contains(&b)),
                "{key:?} → {name}"
            );
            assert!(!name.starts_with('.'), "{name}");
            assert!(
                !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&name)),
                "{name}"
            );
            assert_eq!(
                decode_file_name(&name),
                Some(vec![key.to_string()]),
                "{key:?} → {name}"
            );
        }
        let composite = encode_file_name(&["2024", "a,b", ""]);
        assert_eq!(
            decode_file_name(&composite),
            Some(vec!["2024".to_string(), "a,b".to_string(), String::new()])
        );
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "x".repeat(10_000);
        let a = encode_file_name(&[&long]);
        let b = encode_file_name(&[&format!("{long}y")]);
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME);
        assert_ne!(a, b);
        let pct = "/".repeat(500);
        let c = encode_file_name(&[&pct]);
        assert!(c.len() <= MAX_NAME);
        assert!(c.split('~').next().unwrap().len().is_multiple_of(3), "{c}");
    }
}
