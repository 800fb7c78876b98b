//! [`Runtime`]: request → registry → fetch → validate → store → report.
//!
//! ```no_run
//! # async fn demo() -> kye_runtime::Result<()> {
//! use kye_runtime::runtime::{FetchRequest, Runtime};
//!
//! let rt = Runtime::builder().store("sqlite:kye.db").build()?;
//! // One key: fetched, validated, stored; the record or the validation errors come back.
//! let one = rt.get("Pokemon.id = 25").await?;
//! println!("{}", one.status());
//! // A backfill, following references one level deep, skipping keys stored in the last day.
//! let summary = rt
//!     .fetch(FetchRequest::new("Pokemon.id in 1..=151").follow(1).max_age_str("1d")?)
//!     .await?;
//! println!("{summary}");
//! # Ok(()) }
//! ```
//!
//! Each key goes through one pipeline:
//!
//! 1. **Skip?** A key finished by the chain of interrupted runs being resumed (or by any run
//!    since the chain began) is skipped; so is a key stored less than `max_age` ago (unless
//!    `refresh`). With follow, a skipped key's stored record still has its references queued.
//! 2. **Fetch** through its fetcher with a [`Context`] scoped to that fetcher, under the
//!    executor's limits, timeout and retries ([`crate::exec`]).
//! 3. **Validate** the returned JSON against the model with [`kye_lang::validate::validate_record`];
//!    the record must also carry the requested key.
//! 4. **Store**: valid records (normalized) are written; invalid payloads go to the rejects
//!    table, raw, with the structured errors; unknown fields are recorded as drift. Every key
//!    gets an outcome row (stored, missing, rejected, failed, skipped), which is what resume
//!    reads. Writes are batched (up to 256 keys or 250 ms) by a single writer thread.
//! 5. **Follow** (depth > 0): references to other models in a stored record are queued, each
//!    referenced key once per run, through the fetcher of that model.
//!
//! A run interrupted by Ctrl-C or SIGTERM (or killed) is resumed by the next run of the same
//! request: keys it, or any run it resumed in turn, finished are not fetched again; the store replaces records by primary key, so there
//! are never duplicate rows.

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kye_lang::validate::{validate_record, ErrorKind, RecordReport, ValidationError};
use kye_lang::Type;
use serde_json::Value;
use tracing::Instrument;

use crate::context::Context;
use crate::error::{Error, ErrorClass, Result};
use crate::exec::{ExecSettings, ExecStats, Executor, Finished, Outcome, Shutdown, Sink, Work};
use crate::model::{Key, KeyValue};
use crate::registry::{FetcherRegistration, RegisteredModel, Registry};
use crate::request::{KeySet, ResolvedRequest};
use crate::store::{
    open_store, DriftWrite, IndexKey, KeyOutcomeWrite, KeyStatus, NewRun, Provenance, RecordWrite,
    RejectWrite, RunCounts, RunEnd, RunId, RunStatus, Store, StoreSpec, Timestamp, WriteItem,
};
use crate::{config::Config, duration::parse as parse_duration};
use crate::{redact::redact_text, secrets::Secrets};

/// Default store when neither the builder nor `store` in `kye.toml` names one.
pub const DEFAULT_STORE: &str = "sqlite:kye.db";
/// Keys buffered by the writer before a write (also flushed every [`FLUSH_INTERVAL`]).
pub const FLUSH_KEYS: usize = 256;
/// Longest time a finished key waits in the writer's buffer (checked as keys finish).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How many failed and rejected keys a [`FetchSummary`] lists (counts are always complete).
pub const SUMMARY_EXAMPLES: usize = 20;

enum RegistrySource {
    Global,
    Owned(Registry),
}

/// Progress of a running fetch, passed to the [`RuntimeBuilder::on_progress`] callback after
/// each write.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The run.
    pub run: RunId,
    /// Outcomes written so far.
    pub counts: RunCounts,
    /// Keys stopped by an interrupt.
    pub interrupted: u64,
    /// Keys known so far: requested keys plus referenced keys queued by follow.
    pub total: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Builds a [`Runtime`]: registry, configuration, secrets, store, execution settings.
pub struct RuntimeBuilder {
    registry: RegistrySource,
    config_file: Option<PathBuf>,
    config: Option<Config>,
    env: Option<Vec<(String, String)>>,
    secrets: Option<Secrets>,
    store_spec: Option<String>,
    store: Option<Box<dyn Store>>,
    concurrency: Option<usize>,
    handle_ctrl_c: bool,
    progress: Option<ProgressFn>,
    shutdown: Option<Shutdown>,
}

impl fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeBuilder")
            .field("config_file", &self.config_file)
            .field("store", &self.store_spec)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        RuntimeBuilder {
            registry: RegistrySource::Global,
            config_file: None,
            config: None,
            env: None,
            secrets: None,
            store_spec: None,
            store: None,
            concurrency: None,
            handle_ctrl_c: true,
            progress: None,
            shutdown: None,
        }
    }
}

impl RuntimeBuilder {
    /// Uses this registry instead of the binary's (`kye_runtime::registry()`).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = RegistrySource::Owned(registry);
        self
    }

    /// Reads configuration from this file (it must exist) instead of `KYE_CONFIG` / `./kye.toml`.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Uses this configuration as is (no file lookup, no environment overrides).
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Reads `KYE_*` overrides and secrets from these variables instead of the process
    /// environment (tests, embedding).
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = Some(vars.into_iter().collect());
        self
    }

    /// Uses these secrets instead of the environment and the secrets file.
    pub fn secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The store: `sqlite:PATH`, `PATH.db` or `dir:PATH` (default: `store` in `kye.toml`, else
    /// `sqlite:kye.db`).
    pub fn store(mut self, spec: impl Into<String>) -> Self {
        self.store_spec = Some(spec.into());
        self
    }

    /// Uses an already opened store.
    pub fn store_instance(mut self, store: Box<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Overrides `run.concurrency`.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// Whether `fetch` stops gracefully on Ctrl-C and SIGTERM (default: yes). Note that once
    /// tokio listens for them, these signals no longer end the process by themselves.
    pub fn handle_ctrl_c(mut self, yes: bool) -> Self {
        self.handle_ctrl_c = yes;
        self
    }

    /// Calls `f` with the counts after each write (for progress bars).
    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Uses this stop switch (trigger it to stop runs as Ctrl-C would).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Loads configuration and secrets, resolves authentication, opens and prepares the store.
    pub fn build(self) -> Result<Runtime> {
        let env: Vec<(String, String)> = match self.env {
            Some(e) => e,
            None => std::env::vars().collect(),
        };
        let config = match self.config {
            Some(c) => c,
            None => Config::discover(self.config_file.as_deref(), env.iter().cloned())?,
        };
        let secrets = match self.secrets {
            Some(s) => s,
            None => {
                let file = env
                    .iter()
                    .find(|(k, _)| k == "KYE_SECRETS_FILE")
                    .map(|(_, v)| PathBuf::from(v))
                    .or_else(|| config.get_path("secrets.file"));
                Secrets::load(env.iter().cloned(), file.as_deref())?
            }
        };
        let ctx = Context::builder()
            .config(config.clone())
            .secrets(secrets)
            .build()?;
        let mut exec = ExecSettings::from_config(&config)?;
        if let Some(n) = self.concurrency {
            exec.concurrency = n;
        }
        let registry = match self.registry {
            RegistrySource::Owned(r) => Reg::Owned(Box::new(r)),
            RegistrySource::Global => Reg::Static(
                crate::registry::registry().map_err(|e| Error::permanent(e.to_string()))?,
            ),
        };
        let mut store = match self.store {
            Some(s) => s,
            None => {
                let spec: StoreSpec = match (self.store_spec, config.store_spec()) {
                    (Some(spec), _) => spec.parse().map_err(store_err)?,
                    (None, Some(configured)) => configured.map_err(Error::permanent)?,
                    (None, None) => DEFAULT_STORE.parse().map_err(store_err)?,
                };
                open_store(&spec).map_err(store_err)?
            }
        };
        let mut prepared: Vec<*const kye_lang::Schema> = Vec::new();
        for m in registry.get().models() {
            let schema = m.schema();
            if !prepared.contains(&(schema as *const _)) {
                store.prepare(schema).map_err(store_err)?;
                prepared.push(schema as *const _);
            }
        }
        Ok(Runtime {
            inner: Arc::new(Inner {
                registry,
                ctx,
                exec,
                store: Mutex::new(store),
                handle_ctrl_c: self.handle_ctrl_c,
                progress: self.progress,
                shutdown: self.shutdown.unwrap_or_default(),
            }),
        })
    }
}

fn store_err(e: crate::store::StoreError) -> Error {
    Error::other(e)
}

enum Reg {
    Static(&'static Registry),
    Owned(Box<Registry>),
}

impl Reg {
    fn get(&self) -> &Registry {
        match self {
            Reg::Static(r) => r,
            Reg::Owned(r) => r,
        }
    }
}

struct Inner {
    registry: Reg,
    ctx: Context,
    exec: ExecSettings,
    store: Mutex<Box<dyn Store>>,
    handle_ctrl_c: bool,
    progress: Option<ProgressFn>,
    shutdown: Shutdown,
}

/// The kye runtime: fetches requests through the registry into the store.
///
/// Cheap to clone (an `Arc` inside). See the module docs for the pipeline.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let store = self
            .inner
            .store
            .lock()
            .map(|s| format!("{}:{}", s.kind(), s.location().display()))
            .unwrap_or_default();
        f.debug_struct("Runtime")
            .field("store", &store)
            .field("concurrency", &self.inner.exec.concurrency)
            .finish_non_exhaustive()
    }
}

/// What to fetch and how: the request text plus follow depth, freshness and resume options.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The request, e.g. `Pokemon.id in 1..=151`.
    pub request: String,
    /// How many levels of references to follow (0: none).
    pub follow: u32,
    /// Skip keys stored less than this long ago.
    pub max_age: Option<Duration>,
    /// Fetch even fresh keys.
    pub refresh: bool,
    /// Resume an interrupted run of the same request (default: yes).
    pub resume: bool,
    /// Overrides `run.concurrency` for this run.
    pub concurrency: Option<usize>,
}

impl FetchRequest {
    /// A request with default options (no follow, no max-age, resume on).
    pub fn new(request: impl Into<String>) -> Self {
        FetchRequest {
            request: request.into(),
            follow: 0,
            max_age: None,
            refresh: false,
            resume: true,
            concurrency: None,
        }
    }

    /// Keys in flight at once for this run (overrides `run.concurrency`).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }

    /// Follows references `depth` levels deep.
    pub fn follow(mut self, depth: u32) -> Self {
        self.follow = depth;
        self
    }

    /// Skips keys stored less than `age` ago.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// [`FetchRequest::max_age`] from text such as `"1d"`, `"6h"`, `"30m"`.
    pub fn max_age_str(self, age: &str) -> Result<Self> {
        let d = parse_duration(age).map_err(|e| Error::permanent(format!("--max-age: {e}")))?;
        Ok(self.max_age(d))
    }

    /// Fetches every key even when fresh.
    pub fn refresh(mut self, yes: bool) -> Self {
        self.refresh = yes;
        self
    }

    /// Whether to resume an interrupted run of the same request.
    pub fn resume(mut self, yes: bool) -> Self {
        self.resume = yes;
        self
    }
}

impl From<&str> for FetchRequest {
    fn from(s: &str) -> Self {
        FetchRequest::new(s)
    }
}

impl From<String> for FetchRequest {
    fn from(s: String) -> Self {
        FetchRequest::new(s)
    }
}

/// A key that ended failed or rejected, for the summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KeyProblem {
    /// Model.
    pub model: String,
    /// The key, as in a request (`25`, `"pikachu"`).
    pub key: String,
    /// `failed` or `rejected`.
    pub status: KeyStatus,
    /// Why.
    pub reason: String,
}

/// The result of [`Runtime::fetch`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchSummary {
    /// The run id in the store.
    pub run: RunId,
    /// The request.
    pub request: String,
    /// How the run ended.
    pub status: RunStatus,
    /// Outcomes: stored, rejected, missing, failed, skipped (fresh or done by the resumed run).
    pub counts: RunCounts,
    /// Keys stopped in flight by an interrupt (not recorded; the next run fetches them).
    pub interrupted: u64,
    /// Keys requested.
    pub requested: u64,
    /// Referenced keys queued by follow.
    pub followed: u64,
    /// Retries made.
    pub retries: u64,
    /// The interrupted run this one resumed.
    pub resumed_from: Option<RunId>,
    /// Wall time.
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Time the writer spent writing to the store (it runs alongside fetching; close to
    /// `duration` means the store is the bottleneck).
    #[serde(serialize_with = "ser_secs")]
    pub store_time: Duration,
    /// Up to [`SUMMARY_EXAMPLES`] failed keys with reasons.
    pub failures: Vec<KeyProblem>,
    /// Up to [`SUMMARY_EXAMPLES`] rejected keys with reasons.
    pub rejects: Vec<KeyProblem>,
    /// Why the run ended early when a host could not be reached (`cannot reach HOST: N keys
    /// not attempted, run again to resume`); absent from the JSON otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl FetchSummary {
    /// True when the run completed and every key ended stored, missing or skipped.
    pub fn is_clean(&self) -> bool {
        self.status == RunStatus::Completed && self.counts.failed == 0 && self.counts.rejected == 0
    }
}

impl fmt::Display for FetchSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "run {} {}: {} stored, {} rejected, {} missing, {} failed, {} skipped",
            self.run, self.status, c.stored, c.rejected, c.missing, c.failed, c.skipped
        )?;
        if self.interrupted > 0 {
            write!(f, ", {} interrupted", self.interrupted)?;
        }
        write!(f, " in {:.1}s", self.duration.as_secs_f64())?;
        if self.followed > 0 {
            write!(f, " ({} referenced keys followed)", self.followed)?;
        }
        if let Some(r) = self.resumed_from {
            write!(f, " (resumed run {r})")?;
        }
        Ok(())
    }
}

/// The result of [`Runtime::get`].
#[derive(Debug, Clone)]
pub enum GetResult {
    /// Valid and stored: the normalized record, and warnings (e.g. unknown fields → drift).
    Stored {
        /// The record as stored.
        record: Value,
        /// Non-fatal findings.
        warnings: Vec<ValidationError>,
        /// The run.
        run: RunId,
    },
    /// Invalid: quarantined in rejects.
    Rejected {
        /// The payload as fetched.
        payload: Value,
        /// Why it is invalid.
        errors: Vec<ValidationError>,
        /// The run.
        run: RunId,
    },
    /// The source has no such key.
    Missing {
        /// Why (e.g. `HTTP 404 Not Found (url)`).
        reason: String,
        /// The run.
        run: RunId,
    },
}

impl GetResult {
    /// `stored`, `rejected` or `missing`.
    pub fn status(&self) -> KeyStatus {
        match self {
            GetResult::Stored { .. } => KeyStatus::Stored,
            GetResult::Rejected { .. } => KeyStatus::Rejected,
            GetResult::Missing { .. } => KeyStatus::Missing,
        }
    }

    /// The stored record, if any.
    pub fn record(&self) -> Option<&Value> {
        match self {
            GetResult::Stored { record, .. } => Some(record),
            _ => None,
        }
    }
}

/// What every key of one fetcher shares: built once per fetcher, not once per key.
struct Target {
    model: RegisteredModel,
    fetcher: &'static FetcherRegistration,
    /// The fetcher's identifier (`Pokemon.id`): its name for limits, config and spans.
    name: Arc<str>,
    /// `module::function`, the provenance of what it stores.
    provenance: String,
}

impl Target {
    fn new(model: RegisteredModel, fetcher: &'static FetcherRegistration) -> Arc<Target> {
        Arc::new(Target {
            name: Arc::from(fetcher.identifier_text()),
            provenance: format!("{}::{}", fetcher.module_path, fetcher.function),
            model,
            fetcher,
        })
    }
}

/// One key to fetch.
struct Job {
    target: Arc<Target>,
    key: Key,
    index_key: IndexKey,
    depth: u32,
}

impl Work for Job {
    fn fetcher(&self) -> &str {
        &self.target.name
    }
    fn model(&self) -> &str {
        self.target.model.name()
    }
    fn key(&self) -> String {
        self.key.to_string()
    }
}

impl Job {
    fn new(target: Arc<Target>, key: Key, depth: u32) -> Job {
        let index_key = IndexKey::new(
            target.fetcher.identifier.iter().copied(),
            key.values().iter().map(KeyValue::to_json),
        );
        Job {
            target,
            key,
            index_key,
            depth,
        }
    }

    fn provenance_name(&self) -> String {
        self.target.provenance.clone()
    }
}

/// What one key's call produced (before writing).
enum KeyResult {
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

struct Shared {
    inner: Arc<Inner>,
    refresh: bool,
    max_age: Option<Duration>,
    /// The first run of the chain of interrupted runs being resumed (see [`resume_chain`]).
    resume_since: Option<RunId>,
    /// `--follow` depth: a skipped key above it still has its stored references followed.
    follow_depth: u32,
}

impl Shared {
    fn skip_reason(&self, job: &Job) -> Result<Option<String>> {
        if self.resume_since.is_none() && (self.refresh || self.max_age.is_none()) {
            return Ok(None);
        }
        let store = self.inner.store.lock().unwrap_or_else(|p| p.into_inner());
        let model = job.target.model.name();
        if let Some(since) = self.resume_since {
            // Finished by a run of the resumed chain, or by any run started since it began
            // (its record is at least as new): not fetched again.
            if let Some(o) = store
                .latest_done(model, &job.index_key)
                .map_err(store_err)?
            {
                if o.run >= since {
                    return Ok(Some(format!("{} by run {}", o.status, o.run)));
                }
            }
        }
        if let (false, Some(max_age)) = (self.refresh, self.max_age) {
            if let Some(at) = store
                .last_stored(model, &job.index_key)
                .map_err(store_err)?
            {
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

    async fn process(&self, job: Arc<Job>, attempt: u32) -> Result<KeyResult> {
        if attempt == 1 {
            if let Some(reason) = self.skip_reason(&job)? {
                // Its references are followed as if it had been fetched (and are skipped in
                // turn when they are fresh or done).
                let record = if self.follow_depth > job.depth {
                    let store = self.inner.store.lock().unwrap_or_else(|p| p.into_inner());
                    store
                        .record(job.target.model.name(), &job.index_key)
                        .map_err(store_err)?
                } else {
                    None
                };
                return Ok(KeyResult::Skipped { reason, record });
            }
        }
        let ctx = self
            .inner
            .ctx
            .for_fetcher_name(job.target.name.clone())
            .with_attempt(attempt);
        let duplicates = crate::json_dups::notes();
        let ctx = ctx.with_duplicate_notes(duplicates.clone());
        let fetched = job.target.fetcher.call(&job.key, ctx).await?;
        let Some(payload) = fetched else {
            return Err(Error::missing(format!(
                "{} returned no record for {} = {}",
                job.target.fetcher.function, job.target.name, job.key
            )));
        };
        let model = job.target.model.name();
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
                job.target.model.name(),
                format!(
                    "requested {}.{edge} = {want} but the record has {edge} = {shown}",
                    job.target.model.name()
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

/// Finished keys on their way from the executor's task to the writer thread.
///
/// Keys are collected here and sent as one message when [`HANDOFF_KEYS`] have gathered or the
/// executor has nothing else ready ([`Sink::idle`]): keys that finish together cost the writer
/// one wake-up instead of one each, and a key that finishes alone is sent at once.
struct HandOff {
    tx: std::sync::mpsc::SyncSender<Vec<PendingKey>>,
    batch: Mutex<Vec<PendingKey>>,
}

/// Most keys in one message to the writer.
const HANDOFF_KEYS: usize = 64;

impl HandOff {
    fn new(tx: std::sync::mpsc::SyncSender<Vec<PendingKey>>) -> Self {
        HandOff {
            tx,
            batch: Mutex::new(Vec::new()),
        }
    }

    fn push(&self, key: PendingKey) -> Result<()> {
        let full = {
            let mut batch = self.batch.lock().unwrap_or_else(|p| p.into_inner());
            batch.push(key);
            batch.len() >= HANDOFF_KEYS
        };
        if full {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Sends what has gathered. Blocks while the writer is a full channel behind:
    /// back-pressure.
    fn flush(&self) -> Result<()> {
        let batch = std::mem::take(&mut *self.batch.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return Ok(());
        }
        self.tx
            .send(batch)
            .map_err(|_| Error::permanent("the store writer stopped (see the run's error)"))
    }
}

/// A sink from two closures: `finished` for each key, `idle` when the executor is about to wait.
struct IdleSink<I, F>(I, F);

impl<T, V, I, F> Sink<T, V> for IdleSink<I, F>
where
    I: FnMut() -> Result<()>,
    F: FnMut(Finished<T, V>, &mut Vec<T>) -> Result<()>,
{
    fn finished(&mut self, finished: Finished<T, V>, follow: &mut Vec<T>) -> Result<()> {
        (self.1)(finished, follow)
    }

    fn idle(&mut self) -> Result<()> {
        (self.0)()
    }
}

/// A key's writes waiting for the next flush.
struct PendingKey {
    job: Arc<Job>,
    status: KeyStatus,
    reason: Option<String>,
    /// When the key finished (its outcome's time).
    at: Timestamp,
    record: Option<RecordWrite>,
    reject: Option<RejectWrite>,
    drift: Vec<DriftWrite>,
}

/// Counters the driver updates and the writer reports in progress.
#[derive(Default)]
struct Live {
    interrupted: AtomicU64,
    total: AtomicU64,
}

/// What the writer hands back at the end of a run.
struct Written {
    counts: RunCounts,
    busy: Duration,
    failures: Vec<KeyProblem>,
    rejects: Vec<KeyProblem>,
    error: Option<Error>,
}

/// The single writer: runs on a blocking thread, receives finished keys over a bounded channel
/// (back-pressure on the executor when the store is slow) and writes them in batches of
/// [`FLUSH_KEYS`], or every [`FLUSH_INTERVAL`] when keys trickle in.
struct Writer {
    busy: Duration,
    inner: Arc<Inner>,
    run: RunId,
    started: Instant,
    buffer: Vec<PendingKey>,
    counts: RunCounts,
    live: Arc<Live>,
    failures: Vec<KeyProblem>,
    rejects: Vec<KeyProblem>,
}

impl Writer {
    fn run_loop(mut self, rx: std::sync::mpsc::Receiver<Vec<PendingKey>>) -> Written {
        use std::sync::mpsc::RecvTimeoutError;
        let mut deadline = Instant::now() + FLUSH_INTERVAL;
        let error = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let flush_now = match rx.recv_timeout(wait) {
                Ok(mut batch) => {
                    self.buffer.append(&mut batch);
                    self.buffer.len() >= FLUSH_KEYS
                }
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => break self.flush().err(),
            };
            if flush_now {
                if let Err(e) = self.flush() {
                    break Some(e);
                }
                deadline = Instant::now() + FLUSH_INTERVAL;
            }
        };
        Written {
            counts: self.counts,
            busy: self.busy,
            failures: self.failures,
            rejects: self.rejects,
            error,
        }
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let began = Instant::now();
        let result = self.write_buffer();
        self.busy += began.elapsed();
        result
    }

    fn write_buffer(&mut self) -> Result<()> {
        let mut pending = std::mem::take(&mut self.buffer);
        let mut store = self.inner.store.lock().unwrap_or_else(|p| p.into_inner());
        // Phase 1: records, rejects, drift.
        let mut items = Vec::with_capacity(pending.len());
        let mut owners = Vec::with_capacity(pending.len());
        for (i, p) in pending.iter_mut().enumerate() {
            if let Some(r) = p.record.take() {
                items.push(WriteItem::Record(r));
                owners.push(Some(i));
            }
            if let Some(r) = p.reject.take() {
                items.push(WriteItem::Reject(r));
                owners.push(Some(i));
            }
            for d in p.drift.drain(..) {
                items.push(WriteItem::Drift(d));
                owners.push(None);
            }
        }
        if !items.is_empty() {
            let results = store
                .write_batch(&items)
                .map_err(|e| Error::other(e).context("cannot write to the store; the run stops"))?;
            for (result, owner) in results.into_iter().zip(owners) {
                if let (Err(e), Some(i)) = (result, owner) {
                    let p = &mut pending[i];
                    let e = redact_text(&e.to_string());
                    tracing::warn!(model = p.job.target.model.name(), key = %p.job.key, error = %e, "record not stored");
                    p.status = KeyStatus::Failed;
                    p.reason = Some(format!("not stored: {e}"));
                }
            }
        }
        // Phase 2: key outcomes, with the final status.
        let outcomes: Vec<WriteItem> = pending
            .iter_mut()
            .map(|p| {
                WriteItem::KeyOutcome(KeyOutcomeWrite {
                    run: self.run,
                    model: p.job.target.model.name().to_string(),
                    key: p.job.index_key.clone(),
                    status: p.status,
                    reason: p.reason.take(),
                    at: p.at,
                })
            })
            .collect();
        let results = store
            .write_batch(&outcomes)
            .map_err(|e| Error::other(e).context("cannot write to the store; the run stops"))?;
        drop(store);
        for (i, (p, o)) in pending.iter().zip(&outcomes).enumerate() {
            if let Some(Err(e)) = results.get(i) {
                tracing::warn!(model = p.job.target.model.name(), key = %p.job.key, error = %e, "key outcome not recorded");
            }
            self.counts.add(p.status);
            let problem = || KeyProblem {
                model: p.job.target.model.name().to_string(),
                key: p.job.key.to_string(),
                status: p.status,
                reason: match o {
                    WriteItem::KeyOutcome(o) => o.reason.clone().unwrap_or_default(),
                    _ => String::new(),
                },
            };
            match p.status {
                KeyStatus::Failed if self.failures.len() < SUMMARY_EXAMPLES => {
                    self.failures.push(problem())
                }
                KeyStatus::Rejected if self.rejects.len() < SUMMARY_EXAMPLES => {
                    self.rejects.push(problem())
                }
                _ => {}
            }
        }
        self.report_progress();
        Ok(())
    }

    fn report_progress(&self) {
        if let Some(f) = &self.inner.progress {
            f(&Progress {
                run: self.run,
                counts: self.counts,
                interrupted: self.live.interrupted.load(Ordering::Relaxed),
                total: self.live.total.load(Ordering::Relaxed),
                elapsed: self.started.elapsed(),
            });
        }
    }
}

/// What the sink keeps of a `get` key beyond its status.
#[derive(Default)]
struct GetCapture {
    record: Option<Value>,
    payload: Option<Value>,
    errors: Vec<ValidationError>,
    warnings: Vec<ValidationError>,
    reason: Option<String>,
}

impl Runtime {
    /// Starts building a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The context given to fetchers (configuration, secrets, HTTP).
    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// The registry in use.
    pub fn registry(&self) -> &Registry {
        self.inner.registry.get()
    }

    /// The stop switch: trigger it to stop a running fetch as Ctrl-C would (each new run
    /// clears it first).
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    /// Runs `f` with the store (for reads such as `runs`, `rejects`, `records`).
    pub fn with_store<T>(&self, f: impl FnOnce(&mut dyn Store) -> T) -> T {
        let mut store = self.inner.store.lock().unwrap_or_else(|p| p.into_inner());
        f(store.as_mut())
    }

    fn resolve(&self, request: &str) -> Result<ResolvedRequest> {
        self.registry().resolve_str(request).map_err(|e| {
            let mut msg = e.to_string();
            if let Some(help) = e.help_text() {
                msg.push_str("\nhelp: ");
                msg.push_str(help);
            }
            Error::permanent(msg)
        })
    }

    /// Fetches, validates and stores one key (`Pokemon.id = 25`), always from the source.
    /// Returns the stored record, the validation errors of a rejected payload, or missing; a
    /// fetch that fails (after retries) is an error naming the key and the reason.
    pub async fn get(&self, request: &str) -> Result<GetResult> {
        let resolved = self.resolve(request)?;
        if resolved.keys().len() != 1 {
            return Err(Error::permanent(format!(
                "`get` takes exactly one key, `{request}` has {}; use `fetch` for several",
                resolved.keys().len()
            )));
        }
        let capture = Arc::new(Mutex::new(GetCapture::default()));
        let opts = FetchRequest::new(request).refresh(true).resume(false);
        let summary = self
            .run(resolved, &opts, Some(capture.clone()), false)
            .await?;
        let mut cap = capture.lock().unwrap_or_else(|p| p.into_inner());
        let run = summary.run;
        let c = &summary.counts;
        if c.stored == 1 {
            Ok(GetResult::Stored {
                record: cap.record.take().unwrap_or(Value::Null),
                warnings: std::mem::take(&mut cap.warnings),
                run,
            })
        } else if c.rejected == 1 {
            Ok(GetResult::Rejected {
                payload: cap.payload.take().unwrap_or(Value::Null),
                errors: std::mem::take(&mut cap.errors),
                run,
            })
        } else if c.missing == 1 {
            Ok(GetResult::Missing {
                reason: cap
                    .reason
                    .take()
                    .unwrap_or_else(|| "the source has no such key".into()),
                run,
            })
        } else if let Some(f) = summary.failures.first() {
            Err(Error::permanent(format!(
                "{request}: {} (run {run})",
                f.reason
            )))
        } else {
            Err(Error::permanent(format!(
                "{request}: interrupted before the key finished (run {run})"
            )))
        }
    }

    /// Runs a backfill: every key of the request (lazily), with follow, freshness and resume
    /// as set in `request`. Returns the summary; the run, every key outcome, rejects and drift
    /// are in the store.
    pub async fn fetch(&self, request: impl Into<FetchRequest>) -> Result<FetchSummary> {
        let request = request.into();
        let resolved = self.resolve(&request.request)?;
        self.run(resolved, &request, None, self.inner.handle_ctrl_c)
            .await
    }

    async fn run(
        &self,
        resolved: ResolvedRequest,
        opts: &FetchRequest,
        capture: Option<Arc<Mutex<GetCapture>>>,
        ctrl_c: bool,
    ) -> Result<FetchSummary> {
        let inner = &self.inner;
        let started = Instant::now();
        // A stop applies to the runs in progress; a new run starts fresh.
        inner.shutdown.reset();
        inner.ctx.http().limiter().reset_reach();
        let requested = resolved.keys().len();
        let (resumed_from, resume_since) = if opts.resume {
            let store = inner.store.lock().unwrap_or_else(|p| p.into_inner());
            resume_chain(store.as_ref(), &opts.request)?
        } else {
            (None, None)
        };
        let run = {
            let mut store = inner.store.lock().unwrap_or_else(|p| p.into_inner());
            let mut new = NewRun::new(opts.request.clone());
            new.resumed_from = resumed_from;
            store.begin_run(&new).map_err(store_err)?
        };
        let span = tracing::info_span!("run", run = %run, request = %opts.request);
        span.in_scope(|| {
            tracing::info!(keys = requested, resumed_from = ?resumed_from, follow = opts.follow, "run started");
        });

        let (model, fetcher, keys) = resolved.into_parts();
        let follow_depth = opts.follow;
        let mut seen: HashSet<String> = HashSet::new();
        // A reference to a key the request itself asks for is left to the request (it may not
        // have been taken from the stream yet), so no key is fetched twice in a run.
        let requested_keys = (follow_depth > 0).then(|| RequestedKeys::new(fetcher, &keys));
        let target = Target::new(model, fetcher);
        let jobs = keys
            .into_keys()
            .map(move |k| Job::new(target.clone(), k, 0));

        let shared = Arc::new(Shared {
            inner: inner.clone(),
            refresh: opts.refresh,
            max_age: opts.max_age,
            resume_since,
            follow_depth,
        });
        let mut settings = inner.exec.clone();
        if let Some(n) = opts.concurrency {
            settings.concurrency = n;
        }
        let executor = Executor::new(settings)
            .with_shutdown(inner.shutdown.clone())
            .with_hosts(inner.ctx.http().limiter().clone());
        let listener = if ctrl_c {
            Some(inner.shutdown.on_ctrl_c())
        } else {
            None
        };
        let live = Arc::new(Live::default());
        live.total.store(requested, Ordering::Relaxed);
        let writer = Writer {
            busy: Duration::ZERO,
            inner: inner.clone(),
            run,
            started,
            buffer: Vec::new(),
            counts: RunCounts::default(),
            live: live.clone(),
            failures: Vec::new(),
            rejects: Vec::new(),
        };
        // Finished keys travel to the writer in small batches (see `HandOff`); the channel's
        // bound is the back-pressure on the executor when the store is slow.
        // Up to 64 batches (at most 4,096 keys) wait in it: room for the executor to go on
        // while the writer commits; a quarter of that stalls the pipeline (30% slower when the
        // store is the bottleneck, `kye-bench overhead`).
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<PendingKey>>(FLUSH_KEYS / 4);
        let hand_off = HandOff::new(tx);
        let writer_span = span.clone();
        let writer_task =
            tokio::task::spawn_blocking(move || writer_span.in_scope(|| writer.run_loop(rx)));
        let mut interrupted = 0u64;
        let mut followed = 0u64;
        let registry = inner.registry.get();
        let call_shared = shared.clone();
        let result = executor
            .run(
                jobs,
                move |job: Arc<Job>, attempt| {
                    let shared = call_shared.clone();
                    async move { shared.process(job, attempt).await }
                },
                IdleSink(|| hand_off.flush(), |finished: Finished<Job, KeyResult>, follow: &mut Vec<Job>| {
                    let job = &finished.item;
                    if follow_depth > 0 && job.depth == 0 {
                        seen.insert(seen_key(job));
                    }
                    let pending = match finished.outcome {
                        Outcome::Interrupted => {
                            interrupted += 1;
                            live.interrupted.fetch_add(1, Ordering::Relaxed);
                            return Ok(());
                        }
                        Outcome::Failed(e) => {
                            let status = match e.class() {
                                ErrorClass::Missing => KeyStatus::Missing,
                                _ => KeyStatus::Failed,
                            };
                            let reason = redact_text(&e.to_string());
                            if status == KeyStatus::Failed {
                                tracing::warn!(model = job.target.model.name(), key = %job.key, reason = %reason, "key failed");
                            }
                            if let Some(cap) = &capture {
                                cap.lock().unwrap_or_else(|p| p.into_inner()).reason =
                                    Some(reason.clone());
                            }
                            pending_key(job, status, Some(reason))
                        }
                        Outcome::Done(KeyResult::Skipped { reason, record }) => {
                            if let Some(value) = record {
                                for next in references(registry, job, &value) {
                                    let own = requested_keys
                                        .as_ref()
                                        .is_some_and(|r| r.contains(&next));
                                    if !own && seen.insert(seen_key(&next)) {
                                        followed += 1;
                                        live.total.fetch_add(1, Ordering::Relaxed);
                                        follow.push(next);
                                    }
                                }
                            }
                            pending_key(job, KeyStatus::Skipped, Some(reason))
                        }
                        Outcome::Done(KeyResult::Fetched { payload, report }) => {
                            let mut drift = drift_of(run, job.target.model.name(), &report);
                            for d in &mut drift {
                                redact_value(&mut d.example);
                            }
                            let RecordReport {
                                value,
                                errors,
                                warnings,
                            } = report;
                            let valid = errors.is_empty();
                            // `get` keeps what it returns; a backfill moves everything into the
                            // writes without copying.
                            if let Some(cap) = &capture {
                                let mut cap = cap.lock().unwrap_or_else(|p| p.into_inner());
                                cap.warnings = warnings;
                                if valid {
                                    cap.record = Some(value.clone());
                                } else {
                                    cap.payload = payload.clone();
                                    cap.errors = errors.clone();
                                }
                            }
                            let mut p;
                            if valid {
                                p = pending_key(job, KeyStatus::Stored, None);
                                if follow_depth > job.depth {
                                    for next in references(registry, job, &value) {
                                        let own = requested_keys
                                            .as_ref()
                                            .is_some_and(|r| r.contains(&next));
                                        if !own && seen.insert(seen_key(&next)) {
                                            followed += 1;
                                            live.total.fetch_add(1, Ordering::Relaxed);
                                            follow.push(next);
                                        }
                                    }
                                }
                                let mut prov = Provenance::new(run, job.provenance_name());
                                prov.fetched_at = Timestamp::now();
                                p.record = Some(RecordWrite::new(job.target.model.name(), value, prov));
                            } else {
                                let reason = summarize(&errors);
                                p = pending_key(job, KeyStatus::Rejected, Some(reason.clone()));
                                p.reject = Some(RejectWrite {
                                    run,
                                    model: job.target.model.name().to_string(),
                                    key: Some(job.index_key.clone()),
                                    fetcher: job.provenance_name(),
                                    payload: payload.unwrap_or(Value::Null),
                                    errors: serde_json::to_value(&errors).unwrap_or(Value::Null),
                                    reason,
                                    at: Timestamp::now(),
                                });
                            }
                            p.drift = drift;
                            p
                        }
                    };
                    hand_off.push(pending)
                }),
            )
            .instrument(span.clone())
            .await;
        if let Some(l) = listener {
            l.abort();
        }
        // Whatever finished is written, even when the run stops on an error.
        let _ = hand_off.flush();
        drop(hand_off);
        let written = writer_task.await.unwrap_or_else(|e| Written {
            counts: RunCounts::default(),
            busy: Duration::ZERO,
            failures: Vec::new(),
            rejects: Vec::new(),
            error: Some(Error::permanent(format!("the store writer crashed: {e}"))),
        });
        // A writer error explains a sink error ("writer stopped"): report the writer's.
        let flushed = match written.error {
            Some(e) => Err(e),
            None => Ok(()),
        };
        let result = match (result, &flushed) {
            (Err(_), Err(_)) => Ok(Default::default()),
            (r, _) => r,
        };
        let unreachable = match &result {
            Ok(ExecStats {
                unreachable: Some((host, _)),
                started,
                ..
            }) => {
                let not_attempted = (requested + followed).saturating_sub(*started);
                let message = format!(
                    "cannot reach {host}: {not_attempted} keys not attempted, run again to resume"
                );
                span.in_scope(|| tracing::warn!("{message}"));
                Some(message)
            }
            _ => None,
        };
        let (status, error, stats) = match (&result, &flushed) {
            (Ok(stats), Ok(())) if unreachable.is_some() => {
                (RunStatus::Interrupted, unreachable.clone(), Some(stats.clone()))
            }
            (Ok(stats), Ok(())) if stats.stopped || interrupted > 0 => (
                RunStatus::Interrupted,
                Some(format!(
                    "interrupted: {interrupted} keys in flight were stopped; run the same request again to resume"
                )),
                Some(stats.clone()),
            ),
            (Ok(stats), Ok(())) => (RunStatus::Completed, None, Some(stats.clone())),
            (Err(e), _) | (Ok(_), Err(e)) => (RunStatus::Failed, Some(e.to_string()), None),
        };
        let mut end = RunEnd::new(status, written.counts);
        end.error = error;
        {
            let mut store = inner.store.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = store.finish_run(run, &end) {
                tracing::error!(error = %e, "cannot record the end of the run");
                if result.is_ok() && flushed.is_ok() {
                    return Err(store_err(e));
                }
            }
        }
        result?;
        flushed?;
        let summary = FetchSummary {
            run,
            request: opts.request.clone(),
            status,
            counts: written.counts,
            interrupted,
            requested,
            followed,
            retries: stats.map(|s| s.retries).unwrap_or(0),
            resumed_from,
            duration: started.elapsed(),
            store_time: written.busy,
            failures: written.failures,
            rejects: written.rejects,
            unreachable,
        };
        span.in_scope(|| tracing::info!(summary = %summary, "run finished"));
        Ok(summary)
    }
}

/// The run a new run of `request` resumes, and the first run of its chain.
///
/// The newest run of the same request text is resumed when it was interrupted (Ctrl-C,
/// SIGTERM, kill) or failed (e.g. disk full); that run may itself have resumed an earlier one,
/// and so on. Every key a run of that chain finished is skipped, however many runs of other
/// requests came between: resume skips a key whose newest finished outcome belongs to a run
/// at or after the chain's first run.
fn resume_chain(store: &dyn Store, request: &str) -> Result<(Option<RunId>, Option<RunId>)> {
    let resumable = |r: &crate::store::RunInfo| {
        r.request == request && matches!(r.status, RunStatus::Interrupted | RunStatus::Failed)
    };
    let Some(latest) = store
        .latest_run_of(request)
        .map_err(store_err)?
        .filter(|r| resumable(r))
    else {
        return Ok((None, None));
    };
    let mut first = latest.clone();
    // Run ids only go down along the chain, so the walk ends.
    while let Some(prev) = first.resumed_from.filter(|p| *p < first.id) {
        match store.run(prev).map_err(store_err)? {
            Some(r) if resumable(&r) => first = r,
            _ => break,
        }
    }
    Ok((Some(latest.id), Some(first.id)))
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

/// Membership test for the keys of the request (ranges without materialising them).
struct RequestedKeys {
    fetcher: &'static FetcherRegistration,
    range: Option<(i64, i64)>,
    list: HashSet<String>,
}

impl RequestedKeys {
    fn new(fetcher: &'static FetcherRegistration, keys: &KeySet) -> Self {
        match keys {
            KeySet::Range { start, end } => RequestedKeys {
                fetcher,
                range: Some((*start, *end)),
                list: HashSet::new(),
            },
            KeySet::Keys(list) => RequestedKeys {
                fetcher,
                range: None,
                list: list.iter().map(|k| k.to_string()).collect(),
            },
        }
    }

    fn contains(&self, job: &Job) -> bool {
        if !std::ptr::eq(job.target.fetcher, self.fetcher) {
            return false;
        }
        match (self.range, job.key.values()) {
            (Some((a, b)), [KeyValue::Int(i)]) => (a..=b).contains(i),
            (Some(_), _) => false,
            (None, _) => self.list.contains(&job.key.to_string()),
        }
    }
}

fn seen_key(job: &Job) -> String {
    format!("{}:{}", job.target.model.name(), job.index_key.canonical())
}

fn pending_key(job: &Arc<Job>, status: KeyStatus, reason: Option<String>) -> PendingKey {
    PendingKey {
        job: job.clone(),
        status,
        reason,
        at: Timestamp::now(),
        record: None,
        reject: None,
        drift: Vec::new(),
    }
}

/// One line for the rejects table and the summary: the first errors, `path: message`.
fn summarize(errors: &[ValidationError]) -> String {
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

/// Keys of other models referenced by a stored record, each with the fetcher that can get it.
fn references(registry: &Registry, job: &Job, record: &Value) -> Vec<Job> {
    let mut out = Vec::new();
    let def = job.target.model.definition();
    for edge in &def.edges {
        let Type::Model(target) = &edge.ty else {
            continue;
        };
        let Some(target_model) = registry.model(target) else {
            continue;
        };
        let values: Vec<&Value> = match record.get(&edge.name) {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(Value::Null) | None => continue,
            Some(v) => vec![v],
        };
        for v in values {
            if let Some((fetcher, key)) = reference_key(registry, target_model, v) {
                out.push(Job::new(
                    Target::new(target_model.clone(), fetcher),
                    key,
                    job.depth + 1,
                ));
            }
        }
    }
    out
}

fn reference_key(
    registry: &Registry,
    target: &RegisteredModel,
    value: &Value,
) -> Option<(&'static FetcherRegistration, Key)> {
    match value {
        Value::Object(obj) => registry.fetchers_for(target.name()).find_map(|f| {
            let values: Option<Vec<KeyValue>> = f
                .identifier
                .iter()
                .map(|edge| obj.get(*edge).and_then(json_key_value))
                .collect();
            let key = Key::new(values?);
            f.check_key(&key).ok().map(|()| (f, key))
        }),
        scalar => {
            // A bare value references the model by its primary index.
            let primary = &target.definition().primary_index()?.edges;
            let f = registry.fetcher(target.name(), primary)?;
            let key = Key::new(vec![json_key_value(scalar)?]);
            f.check_key(&key).ok().map(|()| (f, key))
        }
    }
}

fn json_key_value(v: &Value) -> Option<KeyValue> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(KeyValue::Int(i)),
            None => {
                let f = n.as_f64()?;
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Some(KeyValue::Int(f as i64))
                } else {
                    Some(KeyValue::Float(f))
                }
            }
        },
        Value::String(s) => Some(KeyValue::String(s.clone())),
        Value::Bool(b) => Some(KeyValue::Bool(*b)),
        _ => None,
    }
}
