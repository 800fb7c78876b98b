//! Step 6 of the flow, the report: what a run tells its caller ([`FetchSummary`], [`GetResult`],
//! [`Progress`]) and how a run's end is decided from the executor's and the writer's results.

use std::fmt;
use std::time::Duration;

use kye_lang::validate::ValidationError;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::exec::ExecStats;
use crate::store::{KeyStatus, RunCounts, RunId, RunStatus};

/// How many failed and rejected keys a [`FetchSummary`] lists (counts are always complete).
pub const SUMMARY_EXAMPLES: usize = 20;

/// Progress of a running fetch, passed to the
/// [`RuntimeBuilder::on_progress`](super::RuntimeBuilder::on_progress) callback after each write.
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

/// The result of [`Runtime::fetch`](super::Runtime::fetch).
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

pub(super) fn ser_secs<S: serde::Serializer>(
    d: &Duration,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
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

/// The result of [`Runtime::get`](super::Runtime::get).
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

/// How a run ended, decided from what the executor and the writer returned.
pub(super) struct Ending {
    /// The run's status.
    pub status: RunStatus,
    /// Why it stopped or failed.
    pub error: Option<String>,
    /// `cannot reach HOST: ...` when a dead host ended it.
    pub unreachable: Option<String>,
    /// Retries the executor made.
    pub retries: u64,
    /// The error the caller gets (the run is recorded first).
    pub failure: Option<Error>,
}

impl Ending {
    /// `executed`: the executor's result; `written`: the writer's error, if it stopped on one;
    /// `known`: keys requested plus keys followed (for the count of keys not attempted).
    pub fn decide(
        executed: Result<ExecStats>,
        written: Option<Error>,
        interrupted: u64,
        known: u64,
    ) -> Ending {
        // A writer error explains a sink error ("writer stopped"): report the writer's.
        let executed = match (executed, &written) {
            (Err(_), Some(_)) => Ok(ExecStats::default()),
            (r, _) => r,
        };
        let stats = match (executed, written) {
            (Ok(stats), None) => stats,
            (Err(e), _) | (Ok(_), Some(e)) => {
                return Ending {
                    status: RunStatus::Failed,
                    error: Some(e.to_string()),
                    unreachable: None,
                    retries: 0,
                    failure: Some(e),
                }
            }
        };
        let unreachable = stats.unreachable.as_ref().map(|(host, _)| {
            let not_attempted = known.saturating_sub(stats.started);
            format!("cannot reach {host}: {not_attempted} keys not attempted, run again to resume")
        });
        let (status, error) = if unreachable.is_some() {
            (RunStatus::Interrupted, unreachable.clone())
        } else if stats.stopped || interrupted > 0 {
            (
                RunStatus::Interrupted,
                Some(format!(
                    "interrupted: {interrupted} keys in flight were stopped; run the same request again to resume"
                )),
            )
        } else {
            (RunStatus::Completed, None)
        };
        Ending {
            status,
            error,
            unreachable,
            retries: stats.retries,
            failure: None,
        }
    }
}
