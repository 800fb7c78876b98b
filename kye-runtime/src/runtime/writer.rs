//! Step 5 of the flow, store: settled keys travel from the task driving the run to one writer
//! thread ([`HandOff`]), which writes them to the store in batches ([`Writer`]): first the
//! records, rejects and drift, then every key's outcome with its final status.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::Job;
use super::list::SharedCursors;
use super::summary::{KeyProblem, Progress, SUMMARY_EXAMPLES};
use super::{ProgressFn, SharedStore};
use crate::error::{Error, Result};
use crate::redact::redact_text;
use crate::store::{
    DriftWrite, KeyOutcomeWrite, KeyStatus, RecordWrite, RejectWrite, RunCounts, RunId, Timestamp,
    WriteItem,
};

/// Keys buffered by the writer before a write (also flushed every [`FLUSH_INTERVAL`]).
pub const FLUSH_KEYS: usize = 256;
/// Longest time a finished key waits in the writer's buffer (checked as keys finish).
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);
/// Most keys in one message to the writer.
const HANDOFF_KEYS: usize = 64;
/// Messages waiting for the writer before the hand-off blocks: at most 1,024 keys, four of
/// the writer's batches. Messages are full (64 keys) when keys finish fast, which is when the
/// store is the bottleneck; a deeper channel then only holds more records in memory.
const HANDOFF_MESSAGES: usize = 16;
/// Longest a finished key waits in the hand-off while the executor idles before it is sent
/// on (the writer buffers it for up to [`FLUSH_INTERVAL`] anyway): sending on every idle moment
/// woke the writer thread several times per batch it then wrote.
const HANDOFF_WAIT: Duration = Duration::from_millis(50);

/// A key's writes waiting for the next flush.
pub(super) struct PendingKey {
    pub job: Arc<Job>,
    pub status: KeyStatus,
    pub reason: Option<String>,
    /// When the key finished (its outcome's time).
    pub at: Timestamp,
    pub record: Option<RecordWrite>,
    pub reject: Option<RejectWrite>,
    pub drift: Vec<DriftWrite>,
    /// Records a batch answer held that no key of the batch asked for (rejected on their
    /// own, carried by the first key of the batch), with the key each carries, printed.
    pub strays: Vec<(RejectWrite, String)>,
}

impl PendingKey {
    pub fn new(job: Arc<Job>, status: KeyStatus, reason: Option<String>) -> PendingKey {
        PendingKey {
            job,
            status,
            reason,
            at: Timestamp::now(),
            record: None,
            reject: None,
            drift: Vec::new(),
            strays: Vec::new(),
        }
    }
}

/// Finished keys on their way from the executor's task to the writer thread.
///
/// Keys are collected here and sent as one message when [`HANDOFF_KEYS`] have gathered, when
/// the executor idles ([`crate::exec::Sink::idle`]) with a key that has waited
/// [`HANDOFF_WAIT`], or at the end of the run: keys that finish together cost the writer one
/// wake-up instead of one each.
pub(super) struct HandOff {
    tx: SyncSender<Vec<PendingKey>>,
    batch: Vec<PendingKey>,
    /// When the oldest key of `batch` arrived.
    oldest: Option<Instant>,
}

impl HandOff {
    pub fn push(&mut self, key: PendingKey) -> Result<()> {
        if self.batch.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.batch.push(key);
        if self.batch.len() >= HANDOFF_KEYS {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// Sends what has gathered if its oldest key has waited long enough.
    pub fn flush_waited(&mut self) -> Result<()> {
        match self.oldest {
            Some(t) if t.elapsed() >= HANDOFF_WAIT => self.flush(),
            _ => Ok(()),
        }
    }

    /// Sends what has gathered. Blocks while the writer is a full channel behind:
    /// back-pressure.
    pub fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.oldest = None;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(HANDOFF_KEYS));
        self.tx
            .send(batch)
            .map_err(|_| Error::permanent("the store writer stopped (see the run's error)"))
    }
}

/// Counters the driver updates and the writer reports in progress.
#[derive(Default)]
pub(super) struct Live {
    pub interrupted: AtomicU64,
    pub total: AtomicU64,
}

/// What the writer hands back at the end of a run.
#[derive(Default)]
pub(super) struct Written {
    pub counts: RunCounts,
    /// Time spent writing.
    pub busy: Duration,
    pub failures: Vec<KeyProblem>,
    pub rejects: Vec<KeyProblem>,
    /// The error that stopped the writer.
    pub error: Option<Error>,
}

/// The single writer of a run: receives settled keys and writes them in batches of
/// [`FLUSH_KEYS`], or every [`FLUSH_INTERVAL`] when keys trickle in.
pub(super) struct Writer {
    store: SharedStore,
    progress: Option<ProgressFn>,
    run: RunId,
    started: Instant,
    live: Arc<Live>,
    buffer: Vec<PendingKey>,
    written: Written,
    /// The cursors of the run's list function, saved with the outcomes they cover.
    cursors: Option<SharedCursors>,
}

impl Writer {
    pub fn new(
        store: SharedStore,
        progress: Option<ProgressFn>,
        run: RunId,
        started: Instant,
        live: Arc<Live>,
    ) -> Writer {
        Writer {
            store,
            progress,
            run,
            started,
            live,
            buffer: Vec::new(),
            written: Written::default(),
            cursors: None,
        }
    }

    /// This writer saving the cursors of the run's list function.
    pub fn with_cursors(mut self, cursors: Option<SharedCursors>) -> Writer {
        self.cursors = cursors;
        self
    }

    /// Starts the writer on a blocking thread. Finished keys go in through the [`HandOff`];
    /// its channel's bound is the back-pressure on the executor when the store is slow. Up to
    /// [`HANDOFF_MESSAGES`] messages of at most [`HANDOFF_KEYS`] keys wait in it: room for the
    /// executor to go on while the writer commits.
    pub fn spawn(self, span: tracing::Span) -> (HandOff, tokio::task::JoinHandle<Written>) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<PendingKey>>(HANDOFF_MESSAGES);
        let task = tokio::task::spawn_blocking(move || span.in_scope(|| self.run_loop(rx)));
        let hand_off = HandOff {
            tx,
            batch: Vec::with_capacity(HANDOFF_KEYS),
            oldest: None,
        };
        (hand_off, task)
    }

    fn run_loop(mut self, rx: Receiver<Vec<PendingKey>>) -> Written {
        let mut deadline = Instant::now() + FLUSH_INTERVAL;
        let error = loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let flush_now = match rx.recv_timeout(wait) {
                Ok(mut batch) => {
                    self.buffer.append(&mut batch);
                    self.buffer.len() >= FLUSH_KEYS
                }
                Err(RecvTimeoutError::Timeout) => true,
                Err(RecvTimeoutError::Disconnected) => {
                    break self.flush().and_then(|()| self.close_cursors()).err()
                }
            };
            if flush_now {
                if let Err(e) = self.flush() {
                    break Some(e);
                }
                deadline = Instant::now() + FLUSH_INTERVAL;
            }
        };
        self.written.error = error;
        self.written
    }

    fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let began = Instant::now();
        let pending = std::mem::take(&mut self.buffer);
        let result = self.write(pending);
        self.written.busy += began.elapsed();
        result
    }

    /// At the end of the run: the list function's last cursor, marked finished when it listed
    /// everything and every key it listed is done.
    fn close_cursors(&mut self) -> Result<()> {
        let Some(item) = self.take_cursor(true) else {
            return Ok(());
        };
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        let results = store
            .write_batch(&[item])
            .map_err(|e| Error::other(e).context("cannot save the list function's cursor"))?;
        if let Some(Err(e)) = results.into_iter().next() {
            tracing::warn!(error = %e, "list cursor not saved");
        }
        Ok(())
    }

    fn take_cursor(&self, last: bool) -> Option<WriteItem> {
        let cursors = self.cursors.as_ref()?;
        let mut track = cursors.lock().unwrap_or_else(|p| p.into_inner());
        track.take(self.run, last).map(WriteItem::ListCursor)
    }

    /// Writes `pending` in two store batches: records, rejects and drift; then each key's
    /// outcome with its final status (a record the store refused makes its key `failed`).
    fn write(&mut self, mut pending: Vec<PendingKey>) -> Result<()> {
        let stops = |e| Error::other(e).context("cannot write to the store; the run stops");
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
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
            for (r, _) in &p.strays {
                items.push(WriteItem::Reject(r.clone()));
                owners.push(None);
            }
        }
        if !items.is_empty() {
            let results = store.write_batch(&items).map_err(stops)?;
            for (result, owner) in results.into_iter().zip(owners) {
                if let (Err(e), Some(i)) = (result, owner) {
                    let p = &mut pending[i];
                    let e = redact_text(&e.to_string());
                    tracing::warn!(model = p.job.model(), key = %p.job.key, error = %e, "record not stored");
                    p.status = KeyStatus::Failed;
                    p.reason = Some(format!("not stored: {e}"));
                }
            }
        }
        // Phase 2: key outcomes, with the final status, and the list cursor they complete (in
        // the same transaction: a crash never leaves a cursor ahead of its keys' outcomes).
        if let Some(cursors) = &self.cursors {
            let mut track = cursors.lock().unwrap_or_else(|p| p.into_inner());
            for p in &pending {
                track.settle(p.job.list_seq, p.status.is_done());
            }
        }
        let mut outcomes: Vec<WriteItem> = pending
            .iter()
            .map(|p| {
                WriteItem::KeyOutcome(KeyOutcomeWrite {
                    run: self.run,
                    model: p.job.model().to_string(),
                    key: p.job.index_key.clone(),
                    status: p.status,
                    reason: p.reason.clone(),
                    at: p.at,
                })
            })
            .collect();
        outcomes.extend(self.take_cursor(false));
        let results = store.write_batch(&outcomes).map_err(stops)?;
        drop(store);
        for (i, p) in pending.into_iter().enumerate() {
            if let Some(Err(e)) = results.get(i) {
                tracing::warn!(model = p.job.model(), key = %p.job.key, error = %e, "key outcome not recorded");
            }
            self.count(p);
        }
        self.report_progress();
        Ok(())
    }

    /// Counts a written key, keeping the first failures and rejects as examples.
    fn count(&mut self, p: PendingKey) {
        let w = &mut self.written;
        for (r, shown) in &p.strays {
            if w.rejects.len() < SUMMARY_EXAMPLES {
                w.rejects.push(KeyProblem {
                    model: r.model.clone(),
                    key: shown.clone(),
                    status: KeyStatus::Rejected,
                    reason: r.reason.clone(),
                });
            }
        }
        w.counts.add(p.status);
        let examples = match p.status {
            KeyStatus::Failed => &mut w.failures,
            KeyStatus::Rejected => &mut w.rejects,
            _ => return,
        };
        if examples.len() < SUMMARY_EXAMPLES {
            examples.push(KeyProblem {
                model: p.job.model().to_string(),
                key: p.job.key.to_string(),
                status: p.status,
                reason: p.reason.unwrap_or_default(),
            });
        }
    }

    fn report_progress(&self) {
        if let Some(f) = &self.progress {
            f(&Progress {
                run: self.run,
                counts: self.written.counts,
                interrupted: self.live.interrupted.load(Ordering::Relaxed),
                total: self.live.total.load(Ordering::Relaxed),
                elapsed: self.started.elapsed(),
            });
        }
    }
}
