//! What the suite needs to know about a store: how to make an empty one, how to look at it
//! with the store's own tools, and where it legitimately differs from the others. Each
//! difference is declared here and asserted for what it is by the cases; none is a skip.
//!
//! A new store (PostgreSQL) adds one function here returning its [`Harness`], and one line in
//! `main.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use kye_runtime::store::{SqliteReader, StoreSpec};
use serde_json::Value;

/// A store under test.
pub struct Harness {
    /// What the store's `kind()` says.
    pub kind: &'static str,
    /// A new, empty store: nothing exists at its spec until a writer opens it.
    pub fresh: fn() -> Fresh,
    /// The store as its own tools see it (tables and rows, or files).
    pub snapshot: fn(&StoreSpec) -> Snapshot,
    /// The store's own consistency checks after writers were killed mid-batch.
    pub after_crash: fn(&StoreSpec),
    /// Where the store differs.
    pub differs: Differences,
    /// Whether the store can be tested here: a server store with no server answering is
    /// skipped (one printed reason) outside CI, and fails under `CI=true`.
    pub available: fn() -> bool,
}

fn always() -> bool {
    true
}

/// An empty store's spec, and what keeps it alive (a temporary directory, a throwaway
/// database) until the case ends.
pub struct Fresh {
    pub spec: StoreSpec,
    pub _keep: Box<dyn std::any::Any>,
}

/// A store seen with its own tools.
#[derive(Debug, PartialEq)]
pub enum Snapshot {
    /// Tables other than kye's own `_kye_*`: name → (columns in order, number of rows).
    Tables(BTreeMap<String, (Vec<String>, usize)>),
    /// Model directories (all but `_kye`): name → its files, sorted.
    Documents(BTreeMap<String, Vec<String>>),
}

/// The ways stores legitimately differ.
#[derive(Debug, Clone, Copy)]
pub struct Differences {
    /// How records are kept.
    pub layout: Layout,
    /// Whether a secondary index value held by another record is refused.
    pub secondary_indexes: SecondaryIndexes,
    /// What reading a record gives back.
    pub reads: Reads,
    /// What a value of the wrong type for its edge does.
    pub values: Values,
    /// What a schema change between runs does.
    pub schema_changes: SchemaChanges,
    /// What a read handle sees of writes made after it was opened.
    pub readers: Readers,
    /// How many writers a store takes at once.
    pub writers: Writers,
    /// Which texts a store keeps.
    pub texts: Texts,
    /// Whether the store keeps transformers' lineage.
    pub lineage: Lineage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lineage {
    /// A lineage table, written in the transaction of its output record and replaced whole
    /// per (transformer, output key).
    Kept,
    /// No lineage: reading it and writing a record with it are refused (`Unsupported`), so
    /// transformers cannot run on the store.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writers {
    /// One writing process at a time: a second writer is refused (`Locked`, naming the pid).
    One,
    /// Any number of writers at once (each batch one transaction).
    Many,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Texts {
    /// Any text, NUL characters included.
    Any,
    /// PostgreSQL's limits: no NUL (U+0000) in text, and index values (primary and secondary
    /// keys) of at most 2,600 bytes. A record breaking either is refused for that record
    /// (`InvalidValue` naming the edge); kye's own texts (fetcher, reason, drift path) show
    /// a NUL as `␀`.
    Limited,
}

/// How records are kept ([`Snapshot`]'s two forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One table per model, child tables per multi-valued edge (docs/store.md, SQLite layout).
    Tables,
    /// One JSON document per record under a directory per model (docs/store.md, the
    /// directory store).
    Documents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondaryIndexes {
    /// A record whose secondary index value another record holds is an item error
    /// (`IndexConflict`); nothing of it is written, the rest of the batch is.
    Enforced,
    /// Records are keyed by their primary index only: such a record is stored too.
    NotChecked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
    /// Records are rebuilt from columns: every edge present (`null`, `[]` when it has no
    /// value), references as keys at depth 0 and as the stored record (when there is one) at
    /// depth 1.
    Rebuilt,
    /// Records are the documents as written, at any depth.
    AsWritten,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// A value that does not fit its edge's type is an item error (`InvalidValue`), and so is
    /// a filter value that does not.
    Typed,
    /// Values are kept as given (the runtime only writes validated records); a filter value
    /// of another type matches nothing.
    AsGiven,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaChanges {
    /// Additive changes migrate the tables; incompatible ones are refused naming model and
    /// edge while the tables hold records, and rebuild tables that hold nothing; table names
    /// that would clash (`A__b` and edge `b` of `A`) are refused.
    Migrated,
    /// Documents take any shape: every change is accepted, stored documents stay as written.
    AnyShape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// A reader sees every batch the writer commits.
    Live,
    /// A reader sees runs, key outcomes and drift as they were when it was opened (records
    /// are read from their files when asked).
    Snapshot,
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// The SQLite store: a `kye.db` in a new temporary directory.
pub fn sqlite() -> Harness {
    Harness {
        kind: "sqlite",
        fresh: || {
            let dir = tempdir();
            Fresh {
                spec: StoreSpec::Sqlite(dir.path().join("kye.db")),
                _keep: Box::new(dir),
            }
        },
        snapshot: |spec| {
            // Opened without kye: the store may be a file kye refused to initialise.
            let c = rusqlite::Connection::open_with_flags(
                spec.path(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .expect("sqlite file");
            let names: Vec<String> = c
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE '\\_kye%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'",
                )
                .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                .expect("tables");
            let tables = names
                .into_iter()
                .map(|t| {
                    let quoted = format!("\"{}\"", t.replace('"', "\"\""));
                    let cols: Vec<String> = c
                        .prepare(&format!(
                            "SELECT name FROM pragma_table_info({})",
                            sql_text(&t)
                        ))
                        .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                        .expect("columns");
                    let rows: i64 = c
                        .query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))
                        .expect("rows");
                    (t, (cols, rows as usize))
                })
                .collect();
            Snapshot::Tables(tables)
        },
        after_crash: |spec| {
            let reader = SqliteReader::open(spec.path()).expect("sqlite reader");
            let c = reader.connection();
            let ok: String = c
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("integrity check");
            assert_eq!(ok, "ok");
            // No duplicate or orphaned child rows.
            let orphans: i64 = c
                .query_row(
                    "SELECT count(*) FROM Item__tags t WHERE NOT EXISTS \
                     (SELECT 1 FROM Item i WHERE i.id = t.id)",
                    [],
                    |r| r.get(0),
                )
                .expect("orphans");
            assert_eq!(orphans, 0);
        },
        differs: Differences {
            layout: Layout::Tables,
            secondary_indexes: SecondaryIndexes::Enforced,
            reads: Reads::Rebuilt,
            values: Values::Typed,
            schema_changes: SchemaChanges::Migrated,
            readers: Readers::Live,
            writers: Writers::One,
            texts: Texts::Any,
            lineage: Lineage::Kept,
        },
        available: always,
    }
}

/// An SQL string literal.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The directory store: `out/` in a new temporary directory.
pub fn dir() -> Harness {
    Harness {
        kind: "dir",
        fresh: || {
            let dir = tempdir();
            Fresh {
                spec: StoreSpec::Dir(dir.path().join("out")),
                _keep: Box::new(dir),
            }
        },
        snapshot: |spec| {
            let mut out = BTreeMap::new();
            for entry in std::fs::read_dir(spec.path()).expect("store directory") {
                let path = entry.expect("entry").path();
                let name = file_name(&path);
                if name == "_kye" || !path.is_dir() {
                    continue;
                }
                let mut files: Vec<String> = std::fs::read_dir(&path)
                    .expect("model directory")
                    .map(|e| file_name(&e.expect("entry").path()))
                    .collect();
                files.sort();
                out.insert(name, files);
            }
            Snapshot::Documents(out)
        },
        after_crash: |spec| {
            let root = spec.path();
            // Reopening for writing (the suite did) removed the temporary files of
            // interrupted writes, and every line of kye's files is whole.
            for dir in [root.join("Item"), root.join("_kye")] {
                for e in std::fs::read_dir(&dir).expect("directory") {
                    let name = file_name(&e.expect("entry").path());
                    assert!(!name.contains(".tmp-"), "{name} left in {}", dir.display());
                }
            }
            for f in ["runs.jsonl", "keys.jsonl"] {
                let text = std::fs::read_to_string(root.join("_kye").join(f)).expect("read");
                for line in text.lines() {
                    serde_json::from_str::<Value>(line)
                        .unwrap_or_else(|e| panic!("{f}: {line}: {e}"));
                }
            }
        },
        differs: Differences {
            layout: Layout::Documents,
            secondary_indexes: SecondaryIndexes::NotChecked,
            reads: Reads::AsWritten,
            values: Values::AsGiven,
            schema_changes: SchemaChanges::AnyShape,
            readers: Readers::Snapshot,
            writers: Writers::One,
            texts: Texts::Any,
            lineage: Lineage::Refused,
        },
        available: always,
    }
}

/// The PostgreSQL store: a new schema (`kye_t_<pid>_<n>`) in the database of
/// `KYE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`), dropped when
/// the case ends.
pub fn postgres() -> Harness {
    Harness {
        kind: "postgres",
        fresh: || {
            let schema = crate::pg::ThrowawaySchema::new();
            Fresh {
                spec: schema.spec(),
                _keep: Box::new(schema),
            }
        },
        snapshot: |spec| crate::pg::snapshot(spec),
        after_crash: |spec| crate::pg::after_crash(spec),
        differs: Differences {
            layout: Layout::Tables,
            secondary_indexes: SecondaryIndexes::Enforced,
            reads: Reads::Rebuilt,
            values: Values::Typed,
            schema_changes: SchemaChanges::Migrated,
            readers: Readers::Live,
            writers: Writers::Many,
            texts: Texts::Limited,
            lineage: Lineage::Kept,
        },
        available: crate::pg::available,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
