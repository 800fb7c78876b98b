//! Requests, step 4: what resolution hands on, the fetcher and the checked keys. Ranges stay
//! ranges and are streamed one key at a time.

use crate::list::ListerRegistration;
use crate::model::Key;
use crate::registry::{FetcherRegistration, RegisteredModel};

/// A request matched to its fetcher, with every key checked.
#[derive(Debug, Clone)]
pub struct ResolvedRequest {
    pub(super) model: RegisteredModel,
    pub(super) identifier: Vec<String>,
    pub(super) fetcher: &'static FetcherRegistration,
    pub(super) keys: KeySet,
}

impl ResolvedRequest {
    /// The model (with its schema, for validation).
    pub fn model(&self) -> &RegisteredModel {
        &self.model
    }

    /// The index edges the keys are for.
    pub fn identifier(&self) -> &[String] {
        &self.identifier
    }

    /// The function that fetches them.
    pub fn fetcher(&self) -> &'static FetcherRegistration {
        self.fetcher
    }

    /// The keys to fetch.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Splits into parts, e.g. to move the keys into a streaming task.
    pub fn into_parts(self) -> (RegisteredModel, &'static FetcherRegistration, KeySet) {
        (self.model, self.fetcher, self.keys)
    }
}

/// Checked keys of a resolved request. Ranges are kept as ranges: iterate them lazily with
/// [`KeySet::iter`] or [`KeySet::into_keys`].
#[derive(Debug, Clone, PartialEq)]
pub enum KeySet {
    /// Explicit keys (one, or a list), duplicates removed, in request order.
    Keys(Vec<Key>),
    /// Every integer from `start` to `end`, both included.
    Range {
        /// First key.
        start: i64,
        /// Last key (included).
        end: i64,
    },
    /// Every key the list function finds, as it finds them (none known beforehand).
    Listed(&'static ListerRegistration),
}

impl KeySet {
    /// Number of keys (a range of all i64 has 2^64 keys, hence `u64` saturating).
    pub fn len(&self) -> u64 {
        match self {
            KeySet::Keys(k) => k.len() as u64,
            KeySet::Range { start, end } => {
                let n = (*end as i128) - (*start as i128) + 1;
                u64::try_from(n.max(0)).unwrap_or(u64::MAX)
            }
            KeySet::Listed(_) => 0,
        }
    }

    /// True when there are no keys (never for a resolved request; a listed set's keys are not
    /// known until its list function runs, so it is not empty).
    pub fn is_empty(&self) -> bool {
        !matches!(self, KeySet::Listed(_)) && self.len() == 0
    }

    /// The list function that finds the keys, for a bare-model request.
    pub fn lister(&self) -> Option<&'static ListerRegistration> {
        match self {
            KeySet::Listed(l) => Some(l),
            _ => None,
        }
    }

    /// The keys, lazily.
    pub fn iter(&self) -> KeyIter {
        self.clone().into_keys()
    }

    /// The keys, lazily, by value (`Send + 'static`: move it into a task).
    pub fn into_keys(self) -> KeyIter {
        match self {
            KeySet::Keys(k) => KeyIter::Keys(k.into_iter()),
            KeySet::Range { start, end } => KeyIter::Range(start..=end),
            // Found while the run goes on (the runtime takes them from the list function).
            KeySet::Listed(_) => KeyIter::Keys(Vec::new().into_iter()),
        }
    }
}

impl IntoIterator for KeySet {
    type Item = Key;
    type IntoIter = KeyIter;
    fn into_iter(self) -> KeyIter {
        self.into_keys()
    }
}

/// Iterator over the keys of a [`KeySet`]; ranges yield one key at a time.
#[derive(Debug, Clone)]
pub enum KeyIter {
    /// Explicit keys.
    Keys(std::vec::IntoIter<Key>),
    /// An integer range.
    Range(std::ops::RangeInclusive<i64>),
}

impl Iterator for KeyIter {
    type Item = Key;
    fn next(&mut self) -> Option<Key> {
        match self {
            KeyIter::Keys(k) => k.next(),
            KeyIter::Range(r) => r.next().map(Key::single),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            KeyIter::Keys(k) => k.size_hint(),
            KeyIter::Range(r) => r.size_hint(),
        }
    }
}
