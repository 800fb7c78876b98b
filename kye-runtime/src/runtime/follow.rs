//! Step 5 of a key, follow: the references of a stored (or skipped) record become keys of other
//! models to fetch, each once per run, up to the run's follow depth.

use std::collections::HashSet;
use std::sync::Arc;

use kye_lang::Type;
use serde_json::Value;

use super::job::{Job, Target};
use crate::model::{Key, KeyValue};
use crate::registry::{FetcherRegistration, RegisteredModel, Registry};
use crate::request::KeySet;

/// The references a run has seen, and which of them it queued.
pub(super) struct Follower<'r> {
    registry: &'r Registry,
    /// `--follow` depth (0: references are not followed).
    depth: u32,
    seen: HashSet<String>,
    /// A reference to a key the request itself asks for is left to the request (it may not
    /// have been taken from the stream yet), so no key is fetched twice in a run.
    requested: Option<RequestedKeys>,
    /// Referenced keys queued so far.
    pub followed: u64,
}

impl<'r> Follower<'r> {
    /// A follower for a run of `fetcher` over `keys`, `depth` levels deep.
    pub fn new(
        registry: &'r Registry,
        depth: u32,
        fetcher: &'static FetcherRegistration,
        keys: &KeySet,
    ) -> Self {
        Follower {
            registry,
            depth,
            seen: HashSet::new(),
            requested: (depth > 0).then(|| RequestedKeys::new(fetcher, keys)),
            followed: 0,
        }
    }

    /// Whether a record of `job` has its references followed (it is above the follow depth).
    pub fn wants(&self, job: &Job) -> bool {
        self.depth > job.depth
    }

    /// Notes that `job` finished, so that a later reference to it is not queued again.
    pub fn finished(&mut self, job: &Job) {
        if self.depth > 0 && job.depth == 0 {
            self.seen.insert(job.seen_key());
        }
    }

    /// Queues into `out` the keys `record` (of `job`) references that this run has not seen;
    /// returns how many were queued.
    pub fn follow(&mut self, job: &Job, record: &Value, out: &mut Vec<Job>) -> u64 {
        if !self.wants(job) {
            return 0;
        }
        let mut queued = 0;
        for next in references(self.registry, job, record) {
            let own = self.requested.as_ref().is_some_and(|r| r.contains(&next));
            if !own && self.seen.insert(next.seen_key()) {
                queued += 1;
                out.push(next);
            }
        }
        self.followed += queued;
        queued
    }
}

/// Membership test for the keys of the request (ranges without materialising them).
struct RequestedKeys {
    fetcher: &'static FetcherRegistration,
    range: Option<(i64, i64)>,
    list: HashSet<String>,
    /// Every key of the fetcher is requested (a list function finds them all).
    all: bool,
}

impl RequestedKeys {
    fn new(fetcher: &'static FetcherRegistration, keys: &KeySet) -> Self {
        match keys {
            KeySet::Range { start, end } => RequestedKeys {
                fetcher,
                range: Some((*start, *end)),
                list: HashSet::new(),
                all: false,
            },
            KeySet::Keys(list) => RequestedKeys {
                fetcher,
                range: None,
                list: list.iter().map(|k| k.to_string()).collect(),
                all: false,
            },
            KeySet::Listed(_) => RequestedKeys {
                fetcher,
                range: None,
                list: HashSet::new(),
                all: true,
            },
        }
    }

    fn contains(&self, job: &Job) -> bool {
        if !std::ptr::eq(job.target.fetcher, self.fetcher) {
            return false;
        }
        if self.all {
            return true;
        }
        match (self.range, job.key.values()) {
            (Some((a, b)), [KeyValue::Int(i)]) => (a..=b).contains(i),
            (Some(_), _) => false,
            (None, _) => self.list.contains(&job.key.to_string()),
        }
    }
}

/// Keys of other models referenced by a stored record, each with the fetcher that can get it.
pub(super) fn references(registry: &Registry, job: &Job, record: &Value) -> Vec<Job> {
    let mut out = Vec::new();
    let def = job.target.model.definition();
    for edge in &def.edges {
        let Type::Model(target) = &edge.ty else {
            continue;
        };
        let Some(target_model) = registry.model(target) else {
            continue;
        };
        let values: Vec<&Value> = match record.get(&edge.name) {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(Value::Null) | None => continue,
            Some(v) => vec![v],
        };
        let mut targets: Vec<Arc<Target>> = Vec::new();
        for v in values {
            if let Some((fetcher, key)) = reference_key(registry, target_model, v) {
                // One target per fetcher of this edge, shared by its keys.
                let target = match targets.iter().find(|t| std::ptr::eq(t.fetcher, fetcher)) {
                    Some(t) => t.clone(),
                    None => {
                        let t = Target::new(target_model.clone(), fetcher);
                        targets.push(t.clone());
                        t
                    }
                };
                out.push(Job::new(target, key, job.depth + 1));
            }
        }
    }
    out
}

fn reference_key(
    registry: &Registry,
    target: &RegisteredModel,
    value: &Value,
) -> Option<(&'static FetcherRegistration, Key)> {
    match value {
        Value::Object(obj) => registry.fetchers_for(target.name()).find_map(|f| {
            let values: Option<Vec<KeyValue>> = f
                .identifier
                .iter()
                .map(|edge| obj.get(*edge).and_then(json_key_value))
                .collect();
            let key = Key::new(values?);
            f.check_key(&key).ok().map(|()| (f, key))
        }),
        scalar => {
            // A bare value references the model by its primary index.
            let primary = &target.definition().primary_index()?.edges;
            let f = registry.fetcher(target.name(), primary)?;
            let key = Key::new(vec![json_key_value(scalar)?]);
            f.check_key(&key).ok().map(|()| (f, key))
        }
    }
}

fn json_key_value(v: &Value) -> Option<KeyValue> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(KeyValue::Int(i)),
            None => {
                let f = n.as_f64()?;
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Some(KeyValue::Int(f as i64))
                } else {
                    Some(KeyValue::Float(f))
                }
            }
        },
        Value::String(s) => Some(KeyValue::String(s.clone())),
        Value::Bool(b) => Some(KeyValue::Bool(*b)),
        _ => None,
    }
}
