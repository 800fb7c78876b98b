//! Schemas, records and small helpers the cases share.

use kye_runtime::store::*;
use serde_json::{json, Value};

use crate::harness::{Differences, Fresh, Harness, Reads, Snapshot};

/// Pokémon with a secondary index, optional edges, a multi-valued reference and a list.
pub const POKEMON: &str = r#"
Pokemon(id)(name) {
  id: Number
  name: String
  weight: Number
  base_experience: Number?
  legendary: Boolean?
  types: PokemonType+
  tags: String*
}
PokemonType(name) {
  name: String
  generation: String?
}
"#;

/// References to a model with a composite key.
pub const REFS: &str = r#"
Pokemon(id) {
  id: Number
  name: String
}
Day(year, month) {
  year: Number
  month: Number
  label: String?
}
Event(id) {
  id: Number
  day: Day?
  days: Day*
}
"#;

pub fn schema(text: &str) -> kye_lang::Schema {
    kye_lang::compile_str("test.kye", text).unwrap_or_else(|e| panic!("{e}"))
}

/// A store under test: its harness's differences, its spec, and what keeps it alive.
pub struct Store {
    pub differs: Differences,
    pub spec: StoreSpec,
    snapshot: fn(&StoreSpec) -> Snapshot,
    _fresh: Fresh,
}

impl Store {
    pub fn new(h: &Harness) -> Store {
        let fresh = (h.fresh)();
        Store {
            differs: h.differs,
            spec: fresh.spec.clone(),
            snapshot: h.snapshot,
            _fresh: fresh,
        }
    }

    /// Opens the writer.
    pub fn writer(&self) -> Box<dyn StoreWrite> {
        open_store(&self.spec).unwrap_or_else(|e| panic!("{}: {e}", self.spec))
    }

    /// Opens the writer and prepares `schema`.
    pub fn prepared(&self, schema_text: &str) -> Box<dyn StoreWrite> {
        let mut s = self.writer();
        s.prepare(&schema(schema_text))
            .unwrap_or_else(|e| panic!("prepare: {e}"));
        s
    }

    /// Opens a reader.
    pub fn reader(&self) -> Box<dyn StoreRead> {
        open_store_read_only(&self.spec).unwrap_or_else(|e| panic!("{}: {e}", self.spec))
    }

    /// The store as its own tools see it.
    pub fn snapshot(&self) -> Snapshot {
        (self.snapshot)(&self.spec)
    }

    /// `rebuilt` for stores that rebuild records from columns, `written` for stores that
    /// keep documents as written.
    pub fn reads(&self, rebuilt: Value, written: Value) -> Value {
        match self.differs.reads {
            Reads::Rebuilt => rebuilt,
            Reads::AsWritten => written,
        }
    }
}

pub fn record(run: RunId, model: &str, v: Value) -> WriteItem {
    WriteItem::Record(RecordWrite::new(
        model,
        v,
        Provenance::new(run, "test::fetch"),
    ))
}

pub fn outcome(run: RunId, model: &str, key: IndexKey, status: KeyStatus) -> WriteItem {
    WriteItem::KeyOutcome(KeyOutcomeWrite {
        run,
        model: model.into(),
        key,
        status,
        reason: None,
        at: Timestamp::now(),
    })
}

pub fn pikachu() -> Value {
    json!({"id": 25, "name": "pikachu", "weight": 60, "base_experience": 112, "legendary": false,
           "types": [{"name": "electric", "generation": "generation-i"}], "tags": ["mouse", "yellow"]})
}

/// Writes a batch whose items must all succeed.
pub fn write_ok(s: &mut dyn StoreWrite, items: &[WriteItem]) {
    let res = s.write_batch(items).expect("batch");
    assert!(res.iter().all(Result::is_ok), "{res:?}");
}

/// Every record of `model` (default query).
pub fn all(s: &dyn StoreRead, model: &str) -> Vec<Value> {
    s.records(&RecordQuery::new(model))
        .unwrap_or_else(|e| panic!("records of {model}: {e}"))
}

/// One field of every record of `model`, in key order.
pub fn field(s: &dyn StoreRead, model: &str, edge: &str) -> Vec<Value> {
    all(s, model).into_iter().map(|r| r[edge].clone()).collect()
}

/// A tables snapshot: `(table, columns, rows)`.
pub fn tables(t: &[(&str, &[&str], usize)]) -> Snapshot {
    Snapshot::Tables(
        t.iter()
            .map(|(name, cols, rows)| {
                (
                    name.to_string(),
                    (cols.iter().map(|c| c.to_string()).collect(), *rows),
                )
            })
            .collect(),
    )
}

/// A documents snapshot: `(directory, files)`.
pub fn documents(d: &[(&str, &[&str])]) -> Snapshot {
    Snapshot::Documents(
        d.iter()
            .map(|(dir, files)| {
                let mut files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
                files.sort();
                (dir.to_string(), files)
            })
            .collect(),
    )
}

/// The provenance columns of every model table (`_kye_source`: the declared source and its
/// version, issue 18).
pub const PROVENANCE: [&str; 5] = [
    "_kye_run_id",
    "_kye_fetcher",
    "_kye_fetched_at",
    "_kye_hash",
    "_kye_source",
];

/// `cols` followed by the provenance columns.
pub fn with_provenance<'a>(cols: &[&'a str]) -> Vec<&'a str> {
    cols.iter().copied().chain(PROVENANCE).collect()
}
