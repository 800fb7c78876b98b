//! The SQLite store against real database files: records with nested and multi-valued
//! edges, replacement, index clashes, rejects, drift, key outcomes, runs, filters, locks.

use kye_runtime::store::*;
use serde_json::{json, Value};

const POKEMON: &str = r#"
Pokemon(id)(name) {
  id: Number
  name: String
  weight: Number
  base_experience: Number?
  legendary: Boolean?
  types: PokemonType+
  tags: String*
}
PokemonType(name) {
  name: String
  generation: String?
}
"#;

fn schema(text: &str) -> kye_lang::Schema {
    kye_lang::compile_str("test.kye", text).unwrap_or_else(|e| panic!("{e}"))
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    let mut s = SqliteStore::open(dir.path().join("kye.db")).expect("open store");
    s.prepare(&schema(POKEMON)).expect("prepare");
    s
}

fn record(run: RunId, model: &str, v: Value) -> WriteItem {
    WriteItem::Record(RecordWrite::new(
        model,
        v,
        Provenance::new(run, "test::fetch"),
    ))
}

fn pikachu() -> Value {
    json!({"id": 25, "name": "pikachu", "weight": 60, "base_experience": 112, "legendary": false,
           "types": [{"name": "electric", "generation": "generation-i"}], "tags": ["mouse", "yellow"]})
}

fn count(s: &SqliteStore, sql: &str) -> i64 {
    s.connection().query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[test]
fn stores_and_reads_back_nested_records_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let run = s.begin_run(&NewRun::new("Pokemon.id = 25")).unwrap();
    let res = s.write_batch(&[record(run, "Pokemon", pikachu())]).unwrap();
    assert!(res[0].is_ok(), "{res:?}");

    let got = s.records(&RecordQuery::new("Pokemon")).unwrap();
    assert_eq!(
        got,
        vec![
            json!({"id": 25, "name": "pikachu", "weight": 60, "base_experience": 112, "legendary": false,
                     "types": [{"name": "electric", "generation": "generation-i"}],
                     "tags": ["mouse", "yellow"]})
        ]
    );
    // The nested type is a record of its own model.
    let types = s.records(&RecordQuery::new("PokemonType")).unwrap();
    assert_eq!(
        types,
        vec![json!({"name": "electric", "generation": "generation-i"})]
    );
    // Depth 0: references stay keys.
    let mut q = RecordQuery::new("Pokemon");
    q.depth = 0;
    q.provenance = true;
    let flat = s.records(&q).unwrap();
    assert_eq!(flat[0]["types"], json!([{"name": "electric"}]));
    let prov = &flat[0]["_kye"];
    assert_eq!(prov["run"], json!(run.0));
    assert_eq!(prov["fetcher"], json!("test::fetch"));
    assert_eq!(prov["hash"], json!(content_hash(&pikachu())));
    assert!(prov["fetched_at"]
        .as_str()
        .unwrap()
        .parse::<Timestamp>()
        .is_ok());

    // Plain SQL sees typed columns: integral numbers are INTEGER, booleans 0/1.
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Pokemon WHERE typeof(id) = 'integer' AND legendary = 0"
        ),
        1
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM Pokemon__tags WHERE id = 25"),
        2
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Pokemon__types t JOIN PokemonType p ON p.name = t.value"
        ),
        1
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM PokemonType WHERE _kye_run_id IS NOT NULL"
        ),
        1
    );
}

#[test]
fn restoring_a_key_replaces_the_row_and_its_child_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    s.write_batch(&[record(run, "Pokemon", pikachu())]).unwrap();
    let mut v = pikachu();
    v["weight"] = json!(61.5);
    v["tags"] = json!(["only"]);
    v["types"] = json!([{"name": "electric"}, {"name": "steel", "generation": "generation-ii"}]);
    // Same key twice in one batch, and again in a second batch.
    s.write_batch(&[
        record(run, "Pokemon", pikachu()),
        record(run, "Pokemon", v.clone()),
    ])
    .unwrap();
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon__tags"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon__types"), 2);
    let got = s.records(&RecordQuery::new("Pokemon")).unwrap();
    assert_eq!(got[0]["weight"], json!(61.5));
    assert_eq!(got[0]["tags"], json!(["only"]));
    // A bare reference does not overwrite the stored type; the nested full one is stored.
    assert_eq!(
        got[0]["types"],
        json!([{"name": "electric", "generation": "generation-i"},
               {"name": "steel", "generation": "generation-ii"}])
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Pokemon WHERE typeof(weight) = 'real'"
        ),
        1
    );
}

#[test]
fn secondary_index_clash_is_an_item_error_not_an_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    s.write_batch(&[record(run, "Pokemon", pikachu())]).unwrap();
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
    match &res[0] {
        Err(
            e @ StoreError::IndexConflict {
                model,
                index,
                existing,
                incoming,
                ..
            },
        ) => {
            assert_eq!(model, "Pokemon");
            assert_eq!(index, "(name)");
            assert_eq!(existing, "id = 25");
            assert_eq!(incoming, "id = 26");
            assert!(e.to_string().contains("\"pikachu\""), "{e}");
        }
        other => panic!("expected an index conflict, got {other:?}"),
    }
    assert!(
        matches!(&res[1], Err(StoreError::MissingKey { edge, .. }) if edge == "id"),
        "{res:?}"
    );
    assert!(res[2].is_ok(), "{res:?}");
    // Nothing of the clashing record was written; the rest of the batch was.
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Pokemon__tags WHERE value = 'impostor'"
        ),
        0
    );
    let names: Vec<Value> = s
        .records(&RecordQuery::new("Pokemon"))
        .unwrap()
        .into_iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("pikachu"), json!("raichu")]);
}

/// Index clashes of records without nested records (which are stored without a savepoint):
/// between records of one batch, and when a stored key is replaced.
#[test]
fn index_clashes_within_a_batch_and_on_replace_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    // `types` holds bare references: no nested record.
    let plain = |id: i64, name: &str, tag: &str| {
        record(
            run,
            "Pokemon",
            json!({"id": id, "name": name, "weight": 1, "types": [{"name": "electric"}], "tags": [tag]}),
        )
    };
    let name_of = |s: &SqliteStore, id: i64| -> String {
        s.connection()
            .query_row("SELECT name FROM Pokemon WHERE id = ?1", [id], |r| r.get(0))
            .unwrap()
    };
    let clash = |r: &Result<(), StoreError>, existing_id: i64, incoming_id: i64| match r {
        Err(StoreError::IndexConflict {
            index,
            value,
            existing,
            incoming,
            ..
        }) => {
            assert_eq!(index, "(name)");
            assert_eq!(value, "\"a\"");
            assert_eq!(existing, &format!("id = {existing_id}"));
            assert_eq!(incoming, &format!("id = {incoming_id}"));
        }
        other => panic!("expected an index conflict, got {other:?}"),
    };

    let res = s
        .write_batch(&[
            plain(1, "a", "t1"),
            plain(2, "a", "t2"),
            plain(3, "c", "t3"),
        ])
        .unwrap();
    assert!(res[0].is_ok() && res[2].is_ok(), "{res:?}");
    clash(&res[1], 1, 2);
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon"), 2);
    assert_eq!(
        count(&s, "SELECT count(*) FROM Pokemon__tags WHERE value = 't2'"),
        0
    );

    // Replacing 3 with a name 1 holds fails and keeps 3 as it was; 1 gives the name up.
    let res = s
        .write_batch(&[plain(3, "a", "t3x"), plain(1, "b", "t1x")])
        .unwrap();
    clash(&res[0], 1, 3);
    assert!(res[1].is_ok(), "{res:?}");
    assert_eq!(name_of(&s, 3), "c");
    assert_eq!(
        count(&s, "SELECT count(*) FROM Pokemon__tags WHERE value = 't3'"),
        1
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM Pokemon__tags WHERE value = 't3x'"),
        0
    );
    assert_eq!(name_of(&s, 1), "b");

    // Now free, the name can be taken; storing a record again with its own name is no clash.
    let res = s
        .write_batch(&[plain(3, "a", "t3y"), plain(3, "a", "t3z")])
        .unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    assert_eq!(name_of(&s, 3), "a");
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Pokemon__tags WHERE value LIKE 't3%'"
        ),
        1
    );
}

/// Every count of items comes back whole and in order, with positions 0, 1, 2, ..., also
/// after the record is stored again.
#[test]
fn any_number_of_items_is_stored_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
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
    let res = s.write_batch(&batch).unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    // Storing them again replaces the child rows.
    let res = s.write_batch(&batch).unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    let stored = s.records(&RecordQuery::new("Pokemon")).unwrap();
    assert_eq!(stored.len(), counts.len());
    for (r, &n) in stored.iter().zip(&counts) {
        assert_eq!(r["id"], json!(n));
        assert_eq!(r["tags"], json!(tags(n)), "{n} items");
        let positions: Vec<i64> = s
            .connection()
            .prepare("SELECT _kye_position FROM Pokemon__tags WHERE id = ?1 ORDER BY value")
            .unwrap()
            .query_map([n as i64], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut want: Vec<(String, i64)> = (0..n).map(|i| (format!("tag{i}"), i as i64)).collect();
        want.sort();
        assert_eq!(
            positions,
            want.into_iter().map(|(_, p)| p).collect::<Vec<_>>()
        );
    }
}

#[test]
fn rejects_drift_and_key_outcomes_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let r1 = s.begin_run(&NewRun::new("Pokemon.id in 1..=3")).unwrap();
    let t0 = Timestamp::from_unix_millis(1_800_000_000_000);
    let t1 = Timestamp::from_unix_millis(1_800_000_060_000);
    let payload = json!({"id": 2, "name": "ivysaur", "weight": "heavy", "types": []});
    let items = vec![
        record(r1, "Pokemon", pikachu()),
        WriteItem::Reject(RejectWrite {
            run: r1,
            model: "Pokemon".into(),
            key: Some(IndexKey::single("id", 2)),
            fetcher: "test::fetch".into(),
            payload: payload.clone(),
            errors: json!([{"kind": "InvalidType", "edges": ["weight"]}]),
            reason: "weight: expected Number, got \"heavy\"".into(),
            at: t0,
        }),
        WriteItem::Drift(DriftWrite {
            run: r1,
            model: "Pokemon".into(),
            path: "types[0].slot".into(),
            example: json!(1),
            seen_at: t0,
        }),
        WriteItem::Drift(DriftWrite {
            run: r1,
            model: "Pokemon".into(),
            path: "types[1].slot".into(),
            example: json!(2),
            seen_at: t1,
        }),
        WriteItem::KeyOutcome(KeyOutcomeWrite {
            run: r1,
            model: "Pokemon".into(),
            key: IndexKey::single("id", 25),
            status: KeyStatus::Stored,
            reason: None,
            at: t0,
        }),
        WriteItem::KeyOutcome(KeyOutcomeWrite {
            run: r1,
            model: "Pokemon".into(),
            key: IndexKey::single("id", 2),
            status: KeyStatus::Rejected,
            reason: Some("invalid".into()),
            at: t0,
        }),
        WriteItem::KeyOutcome(KeyOutcomeWrite {
            run: r1,
            model: "Pokemon".into(),
            key: IndexKey::single("id", 3),
            status: KeyStatus::Missing,
            reason: Some("404".into()),
            at: t0,
        }),
    ];
    assert!(s.write_batch(&items).unwrap().iter().all(Result::is_ok));
    let r2 = s.begin_run(&NewRun::new("Pokemon.id = 3")).unwrap();

    let rejects = s.rejects(None, None).unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].payload, payload);
    assert_eq!(rejects[0].key, Some(json!({"id": 2})));
    assert_eq!(rejects[0].errors[0]["kind"], json!("InvalidType"));
    assert_eq!(s.rejects(Some(r1), None).unwrap().len(), 1);
    assert!(s.rejects(Some(r2), None).unwrap().is_empty());

    let drift = s.drift().unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].path, "types[].slot");
    assert_eq!(drift[0].count, 2);
    assert_eq!((drift[0].first_seen, drift[0].last_seen), (t0, t1));
    assert_eq!(drift[0].example, json!(2));

    let counts = s.outcome_counts(r1).unwrap();
    assert_eq!(
        (
            counts.stored,
            counts.rejected,
            counts.missing,
            counts.failed
        ),
        (1, 1, 1, 0)
    );
    let o = s
        .latest_outcome("Pokemon", &IndexKey::single("id", 3.0))
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.run, o.status, o.reason.as_deref()),
        (r1, KeyStatus::Missing, Some("404"))
    );
    assert!(s
        .latest_outcome("Pokemon", &IndexKey::single("id", 4))
        .unwrap()
        .is_none());
    // The same key recorded again in a later run wins.
    s.write_batch(&[WriteItem::KeyOutcome(KeyOutcomeWrite {
        run: r2,
        model: "Pokemon".into(),
        key: IndexKey::single("id", 3),
        status: KeyStatus::Stored,
        reason: None,
        at: t1,
    })])
    .unwrap();
    assert_eq!(
        s.latest_outcome("Pokemon", &IndexKey::single("id", 3))
            .unwrap()
            .unwrap()
            .status,
        KeyStatus::Stored
    );
}

#[test]
fn freshness_lookup_by_any_index() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let at = Timestamp::from_unix_millis(1_800_000_000_123);
    let mut p = Provenance::new(run, "f");
    p.fetched_at = at;
    s.write_batch(&[WriteItem::Record(RecordWrite::new("Pokemon", pikachu(), p))])
        .unwrap();
    assert_eq!(
        s.last_stored("Pokemon", &IndexKey::single("id", 25))
            .unwrap(),
        Some(at)
    );
    assert_eq!(
        s.last_stored("Pokemon", &IndexKey::single("id", "25"))
            .unwrap(),
        Some(at)
    );
    assert_eq!(
        s.last_stored("Pokemon", &IndexKey::single("name", "pikachu"))
            .unwrap(),
        Some(at)
    );
    assert_eq!(
        s.last_stored("Pokemon", &IndexKey::single("id", 1))
            .unwrap(),
        None
    );
    assert_eq!(
        s.last_stored("Pokemon", &IndexKey::single("id", "abc"))
            .unwrap(),
        None
    );
    assert!(matches!(
        s.last_stored("Pokemon", &IndexKey::single("weight", 60)),
        Err(StoreError::InvalidFilter { .. })
    ));
    assert!(matches!(
        s.last_stored("Nope", &IndexKey::single("id", 1)),
        Err(StoreError::UnknownModel { .. })
    ));
}

#[test]
fn show_filters_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
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
    assert!(s.write_batch(&items).unwrap().iter().all(Result::is_ok));
    let ids = |q: RecordQuery| -> Vec<i64> {
        s.records(&q)
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids(RecordQuery::new("Pokemon")), vec![1, 2, 4, 10]);
    assert_eq!(ids(RecordQuery::new("Pokemon").limit(2)), vec![1, 2]);
    assert_eq!(
        ids(RecordQuery::new("Pokemon").filter(Filter::parse("id = 4").unwrap())),
        vec![4]
    );
    assert_eq!(
        ids(RecordQuery::new("Pokemon").filter(Filter::parse("name = 'caterpie'").unwrap())),
        vec![10]
    );
    assert_eq!(
        ids(RecordQuery::new("Pokemon").filter(Filter::parse("types = grass").unwrap())),
        vec![1, 2]
    );
    let err = s
        .records(&RecordQuery::new("Pokemon").filter(Filter::parse("colour = red").unwrap()))
        .unwrap_err();
    assert!(err.to_string().contains("no edge \"colour\""), "{err}");
    let err = s
        .records(&RecordQuery::new("Pokemon").filter(Filter::parse("id = abc").unwrap()))
        .unwrap_err();
    assert!(err.to_string().contains("expected Number"), "{err}");
}

#[test]
fn runs_record_start_end_and_interruption() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kye.db");
    let done;
    let dead;
    {
        let mut s = open(&dir);
        done = s.begin_run(&NewRun::new("Pokemon.id = 25")).unwrap();
        let mut counts = RunCounts::default();
        counts.add(KeyStatus::Stored);
        s.finish_run(done, &RunEnd::new(RunStatus::Completed, counts))
            .unwrap();
        dead = s.begin_run(&NewRun::new("Pokemon.id in 1..=3")).unwrap();
        s.write_batch(&[WriteItem::KeyOutcome(KeyOutcomeWrite {
            run: dead,
            model: "Pokemon".into(),
            key: IndexKey::single("id", 1),
            status: KeyStatus::Failed,
            reason: Some("500 three times".into()),
            at: Timestamp::now(),
        })])
        .unwrap();
        // While running, readers see live counts.
        let reader = SqliteReader::open(&path).unwrap();
        let live = reader.run(dead).unwrap().unwrap();
        assert_eq!((live.status, live.counts.failed), (RunStatus::Running, 1));
        assert!(matches!(
            s.finish_run(
                RunId(999),
                &RunEnd::new(RunStatus::Completed, RunCounts::default())
            ),
            Err(StoreError::UnknownRun(RunId(999)))
        ));
        // Dropped without finish_run: as if the process had died.
    }
    let s = SqliteStore::open(&path).unwrap();
    let runs = s.runs(None).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![dead, done]
    );
    assert_eq!(runs[0].status, RunStatus::Interrupted);
    assert_eq!(runs[0].counts.failed, 1);
    assert!(runs[0]
        .error
        .as_deref()
        .unwrap()
        .contains("stopped before the run finished"));
    assert_eq!(runs[1].status, RunStatus::Completed);
    assert_eq!(runs[1].counts.stored, 1);
    assert!(runs[1].ended_at.is_some());
    assert_eq!(s.runs(Some(1)).unwrap().len(), 1);
}

#[test]
fn a_second_writer_is_refused_and_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kye.db");
    let mut first = open(&dir);
    let err = SqliteStore::open(&path).unwrap_err();
    match &err {
        StoreError::Locked { holder, .. } => {
            assert_eq!(holder, &format!(" (pid {})", std::process::id()))
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("being written by another kye process"),
        "{err}"
    );
    let run = first.begin_run(&NewRun::new("x")).unwrap();
    first
        .write_batch(&[record(run, "Pokemon", pikachu())])
        .unwrap();
    let reader = SqliteReader::open(&path).unwrap();
    assert_eq!(
        reader.records(&RecordQuery::new("Pokemon")).unwrap().len(),
        1
    );
    drop(first);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(
        again.records(&RecordQuery::new("Pokemon")).unwrap().len(),
        1
    );
    assert!(matches!(
        SqliteReader::open(dir.path().join("missing.db")),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn store_specs_open_the_right_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    let spec: StoreSpec = db.to_str().unwrap().parse().unwrap();
    let mut s = open_store(&spec).unwrap();
    assert_eq!(s.kind(), "sqlite");
    s.prepare(&schema(POKEMON)).unwrap();
    drop(s);
    assert!(db.is_file());
    let spec: StoreSpec = format!("dir:{}", dir.path().join("out").display())
        .parse()
        .unwrap();
    let s = open_store(&spec).unwrap();
    assert_eq!(s.kind(), "dir");
    assert!(dir.path().join("out/_kye").is_dir());
    let r = open_store_read_only(&StoreSpec::Sqlite(db)).unwrap();
    assert!(r.runs(None).unwrap().is_empty());
}

const REFS: &str = r#"
Pokemon(id) {
  id: Number
  name: String
}
Day(year, month) {
  year: Number
  month: Number
  label: String?
}
Event(id) {
  id: Number
  day: Day?
  days: Day*
}
"#;

#[test]
fn references_to_models_with_composite_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(REFS)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let res = s
        .write_batch(&[record(
            run,
            "Event",
            json!({"id": 1, "day": {"year": 2024, "month": 1, "label": "Jan"},
                       "days": [{"year": 2024, "month": 2}, {"year": 2024, "month": 1}]}),
        )])
        .unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    // Composite references get one column per key part.
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Event WHERE \"day.year\" = 2024 AND \"day.month\" = 1"
        ),
        1
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Event__days WHERE \"value.month\" = 2"
        ),
        1
    );
    let events = s.records(&RecordQuery::new("Event")).unwrap();
    assert_eq!(
        events[0],
        json!({"id": 1, "day": {"year": 2024, "month": 1, "label": "Jan"},
               "days": [{"year": 2024, "month": 2}, {"year": 2024, "month": 1, "label": "Jan"}]})
    );
    let mut q = RecordQuery::new("Event").filter(Filter::parse("id = 1").unwrap());
    q.depth = 0;
    assert_eq!(
        s.records(&q).unwrap(),
        vec![json!({"id": 1, "day": {"year": 2024, "month": 1},
                    "days": [{"year": 2024, "month": 2}, {"year": 2024, "month": 1}]})]
    );
    assert!(s
        .last_stored("Day", &IndexKey::new(["year", "month"], [2024, 1]))
        .unwrap()
        .is_some());
    assert!(s
        .last_stored("Day", &IndexKey::new(["year", "month"], [2024, 2]))
        .unwrap()
        .is_none());

    // The directory store names such records by their key parts in index order.
    let root = dir.path().join("out");
    let mut d = DirStore::open(&root).unwrap();
    d.prepare(&schema(REFS)).unwrap();
    let run = d.begin_run(&NewRun::new("x")).unwrap();
    let res = d
        .write_batch(&[record(
            run,
            "Event",
            json!({"id": 1, "day": {"year": 2024, "month": 1, "label": "Jan"}}),
        )])
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
    assert!(root.join("Day/2024,1.json").is_file());
    assert!(root.join("Event/1.json").is_file());
}

#[test]
fn a_refused_record_without_nested_records_writes_nothing_either() {
    // Records whose nested values are all bare references take the path without a
    // savepoint: their errors must come before their first write.
    let dir = tempfile::tempdir().unwrap();
    let mut s = open(&dir);
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let base =
        json!({"id": 25, "name": "pikachu", "weight": 60, "types": ["electric"], "tags": ["a"]});
    s.write_batch(&[record(run, "Pokemon", base.clone())])
        .unwrap();
    let clash =
        json!({"id": 26, "name": "pikachu", "weight": 1, "types": ["fire"], "tags": ["b", "c"]});
    let bad_tag = json!({"id": 25, "name": "pikachu", "weight": 2, "types": ["water"], "tags": ["ok", {"x": 1}]});
    let res = s
        .write_batch(&[
            record(run, "Pokemon", clash),
            record(run, "Pokemon", bad_tag),
        ])
        .unwrap();
    assert!(
        matches!(res[0], Err(StoreError::IndexConflict { .. })),
        "{res:?}"
    );
    match &res[1] {
        Err(StoreError::InvalidValue { edge, key, .. }) => {
            assert_eq!(edge, "tags");
            assert_eq!(key, "id = 25");
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon__tags"), 1);
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon__types"), 1);
    assert_eq!(
        s.records(&RecordQuery::new("Pokemon")).unwrap()[0]["weight"],
        json!(60)
    );
}
