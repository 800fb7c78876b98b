//! Step 1 of a run for a bare model (`fetch 'Pokemon'`): its list function runs on a task of
//! its own, and each key it sends becomes a job the executor takes as it arrives. Two bounded
//! channels between them hold the list function back while the run is busy, so a list of a
//! million keys costs the memory of a few hundred.
//!
//! The cursors the list function saves ([`crate::Keys::save_cursor`]) wait in a
//! [`CursorTrack`] until every key listed before them is done; the writer then saves the
//! newest such cursor with those keys' outcomes, in one store transaction.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::batch::Grouper;
use super::job::{Job, Target, Unit};
use super::writer::Live;
use crate::context::Context;
use crate::error::{panic_message, Error, Result};
use crate::exec::CallPolicy;
use crate::list::{KeySender, ListEvent, Listed, ListerRegistration};
use crate::store::{ListCursorInfo, ListCursorWrite, RunId, Timestamp};

/// A run's cursors of one list function, shared by the task forwarding its keys (which
/// numbers them and notes each cursor after the keys before it) and the writer (which settles
/// keys as it writes their outcomes and takes the cursor they complete).
pub(super) type SharedCursors = Arc<Mutex<CursorTrack>>;

/// See [`SharedCursors`].
#[derive(Debug)]
pub(super) struct CursorTrack {
    model: String,
    lister: String,
    /// Cursors saved in this run and not yet written: (keys listed before it, value).
    pending: VecDeque<(u64, Value)>,
    /// Keys 1..=done_through are settled (done, or failed: see `held_at`).
    done_through: u64,
    /// Settled keys above `done_through` (keys finish out of order).
    done_above: BTreeSet<u64>,
    /// The first key that failed (or was not written): no cursor covering it is saved.
    held_at: Option<u64>,
    /// Keys listed so far.
    listed: u64,
    /// The newest cursor, saved in this run or (until then) in an earlier one.
    latest: Option<Value>,
    /// The list function returned after listing everything.
    finished: bool,
    /// The finished mark has been written.
    closed: bool,
}

impl CursorTrack {
    pub fn new(lister: &ListerRegistration, saved: Option<&ListCursorInfo>) -> SharedCursors {
        Arc::new(Mutex::new(CursorTrack {
            model: lister.model.to_string(),
            lister: lister.path(),
            pending: VecDeque::new(),
            done_through: 0,
            done_above: BTreeSet::new(),
            held_at: None,
            listed: 0,
            latest: saved.map(|c| c.value.clone()),
            finished: false,
            closed: false,
        }))
    }

    /// One more key listed: its number.
    fn next_key(&mut self) -> u64 {
        self.listed += 1;
        self.listed
    }

    /// The list function saved `value` after the keys listed so far. A cursor covering a key
    /// that failed can never be written in this run: it is not kept.
    fn saved(&mut self, value: Value) {
        if self.held_at.is_some_and(|h| self.listed >= h) {
            return;
        }
        self.pending.push_back((self.listed, value));
    }

    /// Key `seq` ended: `done` (stored, missing, rejected, skipped) or not (failed).
    pub fn settle(&mut self, seq: u64, done: bool) {
        if seq == 0 {
            return;
        }
        if !done {
            // No cursor at or after it is written in this run: those waiting are dropped, and
            // the key counts as settled so that the keys after it do not pile up in memory.
            let held = self.held_at.map_or(seq, |h| h.min(seq));
            self.held_at = Some(held);
            self.pending.retain(|(n, _)| *n < held);
        }
        if seq == self.done_through + 1 {
            self.done_through = seq;
            while self.done_above.remove(&(self.done_through + 1)) {
                self.done_through += 1;
            }
        } else if seq > self.done_through {
            self.done_above.insert(seq);
        }
    }

    /// The cursor to write with the outcomes just settled: the newest one every key before it
    /// is done for; at the end of a run whose list function finished (`last`), the last cursor
    /// marked finished once every listed key is done.
    pub fn take(&mut self, run: RunId, last: bool) -> Option<ListCursorWrite> {
        let limit = match self.held_at {
            Some(h) => self.done_through.min(h - 1),
            None => self.done_through,
        };
        let mut ready = None;
        while self.pending.front().is_some_and(|(n, _)| *n <= limit) {
            ready = self.pending.pop_front().map(|(_, v)| v);
        }
        if let Some(v) = &ready {
            self.latest = Some(v.clone());
        }
        let complete = last
            && self.finished
            && !self.closed
            && self.held_at.is_none()
            && self.pending.is_empty()
            && self.done_through == self.listed;
        if complete {
            self.closed = true;
        }
        let value = if complete { self.latest.clone() } else { ready }?;
        Some(ListCursorWrite {
            model: self.model.clone(),
            lister: self.lister.clone(),
            value,
            finished: complete,
            run,
            at: Timestamp::now(),
        })
    }
}

/// Keys the list function may run ahead of the executor, per channel.
const LISTED_AHEAD: usize = 256;

/// The run's progress total while a list function announces how many keys it holds: keys
/// announced and not listed yet are counted ahead, and taken back when the listing ends short.
#[derive(Debug, Default)]
struct Announced {
    /// Keys listed so far.
    listed: u64,
    /// Keys counted in the total ahead of their listing.
    ahead: u64,
}

impl Announced {
    /// One more key listed: counted now, unless it was counted ahead.
    fn key(&mut self, live: &Live) {
        self.listed += 1;
        if self.ahead > 0 {
            self.ahead -= 1;
        } else {
            live.total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The list function says the listing holds `n` keys.
    fn announced(&mut self, n: u64, live: &Live) {
        let ahead = n.saturating_sub(self.listed);
        if ahead > self.ahead {
            live.total.fetch_add(ahead - self.ahead, Ordering::Relaxed);
        } else {
            live.total.fetch_sub(self.ahead - ahead, Ordering::Relaxed);
        }
        self.ahead = ahead;
    }

    /// The listing ended: keys announced and never listed leave the total.
    fn done(&mut self, live: &Live) {
        live.total
            .fetch_sub(std::mem::take(&mut self.ahead), Ordering::Relaxed);
    }
}

/// A list function running for a run.
pub(super) struct Listing {
    lister: &'static ListerRegistration,
    cursors: SharedCursors,
    task: JoinHandle<Result<()>>,
    forward: JoinHandle<()>,
    listed: Arc<AtomicU64>,
}

/// Starts `lister` with `ctx` (its HTTP calls retried by `policy`); its keys arrive as jobs of
/// `target` on the receiver, each counted into the run's progress total.
pub(super) fn start(
    lister: &'static ListerRegistration,
    ctx: &Context,
    policy: CallPolicy,
    target: Arc<Target>,
    live: Arc<Live>,
    saved: Option<ListCursorInfo>,
    cursors: SharedCursors,
) -> (mpsc::Receiver<Unit>, Listing) {
    let (key_tx, mut key_rx) = mpsc::channel::<ListEvent>(LISTED_AHEAD);
    let (job_tx, job_rx) = mpsc::channel::<Unit>(LISTED_AHEAD);
    let sender = KeySender::for_run(key_tx, lister, target.fetcher.check, saved);
    let ctx = ctx.for_fetcher(lister.function).with_retries(policy);
    let task = tokio::spawn((lister.call)(ctx, sender));
    let listed = Arc::new(AtomicU64::new(0));
    let forward = {
        let listed = listed.clone();
        let cursors = cursors.clone();
        let path: Arc<str> = Arc::from(lister.path());
        let mut total = Announced::default();
        tokio::spawn(async move {
            // Keys come in bursts (a page at a time): taken together, one wake-up a burst.
            // Keys of a batch fetcher wait for their group (at most `LINGER` for the next).
            let mut events = Vec::with_capacity(64);
            let mut grouper = Grouper::default();
            let mut units = Vec::new();
            loop {
                // Groups whose linger is over go now, before waiting for the next page.
                let wait = grouper.flush_due(false, &mut units);
                for unit in units.drain(..) {
                    if job_tx.send(unit).await.is_err() {
                        return;
                    }
                }
                let got = match wait {
                    None => key_rx.recv_many(&mut events, 64).await,
                    Some(w) => tokio::time::timeout(w, key_rx.recv_many(&mut events, 64))
                        .await
                        .unwrap_or(usize::MAX),
                };
                if got == 0 {
                    // The list function is done: the last groups go as they are.
                    grouper.flush_due(true, &mut units);
                }
                let mut jobs = Vec::with_capacity(events.len());
                {
                    let mut track = cursors.lock().unwrap_or_else(|p| p.into_inner());
                    for event in events.drain(..) {
                        match event {
                            ListEvent::Key(Listed { key, record }) => {
                                let seq = track.next_key();
                                jobs.push(
                                    Job::new(target.clone(), key, 0).listed(seq, &path, record),
                                );
                                total.key(&live);
                            }
                            ListEvent::Cursor(value) => track.saved(value),
                            ListEvent::Total(n) => total.announced(n, &live),
                        }
                    }
                }
                listed.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for job in jobs {
                    grouper.push(job, &mut units);
                }
                for unit in units.drain(..) {
                    if job_tx.send(unit).await.is_err() {
                        // The run stopped: dropping `key_rx` tells the list function.
                        total.done(&live);
                        return;
                    }
                }
                if got == 0 {
                    total.done(&live);
                    return;
                }
            }
        })
    };
    (
        job_rx,
        Listing {
            lister,
            cursors,
            task,
            forward,
            listed,
        },
    )
}

impl Listing {
    /// Waits for the list function once the run is over: the keys it listed, and its error
    /// (which leaves the run incomplete), unless the run was `stopping` anyway, in which case
    /// the function is stopped and what it says is not an error of its own.
    pub async fn finish(self, stopping: bool) -> (u64, Option<Error>) {
        if stopping {
            self.task.abort();
        }
        let result = self.task.await;
        let _ = self.forward.await;
        let listed = self.listed.load(Ordering::Relaxed);
        let function = self.lister.function;
        let error = match result {
            Ok(Ok(())) if !stopping => {
                // Listed to the end: the writer marks the last cursor finished once every key
                // is done.
                self.cursors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .finished = true;
                None
            }
            Ok(Ok(())) => None,
            Err(_) | Ok(Err(_)) if stopping => None,
            Ok(Err(e)) => Some(e.context(format!(
                "the list function `{function}` of {} failed after listing {listed} keys (those were fetched; run the same request again to resume)",
                self.lister.identifier_text()
            ))),
            Err(join) => Some(Error::permanent(format!(
                "the list function `{function}` panicked after listing {listed} keys: {}",
                if join.is_panic() {
                    panic_message(join.into_panic().as_ref())
                } else {
                    "cancelled".to_string()
                }
            ))),
        };
        (listed, error)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::list::tests::LISTER;

    fn track(keys: u64, saves: &[(u64, i64)]) -> CursorTrack {
        let shared = CursorTrack::new(&LISTER, None);
        let mut t = Arc::try_unwrap(shared).unwrap().into_inner().unwrap();
        let mut saves = saves.iter().peekable();
        for _ in 0..keys {
            while let Some((_, v)) = saves.next_if(|(n, _)| *n == t.listed) {
                t.saved(json!(v));
            }
            t.next_key();
        }
        for (_, v) in saves {
            t.saved(json!(v));
        }
        t
    }

    fn value(w: Option<ListCursorWrite>) -> Option<(Value, bool)> {
        w.map(|w| (w.value, w.finished))
    }

    #[test]
    fn a_cursor_waits_for_every_key_before_it_whatever_order_they_finish_in() {
        // Cursors after keys 3 and 6 (pages of three).
        let mut t = track(6, &[(3, 30), (6, 60)]);
        t.settle(2, true);
        t.settle(3, true);
        assert_eq!(value(t.take(RunId(1), false)), None);
        t.settle(1, true);
        assert_eq!(value(t.take(RunId(1), false)), Some((json!(30), false)));
        assert_eq!(value(t.take(RunId(1), false)), None);
        t.settle(6, true);
        t.settle(5, true);
        t.settle(4, true);
        // The list function has not returned: nothing is marked finished.
        assert_eq!(value(t.take(RunId(1), true)), Some((json!(60), false)));
        t.finished = true;
        assert_eq!(value(t.take(RunId(1), true)), Some((json!(60), true)));
        assert_eq!(value(t.take(RunId(1), true)), None);
    }

    #[test]
    fn a_failed_key_holds_back_every_cursor_after_it() {
        let mut t = track(6, &[(3, 30), (6, 60)]);
        for seq in [1, 2, 3, 4, 6] {
            t.settle(seq, true);
        }
        t.settle(5, false);
        t.finished = true;
        assert_eq!(value(t.take(RunId(1), true)), Some((json!(30), false)));
        assert_eq!(value(t.take(RunId(1), true)), None);
    }

    #[test]
    fn an_announced_total_counts_keys_ahead_and_is_taken_back_when_the_listing_ends_short() {
        let live = Live::default();
        let total = || live.total.load(std::sync::atomic::Ordering::Relaxed);
        let mut a = Announced::default();
        a.key(&live);
        a.key(&live);
        assert_eq!(total(), 2);
        // The first page says 10: the whole listing shows at once.
        a.announced(10, &live);
        assert_eq!(total(), 10);
        for _ in 0..3 {
            a.key(&live);
        }
        assert_eq!(total(), 10);
        // A later page says 12; keys beyond it still count.
        a.announced(12, &live);
        assert_eq!(total(), 12);
        // The listing ends after 6 keys: the 6 never listed leave the total.
        a.key(&live);
        a.done(&live);
        assert_eq!(total(), 6);
        // Announced too low: keys beyond it are counted as they come.
        let live2 = Live::default();
        let mut b = Announced::default();
        b.announced(1, &live2);
        b.key(&live2);
        b.key(&live2);
        b.done(&live2);
        assert_eq!(live2.total.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn keys_after_a_failed_one_do_not_pile_up() {
        let mut t = track(3, &[(3, 30)]);
        t.settle(1, false);
        // The cursor after key 3 covers the failed key 1: dropped at once.
        assert!(t.pending.is_empty());
        for _ in 0..10_000 {
            let seq = t.next_key();
            if seq.is_multiple_of(100) {
                t.saved(json!(seq));
            }
            t.settle(seq, true);
        }
        t.settle(2, true);
        t.settle(3, true);
        assert_eq!(t.done_through, 10_003);
        assert!(t.done_above.is_empty() && t.pending.is_empty());
        assert_eq!(value(t.take(RunId(1), false)), None);
    }

    #[test]
    fn a_finished_listing_marks_the_cursor_it_resumed_from() {
        let shared = CursorTrack::new(
            &LISTER,
            Some(&ListCursorInfo {
                value: json!(7),
                finished: false,
                run: RunId(1),
                at: Timestamp::from_unix_millis(0),
            }),
        );
        let mut t = shared.lock().unwrap();
        let seq = t.next_key();
        t.settle(seq, true);
        t.finished = true;
        assert_eq!(value(t.take(RunId(2), true)), Some((json!(7), true)));
    }
}
