//! Schema changes between runs: additive ones are accepted, incompatible ones refused naming
//! the model and edge (where the store keeps a shape), and nothing stored is ever lost.

use kye_runtime::store::*;
use serde_json::{json, Value};

use crate::fixtures::*;
use crate::harness::{Harness, SchemaChanges};

const V1: &str = "User(id)(email) {\n id: Number\n email: String\n age: Number?\n}\n";

fn users(s: &dyn StoreRead) -> Vec<Value> {
    all(s, "User")
}

/// A store holding two users of [`V1`].
fn store_v1(st: &Store) -> Box<dyn StoreWrite> {
    let mut s = st.prepared(V1);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(
        s.as_mut(),
        &[
            record(run, "User", json!({"id": 1, "email": "a@x", "age": 30})),
            record(run, "User", json!({"id": 2, "email": "b@x"})),
        ],
    );
    s
}

/// The model, edge and message of a refused `prepare`.
fn refused(s: &mut dyn StoreWrite, text: &str) -> (String, Option<String>, String) {
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

/// New optional edges (a column, a child table) are added in place; old records read with
/// no value for them.
pub fn new_optional_edges_are_added_in_place(h: &Harness) {
    let st = Store::new(h);
    let mut s = store_v1(&st);
    let before = users(s.as_ref());
    let v2 = "User(id)(email) {\n id: Number\n email: String\n age: Number?\n nick: String?\n roles: String*\n}\n";
    s.prepare(&schema(v2)).unwrap();
    let after = users(s.as_ref());
    assert_eq!(after.len(), 2);
    assert_eq!(after[0]["age"], before[0]["age"]);
    assert_eq!(
        after[0],
        st.reads(
            json!({"id": 1, "email": "a@x", "age": 30, "nick": null, "roles": []}),
            before[0].clone()
        )
    );
    let run = s.begin_run(&NewRun::new("y")).unwrap();
    let third = json!({"id": 3, "email": "c@x", "nick": "cc", "roles": ["admin", "dev"]});
    write_ok(s.as_mut(), &[record(run, "User", third)]);
    assert_eq!(users(s.as_ref())[2]["roles"], json!(["admin", "dev"]));
    // Reopening with the migrated schema is a no-op; a reader sees the new layout.
    drop(s);
    let mut s = st.writer();
    s.prepare(&schema(v2)).unwrap();
    assert_eq!(users(st.reader().as_ref())[2]["nick"], json!("cc"));
    assert_eq!(users(s.as_ref()).len(), 3);
}

/// A required edge made optional (`T` → `T?`, `T+` → `T*`) is accepted.
pub fn making_an_edge_optional_is_accepted(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared("T(id) {\n id: Number\n n: String\n many: String+\n}\n");
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(
        s.as_mut(),
        &[record(run, "T", json!({"id": 1, "n": "a", "many": ["x"]}))],
    );
    s.prepare(&schema(
        "T(id) {\n id: Number\n n: String?\n many: String*\n}\n",
    ))
    .unwrap();
    write_ok(s.as_mut(), &[record(run, "T", json!({"id": 2}))]);
    assert_eq!(
        all(s.as_ref(), "T"),
        vec![
            json!({"id": 1, "n": "a", "many": ["x"]}),
            st.reads(json!({"id": 2, "n": null, "many": []}), json!({"id": 2})),
        ]
    );
}

/// Incompatible changes: refused naming model and edge where the store keeps a shape, and
/// the stored records are never touched, also after reopening with the old schema.
pub fn incompatible_changes_lose_nothing(h: &Harness) {
    let st = Store::new(h);
    let mut s = store_v1(&st);
    let before = users(s.as_ref());
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
        match st.differs.schema_changes {
            SchemaChanges::Migrated => {
                let (model, got_edge, msg) = refused(s.as_mut(), text);
                assert_eq!(model, "User");
                assert_eq!(got_edge.as_deref(), edge, "{msg}");
                assert!(msg.contains(what), "{msg}\nshould say {what}");
                assert!(msg.contains("left unchanged"), "{msg}");
            }
            SchemaChanges::AnyShape => {
                s.prepare(&schema(text))
                    .unwrap_or_else(|e| panic!("{text}: {e}"));
            }
        }
        assert_eq!(
            users(s.as_ref()),
            before,
            "data changed after preparing\n{text}"
        );
    }
    // The old schema still works, also after reopening.
    drop(s);
    let mut s = st.writer();
    s.prepare(&schema(V1)).unwrap();
    assert_eq!(users(s.as_ref()), before);
}

/// An incompatible change to tables that hold nothing is accepted (they are rebuilt).
pub fn incompatible_changes_to_empty_tables_are_accepted(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(V1);
    s.prepare(&schema("User(email) {\n email: String\n age: String\n}\n"))
        .unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(
        s.as_mut(),
        &[record(run, "User", json!({"email": "a@x", "age": "old"}))],
    );
    assert_eq!(
        users(s.as_ref()),
        vec![json!({"email": "a@x", "age": "old"})]
    );
}

/// A change of the key of a referenced model changes the edges that refer to it.
pub fn a_changed_key_of_a_referenced_model(h: &Harness) {
    let st = Store::new(h);
    let v1 = "P(id) {\n id: Number\n types: T*\n}\nT(name) {\n name: String\n code: Number\n}\n";
    let mut s = st.prepared(v1);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(
        s.as_mut(),
        &[
            record(run, "P", json!({"id": 1, "types": ["grass"]})),
            record(run, "T", json!({"name": "grass", "code": 12})),
        ],
    );
    let v2 = "P(id) {\n id: Number\n types: T*\n}\nT(code) {\n name: String\n code: Number\n}\n";
    match st.differs.schema_changes {
        SchemaChanges::Migrated => {
            let (model, edge, msg) = refused(s.as_mut(), v2);
            // Models are checked in declaration order: P's references to T would hold the
            // wrong key.
            assert_eq!(
                (model.as_str(), edge.as_deref()),
                ("P", Some("types")),
                "{msg}"
            );
            assert!(
                msg.contains("the key of T, which it refers to, changed"),
                "{msg}"
            );
        }
        SchemaChanges::AnyShape => s.prepare(&schema(v2)).unwrap(),
    }
    s.prepare(&schema(v1)).unwrap();
    assert_eq!(
        all(s.as_ref(), "P"),
        vec![st.reads(
            json!({"id": 1, "types": [{"name": "grass", "code": 12}]}),
            json!({"id": 1, "types": ["grass"]})
        )]
    );
}
