//! Reading records: lookups by any index (freshness and `record`), filters and limits.

use kye_runtime::store::*;
use serde_json::json;

use crate::fixtures::*;
use crate::harness::{Harness, Reads, Values};

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

/// A scan gives every record as reading it alone does, whatever its key: numbers written as
/// `25.0` or `1e2`, negative, fractional, beyond 64 bits or near `f64`'s limits; texts with
/// quotes, backslashes, array and NULL syntax, unicode, the empty text; booleans; a composite
/// key of a number and a text; value objects and references in lists; across chunks (1,100 number keys), with
/// filters and limits. At depth 1 every embedded record is the record read alone (or, inside
/// itself, its reference) where records are rebuilt from columns.
pub fn a_scan_matches_one_read_for_every_kind_of_key(h: &Harness) {
    const SCHEMA: &str = r#"
Num(id) {
  id: Number
  tags: String*
}
Txt(id) {
  id: String
  tags: String*
  vitals: Vitals*
}
Flag(on) {
  on: Boolean
  tags: String*
}
Owned(owner_id, slot) {
  owner_id: Number
  slot: String
  owner: Num
  notes: String*
  friends: Num*
  days: Day*
  vitals: Vitals*
  vital: Vitals?
}
Day(year, month) {
  year: Number
  month: Number
}
Node(id) {
  id: Number
  next: Node?
  kids: Node*
}
Vitals {
  bpm: Number
  temp: Number?
}
"#;
    let st = Store::new(h);
    let mut s = st.prepared(SCHEMA);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    // Lists of 0-3 items; the second is one text many records share (a filter across chunks).
    let tags = |i: usize, n: &str| -> Vec<String> {
        (0..i % 4)
            .map(|t| match t {
                1 => "shared".to_string(),
                _ => format!("{n}-{t}"),
            })
            .collect()
    };
    let mut nums: Vec<serde_json::Value> = [
        "25",
        "25.0",
        "1e2",
        "100.0",
        "-3",
        "-0.125",
        "2.5",
        "0",
        "-0.0",
        "9007199254740993",
        "18446744073709551615",
        "-9223372036854775808",
        "1e20",
        "100000000000000000001",
        "123456789012345678901234567890",
        "1e308",
        "-1e308",
        "5e-324",
        "0.1",
        "0.30000000000000004",
    ]
    .iter()
    .map(|t| serde_json::from_str(t).unwrap())
    .collect();
    nums.extend((0..1100).map(|i| json!(f64::from(i) * 0.75 - 400.0)));
    let texts = [
        "",
        " ",
        "a'b",
        "'",
        "\"q\"",
        "back\\slash",
        "\\",
        "NULL",
        "null",
        "{a,b}",
        "a,b",
        "ünï©ødé 🎉",
        "日本",
        "\t\n",
        "25",
        "25.0",
    ];
    let mut items = Vec::new();
    for (i, n) in nums.iter().enumerate() {
        items.push(record(
            run,
            "Num",
            json!({"id": n, "tags": tags(i, &format!("n{i}"))}),
        ));
    }
    for (i, t) in texts.iter().enumerate() {
        let vitals: Vec<_> = (0..i % 3)
            .map(|v| json!({"bpm": v * 10 + i, "temp": null}))
            .collect();
        items.push(record(
            run,
            "Txt",
            json!({"id": t, "tags": tags(i + 1, t), "vitals": vitals}),
        ));
    }
    for (i, b) in [true, false].iter().enumerate() {
        items.push(record(
            run,
            "Flag",
            json!({"on": b, "tags": tags(i + 2, "f")}),
        ));
    }
    for (i, n) in nums.iter().take(40).enumerate() {
        let friends: Vec<_> = nums
            .iter()
            .skip(i)
            .take(i % 4)
            .map(|f| json!({"id": f}))
            .collect();
        let days: Vec<_> = (0..i % 3)
            .map(|d| json!({"year": 2000 + d, "month": i}))
            .collect();
        items.push(record(
            run,
            "Owned",
            json!({"owner_id": n, "slot": texts[i % texts.len()], "owner": {"id": n},
                   "notes": tags(i + 1, "o"), "friends": friends, "days": days,
                   "vitals": [{"bpm": i, "temp": 36.6}], "vital": {"bpm": -1.5, "temp": i}}),
        ));
    }
    for i in 1..=5 {
        items.push(record(
            run,
            "Node",
            json!({"id": i, "next": {"id": i % 5 + 1}, "kids": [{"id": i}, {"id": 1}, {"id": 9}]}),
        ));
    }
    for chunk in items.chunks(400) {
        write_ok(s.as_mut(), chunk);
    }
    let counts = [
        // 25 = 25.0, 1e2 = 100.0, 0 = -0.0, and 1e20 = 100000000000000000001 as JSON reads it.
        ("Num", nums.len() - 4, &["id"][..]),
        ("Txt", texts.len(), &["id"][..]),
        ("Flag", 2, &["on"][..]),
        ("Owned", 40, &["owner_id", "slot"][..]),
        ("Node", 5, &["id"][..]),
    ];
    for (model, n, key_edges) in counts {
        let mut q = RecordQuery::new(model);
        q.depth = 0;
        let scanned = s.records(&q).unwrap();
        assert_eq!(scanned.len(), n, "{model}");
        let lists = |r: &serde_json::Value| {
            ["tags", "notes", "kids"]
                .iter()
                .filter_map(|e| r.get(*e)?.as_array().map(Vec::len))
                .sum::<usize>()
        };
        assert!(
            scanned.iter().filter(|r| lists(r) > 1).count() * 3 > n,
            "{model}"
        );
        for r in &scanned {
            let key = IndexKey::new(
                key_edges.iter().copied(),
                key_edges.iter().map(|e| r[*e].clone()),
            );
            let alone = s.record(model, &key).unwrap();
            assert_eq!(alone.as_ref(), Some(r), "{model} {key}");
        }
        // A limit, and a filter on a list's item, give the same records as the whole scan.
        q.limit = Some(n / 2 + 1);
        assert_eq!(
            s.records(&q).unwrap(),
            scanned[..n / 2 + 1],
            "{model} limit"
        );
        q.limit = None;
        if let Some((edge, item)) = scanned.iter().find_map(|r| {
            ["tags", "notes"]
                .iter()
                .find_map(|e| Some((*e, r.get(*e)?.as_array()?.get(1)?.clone())))
        }) {
            q.filter = Some(Filter {
                edge: edge.to_string(),
                value: item.clone(),
            });
            let filtered = s.records(&q).unwrap();
            let expected: Vec<_> = scanned
                .iter()
                .filter(|r| r[edge].as_array().is_some_and(|a| a.contains(&item)))
                .cloned()
                .collect();
            assert!(!expected.is_empty(), "{model}");
            assert_eq!(filtered, expected, "{model} filter {edge} = {item}");
        }
        // At depth 1 each reference is the record read alone, or its reference inside itself.
        q.filter = None;
        q.depth = 1;
        let mut embedded = 0;
        for (deep, flat) in s.records(&q).unwrap().iter().zip(&scanned) {
            // A store of documents gives them as written, at any depth.
            if st.differs.reads == Reads::AsWritten {
                assert_eq!(deep, flat, "{model}");
                continue;
            }
            let me = &flat[key_edges[0]];
            for (edge, target) in [
                ("owner", "Num"),
                ("friends", "Num"),
                ("next", "Node"),
                ("kids", "Node"),
            ] {
                let (Some(d), Some(f)) = (deep.get(edge), flat.get(edge)) else {
                    continue;
                };
                let pairs: Vec<(&serde_json::Value, &serde_json::Value)> =
                    match (d.as_array(), f.as_array()) {
                        (Some(d), Some(f)) => {
                            assert_eq!(d.len(), f.len(), "{model} {me} {edge}");
                            d.iter().zip(f).collect()
                        }
                        _ => vec![(d, f)],
                    };
                for (d, f) in pairs {
                    let alone = s
                        .record(target, &IndexKey::single("id", f["id"].clone()))
                        .unwrap();
                    let inside_itself = model == target && &f["id"] == me;
                    let want = if inside_itself {
                        Some(f)
                    } else {
                        alone.as_ref().or(Some(f))
                    };
                    assert_eq!(Some(d), want, "{model} {me} {edge}");
                    embedded += usize::from(d != f);
                }
            }
        }
        if st.differs.reads == Reads::Rebuilt && ["Owned", "Node"].contains(&model) {
            assert!(embedded >= 9, "{model}: {embedded} records embedded");
        }
    }
}
