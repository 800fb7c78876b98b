//! Step 1 of a run for a bare model (`fetch 'Pokemon'`): its list function runs on a task of
//! its own, and each key it sends becomes a job the executor takes as it arrives. Two bounded
//! channels between them hold the list function back while the run is busy, so a list of a
//! million keys costs the memory of a few hundred.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::batch::Grouper;
use super::job::{Job, Target, Unit};
use super::writer::Live;
use crate::context::Context;
use crate::error::{panic_message, Error, Result};
use crate::exec::CallPolicy;
use crate::list::{KeySender, Listed, ListerRegistration};

/// Keys the list function may run ahead of the executor, per channel.
const LISTED_AHEAD: usize = 256;

/// A list function running for a run.
pub(super) struct Listing {
    lister: &'static ListerRegistration,
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
) -> (mpsc::Receiver<Unit>, Listing) {
    let (key_tx, mut key_rx) = mpsc::channel::<Listed>(LISTED_AHEAD);
    let (job_tx, job_rx) = mpsc::channel::<Unit>(LISTED_AHEAD);
    let sender = KeySender::new(key_tx, lister, target.fetcher.check);
    let ctx = ctx.for_fetcher(lister.function).with_retries(policy);
    let task = tokio::spawn((lister.call)(ctx, sender));
    let listed = Arc::new(AtomicU64::new(0));
    let forward = {
        let listed = listed.clone();
        tokio::spawn(async move {
            // Keys come in bursts (a page at a time): taken together, one wake-up a burst.
            // Keys of a batch fetcher wait for their group (at most `LINGER` for the next).
            let mut keys = Vec::with_capacity(64);
            let mut grouper = Grouper::default();
            let mut units = Vec::new();
            loop {
                let wait = grouper.flush_due(false, &mut units);
                let got = match wait {
                    None => key_rx.recv_many(&mut keys, 64).await,
                    Some(w) => tokio::time::timeout(w, key_rx.recv_many(&mut keys, 64))
                        .await
                        .unwrap_or(usize::MAX),
                };
                if got == 0 {
                    // The list function is done: the last groups go as they are.
                    grouper.flush_due(true, &mut units);
                }
                listed.fetch_add(keys.len() as u64, Ordering::Relaxed);
                live.total.fetch_add(keys.len() as u64, Ordering::Relaxed);
                for Listed { key, record } in keys.drain(..) {
                    let job = Job::new(target.clone(), key, 0).with_record(record);
                    grouper.push(job, &mut units);
                }
                for unit in units.drain(..) {
                    if job_tx.send(unit).await.is_err() {
                        // The run stopped: dropping `key_rx` tells the list function.
                        return;
                    }
                }
                if got == 0 {
                    return;
                }
            }
        })
    };
    (
        job_rx,
        Listing {
            lister,
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
