//! PostgreSQL: unique violations (SQLSTATE 23505) in a batch. None is tried again as it was:
//! a clash with a stored record, or with a writer that takes none of kye's locks, ends as the
//! `IndexConflict` SQLite reports (naming the holder); rows of an edge kye did not write and
//! constraints kye did not make refuse their record alone, naming model, key and edge or
//! constraint; a clash in kye's own tables fails the batch at once.

use std::time::{Duration, Instant};

use kye_runtime::store::*;
use serde_json::json;

use crate::pg::{client, Pg, ITEMS};
use crate::{record, schema};

/// Waits until kye's connection (`application_name`) waits for a lock held by `blocker`.
fn wait_until_blocked_by(pg: &mut Pg, blocker: i32) {
    let name = format!("kye {}", pg.schema);
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let n: i64 =
            pg.c.query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                 AND $2 = ANY(pg_blocking_pids(pid))",
                &[&name, &blocker],
            )
            .unwrap()
            .get(0);
        if n > 0 {
            return;
        }
        assert!(
            Instant::now() < until,
            "kye never waited for backend {blocker}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Three writers that take none of kye's locks (a psql session, another tool) each hold an
/// uncommitted row with the `code` one record of kye's batch wants, and commit while kye
/// waits for them: the first while the batch is written whole, the second when it is written
/// again knowing the stored holders, the third when it is written record by record. Each
/// record ends as the `IndexConflict` SQLite gives (naming the holder), never as a raw
/// database error, and nothing of the three is written. Before, the second and third were
/// refused with the database's message alone.
#[test]
fn index_values_taken_by_another_writer_meanwhile_end_as_index_conflicts() {
    let Some(mut pg) = Pg::new() else { return };
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    let run = s.begin_run(&NewRun::new("Item")).unwrap();
    let table = format!("\"{}\".\"Item\"", pg.schema);
    let mut others = Vec::new();
    for (id, code) in [(99, "x"), (98, "y"), (97, "z")] {
        let mut c = client().unwrap();
        let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
        c.batch_execute(&format!(
            "BEGIN; INSERT INTO {table} (id, code, v, _kye_run_id, _kye_fetcher, \
             _kye_fetched_at, _kye_hash) VALUES ({id}, '{code}', 0, 0, 'psql', now(), '')"
        ))
        .unwrap();
        others.push((c, pid));
    }
    let writer = std::thread::spawn(move || {
        let item =
            |id: i64, code: &str| record(run, "Item", json!({"id": id, "code": code, "v": 1}));
        s.write_batch(&[item(1, "x"), item(2, "y"), item(3, "z"), item(4, "w")])
    });
    for (c, pid) in &mut others {
        wait_until_blocked_by(&mut pg, *pid);
        c.batch_execute("COMMIT").unwrap();
    }
    let results = writer.join().unwrap().expect("the batch is written");
    assert!(results[3].is_ok(), "{results:?}");
    for (i, holder) in [(0, "id = 99"), (1, "id = 98"), (2, "id = 97")] {
        match &results[i] {
            Err(StoreError::IndexConflict {
                model,
                index,
                existing,
                incoming,
                ..
            }) => {
                assert_eq!(
                    (model.as_str(), index.as_str(), existing.as_str()),
                    ("Item", "(code)", holder)
                );
                assert_eq!(incoming, &format!("id = {}", i + 1));
            }
            other => panic!("record {}: {other:?}", i + 1),
        }
    }
    assert_eq!(
        pg.strings("SELECT id::text FROM S.\"Item\" WHERE _kye_fetcher <> 'psql'"),
        ["4"]
    );
}

/// Rows of an edge whose record's row is gone (deleted by hand, without its child rows) clash
/// with the record's new rows: the record is refused alone, naming model, key and the edge,
/// and the rest of its batch is written. Before, the error named a constraint kye made up
/// (`_kye_pk_…`) and not the edge.
#[test]
fn rows_of_an_edge_kye_did_not_write_refuse_their_record_naming_the_edge() {
    let Some(mut pg) = Pg::new() else { return };
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    pg.exec("INSERT INTO S.\"Item__tags\" (id, _kye_position, value) VALUES (2, 0, 5)");
    let run = s.begin_run(&NewRun::new("Item")).unwrap();
    let item = |id: i64| {
        record(
            run,
            "Item",
            json!({"id": id, "code": format!("c{id}"), "v": 1, "tags": [id, 7]}),
        )
    };
    let results = s.write_batch(&[item(1), item(2), item(3)]).unwrap();
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    match &results[1] {
        Err(StoreError::Refused {
            model, key, index, ..
        }) => {
            assert_eq!((model.as_str(), key.as_str()), ("Item", "id = 2"));
            assert!(
                index.contains("edge tags") && index.contains("Item__tags"),
                "{index}"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = results[1].as_ref().unwrap_err().to_string();
    assert!(text.starts_with("Item id = 2: "), "{text}");
    assert!(text.contains("edge tags"), "{text}");
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Item\" WHERE id = 2"), 0);
    // The rows that were there are left as they were; the others' rows are written.
    assert_eq!(
        pg.strings("SELECT id || ':' || value FROM S.\"Item__tags\" ORDER BY id, _kye_position"),
        ["1:1", "1:7", "2:5", "3:3", "3:7"]
    );
}

/// A unique violation in kye's own tables (here a unique index someone put on the rejects'
/// reasons) can never go away by writing the batch again: it fails at once, naming the table
/// and the index. Before, it was tried six times, with pauses, before failing.
#[test]
fn a_clash_in_kyes_own_tables_fails_the_batch_at_once() {
    let Some(mut pg) = Pg::new() else { return };
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    let schema_name = pg.schema.clone();
    pg.exec(&format!(
        "CREATE UNIQUE INDEX one_reason ON S._kye_rejects (reason); \
         CREATE SEQUENCE S.tries; \
         CREATE FUNCTION S.count_try() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN PERFORM nextval('\"{schema_name}\".tries'); RETURN NULL; END$$; \
         CREATE TRIGGER count_try BEFORE INSERT ON S._kye_rejects \
         FOR EACH STATEMENT EXECUTE FUNCTION S.count_try()"
    ));
    let run = s.begin_run(&NewRun::new("Item")).unwrap();
    let reject = || {
        WriteItem::Reject(RejectWrite {
            run,
            model: "Item".into(),
            key: None,
            fetcher: "test::fetch".into(),
            payload: json!({"id": "one"}),
            errors: json!([]),
            reason: "id: expected Number".into(),
            at: Timestamp::now(),
        })
    };
    s.write_batch(&[reject()]).unwrap();
    let err = s.write_batch(&[reject()]).unwrap_err().to_string();
    assert!(
        err.contains("one_reason") && err.contains("_kye_rejects"),
        "{err}"
    );
    // The first batch's statement, then the second's once.
    assert_eq!(pg.count("SELECT last_value FROM S.tries"), 2);
}

/// A record refused in the record-by-record pass (here by rows of an edge kye did not write)
/// holds none of its secondary-index values for the records after it: a later record of the
/// batch with the same `code` is written. Before, it was refused with an `IndexConflict`
/// naming the refused record, which was never stored.
#[test]
fn a_record_refused_record_by_record_leaves_its_index_values_to_the_next() {
    let Some(mut pg) = Pg::new() else { return };
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    pg.exec("INSERT INTO S.\"Item__tags\" (id, _kye_position, value) VALUES (2, 0, 5)");
    let run = s.begin_run(&NewRun::new("Item")).unwrap();
    let item = |id: i64, code: &str| {
        record(
            run,
            "Item",
            json!({"id": id, "code": code, "v": 1, "tags": [id]}),
        )
    };
    let results = s
        .write_batch(&[item(1, "c1"), item(2, "shared"), item(3, "shared")])
        .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(&results[1], Err(StoreError::Refused { key, .. }) if key == "id = 2"),
        "{results:?}"
    );
    assert!(results[2].is_ok(), "{results:?}");
    assert_eq!(
        pg.strings("SELECT id || ':' || code FROM S.\"Item\" ORDER BY id"),
        ["1:c1", "3:shared"]
    );
}
