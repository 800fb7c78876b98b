//! [`Runtime`]: request → registry → fetch → validate → store → report.
//!
//! ```no_run
//! # async fn demo() -> kye_runtime::Result<()> {
//! use kye_runtime::{FetchRequest, Runtime};
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
//! Each key goes through one pipeline, one module a step:
//!
//! 1. **Skip?** (`process.rs`) A key finished by the chain of interrupted runs being resumed (or
//!    by any run since the chain began) is skipped; so is a key stored less than `max_age` ago
//!    (unless `refresh`). These checks read through a read handle of the store, never the
//!    writer's. With follow, a skipped key's stored record still has its references queued.
//! 2. **Fetch** (`process.rs`) through its fetcher with a [`Context`] scoped to that fetcher,
//!    under the executor's limits, timeout and retries ([`crate::exec`]).
//! 3. **Validate** (`process.rs`) the returned JSON against the model with
//!    [`kye_lang::validate::validate_record`]; the record must also carry the requested key.
//! 4. **Settle** (`process.rs`): valid records (normalized) become record writes; invalid
//!    payloads become rejects, raw, with the structured errors; unknown fields become drift.
//!    Every key gets an outcome (stored, missing, rejected, failed, skipped), which is what
//!    resume reads.
//! 5. **Follow** (`follow.rs`, depth > 0): references to other models in a stored record are
//!    queued, each referenced key once per run, through the fetcher of that model.
//! 6. **Store** (`writer.rs`): a single writer thread writes batches (up to 256 keys or 250 ms).
//! 7. **Report** (`summary.rs`): the run's end is recorded and summed up.
//!
//! `run.rs` drives a run through these steps; `builder.rs` makes the [`Runtime`].
//!
//! A run interrupted by Ctrl-C or SIGTERM (or killed) is resumed by the next run of the same
//! request: keys it, or any run it resumed in turn, finished are not fetched again; the store
//! replaces records by primary key, so there are never duplicate rows.

mod batch;
mod builder;
mod follow;
mod job;
mod list;
mod options;
mod process;
#[cfg(feature = "postgres")]
mod queued;
mod run;
mod summary;
mod transform;
mod writer;

use std::fmt;
use std::sync::{Arc, Mutex};

#[cfg(feature = "cli")]
pub(crate) use builder::load_secrets;
pub use builder::{RuntimeBuilder, DEFAULT_STORE};
pub use options::FetchRequest;
#[cfg(feature = "postgres")]
pub(crate) use queued::{QueuedKeys, Reference};
pub use summary::{FetchSummary, GetResult, KeyProblem, Progress, SUMMARY_EXAMPLES};
pub use transform::{TransformCounts, TransformSummary};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::exec::{ExecSettings, Shutdown};
use crate::registry::Registry;
use crate::request::ResolvedRequest;
use crate::store::StoreWrite;
use serde_json::Value;

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// The store the runtime writes through: the writer thread holds it for a batch, runs begin
/// and end through it. Reads during a run go through read handles of their own.
type SharedStore = Arc<Mutex<Box<dyn StoreWrite>>>;

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
    store: SharedStore,
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

impl Runtime {
    /// Starts building a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// The context fetchers get (configuration, secrets, HTTP), for calls made outside any
    /// fetcher: its HTTP helpers retry a retryable failure (429, 5xx, timeouts, cut bodies) as
    /// the executor retries a fetcher's call (`run.max_attempts`, backoff, `Retry-After`).
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

    /// Runs `f` with the store (for reads such as `runs`, `rejects`, `records`). It waits for
    /// the batch being written, if any.
    pub fn with_store<T>(&self, f: impl FnOnce(&mut dyn StoreWrite) -> T) -> T {
        let mut store = self.inner.store.lock().unwrap_or_else(|p| p.into_inner());
        f(store.as_mut())
    }

    pub(crate) fn resolve(&self, request: &str) -> Result<ResolvedRequest> {
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
        if let Some(l) = resolved.keys().lister() {
            return Err(Error::permanent(format!(
                "`get` takes one key; `{request}` asks for every key `{}` lists: use `fetch` for that, or name the key (`{} = ...`)",
                l.function,
                l.identifier_text()
            )));
        }
        if resolved.keys().len() != 1 {
            return Err(Error::permanent(format!(
                "`get` takes exactly one key, `{request}` has {}; use `fetch` for several",
                resolved.keys().len()
            )));
        }
        let opts = FetchRequest::new(request).refresh(true).resume(false);
        let (summary, kept) = self.run(resolved, &opts, true, false).await?;
        let run = summary.run;
        let c = &summary.counts;
        if c.stored == 1 {
            Ok(GetResult::Stored {
                record: kept.record.unwrap_or(Value::Null),
                warnings: kept.warnings,
                run,
            })
        } else if c.rejected == 1 {
            Ok(GetResult::Rejected {
                payload: kept.payload.unwrap_or(Value::Null),
                errors: kept.errors,
                run,
            })
        } else if c.missing == 1 {
            Ok(GetResult::Missing {
                reason: kept
                    .reason
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
        let (summary, _) = self
            .run(resolved, &request, false, self.inner.handle_ctrl_c)
            .await?;
        Ok(summary)
    }
}
