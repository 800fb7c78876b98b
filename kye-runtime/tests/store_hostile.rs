//! Hostile names and values: SQL keywords and quotes in model and edge names, injection
//! attempts, NUL bytes and huge strings in values. Everything must round-trip unchanged
//! and no statement other than kye's own may ever run.

use kye_lang::schema::{Cardinality, Edge, Index, Model, Primitive, Schema, Type};
use kye_lang::{SourceMap, Span};
use kye_runtime::store::*;
use serde_json::{json, Value};

const KEYWORDS: &str = r#"
Order(group)(select) {
  group: String
  select: Number
  from: String?
  where: Boolean?
  table: String*
  index: Table?
}
Table(drop) {
  drop: String
  values: String?
}
"#;

fn tables(s: &SqliteStore) -> Vec<String> {
    let mut st = s
        .connection()
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

const INJECTIONS: [&str; 6] = [
    "'); DROP TABLE \"Order\";--",
    "\"; DROP TABLE Table; --",
    "x' OR '1'='1",
    "nul\u{0}byte",
    "back\\slash and \"quotes\" and 'single'",
    "emoji 🦀 and ünïcödé",
];

#[test]
fn sql_keywords_as_names_and_injection_as_values_round_trip() {
    let schema = kye_lang::compile_str("k.kye", KEYWORDS).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema).unwrap();
    let run = s
        .begin_run(&NewRun::new("Order.group = \"'); DROP TABLE x;--\""))
        .unwrap();
    let huge = "y".repeat(1024 * 1024);
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for (i, text) in INJECTIONS
        .iter()
        .chain(std::iter::once(&huge.as_str()))
        .enumerate()
    {
        let v = json!({
            "group": text, "select": i, "from": text, "where": i % 2 == 0,
            "table": [text, text], "index": {"drop": text, "values": text}
        });
        items.push(WriteItem::Record(RecordWrite::new(
            "Order",
            v.clone(),
            Provenance::new(run, *text),
        )));
        items.push(WriteItem::KeyOutcome(KeyOutcomeWrite {
            run,
            model: "Order".into(),
            key: IndexKey::single("group", *text),
            status: KeyStatus::Stored,
            reason: Some(text.to_string()),
            at: Timestamp::now(),
        }));
        items.push(WriteItem::Drift(DriftWrite {
            run,
            model: "Order".into(),
            path: text.to_string(),
            example: json!(text),
            seen_at: Timestamp::now(),
        }));
        expected.push(v);
    }
    let res = s.write_batch(&items).unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    assert_eq!(
        tables(&s)
            .iter()
            .filter(|t| !t.starts_with("_kye") && !t.starts_with("sqlite"))
            .collect::<Vec<_>>(),
        vec!["Order", "Order__table", "Table"]
    );
    let mut got = s.records(&RecordQuery::new("Order")).unwrap();
    got.sort_by_key(|v| v["select"].as_i64());
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    for text in INJECTIONS {
        let f = Filter {
            edge: "group".into(),
            value: json!(text),
        };
        assert_eq!(
            s.records(&RecordQuery::new("Order").filter(f))
                .unwrap()
                .len(),
            1,
            "{text:?}"
        );
        assert!(s
            .last_stored("Order", &IndexKey::single("group", text))
            .unwrap()
            .is_some());
        let o = s
            .latest_outcome("Order", &IndexKey::single("group", text))
            .unwrap()
            .unwrap();
        assert_eq!(o.reason.as_deref(), Some(text));
    }
    assert_eq!(s.drift().unwrap().len(), INJECTIONS.len() + 1);
    assert_eq!(
        s.records(&RecordQuery::new("Table")).unwrap().len(),
        INJECTIONS.len() + 1
    );
}

fn edge(name: &str, cardinality: Cardinality, ty: Type) -> Edge {
    Edge {
        name: name.into(),
        title: None,
        cardinality,
        ty,
        span: Span::default(),
        doc: None,
    }
}

/// kye-lang only accepts identifiers, but the store must not rely on that.
#[test]
fn names_with_quotes_are_quoted_not_executed() {
    let model_name = "Evil\"; DROP TABLE _kye_runs; --";
    let key_edge = "k\"ey";
    let list_edge = "li\"st";
    let model = Model {
        name: model_name.into(),
        span: Span::default(),
        indexes: vec![Index {
            edges: vec![key_edge.into()],
            span: Span::default(),
        }],
        edges: vec![
            edge(
                key_edge,
                Cardinality::One,
                Type::Primitive(Primitive::String),
            ),
            edge(
                list_edge,
                Cardinality::Many,
                Type::Primitive(Primitive::Number),
            ),
        ],
        assertions: vec![],
        doc: None,
    };
    let schema = Schema::from_models(SourceMap::default(), vec![model]);
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema).unwrap();
    let run = s.begin_run(&NewRun::new("r")).unwrap();
    let v = json!({key_edge: "v", list_edge: [1, 2.5]});
    let res = s
        .write_batch(&[WriteItem::Record(RecordWrite::new(
            model_name,
            v.clone(),
            Provenance::new(run, "f"),
        ))])
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    assert_eq!(s.records(&RecordQuery::new(model_name)).unwrap(), vec![v]);
    let t = tables(&s);
    assert!(t.contains(&"_kye_runs".to_string()), "{t:?}");
    assert!(t.contains(&model_name.to_string()), "{t:?}");
    assert!(t.contains(&format!("{model_name}__{list_edge}")), "{t:?}");
    assert_eq!(s.runs(None).unwrap().len(), 1);
}

#[test]
fn reserved_and_clashing_names_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    let reserved =
        kye_lang::compile_str("r.kye", "A(id) {\n id: Number\n _kye_hash: String\n}\n").unwrap();
    let err = s.prepare(&reserved).unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidName { name, .. } if name == "_kye_hash"),
        "{err:?}"
    );
    assert!(err.to_string().contains("reserved"), "{err}");
    // `A__b` as a model and edge `b` of `A` would share one table name: a valid schema that
    // the store must refuse.
    let clash = kye_lang::compile_str(
        "c.kye",
        "A(id) {\n id: Number\n b: String*\n}\nA__b(id) {\n id: Number\n}\n",
    )
    .unwrap_or_else(|e| panic!("the language accepts both names:\n{e}"));
    let err = s.prepare(&clash).unwrap_err();
    assert!(err.to_string().contains("clashes"), "{err}");
    // Nothing was created by the refused prepares.
    let n: i64 = s
        .connection()
        .query_row("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE '\\_kye%' ESCAPE '\\' AND name NOT LIKE 'sqlite%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn values_that_do_not_fit_are_item_errors() {
    let schema = kye_lang::compile_str("k.kye", KEYWORDS).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema).unwrap();
    let run = s.begin_run(&NewRun::new("r")).unwrap();
    let bad: Vec<Value> = vec![
        json!({"group": "a", "select": "not a number"}),
        json!({"group": "b", "select": 1, "from": {"nested": "object"}}),
        json!({"group": "c", "select": 1, "where": "maybe"}),
        json!(["not", "an", "object"]),
    ];
    let items: Vec<WriteItem> = bad
        .into_iter()
        .map(|v| WriteItem::Record(RecordWrite::new("Order", v, Provenance::new(run, "f"))))
        .collect();
    let res = s.write_batch(&items).unwrap();
    for (r, edge) in res.iter().zip(["select", "from", "where", ""]) {
        match r {
            Err(StoreError::InvalidValue { model, edge: e, .. }) => {
                assert_eq!(model, "Order");
                assert_eq!(e, edge);
            }
            other => panic!("expected InvalidValue on {edge}, got {other:?}"),
        }
    }
    assert!(s.records(&RecordQuery::new("Order")).unwrap().is_empty());
}
