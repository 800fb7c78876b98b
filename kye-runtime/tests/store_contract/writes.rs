//! Writing records: upsert by primary index, secondary-index clashes, child rows, nested
//! records that contradict each other, and item errors that leave nothing behind.

use kye_runtime::store::*;
use serde_json::{json, Value};

use crate::fixtures::*;
use crate::harness::{Harness, Layout, SecondaryIndexes, Values};

/// Storing a key again replaces the record and its child rows: no duplicates, in one batch
/// or the next.
pub fn upsert_by_primary_index(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(s.as_mut(), &[record(run, "Pokemon", pikachu())]);
    let mut v = pikachu();
    v["weight"] = json!(61.5);
    v["tags"] = json!(["only"]);
    v["types"] = json!([{"name": "electric"}, {"name": "steel", "generation": "generation-ii"}]);
    // Same key twice in one batch, and again in a second batch.
    write_ok(
        s.as_mut(),
        &[
            record(run, "Pokemon", pikachu()),
            record(run, "Pokemon", v.clone()),
        ],
    );
    let child = ["id", "_kye_position", "value"];
    let expected = match st.differs.layout {
        Layout::Tables => tables(&[
            (
                "Pokemon",
                &with_provenance(&["id", "name", "weight", "base_experience", "legendary"]),
                1,
            ),
            ("Pokemon__types", &child, 2),
            ("Pokemon__tags", &child, 1),
            ("PokemonType", &with_provenance(&["name", "generation"]), 2),
        ]),
        Layout::Documents => documents(&[
            ("Pokemon", &["25.json"]),
            ("PokemonType", &["electric.json", "steel.json"]),
        ]),
    };
    assert_eq!(st.snapshot(), expected);
    let got = all(s.as_ref(), "Pokemon");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["weight"], json!(61.5));
    assert_eq!(got[0]["tags"], json!(["only"]));
    // A bare reference does not overwrite the stored type; the nested full one is stored.
    assert_eq!(
        got[0]["types"],
        st.reads(
            json!([{"name": "electric", "generation": "generation-i"},
                   {"name": "steel", "generation": "generation-ii"}]),
            v["types"].clone()
        )
    );
    assert_eq!(
        all(s.as_ref(), "PokemonType"),
        vec![
            json!({"name": "electric", "generation": "generation-i"}),
            json!({"name": "steel", "generation": "generation-ii"}),
        ]
    );
}

/// The parts of an index conflict, checked.
fn conflict(r: &Result<(), StoreError>, value: &str, existing: &str, incoming: &str) {
    match r {
        Err(
            e @ StoreError::IndexConflict {
                model,
                index,
                value: v,
                existing: x,
                incoming: i,
            },
        ) => {
            assert_eq!(model, "Pokemon");
            assert_eq!(index, "(name)");
            assert_eq!(v, value);
            assert_eq!((x.as_str(), i.as_str()), (existing, incoming));
            assert!(e.to_string().contains(value), "{e}");
        }
        other => panic!("expected an index conflict, got {other:?}"),
    }
}

/// A record whose secondary index value another stored record holds is reported for that
/// item, not written over it; the rest of the batch is written. A record without its whole
/// primary index is an item error everywhere.
pub fn secondary_index_clash_is_reported_per_item(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(s.as_mut(), &[record(run, "Pokemon", pikachu())]);
    let mut clash = pikachu();
    clash["id"] = json!(26);
    clash["tags"] = json!(["impostor"]);
    let mut raichu = pikachu();
    raichu["id"] = json!(26);
    raichu["name"] = json!("raichu");
    let res = s
        .write_batch(&[
            record(run, "Pokemon", clash),
            record(run, "Pokemon", json!({"name": "nokey"})),
            record(run, "Pokemon", raichu),
        ])
        .unwrap();
    assert!(
        matches!(&res[1], Err(StoreError::MissingKey { model, edge }) if model == "Pokemon" && edge == "id"),
        "{res:?}"
    );
    assert!(res[2].is_ok(), "{res:?}");
    let tags = field(s.as_ref(), "Pokemon", "tags");
    match st.differs.secondary_indexes {
        SecondaryIndexes::Enforced => {
            conflict(&res[0], "\"pikachu\"", "id = 25", "id = 26");
            // Nothing of the clashing record was written; the rest of the batch was.
            assert!(!tags.contains(&json!(["impostor"])), "{tags:?}");
        }
        SecondaryIndexes::NotChecked => {
            assert!(res[0].is_ok(), "{res:?}");
            // Written, then replaced by raichu (same primary key) in the same batch.
            assert!(!tags.contains(&json!(["impostor"])), "{tags:?}");
        }
    }
    assert_eq!(
        field(s.as_ref(), "Pokemon", "name"),
        vec![json!("pikachu"), json!("raichu")]
    );
}

/// Index clashes between records of one batch, and when a stored key is replaced (records
/// without nested records, which SQLite stores without a savepoint).
pub fn secondary_index_clashes_within_a_batch_and_on_replace(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    // `types` holds bare references: no nested record.
    let plain = |id: i64, name: &str, tag: &str| {
        record(
            run,
            "Pokemon",
            json!({"id": id, "name": name, "weight": 1, "types": [{"name": "electric"}], "tags": [tag]}),
        )
    };
    let names_tags = |s: &dyn StoreRead| -> Vec<(Value, Value, Value)> {
        all(s, "Pokemon")
            .into_iter()
            .map(|r| (r["id"].clone(), r["name"].clone(), r["tags"].clone()))
            .collect()
    };

    let res = s
        .write_batch(&[
            plain(1, "a", "t1"),
            plain(2, "a", "t2"),
            plain(3, "c", "t3"),
        ])
        .unwrap();
    assert!(res[0].is_ok() && res[2].is_ok(), "{res:?}");
    let after_first = vec![
        (json!(1), json!("a"), json!(["t1"])),
        (json!(3), json!("c"), json!(["t3"])),
    ];
    match st.differs.secondary_indexes {
        SecondaryIndexes::Enforced => {
            conflict(&res[1], "\"a\"", "id = 1", "id = 2");
            assert_eq!(names_tags(s.as_ref()), after_first);
        }
        SecondaryIndexes::NotChecked => {
            assert!(res[1].is_ok(), "{res:?}");
            let mut both = after_first.clone();
            both.insert(1, (json!(2), json!("a"), json!(["t2"])));
            assert_eq!(names_tags(s.as_ref()), both);
        }
    }

    // Replacing 3 with a name 1 holds fails and keeps 3 as it was; 1 gives the name up.
    let res = s
        .write_batch(&[plain(3, "a", "t3x"), plain(1, "b", "t1x")])
        .unwrap();
    assert!(res[1].is_ok(), "{res:?}");
    match st.differs.secondary_indexes {
        SecondaryIndexes::Enforced => {
            conflict(&res[0], "\"a\"", "id = 1", "id = 3");
            assert_eq!(
                names_tags(s.as_ref()),
                vec![
                    (json!(1), json!("b"), json!(["t1x"])),
                    (json!(3), json!("c"), json!(["t3"])),
                ]
            );
        }
        SecondaryIndexes::NotChecked => {
            assert!(res[0].is_ok(), "{res:?}");
            assert_eq!(
                names_tags(s.as_ref()),
                vec![
                    (json!(1), json!("b"), json!(["t1x"])),
                    (json!(2), json!("a"), json!(["t2"])),
                    (json!(3), json!("a"), json!(["t3x"])),
                ]
            );
        }
    }

    // Now free, the name can be taken; storing a record again with its own name is no clash.
    write_ok(s.as_mut(), &[plain(3, "a", "t3y"), plain(3, "a", "t3z")]);
    let stored = names_tags(s.as_ref());
    assert_eq!(
        stored.last(),
        Some(&(json!(3), json!("a"), json!(["t3z"]))),
        "{stored:?}"
    );
}

/// Every count of items comes back whole and in order, also after the record is stored again.
pub fn items_come_back_whole_and_in_order(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let counts = [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 40];
    let tags = |n: usize| -> Vec<String> { (0..n).map(|i| format!("tag{i}")).collect() };
    let batch: Vec<WriteItem> = counts
        .iter()
        .map(|&n| {
            let mut v = pikachu();
            v["id"] = json!(n);
            v["name"] = json!(format!("p{n}"));
            v["tags"] = json!(tags(n));
            record(run, "Pokemon", v)
        })
        .collect();
    write_ok(s.as_mut(), &batch);
    // Storing them again replaces the child rows.
    write_ok(s.as_mut(), &batch);
    let stored = all(s.as_ref(), "Pokemon");
    assert_eq!(stored.len(), counts.len());
    for (r, &n) in stored.iter().zip(&counts) {
        assert_eq!(r["id"], json!(n));
        assert_eq!(r["tags"], json!(tags(n)), "{n} items");
    }
}

/// A record refused for an item error leaves nothing of itself behind, whether or not it
/// carries nested records (SQLite stores those without a savepoint).
pub fn a_refused_record_leaves_nothing_behind(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let base =
        json!({"id": 25, "name": "pikachu", "weight": 60, "types": ["electric"], "tags": ["a"]});
    write_ok(s.as_mut(), &[record(run, "Pokemon", base.clone())]);
    let clash =
        json!({"id": 26, "name": "pikachu", "weight": 1, "types": ["fire"], "tags": ["b", "c"]});
    let bad_tag = json!({"id": 25, "name": "pikachu", "weight": 2, "types": ["water"], "tags": ["ok", {"x": 1}]});
    // A nested record before a value that does not fit: the nested record is not kept either.
    let nested_then_bad = json!({"id": 27, "name": "p27", "weight": 3,
        "types": [{"name": "rock", "generation": "generation-ii"}], "legendary": "maybe"});
    let res = s
        .write_batch(&[
            record(run, "Pokemon", clash.clone()),
            record(run, "Pokemon", bad_tag.clone()),
            record(run, "Pokemon", nested_then_bad.clone()),
        ])
        .unwrap();
    match st.differs.secondary_indexes {
        SecondaryIndexes::Enforced => assert!(
            matches!(res[0], Err(StoreError::IndexConflict { .. })),
            "{res:?}"
        ),
        SecondaryIndexes::NotChecked => assert!(res[0].is_ok(), "{res:?}"),
    }
    match st.differs.values {
        Values::Typed => {
            match &res[1] {
                Err(StoreError::InvalidValue { edge, key, .. }) => {
                    assert_eq!((edge.as_str(), key.as_str()), ("tags", "id = 25"));
                }
                other => panic!("expected InvalidValue, got {other:?}"),
            }
            match &res[2] {
                Err(StoreError::InvalidValue { edge, key, .. }) => {
                    assert_eq!((edge.as_str(), key.as_str()), ("legendary", "id = 27"));
                }
                other => panic!("expected InvalidValue, got {other:?}"),
            }
            assert_eq!(all(s.as_ref(), "Pokemon")[0]["weight"], json!(60));
            assert!(all(s.as_ref(), "PokemonType").is_empty());
            assert_eq!(
                st.snapshot(),
                tables(&[
                    (
                        "Pokemon",
                        &with_provenance(&["id", "name", "weight", "base_experience", "legendary"]),
                        1
                    ),
                    ("Pokemon__types", &["id", "_kye_position", "value"], 1),
                    ("Pokemon__tags", &["id", "_kye_position", "value"], 1),
                    ("PokemonType", &with_provenance(&["name", "generation"]), 0),
                ])
            );
        }
        Values::AsGiven => {
            assert!(res[1].is_ok() && res[2].is_ok(), "{res:?}");
            assert_eq!(
                all(s.as_ref(), "Pokemon"),
                vec![bad_tag, clash, nested_then_bad]
            );
        }
    }
}

/// Values that do not fit their edge's type. A value that is not an object is no record in
/// any store.
pub fn values_that_do_not_fit(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(crate::hostile::KEYWORDS);
    let run = s.begin_run(&NewRun::new("r")).unwrap();
    let bad: Vec<Value> = vec![
        json!({"group": "a", "select": "not a number"}),
        json!({"group": "b", "select": 1, "from": {"nested": "object"}}),
        json!({"group": "c", "select": 1, "where": "maybe"}),
        json!({"group": "d", "select": "NaN"}),
        json!(["not", "an", "object"]),
    ];
    let items: Vec<WriteItem> = bad
        .iter()
        .map(|v| record(run, "Order", v.clone()))
        .collect();
    let res = s.write_batch(&items).unwrap();
    let invalid = |r: &Result<(), StoreError>, edge: &str| match r {
        Err(StoreError::InvalidValue { model, edge: e, .. }) => {
            assert_eq!((model.as_str(), e.as_str()), ("Order", edge));
        }
        other => panic!("expected InvalidValue on {edge:?}, got {other:?}"),
    };
    invalid(&res[4], "");
    match st.differs.values {
        Values::Typed => {
            for (r, edge) in res.iter().zip(["select", "from", "where", "select"]) {
                invalid(r, edge);
            }
            assert!(all(s.as_ref(), "Order").is_empty());
        }
        Values::AsGiven => {
            assert!(res[..4].iter().all(Result::is_ok), "{res:?}");
            assert_eq!(all(s.as_ref(), "Order"), bad[..4].to_vec());
        }
    }
}

/// Two records of one run nesting different records under one key: the second is refused
/// (the index does not identify one record), the first stays as its source said. A later
/// run replaces it, as for any record.
pub fn contradicting_nested_records_in_one_run(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(crate::runtime::KEYED_SCHEMA);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let cat = |id: i64, t: f64| {
        json!({"id": id, "name": format!("cat-{id}"),
                                      "vitals": {"heart_rate_bpm": 101, "temperature_c": t}})
    };
    let res = s
        .write_batch(&[
            record(run, "Cat", cat(1, 37.001)),
            record(run, "Cat", cat(61, 37.061)),
        ])
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    let e = match &res[1] {
        Err(
            e @ StoreError::NestedConflict {
                model,
                key,
                differs,
            },
        ) => {
            assert_eq!(
                (model.as_str(), key.as_str()),
                ("Vitals", "heart_rate_bpm = 101")
            );
            assert_eq!(differs, "edge temperature_c: 37.061 here, 37.001 before");
            e.to_string()
        }
        other => panic!("expected a nested conflict, got {other:?}"),
    };
    assert!(
        e.contains("nested Vitals heart_rate_bpm = 101 differs"),
        "{e}"
    );
    assert!(
        e.contains("declare it without an index (a value object"),
        "{e}"
    );
    assert_eq!(field(s.as_ref(), "Cat", "id"), vec![json!(1)]);
    assert_eq!(
        field(s.as_ref(), "Vitals", "temperature_c"),
        vec![json!(37.001)]
    );
    // The same record again in the same run is no contradiction; another run replaces it.
    write_ok(s.as_mut(), &[record(run, "Cat", cat(1, 37.001))]);
    let next = s.begin_run(&NewRun::new("y")).unwrap();
    write_ok(s.as_mut(), &[record(next, "Cat", cat(61, 37.061))]);
    assert_eq!(
        field(s.as_ref(), "Vitals", "temperature_c"),
        vec![json!(37.061)]
    );
}
