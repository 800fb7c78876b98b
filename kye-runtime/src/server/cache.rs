//! The read-through cache's one rule beyond "fresh in the store": concurrent identical
//! requests share one upstream fetch. The first request for a key runs the fetch; those that
//! arrive while it runs wait for its outcome instead of fetching again.
//!
//! And a [`Memo`] of records read from the store, keyed by model, key and the time the store
//! says the record was stored: a cached read asks the store only that time (an indexed
//! lookup) instead of assembling the record again from its tables, and copies the record's
//! JSON, written once, into its answer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::OnceCell;

/// What one upstream fetch of a key ended with.
#[derive(Debug, Clone)]
pub(crate) enum Fetched {
    /// Fetched, valid, stored: the record as the store renders it (read back after the
    /// write, so that a fetched answer has the shape of a stored one), stored at `at`.
    Stored {
        record: RawRecord,
        at: crate::store::Timestamp,
        run: i64,
    },
    /// Stored by another request's fetch since this one began: no fetch needed.
    Recent {
        record: RawRecord,
        at: crate::store::Timestamp,
    },
    /// The payload failed validation (nothing stored).
    Rejected { errors: Vec<String>, run: i64 },
    /// The source has no such key.
    Missing { reason: String, run: i64 },
    /// The source could not be reached or answered with an error (after retries).
    Failed { reason: String },
    /// Fetched and stored, but the store failed to read the record back (logged).
    Unreadable,
    /// Every read-through slot (`[serve] max_fetches`) stayed busy for [`FETCH_WAIT`].
    Busy,
}

/// How long a read that needs the source waits for a free read-through slot before it is
/// answered 503.
pub(crate) const FETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

type Cell = Arc<OnceCell<Fetched>>;

/// Records kept at most; past that the memo starts over (cheap, and bounded).
const MEMO_MAX: usize = 10_000;

/// A record's JSON, written once.
pub(crate) type RawRecord = Arc<RawValue>;

/// `record` as JSON text.
pub(crate) fn raw_record(record: &Value) -> RawRecord {
    // A `Value`'s text is JSON by construction (its map keys are strings).
    match serde_json::value::to_raw_value(record) {
        Ok(raw) => Arc::from(raw),
        Err(_) => Arc::from(RawValue::NULL.to_owned()),
    }
}

/// Records read from the store, by `Model:{key}`, with the time they were stored.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    records: Mutex<HashMap<String, (crate::store::Timestamp, RawRecord)>>,
}

impl Memo {
    /// The record of `key` if the memo holds the one stored at `at`.
    pub(crate) fn get(&self, key: &str, at: crate::store::Timestamp) -> Option<RawRecord> {
        let map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((t, rec)) if *t == at => Some(rec.clone()),
            _ => None,
        }
    }

    /// Remembers the record of `key` stored at `at`; returns its JSON.
    pub(crate) fn put(
        &self,
        key: String,
        at: crate::store::Timestamp,
        record: &Value,
    ) -> RawRecord {
        let raw = raw_record(record);
        let mut map = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MEMO_MAX && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, (at, raw.clone()));
        raw
    }
}

/// Fetches in flight, by key (`Model:{"edge":value}`).
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    inflight: Mutex<HashMap<String, Cell>>,
}

impl Coalescer {
    /// The outcome of `fetch` for `key`, run once for every caller that asks while it runs.
    /// Returns the outcome and whether this caller ran the fetch.
    pub(crate) async fn fetch<F, Fut>(&self, key: &str, fetch: F) -> (Fetched, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Fetched>,
    {
        let cell = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        // Whoever finishes first forgets the cell, and so does a caller whose request is
        // dropped (a timeout, a client gone): the map never keeps a cell nobody waits on.
        let _forget = Forget {
            map: &self.inflight,
            key,
            cell: cell.clone(),
        };
        let mut ran = false;
        let out = cell
            .get_or_init(|| {
                ran = true;
                fetch()
            })
            .await
            .clone();
        (out, ran)
    }

    /// Fetches in flight (for tests and diagnostics).
    #[cfg(test)]
    fn inflight(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}

/// Removes `cell` from the in-flight map when dropped (only this very cell: a later fetch of
/// the same key may already have put a new one).
struct Forget<'a> {
    map: &'a Mutex<HashMap<String, Cell>>,
    key: &'a str,
    cell: Cell,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map
            .get(self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            map.remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_caller_dropped_mid_fetch_leaves_no_entry_behind() {
        let c = Coalescer::default();
        let slow = c.fetch("Pokemon:{\"id\":1}", || async {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            unreachable!("cut off before")
        });
        // A request timing out: its future is dropped mid-fetch.
        let cut = tokio::time::timeout(std::time::Duration::from_millis(20), slow).await;
        assert!(cut.is_err());
        assert_eq!(c.inflight(), 0);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_a_later_one_fetches_again() {
        let c = Arc::new(Coalescer::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, calls) = (c.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                c.fetch("Pokemon:{\"id\":1}", || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Fetched::Missing {
                        reason: "none".into(),
                        run: 1,
                    }
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let (_, ran) = c
            .fetch("Pokemon:{\"id\":1}", || async {
                Fetched::Failed { reason: "x".into() }
            })
            .await;
        assert!(ran);
    }
}
