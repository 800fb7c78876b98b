//! Between request and fetch, for batch fetchers (`#[kye::get(Cat.id, batch = 50)]`): keys
//! of one batch fetcher are grouped into [`Unit::Batch`]es of up to its batch size, so that
//! the executor calls (retries, rate limits, times) the function once per group. Keys that
//! come all at once (a request's keys) are grouped as they are taken; keys that trickle in
//! (references followed, keys a list function sends) wait at most [`LINGER`] for company,
//! or less when the group is full or no more keys can come.
//!
//! The answer's records are matched back to the keys by their index values
//! ([`key_text`], [`record_key_text`]): `25` and `25.0` are the same key, `"25"` is not, as
//! the check of a single fetcher's record has it.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::job::{Batch, Job, Target, Unit};
use crate::model::KeyValue;

/// How long a key of a batch fetcher waits for others before its group is called anyway.
pub(super) const LINGER: Duration = Duration::from_millis(20);

/// The keys of `jobs` (all of `target`) as units: one per key, or groups of up to the batch
/// size for a batch fetcher. The iterator stays lazy: a group is taken when it is asked for.
pub(super) fn units(
    target: Arc<Target>,
    mut jobs: impl Iterator<Item = Job>,
) -> impl Iterator<Item = Unit> {
    let size = target.fetcher.batch_size();
    std::iter::from_fn(move || match size {
        None => jobs.next().map(|j| Unit::One(Arc::new(j))),
        Some(n) => {
            let group: Vec<Arc<Job>> = jobs.by_ref().take(n).map(Arc::new).collect();
            (!group.is_empty()).then(|| {
                Unit::Batch(Batch {
                    target: target.clone(),
                    jobs: group,
                })
            })
        }
    })
}

/// Keys of batch fetchers waiting for their group, by fetcher.
#[derive(Default)]
pub(super) struct Grouper {
    open: HashMap<Arc<str>, Open>,
}

struct Open {
    target: Arc<Target>,
    jobs: Vec<Arc<Job>>,
    since: Instant,
}

impl Grouper {
    /// Queues `job` into `out`: at once when its fetcher takes one key; in its fetcher's group
    /// otherwise, which goes into `out` once full.
    pub fn push(&mut self, job: Job, out: &mut Vec<Unit>) {
        let Some(size) = job.target.fetcher.batch_size() else {
            out.push(Unit::One(Arc::new(job)));
            return;
        };
        if job.listed_record_present() {
            // A record a list page handed over is not fetched: no group to wait for.
            out.push(Unit::One(Arc::new(job)));
            return;
        }
        let target = job.target.clone();
        let open = self
            .open
            .entry(target.name.clone())
            .or_insert_with(|| Open {
                target,
                jobs: Vec::with_capacity(size),
                since: Instant::now(),
            });
        if open.jobs.is_empty() {
            open.since = Instant::now();
        }
        open.jobs.push(Arc::new(job));
        if open.jobs.len() >= size {
            let jobs = std::mem::replace(&mut open.jobs, Vec::with_capacity(size));
            out.push(Unit::Batch(Batch {
                target: open.target.clone(),
                jobs,
            }));
        }
    }

    /// Moves into `out` the groups that waited [`LINGER`], or every group when `all` (no more
    /// keys can come). Returns how long until the next group is due, if one waits.
    pub fn flush_due(&mut self, all: bool, out: &mut Vec<Unit>) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        for open in self.open.values_mut() {
            if open.jobs.is_empty() {
                continue;
            }
            let waited = open.since.elapsed();
            if all || waited >= LINGER {
                out.push(Unit::Batch(Batch {
                    target: open.target.clone(),
                    jobs: std::mem::take(&mut open.jobs),
                }));
            } else {
                let left = LINGER - waited;
                next = Some(next.map_or(left, |n| n.min(left)));
            }
        }
        next
    }
}

/// The key's values as the text batch answers are matched by: numbers by value (`25` and
/// `25.0` alike), strings and booleans tagged so that `"25"` is not `25`.
pub(super) fn key_text(values: &[KeyValue]) -> String {
    let mut out = String::new();
    for v in values {
        match v {
            KeyValue::Int(i) => {
                let _ = write!(out, "n{i}");
            }
            KeyValue::Float(x) => push_float(&mut out, *x),
            KeyValue::String(s) => {
                let _ = write!(out, "s{}:{s}", s.len());
            }
            KeyValue::Bool(b) => {
                let _ = write!(out, "b{b}");
            }
        }
        out.push('\u{1}');
    }
    out
}

/// The text of the key a record carries at `edges`, as [`key_text`] writes it; `None` when
/// an edge is absent or holds something no key can be (null, an object, a list).
pub(super) fn record_key_text(record: &Value, edges: &[&str]) -> Option<String> {
    let mut out = String::new();
    for edge in edges {
        match record.get(*edge)? {
            Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                // Integers exactly: two ids beyond 2^53 must not become one.
                (Some(i), _) => {
                    let _ = write!(out, "n{i}");
                }
                (None, Some(u)) => {
                    let _ = write!(out, "n{u}");
                }
                _ => push_float(&mut out, n.as_f64()?),
            },
            Value::String(s) => {
                let _ = write!(out, "s{}:{s}", s.len());
            }
            Value::Bool(b) => {
                let _ = write!(out, "b{b}");
            }
            _ => return None,
        }
        out.push('\u{1}');
    }
    Some(out)
}

/// A float key value: whole numbers exactly representable as integers are written as the
/// integer (`25.0` matches `25`), others as the float.
fn push_float(out: &mut String, x: f64) {
    if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
        let _ = write!(out, "n{}", x as i64);
    } else {
        let _ = write!(out, "n{x}");
    }
}

/// The key values a record carries at `edges`, printed for messages: `99`, `(2024, 1)`.
pub(super) fn record_key_shown(record: &Value, edges: &[&str]) -> String {
    let shown: Vec<String> = edges
        .iter()
        .map(|e| match record.get(*e) {
            Some(v) => v.to_string(),
            None => "nothing".to_string(),
        })
        .collect();
    if shown.len() == 1 {
        shown.into_iter().next().unwrap_or_default()
    } else {
        format!("({})", shown.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_records_by_value_not_by_spelling() {
        let k = key_text(&[KeyValue::Int(25)]);
        assert_eq!(
            record_key_text(&json!({"id": 25}), &["id"]),
            Some(k.clone())
        );
        assert_eq!(
            record_key_text(&json!({"id": 25.0}), &["id"]),
            Some(k.clone())
        );
        assert_ne!(
            record_key_text(&json!({"id": "25"}), &["id"]),
            Some(k.clone())
        );
        assert_eq!(record_key_text(&json!({"id": null}), &["id"]), None);
        assert_eq!(record_key_text(&json!({}), &["id"]), None);
        let s = key_text(&[KeyValue::String("a".into()), KeyValue::Int(1)]);
        assert_eq!(
            record_key_text(&json!({"name": "a", "n": 1}), &["name", "n"]),
            Some(s)
        );
        // Strings that would run together are told apart.
        assert_ne!(
            key_text(&[KeyValue::String("a\u{1}b".into())]),
            key_text(&[KeyValue::String("a".into()), KeyValue::String("b".into())])
        );
        // Ids beyond 2^53 (snowflakes) stay apart: through f64 both were one key.
        let a = key_text(&[KeyValue::Int(1_100_000_000_000_000_001)]);
        let b = key_text(&[KeyValue::Int(1_100_000_000_000_000_002)]);
        assert_ne!(a, b);
        assert_eq!(
            record_key_text(&json!({"id": 1_100_000_000_000_000_001_i64}), &["id"]),
            Some(a)
        );
        assert_eq!(
            record_key_text(&json!({"id": 18_000_000_000_000_000_000_u64}), &["id"]),
            Some("n18000000000000000000\u{1}".to_string())
        );
    }
}
