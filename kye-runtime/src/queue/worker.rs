//! The worker loop (`kye worker`): claim a batch, run its keys through the runtime's steps
//! while renewing the lease, enqueue the references found, commit the batch's writes and its
//! completion in one transaction, end the run if that drained it; again, until stopped (or,
//! with `exit_when_idle`, until no run has work).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::Instrument;

use super::{ClaimedBatch, Queue};
use crate::error::{Error, Result};
use crate::runtime::{QueuedKeys, Runtime};
use crate::store::{
    KeyOutcomeWrite, KeyStatus, QueueBatchWrite, QueuedOutcome, StoreError, Timestamp, WriteItem,
};

/// How a worker works ([`Runtime::work`]).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The worker's name in the queue (`runs`, logs); default `HOST:PID`.
    pub name: String,
    /// Keys of a batch in flight at once (default: `run.concurrency`).
    pub concurrency: Option<usize>,
    /// Stop when no run has work left, instead of waiting for more.
    pub exit_when_idle: bool,
    /// How long a claim holds a batch; renewed every third of it while the worker works.
    pub lease: Duration,
    /// Pause between looks at an empty queue.
    pub poll: Duration,
    /// After a stop request (SIGTERM, Ctrl-C), how long the batch in hand may take to finish
    /// before it is released for another worker.
    pub grace: Duration,
    /// Stop on Ctrl-C and SIGTERM (the command line does; a library caller may stop the
    /// worker through [`WorkerOptions::stop`]).
    pub signals: bool,
    /// Set to stop the worker: it claims no further batch and finishes (or, after `grace`,
    /// releases) the one in hand.
    pub stop: Arc<AtomicBool>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        WorkerOptions {
            name: format!("{host}:{}", std::process::id()),
            concurrency: None,
            exit_when_idle: false,
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(500),
            grace: Duration::from_secs(30),
            signals: false,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What a worker did ([`Runtime::work`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    /// Batches it committed.
    pub batches: u64,
    /// Keys of those batches.
    pub keys: u64,
    /// Batches whose commit was refused because the lease was lost (done by another worker).
    pub lost: u64,
    /// Batches it put back (stopped before finishing them, or a write failed).
    pub released: u64,
    /// Batches it failed after they had been claimed too often.
    pub gave_up: u64,
}

/// How one claimed batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchEnd {
    /// Its writes and completion committed.
    Committed,
    /// The lease was lost; nothing was written.
    LeaseLost,
    /// Put back for another worker (interrupted).
    Released,
}

impl Runtime {
    /// Works on queued runs of `queue` until stopped (or, with
    /// [`WorkerOptions::exit_when_idle`], until no run has work): claims a batch, works it
    /// ([`Runtime::work_batch`]), again. From the first call on, this runtime's per-host rates
    /// and `Retry-After` pauses are shared with every worker of the store (a budget in its
    /// `_kye_queue_rates` table), for the rest of the runtime's life. Errors of the database
    /// (a claim that cannot be made) end it; a batch that fails is put back and the worker
    /// goes on.
    pub async fn work(&self, queue: &Queue, opts: &WorkerOptions) -> Result<WorkerReport> {
        let mut report = WorkerReport::default();
        // Each host's rate holds for every worker together (see `budget.rs`).
        let budget = Arc::new(queue.budget()?);
        self.context().http().limiter().set_fleet(budget);
        let listener = opts.signals.then(|| on_signal(opts.stop.clone()));
        let stopping = || opts.stop.load(Ordering::Relaxed) || self.shutdown().is_triggered();
        tracing::info!(worker = %opts.name, "worker started");
        let result = async {
            loop {
                if stopping() {
                    break;
                }
                let Some(batch) = queue.claim(&opts.name, opts.lease)? else {
                    for run in queue.open_runs()? {
                        queue.finish_if_drained(run)?;
                    }
                    if opts.exit_when_idle && !queue.has_work()? {
                        break;
                    }
                    sleep_unless(opts.poll, &stopping).await;
                    continue;
                };
                let keys = batch.keys.len() as u64;
                match self.work_batch(queue, &batch, opts).await {
                    Ok(BatchEnd::Committed) => {
                        report.batches += 1;
                        report.keys += keys;
                        if batch.attempts > batch.max_attempts {
                            report.gave_up += 1;
                        }
                    }
                    Ok(BatchEnd::LeaseLost) => report.lost += 1,
                    Ok(BatchEnd::Released) => report.released += 1,
                    Err(e) => {
                        // Put back for another attempt (it counts: a batch that always fails
                        // this way gives up after its attempts), and a pause before the next.
                        tracing::warn!(batch = batch.id, run = %batch.run, error = %e, "batch failed; put back");
                        report.released += 1;
                        let _ = queue.expire(&batch, &e.to_string());
                        sleep_unless(opts.poll, &stopping).await;
                    }
                }
            }
            Ok::<(), Error>(())
        }
        .await;
        if let Some(l) = listener {
            l.abort();
        }
        tracing::info!(worker = %opts.name, batches = report.batches, keys = report.keys, lost = report.lost, "worker stopped");
        result.map(|()| report)
    }

    /// Works on one claimed batch: its keys fetched, validated and settled (the lease renewed
    /// meanwhile), the references found enqueued, then its writes and completion committed in
    /// one transaction fenced by the lease; the run ended if that drained it.
    pub async fn work_batch(
        &self,
        queue: &Queue,
        batch: &ClaimedBatch,
        opts: &WorkerOptions,
    ) -> Result<BatchEnd> {
        let span =
            tracing::info_span!("batch", batch = batch.id, run = %batch.run, worker = %opts.name);
        self.work_claimed(queue, batch, opts).instrument(span).await
    }

    async fn work_claimed(
        &self,
        queue: &Queue,
        batch: &ClaimedBatch,
        opts: &WorkerOptions,
    ) -> Result<BatchEnd> {
        tracing::info!(
            keys = batch.keys.len(),
            attempt = batch.attempts,
            "batch claimed"
        );
        if batch.attempts > batch.max_attempts {
            return self.give_up(queue, batch);
        }
        // A host found unreachable by an earlier batch is tried again.
        self.context().http().limiter().reset_reach();
        let work = self.process_queued(QueuedKeys {
            run: batch.run,
            model: &batch.model,
            fetcher: &batch.fetcher,
            keys: batch.keys.clone(),
            depth: batch.depth,
            follow: batch.follow,
            concurrency: opts.concurrency,
        });
        tokio::pin!(work);
        let every = (opts.lease / 3).max(Duration::from_millis(10));
        let mut renewed = Instant::now();
        // Looks at the lease and at a stop request a few times a second.
        let mut tick = tokio::time::interval(every.min(Duration::from_millis(200)));
        let mut stop_seen: Option<Instant> = None;
        let processed = loop {
            tokio::select! {
                r = &mut work => break r?,
                _ = tick.tick() => {
                    if renewed.elapsed() >= every {
                        renewed = Instant::now();
                        if !queue.renew(batch, opts.lease)? {
                            tracing::warn!("lease lost while working; the commit will be refused");
                        }
                    }
                    // A stop request: the batch may finish within the grace period, then the
                    // executor is stopped and the batch released.
                    if opts.stop.load(Ordering::Relaxed) {
                        let since = *stop_seen.get_or_insert_with(Instant::now);
                        if since.elapsed() >= opts.grace && !self.shutdown().is_triggered() {
                            self.shutdown().trigger();
                            self.shutdown().trigger();
                        }
                    }
                }
            }
        };
        if processed.interrupted > 0 {
            if opts.stop.load(Ordering::Relaxed) || self.shutdown().is_triggered() {
                queue.release(batch, "the worker stopped before finishing it")?;
                tracing::info!("batch released");
                return Ok(BatchEnd::Released);
            }
            // Stopped early without a stop request: a host could not be reached. The claim
            // counts, so a source that stays down gives its batches up after their attempts.
            let why = match self.context().http().limiter().unreachable() {
                Some((host, failures)) => {
                    format!("{host} could not be reached ({failures} connection failures in a row)")
                }
                None => "the batch stopped before its keys finished".to_string(),
            };
            return Err(Error::permanent(why));
        }
        let followed = queue.enqueue_references(batch.run, processed.references)?;
        let mut items = processed.items;
        items.push(WriteItem::QueueBatch(QueueBatchWrite {
            batch: batch.id,
            lease: batch.lease,
            run: batch.run,
            failed: false,
            outcomes: processed.outcomes,
        }));
        self.commit(queue, batch, &items, followed)
    }

    /// Commits a batch's writes; ends its run if it was the last.
    fn commit(
        &self,
        queue: &Queue,
        batch: &ClaimedBatch,
        items: &[WriteItem],
        followed: u64,
    ) -> Result<BatchEnd> {
        let written = self.with_store(|s| s.write_batch(items));
        match written {
            Err(StoreError::LeaseLost { .. }) => {
                tracing::warn!("commit refused: lease lost (another worker has the batch)");
                Ok(BatchEnd::LeaseLost)
            }
            Err(e) => Err(Error::other(e).context("cannot write the batch")),
            Ok(results) => {
                for (item, result) in items.iter().zip(results) {
                    if let (WriteItem::Record(r), Err(e)) = (item, result) {
                        tracing::warn!(model = %r.model, error = %e, "record not stored");
                    }
                }
                tracing::info!(followed, "batch committed");
                queue.finish_if_drained(batch.run)?;
                Ok(BatchEnd::Committed)
            }
        }
    }

    /// A batch claimed more often than its run allows (its workers died or lost it each
    /// time): its keys fail with the reason, as keys that fail every retry do.
    fn give_up(&self, queue: &Queue, batch: &ClaimedBatch) -> Result<BatchEnd> {
        let reason = match &batch.reason {
            Some(last) => format!(
                "gave up after {} claims of its batch, the last put back because: {last}",
                batch.attempts - 1
            ),
            None => format!(
                "gave up after {} claims of its batch (each worker died or lost its lease \
                 before committing it)",
                batch.attempts - 1
            ),
        };
        tracing::warn!(reason = %reason, "batch failed");
        let index = |key: &crate::model::Key| {
            crate::store::IndexKey::new(
                batch.fetcher.iter().map(String::as_str),
                key.values().iter().map(crate::model::KeyValue::to_json),
            )
        };
        let outcomes = batch
            .keys
            .iter()
            .map(|k| QueuedOutcome {
                outcome: KeyOutcomeWrite {
                    run: batch.run,
                    model: batch.model.clone(),
                    key: index(k),
                    status: KeyStatus::Failed,
                    reason: Some(reason.clone()),
                    at: Timestamp::now(),
                },
                record: None,
            })
            .collect();
        let items = [WriteItem::QueueBatch(QueueBatchWrite {
            batch: batch.id,
            lease: batch.lease,
            run: batch.run,
            failed: true,
            outcomes,
        })];
        self.commit(queue, batch, &items, 0)
    }
}

/// Sets `stop` on Ctrl-C or SIGTERM, for as long as the returned task lives: the worker
/// claims nothing more and finishes (or, after the grace period, releases) its batch.
fn on_signal(stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::spawn(async move {
        #[cfg(unix)]
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::info!("stop requested: finishing the batch in hand");
        stop.store(true, Ordering::Relaxed);
    })
}

/// Sleeps `d`, waking early when `stopping` turns true (checked every 50 ms).
async fn sleep_unless(d: Duration, stopping: &impl Fn() -> bool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stopping() {
        tokio::time::sleep(Duration::from_millis(50).min(d)).await;
    }
}
