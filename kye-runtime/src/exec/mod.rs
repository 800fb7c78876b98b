//! The executor: many keys at once, bounded, retried, rate limited, interruptible.
//!
//! [`Executor::run`] pulls work items lazily from an iterator, keeps at most
//! `run.concurrency` of them in flight (so a `1..=1_000_000` range never materialises), calls
//! each one with a per-call timeout and retries retryable failures with exponential backoff and
//! jitter, honouring `Retry-After`. Finished items are handed one at a time to a single sink (the
//! writer), on the task that drives the run: the sink never runs concurrently with itself.
//!
//! The executor is handed its settings ([`ExecSettings`]: global limits and one [`CallPolicy`]
//! per fetcher) and knows nothing of where they come from; `kye.toml`'s `[run]` and
//! `[fetchers."<name>"]` are read into them by [`ExecSettings::from_config`].

mod drive;
pub mod retry;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tracing::Instrument;

use crate::error::{Error, ErrorClass, Result};
pub use retry::Backoff;

/// Default global concurrency.
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Default timeout of a whole fetcher call (`call_timeout`). The timeout of one request made
/// in the call (`timeout`) is the HTTP step's.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Default attempts per key.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default first backoff delay.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Default longest backoff delay.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default cap on a `Retry-After` pause.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Default grace period after Ctrl-C.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// How one fetcher's calls are made.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPolicy {
    /// Timeout of one whole call of the fetcher.
    pub call_timeout: Duration,
    /// Tries per key, at least 1.
    pub max_attempts: u32,
    /// Delays between tries.
    pub backoff: Backoff,
    /// Extra per-fetcher concurrency limit.
    pub concurrency: Option<usize>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            call_timeout: DEFAULT_CALL_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::new(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX),
            concurrency: None,
        }
    }
}

/// Executor settings: global values and per-fetcher overrides.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// Items in flight at once.
    pub concurrency: usize,
    /// After a stop request, how long in-flight calls may go on.
    pub grace_period: Duration,
    /// Policy for fetchers without overrides.
    pub default_policy: CallPolicy,
    /// Per-fetcher policies (by registered fetcher name).
    pub fetchers: HashMap<String, CallPolicy>,
}

impl Default for ExecSettings {
    fn default() -> Self {
        ExecSettings {
            concurrency: DEFAULT_CONCURRENCY,
            grace_period: DEFAULT_GRACE_PERIOD,
            default_policy: CallPolicy::default(),
            fetchers: HashMap::new(),
        }
    }
}

impl ExecSettings {
    /// The policy of a fetcher.
    pub fn policy(&self, fetcher: &str) -> &CallPolicy {
        self.fetchers.get(fetcher).unwrap_or(&self.default_policy)
    }
}

/// A unit of work the executor runs: it names its fetcher, model and key (for limits and spans).
pub trait Work: Send + Sync + 'static {
    /// Registered name of the fetcher that will be called.
    fn fetcher(&self) -> &str;
    /// Model name, for spans.
    fn model(&self) -> &str;
    /// The key, printed, for spans.
    fn key(&self) -> String;
    /// How many keys the item stands for (several when one call fetches many): what
    /// [`ExecStats`] counts, and what the executor weighs finished items by before handing
    /// them on, so that a few large items are handed over as early as many small ones.
    fn size(&self) -> u64 {
        1
    }
}

/// How an item ended.
#[derive(Debug)]
pub enum Outcome<V> {
    /// The call succeeded.
    Done(V),
    /// The call failed for good: a permanent or missing error, or a retryable one after the last
    /// attempt. The error is the last one seen.
    Failed(Error),
    /// Stopped by a shutdown before it could finish.
    Interrupted,
}

/// An item handed to the sink.
#[derive(Debug)]
pub struct Finished<T, V> {
    /// The work item.
    pub item: Arc<T>,
    /// How it ended.
    pub outcome: Outcome<V>,
    /// Attempts made (0 when interrupted before the first).
    pub attempts: u32,
}

/// Receives finished items from [`Executor::run`], on the task that drives the run.
///
/// Any `FnMut(Finished<T, V>, &mut Vec<T>) -> Result<()>` closure is a sink. Implement the
/// trait on a type of your own to also hear when the executor is about to wait for the next
/// item ([`Sink::idle`]): the moment to hand buffered work on, so that items finishing close
/// together travel as one batch while a lone item never waits for company.
pub trait Sink<T, V> {
    /// One finished item; may push follow-up items into `follow`. An error stops the run.
    fn finished(&mut self, finished: Finished<T, V>, follow: &mut Vec<T>) -> Result<()>;

    /// Called when no finished item is ready and the executor is about to wait. The sink may
    /// push follow-up items it held back (keys waiting for company, say) into `follow`;
    /// `quiet` says that nothing is queued or in flight, so no further item will finish
    /// before those. The sink may ask to be called again within the returned time. An error
    /// stops the run, as from [`Sink::finished`].
    fn idle(&mut self, follow: &mut Vec<T>, quiet: bool) -> Result<Option<Duration>> {
        let _ = (follow, quiet);
        Ok(None)
    }
}

impl<T, V, F> Sink<T, V> for F
where
    F: FnMut(Finished<T, V>, &mut Vec<T>) -> Result<()>,
{
    fn finished(&mut self, finished: Finished<T, V>, follow: &mut Vec<T>) -> Result<()> {
        self(finished, follow)
    }
}

/// Counts of a run of the executor.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ExecStats {
    /// Items started, counted by [`Work::size`] (a group of 50 keys counts 50).
    pub started: u64,
    /// Items done, counted by [`Work::size`].
    pub done: u64,
    /// Items failed (any class), counted by [`Work::size`].
    pub failed: u64,
    /// Items interrupted, counted by [`Work::size`].
    pub interrupted: u64,
    /// Retries made (attempts beyond the first).
    pub retries: u64,
    /// Whether a stop was requested (items were left untaken).
    pub stopped: bool,
    /// The host found unreachable that ended the run early, with its consecutive connection
    /// failures (see [`Executor::with_hosts`]).
    pub unreachable: Option<(String, u32)>,
}

/// A stop switch: the first [`Shutdown::trigger`] stops taking new items and starts the grace
/// period; the second ends the grace period at once.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<u8>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(0).0),
        }
    }
}

impl Shutdown {
    /// A new, untriggered switch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests a stop (again: stop now, without waiting for in-flight calls).
    pub fn trigger(&self) {
        self.tx.send_modify(|v| *v = v.saturating_add(1));
    }

    /// Clears a past stop request (the runtime does this when a new run starts).
    pub fn reset(&self) {
        self.tx.send_replace(0);
    }

    /// How many times a stop was requested.
    pub fn level(&self) -> u8 {
        *self.tx.borrow()
    }

    /// Whether a stop was requested.
    pub fn is_triggered(&self) -> bool {
        self.level() > 0
    }

    /// Resolves once the level reaches `level`.
    pub async fn wait_level(&self, level: u8) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|v| *v >= level).await;
    }

    /// Triggers this switch on Ctrl-C (SIGINT) and, on Unix, on SIGTERM (what `kill`, systemd
    /// and container runtimes send), for as long as the returned task lives: the run stops as
    /// for Ctrl-C, is recorded `interrupted` and can be resumed. Returns the listener task;
    /// abort it when the run is over. On Unix the signal handlers are installed before this
    /// returns, so a signal right after it is never missed.
    pub fn on_ctrl_c(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        #[cfg(unix)]
        let listen =
            |kind: tokio::signal::unix::SignalKind, name: &str| match tokio::signal::unix::signal(
                kind,
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for {name}");
                    None
                }
            };
        #[cfg(unix)]
        let mut sigint = listen(tokio::signal::unix::SignalKind::interrupt(), "Ctrl-C");
        #[cfg(unix)]
        let mut sigterm = listen(tokio::signal::unix::SignalKind::terminate(), "SIGTERM");
        tokio::spawn(async move {
            loop {
                #[cfg(unix)]
                {
                    // A signal whose handler could not be installed (or whose stream ended)
                    // never resolves; with neither left, the listener ends.
                    if sigint.is_none() && sigterm.is_none() {
                        return;
                    }
                    let int = async {
                        match sigint.as_mut() {
                            Some(s) => s.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    let term = async {
                        match sigterm.as_mut() {
                            Some(s) => s.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    let (name, got) = tokio::select! {
                        got = int => ("interrupt", got),
                        got = term => ("SIGTERM", got),
                    };
                    if got.is_none() {
                        match name {
                            "interrupt" => sigint = None,
                            _ => sigterm = None,
                        }
                        continue;
                    }
                    tracing::warn!(
                        "{name}: no new keys will be started; in-flight keys get the grace \
                         period (interrupt again to stop now)"
                    );
                }
                #[cfg(not(unix))]
                {
                    if tokio::signal::ctrl_c().await.is_err() {
                        return;
                    }
                    tracing::warn!(
                        "interrupt: no new keys will be started; in-flight keys get the grace \
                         period (interrupt again to stop now)"
                    );
                }
                me.trigger();
            }
        })
    }
}

/// Runs work items with the limits of an [`ExecSettings`].
#[derive(Debug)]
pub struct Executor {
    settings: ExecSettings,
    shutdown: Shutdown,
    hosts: Option<Arc<dyn Reachability>>,
}

/// Tells the executor when a source cannot be reached at all, so that it starts no new items
/// (the HTTP step's per-host limiter does, see [`Executor::with_hosts`]).
pub trait Reachability: std::fmt::Debug + Send + Sync {
    /// The host found unreachable, with its consecutive connection failures, if any.
    fn unreachable(&self) -> Option<(String, u32)>;
}

impl Executor {
    /// An executor with these settings.
    pub fn new(settings: ExecSettings) -> Self {
        Executor {
            settings,
            shutdown: Shutdown::new(),
            hosts: None,
        }
    }

    /// Stops taking new items as soon as `hosts` finds a host unreachable
    /// ([`Reachability::unreachable`]); in-flight items finish (requests to that host fail at
    /// once) and [`ExecStats::unreachable`] names the host.
    pub fn with_hosts<H: Reachability + 'static>(mut self, hosts: Arc<H>) -> Self {
        self.hosts = Some(hosts);
        self
    }

    /// Uses this stop switch (e.g. one shared with a Ctrl-C handler).
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Runs every item from `items` through `call`, handing each finished item to `sink`.
    ///
    /// `call(item, attempt)` is one attempt (attempt 1 is the first). The sink runs on this task,
    /// one item at a time, and may push follow-up items (e.g. referenced keys) into the vector it
    /// is given; they are run before further items from `items`. A sink error stops the run: no
    /// new items start, in-flight ones are drained without being written, and the error is returned.
    /// Finished items are handed over in batches, one after the other, before the executor waits
    /// again (and calls [`Sink::idle`]). At most a few windows of items are taken from `items`
    /// ahead of what the sink has been handed.
    #[cfg_attr(not(test), allow(dead_code))] // the runtime calls `run_with_late`
    pub async fn run<T, V, I, F, Fut, S>(&self, items: I, call: F, sink: S) -> Result<ExecStats>
    where
        T: Work,
        V: Send + 'static,
        I: IntoIterator<Item = T>,
        F: Fn(Arc<T>, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V>> + Send + 'static,
        S: Sink<T, V>,
    {
        self.drive(items, None, call, sink).await
    }

    /// [`Executor::run`] with a second source (when `late` is given): items that arrive while
    /// the run goes on (keys a lister finds page by page, say). They are taken after `items`
    /// and the follow-ups, as they come; the run ends when `items` is exhausted, every sender of `late` is dropped
    /// and everything taken has finished. The channel's bound is the back-pressure on the
    /// sender: the executor takes late items only while it has room for them (a window), so
    /// memory stays flat however many arrive. When the run stops early (a stop request, a
    /// sink error, an unreachable host), the channel is closed, so a sender's next `send`
    /// fails and it knows to stop.
    pub async fn run_with_late<T, V, I, F, Fut, S>(
        &self,
        items: I,
        late: Option<tokio::sync::mpsc::Receiver<T>>,
        call: F,
        sink: S,
    ) -> Result<ExecStats>
    where
        T: Work,
        V: Send + 'static,
        I: IntoIterator<Item = T>,
        F: Fn(Arc<T>, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V>> + Send + 'static,
        S: Sink<T, V>,
    {
        self.drive(items, late, call, sink).await
    }
}

async fn attempt_loop<T, V, F, Fut>(
    item: Arc<T>,
    policy: CallPolicy,
    limit: Option<Arc<Semaphore>>,
    call: Arc<F>,
    shutdown: Shutdown,
) -> Finished<T, V>
where
    T: Work,
    F: Fn(Arc<T>, u32) -> Fut,
    Fut: Future<Output = Result<V>>,
{
    let _permit = match limit {
        Some(sem) => sem.acquire_owned().await.ok(),
        None => None,
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let span = tracing::info_span!(
            "key",
            model = item.model(),
            // Formatted only when the span is recorded.
            key = %item.key(),
            fetcher = item.fetcher(),
            attempt
        );
        let result = tokio::time::timeout(policy.call_timeout, call(item.clone(), attempt))
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| {
                Err(Error::retryable(format!(
                    "the fetcher call timed out after {} (call_timeout)",
                    crate::duration::human(policy.call_timeout)
                )))
            });
        let error = match result {
            Ok(v) => {
                return Finished {
                    item,
                    outcome: Outcome::Done(v),
                    attempts: attempt,
                }
            }
            Err(e) => e,
        };
        let last = attempt >= policy.max_attempts || error.class() != ErrorClass::Retryable;
        if last {
            span.in_scope(|| {
                // Redacted: a fetcher may have put a secret into its own error message.
                let shown = crate::redact::redact_text(&error.to_string());
                tracing::debug!(class = %error.class(), error = %shown, "key failed");
            });
            let error = if error.class() == ErrorClass::Retryable && attempt > 1 {
                error.context(format!("gave up after {attempt} attempts"))
            } else {
                error
            };
            return Finished {
                item,
                outcome: Outcome::Failed(error),
                attempts: attempt,
            };
        }
        let delay = policy.backoff.delay(attempt, error.retry_after());
        span.in_scope(|| {
            tracing::debug!(
                error = %crate::redact::redact_text(&error.to_string()),
                retry_in_ms = delay.as_millis() as u64,
                "retrying"
            );
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_level(1) => {
                return Finished { item, outcome: Outcome::Interrupted, attempts: attempt };
            }
        }
    }
}
