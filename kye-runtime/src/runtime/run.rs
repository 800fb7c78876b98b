//! A run from start to end, around the executor: step 1, start (the resumed chain, the run's
//! row); then every key through process → settle → follow → writer ([`KeySink`]); then the
//! end (the run's status, recorded, and its summary).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kye_lang::validate::ValidationError;
use serde_json::Value;
use tracing::Instrument;

use super::batch::Grouper;
use super::follow::Follower;
use super::job::{Batch, Job, Target, Unit};
use super::list::CursorTrack;
use super::options::FetchRequest;
use super::process::{settle, KeyResult, Processor, SkipPolicy, Stray, UnitResult};
use super::summary::{Ending, FetchSummary};
use super::writer::{HandOff, Live, Writer, Written};
use super::Runtime;
use crate::error::{Error, Result};
use crate::exec::{Executor, Finished, Outcome, Sink};
use crate::request::ResolvedRequest;
use crate::store::{NewRun, RejectWrite, RunEnd, RunId, RunStatus, StoreRead, Timestamp};

/// What `get` keeps of its one key beyond the counts: the record, or the rejected payload and
/// its errors, or the reason it is missing.
#[derive(Default)]
pub(super) struct Kept {
    pub record: Option<Value>,
    pub payload: Option<Value>,
    pub errors: Vec<ValidationError>,
    pub warnings: Vec<ValidationError>,
    pub reason: Option<String>,
}

/// Receives each finished key from the executor, on the task driving the run: settles it,
/// queues the references it leads to, and hands its writes to the writer.
struct KeySink<'r> {
    run: RunId,
    follower: Follower<'r>,
    hand_off: HandOff,
    live: Arc<Live>,
    interrupted: u64,
    /// `Some` when the caller keeps what the key returned (`get`).
    kept: Option<Kept>,
    /// Referenced keys of batch fetchers, waiting for their group.
    grouper: Grouper,
    /// Referenced keys of the key being settled (reused).
    referenced: Vec<Job>,
    /// The run's processor: a group whose call failed settles the keys its last attempt
    /// skipped (done, or fresh) as skipped, not with the group's error.
    processor: Arc<Processor>,
}

impl KeySink<'_> {
    /// One finished key; `strays` (records of its batch no key asked for) are written with it.
    fn key(
        &mut self,
        finished: Finished<Job, KeyResult>,
        strays: Vec<(RejectWrite, String)>,
        follow: &mut Vec<Unit>,
    ) -> Result<()> {
        self.follower.finished(&finished.item);
        let Some(mut settled) = settle(self.run, finished) else {
            self.interrupted += 1;
            self.live.interrupted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        settled.pending.strays = strays;
        if let Some(record) = settled.record() {
            let queued = self
                .follower
                .follow(&settled.pending.job, record, &mut self.referenced);
            self.live.total.fetch_add(queued, Ordering::Relaxed);
            for job in self.referenced.drain(..) {
                self.grouper.push(job, follow);
            }
        }
        if let Some(kept) = &mut self.kept {
            let p = &settled.pending;
            *kept = Kept {
                record: p.record.as_ref().map(|r| r.value.clone()),
                payload: p.reject.as_ref().map(|r| r.payload.clone()),
                reason: p.reason.clone(),
                errors: settled.errors,
                warnings: settled.warnings,
            };
        }
        self.hand_off.push(settled.pending)
    }
}

impl Sink<Unit, UnitResult> for &mut KeySink<'_> {
    fn finished(
        &mut self,
        finished: Finished<Unit, UnitResult>,
        follow: &mut Vec<Unit>,
    ) -> Result<()> {
        let run = self.run;
        let processor = self.processor.clone();
        for_each_key(run, finished, &processor, |key, strays| {
            self.key(key, strays, follow)
        })
    }

    fn idle(&mut self, follow: &mut Vec<Unit>, quiet: bool) -> Result<Option<Duration>> {
        self.hand_off.flush_waited()?;
        Ok(self.grouper.flush_due(quiet, follow))
    }
}

/// Hands each key of a finished unit to `each` as if it had been fetched alone, with the
/// records of its batch no key asked for (carried by the first key). A group whose call
/// failed for good fails only the keys it was for: `processor` says how the others settle.
pub(super) fn for_each_key(
    run: RunId,
    finished: Finished<Unit, UnitResult>,
    processor: &Processor,
    mut each: impl FnMut(Finished<Job, KeyResult>, Vec<(RejectWrite, String)>) -> Result<()>,
) -> Result<()> {
    let Finished {
        item,
        outcome,
        attempts,
    } = finished;
    let batch = match &*item {
        Unit::One(job) => {
            let outcome = match outcome {
                Outcome::Done(UnitResult::One(r)) => Outcome::Done(r),
                Outcome::Done(UnitResult::Batch { .. }) => Outcome::Failed(Error::permanent(
                    "a key's call returned a batch's results (bug)",
                )),
                Outcome::Failed(e) => Outcome::Failed(e),
                Outcome::Interrupted => Outcome::Interrupted,
            };
            let item = job.clone();
            return each(
                Finished {
                    item,
                    outcome,
                    attempts,
                },
                Vec::new(),
            );
        }
        Unit::Batch(b) => b,
    };
    // A batch: each of its keys settles as if it had been fetched alone.
    let n = batch.jobs.len();
    let (mut results, strays): (Vec<Option<Result<KeyResult>>>, _) = match outcome {
        Outcome::Done(UnitResult::Batch { results, strays }) => {
            (results.into_iter().map(Some).collect(), strays)
        }
        Outcome::Done(UnitResult::One(_)) => (
            (0..n)
                .map(|_| {
                    Some(Err(Error::permanent(
                        "a batch's call returned one key's result (bug)",
                    )))
                })
                .collect(),
            Vec::new(),
        ),
        Outcome::Failed(e) => {
            // Only the keys the call was for take its error: a key skipped before it (done in
            // the resumed runs, or fresh) or refused by the fetcher's key check settles as it
            // did.
            let mut all = Vec::with_capacity(n);
            let mut error = Some(e);
            for job in &batch.jobs {
                let own = match processor.before_call(job) {
                    Some(r) => r,
                    // The first key the call was for carries the error itself (with its
                    // source), the others a copy.
                    None => {
                        let e = error
                            .take()
                            .unwrap_or_else(|| Error::permanent("the group's call failed"));
                        error = Some(e.for_another_key());
                        Err(e)
                    }
                };
                all.push(Some(own));
            }
            (all, Vec::new())
        }
        Outcome::Interrupted => ((0..n).map(|_| None).collect(), Vec::new()),
    };
    let mut strays: Vec<(RejectWrite, String)> = strays
        .into_iter()
        .map(|stray| stray_reject(run, batch, stray))
        .collect();
    for (job, result) in batch.jobs.iter().zip(results.iter_mut()) {
        let outcome = match result.take() {
            Some(Ok(r)) => Outcome::Done(r),
            Some(Err(e)) => Outcome::Failed(e),
            None => Outcome::Interrupted,
        };
        let finished = Finished {
            item: job.clone(),
            outcome,
            attempts,
        };
        each(finished, std::mem::take(&mut strays))?;
    }
    Ok(())
}

/// The reject of a record a batch answer held that no key of the batch asked for, with the
/// key it carries as shown in the summary.
fn stray_reject(run: RunId, batch: &Batch, stray: Stray) -> (RejectWrite, String) {
    let model = batch.target.model.name();
    tracing::warn!(model, reason = %stray.reason, "record rejected");
    let reject = RejectWrite {
        run,
        model: model.to_string(),
        key: stray.key,
        fetcher: batch.target.provenance.clone(),
        payload: stray.payload,
        errors: serde_json::to_value([&stray.error]).unwrap_or(Value::Null),
        reason: stray.reason,
        at: Timestamp::now(),
    };
    (reject, stray.shown)
}

impl Runtime {
    /// Runs `resolved` as one run: every key fetched, validated and written, references
    /// followed as `opts` asks. With `keep`, what the (last) key returned comes back too.
    pub(super) async fn run(
        &self,
        resolved: ResolvedRequest,
        opts: &FetchRequest,
        keep: bool,
        ctrl_c: bool,
    ) -> Result<(FetchSummary, Kept)> {
        let inner = &self.inner;
        let started = Instant::now();
        // A stop applies to the runs in progress; a new run starts fresh.
        inner.shutdown.reset();
        inner.ctx.http().limiter().reset_reach();
        let requested = resolved.keys().len();

        // Start: the chain this run resumes, the cursor its list function saved last time (if
        // it has one), and its row in the store.
        let (run, resumed_from, resume_since, saved) = {
            let mut store = inner.store.lock().unwrap_or_else(|p| p.into_inner());
            // `--refresh` lists from the start: the saved cursor is ignored (and replaced by
            // the cursors this run saves), which also clears one that keeps failing.
            let saved = match resolved.keys().lister() {
                Some(l) if !opts.refresh => store
                    .list_cursor(l.model, &l.path())
                    .map_err(Error::other)?,
                _ => None,
            };
            let (resumed_from, resume_since) = if opts.resume {
                resume_chain(store.as_ref(), &opts.request)?
            } else {
                (None, None)
            };
            let mut new = NewRun::new(opts.request.clone());
            new.resumed_from = resumed_from;
            // The run names the source of what it was asked for: the lister's when a bare
            // model is listed, else the fetcher's.
            new.source = match resolved.keys().lister() {
                Some(l) => crate::source::source_version_of(l.function).or_else(|| {
                    crate::source::source_version_of(&resolved.fetcher().identifier_text())
                }),
                None => crate::source::source_version_of(&resolved.fetcher().identifier_text()),
            };
            let run = store.begin_run(&new).map_err(Error::other)?;
            (run, resumed_from, resume_since, saved)
        };
        opts.started(run);
        let span = tracing::info_span!("run", run = %run, request = %opts.request);
        span.in_scope(|| {
            tracing::info!(keys = requested, resumed_from = ?resumed_from, follow = opts.follow, "run started");
        });

        // The keys, and what each goes through.
        let (model, fetcher, keys) = resolved.into_parts();
        let follower = Follower::new(self.registry(), opts.follow, fetcher, &keys);
        let target = Target::new(model, fetcher);
        let lister = keys.lister();
        let jobs = {
            let t = target.clone();
            let jobs = keys.into_keys().map(move |k| Job::new(t.clone(), k, 0));
            super::batch::units(target.clone(), jobs)
        };
        let skip = SkipPolicy {
            refresh: opts.refresh,
            max_age: opts.max_age,
            resume_since,
            follow_depth: opts.follow,
        };
        let reader = if skip.reads_store() {
            let store = inner.store.lock().unwrap_or_else(|p| p.into_inner());
            Some(store.reader().map_err(Error::other)?)
        } else {
            None
        };
        let processor = Arc::new(Processor::new(inner.ctx.clone(), skip, reader));
        let mut settings = inner.exec.clone();
        if let Some(n) = opts.concurrency {
            settings.concurrency = n;
        }
        let executor = Executor::new(settings)
            .with_shutdown(inner.shutdown.clone())
            .with_hosts(inner.ctx.http().limiter().clone());
        let listener = ctrl_c.then(|| inner.shutdown.on_ctrl_c());

        // The writer, on its own thread, and the sink that feeds it.
        let live = Arc::new(Live::default());
        live.total.store(requested, Ordering::Relaxed);
        let writer = Writer::new(
            inner.store.clone(),
            inner.progress.clone(),
            run,
            started,
            live.clone(),
        );
        // A bare model: the keys its list function finds, as it finds them, and the cursor it
        // saved last time.
        let cursors = lister.map(|l| CursorTrack::new(l, saved.as_ref()));
        let (hand_off, writer_task) = writer.with_cursors(cursors.clone()).spawn(span.clone());
        let (listed_jobs, listing) = match (lister, cursors) {
            (Some(l), Some(cursors)) => {
                let policy = inner.exec.policy(l.function).clone();
                let (jobs, listing) = super::list::start(
                    l,
                    &inner.ctx,
                    policy,
                    target.clone(),
                    live.clone(),
                    saved,
                    cursors,
                );
                (Some(jobs), Some(listing))
            }
            _ => (None, None),
        };
        let mut sink = KeySink {
            run,
            follower,
            hand_off,
            live,
            interrupted: 0,
            kept: keep.then(Kept::default),
            grouper: Grouper::default(),
            referenced: Vec::new(),
            processor: processor.clone(),
        };
        let executed = executor
            .run_with_late(
                jobs,
                listed_jobs,
                move |unit: Arc<Unit>, attempt| {
                    let processor = processor.clone();
                    async move { processor.process_unit(unit, attempt).await }
                },
                &mut sink,
            )
            .instrument(span.clone())
            .await;
        // Stopped early (Ctrl-C, an error, or a host found unreachable): the list function is
        // stopped too, and what it says about the run stopping is not a failure of its own.
        let stopping = inner.shutdown.is_triggered()
            || executed
                .as_ref()
                .map_or(true, |stats| stats.unreachable.is_some());
        let (listed, list_error) = match listing {
            Some(l) => l.finish(stopping).instrument(span.clone()).await,
            None => (0, None),
        };
        let requested = requested + listed;
        if let Some(l) = listener {
            l.abort();
        }

        // The end: whatever finished is written, even when the run stops on an error.
        let KeySink {
            follower,
            mut hand_off,
            interrupted,
            kept,
            ..
        } = sink;
        let followed = follower.followed;
        let _ = hand_off.flush();
        drop(hand_off);
        let mut written = writer_task.await.unwrap_or_else(|e| Written {
            error: Some(Error::permanent(format!("the store writer crashed: {e}"))),
            ..Written::default()
        });
        let ending = Ending::decide(
            executed,
            written.error.take().or(list_error),
            interrupted,
            requested + followed,
        );
        if let Some(message) = &ending.unreachable {
            span.in_scope(|| tracing::warn!("{message}"));
        }
        let mut end = RunEnd::new(ending.status, written.counts);
        end.error = ending.error;
        {
            let mut store = inner.store.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = store.finish_run(run, &end) {
                tracing::error!(error = %e, "cannot record the end of the run");
                if ending.failure.is_none() {
                    return Err(Error::other(e));
                }
            }
        }
        if let Some(e) = ending.failure {
            return Err(e);
        }
        let summary = FetchSummary {
            run,
            request: opts.request.clone(),
            status: ending.status,
            counts: written.counts,
            interrupted,
            requested,
            followed,
            retries: ending.retries,
            resumed_from,
            duration: started.elapsed(),
            store_time: written.busy,
            failures: written.failures,
            rejects: written.rejects,
            unreachable: ending.unreachable,
        };
        span.in_scope(|| tracing::info!(summary = %summary, "run finished"));
        Ok((summary, kept.unwrap_or_default()))
    }
}

/// The run a new run of `request` resumes, and the first run of its chain.
///
/// The newest run of the same request text is resumed when it was interrupted (Ctrl-C,
/// SIGTERM, kill) or failed (e.g. disk full); that run may itself have resumed an earlier one,
/// and so on. Every key a run of that chain finished is skipped, however many runs of other
/// requests came between: resume skips a key whose newest finished outcome belongs to a run
/// at or after the chain's first run.
fn resume_chain(store: &dyn StoreRead, request: &str) -> Result<(Option<RunId>, Option<RunId>)> {
    let resumable = |r: &crate::store::RunInfo| {
        r.request == request && matches!(r.status, RunStatus::Interrupted | RunStatus::Failed)
    };
    let Some(latest) = store
        .latest_run_of(request)
        .map_err(Error::other)?
        .filter(|r| resumable(r))
    else {
        return Ok((None, None));
    };
    let mut first = latest.clone();
    // Run ids only go down along the chain, so the walk ends.
    while let Some(prev) = first.resumed_from.filter(|p| *p < first.id) {
        match store.run(prev).map_err(Error::other)? {
            Some(r) if resumable(&r) => first = r,
            _ => break,
        }
    }
    Ok((Some(latest.id), Some(first.id)))
}
