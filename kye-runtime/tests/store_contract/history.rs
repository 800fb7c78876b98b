//! What a store keeps about fetching: rejects (payload and errors), drift (counts, first and
//! last sighting, examples), runs (counts, status, dead runs), resume state (key outcomes),
//! and one writer with many readers.

use kye_runtime::store::*;
use serde_json::json;

use crate::fixtures::*;
use crate::harness::{Harness, Readers, Writers};

/// Rejects keep the payload and errors; drift folds array positions and counts sightings
/// with the first and last time and the latest example; outcomes count per run and the
/// latest per key wins.
pub fn rejects_drift_and_key_outcomes_are_kept(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let r1 = s.begin_run(&NewRun::new("Pokemon.id in 1..=3")).unwrap();
    let t0 = Timestamp::from_unix_millis(1_800_000_000_000);
    let t1 = Timestamp::from_unix_millis(1_800_000_060_000);
    let payload = json!({"id": 2, "name": "ivysaur", "weight": "heavy", "types": []});
    let outcome_at = |run, id: i64, status, reason: Option<&str>, at| {
        WriteItem::KeyOutcome(KeyOutcomeWrite {
            run,
            model: "Pokemon".into(),
            key: IndexKey::single("id", id),
            status,
            reason: reason.map(String::from),
            at,
        })
    };
    let drift = |path: &str, example, seen_at| {
        WriteItem::Drift(DriftWrite {
            run: r1,
            model: "Pokemon".into(),
            path: path.into(),
            example,
            seen_at,
        })
    };
    write_ok(
        s.as_mut(),
        &[
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
            drift("types[0].slot", json!(1), t0),
            drift("types[1].slot", json!(2), t1),
            drift("sprites[3].url", json!("http://x"), t0),
            drift("sprites[4].url", json!("http://y"), t0),
            // The example keeps its JSON type, and is cut to 1000 characters of JSON.
            drift("microchip_id", json!("985112003456789"), t0),
            drift("long", json!("z".repeat(5000)), t0),
            outcome_at(r1, 25, KeyStatus::Stored, None, t0),
            outcome_at(r1, 2, KeyStatus::Rejected, Some("invalid"), t0),
            outcome_at(r1, 3, KeyStatus::Missing, Some("404"), t0),
        ],
    );
    let r2 = s.begin_run(&NewRun::new("Pokemon.id = 3")).unwrap();

    let rejects = s.rejects(None, None).unwrap();
    assert_eq!(rejects.len(), 1);
    let r = &rejects[0];
    assert_eq!((r.id, r.run, r.model.as_str()), (1, r1, "Pokemon"));
    assert_eq!(r.payload, payload);
    assert_eq!(r.key, Some(json!({"id": 2})));
    assert_eq!(r.errors[0]["kind"], json!("InvalidType"));
    assert_eq!(r.fetcher, "test::fetch");
    assert_eq!(r.reason, "weight: expected Number, got \"heavy\"");
    assert_eq!(r.at, t0);
    assert_eq!(s.rejects(Some(r1), None).unwrap().len(), 1);
    assert!(s.rejects(Some(r2), None).unwrap().is_empty());

    let drift = s.drift().unwrap();
    let paths: Vec<&str> = drift.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(
        paths,
        ["long", "microchip_id", "sprites[].url", "types[].slot"],
        "{drift:?}"
    );
    let slot = &drift[3];
    assert_eq!((slot.model.as_str(), slot.count), ("Pokemon", 2));
    assert_eq!((slot.first_seen, slot.last_seen), (t0, t1));
    assert_eq!((slot.first_run, slot.last_run), (r1, r1));
    assert_eq!(slot.example, json!(2));
    assert_eq!((drift[2].count, &drift[2].example), (2, &json!("http://y")));
    assert_eq!(drift[1].example, json!("985112003456789"));
    let long = drift[0].example.as_str().unwrap();
    assert_eq!(long.chars().count(), 1001);
    assert!(long.starts_with("\"zzz") && long.ends_with("z…"), "{long}");

    let counts = s.outcome_counts(r1).unwrap();
    assert_eq!(
        (
            counts.stored,
            counts.rejected,
            counts.missing,
            counts.failed,
            counts.skipped
        ),
        (1, 1, 1, 0, 0)
    );
    let o = s
        .latest_outcome("Pokemon", &IndexKey::single("id", 3.0))
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.run, o.status, o.reason.as_deref(), o.at),
        (r1, KeyStatus::Missing, Some("404"), t0)
    );
    assert!(s
        .latest_outcome("Pokemon", &IndexKey::single("id", 4))
        .unwrap()
        .is_none());
    // The same key recorded again in a later run wins.
    write_ok(
        s.as_mut(),
        &[outcome_at(r2, 3, KeyStatus::Stored, None, t1)],
    );
    assert_eq!(
        s.latest_outcome("Pokemon", &IndexKey::single("id", 3))
            .unwrap()
            .unwrap()
            .status,
        KeyStatus::Stored
    );
    // A reader sees the same.
    drop(s);
    let r = st.reader();
    assert_eq!(r.rejects(Some(r1), None).unwrap()[0].payload, payload);
    assert_eq!(r.drift().unwrap().len(), 4);
    assert_eq!(
        r.latest_outcome("Pokemon", &IndexKey::single("id", 2))
            .unwrap()
            .and_then(|o| o.reason),
        Some("invalid".to_string())
    );
}

/// Runs: ids in order, counts and status as finished, live counts while running, an unknown
/// run refused, the newest run of a request, and a run whose writer died marked interrupted
/// (counts from its outcomes) by the next writer.
pub fn runs_start_finish_and_interruption(h: &Harness) {
    let st = Store::new(h);
    let done;
    let dead;
    {
        let mut s = st.prepared(POKEMON);
        done = s.begin_run(&NewRun::new("Pokemon.id = 25")).unwrap();
        let mut counts = RunCounts::default();
        counts.add(KeyStatus::Stored);
        s.finish_run(done, &RunEnd::new(RunStatus::Completed, counts))
            .unwrap();
        let mut resumed = NewRun::new("Pokemon.id in 1..=3");
        resumed.resumed_from = Some(done);
        dead = s.begin_run(&resumed).unwrap();
        assert_eq!(dead, RunId(done.0 + 1));
        let failed = KeyOutcomeWrite {
            run: dead,
            model: "Pokemon".into(),
            key: IndexKey::single("id", 1),
            status: KeyStatus::Failed,
            reason: Some("500 three times".into()),
            at: Timestamp::now(),
        };
        write_ok(s.as_mut(), &[WriteItem::KeyOutcome(failed)]);
        // While running, readers (and the writer) see live counts.
        let live = st.reader().run(dead).unwrap().unwrap();
        assert_eq!((live.status, live.counts.failed), (RunStatus::Running, 1));
        assert_eq!(s.run(dead).unwrap().unwrap().counts.failed, 1);
        assert!(matches!(
            s.finish_run(
                RunId(999),
                &RunEnd::new(RunStatus::Completed, RunCounts::default())
            ),
            Err(StoreError::UnknownRun(RunId(999)))
        ));
        let latest = s.latest_run_of("Pokemon.id in 1..=3").unwrap().unwrap();
        assert_eq!(
            (latest.id, latest.resumed_from, latest.status),
            (dead, Some(done), RunStatus::Running)
        );
        assert!(s.latest_run_of("Pokemon.id = 1").unwrap().is_none());
        // Dropped without finish_run: as if the process had died.
    }
    let s = st.writer();
    let runs = s.runs(None).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![dead, done]
    );
    assert_eq!(runs[0].status, RunStatus::Interrupted);
    assert_eq!(runs[0].counts.failed, 1);
    assert!(runs[0].ended_at.is_none());
    assert!(runs[0]
        .error
        .as_deref()
        .unwrap()
        .contains("stopped before the run finished"));
    assert_eq!(runs[1].status, RunStatus::Completed);
    assert_eq!(runs[1].counts.stored, 1);
    assert!(runs[1].ended_at.is_some());
    assert_eq!(runs[1].request, "Pokemon.id = 25");
    assert_eq!(s.runs(Some(1)).unwrap().len(), 1);
    assert_eq!(
        s.run(done).unwrap().map(|r| r.status),
        Some(RunStatus::Completed)
    );
    assert!(s.run(RunId(999)).unwrap().is_none());
    assert_eq!(
        s.latest_run_of("Pokemon.id in 1..=3")
            .unwrap()
            .map(|r| r.status),
        Some(RunStatus::Interrupted)
    );
}

/// What a resumed run reads: the newest finished outcome of each key (`latest_done`, passing
/// over failures), the latest outcome whatever it is, and when the record was stored.
pub fn resume_state(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let r1 = s.begin_run(&NewRun::new("Pokemon.id in 1..=3")).unwrap();
    let key = |id: i64| IndexKey::single("id", id);
    write_ok(
        s.as_mut(),
        &[
            record(r1, "Pokemon", pikachu()),
            outcome(r1, "Pokemon", key(25), KeyStatus::Stored),
            outcome(r1, "Pokemon", key(1), KeyStatus::Failed),
            outcome(r1, "Pokemon", key(2), KeyStatus::Rejected),
        ],
    );
    let r2 = s.begin_run(&NewRun::new("Pokemon.id in 1..=3")).unwrap();
    write_ok(
        s.as_mut(),
        &[
            outcome(r2, "Pokemon", key(25), KeyStatus::Failed),
            outcome(r2, "Pokemon", key(1), KeyStatus::Missing),
            outcome(r2, "Pokemon", key(2), KeyStatus::Skipped),
        ],
    );
    let done = |s: &dyn StoreRead, id| {
        s.latest_done("Pokemon", &key(id))
            .unwrap()
            .map(|o| (o.run, o.status))
    };
    let latest = |s: &dyn StoreRead, id| {
        s.latest_outcome("Pokemon", &key(id))
            .unwrap()
            .map(|o| (o.run, o.status))
    };
    for r in [s.as_ref() as &dyn StoreRead, st.reader().as_ref()] {
        // Failing again later does not undo that the key was done.
        assert_eq!(done(r, 25), Some((r1, KeyStatus::Stored)));
        assert_eq!(latest(r, 25), Some((r2, KeyStatus::Failed)));
        assert_eq!(done(r, 1), Some((r2, KeyStatus::Missing)));
        assert_eq!(done(r, 2), Some((r2, KeyStatus::Skipped)));
        assert_eq!(done(r, 3), None);
        assert_eq!(latest(r, 3), None);
        assert!(r.last_stored("Pokemon", &key(25)).unwrap().is_some());
        assert!(r.last_stored("Pokemon", &key(1)).unwrap().is_none());
        let counts = r.outcome_counts(r2).unwrap();
        assert_eq!(
            (
                counts.failed,
                counts.missing,
                counts.skipped,
                counts.total()
            ),
            (1, 1, 1, 3)
        );
    }
}

/// One writer at a time (the second is refused naming the holder), readers alongside it,
/// and no reader of a store that does not exist.
pub fn one_writer_many_readers(h: &Harness) {
    let st = Store::new(h);
    assert!(matches!(
        open_store_read_only(&st.spec),
        Err(StoreError::NotFound { .. })
    ));
    let mut first = st.prepared(POKEMON);
    let mut records = 1;
    match st.differs.writers {
        Writers::One => {
            let err = open_store(&st.spec)
                .err()
                .expect("a second writer is refused");
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
        }
        Writers::Many => {
            // A second writer works alongside the first; each sees the other's records.
            let mut second = st.prepared(POKEMON);
            let run = second.begin_run(&NewRun::new("y")).unwrap();
            let mut raichu = pikachu();
            raichu["id"] = json!(26);
            raichu["name"] = json!("raichu");
            write_ok(second.as_mut(), &[record(run, "Pokemon", raichu)]);
            assert_eq!(all(first.as_ref(), "Pokemon").len(), 1);
            records = 2;
        }
    }
    let run = first.begin_run(&NewRun::new("x")).unwrap();
    write_ok(first.as_mut(), &[record(run, "Pokemon", pikachu())]);
    let reader = st.reader();
    assert_eq!(all(reader.as_ref(), "Pokemon").len(), records);
    // The writer's own read handle.
    let mine = first.reader().unwrap();
    assert_eq!(all(mine.as_ref(), "Pokemon").len(), records);
    assert_eq!(mine.location(), first.location());
    drop(first);
    let again = st.writer();
    assert_eq!(all(again.as_ref(), "Pokemon").len(), records);
}

/// What a reader opened before a batch sees of it.
pub fn readers_and_later_writes(h: &Harness) {
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let r1 = s.begin_run(&NewRun::new("first")).unwrap();
    let reader = st.reader();
    let handed_out = s.reader().unwrap();
    let r2 = s.begin_run(&NewRun::new("second")).unwrap();
    write_ok(
        s.as_mut(),
        &[
            record(r2, "Pokemon", pikachu()),
            outcome(r2, "Pokemon", IndexKey::single("id", 25), KeyStatus::Stored),
        ],
    );
    for r in [reader.as_ref(), handed_out.as_ref()] {
        // Records are read where they are stored when asked.
        assert_eq!(all(r, "Pokemon").len(), 1);
        let runs: Vec<RunId> = r.runs(None).unwrap().iter().map(|r| r.id).collect();
        let outcome = r
            .latest_outcome("Pokemon", &IndexKey::single("id", 25))
            .unwrap()
            .map(|o| o.run);
        match st.differs.readers {
            Readers::Live => {
                assert_eq!(runs, vec![r2, r1]);
                assert_eq!(outcome, Some(r2));
            }
            Readers::Snapshot => {
                assert_eq!(runs, vec![r1]);
                assert_eq!(outcome, None);
            }
        }
    }
}

/// A run left `running` with no writer holding the lock is what a kill -9 leaves (dropping
/// a writer without finishing its run releases the lock the way the OS does for a dead
/// process): readers show it interrupted at once without writing; the next writer records it.
pub fn dead_runs_are_seen_by_readers(h: &Harness) {
    let st = Store::new(h);
    let mut writer = st.prepared(POKEMON);
    let run = writer
        .begin_run(&NewRun::new("Pokemon.id in 1..=2"))
        .unwrap();
    write_ok(
        writer.as_mut(),
        &[
            record(run, "Pokemon", pikachu()),
            outcome(
                run,
                "Pokemon",
                IndexKey::single("id", 25),
                KeyStatus::Stored,
            ),
        ],
    );
    let sees = |reader: &dyn StoreRead, status: RunStatus| {
        let runs = reader.runs(None).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!((runs[0].id, runs[0].status), (run, status), "{runs:?}");
        assert_eq!(runs[0].counts.stored, 1);
        assert_eq!(reader.run(run).unwrap().map(|r| r.status), Some(status));
    };
    // While its writer lives, the run is running.
    sees(st.reader().as_ref(), RunStatus::Running);
    drop(writer);
    let reader = st.reader();
    sees(reader.as_ref(), RunStatus::Interrupted);
    let error = reader.run(run).unwrap().and_then(|r| r.error).unwrap();
    assert!(error.contains("the process stopped"), "{error}");
    // Readers write nothing: the next writer records it.
    drop(reader);
    let writer = st.writer();
    sees(writer.as_ref(), RunStatus::Interrupted);
}

/// List cursors: saved per (model, list function), replaced by the next save (the last of a
/// batch wins), read back by the writer, its readers and a store opened again, with the run
/// and whether that run listed to the end.
pub fn list_cursors_are_kept_per_list_function(h: &Harness) {
    use kye_runtime::store::ListCursorWrite;
    let st = Store::new(h);
    let mut s = st.prepared(POKEMON);
    let r1 = s.begin_run(&NewRun::new("Pokemon")).unwrap();
    let cursor = |lister: &str, value: serde_json::Value, finished: bool| {
        WriteItem::ListCursor(ListCursorWrite {
            model: "Pokemon".into(),
            lister: lister.into(),
            value,
            finished,
            run: r1,
            at: Timestamp::now(),
        })
    };
    assert_eq!(s.list_cursor("Pokemon", "src::all").unwrap(), None);
    write_ok(
        s.as_mut(),
        &[
            outcome(r1, "Pokemon", IndexKey::single("id", 1), KeyStatus::Stored),
            cursor(
                "src::all",
                json!({"next": "/pokemon?offset=20", "pages": 1}),
                false,
            ),
            cursor(
                "src::all",
                json!({"next": "/pokemon?offset=40", "pages": 2}),
                false,
            ),
            cursor("src::since", json!("2026-12-07T00:00:00Z"), true),
        ],
    );
    for r in [s.as_ref() as &dyn StoreRead, st.reader().as_ref()] {
        let all = r.list_cursor("Pokemon", "src::all").unwrap().unwrap();
        assert_eq!(all.value, json!({"next": "/pokemon?offset=40", "pages": 2}));
        assert!(!all.finished);
        assert_eq!(all.run, r1);
        let since = r.list_cursor("Pokemon", "src::since").unwrap().unwrap();
        assert_eq!(since.value, json!("2026-12-07T00:00:00Z"));
        assert!(since.finished);
        assert_eq!(r.list_cursor("PokemonType", "src::all").unwrap(), None);
    }
    write_ok(s.as_mut(), &[cursor("src::all", json!(null), true)]);
    drop(s);
    let again = st.reader();
    let all = again.list_cursor("Pokemon", "src::all").unwrap().unwrap();
    assert_eq!((all.value, all.finished), (json!(null), true));
}
