//! Judging which outputs of a transformer are stale, for
//! [`StoreRead::stale_inputs`](super::StoreRead::stale_inputs): an output is fresh when every
//! input it was computed from is stored now with the content hash it had then.
//!
//! A content hash covers the whole record, its key included, so "this input is stored now with
//! that content" is "its model holds a record with that hash": the judgement compares hashes
//! only, never keys, and keeps a set of 32-byte digests per input model (hashed by their first
//! eight bytes, which are already uniform) instead of a map from key text to hash text.
//! Stores feed a [`Judge`] the current hashes of each input model and the lineage rows in
//! output order; it answers the primary input's hashes whose output is fresh.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use sha2::{Digest as _, Sha256};

use super::{IndexKey, StaleCounts, StoreError, StoreRead};

/// A content hash as the 64 bytes after `sha256:`, copied as they are (no hex is decoded: two
/// texts are equal exactly when their bytes are). Any other text is its SHA-256 followed by 32
/// bytes of `0xff`, which no text holds, so it too compares equal only to itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest([u8; 64]);

impl Digest {
    pub(crate) fn of(text: &str) -> Digest {
        let mut out = [0xffu8; 64];
        match text.strip_prefix("sha256:").map(str::as_bytes) {
            Some(hex) if hex.len() == 64 => out.copy_from_slice(hex),
            _ => out[..32].copy_from_slice(&Sha256::digest(text.as_bytes())),
        }
        Digest(out)
    }
}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The first 32 hex digits (128 bits of the hash, four per byte), folded by a wide
        // multiplication so that every bit reaches every bit of the result.
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.0[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let fold = |a: u64, b: u64| {
            let m = u128::from(a) * u128::from(b ^ 0x9e37_79b9_7f4a_7c15);
            (m >> 64) as u64 ^ m as u64
        };
        state.write_u64(fold(word(0) ^ word(16), word(8) ^ word(24)));
    }
}

/// Passes the `u64` a [`Digest`] writes through (it is mixed already).
#[derive(Default)]
pub(crate) struct FirstBytes(u64);

impl Hasher for FirstBytes {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A set of content hashes.
pub(crate) type Digests = HashSet<Digest, BuildHasherDefault<FirstBytes>>;

/// Judges lineage rows, one output at a time, against the current hashes of the inputs
/// other than the primary one; the primary input's stored records are then read once, each
/// looked up by its hash in the [`Verdict`].
pub(crate) struct Judge {
    /// Each input model with the hashes of its stored records, the primary input first (its
    /// set is filled only when an output read other records of the primary model).
    current: Vec<(String, Digests)>,
    /// True once a lineage row of another record of the primary model is seen while its set
    /// is empty: judge again with the set filled ([`Judge::with_primary_hashes`]).
    wants_primary: bool,
    verdict: Verdict,
    group: Group,
}

/// The output being judged.
#[derive(Default)]
struct Group {
    output_key: String,
    started: bool,
    unchanged: bool,
    /// The primary input's hash and where its key was written in [`Verdict::keys`], once
    /// its row is seen.
    primary: Option<(Digest, std::ops::Range<usize>)>,
}

/// What the lineage says of each primary input record, by its content hash as the lineage
/// has it.
#[derive(Default)]
pub(crate) struct Verdict {
    outputs: std::collections::HashMap<Digest, Outputs, BuildHasherDefault<FirstBytes>>,
    /// The primary keys (canonical text) of the entries, end to end.
    keys: String,
    /// The canonical keys of the stale primary records handed over (kept only when the
    /// lineage has outputs): a changed record's key, which needs no lookup to tell it from a
    /// gone one.
    stale: HashSet<String>,
}

/// The outputs computed from one primary input record.
struct Outputs {
    /// One of them has every input unchanged (other than the primary one, looked at when the
    /// primary input's stored records are read).
    unchanged: bool,
    /// How many outputs.
    count: u64,
    /// A stored primary record has this hash.
    seen: bool,
    /// The record's primary key in [`Verdict::keys`].
    key: std::ops::Range<usize>,
}

impl Judge {
    /// A judge of the transformer reading `models`, the primary input first.
    pub(crate) fn new<'a>(models: impl IntoIterator<Item = &'a str>) -> Judge {
        Judge {
            current: models
                .into_iter()
                .map(|m| (m.to_string(), Digests::default()))
                .collect(),
            wants_primary: false,
            verdict: Verdict::default(),
            group: Group::default(),
        }
    }

    /// The input models other than the primary one whose hashes are still to be read (the
    /// same model twice is read once).
    pub(crate) fn to_read(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (m, _) in self.current.iter().skip(1) {
            if *m != self.current[0].0 && !out.contains(m) {
                out.push(m.clone());
            }
        }
        out
    }

    /// The hashes of `model`'s stored records, to fill.
    pub(crate) fn current(&mut self, model: &str) -> Option<&mut Digests> {
        self.current
            .iter_mut()
            .find(|(m, _)| m == model)
            .map(|(_, d)| d)
    }

    /// True when the lineage read other records of the primary model than each output's
    /// own: the judgement must be made again after [`Judge::with_primary_hashes`].
    pub(crate) fn wants_primary_hashes(&self) -> bool {
        self.wants_primary
    }

    /// A fresh judge of the same inputs with the primary model's hashes filled by `fill`.
    pub(crate) fn with_primary_hashes<E>(
        mut self,
        fill: impl FnOnce(&mut Digests) -> Result<(), E>,
    ) -> Result<Judge, E> {
        let mut primary = std::mem::take(&mut self.current[0].1);
        fill(&mut primary)?;
        self.current[0].1 = primary;
        Ok(Judge {
            current: self.current,
            wants_primary: false,
            verdict: Verdict::default(),
            group: Group::default(),
        })
    }

    /// One lineage row; rows come grouped by output (the lineage table's order).
    pub(crate) fn row(
        &mut self,
        output_key: &str,
        input_model: &str,
        input_key: &str,
        input_hash: Option<&str>,
        input_primary: bool,
    ) {
        if !self.group.started || self.group.output_key != output_key {
            self.end_group();
            self.group.started = true;
            self.group.unchanged = true;
            self.group.output_key.clear();
            self.group.output_key.push_str(output_key);
        }
        // An input read and stored then, with the same content now. One looked up and missing
        // then never counts as unchanged: it may be stored now under the key the store
        // normalized the lookup to, which the lineage cannot tell.
        let digest = input_hash.map(Digest::of);
        if input_primary && self.group.primary.is_none() {
            // Judged when the primary input's records are read. Read without a hash, it is
            // entered under a digest of its key that no stored hash has: such outputs are
            // never fresh, and are counted per key (stale when stored, orphaned when not),
            // not merged with other keys read without a hash.
            let d = digest.unwrap_or_else(|| Digest::of(&format!("\u{0}{input_key}")));
            let keys = &mut self.verdict.keys;
            let start = keys.len();
            keys.push_str(input_key);
            self.group.primary = Some((d, start..keys.len()));
            if digest.is_none() {
                self.group.unchanged = false;
            }
            return;
        }
        if input_model == self.current[0].0 && self.current[0].1.is_empty() {
            self.wants_primary = true;
        }
        let stored_now = digest.is_some_and(|d| {
            self.current
                .iter()
                .find(|(m, _)| m == input_model)
                .is_some_and(|(_, set)| set.contains(&d))
        });
        self.group.unchanged &= stored_now;
    }

    fn end_group(&mut self) {
        let group = std::mem::take(&mut self.group);
        self.group.output_key = group.output_key;
        let Some((digest, key)) = group.primary else {
            return;
        };
        let v = &mut self.verdict;
        let entry = match v.outputs.entry(digest) {
            std::collections::hash_map::Entry::Occupied(e) => {
                // Another output of the same primary record: its key is written already.
                v.keys.truncate(key.start);
                e.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(e) => e.insert(Outputs {
                unchanged: false,
                count: 0,
                seen: false,
                key,
            }),
        };
        entry.unchanged |= group.unchanged;
        entry.count += 1;
    }

    /// The verdict, to look the primary input's stored records up in.
    pub(crate) fn finish(mut self) -> Verdict {
        self.end_group();
        self.verdict
    }
}

impl Verdict {
    /// True when the output of the stored primary record with this hash is up to date.
    pub(crate) fn unchanged(&mut self, hash: &str) -> bool {
        self.unchanged_digest(Digest::of(hash))
    }

    /// [`Verdict::unchanged`] of a hash read as a [`Digest`].
    pub(crate) fn unchanged_digest(&mut self, hash: Digest) -> bool {
        match self.outputs.get_mut(&hash) {
            Some(o) => {
                o.seen = true;
                o.unchanged
            }
            None => false,
        }
    }

    /// After every stored primary record was looked up: the primary keys (canonical text)
    /// whose record is not stored with the hash the lineage has (changed, or gone), each with
    /// its number of outputs.
    pub(crate) fn changed_or_gone(&self) -> impl Iterator<Item = (&str, u64)> {
        self.outputs
            .values()
            .filter(|o| !o.seen)
            .map(|o| (&self.keys[o.key.clone()], o.count))
    }

    /// Notes a stale primary record handed over (its key is stored).
    pub(crate) fn note_stale(&mut self, key: &IndexKey) {
        if !self.outputs.is_empty() {
            self.stale.insert(key.canonical());
        }
    }

    /// How many outputs have a primary input that is no longer stored in `store`: of those
    /// whose primary record is not stored with the hash they read, the ones whose key was not
    /// handed over as stale are looked up.
    pub(crate) fn orphaned<S: StoreRead + ?Sized>(
        &self,
        store: &S,
        model: &str,
    ) -> Result<u64, StoreError> {
        let mut gone = 0;
        for (text, count) in self.changed_or_gone() {
            if self.stale.contains(text) {
                continue;
            }
            let stored = match IndexKey::from_canonical(text) {
                Some(key) => store.last_stored(model, &key)?.is_some(),
                None => false,
            };
            if !stored {
                gone += count;
            }
        }
        Ok(gone)
    }
}

/// [`StoreRead::stale_inputs`] through the store's other reads: the inputs' hashes from
/// [`StoreRead::content_hashes`], the lineage from [`StoreRead::for_each_lineage`].
pub(crate) fn stale_inputs_by_reads<S: StoreRead + ?Sized>(
    store: &S,
    transformer: &str,
    inputs: &[(&str, &[&str])],
    each: &mut dyn FnMut(IndexKey, String) -> Result<(), StoreError>,
) -> Result<StaleCounts, StoreError> {
    let Some((primary, primary_edges)) = inputs.first() else {
        return Ok(StaleCounts::default());
    };
    let edges_of = |model: &str| {
        inputs
            .iter()
            .find(|(m, _)| *m == model)
            .map(|(_, e)| *e)
            .unwrap_or_default()
    };
    let hashes = |model: &str, set: &mut Digests| {
        store.content_hashes(model, edges_of(model), &mut |_, hash| {
            set.insert(Digest::of(&hash));
            Ok(())
        })
    };
    let mut judge = Judge::new(inputs.iter().map(|(m, _)| *m));
    for model in judge.to_read() {
        if let Some(set) = judge.current(&model) {
            hashes(&model, set)?;
        }
    }
    let lineage = |judge: &mut Judge| {
        store.for_each_lineage(transformer, &mut |r| {
            judge.row(
                &r.output_key,
                &r.input_model,
                &r.input_key,
                r.input_hash.as_deref(),
                r.input_primary,
            );
            Ok(())
        })
    };
    lineage(&mut judge)?;
    if judge.wants_primary_hashes() {
        judge = judge.with_primary_hashes(|set| hashes(primary, set))?;
        lineage(&mut judge)?;
    }
    let mut verdict = judge.finish();
    let mut unchanged = 0u64;
    store.content_hashes(primary, primary_edges, &mut |key, hash| {
        if verdict.unchanged(&hash) {
            unchanged += 1;
            return Ok(());
        }
        verdict.note_stale(&key);
        each(key, hash)
    })?;
    Ok(StaleCounts {
        unchanged,
        orphaned: verdict.orphaned(store, primary)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> String {
        let mut s = String::from("sha256:");
        for _ in 0..32 {
            s.push_str(&format!("{n:02x}"));
        }
        s
    }

    #[test]
    fn digests_parse_hex_and_hash_anything_else() {
        assert_eq!(&Digest::of(&h(0xab)).0[..], "ab".repeat(32).as_bytes());
        assert!(Digest::of("sha256:xyz") == Digest::of("sha256:xyz"));
        assert!(Digest::of("sha256:xyz") != Digest::of("sha256:xy"));
        // Other text compares by its own SHA-256, never equal to a hash of kye's form.
        assert!(Digest::of("md5:abc") == Digest::of("md5:abc"));
        assert!(Digest::of("md5:abc") != Digest::of("md5:abd"));
        // Upper-case hex is not what kye writes: other bytes, so it differs.
        assert!(Digest::of(&h(0xab).to_uppercase()) != Digest::of(&h(0xab)));
    }

    #[test]
    fn an_output_is_fresh_only_when_every_input_is_stored_with_its_hash() {
        let mut j = Judge::new(["P", "Q"]);
        assert_eq!(j.to_read(), vec!["Q".to_string()]);
        j.current("Q").unwrap().insert(Digest::of(&h(9)));
        // out1: P 1 and Q 9, Q as stored.
        j.row("o1", "P", "{\"id\":1}", Some(&h(1)), true);
        j.row("o1", "Q", "{\"id\":9}", Some(&h(9)), false);
        // out2: P 2, Q read with a hash no longer stored.
        j.row("o2", "P", "{\"id\":2}", Some(&h(2)), true);
        j.row("o2", "Q", "{\"id\":9}", Some(&h(8)), false);
        // out3: P 3, a Q looked up and missing then.
        j.row("o3", "Q", "{\"id\":7}", None, false);
        j.row("o3", "P", "{\"id\":3}", Some(&h(3)), true);
        // out4: P 4, whose record is no longer stored with that hash.
        j.row("o4", "P", "{\"id\":4}", Some(&h(4)), true);
        // out5: a row of a model that is not an input.
        j.row("o5", "P", "{\"id\":5}", Some(&h(5)), true);
        j.row("o5", "R", "{\"id\":1}", Some(&h(1)), false);
        assert!(!j.wants_primary_hashes());
        let mut v = j.finish();
        // The stored P records: 1, 2, 3 and 5 as they were, 4 changed, 6 new.
        assert!(v.unchanged(&h(1)));
        assert!(!v.unchanged(&h(2)));
        assert!(!v.unchanged(&h(3)));
        assert!(!v.unchanged(&h(5)));
        assert!(!v.unchanged(&h(40)));
        assert!(!v.unchanged(&h(6)));
        let gone: Vec<_> = v.changed_or_gone().collect();
        assert_eq!(gone, vec![("{\"id\":4}", 1)]);
    }

    #[test]
    fn reading_other_records_of_the_primary_model_asks_for_its_hashes() {
        let mut j = Judge::new(["P"]);
        assert!(j.to_read().is_empty());
        j.row("o1", "P", "{\"id\":1}", Some(&h(1)), true);
        j.row("o1", "P", "{\"id\":2}", Some(&h(2)), false);
        assert!(j.wants_primary_hashes());
        let mut j = j
            .with_primary_hashes(|set| {
                set.insert(Digest::of(&h(1)));
                Ok::<_, ()>(())
            })
            .unwrap();
        j.row("o1", "P", "{\"id\":1}", Some(&h(1)), true);
        j.row("o1", "P", "{\"id\":2}", Some(&h(2)), false);
        assert!(!j.wants_primary_hashes());
        // P 2 is not stored with the hash o1 read: o1 is stale.
        assert!(!j.finish().unchanged(&h(1)));
    }
}
