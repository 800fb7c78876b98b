//! What is specific to one store, beyond the contract every store passes (`store_contract`):
//! SQLite's typed columns, child row positions, foreign tables, locks through links, format
//! versions and read-only directories; the directory store's file names, JSON lines and
//! temporary files; PostgreSQL's names, password, foreign tables, concurrent writers and lost
//! connections; the tables of `kye serve` (`server.rs`). Also how a spec picks a store.

mod dir;
mod fake_pg;
mod pg;
mod pg_conn;
mod pg_unique;
mod server;
mod sqlite;

use kye_runtime::store::*;

pub fn schema(text: &str) -> kye_lang::Schema {
    kye_lang::compile_str("test.kye", text).unwrap_or_else(|e| panic!("{e}"))
}

pub fn record(run: RunId, model: &str, v: serde_json::Value) -> WriteItem {
    WriteItem::Record(RecordWrite::new(
        model,
        v,
        Provenance::new(run, "test::fetch"),
    ))
}

/// Writes a batch whose items must all succeed.
pub fn write_ok(s: &mut dyn StoreWrite, items: &[WriteItem]) {
    let res = s.write_batch(items).expect("batch");
    assert!(res.iter().all(Result::is_ok), "{res:?}");
}

#[test]
fn store_specs_open_the_right_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let spec: StoreSpec = db.to_str().unwrap().parse().unwrap();
    let mut s = open_store(&spec).unwrap();
    assert_eq!(s.kind(), "sqlite");
    s.prepare(&schema("P(id) {\n id: Number\n}\n")).unwrap();
    drop(s);
    assert!(db.is_file());
    let spec: StoreSpec = format!("dir:{}", dir.path().join("out").display())
        .parse()
        .unwrap();
    let s = open_store(&spec).unwrap();
    assert_eq!(s.kind(), "dir");
    assert!(dir.path().join("out/_kye").is_dir());
    let r = open_store_read_only(&StoreSpec::Sqlite(db)).unwrap();
    assert_eq!(r.kind(), "sqlite");
    assert!(r.runs(None).unwrap().is_empty());
    let r = open_store_read_only(&spec).unwrap();
    assert_eq!(r.kind(), "dir");
}
