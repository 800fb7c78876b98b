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

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::{attempt_loop, CallPolicy, ExecStats, Executor, Finished, Outcome, Sink, Work};
use crate::error::{panic_message, Error, Result};

/// The driving task wakes at least this often while items are in flight, to hand over what
/// finished (items finishing slowly never wait for a full batch longer than this).
const TICK: Duration = Duration::from_millis(100);

/// Workers wake the driving task when this many items wait for it.
fn batch(window: usize) -> usize {
    (window / 2).clamp(1, 64)
}

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
    /// Finished items, for the driving task.
    done: Vec<Finished<T, V>>,
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
            match s.ready.pop_front().filter(|_| !stopping) {
                Some(item) => {
                    s.in_flight.insert(id, item.clone());
                    s.started += 1;
                    Some((item, s.ready.len() <= kit.low_water))
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
            s.done.push(finished);
            s.done.len() >= kit.batch || s.in_flight.is_empty() || s.ready.len() <= kit.low_water
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
        let shared: Arc<Shared<T, V>> = Arc::new(Shared {
            state: Mutex::new(State {
                ready: VecDeque::with_capacity(window),
                done: Vec::new(),
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
            low_water: window / 2,
            batch: batch(window),
        };
        let workers: Vec<tokio::task::JoinHandle<()>> = (0..window)
            .map(|id| tokio::spawn(worker(id, shared.clone(), kit.clone())))
            .collect();

        let mut items = items.into_iter();
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
                    // Items taken but not started stay untaken.
                    let untaken = !s.ready.is_empty();
                    s.ready.clear();
                    s.stop = true;
                    stats.stopped = untaken || !(exhausted && pending.is_empty());
                    grace_deadline = Some(Instant::now() + self.settings.grace_period);
                }
                let was_empty = s.ready.is_empty();
                if !s.stop {
                    // Follow-ups go first, ahead of items already queued.
                    let mut front = 0;
                    while s.ready.len() < window {
                        let next = match pending.pop_front() {
                            Some(t) => {
                                front += 1;
                                Some(t)
                            }
                            None if !exhausted => {
                                let n = items.next();
                                exhausted = n.is_none();
                                n
                            }
                            None => None,
                        };
                        let Some(item) = next else { break };
                        s.ready.push_back(Arc::new(item));
                    }
                    if front > 0 {
                        s.ready.rotate_right(front);
                    }
                }
                let done = std::mem::take(&mut s.done);
                stats.started = s.started;
                (done, s.in_flight.len(), was_empty && !s.ready.is_empty())
            };
            if idle_workers {
                shared.workers.notify_waiters();
            }
            let handed = done.len();
            for finished in done {
                stats.retries += u64::from(finished.attempts.saturating_sub(1));
                match &finished.outcome {
                    Outcome::Done(_) => stats.done += 1,
                    Outcome::Failed(_) => stats.failed += 1,
                    Outcome::Interrupted => stats.interrupted += 1,
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
            let nothing_left = {
                let s = shared.lock();
                s.ready.is_empty() && s.done.is_empty() && s.in_flight.is_empty()
            } && (aborted || stopping || (exhausted && pending.is_empty()));
            if nothing_left {
                break;
            }
            if sink_error.is_none() {
                if let Err(e) = sink.idle() {
                    tracing::error!(error = %e, "writer failed: stopping the run");
                    sink_error = Some(e);
                    continue;
                }
            }
            let deadline = grace_deadline;
            tokio::select! {
                _ = shared.driver.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
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

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
