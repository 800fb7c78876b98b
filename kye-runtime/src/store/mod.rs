//! Stores: where validated records, quarantined rejects, drift and run history go.
//!
//! The runtime writes through a [`StoreWrite`] in batches of [`WriteItem`]s and reads through
//! [`StoreRead`] handles. Two stores ship:
//!
//! - [`SqliteStore`] (the default, file `kye.db`): one table per model, typed columns,
//!   child tables for multi-valued edges, provenance on every row, WAL mode.
//! - [`DirStore`] (`dir:PATH`): one JSON document per record under `PATH/<Model>/<key>.json`
//!   plus JSON lines files for runs, rejects, drift and key outcomes.
//!
//! Pick one with [`StoreSpec`] (`"sqlite:kye.db"`, `"data.db"`, `"dir:out"`) and [`open_store`].
//! A store opened for writing holds an exclusive lock: a second writer on the same file or
//! directory is refused with [`StoreError::Locked`]; readers ([`open_store_read_only`]) are
//! never blocked. See `docs/store.md` for the tables and how to query them.
//!
//! ```
//! use kye_runtime::store::{open_store, NewRun, Provenance, RecordWrite, StoreSpec, WriteItem};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = std::env::temp_dir().join(format!("kye-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&tmp)?;
//! let schema = kye_lang::compile_str("p.kye", "Pokemon(id)(name) {\n  id: Number\n  name: String\n}")?;
//! let spec: StoreSpec = format!("sqlite:{}", tmp.join("kye.db").display()).parse()?;
//! let mut store = open_store(&spec)?;
//! store.prepare(&schema)?;
//! let run = store.begin_run(&NewRun::new("Pokemon.id = 25"))?;
//! let value = serde_json::json!({"id": 25, "name": "pikachu"});
//! let results = store.write_batch(&[WriteItem::Record(RecordWrite::new(
//!     "Pokemon", value, Provenance::new(run, "pokemon_by_id"),
//! ))])?;
//! assert!(results[0].is_ok());
//! # std::fs::remove_dir_all(&tmp)?;
//! # Ok(()) }
//! ```

mod dir;
mod key;
mod layout;
mod lock;
mod sqlite;
mod time;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kye_lang::Schema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use dir::{decode_file_name, encode_file_name, DirStore};
pub use key::{canonical_json, content_hash, IndexKey};
pub use sqlite::SqliteStore;
pub use time::{ParseTimestampError, Timestamp};

/// Identifier of a run: 1, 2, 3… in the order runs were started in this store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Started and not finished. A run found `Running` when a store is opened for writing
    /// belonged to a process that died; the store marks it [`RunStatus::Interrupted`].
    Running,
    /// Every requested key ended stored, missing, rejected or failed.
    Completed,
    /// The run stopped on an error before finishing (e.g. an unresolvable request, disk full).
    Failed,
    /// Stopped early (Ctrl-C, kill): the keys recorded so far are kept; a new run can resume.
    Interrupted,
}

impl RunStatus {
    /// The lowercase name stored in the runs table.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// Parses [`RunStatus::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => RunStatus::Running,
            "completed" => RunStatus::Completed,
            "failed" => RunStatus::Failed,
            "interrupted" => RunStatus::Interrupted,
            _ => return None,
        })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-run counts of key outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Keys whose record was validated and stored.
    pub stored: u64,
    /// Keys whose record failed validation (quarantined in rejects).
    pub rejected: u64,
    /// Keys the source does not have (e.g. HTTP 404).
    pub missing: u64,
    /// Keys that failed with a reason (permanent error, retries exhausted).
    pub failed: u64,
    /// Keys not fetched because they were fresh or done by the run being resumed.
    pub skipped: u64,
}

impl RunCounts {
    /// Adds one outcome.
    pub fn add(&mut self, status: KeyStatus) {
        match status {
            KeyStatus::Stored => self.stored += 1,
            KeyStatus::Rejected => self.rejected += 1,
            KeyStatus::Missing => self.missing += 1,
            KeyStatus::Failed => self.failed += 1,
            KeyStatus::Skipped => self.skipped += 1,
        }
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.stored + self.rejected + self.missing + self.failed + self.skipped
    }
}

/// The start of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    /// The request as the user wrote it, e.g. `Pokemon.id in 1..=151`.
    pub request: String,
    /// When the run started.
    pub started_at: Timestamp,
    /// The interrupted run this one resumes, if any.
    pub resumed_from: Option<RunId>,
}

impl NewRun {
    /// A run of `request` starting now.
    pub fn new(request: impl Into<String>) -> Self {
        NewRun {
            request: request.into(),
            started_at: Timestamp::now(),
            resumed_from: None,
        }
    }
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    /// Final status (normally `Completed`, `Failed` or `Interrupted`).
    pub status: RunStatus,
    /// When the run ended.
    pub ended_at: Timestamp,
    /// Final counts. Stores keep these as given.
    pub counts: RunCounts,
    /// Why the run failed or stopped, if it did.
    pub error: Option<String>,
}

impl RunEnd {
    /// A run ending now with `status` and `counts`.
    pub fn new(status: RunStatus, counts: RunCounts) -> Self {
        RunEnd {
            status,
            ended_at: Timestamp::now(),
            counts,
            error: None,
        }
    }
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run id.
    pub id: RunId,
    /// The request text.
    pub request: String,
    /// Start time.
    pub started_at: Timestamp,
    /// End time; `None` while running or when the process died.
    pub ended_at: Option<Timestamp>,
    /// Status.
    pub status: RunStatus,
    /// Counts (for an interrupted run: counted from its recorded key outcomes).
    pub counts: RunCounts,
    /// Error or interruption reason.
    pub error: Option<String>,
    /// The run this one resumed.
    pub resumed_from: Option<RunId>,
}

/// Where a stored record came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The run that fetched it.
    pub run: RunId,
    /// The fetcher (function path or name) that returned it.
    pub fetcher: String,
    /// When it was fetched.
    pub fetched_at: Timestamp,
}

impl Provenance {
    /// Provenance for a record fetched now by `fetcher` in `run`.
    pub fn new(run: RunId, fetcher: impl Into<String>) -> Self {
        Provenance {
            run,
            fetcher: fetcher.into(),
            fetched_at: Timestamp::now(),
        }
    }
}

/// A validated record to store: the normalized value from `kye_lang::validate`.
///
/// Its key is read from the value (the model's primary index). Nested values of model
/// type that carry more than the referenced model's index edges are stored as records of
/// their own model (same provenance) and linked; bare references (`"grass"` or
/// `{"name": "grass"}`) are only linked.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordWrite {
    /// Model name.
    pub model: String,
    /// Normalized record (a JSON object).
    pub value: Value,
    /// Where it came from.
    pub provenance: Provenance,
}

impl RecordWrite {
    /// A record write.
    pub fn new(model: impl Into<String>, value: Value, provenance: Provenance) -> Self {
        RecordWrite {
            model: model.into(),
            value,
            provenance,
        }
    }
}

/// A fetched value that failed validation: kept whole, with its errors.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectWrite {
    /// The run.
    pub run: RunId,
    /// Model the value was validated as.
    pub model: String,
    /// The requested key, if known.
    pub key: Option<IndexKey>,
    /// Fetcher that returned it.
    pub fetcher: String,
    /// The payload exactly as fetched (wrap non-JSON bodies in a JSON string).
    pub payload: Value,
    /// Structured errors (e.g. the validator's `Vec<ValidationError>` serialized).
    pub errors: Value,
    /// One-line summary, e.g. `weight: expected Number, got "heavy"`.
    pub reason: String,
    /// When it was rejected.
    pub at: Timestamp,
}

/// One sighting of a field the schema does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftWrite {
    /// The run.
    pub run: RunId,
    /// Model of the record.
    pub model: String,
    /// Path of the unknown field, e.g. `types[1].slot` (array positions are folded to `[]`).
    pub path: String,
    /// The value seen (stored cut to 1000 characters of JSON).
    pub example: Value,
    /// When it was seen.
    pub seen_at: Timestamp,
}

/// What happened to one requested key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Record validated and stored.
    Stored,
    /// The source has no such key.
    Missing,
    /// Fetched but invalid (see rejects).
    Rejected,
    /// Failed with a reason.
    Failed,
    /// Not fetched: fresh enough, or done by the resumed run.
    Skipped,
}

impl KeyStatus {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Stored => "stored",
            KeyStatus::Missing => "missing",
            KeyStatus::Rejected => "rejected",
            KeyStatus::Failed => "failed",
            KeyStatus::Skipped => "skipped",
        }
    }

    /// Parses [`KeyStatus::as_str`] output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stored" => KeyStatus::Stored,
            "missing" => KeyStatus::Missing,
            "rejected" => KeyStatus::Rejected,
            "failed" => KeyStatus::Failed,
            "skipped" => KeyStatus::Skipped,
            _ => return None,
        })
    }

    /// True when a resumed run need not fetch the key again (stored, missing or rejected —
    /// a rejected payload is quarantined; refetch with `--refresh`).
    pub fn is_done(self) -> bool {
        matches!(
            self,
            KeyStatus::Stored | KeyStatus::Missing | KeyStatus::Rejected | KeyStatus::Skipped
        )
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Records the outcome of a requested key in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyOutcomeWrite {
    /// The run.
    pub run: RunId,
    /// Model requested.
    pub model: String,
    /// The key as requested (any index of the model).
    pub key: IndexKey,
    /// What happened.
    pub status: KeyStatus,
    /// Why (for failed/missing/rejected), if known.
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// A stored key outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyOutcomeInfo {
    /// The run that recorded it.
    pub run: RunId,
    /// What happened.
    pub status: KeyStatus,
    /// Why.
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteItem {
    /// Store a validated record (replacing the stored one with the same primary key).
    Record(RecordWrite),
    /// Quarantine an invalid payload.
    Reject(RejectWrite),
    /// Count a sighting of an unknown field.
    Drift(DriftWrite),
    /// Record what happened to a requested key.
    KeyOutcome(KeyOutcomeWrite),
}

/// A quarantined payload as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectInfo {
    /// Reject id (1, 2, …).
    pub id: i64,
    /// Run.
    pub run: RunId,
    /// Model.
    pub model: String,
    /// Requested key (canonical JSON object), if known.
    pub key: Option<Value>,
    /// Fetcher.
    pub fetcher: String,
    /// Summary.
    pub reason: String,
    /// Structured errors.
    pub errors: Value,
    /// The payload as fetched.
    pub payload: Value,
    /// When.
    pub at: Timestamp,
}

/// A field the sources send that the schema does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftInfo {
    /// Model.
    pub model: String,
    /// Field path (`[]` for any array position).
    pub path: String,
    /// First sighting.
    pub first_seen: Timestamp,
    /// Latest sighting.
    pub last_seen: Timestamp,
    /// Run of the first sighting.
    pub first_run: RunId,
    /// Run of the latest sighting.
    pub last_run: RunId,
    /// Latest example value (JSON, cut).
    pub example: Value,
    /// Number of sightings.
    pub count: u64,
}

/// `edge = value` filter for [`StoreRead::records`].
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Edge name.
    pub edge: String,
    /// Value; strings are converted to the edge's type (`"25"` matches Number 25).
    pub value: Value,
}

impl Filter {
    /// Parses `edge = value`, `edge = "quoted value"` or `edge = 'quoted'`.
    pub fn parse(text: &str) -> Result<Filter, StoreError> {
        let bad = |m: &str| StoreError::InvalidFilter {
            model: String::new(),
            message: format!(
                "{m} in {:?}; write it as `edge = value`",
                key::cut(text, 100)
            ),
        };
        let (edge, value) = text.split_once('=').ok_or_else(|| bad("no `=`"))?;
        let edge = edge.trim();
        if edge.ends_with(['<', '>', '!']) {
            return Err(bad("only `=` is supported"));
        }
        if edge.is_empty() {
            return Err(bad("no edge name"));
        }
        let v = value.trim().trim_start_matches('=').trim();
        let unquoted = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        Ok(Filter {
            edge: edge.to_string(),
            value: Value::String(unquoted.to_string()),
        })
    }
}

/// What [`StoreRead::records`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordQuery {
    /// Model.
    pub model: String,
    /// Optional `edge = value` filter.
    pub filter: Option<Filter>,
    /// At most this many records (ordered by primary key).
    pub limit: Option<usize>,
    /// How deep to embed referenced records that are stored (0: references stay keys).
    pub depth: usize,
    /// Add a `_kye` object with run, fetcher, fetched_at and hash to each top-level record.
    pub provenance: bool,
}

impl RecordQuery {
    /// All records of `model`, nested one level, without provenance.
    pub fn new(model: impl Into<String>) -> Self {
        RecordQuery {
            model: model.into(),
            filter: None,
            limit: None,
            depth: 1,
            provenance: false,
        }
    }

    /// Adds a filter.
    pub fn filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// Sets a limit.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// The read side of a store: every query kye makes of stored records, runs, outcomes, rejects
/// and drift.
///
/// A handle opened with [`open_store_read_only`] is only a `StoreRead`: it cannot write, by
/// construction. A writer hands out read handles of its own store with [`StoreWrite::reader`],
/// so that readers (the runtime's skip checks, a server's lookups) never wait for the writer's
/// batch.
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
    /// stored, missing, rejected or skipped ([`KeyStatus::is_done`]); outcomes that are not
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

    /// The edges of a stored model in schema order (the order `show` prints them), or `None`
    /// when the store does not know the model.
    fn edge_names(&self, model: &str) -> Option<Vec<String>> {
        let _ = model;
        None
    }
}

/// The write side of a store: preparing tables, runs and batches of writes. One writer per
/// store at a time (a second is refused with [`StoreError::Locked`] where the store can tell).
///
/// Writes come in batches: [`StoreWrite::write_batch`] applies a batch in one transaction
/// (SQLite) or with atomic renames (directory). The outer `Result` fails when nothing of the
/// batch could be written (I/O error, read-only store); the inner ones report per item, e.g. a
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

/// Errors of stores. Messages name the store, model, key and edge involved and say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("SQLite error on {path}: {source}")]
    Sqlite {
        /// Database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// File or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the writer lock.
    #[error(
        "{path} is being written by another kye process{holder}; wait for it to finish, or \
         use another store (--db / --store). Reading (show, runs, rejects, drift) works meanwhile."
    )]
    Locked {
        /// Store location.
        path: PathBuf,
        /// ` (pid N)` when known.
        holder: String,
    },
    /// A database file with several names (hard links) opened for writing.
    #[error(
        "{path} has {links} names (hard links); kye's writer lock belongs to one name, so \
         a writer under another name would not see it. Remove the other links (or copy the \
         file) before writing to it. Reading works."
    )]
    HardLinked {
        /// Database file.
        path: PathBuf,
        /// How many names the file has.
        links: u64,
    },
    /// Read-only open of a store that does not exist.
    #[error(
        "no kye store at {path}; run a fetch first or point --db/--store at an existing store"
    )]
    NotFound {
        /// Location.
        path: PathBuf,
    },
    /// A write on a store opened read-only.
    #[error("the store at {path} was opened read-only")]
    ReadOnly {
        /// Location.
        path: PathBuf,
    },
    /// The schema changed incompatibly with what is stored.
    #[error("model {model}{edge_part}: {message}", edge_part = edge.as_ref().map(|e| format!(", edge {e}")).unwrap_or_default())]
    SchemaChange {
        /// Model.
        model: String,
        /// Edge, when one is concerned.
        edge: Option<String>,
        /// What changed and what to do.
        message: String,
    },
    /// A model or edge name the store cannot use.
    #[error("{what} name {name:?} cannot be stored: {reason}")]
    InvalidName {
        /// `model` or `edge`.
        what: &'static str,
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A model the store was not prepared for.
    #[error(
        "model {model} is not known to this store: nothing of it has been stored yet, or it is not in the schema"
    )]
    UnknownModel {
        /// Model.
        model: String,
    },
    /// A record lacks a value for an edge of its primary index.
    #[error(
        "{model} record has no value for index edge {edge}; records need their whole primary index"
    )]
    MissingKey {
        /// Model.
        model: String,
        /// Edge.
        edge: String,
    },
    /// A value does not fit its edge's storage type.
    #[error("{model} {key}: edge {edge}: {message}")]
    InvalidValue {
        /// Model.
        model: String,
        /// Key of the record, when known.
        key: String,
        /// Edge.
        edge: String,
        /// What is wrong.
        message: String,
    },
    /// The record's secondary index value belongs to another stored record.
    #[error(
        "{model} {incoming}: index {index} = {value} is already stored for {model} {existing}; \
         not overwritten (the source returned two records claiming the same {index})"
    )]
    IndexConflict {
        /// Model.
        model: String,
        /// Index, e.g. `(name)`.
        index: String,
        /// The clashing value.
        value: String,
        /// Primary key of the stored record.
        existing: String,
        /// Primary key of the incoming record.
        incoming: String,
    },
    /// A nested record whose key another record of the same run nested with other content.
    #[error(
        "nested {model} {key} differs from the {model} {key} another record nested earlier in \
         this run ({differs}); not overwritten: its index does not identify one {model}; \
         if {model} has no identity of its own, declare it without an index (a value object, \
         stored with each record that holds it)"
    )]
    NestedConflict {
        /// Model of the nested record.
        model: String,
        /// Its key, e.g. `heart_rate_bpm = 120`.
        key: String,
        /// The first edge that differs, with both values.
        differs: String,
    },
    /// A `show` filter that does not apply to the model.
    #[error("filter{}: {message}", if model.is_empty() { String::new() } else { format!(" on {model}") })]
    InvalidFilter {
        /// Model.
        model: String,
        /// Why.
        message: String,
    },
    /// A store spec that could not be parsed.
    #[error("store {spec:?}: {message}")]
    InvalidSpec {
        /// The spec.
        spec: String,
        /// Why.
        message: String,
    },
    /// A run id that is not in the store.
    #[error("no run {0} in this store")]
    UnknownRun(RunId),
    /// Stored data that cannot be read back.
    #[error("{path}: {message}")]
    Corrupt {
        /// Location.
        path: PathBuf,
        /// What.
        message: String,
    },
}

impl StoreError {
    /// True for errors about one item of a batch (the rest of the batch is written).
    pub fn is_item_error(&self) -> bool {
        matches!(
            self,
            StoreError::UnknownModel { .. }
                | StoreError::MissingKey { .. }
                | StoreError::InvalidValue { .. }
                | StoreError::IndexConflict { .. }
                | StoreError::NestedConflict { .. }
        )
    }
}

/// Which store to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// SQLite database file.
    Sqlite(PathBuf),
    /// Directory of JSON documents.
    Dir(PathBuf),
}

impl Default for StoreSpec {
    /// `kye.db` in the working directory.
    fn default() -> Self {
        StoreSpec::Sqlite(PathBuf::from("kye.db"))
    }
}

impl StoreSpec {
    /// The file or directory.
    pub fn path(&self) -> &Path {
        match self {
            StoreSpec::Sqlite(p) | StoreSpec::Dir(p) => p,
        }
    }
}

impl fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreSpec::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            StoreSpec::Dir(p) => write!(f, "dir:{}", p.display()),
        }
    }
}

impl FromStr for StoreSpec {
    type Err = StoreError;

    /// `sqlite:PATH`, `dir:PATH`, or a plain path ending in `.db`, `.sqlite` or `.sqlite3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| StoreError::InvalidSpec {
            spec: s.to_string(),
            message: message.to_string(),
        };
        let nonempty = |p: &str| {
            if p.is_empty() {
                Err(bad("the path is empty"))
            } else {
                Ok(PathBuf::from(p))
            }
        };
        if let Some((scheme, rest)) = url_scheme(s) {
            return match scheme.to_ascii_lowercase().as_str() {
                // `sqlite:///abs/kye.db` and `sqlite://kye.db`, as database URLs are written.
                "sqlite" => Ok(StoreSpec::Sqlite(nonempty(rest)?)),
                "dir" => Ok(StoreSpec::Dir(nonempty(rest)?)),
                "postgres" | "postgresql" => Err(bad(&format!(
                    "PostgreSQL is not supported yet; supported: {SUPPORTED_STORES}"
                ))),
                other => Err(bad(&format!(
                    "unknown store scheme `{other}://`; supported: {SUPPORTED_STORES}"
                ))),
            };
        }
        if let Some(p) = s.strip_prefix("sqlite:") {
            return Ok(StoreSpec::Sqlite(nonempty(p)?));
        }
        if let Some(p) = s.strip_prefix("dir:") {
            return Ok(StoreSpec::Dir(nonempty(p)?));
        }
        let lower = s.to_ascii_lowercase();
        if [".db", ".sqlite", ".sqlite3"]
            .iter()
            .any(|ext| lower.ends_with(ext))
        {
            return Ok(StoreSpec::Sqlite(nonempty(s)?));
        }
        Err(bad(
            "expected sqlite:PATH, dir:PATH, or a file name ending in .db, .sqlite or .sqlite3",
        ))
    }
}

/// The store forms [`StoreSpec`] accepts, for error messages.
const SUPPORTED_STORES: &str = "a SQLite file (`PATH.db`, `PATH.sqlite`, `sqlite:PATH` or \
     `sqlite://PATH`) or a directory of JSON documents (`dir:PATH`)";

/// `scheme://rest` when `s` starts with a URL scheme (letters, digits, `+`, `-`, `.`).
fn url_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some((scheme, rest))
}

impl StoreSpec {
    /// A store given as a command-line path: a spec (`sqlite:PATH`, `dir:PATH`, `x.db`), else
    /// any other path is a SQLite file (`--db data/pokemon`). A URL of a scheme kye does not
    /// support (`postgres://...`) is an error, never a file name.
    pub fn from_path_or_spec(text: &str) -> Result<StoreSpec, StoreError> {
        match text.parse() {
            Ok(spec) => Ok(spec),
            Err(e) if url_scheme(text).is_some() => Err(e),
            Err(_) => Ok(StoreSpec::Sqlite(PathBuf::from(text))),
        }
    }
}

/// Opens a store for writing, creating it if needed, and takes its writer lock.
pub fn open_store(spec: &StoreSpec) -> Result<Box<dyn StoreWrite>, StoreError> {
    Ok(match spec {
        StoreSpec::Sqlite(p) => Box::new(SqliteStore::open(p)?),
        StoreSpec::Dir(p) => Box::new(DirStore::open(p)?),
    })
}

/// Opens an existing store for reading only (no lock; works while a writer runs).
pub fn open_store_read_only(spec: &StoreSpec) -> Result<Box<dyn StoreRead>, StoreError> {
    Ok(match spec {
        StoreSpec::Sqlite(p) => Box::new(SqliteStore::open_read_only(p)?),
        StoreSpec::Dir(p) => Box::new(DirStore::open_read_only(p)?),
    })
}

/// Folds array positions in a drift path: `types[1].slot` → `types[].slot`.
pub(crate) fn fold_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '[' {
            let mut digits = String::new();
            while let Some(&d) = chars.peek() {
                if d.is_ascii_digit() {
                    digits.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            if chars.peek() != Some(&']') {
                out.push_str(&digits);
            }
        }
    }
    out
}

/// A record as the JSON object every store writes, or the error naming the model.
pub(crate) fn record_object<'v>(
    model: &str,
    value: &'v Value,
) -> Result<&'v serde_json::Map<String, Value>, StoreError> {
    value.as_object().ok_or_else(|| StoreError::InvalidValue {
        model: model.to_string(),
        key: String::new(),
        edge: String::new(),
        message: format!(
            "a record must be a JSON object, got {}",
            key::cut(&key::canonical_json(value), 80)
        ),
    })
}

/// Why a run left `running` by a dead process is `interrupted`.
pub(crate) const DEAD_RUN: &str = "the process stopped before the run finished (killed or \
     crashed); counts are the key outcomes it had recorded";

/// Shows a run whose process died as interrupted (its counts already taken from its key
/// outcomes). Readers do this without writing; the next writer records it.
pub(crate) fn mark_dead(r: &mut RunInfo) {
    r.status = RunStatus::Interrupted;
    r.error = Some(DEAD_RUN.to_string());
}

/// Drift examples are cut to this many characters of JSON.
pub(crate) const EXAMPLE_MAX: usize = 1000;

/// The example stored for a drift sighting: the value, or a string holding its cut JSON.
pub(crate) fn drift_example(v: &Value) -> Value {
    let text = canonical_json(v);
    if text.chars().count() <= EXAMPLE_MAX {
        v.clone()
    } else {
        Value::String(key::cut(&text, EXAMPLE_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            "sqlite:a/b".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("a/b".into())
        );
        assert_eq!(
            "x.db".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("x.db".into())
        );
        assert_eq!(
            "X.SQLITE3".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("X.SQLITE3".into())
        );
        assert_eq!(
            "dir:out".parse::<StoreSpec>().unwrap(),
            StoreSpec::Dir("out".into())
        );
        assert!("out".parse::<StoreSpec>().is_err());
        assert!("dir:".parse::<StoreSpec>().is_err());
        assert_eq!(
            "sqlite:///tmp/a.db".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("/tmp/a.db".into())
        );
        assert_eq!(
            "sqlite://rel/a.db".parse::<StoreSpec>().unwrap(),
            StoreSpec::Sqlite("rel/a.db".into())
        );
        assert_eq!(
            "dir://out".parse::<StoreSpec>().unwrap(),
            StoreSpec::Dir("out".into())
        );
        assert_eq!(
            StoreSpec::from_path_or_spec("data/pokemon").unwrap(),
            StoreSpec::Sqlite("data/pokemon".into())
        );
        for url in ["postgres://user@localhost/cats", "postgresql://h/db"] {
            for e in [
                url.parse::<StoreSpec>().unwrap_err(),
                StoreSpec::from_path_or_spec(url).unwrap_err(),
            ] {
                let e = e.to_string();
                assert!(e.contains("PostgreSQL is not supported yet"), "{e}");
                assert!(e.contains("sqlite:PATH") && e.contains("dir:PATH"), "{e}");
            }
        }
        let e = StoreSpec::from_path_or_spec("mysql://h/cats.db")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown store scheme `mysql://`"), "{e}");
        assert_eq!(StoreSpec::default(), StoreSpec::Sqlite("kye.db".into()));
    }

    #[test]
    fn filters_parse() {
        let f = Filter::parse("name = 'pikachu'").unwrap();
        assert_eq!(
            (f.edge.as_str(), f.value.as_str()),
            ("name", Some("pikachu"))
        );
        let f = Filter::parse("id==25").unwrap();
        assert_eq!((f.edge.as_str(), f.value.as_str()), ("id", Some("25")));
        let f = Filter::parse("t = \"a = b\"").unwrap();
        assert_eq!(f.value.as_str(), Some("a = b"));
        assert!(Filter::parse("nothing").is_err());
        assert!(Filter::parse(" = 3").is_err());
        let e = Filter::parse("id >= 3").unwrap_err();
        assert_eq!(
            e.to_string(),
            "filter: only `=` is supported in \"id >= 3\"; write it as `edge = value`"
        );
    }

    #[test]
    fn drift_paths_fold_positions() {
        assert_eq!(fold_path("types[1].slot"), "types[].slot");
        assert_eq!(fold_path("a[10][2].b"), "a[][].b");
        assert_eq!(fold_path("sprites.front"), "sprites.front");
        assert_eq!(fold_path("odd[x]"), "odd[x]");
    }
}
