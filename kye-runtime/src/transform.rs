//! Transformers (`#[kye::transform]`), the registry's side: [`TransformerRegistration`] (what
//! the registry collects) and [`TransformContext`] (what a transformer gets: lookups of its
//! declared inputs, each recorded as lineage). Running them is `runtime/transform.rs`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::list::IntoKeyValue;
use crate::model::{FetchFuture, Model};
use crate::store::{IndexKey, LineageInput, StoreRead};

/// A transformer registered by `#[kye::transform]` (generated code builds these).
pub struct TransformerRegistration {
    /// The model it produces, e.g. `"PokemonCard"`.
    pub output: &'static str,
    /// The index edges of its output's key, e.g. `["id"]`.
    pub identifier: &'static [&'static str],
    /// The models it reads, the primary input first: it is called once per stored record of
    /// the primary input and looks the others up through its [`TransformContext`].
    pub inputs: &'static [&'static str],
    /// The function's name (also its name in provenance: `transform <function>`).
    pub function: &'static str,
    /// `module_path!()` of the function.
    pub module_path: &'static str,
    /// Rust source file of the function.
    pub file: &'static str,
    /// Line of the function.
    pub line: u32,
    /// The first paragraph of the function's doc comment (may be empty).
    pub doc: &'static str,
    /// Type-erased entry point: the primary input record (as stored, references as keys) and
    /// the context; the output record as JSON, or `None` for no output.
    pub call: fn(Value, TransformContext) -> FetchFuture,
}

inventory::collect!(TransformerRegistration);

impl fmt::Debug for TransformerRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformerRegistration")
            .field("output", &self.output)
            .field("identifier", &self.identifier)
            .field("inputs", &self.inputs)
            .field("function", &self.function)
            .field("file", &self.file)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TransformerRegistration {
    /// The same registration (each function has one).
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl TransformerRegistration {
    /// The primary input model (the first of `from(...)`).
    pub fn primary(&self) -> &'static str {
        self.inputs.first().copied().unwrap_or_default()
    }

    /// What provenance and rejects name it by: `transform <function>`.
    pub fn provenance(&self) -> String {
        format!("transform {}", self.function)
    }

    /// `Output.edge <- Input, Other` for listings.
    pub fn signature(&self) -> String {
        let edges: Vec<String> = self.identifier.iter().map(|e| e.to_string()).collect();
        format!(
            "{} <- {}",
            crate::model::identifier_text(self.output, &edges),
            self.inputs.join(", ")
        )
    }
}

/// A transformer's input record as its function takes it: the primary input's generated type
/// (deserialized from the stored record), or the stored record as JSON (references to other
/// models stay keys, e.g. `"types": ["grass", "poison"]`).
#[diagnostic::on_unimplemented(
    message = "a transformer's first parameter must be its primary input `{M}` or `serde_json::Value`",
    label = "expected `{M}` (the first model of `from(...)`) or `serde_json::Value`"
)]
pub trait TransformInput<M>: Sized {
    /// The input from the stored record.
    fn from_stored(record: Value) -> Result<Self>;
}

impl<M: Model> TransformInput<M> for M {
    fn from_stored(record: Value) -> Result<Self> {
        typed::<M>(record)
    }
}

impl<M: Model> TransformInput<M> for Value {
    fn from_stored(record: Value) -> Result<Self> {
        Ok(record)
    }
}

fn typed<M: Model>(record: Value) -> Result<M> {
    let key = primary_key_of(M::INDEXES.first().copied().unwrap_or_default(), &record);
    serde_json::from_value(record).map_err(|e| {
        Error::permanent(format!(
            "the stored {} record {key} does not read as the Rust type {}: {e} (a record with \
             references to other models reads as serde_json::Value: take that instead)",
            M::NAME,
            M::NAME
        ))
    })
}

/// The key of `record` over `edges` (missing edges read as `null`).
pub(crate) fn primary_key_of(edges: &[&str], record: &Value) -> IndexKey {
    IndexKey::new(
        edges.iter().copied(),
        edges
            .iter()
            .map(|e| record.get(*e).cloned().unwrap_or(Value::Null)),
    )
}

/// What the runtime shares between the calls of one transformer: a read handle of the store
/// and the content hashes of its inputs, read when the transformer's run began.
pub(crate) struct Inputs {
    pub transformer: &'static TransformerRegistration,
    pub reader: Mutex<Box<dyn StoreRead>>,
    /// Per input model looked up so far: canonical primary key → content hash, read whole
    /// at the model's first lookup.
    pub hashes: Mutex<HashMap<&'static str, HashMap<String, String>>>,
    /// Per input model: the edges of its primary index.
    pub primary_edges: HashMap<&'static str, Vec<String>>,
    /// Lookups made so far in this run (model and the key asked for, canonical): the record
    /// found, under its stored primary key, with its hash. Many outputs read the same few
    /// records (every Pokémon's card reads its types): one read each per run, up to
    /// [`LOOKUPS_KEPT`] of them.
    pub looked_up: Mutex<HashMap<(&'static str, String), Lookup>>,
}

/// A lookup's result: the record (if stored), its primary key as stored, its content hash.
pub(crate) type Lookup = (Option<Value>, IndexKey, Option<String>);

/// How many lookups a run keeps (beyond, records are read each time).
pub(crate) const LOOKUPS_KEPT: usize = 1024;

/// What a transformer gets besides its primary input: lookups of the other models it declared
/// in `from(...)`, each recorded as lineage, so that its output is computed again when a
/// record it read changes (or appears, when it was looked up and missing).
///
/// ```ignore
/// #[kye::transform(PokemonCard.id, from(Pokemon, PokemonType))]
/// async fn card(p: serde_json::Value, ctx: &kye::TransformContext) -> kye::Result<PokemonCard> {
///     let grass: Option<PokemonType> = ctx.get::<PokemonType>("grass")?;
///     // ...
/// }
/// ```
#[derive(Clone)]
pub struct TransformContext {
    inputs: Arc<Inputs>,
    read: Arc<Mutex<Vec<LineageInput>>>,
}

impl fmt::Debug for TransformContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformContext")
            .field("transformer", &self.inputs.transformer.function)
            .finish_non_exhaustive()
    }
}

impl TransformContext {
    pub(crate) fn new(inputs: Arc<Inputs>, primary: LineageInput) -> TransformContext {
        TransformContext {
            inputs,
            read: Arc::new(Mutex::new(vec![primary])),
        }
    }

    /// The inputs read so far (the primary first), handed back by the runtime after the call.
    pub(crate) fn lineage(&self) -> Vec<LineageInput> {
        self.read.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The stored record of `M` with this primary key value (`ctx.get::<PokemonType>("grass")`),
    /// or `None` when it is not stored. `M` must be one of the transformer's declared inputs.
    pub fn get<M: Model>(&self, key: impl IntoKeyValue) -> Result<Option<M>> {
        let edges = M::INDEXES.first().copied().unwrap_or_default();
        if edges.len() != 1 {
            return Err(Error::permanent(format!(
                "{}: {} has a composite primary key; look it up with get_json and an IndexKey",
                self.inputs.transformer.function,
                M::NAME
            )));
        }
        let value = key.into_key_value().map_err(|e| {
            Error::permanent(format!(
                "{}: not a key of {}: {e}",
                self.inputs.transformer.function,
                M::NAME
            ))
        })?;
        let key = IndexKey::single(edges[0], value.to_json());
        self.get_json(M::NAME, &key)?.map(typed::<M>).transpose()
    }

    /// The stored record of `model` with this primary key as JSON (references as keys), or
    /// `None` when it is not stored. `model` must be one of the transformer's declared inputs.
    pub fn get_json(&self, model: &str, key: &IndexKey) -> Result<Option<Value>> {
        let t = self.inputs.transformer;
        let Some(model) = t.inputs.iter().copied().find(|m| *m == model) else {
            return Err(Error::permanent(format!(
                "transformer {} read {model} {key}, but {model} is not among its inputs ({}); add it to `from(...)`",
                t.function,
                t.inputs.join(", ")
            )));
        };
        let cannot_read = |e| {
            Error::other(e).context(format!(
                "transformer {} could not read {model} {key}",
                t.function
            ))
        };
        let primary = self
            .inputs
            .primary_edges
            .get(model)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let asked = (model, key.canonical());
        let kept = self
            .inputs
            .looked_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&asked)
            .cloned();
        let (record, key, hash) = if let Some(kept) = kept {
            kept
        } else {
            let reader = self.inputs.reader.lock().unwrap_or_else(|p| p.into_inner());
            // The model's hashes are read before its record, never after: a record changed
            // between the two reads is then recorded with a hash older than what was read
            // (computed again next run), not with the newer one (never computed again).
            let mut hashes = self.inputs.hashes.lock().unwrap_or_else(|p| p.into_inner());
            if !hashes.contains_key(model) {
                let edges: Vec<&str> = primary.iter().map(String::as_str).collect();
                let mut read = HashMap::new();
                reader
                    .content_hashes(model, &edges, &mut |k, h| {
                        read.insert(k.canonical(), h);
                        Ok(())
                    })
                    .map_err(cannot_read)?;
                hashes.insert(model, read);
            }
            let record = reader.record(model, key).map_err(cannot_read)?;
            // A record found is recorded under its primary key as stored (the lookup may have
            // used another index, another edge order, or "25" for 25), so a change to it is seen.
            match record {
                Some(found) => {
                    let stored = IndexKey::new(
                        primary.iter().cloned(),
                        primary
                            .iter()
                            .map(|e| found.get(e).cloned().unwrap_or(Value::Null)),
                    );
                    let hash = hashes
                        .get(model)
                        .and_then(|h| h.get(&stored.canonical()))
                        .cloned();
                    (Some(found), stored, hash)
                }
                None => (None, key.clone(), None),
            }
        };
        {
            let mut kept = self
                .inputs
                .looked_up
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if kept.len() < LOOKUPS_KEPT && !kept.contains_key(&asked) {
                kept.insert(asked, (record.clone(), key.clone(), hash.clone()));
            }
        }
        self.read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(LineageInput {
                model: model.to_string(),
                key,
                hash,
            });
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::store::{
        content_hash, DriftInfo, KeyOutcomeInfo, ListCursorInfo, NewRun, Provenance, RecordQuery,
        RecordWrite, RejectInfo, RunCounts, RunId, RunInfo, SqliteReader, SqliteStore, StoreError,
        StoreWrite, Timestamp, WriteItem,
    };

    fn no_call(_: Value, _: TransformContext) -> crate::model::FetchFuture {
        Box::pin(async { Ok(None) })
    }

    static CARDS: TransformerRegistration = TransformerRegistration {
        output: "Card",
        identifier: &["id"],
        inputs: &["Cat", "Toy"],
        function: "cards",
        module_path: "tests",
        file: "transform.rs",
        line: 0,
        doc: "",
        call: no_call,
    };

    /// A reader whose first record read is followed by a writer storing `then` (another
    /// writer committing between the transformer's reads).
    struct Racing {
        inner: SqliteReader,
        writer: Mutex<Option<(SqliteStore, RunId, Value)>>,
    }

    impl StoreRead for Racing {
        fn kind(&self) -> &'static str {
            self.inner.kind()
        }
        fn location(&self) -> &Path {
            self.inner.location()
        }
        fn last_stored(&self, m: &str, k: &IndexKey) -> Result<Option<Timestamp>, StoreError> {
            self.inner.last_stored(m, k)
        }
        fn latest_outcome(
            &self,
            m: &str,
            k: &IndexKey,
        ) -> Result<Option<KeyOutcomeInfo>, StoreError> {
            self.inner.latest_outcome(m, k)
        }
        fn latest_done(&self, m: &str, k: &IndexKey) -> Result<Option<KeyOutcomeInfo>, StoreError> {
            self.inner.latest_done(m, k)
        }
        fn record(&self, m: &str, k: &IndexKey) -> Result<Option<Value>, StoreError> {
            let found = self.inner.record(m, k)?;
            let next = self.writer.lock().unwrap().take();
            if let Some((mut w, run, then)) = next {
                let item = WriteItem::Record(RecordWrite::new(m, then, Provenance::new(run, "f")));
                assert!(w.write_batch(&[item])?.iter().all(Result::is_ok));
            }
            Ok(found)
        }
        fn outcome_counts(&self, run: RunId) -> Result<RunCounts, StoreError> {
            self.inner.outcome_counts(run)
        }
        fn for_each_record(
            &self,
            q: &RecordQuery,
            each: &mut dyn FnMut(Value) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.inner.for_each_record(q, each)
        }
        fn runs(&self, limit: Option<usize>) -> Result<Vec<RunInfo>, StoreError> {
            self.inner.runs(limit)
        }
        fn run(&self, id: RunId) -> Result<Option<RunInfo>, StoreError> {
            self.inner.run(id)
        }
        fn rejects(
            &self,
            run: Option<RunId>,
            limit: Option<usize>,
        ) -> Result<Vec<RejectInfo>, StoreError> {
            self.inner.rejects(run, limit)
        }
        fn drift(&self) -> Result<Vec<DriftInfo>, StoreError> {
            self.inner.drift()
        }
        fn list_cursor(&self, m: &str, l: &str) -> Result<Option<ListCursorInfo>, StoreError> {
            self.inner.list_cursor(m, l)
        }
        fn content_hashes(
            &self,
            m: &str,
            edges: &[&str],
            each: &mut dyn FnMut(IndexKey, String) -> Result<(), StoreError>,
        ) -> Result<(), StoreError> {
            self.inner.content_hashes(m, edges, each)
        }
    }

    /// A record looked up is recorded with the hash of what was read or an older one, never
    /// a newer: the Toy changes right after it is read, so the lineage must not hold the
    /// changed Toy's hash (that would call the output fresh while it was computed from the
    /// old Toy).
    #[test]
    fn a_record_changed_after_its_lookup_is_not_recorded_with_its_new_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kye.db");
        let mut w = SqliteStore::open(&path).unwrap();
        let schema = kye_lang::compile_str(
            "t.kye",
            "Cat(id) {\n id: Number\n}\nToy(id) {\n id: Number\n name: String\n}\n",
        )
        .unwrap();
        w.prepare(&schema).unwrap();
        let run = w.begin_run(&NewRun::new("x")).unwrap();
        let (old, new) = (
            json!({"id": 1, "name": "ball"}),
            json!({"id": 1, "name": "bone"}),
        );
        let item = WriteItem::Record(RecordWrite::new(
            "Toy",
            old.clone(),
            Provenance::new(run, "f"),
        ));
        assert!(w.write_batch(&[item]).unwrap().iter().all(Result::is_ok));
        let reader = Racing {
            inner: SqliteReader::open(&path).unwrap(),
            writer: Mutex::new(Some((w, run, new.clone()))),
        };
        let inputs = Arc::new(Inputs {
            transformer: &CARDS,
            reader: Mutex::new(Box::new(reader)),
            hashes: Mutex::new(HashMap::new()),
            primary_edges: [
                ("Cat", vec!["id".to_string()]),
                ("Toy", vec!["id".to_string()]),
            ]
            .into_iter()
            .collect(),
            looked_up: Mutex::new(HashMap::new()),
        });
        let ctx = TransformContext::new(
            inputs,
            LineageInput {
                model: "Cat".into(),
                key: IndexKey::single("id", 1),
                hash: Some("sha256:cat".into()),
            },
        );
        let toy = ctx.get_json("Toy", &IndexKey::single("id", 1)).unwrap();
        assert_eq!(
            toy.as_ref().and_then(|t| t.get("name")),
            Some(&json!("ball"))
        );
        let read = ctx.lineage();
        assert_eq!(read[1].key, IndexKey::single("id", 1));
        assert_ne!(read[1].hash, Some(content_hash(&new)));
        assert_eq!(read[1].hash, Some(content_hash(&old)));
    }
}
