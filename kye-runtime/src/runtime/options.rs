//! What a run is asked to do: the request text and its options ([`FetchRequest`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::duration::parse as parse_duration;
use crate::error::{Error, Result};
use crate::store::RunId;

/// What to fetch and how: the request text plus follow depth, freshness and resume options.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    /// The request, e.g. `Pokemon.id in 1..=151`.
    pub request: String,
    /// How many levels of references to follow (0: none).
    pub follow: u32,
    /// Skip keys stored less than this long ago.
    pub max_age: Option<Duration>,
    /// Fetch even fresh keys; a bare model's list function starts without its saved cursor.
    pub refresh: bool,
    /// Resume an interrupted run of the same request (default: yes).
    pub resume: bool,
    /// Overrides `run.concurrency` for this run.
    pub concurrency: Option<usize>,
    /// Called with the run's id once the store has recorded its start.
    on_start: Option<OnStart>,
}

/// [`FetchRequest::on_start`]'s callback.
#[derive(Clone)]
struct OnStart(Arc<dyn Fn(RunId) + Send + Sync>);

impl fmt::Debug for OnStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnStart(..)")
    }
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
            on_start: None,
        }
    }

    /// Calls `f` with the run's id as soon as the store has recorded the run's start, before
    /// any key is fetched (a server answers a started backfill with its id this way).
    pub fn on_start(mut self, f: impl Fn(RunId) + Send + Sync + 'static) -> Self {
        self.on_start = Some(OnStart(Arc::new(f)));
        self
    }

    /// Tells the [`FetchRequest::on_start`] callback, if any, that run `run` started.
    pub(crate) fn started(&self, run: RunId) {
        if let Some(OnStart(f)) = &self.on_start {
            f(run);
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

    /// Fetches every key even when fresh; a list function (`fetch 'Model'`) lists from the
    /// start, its saved cursor ignored and replaced.
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
