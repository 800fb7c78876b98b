//! Reading records: lookups by any index (freshness and `record`), filters and limits.

use kye_runtime::store::*;
use serde_json::json;

use crate::fixtures::*;
use crate::harness::{Harness, Values};

/// `last_stored` and `record` find a record by its primary or secondary index, with numbers
/// given as numbers or text; a key that is no index, or a model the store does not know, is
/// an error.
pub fn lookups_by_any_index(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let at = Timestamp::from_unix_millis(1_800_000_000_123);
    let mut p = Provenance::new(run, "f");
    p.fetched_at = at;
    write_ok(
        s.as_mut(),
        &[WriteItem::Record(RecordWrite::new("Pokemon", pikachu(), p))],
    );
    for key in [
        IndexKey::single("id", 25),
        IndexKey::single("id", 25.0),
        IndexKey::single("id", "25"),
        IndexKey::single("name", "pikachu"),
    ] {
        assert_eq!(s.last_stored("Pokemon", &key).unwrap(), Some(at), "{key}");
        assert_eq!(
            s.record("Pokemon", &key).unwrap(),
            Some(st.reads(
                json!({"id": 25, "name": "pikachu", "weight": 60, "base_experience": 112,
                       "legendary": false, "types": [{"name": "electric"}],
                       "tags": ["mouse", "yellow"]}),
                pikachu()
            )),
            "{key}"
        );
    }
    for key in [
        IndexKey::single("id", 1),
        IndexKey::single("id", "abc"),
        IndexKey::single("name", "raichu"),
    ] {
        assert_eq!(s.last_stored("Pokemon", &key).unwrap(), None, "{key}");
        assert_eq!(s.record("Pokemon", &key).unwrap(), None, "{key}");
    }
    let e = s
        .last_stored("Pokemon", &IndexKey::single("weight", 60))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "filter on Pokemon: (weight) is not an index of Pokemon; its indexes are (id)(name)"
    );
    assert!(matches!(
        s.record("Pokemon", &IndexKey::single("weight", 60)),
        Err(StoreError::InvalidFilter { .. })
    ));
    assert!(matches!(
        s.last_stored("Nope", &IndexKey::single("id", 1)),
        Err(StoreError::UnknownModel { .. })
    ));
}

/// `show`'s filters and limits: records in key order (numbers numerically), `edge = value`
/// on single- and multi-valued edges (references by their key, nested or not).
pub fn filters_and_limits(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let mut items = Vec::new();
    for (id, name, ty) in [
        (1, "bulbasaur", "grass"),
        (4, "charmander", "fire"),
        (10, "caterpie", "bug"),
        (2, "ivysaur", "grass"),
    ] {
        items.push(record(
            run,
            "Pokemon",
            json!({"id": id, "name": name, "weight": 1, "types": [{"name": ty}, {"name": "poison"}], "tags": []}),
        ));
    }
    // A nested type record and a bare type name are references by the type's key too.
    items.push(record(
        run,
        "Pokemon",
        json!({"id": 43, "name": "oddish", "weight": 5, "legendary": false,
               "types": [{"name": "grass", "generation": "generation-i"}], "tags": ["weed"]}),
    ));
    items.push(record(
        run,
        "Pokemon",
        json!({"id": 44, "name": "gloom", "weight": 8, "types": ["grass"], "tags": ["weed"]}),
    ));
    write_ok(s.as_mut(), &items);
    let ids = |q: RecordQuery| -> Vec<i64> {
        s.records(&q)
            .unwrap_or_else(|e| panic!("{q:?}: {e}"))
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let with = |f: &str| RecordQuery::new("Pokemon").filter(Filter::parse(f).unwrap());
    assert_eq!(ids(RecordQuery::new("Pokemon")), vec![1, 2, 4, 10, 43, 44]);
    assert_eq!(ids(RecordQuery::new("Pokemon").limit(2)), vec![1, 2]);
    assert_eq!(ids(with("id = 4")), vec![4]);
    assert_eq!(ids(with("name = 'caterpie'")), vec![10]);
    assert_eq!(ids(with("types = grass")), vec![1, 2, 43, 44]);
    assert_eq!(ids(with("types = grass").limit(3)), vec![1, 2, 43]);
    assert_eq!(ids(with("tags = weed")), vec![43, 44]);
    assert_eq!(ids(with("legendary = false")), vec![43]);
    assert_eq!(ids(with("weight = 5.0")), vec![43]);

    let err = s.records(&with("colour = red")).unwrap_err();
    assert!(err.to_string().contains("no edge \"colour\""), "{err}");
    match st.differs.values {
        Values::Typed => {
            let err = s.records(&with("id = abc")).unwrap_err();
            assert!(err.to_string().contains("expected Number"), "{err}");
        }
        Values::AsGiven => assert_eq!(ids(with("id = abc")), Vec::<i64>::new()),
    }

    // What a filter cannot name: an edge holding value objects, a composite reference.
    drop(s);
    let st = Store::new(h);
    let mut s = st.prepared(crate::runtime::VALUE_SCHEMA);
    s.prepare(&schema(REFS)).unwrap();
    let err = s
        .records(&RecordQuery::new("Cat").filter(Filter::parse("vitals = 3").unwrap()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "filter on Cat: edge vitals holds Vitals value objects (records without an index); \
         filter on an edge of Cat itself"
    );
    let err = s
        .records(&RecordQuery::new("Event").filter(Filter::parse("day = 3").unwrap()))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "filter on Event: edge day refers to a model with a composite key; filter on one of \
         its own edges instead"
    );
}

/// What a freshness report asks the store (`fetched_ages`, `fetched_before`) is what a scan
/// of the records says: records on each side of a cut-off, the oldest fetch time, and the
/// stale keys oldest first (by the primary or a secondary index), from the writer and a
/// reader alike; an empty model has no ages.
pub fn fetched_ages_agree_with_a_record_scan(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let hour = 3_600_000;
    let now = Timestamp::now().unix_millis();
    // Written in id order, fetched in another: 4 the oldest, then 2, 6, 1, 5, 3.
    let order = [4, 2, 6, 1, 5, 3];
    let at = |id: i64| {
        let rank = order.iter().position(|x| *x == id).unwrap() as i64;
        Timestamp::from_unix_millis(now - (6 - rank) * hour)
    };
    let items: Vec<WriteItem> = (1..=6)
        .map(|id| {
            let mut p = Provenance::new(run, "f");
            p.fetched_at = at(id);
            let v = json!({"id": id, "name": format!("mon-{id}"), "weight": id,
                           "types": [{"name": "grass"}]});
            WriteItem::Record(RecordWrite::new("Pokemon", v, p))
        })
        .collect();
    write_ok(s.as_mut(), &items);
    // 3.5 hours ago: 4, 2 and 6 (6, 5 and 4 hours old) are stale, 1, 5 and 3 fresh.
    let cutoff = Timestamp::from_unix_millis(now - 7 * hour / 2);
    let reader = st.reader();
    for r in [s.as_ref() as &dyn StoreRead, reader.as_ref()] {
        // The record scan a freshness report made before the store could count.
        let mut q = RecordQuery::new("Pokemon");
        q.provenance = true;
        let mut scanned = FetchedAges::default();
        let mut stale = Vec::new();
        for rec in r.records(&q).unwrap() {
            let fetched: Timestamp = rec["_kye"]["fetched_at"].as_str().unwrap().parse().unwrap();
            scanned.oldest = Some(scanned.oldest.map_or(fetched, |o| o.min(fetched)));
            if fetched >= cutoff {
                scanned.since += 1;
            } else {
                scanned.before += 1;
                stale.push((fetched, rec["id"].as_i64().unwrap()));
            }
        }
        stale.sort();
        let ages = r.fetched_ages("Pokemon", cutoff).unwrap();
        assert_eq!(ages, scanned);
        assert_eq!(
            ages,
            FetchedAges {
                since: 3,
                before: 3,
                oldest: Some(at(4)),
            }
        );
        let by_id = r.fetched_before("Pokemon", &["id"], cutoff, 100).unwrap();
        let want: Vec<(Timestamp, IndexKey)> = stale
            .iter()
            .map(|(t, id)| (*t, IndexKey::single("id", *id)))
            .collect();
        assert_eq!(by_id, want);
        assert_eq!(
            by_id.iter().map(|(_, k)| k.canonical()).collect::<Vec<_>>(),
            [r#"{"id":4}"#, r#"{"id":2}"#, r#"{"id":6}"#]
        );
        // At most `limit`, the oldest; by the secondary index too.
        let by_name = r.fetched_before("Pokemon", &["name"], cutoff, 2).unwrap();
        assert_eq!(
            by_name,
            [
                (at(4), IndexKey::single("name", "mon-4")),
                (at(2), IndexKey::single("name", "mon-2")),
            ]
        );
        assert_eq!(r.fetched_before("Pokemon", &["id"], cutoff, 0).unwrap(), []);
        // A record fetched at the cut-off itself is fresh.
        assert_eq!(
            r.fetched_ages("Pokemon", at(1)).unwrap(),
            FetchedAges {
                since: 3,
                before: 3,
                oldest: Some(at(4)),
            }
        );
        assert_eq!(
            r.fetched_before("Pokemon", &["id"], at(1), 100)
                .unwrap()
                .len(),
            3
        );
        // Nothing is stale before the oldest fetch; a model without records has no ages.
        assert_eq!(
            r.fetched_before("Pokemon", &["id"], at(4), 100).unwrap(),
            []
        );
        assert_eq!(
            r.fetched_ages("PokemonType", cutoff).unwrap(),
            FetchedAges::default()
        );
    }
}

/// Reading every record of a model gives each record exactly as reading it alone does: lists
/// of any length (none, one, several) in order, across the store's reading chunks (1,100
/// records), for a number key and for a composite key of text and a number.
pub fn a_scan_reads_every_record_as_one_read_does(h: &Harness) {
    const SCHEMA: &str = r#"
Mon(id) {
  id: Number
  name: String
  tags: String*
}
Reading(station, day) {
  station: String
  day: Number
  values: Number*
}
"#;
    let st = Store::new(h);
    let mut s = st.prepared(SCHEMA);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let tags = |i: i64| -> Vec<String> { (0..i % 4).map(|t| format!("t{i}-{t}")).collect() };
    let items: Vec<WriteItem> = (1..=1100)
        .flat_map(|i| {
            [
                record(
                    run,
                    "Mon",
                    json!({"id": i, "name": format!("mon-{i}"), "tags": tags(i)}),
                ),
                record(
                    run,
                    "Reading",
                    json!({"station": format!("s{}", i % 7), "day": i,
                           "values": (0..i % 3).map(|v| v as f64 + 0.5).collect::<Vec<_>>()}),
                ),
            ]
        })
        .collect();
    for chunk in items.chunks(500) {
        write_ok(s.as_mut(), chunk);
    }
    for (model, edges) in [("Mon", &["id"][..]), ("Reading", &["station", "day"][..])] {
        let mut q = RecordQuery::new(model);
        q.depth = 0;
        let all = s.records(&q).unwrap();
        assert_eq!(all.len(), 1100, "{model}");
        for r in &all {
            let key = IndexKey::new(edges.iter().copied(), edges.iter().map(|e| r[*e].clone()));
            let alone = s.record(model, &key).unwrap();
            assert_eq!(alone.as_ref(), Some(r), "{model} {key}");
        }
        let with_lists = all
            .iter()
            .filter(|r| {
                r.get("tags")
                    .or_else(|| r.get("values"))
                    .and_then(|v| v.as_array())
                    .is_some_and(|a| a.len() > 1)
            })
            .count();
        assert!(with_lists > 300, "{model}: {with_lists}");
    }
    let mon = s
        .record("Mon", &IndexKey::single("id", 7))
        .unwrap()
        .unwrap();
    assert_eq!(mon["tags"], json!(["t7-0", "t7-1", "t7-2"]));
}
