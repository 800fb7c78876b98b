//! What goes into a store and what comes out of it: runs, their counts and statuses, the
//! records, rejects, drift and key outcomes the runtime writes, and the rows readers get back.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{IndexKey, Timestamp};

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

/// How old a model's stored records are, relative to a cut-off time: what a freshness report
/// needs ([`StoreRead::fetched_ages`](super::StoreRead::fetched_ages)), counted without
/// reading the records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchedAges {
    /// Records fetched at or after the cut-off.
    pub since: u64,
    /// Records fetched before the cut-off.
    pub before: u64,
    /// When the oldest stored record was fetched (`None` when none is stored).
    pub oldest: Option<Timestamp>,
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
    /// The declared source (`name@version`) of the function the request resolved to, if it
    /// belongs to one.
    pub source: Option<String>,
}

impl NewRun {
    /// A run of `request` starting now.
    pub fn new(request: impl Into<String>) -> Self {
        NewRun {
            request: request.into(),
            started_at: Timestamp::now(),
            resumed_from: None,
            source: None,
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
    /// The declared source (`name@version`) of the function its request resolved to (`None`
    /// for a function of no declared source, and for runs recorded before kye knew sources).
    #[serde(default)]
    pub source: Option<String>,
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
    /// The declared source (`kye::source!`) and version that produced it, `name@version`
    /// (`None` for a function that belongs to no declared source).
    pub source: Option<String>,
}

impl Provenance {
    /// Provenance for a record fetched now by `fetcher` in `run`.
    pub fn new(run: RunId, fetcher: impl Into<String>) -> Self {
        Provenance {
            run,
            fetcher: fetcher.into(),
            fetched_at: Timestamp::now(),
            source: None,
        }
    }

    /// This provenance naming the source and version that produced the record (`name@version`).
    pub fn with_source(mut self, source: Option<String>) -> Self {
        self.source = source;
        self
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
    /// For a transformer's output: the input records it was computed from, written in the
    /// same transaction as the record (replacing the lineage of the same output key).
    pub lineage: Option<Lineage>,
}

impl RecordWrite {
    /// A record write.
    pub fn new(model: impl Into<String>, value: Value, provenance: Provenance) -> Self {
        RecordWrite {
            model: model.into(),
            value,
            provenance,
            lineage: None,
        }
    }

    /// This write with the lineage of a transformer's output.
    pub fn with_lineage(mut self, lineage: Lineage) -> Self {
        self.lineage = Some(lineage);
        self
    }
}

/// One input record a transformer read to compute an output: its model, key and content hash
/// as read (`None`: the record was not stored when the transformer looked it up).
#[derive(Debug, Clone, PartialEq)]
pub struct LineageInput {
    /// Model of the input record.
    pub model: String,
    /// Primary key of the input record.
    pub key: IndexKey,
    /// Its content hash when read, or `None` when it was looked up and not stored.
    pub hash: Option<String>,
}

/// What a transformer's output was computed from: the store keeps one row per input in its
/// lineage table, keyed by (transformer, output key), replaced whole on each write.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    /// The transformer's name (its function's name).
    pub transformer: String,
    /// Primary key of the output record.
    pub output_key: IndexKey,
    /// The inputs it read, the primary input first.
    pub inputs: Vec<LineageInput>,
}

/// One row of the lineage table, as read back by [`StoreRead::lineage`](super::StoreRead::lineage).
/// Keys stay in their canonical text ([`IndexKey::canonical`], `{"id":25}`): the runtime
/// compares them as text, and [`IndexKey::from_canonical`] reads one back.
#[derive(Debug, Clone, PartialEq)]
pub struct LineageRow {
    /// Model of the output record.
    pub output_model: String,
    /// Primary key of the output record, canonical.
    pub output_key: String,
    /// Model of the input record.
    pub input_model: String,
    /// Primary key of the input record, canonical.
    pub input_key: String,
    /// The input's content hash when read (`None`: looked up and not stored).
    pub input_hash: Option<String>,
    /// The output's primary input (the record the transformer was called for).
    pub input_primary: bool,
}

/// What [`StoreRead::stale_inputs`](super::StoreRead::stale_inputs) counted besides the stale
/// keys it handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleCounts {
    /// Records of the primary input whose output was computed from inputs that are all
    /// stored now with the content they had then.
    pub unchanged: u64,
    /// Stored outputs whose primary input is no longer stored.
    pub orphaned: u64,
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
    /// Save a list function's cursor (replacing the one it saved before).
    ListCursor(ListCursorWrite),
    /// Complete a batch of a queued run (PostgreSQL only; other stores refuse it): the
    /// outcomes of its keys and its completion, in the transaction of the batch's records,
    /// fenced by the batch's lease (see [`QueueBatchWrite`]).
    QueueBatch(QueueBatchWrite),
}

/// The completion of one batch of a queued run (`fetch --queue`, `worker`), written with the
/// batch's records, rejects and drift in one transaction: its keys' outcomes and its state.
///
/// The write is fenced by the lease the worker claimed the batch with: when the batch is no
/// longer claimed under `lease` (the lease expired and another worker took it), the whole
/// transaction rolls back and `write_batch` fails with [`StoreError::LeaseLost`](super::StoreError::LeaseLost), so a batch's effects are committed exactly once.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueBatchWrite {
    /// The batch (`_kye_queue_batches.id`).
    pub batch: i64,
    /// The lease token the worker claimed it with.
    pub lease: i64,
    /// The run the batch belongs to.
    pub run: RunId,
    /// `done`, or `failed` when the batch gave up (its keys then carry `failed` outcomes).
    pub failed: bool,
    /// Each key's outcome, with the batch item (an index into the same `write_batch` call)
    /// holding its record: when that record is refused, the outcome is written `failed` with
    /// `not stored: <why>` instead.
    pub outcomes: Vec<QueuedOutcome>,
}

/// A key outcome of a queued batch, and the record item it depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedOutcome {
    /// The outcome as settled (before the record was written).
    pub outcome: KeyOutcomeWrite,
    /// Index, in the same `write_batch` call, of the key's record item, if it has one.
    pub record: Option<usize>,
}

/// A list function's cursor, saved with the outcomes of the keys it listed before saving it
/// (see `Keys::save_cursor`): the next run of the list function starts from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListCursorWrite {
    /// The model listed.
    pub model: String,
    /// The list function, `module::function`.
    pub lister: String,
    /// The cursor, as the list function saved it.
    pub value: Value,
    /// True once the list function returned after listing everything (its last cursor):
    /// a run that starts after it lists from the start, or from the cursor when incremental.
    pub finished: bool,
    /// The run that saved it.
    pub run: RunId,
    /// When.
    pub at: Timestamp,
}

/// A saved list cursor as stored (what [`ListCursorWrite`] wrote).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListCursorInfo {
    /// The cursor, as the list function saved it.
    pub value: Value,
    /// True when the run that saved it listed to the end.
    pub finished: bool,
    /// The run that saved it.
    pub run: RunId,
    /// When.
    pub at: Timestamp,
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
