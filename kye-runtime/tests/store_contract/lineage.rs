//! Transformers' lineage: what each output was computed from, written in the transaction of
//! the output record and replaced whole per (transformer, output key); and the content hashes
//! of stored records the runtime compares it with.

use kye_runtime::store::*;
use serde_json::{json, Value};

use crate::fixtures::*;
use crate::harness::{Harness, Lineage as Kept, SecondaryIndexes};

fn input(model: &str, key: IndexKey, hash: Option<&str>) -> LineageInput {
    LineageInput {
        model: model.into(),
        key,
        hash: hash.map(str::to_string),
    }
}

fn output(
    run: RunId,
    transformer: &str,
    id: i64,
    name: &str,
    inputs: Vec<LineageInput>,
) -> WriteItem {
    let value = json!({"id": id, "name": name, "weight": 1, "types": [{"name": "electric"}]});
    WriteItem::Record(
        RecordWrite::new(
            "Pokemon",
            value,
            Provenance::new(run, format!("transform {transformer}")),
        )
        .with_lineage(Lineage {
            transformer: transformer.into(),
            output_key: IndexKey::single("id", id),
            inputs,
        }),
    )
}

/// The lineage rows of `transformer` as (output key, input model, input key, hash) text.
fn rows(s: &dyn StoreRead, transformer: &str) -> Vec<(String, String, String, Option<String>)> {
    s.lineage(transformer)
        .unwrap_or_else(|e| panic!("lineage of {transformer}: {e}"))
        .into_iter()
        .map(|r| {
            assert_eq!(r.output_model, "Pokemon");
            // Keys come back in their canonical text, readable as keys again.
            assert!(IndexKey::from_canonical(&r.input_key).is_some(), "{r:?}");
            (r.output_key, r.input_model, r.input_key, r.input_hash)
        })
        .collect()
}

fn text(k: &str, m: &str, ik: &str, h: Option<&str>) -> (String, String, String, Option<String>) {
    (k.into(), m.into(), ik.into(), h.map(str::to_string))
}

/// Written with the record, read back by transformer, replaced whole when the output is
/// written again; each transformer's rows are its own. A store without lineage refuses both.
pub fn lineage_is_written_with_its_output_and_replaced_whole(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("transform a")).unwrap();
    let electric = IndexKey::single("name", "electric");
    let items = [
        output(
            run,
            "a",
            1,
            "one",
            vec![
                input("PokemonType", electric.clone(), Some("sha256:1")),
                input("PokemonType", IndexKey::single("name", "fire"), None),
            ],
        ),
        output(
            run,
            "b",
            1,
            "one",
            vec![input("PokemonType", electric.clone(), Some("sha256:1"))],
        ),
    ];
    if st.differs.lineage == Kept::Refused {
        let results = s.write_batch(&items).expect("batch");
        for r in &results {
            assert!(
                matches!(r, Err(StoreError::Unsupported { .. })),
                "{results:?}"
            );
        }
        assert!(
            all(s.as_ref(), "Pokemon").is_empty(),
            "a refused output stores nothing"
        );
        let err = s.lineage("a").unwrap_err();
        assert!(err.to_string().contains("keeps no lineage"), "{err}");
        return;
    }
    write_ok(s.as_mut(), &items);
    assert_eq!(
        rows(s.as_ref(), "a"),
        [
            text(
                r#"{"id":1}"#,
                "PokemonType",
                r#"{"name":"electric"}"#,
                Some("sha256:1")
            ),
            text(r#"{"id":1}"#, "PokemonType", r#"{"name":"fire"}"#, None),
        ]
    );
    assert_eq!(rows(st.reader().as_ref(), "b").len(), 1, "a reader sees it");
    // Written again: the old rows go (fire is no longer read), an input read twice keeps
    // its last hash.
    write_ok(
        s.as_mut(),
        &[output(
            run,
            "a",
            1,
            "one",
            vec![
                input("PokemonType", electric.clone(), Some("sha256:1")),
                input("PokemonType", electric.clone(), Some("sha256:2")),
            ],
        )],
    );
    assert_eq!(
        rows(s.as_ref(), "a"),
        [text(
            r#"{"id":1}"#,
            "PokemonType",
            r#"{"name":"electric"}"#,
            Some("sha256:2")
        )]
    );
    assert_eq!(
        rows(s.as_ref(), "b").len(),
        1,
        "another transformer's rows stay"
    );
    assert!(rows(s.as_ref(), "nobody").is_empty());
}

/// An output the store refuses leaves no lineage: the runtime computes it again next run.
pub fn a_refused_output_leaves_no_lineage(h: &Harness) {
    let st = Store::new(h);
    if st.differs.lineage == Kept::Refused
        || st.differs.secondary_indexes == SecondaryIndexes::NotChecked
    {
        return;
    }
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("transform a")).unwrap();
    let electric = IndexKey::single("name", "electric");
    let results = s
        .write_batch(&[
            output(
                run,
                "a",
                1,
                "same",
                vec![input("PokemonType", electric.clone(), Some("h1"))],
            ),
            // Another id with the same (secondary) name: refused, with its lineage.
            output(
                run,
                "a",
                2,
                "same",
                vec![input("PokemonType", electric.clone(), Some("h2"))],
            ),
        ])
        .unwrap();
    assert!(results[0].is_ok());
    assert!(
        matches!(results[1], Err(StoreError::IndexConflict { .. })),
        "{results:?}"
    );
    assert_eq!(
        rows(s.as_ref(), "a"),
        [text(
            r#"{"id":1}"#,
            "PokemonType",
            r#"{"name":"electric"}"#,
            Some("h1")
        )]
    );
}

/// The content hash of every stored record, by primary key: what provenance shows, changed
/// when the record changes and only then.
pub fn content_hashes_follow_the_records(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let mut raichu = pikachu();
    raichu["id"] = json!(26);
    raichu["name"] = json!("raichu");
    write_ok(
        s.as_mut(),
        &[
            record(run, "Pokemon", pikachu()),
            record(run, "Pokemon", raichu.clone()),
        ],
    );
    let hashes = |s: &dyn StoreRead| {
        let mut out = Vec::new();
        s.content_hashes("Pokemon", &["id"], &mut |k, h| {
            out.push((k.canonical(), h));
            Ok(())
        })
        .unwrap();
        out.sort();
        out
    };
    let before = hashes(s.as_ref());
    assert_eq!(before.len(), 2);
    assert_eq!(before[0].0, r#"{"id":25}"#);
    let mut q = RecordQuery::new("Pokemon");
    q.provenance = true;
    let shown = s.records(&q).unwrap();
    let of = |id: i64| shown.iter().find(|r| r["id"] == json!(id)).unwrap()["_kye"]["hash"].clone();
    assert_eq!(json!(before[0].1), of(25));
    assert!(!before[0].1.is_empty());
    // The same record again: the same hash; a changed one: another.
    raichu["weight"] = json!(300);
    write_ok(
        s.as_mut(),
        &[
            record(run, "Pokemon", pikachu()),
            record(run, "Pokemon", raichu),
        ],
    );
    let after = hashes(st.reader().as_ref());
    assert_eq!(after[0], before[0]);
    assert_ne!(after[1].1, before[1].1);
}

/// The store's judgement of which outputs are stale ([`StoreRead::stale_inputs`]) against the
/// lineage and the inputs as stored now: an output is fresh only when every input it read
/// (its primary input, another model's record, another record of the primary model) is
/// stored with the hash it had; a record without an output is stale; an output whose primary
/// input is gone is counted as orphaned. Read on the writer and on a reader alike.
pub fn stale_inputs_judge_the_lineage(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let mon = |id: i64, weight: i64| {
        json!({"id": id, "name": format!("mon-{id}"), "weight": weight,
               "types": [{"name": "electric"}]})
    };
    let water = json!({"name": "water", "generation": "generation-i"});
    let mut items: Vec<WriteItem> = (25..=31)
        .filter(|id| *id != 30)
        .map(|id| record(run, "Pokemon", mon(id, 10)))
        .collect();
    items.push(record(run, "PokemonType", water.clone()));
    items.push(record(run, "PokemonType", json!({"name": "electric"})));
    write_ok(s.as_mut(), &items);
    let hash_of = |s: &dyn StoreRead, model: &str, edge: &str, key: Value| {
        let mut found = None;
        s.content_hashes(model, &[edge], &mut |k, h| {
            if k == IndexKey::single(edge, key.clone()) {
                found = Some(h);
            }
            Ok(())
        })
        .unwrap();
        found.unwrap_or_else(|| panic!("{model} {key} is stored"))
    };
    let now = |s: &dyn StoreRead, id: i64| Some(hash_of(s, "Pokemon", "id", json!(id)));
    let water_then = hash_of(s.as_ref(), "PokemonType", "name", json!("water"));
    let electric = hash_of(s.as_ref(), "PokemonType", "name", json!("electric"));
    let mon_key = |id: i64| IndexKey::single("id", id);
    // An output per primary Pokémon, stored as a PokemonType named after it.
    let card = |id: i64, inputs: Vec<LineageInput>| {
        WriteItem::Record(
            RecordWrite::new(
                "PokemonType",
                json!({"name": format!("card-{id}")}),
                Provenance::new(run, "transform t"),
            )
            .with_lineage(Lineage {
                transformer: "t".into(),
                output_key: IndexKey::single("name", format!("card-{id}")),
                inputs,
            }),
        )
    };
    let r = s.as_ref();
    let items = [
        // 25: its Pokémon and the electric type as stored: fresh.
        card(
            25,
            vec![
                input("Pokemon", mon_key(25), now(r, 25).as_deref()),
                input(
                    "PokemonType",
                    IndexKey::single("name", "electric"),
                    Some(&electric),
                ),
            ],
        ),
        // 26: computed from a Pokémon that changed since (below).
        card(
            26,
            vec![input("Pokemon", mon_key(26), now(r, 26).as_deref())],
        ),
        // 27: read the water type, which changes (below).
        card(
            27,
            vec![
                input("Pokemon", mon_key(27), now(r, 27).as_deref()),
                input(
                    "PokemonType",
                    IndexKey::single("name", "water"),
                    Some(&water_then),
                ),
            ],
        ),
        // 28: looked up a fire type that was missing then (and still is).
        card(
            28,
            vec![
                input("Pokemon", mon_key(28), now(r, 28).as_deref()),
                input("PokemonType", IndexKey::single("name", "fire"), None),
            ],
        ),
        // 29: read another Pokémon (25) as stored: fresh.
        card(
            29,
            vec![
                input("Pokemon", mon_key(29), now(r, 29).as_deref()),
                input("Pokemon", mon_key(25), now(r, 25).as_deref()),
            ],
        ),
        // 30: its Pokémon is not stored (gone): orphaned.
        card(30, vec![input("Pokemon", mon_key(30), Some("sha256:gone"))]),
        // 31 has no output: stale.
    ];
    if st.differs.lineage == Kept::Refused {
        let err = s
            .stale_inputs(
                "t",
                &[("Pokemon", &["id"]), ("PokemonType", &["name"])],
                &mut |_, _| Ok(()),
            )
            .unwrap_err();
        assert!(err.to_string().contains("keeps no lineage"), "{err}");
        return;
    }
    write_ok(s.as_mut(), &items);
    let mut water_now = water;
    water_now["generation"] = json!("generation-ii");
    write_ok(
        s.as_mut(),
        &[
            record(run, "Pokemon", mon(26, 11)),
            record(run, "PokemonType", water_now),
        ],
    );
    let judge = |s: &dyn StoreRead| {
        let mut stale = Vec::new();
        let counts = s
            .stale_inputs(
                "t",
                &[("Pokemon", &["id"]), ("PokemonType", &["name"])],
                &mut |k, h| {
                    stale.push((k.canonical(), h));
                    Ok(())
                },
            )
            .expect("judged");
        stale.sort();
        (stale, counts)
    };
    let expected: Vec<(String, String)> = [26, 27, 28, 31]
        .into_iter()
        .map(|id| (format!("{{\"id\":{id}}}"), now(s.as_ref(), id).unwrap()))
        .collect();
    for reader in [judge(s.as_ref()), judge(st.reader().as_ref())] {
        let (stale, counts) = reader;
        assert_eq!(stale, expected);
        assert_eq!(
            counts,
            StaleCounts {
                unchanged: 2,
                orphaned: 1
            }
        );
    }
    // Another transformer has no lineage: every stored Pokémon is stale.
    let mut none = 0;
    let counts = s
        .stale_inputs("nobody", &[("Pokemon", &["id"])], &mut |_, _| {
            none += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!((none, counts), (6, StaleCounts::default()));
    // Pokémon 25 changes: card 25 and card 29 (which read it) become stale.
    write_ok(s.as_mut(), &[record(run, "Pokemon", mon(25, 12))]);
    let (stale, counts) = judge(st.reader().as_ref());
    let ids: Vec<&str> = stale.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        ids,
        [
            r#"{"id":25}"#,
            r#"{"id":26}"#,
            r#"{"id":27}"#,
            r#"{"id":28}"#,
            r#"{"id":29}"#,
            r#"{"id":31}"#
        ]
    );
    assert_eq!(
        counts,
        StaleCounts {
            unchanged: 0,
            orphaned: 1
        }
    );
}

/// Writes `Item` records 1..=n and one output per item (transformer `t`, output model
/// `Card`) whose lineage holds the item as it is stored now; `None` when the store keeps no
/// lineage.
fn items_with_cards(s: &mut dyn StoreWrite, run: RunId, items: &[Value]) -> Option<()> {
    let writes: Vec<WriteItem> = items
        .iter()
        .map(|v| record(run, "Item", v.clone()))
        .collect();
    write_ok(s, &writes);
    let mut hashes = std::collections::HashMap::new();
    s.content_hashes("Item", &["id"], &mut |k, h| {
        hashes.insert(k.canonical(), h);
        Ok(())
    })
    .unwrap();
    let cards: Vec<WriteItem> = items
        .iter()
        .map(|v| {
            let key = IndexKey::single("id", v["id"].clone());
            WriteItem::Record(
                RecordWrite::new("Card", json!({"id": v["id"]}), Provenance::new(run, "t"))
                    .with_lineage(Lineage {
                        transformer: "t".into(),
                        output_key: key.clone(),
                        inputs: vec![input("Item", key.clone(), Some(&hashes[&key.canonical()]))],
                    }),
            )
        })
        .collect();
    let res = s.write_batch(&cards).expect("batch");
    res.iter().all(Result::is_ok).then_some(())
}

/// The stale keys (canonical text, sorted) and counts of transformer `t` over `Item`.
fn stale_items(s: &dyn StoreRead) -> (Vec<String>, StaleCounts) {
    let mut stale = Vec::new();
    let counts = s
        .stale_inputs("t", &[("Item", &["id"])], &mut |k, _| {
            stale.push(k.canonical());
            Ok(())
        })
        .expect("judged");
    stale.sort();
    (stale, counts)
}

/// An edge may be called `rowid` (or `oid`, `_rowid_`): SQLite's names for a row's own id,
/// which such a column hides. The judgement hands over exactly the changed records, each
/// once, whatever the model's edges are called.
pub fn stale_inputs_judge_models_with_an_edge_called_rowid(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(
        "Item(id) {\n id: Number\n name: String\n rowid: Number?\n oid: Number?\n}\n\
         Card(id) {\n id: Number\n}\n",
    );
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let item = |id: i64, name: &str| json!({"id": id, "name": name, "rowid": 1, "oid": 7 - id});
    let items: Vec<Value> = (1..=30).map(|id| item(id, "a")).collect();
    if items_with_cards(s.as_mut(), run, &items).is_none() {
        assert_eq!(st.differs.lineage, Kept::Refused);
        return;
    }
    // Two items change: only their cards are stale.
    write_ok(
        s.as_mut(),
        &[
            record(run, "Item", item(12, "b")),
            record(run, "Item", item(20, "b")),
        ],
    );
    let want = (
        vec![r#"{"id":12}"#.to_string(), r#"{"id":20}"#.to_string()],
        StaleCounts {
            unchanged: 28,
            orphaned: 0,
        },
    );
    assert_eq!(stale_items(s.as_ref()), want);
    assert_eq!(stale_items(st.reader().as_ref()), want);
}

/// Outputs whose primary input has no hash in their lineage (it was not stored when read)
/// are judged per primary key: one whose record is stored now is stale (computed again),
/// one whose record is not stored is orphaned, however many such outputs there are.
pub fn stale_inputs_count_each_primary_read_without_a_hash(h: &Harness) {
    let st = Store::new(h);
    let mut s =
        st.prepared("Item(id) {\n id: Number\n name: String\n}\nCard(id) {\n id: Number\n}\n");
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let items: Vec<Value> = (1..=3).map(|id| json!({"id": id, "name": "a"})).collect();
    if items_with_cards(s.as_mut(), run, &items).is_none() {
        assert_eq!(st.differs.lineage, Kept::Refused);
        return;
    }
    // Cards 10 and 11 were computed from items 4 and 99 read without a hash: item 4 is
    // stored now (stale), item 99 is not (orphaned).
    let card = |id: i64, from: i64| {
        WriteItem::Record(
            RecordWrite::new("Card", json!({"id": id}), Provenance::new(run, "t")).with_lineage(
                Lineage {
                    transformer: "t".into(),
                    output_key: IndexKey::single("id", id),
                    inputs: vec![input("Item", IndexKey::single("id", from), None)],
                },
            ),
        )
    };
    write_ok(
        s.as_mut(),
        &[
            record(run, "Item", json!({"id": 4, "name": "a"})),
            card(10, 4),
            card(11, 99),
        ],
    );
    let want = (
        vec![r#"{"id":4}"#.to_string()],
        StaleCounts {
            unchanged: 3,
            orphaned: 1,
        },
    );
    assert_eq!(stale_items(s.as_ref()), want);
    assert_eq!(stale_items(st.reader().as_ref()), want);
}
