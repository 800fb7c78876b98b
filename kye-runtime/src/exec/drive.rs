//! How [`Executor::run`](super::Executor::run) moves items: a pool of worker tasks, one per slot
//! of the window, takes items from a shared queue, calls them and puts them back finished; the
//! task that drives the run refills the queue from its sources and hands finished items to the
//! sink in batches.
//!
//! The driving task is woken once per batch of finished items (or when the queue runs low, or on
//! a short tick), not once per item: a run of 10,000 keys wakes it a few hundred times, where a
//! task per item woke it 10,000 times, each a futex call and a context switch on its thread.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::{attempt_loop, CallPolicy, ExecStats, Executor, Finished, Outcome, Sink, Work};
use crate::error::{panic_message, Error, Result};

/// The driving task wakes at least this often while items are in flight, to hand over what
/// finished (items finishing slowly never wait for a full batch longer than this).
const TICK: Duration = Duration::from_millis(100);

/// Workers wake the driving task when this many finished items wait for it (or sooner: when
/// the queue of items to start runs low, when nothing is in flight, or at the next [`TICK`]).
/// Settling is not urgent, so this is not tied to the window: every wake of the driving task
/// is a thread wake-up (futex calls and a context switch) a run pays per batch.
const BATCH: usize = 64;

/// The driving task keeps at least this many items queued for the workers (more when the
/// window is larger), and refills the queue when half of it was taken: one wake-up per
/// `READY_MIN / 2` items started, whatever the concurrency.
const READY_MIN: usize = 64;

/// What the driving task and the workers share.
struct Shared<T, V> {
    state: Mutex<State<T, V>>,
    /// Wakes the driving task (a stored permit: a wake is never lost).
    driver: Notify,
    /// Wakes workers waiting for items.
    workers: Notify,
}

struct State<T, V> {
    /// Items taken from the sources, for the workers (follow-ups at the front).
    ready: VecDeque<Arc<T>>,
    /// Their sizes ([`Work::size`]) together: the queue is kept by keys, not items, so that
    /// groups of many keys do not pile up (each holds its records once finished).
    ready_size: u64,
    /// Finished items, for the driving task.
    done: Vec<Finished<T, V>>,
    /// Their sizes ([`Work::size`]) together.
    done_size: u64,
    /// Items being called, by worker.
    in_flight: HashMap<usize, Arc<T>>,
    /// Items started.
    started: u64,
    /// No item is to be started any more (a stop was requested).
    stop: bool,
    /// In-flight items were interrupted: what their workers still return is dropped.
    aborted: bool,
    /// The run is over: workers leave.
    finish: bool,
}

impl<T, V> Shared<T, V> {
    fn lock(&self) -> MutexGuard<'_, State<T, V>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Each fetcher's call policy and concurrency limit.
struct Policies {
    settings: super::ExecSettings,
    limits: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Policies {
    fn of(&self, fetcher: &str) -> (CallPolicy, Option<Arc<Semaphore>>) {
        let policy = self.settings.policy(fetcher).clone();
        let limit = policy.concurrency.map(|n| {
            let mut map = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(fetcher.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(n)))
                .clone()
        });
        (policy, limit)
    }
}

/// What each worker needs of the executor.
struct WorkerKit<F> {
    call: Arc<F>,
    policies: Arc<Policies>,
    shutdown: super::Shutdown,
    hosts: Option<Arc<dyn super::Reachability>>,
    low_water: usize,
    batch: usize,
}

impl<F> Clone for WorkerKit<F> {
    fn clone(&self) -> Self {
        WorkerKit {
            call: self.call.clone(),
            policies: self.policies.clone(),
            shutdown: self.shutdown.clone(),
            hosts: self.hosts.clone(),
            low_water: self.low_water,
            batch: self.batch,
        }
    }
}

async fn worker<T, V, F, Fut>(id: usize, shared: Arc<Shared<T, V>>, kit: WorkerKit<F>)
where
    T: Work,
    V: Send + 'static,
    F: Fn(Arc<T>, u32) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<V>> + Send + 'static,
{
    let mut since_yield = 0u32;
    loop {
        // Created before looking, so a wake between looking and waiting is not lost.
        let notified = shared.workers.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let taken = {
            let mut s = shared.lock();
            if s.finish {
                return;
            }
            let stopping = s.stop
                || kit.shutdown.is_triggered()
                || kit
                    .hosts
                    .as_ref()
                    .is_some_and(|h| h.unreachable().is_some());
            let next = if stopping { None } else { s.ready.pop_front() };
            if let Some(item) = &next {
                s.ready_size -= item.size();
            }
            match next {
                Some(item) => {
                    s.in_flight.insert(id, item.clone());
                    s.started += item.size();
                    Some((item, s.ready_size <= kit.low_water as u64))
                }
                None => None,
            }
        };
        let Some((item, low)) = taken else {
            // Nothing to take: the driving task refills, stops or finishes the run.
            shared.driver.notify_one();
            notified.await;
            continue;
        };
        if low {
            shared.driver.notify_one();
        }
        let (policy, limit) = kit.policies.of(item.fetcher());
        let attempts = attempt_loop(
            item.clone(),
            policy,
            limit,
            kit.call.clone(),
            kit.shutdown.clone(),
        );
        let finished = match CatchUnwind(Box::pin(attempts)).await {
            Ok(f) => f,
            Err(panic) => Finished {
                item,
                outcome: Outcome::Failed(Error::permanent(format!(
                    "the fetcher panicked: {}",
                    panic_message(panic.as_ref())
                ))),
                attempts: 1,
            },
        };
        let wake = {
            let mut s = shared.lock();
            if s.aborted {
                // Already handed over as interrupted.
                return;
            }
            s.in_flight.remove(&id);
            s.done_size += finished.item.size();
            s.done.push(finished);
            s.done_size >= kit.batch as u64
                || s.in_flight.is_empty()
                || s.ready_size <= kit.low_water as u64
        };
        if wake {
            shared.driver.notify_one();
        }
        // Calls that never wait (a ready value) would otherwise keep this thread forever.
        since_yield += 1;
        if since_yield >= 64 {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Catches a panic of the future it polls.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = std::result::Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

impl Executor {
    /// The body of [`Executor::run`]; see there.
    pub(super) async fn drive<T, V, I, F, Fut, S>(
        &self,
        items: I,
        mut late: Option<tokio::sync::mpsc::Receiver<T>>,
        call: F,
        mut sink: S,
    ) -> Result<ExecStats>
    where
        T: Work,
        V: Send + 'static,
        I: IntoIterator<Item = T>,
        F: Fn(Arc<T>, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<V>> + Send + 'static,
        S: Sink<T, V>,
    {
        let window = self.settings.concurrency.max(1);
        let queued = window.max(READY_MIN);
        let shared: Arc<Shared<T, V>> = Arc::new(Shared {
            state: Mutex::new(State {
                ready: VecDeque::with_capacity(queued),
                ready_size: 0,
                done: Vec::new(),
                done_size: 0,
                in_flight: HashMap::new(),
                started: 0,
                stop: false,
                aborted: false,
                finish: false,
            }),
            driver: Notify::new(),
            workers: Notify::new(),
        });
        let kit = WorkerKit {
            call: Arc::new(call),
            policies: Arc::new(Policies {
                settings: self.settings.clone(),
                limits: Mutex::new(HashMap::new()),
            }),
            shutdown: self.shutdown.clone(),
            hosts: self.hosts.clone(),
            low_water: window.max(READY_MIN) / 2,
            batch: BATCH,
        };
        let workers: Vec<tokio::task::JoinHandle<()>> = (0..window)
            .map(|id| tokio::spawn(worker(id, shared.clone(), kit.clone())))
            .collect();

        let mut items = items.into_iter();
        // `items` ran out; `late` (items arriving while the run goes on) is closed and empty.
        let mut iter_done = false;
        let mut exhausted = false;
        let mut pending: VecDeque<T> = VecDeque::new();
        let mut follow: Vec<T> = Vec::new();
        let mut stats = ExecStats::default();
        let mut sink_error: Option<Error> = None;
        let mut grace_deadline: Option<Instant> = None;
        let mut aborted = false;
        loop {
            if stats.unreachable.is_none() {
                stats.unreachable = self.hosts.as_ref().and_then(|h| h.unreachable());
            }
            let stopping =
                self.shutdown.is_triggered() || sink_error.is_some() || stats.unreachable.is_some();
            let (done, in_flight, idle_workers) = {
                let mut s = shared.lock();
                if stopping && !s.stop {
                    // Whoever sends late items learns that nothing more is taken.
                    if let Some(l) = late.as_mut() {
                        l.close();
                    }
                    // Items taken but not started stay untaken.
                    let untaken = !s.ready.is_empty();
                    s.ready.clear();
                    s.ready_size = 0;
                    s.stop = true;
                    stats.stopped = untaken || !(exhausted && pending.is_empty());
                    grace_deadline = Some(Instant::now() + self.settings.grace_period);
                }
                let was_empty = s.ready.is_empty();
                if !s.stop {
                    // Follow-ups go first, ahead of items already queued.
                    let mut front = 0;
                    while s.ready_size < queued as u64 {
                        let next = match pending.pop_front() {
                            Some(t) => {
                                front += 1;
                                Some(t)
                            }
                            None if !iter_done => match items.next() {
                                Some(t) => Some(t),
                                None => {
                                    iter_done = true;
                                    exhausted = late.is_none();
                                    continue;
                                }
                            },
                            None if !exhausted => match late.as_mut().map(|l| l.try_recv()) {
                                Some(Ok(t)) => Some(t),
                                Some(Err(TryRecvError::Empty)) => None,
                                Some(Err(TryRecvError::Disconnected)) | None => {
                                    exhausted = true;
                                    None
                                }
                            },
                            None => None,
                        };
                        let Some(item) = next else { break };
                        s.ready_size += item.size();
                        s.ready.push_back(Arc::new(item));
                    }
                    if front > 0 {
                        s.ready.rotate_right(front);
                    }
                }
                let done = std::mem::take(&mut s.done);
                s.done_size = 0;
                stats.started = s.started;
                (done, s.in_flight.len(), was_empty && !s.ready.is_empty())
            };
            if idle_workers {
                shared.workers.notify_waiters();
            }
            let handed = done.len();
            for finished in done {
                stats.retries += u64::from(finished.attempts.saturating_sub(1));
                let size = finished.item.size();
                match &finished.outcome {
                    Outcome::Done(_) => stats.done += size,
                    Outcome::Failed(_) => stats.failed += size,
                    Outcome::Interrupted => stats.interrupted += size,
                }
                if sink_error.is_none() {
                    if let Err(e) = sink.finished(finished, &mut follow) {
                        tracing::error!(error = %e, "writer failed: stopping the run");
                        sink_error = Some(e);
                    }
                    pending.extend(follow.drain(..));
                }
            }
            if handed > 0 {
                // Follow-ups and the stop conditions first.
                continue;
            }
            let quiet = {
                let s = shared.lock();
                s.ready.is_empty() && s.done.is_empty() && s.in_flight.is_empty()
            };
            let mut wake_in = None;
            if sink_error.is_none() {
                match sink.idle(&mut follow, quiet && pending.is_empty()) {
                    Ok(w) => wake_in = w,
                    Err(e) => {
                        tracing::error!(error = %e, "writer failed: stopping the run");
                        sink_error = Some(e);
                        continue;
                    }
                }
                if !follow.is_empty() {
                    // Held-back follow-ups, now due: queued like any others.
                    pending.extend(follow.drain(..));
                    if !stopping {
                        continue;
                    }
                }
            }
            let nothing_left = quiet && (aborted || stopping || (exhausted && pending.is_empty()));
            if nothing_left {
                break;
            }
            let deadline = grace_deadline;
            // Wait for a late item only while there is room for it (the sender waits meanwhile:
            // back-pressure on whoever produces them).
            let want_late = iter_done && !exhausted && !stopping && pending.len() < window;
            tokio::select! {
                _ = shared.driver.notified() => {}
                item = recv_late(&mut late), if want_late => match item {
                    Some(t) => {
                        pending.push_back(t);
                        // Items come in bursts (a page of keys): take what is there at once,
                        // one wake-up for the burst rather than one per item.
                        while pending.len() < window {
                            match late.as_mut().map(|l| l.try_recv()) {
                                Some(Ok(t)) => pending.push_back(t),
                                _ => break,
                            }
                        }
                    }
                    None => exhausted = true,
                },
                _ = tokio::time::sleep(wake_in.map_or(TICK, |w| w.min(TICK))) => {}
                _ = self.shutdown.wait_level(1), if !stopping => {}
                _ = self.shutdown.wait_level(2), if stopping && !aborted => {
                    aborted = self.interrupt_in_flight(&shared, &workers);
                }
                _ = sleep_until_opt(deadline), if deadline.is_some() && !aborted => {
                    tracing::warn!(in_flight, "grace period over: interrupting in-flight keys");
                    aborted = self.interrupt_in_flight(&shared, &workers);
                }
            }
        }
        {
            let mut s = shared.lock();
            if s.stop {
                stats.stopped = stats.stopped || !(exhausted && pending.is_empty());
            }
            s.finish = true;
        }
        shared.workers.notify_waiters();
        for w in workers {
            let _ = w.await;
        }
        match sink_error {
            Some(e) => Err(e),
            None => Ok(stats),
        }
    }

    /// Stops every worker at once; the items they were calling finish as interrupted.
    fn interrupt_in_flight<T, V>(
        &self,
        shared: &Shared<T, V>,
        workers: &[tokio::task::JoinHandle<()>],
    ) -> bool {
        for w in workers {
            w.abort();
        }
        let mut s = shared.lock();
        s.aborted = true;
        let stopped: Vec<Arc<T>> = s.in_flight.drain().map(|(_, item)| item).collect();
        for item in stopped {
            s.done.push(Finished {
                item,
                outcome: Outcome::Interrupted,
                attempts: 0,
            });
        }
        true
    }
}

/// The next late item (`None` once every sender is gone).
async fn recv_late<T>(late: &mut Option<tokio::sync::mpsc::Receiver<T>>) -> Option<T> {
    match late {
        Some(l) => l.recv().await,
        None => None,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::exec::ExecSettings;

    struct N(u64);

    impl Work for N {
        fn fetcher(&self) -> &str {
            "n"
        }
        fn model(&self) -> &str {
            "N"
        }
        fn key(&self) -> String {
            self.0.to_string()
        }
    }

    fn executor(concurrency: usize) -> Executor {
        Executor::new(ExecSettings {
            concurrency,
            ..ExecSettings::default()
        })
    }

    #[tokio::test]
    async fn late_items_run_as_they_arrive_with_the_sender_held_back() {
        const LATE: u64 = 5_000;
        let (tx, rx) = tokio::sync::mpsc::channel::<N>(16);
        let sent = Arc::new(AtomicU64::new(0));
        let producer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                for i in 1..=LATE {
                    if i % 500 == 0 {
                        // A page boundary: the executor drains what it has meanwhile.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    tx.send(N(1_000_000 + i))
                        .await
                        .expect("the run takes every item");
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let mut seen = Vec::new();
        let mut max_ahead = 0u64;
        let mut late_seen = 0u64;
        let sink = |f: Finished<N, u64>, _: &mut Vec<N>| {
            if let Outcome::Done(v) = f.outcome {
                seen.push(v);
                late_seen += u64::from(v > 1_000_000);
            }
            max_ahead = max_ahead.max(sent.load(Ordering::SeqCst).saturating_sub(late_seen));
            Ok(())
        };
        let stats = executor(8)
            .run_with_late(
                (1..=100).map(N),
                Some(rx),
                |n: Arc<N>, _| async move { Ok(n.0) },
                sink,
            )
            .await
            .unwrap();
        producer.await.unwrap();
        assert_eq!(stats.done, 100 + LATE);
        // The fixed items first, then every late one exactly once.
        assert!(seen[..100].iter().all(|&v| v <= 100));
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len() as u64, 100 + LATE);
        // Bounded: the channel (16), the executor's queue (64) and window (8), a batch of
        // finished items (64) and what waits for a late slot (8).
        assert!(max_ahead <= 16 + 64 + 8 + 64 + 8, "ahead by {max_ahead}");
    }

    /// Holds every follow-up back until the executor idles (as the runtime does with keys of a
    /// batch fetcher waiting for their group), asking to be called again within 20 ms.
    struct HoldBack {
        held: Vec<N>,
        seen: Vec<u64>,
        quiet_releases: u32,
    }

    impl Sink<N, u64> for &mut HoldBack {
        fn finished(&mut self, f: Finished<N, u64>, _follow: &mut Vec<N>) -> Result<()> {
            if let Outcome::Done(v) = f.outcome {
                self.seen.push(v);
                if v < 3 {
                    self.held.push(N(v + 10));
                }
            }
            Ok(())
        }

        fn idle(&mut self, follow: &mut Vec<N>, quiet: bool) -> Result<Option<Duration>> {
            if self.held.is_empty() {
                return Ok(None);
            }
            if quiet {
                self.quiet_releases += 1;
                follow.append(&mut self.held);
                return Ok(None);
            }
            Ok(Some(Duration::from_millis(20)))
        }
    }

    #[tokio::test]
    async fn follow_ups_a_sink_holds_back_run_before_the_run_ends() {
        let mut sink = HoldBack {
            held: Vec::new(),
            seen: Vec::new(),
            quiet_releases: 0,
        };
        let stats = executor(4)
            .run(
                (1..=3).map(N),
                |n: Arc<N>, _| async move { Ok(n.0) },
                &mut sink,
            )
            .await
            .unwrap();
        sink.seen.sort_unstable();
        // 1 and 2 led to 11 and 12, released once nothing else could finish.
        assert_eq!(sink.seen, [1, 2, 3, 11, 12]);
        assert_eq!(stats.done, 5);
        assert!(sink.quiet_releases >= 1);
    }

    #[tokio::test]
    async fn a_run_stopped_early_closes_the_late_channel() {
        let (tx, rx) = tokio::sync::mpsc::channel::<N>(4);
        let exec = executor(2);
        let shutdown = exec.shutdown.clone();
        let producer = tokio::spawn(async move {
            let mut sent = 0u64;
            while tx.send(N(sent)).await.is_ok() {
                sent += 1;
                if sent == 50 {
                    shutdown.trigger();
                }
                if sent > 100_000 {
                    break;
                }
            }
            sent
        });
        let stats = exec
            .run_with_late(
                std::iter::empty(),
                Some(rx),
                |n: Arc<N>, _| async move { Ok(n.0) },
                |_f: Finished<N, u64>, _: &mut Vec<N>| Ok(()),
            )
            .await
            .unwrap();
        let sent = producer.await.unwrap();
        assert!(stats.stopped);
        // The sender learnt at once that nothing more is taken.
        assert!(sent < 50 + 4 + 64 + 2 + 64, "sent {sent}");
    }

    #[tokio::test]
    async fn the_run_waits_for_a_slow_sender_and_ends_when_it_is_gone() {
        let (tx, rx) = tokio::sync::mpsc::channel::<N>(4);
        tokio::spawn(async move {
            for i in 0..5 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let _ = tx.send(N(i)).await;
            }
        });
        let began = std::time::Instant::now();
        let stats = executor(4)
            .run_with_late(
                std::iter::empty(),
                Some(rx),
                |n: Arc<N>, _| async move { Ok(n.0) },
                |_f: Finished<N, u64>, _: &mut Vec<N>| Ok(()),
            )
            .await
            .unwrap();
        assert_eq!(stats.done, 5);
        assert!(!stats.stopped);
        assert!(began.elapsed() >= Duration::from_millis(150));
    }
}
