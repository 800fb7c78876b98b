//! Layout: what a store keeps for a schema (tables and columns as docs/store.md says, or one
//! document per record), and the records read back through `StoreRead`.

use kye_runtime::store::*;
use serde_json::json;

use crate::fixtures::*;
use crate::harness::{Harness, Layout};

/// One table per model, child tables per multi-valued edge, provenance on model rows; or
/// one document per record, nested records as documents of their own model.
pub fn tables_and_columns_as_documented(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    assert_eq!(s.kind(), h.kind);
    let run = s.begin_run(&NewRun::new("Pokemon.id = 25")).unwrap();
    write_ok(s.as_mut(), &[record(run, "Pokemon", pikachu())]);

    let pokemon = with_provenance(&["id", "name", "weight", "base_experience", "legendary"]);
    let child = ["id", "_kye_position", "value"];
    let expected = match st.differs.layout {
        Layout::Tables => tables(&[
            ("Pokemon", &pokemon, 1),
            ("Pokemon__types", &child, 1),
            ("Pokemon__tags", &child, 2),
            ("PokemonType", &with_provenance(&["name", "generation"]), 1),
        ]),
        Layout::Documents => documents(&[
            ("Pokemon", &["25.json"]),
            ("PokemonType", &["electric.json"]),
        ]),
    };
    assert_eq!(st.snapshot(), expected);

    // Read back as written; the nested type is a record of its own model.
    assert_eq!(all(s.as_ref(), "Pokemon"), vec![pikachu()]);
    assert_eq!(
        all(s.as_ref(), "PokemonType"),
        vec![json!({"name": "electric", "generation": "generation-i"})]
    );
    // Edges in schema order, for `show`.
    assert_eq!(
        s.edge_names("Pokemon"),
        Some(
            [
                "id",
                "name",
                "weight",
                "base_experience",
                "legendary",
                "types",
                "tags"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    assert_eq!(s.edge_names("Nope"), None);

    // Depth 0 with provenance.
    let mut q = RecordQuery::new("Pokemon");
    q.depth = 0;
    q.provenance = true;
    let flat = s.records(&q).unwrap();
    assert_eq!(
        flat[0]["types"],
        st.reads(
            json!([{"name": "electric"}]),
            json!([{"name": "electric", "generation": "generation-i"}])
        )
    );
    let prov = &flat[0]["_kye"];
    assert_eq!(prov["run"], json!(run.0));
    assert_eq!(prov["fetcher"], json!("test::fetch"));
    assert_eq!(prov["hash"], json!(content_hash(&pikachu())));
    assert!(prov["fetched_at"]
        .as_str()
        .unwrap()
        .parse::<Timestamp>()
        .is_ok());
    // A reader opened now sees the same.
    let r = st.reader();
    assert_eq!(r.kind(), h.kind);
    assert_eq!(all(r.as_ref(), "Pokemon"), vec![pikachu()]);
}

/// References to a model with a composite key: one column per key part (`day.year`,
/// `value.month`), or documents named by their key parts in index order (`2024,1.json`).
pub fn composite_references(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(REFS);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let event = json!({"id": 1, "day": {"year": 2024, "month": 1, "label": "Jan"},
                       "days": [{"year": 2024, "month": 2}, {"year": 2024, "month": 1}]});
    write_ok(s.as_mut(), &[record(run, "Event", event.clone())]);
    let expected = match st.differs.layout {
        Layout::Tables => tables(&[
            ("Pokemon", &with_provenance(&["id", "name"]), 0),
            ("Day", &with_provenance(&["year", "month", "label"]), 1),
            (
                "Event",
                &with_provenance(&["id", "day.year", "day.month"]),
                1,
            ),
            (
                "Event__days",
                &["id", "_kye_position", "value.year", "value.month"],
                2,
            ),
        ]),
        Layout::Documents => documents(&[("Day", &["2024,1.json"]), ("Event", &["1.json"])]),
    };
    assert_eq!(st.snapshot(), expected);
    assert_eq!(
        all(s.as_ref(), "Event"),
        vec![st.reads(
            json!({"id": 1, "day": {"year": 2024, "month": 1, "label": "Jan"},
                   "days": [{"year": 2024, "month": 2}, {"year": 2024, "month": 1, "label": "Jan"}]}),
            event.clone()
        )]
    );
    let mut q = RecordQuery::new("Event").filter(Filter::parse("id = 1").unwrap());
    q.depth = 0;
    assert_eq!(
        s.records(&q).unwrap(),
        vec![st.reads(
            json!({"id": 1, "day": {"year": 2024, "month": 1},
                   "days": [{"year": 2024, "month": 2}, {"year": 2024, "month": 1}]}),
            event
        )]
    );
    assert!(s
        .last_stored("Day", &IndexKey::new(["year", "month"], [2024, 1]))
        .unwrap()
        .is_some());
    assert!(s
        .last_stored("Day", &IndexKey::new(["year", "month"], [2024, 2]))
        .unwrap()
        .is_none());
}

/// A parent key column named `value` would clash with the child tables' value column: the
/// parent columns there are named `parent.<column>`.
pub fn parent_columns_named_apart_from_value(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared("Box(value) {\n  value: String\n  items: Number*\n}\n");
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let v = json!({"value": "a", "items": [3, 1, 2]});
    write_ok(s.as_mut(), &[record(run, "Box", v.clone())]);
    let expected = match st.differs.layout {
        Layout::Tables => tables(&[
            ("Box", &with_provenance(&["value"]), 1),
            ("Box__items", &["parent.value", "_kye_position", "value"], 3),
        ]),
        Layout::Documents => documents(&[("Box", &["a.json"])]),
    };
    assert_eq!(st.snapshot(), expected);
    assert_eq!(all(s.as_ref(), "Box"), vec![v]);
}

/// Value objects (models without an index) have no table or directory of their own: they are
/// stored with each record that holds them, so two records never share one.
pub fn value_objects_stay_with_their_parent(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(crate::runtime::VALUE_SCHEMA);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    // Cats 1 and 61 have the same heart rate, other temperatures.
    let cats: Vec<_> = [1, 2, 61].map(crate::runtime::cat_doc).to_vec();
    let items: Vec<_> = cats.iter().map(|c| record(run, "Cat", c.clone())).collect();
    write_ok(s.as_mut(), &items);
    let expected = match st.differs.layout {
        Layout::Tables => tables(&[
            ("Cat", &with_provenance(&["id", "name"]), 3),
            (
                "Cat__vitals",
                &[
                    "id",
                    "_kye_position",
                    "heart_rate_bpm",
                    "temperature_c",
                    "notes",
                ],
                3,
            ),
            ("Cat__readings", &["id", "_kye_position", "at", "value"], 4),
        ]),
        Layout::Documents => documents(&[("Cat", &["1.json", "2.json", "61.json"])]),
    };
    assert_eq!(st.snapshot(), expected);
    assert_eq!(all(s.as_ref(), "Cat"), cats);
    let err = s.records(&RecordQuery::new("Vitals")).unwrap_err();
    assert!(
        matches!(&err, StoreError::UnknownModel { model } if model == "Vitals"),
        "{err:?}"
    );
}
