//! One batch of a queued run (`worker`): its keys through the same steps as any run's keys
//! (process → settle → follow), on the runtime's executor. Nothing is written here: the
//! caller (the queue) writes the batch's records, rejects and drift, its keys' outcomes and its
//! completion in one store transaction, and enqueues the references found into the run.

use std::collections::HashSet;
use std::sync::Arc;

use super::follow::references;
use super::job::{Job, Target};
use super::process::{settle, Processor, SkipPolicy};
use super::run::for_each_key;
use super::writer::PendingKey;
use super::Runtime;
use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::list::{KeySender, ListEvent, ListerRegistration};
use crate::model::Key;
use crate::registry::FetcherRegistration;
use crate::store::{KeyOutcomeWrite, QueuedOutcome, RunId, WriteItem};

/// Longest a listed key waits for the rest of its chunk.
const LISTED_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// What a worker asks of the runtime for one claimed batch.
pub(crate) struct QueuedKeys<'a> {
    pub run: RunId,
    pub model: &'a str,
    /// The fetcher's identifier edges (`["id"]`).
    pub fetcher: &'a [String],
    pub keys: Vec<Key>,
    /// How many references away from the request these keys are.
    pub depth: u32,
    /// The run's follow depth.
    pub follow: u32,
    pub concurrency: Option<usize>,
}

/// A key a stored record references, to be enqueued into the same run.
pub(crate) struct Reference {
    pub model: String,
    pub fetcher: Vec<String>,
    pub key: Key,
    pub depth: u32,
    /// `Model:{"edge":value}`: the key once per run, whichever fetcher reaches it.
    pub seen: String,
}

/// A processed batch: its writes (records, rejects, drift; the caller appends the completion),
/// its keys' outcomes naming their record items, and the references found.
pub(crate) struct QueuedResult {
    pub items: Vec<WriteItem>,
    pub outcomes: Vec<QueuedOutcome>,
    pub references: Vec<Reference>,
    /// Keys stopped by a shutdown before they finished (the caller releases the batch).
    pub interrupted: u64,
}

impl Runtime {
    /// Runs the list function `lister` (whose keys `fetcher` fetches) from its start, handing
    /// its keys to `each` in chunks of `chunk` as its pages arrive (a smaller one when no key
    /// came for a second, and at the end); returns how many it listed. Records a list page carries are not kept (the workers fetch each key), nor are
    /// its cursors saved.
    pub(crate) async fn list_queued(
        &self,
        lister: &'static ListerRegistration,
        fetcher: &'static FetcherRegistration,
        chunk: usize,
        mut each: impl FnMut(Vec<Key>) -> Result<()>,
    ) -> Result<u64> {
        let inner = &self.inner;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<ListEvent>(chunk.max(1));
        let sender = KeySender::for_run(tx, lister, fetcher.check, None);
        let policy = inner.exec.policy(lister.function).clone();
        let ctx = inner.ctx.for_fetcher(lister.function).with_retries(policy);
        let task = tokio::spawn((lister.call)(ctx, sender));
        let mut keys = Vec::with_capacity(chunk);
        let mut events = Vec::with_capacity(64);
        let mut listed = 0;
        loop {
            // Keys wait at most a second for company (a slow list function's page).
            let got = tokio::time::timeout(LISTED_WAIT, rx.recv_many(&mut events, 64))
                .await
                .ok();
            for event in events.drain(..) {
                if let ListEvent::Key(l) = event {
                    keys.push(l.key);
                }
            }
            let ended = got == Some(0);
            if keys.len() >= chunk || (ended || got.is_none()) && !keys.is_empty() {
                listed += keys.len() as u64;
                if let Err(e) = each(std::mem::replace(&mut keys, Vec::with_capacity(chunk))) {
                    task.abort();
                    return Err(e);
                }
            }
            if ended {
                break;
            }
        }
        match task.await {
            Ok(Ok(())) => Ok(listed),
            Ok(Err(e)) => Err(e.context(format!(
                "the list function `{}` of {} failed after listing {listed} keys (those are \
                 queued)",
                lister.function,
                lister.identifier_text()
            ))),
            Err(join) => Err(Error::permanent(format!(
                "the list function `{}` stopped after listing {listed} keys: {join}",
                lister.function
            ))),
        }
    }

    /// Fetches, validates and settles the keys of one claimed batch of a queued run.
    pub(crate) async fn process_queued(&self, q: QueuedKeys<'_>) -> Result<QueuedResult> {
        let inner = &self.inner;
        let registry = self.registry();
        let model = registry.model(q.model).cloned().ok_or_else(|| {
            Error::permanent(format!(
                "queued run {}: this binary has no model {} (workers must run the same kye \
                 binary as the one that enqueued the run)",
                q.run, q.model
            ))
        })?;
        let fetcher = registry.fetcher(q.model, q.fetcher).ok_or_else(|| {
            Error::permanent(format!(
                "queued run {}: this binary has no fetcher of {} by ({}) (workers must run the \
                 same kye binary as the one that enqueued the run)",
                q.run,
                q.model,
                q.fetcher.join(", ")
            ))
        })?;
        let target = Target::new(model, fetcher);
        let depth = q.depth;
        let asked = q.keys.len() as u64;
        let jobs = {
            let t = target.clone();
            q.keys
                .into_iter()
                .map(move |k| Job::new(t.clone(), k, depth))
        };
        let units = super::batch::units(target, jobs);
        // A queued key is always fetched: the queue, not the store, says what is left to do.
        let skip = SkipPolicy {
            refresh: true,
            max_age: None,
            resume_since: None,
            follow_depth: q.follow,
        };
        let processor = Arc::new(Processor::new(inner.ctx.clone(), skip, None));
        let mut settings = inner.exec.clone();
        if let Some(n) = q.concurrency {
            settings.concurrency = n;
        }
        let executor = Executor::new(settings)
            .with_shutdown(inner.shutdown.clone())
            .with_hosts(inner.ctx.http().limiter().clone());
        let run = q.run;
        let mut pending: Vec<PendingKey> = Vec::new();
        let mut refs: Vec<Reference> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut interrupted = 0;
        let mut found = Vec::new();
        let settling = processor.clone();
        let sink = |finished, _follow: &mut Vec<_>| {
            for_each_key(run, finished, &settling, |key, strays| {
                let Some(mut settled) = settle(run, key) else {
                    interrupted += 1;
                    return Ok(());
                };
                settled.pending.strays = strays;
                let job = &settled.pending.job;
                if let (Some(record), true) = (settled.record(), q.follow > job.depth) {
                    for next in references(registry, job, record) {
                        found.push(next);
                    }
                }
                for next in found.drain(..) {
                    let key = next.seen_key();
                    if seen.insert(key.clone()) {
                        refs.push(reference(&next, key));
                    }
                }
                pending.push(settled.pending);
                Ok(())
            })
        };
        executor
            .run(
                units,
                move |unit, attempt| {
                    let processor = processor.clone();
                    async move { processor.process_unit(unit, attempt).await }
                },
                sink,
            )
            .await?;
        // Keys the executor never started (it stops taking keys when a host cannot be
        // reached, or on a stop request) are interrupted too: the batch is not complete.
        let interrupted = interrupted.max(asked.saturating_sub(pending.len() as u64));
        let (items, outcomes) = writes(run, pending);
        Ok(QueuedResult {
            items,
            outcomes,
            references: refs,
            interrupted,
        })
    }
}

fn reference(job: &Job, seen: String) -> Reference {
    Reference {
        model: job.model().to_string(),
        fetcher: job
            .target
            .fetcher
            .identifier
            .iter()
            .map(|e| e.to_string())
            .collect(),
        key: job.key.clone(),
        depth: job.depth,
        seen,
    }
}

/// The batch's writes and its keys' outcomes, each outcome naming its record's item.
fn writes(run: RunId, pending: Vec<PendingKey>) -> (Vec<WriteItem>, Vec<QueuedOutcome>) {
    let mut items = Vec::with_capacity(pending.len());
    let mut outcomes = Vec::with_capacity(pending.len());
    for p in pending {
        let mut record = None;
        if let Some(r) = p.record {
            record = Some(items.len());
            items.push(WriteItem::Record(r));
        }
        if let Some(r) = p.reject {
            items.push(WriteItem::Reject(r));
        }
        items.extend(p.drift.into_iter().map(WriteItem::Drift));
        items.extend(p.strays.into_iter().map(|(r, _)| WriteItem::Reject(r)));
        outcomes.push(QueuedOutcome {
            outcome: KeyOutcomeWrite {
                run,
                model: p.job.model().to_string(),
                key: p.job.index_key.clone(),
                status: p.status,
                reason: p.reason,
                at: p.at,
            },
            record,
        });
    }
    (items, outcomes)
}
