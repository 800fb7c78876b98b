//! Hostile names and values: SQL keywords, quotes and injection attempts, mixed case, very
//! long and non-ASCII names, NUL bytes, huge strings and NaN-like numbers. Everything
//! round-trips unchanged and no statement other than kye's own ever runs.

use kye_lang::schema::{Cardinality, Edge, Index, Model, Primitive, Schema, Type};
use kye_lang::{SourceMap, Span};
use kye_runtime::store::*;
use serde_json::{json, Value};

use crate::fixtures::*;
use crate::harness::{Harness, Layout, SchemaChanges, Texts, Values};

pub const KEYWORDS: &str = r#"
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

const INJECTIONS: [&str; 6] = [
    "'); DROP TABLE \"Order\";--",
    "\"; DROP TABLE Table; --",
    "x' OR '1'='1",
    "nul\u{0}byte",
    "back\\slash and \"quotes\" and 'single'",
    "emoji 🦀 and ünïcödé",
];

/// `name.json` of a one-part key, as the directory store names documents.
fn doc_name(key: &str) -> String {
    format!("{}.json", encode_file_name(&[key]))
}

pub fn keywords_as_names_injections_as_values(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(KEYWORDS);
    let run = s
        .begin_run(&NewRun::new("Order.group = \"'); DROP TABLE x;--\""))
        .unwrap();
    let huge = "y".repeat(1024 * 1024);
    let texts: Vec<&str> = INJECTIONS
        .iter()
        .copied()
        .chain(std::iter::once(huge.as_str()))
        .collect();
    // Texts a store keeps; a store without NUL refuses the record holding one.
    let keeps = |t: &str| st.differs.texts == Texts::Any || (!t.contains('\0') && t.len() <= 2600);
    // kye's own texts (reasons, drift paths) as the store shows them.
    let shown = |t: &str| match st.differs.texts {
        Texts::Any => t.to_string(),
        Texts::Limited => t.replace('\0', "\u{2400}"),
    };
    let mut items = Vec::new();
    let mut expected = Vec::new();
    for (i, text) in texts.iter().enumerate() {
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
        if keeps(text) {
            expected.push(v);
        }
    }
    let results = s.write_batch(&items).expect("batch");
    for (item, result) in items.iter().zip(&results) {
        match item {
            WriteItem::Record(r) if !keeps(r.value["group"].as_str().unwrap()) => assert!(
                matches!(result, Err(StoreError::InvalidValue { model, edge, message, .. })
                    if model == "Order" && edge == "group"
                        && (message.contains("NUL") || message.contains("2600 bytes"))),
                "{result:?}"
            ),
            _ => assert!(result.is_ok(), "{result:?}"),
        }
    }
    let stored: Vec<&str> = texts.iter().copied().filter(|t| keeps(t)).collect();
    let n = stored.len();
    let docs: Vec<String> = stored.iter().map(|t| doc_name(t)).collect();
    let docs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let snapshot = match st.differs.layout {
        Layout::Tables => tables(&[
            (
                "Order",
                &with_provenance(&["group", "select", "from", "where", "index"]),
                n,
            ),
            ("Order__table", &["group", "_kye_position", "value"], 2 * n),
            ("Table", &with_provenance(&["drop", "values"]), n),
        ]),
        Layout::Documents => documents(&[("Order", &docs), ("Table", &docs)]),
    };
    assert_eq!(st.snapshot(), snapshot);
    let mut got = all(s.as_ref(), "Order");
    got.sort_by_key(|v| v["select"].as_i64());
    assert_eq!(got, expected);
    let mut q = RecordQuery::new("Order");
    q.provenance = true;
    let mut fetchers: Vec<Value> = s
        .records(&q)
        .unwrap()
        .into_iter()
        .map(|r| r["_kye"]["fetcher"].clone())
        .collect();
    fetchers.sort_by_key(|f| f.as_str().map(str::to_string));
    let mut want: Vec<Value> = stored.iter().map(|t| json!(t)).collect();
    want.sort_by_key(|f| f.as_str().map(str::to_string));
    assert_eq!(fetchers, want);
    for text in &texts {
        let f = Filter {
            edge: "group".into(),
            value: json!(text),
        };
        let key = IndexKey::single("group", *text);
        if keeps(text) {
            assert_eq!(
                s.records(&RecordQuery::new("Order").filter(f))
                    .unwrap()
                    .len(),
                1,
                "{text:?}"
            );
            assert!(s.last_stored("Order", &key).unwrap().is_some());
        } else {
            // A filter value the store cannot hold finds nothing, or is refused like any
            // value that does not fit.
            let found = s.records(&RecordQuery::new("Order").filter(f));
            assert!(found.map(|r| r.is_empty()).unwrap_or(true), "{text:?}");
            assert!(s.last_stored("Order", &key).unwrap().is_none());
        }
        let o = s.latest_outcome("Order", &key).unwrap().unwrap();
        assert_eq!(o.reason, Some(shown(text)));
    }
    let drift = s.drift().unwrap();
    assert_eq!(drift.len(), texts.len());
    assert!(drift.iter().any(|d| d.path == INJECTIONS[0]), "{drift:?}");
    assert!(
        drift.iter().any(|d| d.path == shown(INJECTIONS[3])),
        "{drift:?}"
    );
    assert_eq!(all(s.as_ref(), "Table").len(), n);
    assert_eq!(
        s.runs(None).unwrap()[0].request,
        "Order.group = \"'); DROP TABLE x;--\""
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

fn model(name: &str, key: &str, edges: Vec<Edge>) -> Model {
    Model {
        name: name.into(),
        span: Span::default(),
        indexes: vec![Index {
            edges: vec![key.into()],
            span: Span::default(),
        }],
        edges,
        assertions: vec![],
        doc: None,
    }
}

/// A model with a String key edge and a multi-valued Number edge, named as given (kye-lang
/// only accepts ASCII identifiers, but the store must not rely on that).
fn one_model(name: &str, key_edge: &str, list_edge: &str) -> Schema {
    Schema::from_models(
        SourceMap::default(),
        vec![model(
            name,
            key_edge,
            vec![
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
        )],
    )
}

/// Quotes, mixed case, very long and non-ASCII names: quoted, never executed, stored and read
/// back under exactly those names.
pub fn unusual_names_round_trip(h: &Harness) {
    let long_model = format!("Long{}Model", "Mixed_Case".repeat(10));
    let long_key = format!("k{}", "é".repeat(70));
    let cases = [
        ("Evil\"; DROP TABLE _kye_runs; --", "k\"ey", "li\"st"),
        ("MixedCase", "KeyEdge", "listEdge"),
        (
            long_model.as_str(),
            long_key.as_str(),
            "a_list_edge_whose_name_is_longer_than_sixty_three_bytes_on_purpose",
        ),
        ("Ünïcödé_Модель_🦀", "ключ", "列表"),
    ];
    for (model_name, key_edge, list_edge) in cases {
        let st = Store::new(h);
        let mut s = st.writer();
        s.prepare(&one_model(model_name, key_edge, list_edge))
            .unwrap_or_else(|e| panic!("{model_name}: {e}"));
        let run = s.begin_run(&NewRun::new("r")).unwrap();
        let v = json!({key_edge: "v", list_edge: [1, 2.5]});
        write_ok(s.as_mut(), &[record(run, model_name, v.clone())]);
        assert_eq!(all(s.as_ref(), model_name), vec![v.clone()], "{model_name}");
        let f = Filter {
            edge: list_edge.into(),
            value: json!(2.5),
        };
        assert_eq!(
            s.records(&RecordQuery::new(model_name).filter(f)).unwrap(),
            vec![v],
            "{model_name}"
        );
        assert!(s
            .last_stored(model_name, &IndexKey::single(key_edge, "v"))
            .unwrap()
            .is_some());
        let child = format!("{model_name}__{list_edge}");
        let snapshot = match st.differs.layout {
            Layout::Tables => tables(&[
                (model_name, &with_provenance(&[key_edge]), 1),
                (child.as_str(), &[key_edge, "_kye_position", "value"], 2),
            ]),
            Layout::Documents => documents(&[(&encode_file_name(&[model_name]), &["v.json"])]),
        };
        assert_eq!(st.snapshot(), snapshot, "{model_name}");
        assert_eq!(s.runs(None).unwrap().len(), 1);
        // Read again by a reader, under the same names.
        assert_eq!(all(st.reader().as_ref(), model_name).len(), 1);
    }
}

/// NaN-like strings stay strings, extreme numbers stay numbers; a NaN-like string where a
/// Number goes does not fit.
pub fn nan_like_and_extreme_values(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared("V(name) {\n name: String\n n: Number?\n s: String*\n}\n");
    let run = s.begin_run(&NewRun::new("r")).unwrap();
    let strings = json!([
        "NaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1e999",
        "-0",
        "0x10",
        "",
        " "
    ]);
    let records: Vec<Value> = [
        json!(1e308),
        json!(-1e308),
        json!(5e-324),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(-1.5),
        json!(0),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, n)| json!({"name": format!("v{i}"), "n": n, "s": strings}))
    .collect();
    let items: Vec<WriteItem> = records
        .iter()
        .map(|v| record(run, "V", v.clone()))
        .collect();
    write_ok(s.as_mut(), &items);
    assert_eq!(all(s.as_ref(), "V"), records);
    for name in ["NaN", "Infinity", "1e999"] {
        let res = s
            .write_batch(&[record(run, "V", json!({"name": name, "n": name}))])
            .unwrap();
        match st.differs.values {
            Values::Typed => assert!(
                matches!(&res[0], Err(StoreError::InvalidValue { edge, .. }) if edge == "n"),
                "{name}: {res:?}"
            ),
            Values::AsGiven => assert!(res[0].is_ok(), "{name}: {res:?}"),
        }
    }
    // The NaN-like names are keys like any other.
    write_ok(
        s.as_mut(),
        &[record(run, "V", json!({"name": "NaN", "s": ["x"]}))],
    );
    assert_eq!(
        s.record("V", &IndexKey::single("name", "NaN")).unwrap(),
        Some(st.reads(
            json!({"name": "NaN", "n": null, "s": ["x"]}),
            json!({"name": "NaN", "s": ["x"]})
        ))
    );
}

/// Names the store cannot use are refused with the reason, before anything is created.
pub fn reserved_and_clashing_names(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.writer();
    let reserved =
        kye_lang::compile_str("r.kye", "A(id) {\n id: Number\n _kye_hash: String\n}\n").unwrap();
    let err = s.prepare(&reserved).unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidName { name, .. } if name == "_kye_hash"),
        "{err:?}"
    );
    assert!(err.to_string().contains("reserved"), "{err}");
    // `A__b` as a model and edge `b` of `A` would share one table name.
    let clash = Schema::from_models(
        SourceMap::default(),
        vec![
            model(
                "A",
                "id",
                vec![
                    edge("id", Cardinality::One, Type::Primitive(Primitive::Number)),
                    edge("b", Cardinality::Many, Type::Primitive(Primitive::String)),
                ],
            ),
            model(
                "A__b",
                "id",
                vec![edge(
                    "id",
                    Cardinality::One,
                    Type::Primitive(Primitive::Number),
                )],
            ),
        ],
    );
    match st.differs.schema_changes {
        SchemaChanges::Migrated => {
            let err = s.prepare(&clash).unwrap_err();
            assert_eq!(
                err.to_string(),
                "model name \"A__b\" cannot be stored: its table \"A__b\" clashes with a table \
                 of model A (child tables are named <Model>__<edge>; SQLite table names ignore \
                 case)"
            );
            // Nothing was created by the refused prepares.
            assert_eq!(st.snapshot(), tables(&[]));
        }
        SchemaChanges::AnyShape => {
            s.prepare(&clash).unwrap();
            assert_eq!(st.snapshot(), documents(&[]));
        }
    }
}
