//! Schema changes between runs: additive ones migrate, incompatible ones are refused with
//! a message naming the model and edge, and stored data is never touched by a refusal.

use kye_runtime::store::*;
use serde_json::{json, Value};

fn schema(text: &str) -> kye_lang::Schema {
    kye_lang::compile_str("test.kye", text).unwrap_or_else(|e| panic!("{e}"))
}

const V1: &str = "User(id)(email) {\n id: Number\n email: String\n age: Number?\n}\n";

fn store_v1(dir: &tempfile::TempDir) -> SqliteStore {
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(V1)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let res = s
        .write_batch(&[
            WriteItem::Record(RecordWrite::new(
                "User",
                json!({"id": 1, "email": "a@x", "age": 30}),
                Provenance::new(run, "f"),
            )),
            WriteItem::Record(RecordWrite::new(
                "User",
                json!({"id": 2, "email": "b@x"}),
                Provenance::new(run, "f"),
            )),
        ])
        .unwrap();
    assert!(res.iter().all(Result::is_ok));
    s
}

fn users(s: &dyn StoreRead) -> Vec<Value> {
    s.records(&RecordQuery::new("User")).unwrap()
}

#[test]
fn new_optional_edges_are_added_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store_v1(&dir);
    let before = users(&s);
    let v2 = "User(id)(email) {\n id: Number\n email: String\n age: Number?\n nick: String?\n roles: String*\n}\n";
    s.prepare(&schema(v2)).unwrap();
    let after = users(&s);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0]["age"], before[0]["age"]);
    assert_eq!(after[0]["nick"], Value::Null);
    assert_eq!(after[0]["roles"], json!([]));
    let run = s.begin_run(&NewRun::new("y")).unwrap();
    let res = s
        .write_batch(&[WriteItem::Record(RecordWrite::new(
            "User",
            json!({"id": 3, "email": "c@x", "nick": "cc", "roles": ["admin", "dev"]}),
            Provenance::new(run, "f"),
        ))])
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    assert_eq!(users(&s)[2]["roles"], json!(["admin", "dev"]));
    // Reopening with the migrated schema is a no-op; a reader sees the new layout.
    drop(s);
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(v2)).unwrap();
    let r = SqliteReader::open(dir.path().join("kye.db")).unwrap();
    assert_eq!(users(&r)[2]["nick"], json!("cc"));
}

#[test]
fn making_an_edge_optional_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(
        "T(id) {\n id: Number\n n: String\n many: String+\n}\n",
    ))
    .unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let item = |v: Value| WriteItem::Record(RecordWrite::new("T", v, Provenance::new(run, "f")));
    assert!(s
        .write_batch(&[item(json!({"id": 1, "n": "a", "many": ["x"]}))])
        .unwrap()[0]
        .is_ok());
    s.prepare(&schema(
        "T(id) {\n id: Number\n n: String?\n many: String*\n}\n",
    ))
    .unwrap();
    assert!(s.write_batch(&[item(json!({"id": 2}))]).unwrap()[0].is_ok());
    let all = s.records(&RecordQuery::new("T")).unwrap();
    assert_eq!(
        all,
        vec![
            json!({"id": 1, "n": "a", "many": ["x"]}),
            json!({"id": 2, "n": null, "many": []})
        ]
    );
}

fn refused(s: &mut SqliteStore, text: &str) -> (String, Option<String>, String) {
    match s.prepare(&schema(text)) {
        Err(e @ StoreError::SchemaChange { .. }) => {
            let msg = e.to_string();
            match e {
                StoreError::SchemaChange { model, edge, .. } => (model, edge, msg),
                _ => unreachable!(),
            }
        }
        other => panic!("expected a refusal for\n{text}\ngot {other:?}"),
    }
}

#[test]
fn incompatible_changes_are_refused_and_leave_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store_v1(&dir);
    let before = users(&s);
    let cases = [
        (
            "User(id)(email) {\n id: Number\n email: String\n age: String?\n}\n",
            Some("age"),
            "type changed from Number? to String?",
        ),
        (
            "User(id)(email) {\n id: Number\n email: String\n}\n",
            Some("age"),
            "removed",
        ),
        (
            "User(id)(email) {\n id: Number\n email: String\n age: Number\n}\n",
            Some("age"),
            "made required",
        ),
        (
            "User(id)(email) {\n id: Number\n email: String\n age: Number?\n name: String\n}\n",
            Some("name"),
            "new required edge",
        ),
        (
            "User(email) {\n id: Number\n email: String\n age: Number?\n}\n",
            None,
            "primary index changed from (id) to (email)",
        ),
        (
            "User(id) {\n id: Number\n email: String\n age: Number?\n}\n",
            None,
            "secondary indexes changed",
        ),
        (
            "User(id)(email) {\n id: Number\n email: String\n age: Number*\n}\n",
            Some("age"),
            "type changed",
        ),
    ];
    for (text, edge, what) in cases {
        let (model, got_edge, msg) = refused(&mut s, text);
        assert_eq!(model, "User");
        assert_eq!(got_edge.as_deref(), edge, "{msg}");
        assert!(msg.contains(what), "{msg}\nshould say {what}");
        assert!(msg.contains("left unchanged"), "{msg}");
        assert_eq!(users(&s), before, "data changed after refusing\n{text}");
    }
    // The refused schemas changed nothing: the old one still works, also after reopening.
    drop(s);
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(V1)).unwrap();
    assert_eq!(users(&s), before);
}

#[test]
fn incompatible_changes_rebuild_tables_that_hold_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(V1)).unwrap();
    s.prepare(&schema("User(email) {\n email: String\n age: String\n}\n"))
        .unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let res = s
        .write_batch(&[WriteItem::Record(RecordWrite::new(
            "User",
            json!({"email": "a@x", "age": "old"}),
            Provenance::new(run, "f"),
        ))])
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
}

#[test]
fn a_table_kye_did_not_create_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kye.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.connection()
            .execute_batch(
                "CREATE TABLE \"User\" (mine TEXT); INSERT INTO \"User\" VALUES ('keep me');",
            )
            .unwrap();
    }
    let mut s = SqliteStore::open(&path).unwrap();
    let (model, _, msg) = refused(&mut s, V1);
    assert_eq!(model, "User");
    assert!(msg.contains("kye did not create"), "{msg}");
    let kept: String = s
        .connection()
        .query_row("SELECT mine FROM \"User\"", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, "keep me");
}

#[test]
fn a_changed_key_of_a_referenced_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    let v1 = "P(id) {\n id: Number\n types: T*\n}\nT(name) {\n name: String\n code: Number\n}\n";
    s.prepare(&schema(v1)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let res = s
        .write_batch(&[
            WriteItem::Record(RecordWrite::new(
                "P",
                json!({"id": 1, "types": ["grass"]}),
                Provenance::new(run, "f"),
            )),
            WriteItem::Record(RecordWrite::new(
                "T",
                json!({"name": "grass", "code": 12}),
                Provenance::new(run, "f"),
            )),
        ])
        .unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let v2 = "P(id) {\n id: Number\n types: T*\n}\nT(code) {\n name: String\n code: Number\n}\n";
    let (model, edge, msg) = refused(&mut s, v2);
    // Models are checked in declaration order: P's references to T would hold the wrong key.
    assert_eq!(
        (model.as_str(), edge.as_deref()),
        ("P", Some("types")),
        "{msg}"
    );
    assert!(
        msg.contains("the key of T, which it refers to, changed"),
        "{msg}"
    );
    s.prepare(&schema(v1)).unwrap();
    assert_eq!(
        s.records(&RecordQuery::new("P")).unwrap(),
        vec![json!({"id": 1, "types": [{"name": "grass", "code": 12}]})]
    );
}

/// Tables and journal mode of a database file, read without kye.
fn tables_and_mode(path: &std::path::Path) -> (Vec<String>, String) {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let tables = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    (tables, mode)
}

#[test]
fn a_refused_foreign_database_is_left_exactly_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    for (foreign, schema_text, table) in [
        ("CREATE TABLE \"User\" (mine TEXT)", V1, "User"),
        // SQLite ignores case in names: `user__ROLES` is the table kye wants for `roles`.
        (
            "CREATE TABLE \"user__ROLES\" (mine TEXT)",
            "User(id) {\n id: Number\n roles: String*\n}\n",
            "user__ROLES",
        ),
    ] {
        let path = dir.path().join(format!("{table}.db"));
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(foreign).unwrap();
        }
        let before = tables_and_mode(&path);
        assert_eq!(before.1, "delete");
        let mut s = SqliteStore::open(&path).unwrap();
        let (model, edge, msg) = refused(&mut s, schema_text);
        assert_eq!((model.as_str(), edge), ("User", None));
        assert!(
            msg.contains(&format!(
                "already has a table named {table:?} that kye did not create"
            )),
            "{msg}"
        );
        drop(s);
        assert_eq!(
            tables_and_mode(&path),
            before,
            "{table}: the file was changed"
        );
    }
    // A foreign database whose tables do not clash is used as it is.
    let path = dir.path().join("other.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (t TEXT)")
        .unwrap();
    let mut s = SqliteStore::open(&path).unwrap();
    s.prepare(&schema(V1)).unwrap();
    drop(s);
    let (tables, mode) = tables_and_mode(&path);
    assert!(tables.contains(&"_kye_meta".to_string()) && tables.contains(&"notes".to_string()));
    assert_eq!(mode, "wal");
}
