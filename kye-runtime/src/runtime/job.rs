//! The unit of work between request and fetch: one key of one fetcher ([`Job`]), and what every
//! key of that fetcher shares ([`Target`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::exec::Work;
use crate::model::{Key, KeyValue};
use crate::registry::{FetcherRegistration, RegisteredModel};
use crate::store::IndexKey;

/// What every key of one fetcher shares: built once per fetcher, not once per key.
pub(super) struct Target {
    pub model: RegisteredModel,
    pub fetcher: &'static FetcherRegistration,
    /// The fetcher's identifier (`Pokemon.id`): its name for limits, config and spans.
    pub name: Arc<str>,
    /// `module::function`, the provenance of what it stores.
    pub provenance: String,
    /// The declared source the fetcher belongs to, `name@version`, stored with its records.
    pub source: Option<String>,
}

impl Target {
    pub fn new(model: RegisteredModel, fetcher: &'static FetcherRegistration) -> Arc<Target> {
        let name = fetcher.identifier_text();
        Arc::new(Target {
            source: crate::source::source_version_of(&name),
            name: Arc::from(name),
            provenance: format!("{}::{}", fetcher.module_path, fetcher.function),
            model,
            fetcher,
        })
    }
}

/// One key to fetch.
pub(super) struct Job {
    pub target: Arc<Target>,
    pub key: Key,
    /// The key as the store looks it up (`{"id": 25}`).
    pub index_key: IndexKey,
    /// 0 for a requested key, n for a key found n references away.
    pub depth: u32,
    /// The record a list page handed over for this key: taken by the first attempt instead of
    /// calling the fetcher.
    pub listed_record: Mutex<Option<Value>>,
    /// The key's place in its list function's order (1, 2, …), or 0 when not listed: a
    /// cursor the list function saved after n keys waits until keys 1..=n are done.
    pub list_seq: u64,
    /// The list function (`module::function`) that handed over `listed_record`.
    pub listed_by: Option<Arc<str>>,
    /// The record written came from the list page, not from the fetcher (set as the last
    /// attempt takes it).
    pub used_listed: AtomicBool,
}

impl Work for Job {
    fn fetcher(&self) -> &str {
        &self.target.name
    }
    fn model(&self) -> &str {
        self.target.model.name()
    }
    fn key(&self) -> String {
        self.key.to_string()
    }
}

impl Job {
    pub fn new(target: Arc<Target>, key: Key, depth: u32) -> Job {
        let index_key = IndexKey::new(
            target.fetcher.identifier.iter().copied(),
            key.values().iter().map(KeyValue::to_json),
        );
        Job {
            target,
            key,
            index_key,
            depth,
            listed_record: Mutex::new(None),
            list_seq: 0,
            listed_by: None,
            used_listed: AtomicBool::new(false),
        }
    }

    /// This job as the `seq`-th key of the list function `lister`, with the record a list page
    /// handed over for it.
    pub fn listed(self, seq: u64, lister: &Arc<str>, record: Option<Value>) -> Job {
        Job {
            listed_by: record.is_some().then(|| lister.clone()),
            listed_record: Mutex::new(record),
            list_seq: seq,
            ..self
        }
    }

    /// The listed record, once (a retry calls the fetcher).
    pub fn take_listed_record(&self) -> Option<Value> {
        let record = self
            .listed_record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        self.used_listed.store(record.is_some(), Ordering::Relaxed);
        record
    }

    /// Who produced the record this job writes: the list function whose page carried it, or
    /// the fetcher (`module::function`).
    pub fn provenance(&self) -> String {
        match &self.listed_by {
            Some(lister) if self.used_listed.load(Ordering::Relaxed) => lister.to_string(),
            _ => self.target.provenance.clone(),
        }
    }

    /// Whether a list page handed over this key's record (not yet taken).
    pub fn listed_record_present(&self) -> bool {
        self.listed_record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        self.target.model.name()
    }

    /// `Model:{"edge":value}`: one key of one model, whichever fetcher reaches it.
    pub fn seen_key(&self) -> String {
        format!("{}:{}", self.model(), self.index_key.canonical())
    }
}

/// What the executor runs: one key, or a group of keys of one batch fetcher called at once
/// (retried, rate limited and timed as one call).
pub(super) enum Unit {
    One(Arc<Job>),
    Batch(Batch),
}

/// Keys of one batch fetcher, called together.
pub(super) struct Batch {
    pub target: Arc<Target>,
    pub jobs: Vec<Arc<Job>>,
}

impl Batch {
    /// The keys as a list, `[1, 2, 3]`, for messages.
    pub fn keys_text(&self) -> String {
        let keys: Vec<String> = self.jobs.iter().map(|j| j.key.to_string()).collect();
        format!("[{}]", keys.join(", "))
    }
}

impl Unit {
    fn target(&self) -> &Target {
        match self {
            Unit::One(job) => &job.target,
            Unit::Batch(b) => &b.target,
        }
    }
}

impl Work for Unit {
    fn fetcher(&self) -> &str {
        &self.target().name
    }
    fn model(&self) -> &str {
        self.target().model.name()
    }
    fn key(&self) -> String {
        match self {
            Unit::One(job) => job.key.to_string(),
            Unit::Batch(b) => b.keys_text(),
        }
    }
    fn size(&self) -> u64 {
        match self {
            Unit::One(_) => 1,
            Unit::Batch(b) => b.jobs.len() as u64,
        }
    }
}
