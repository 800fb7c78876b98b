//! PostgreSQL specifics: long names shortened stably and listed in `_kye_names`, the password
//! never shown, connection errors naming host and database, tables kye did not create left
//! alone, writers in several threads on overlapping keys, and a connection the server ends
//! between batches. Each test in a throwaway schema of `KYE_TEST_POSTGRES` (skipped with one
//! printed reason when nothing answers, outside CI).

use std::sync::atomic::{AtomicU32, Ordering};

use kye_runtime::store::*;
use serde_json::json;

use crate::{record, schema, write_ok};

pub(crate) fn url() -> String {
    std::env::var("KYE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

pub(crate) fn client() -> Result<postgres::Client, String> {
    let spec = PgSpec::parse(&url()).map_err(|e| e.to_string())?;
    let mut c = postgres::Config::new();
    c.host(&spec.host)
        .port(spec.port)
        .user(&spec.user)
        .dbname(&spec.database)
        .connect_timeout(std::time::Duration::from_secs(5));
    if let Ok(pw) = std::env::var("PGPASSWORD") {
        c.password(pw);
    }
    c.connect(postgres::NoTls).map_err(|e| e.to_string())
}

/// A throwaway schema and a client, or `None` when nothing answers (outside CI).
pub(crate) struct Pg {
    pub(crate) schema: String,
    pub(crate) c: postgres::Client,
}

impl Pg {
    pub(crate) fn new() -> Option<Pg> {
        static N: AtomicU32 = AtomicU32::new(0);
        match client() {
            Ok(c) => Some(Pg {
                schema: format!(
                    "kye_s_{}_{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ),
                c,
            }),
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("CI=true: PostgreSQL at {} does not answer: {e}", url())
            }
            Err(e) => {
                eprintln!("skipping: nothing answers at {} ({e})", url());
                None
            }
        }
    }

    pub(crate) fn spec(&self) -> StoreSpec {
        let base = url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}schema={}", self.schema)
            .parse()
            .unwrap()
    }

    pub(crate) fn strings(&mut self, sql: &str) -> Vec<String> {
        let sql = sql.replace("S.", &format!("\"{}\".", self.schema));
        self.c
            .query(&sql, &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    pub(crate) fn count(&mut self, sql: &str) -> i64 {
        let sql = sql.replace("S.", &format!("\"{}\".", self.schema));
        self.c.query_one(&sql, &[]).unwrap().get(0)
    }

    pub(crate) fn exec(&mut self, sql: &str) {
        let sql = sql.replace("S.", &format!("\"{}\".", self.schema));
        self.c
            .batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ));
    }
}

#[test]
fn long_names_are_shortened_stably_and_listed_in_kye_names() {
    let Some(mut pg) = Pg::new() else { return };
    let model = format!("A{}", "VeryLongModelName".repeat(5));
    let edge = format!("e{}", "very_long_edge_name_".repeat(4));
    let text = format!("{model}(id) {{\n id: Number\n {edge}: String?\n tags: String*\n}}\n");
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(&text)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(
        s.as_mut(),
        &[record(
            run,
            &model,
            json!({"id": 1, edge.as_str(): "v", "tags": ["a"]}),
        )],
    );
    let tables = pg.strings(&format!(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = '{}' \
         AND table_name NOT LIKE '\\_kye%' ORDER BY 1",
        pg.schema
    ));
    assert_eq!(tables.len(), 2, "{tables:?}");
    assert!(
        tables.iter().all(|t| t.len() <= 63 && t.contains('~')),
        "{tables:?}"
    );
    let names = pg.strings("SELECT name FROM S._kye_names ORDER BY name");
    assert!(names.contains(&model), "{names:?}");
    assert!(names.contains(&edge), "{names:?}");
    assert!(names.contains(&format!("{model}__tags")), "{names:?}");
    // Opening again maps to the same tables; records read back under kye's names.
    drop(s);
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(&text)).unwrap();
    assert_eq!(
        s.records(&RecordQuery::new(&model)).unwrap(),
        vec![json!({"id": 1, edge.as_str(): "v", "tags": ["a"]})]
    );
}

#[test]
fn the_password_is_never_shown_and_connection_errors_name_host_and_database() {
    let Some(pg) = Pg::new() else { return };
    let spec: StoreSpec = "postgres://kye:Sup3rSecret%21@127.0.0.1:1/warehouse?schema=raw"
        .parse()
        .unwrap();
    assert_eq!(
        spec.to_string(),
        "postgres://kye@127.0.0.1:1/warehouse?schema=raw"
    );
    assert!(!format!("{spec:?}").contains("Sup3r"));
    let err = open_store(&spec).err().expect("nothing listens on port 1");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    assert!(
        text.contains("127.0.0.1:1") && text.contains("warehouse"),
        "{text}"
    );
    assert!(!text.contains("Sup3r"), "{text}");
    // A password written without percent-encoding: the connect error names host and
    // database, never the password or a piece of it.
    for (url, pw) in [
        ("postgres://kye:ab/cd@127.0.0.1:1/warehouse", "ab/cd"),
        ("postgres://kye:12/34@127.0.0.1:1/warehouse", "12/34"),
    ] {
        let err = open_store(&url.parse().unwrap())
            .err()
            .expect("nothing listens");
        let text = format!("{err} {err:?}");
        assert!(
            text.contains("127.0.0.1:1") && text.contains("warehouse"),
            "{text}"
        );
        assert!(!text.contains(pw) && !text.contains("34@"), "{text}");
    }
    // A reader of a schema kye never wrote finds no store.
    assert!(matches!(
        open_store_read_only(&pg.spec()),
        Err(StoreError::NotFound { .. })
    ));
    let shown = open_store(&pg.spec())
        .unwrap()
        .location()
        .display()
        .to_string();
    assert!(
        shown.starts_with("postgres://") && shown.contains(&pg.schema),
        "{shown}"
    );
}

#[test]
fn a_table_kye_did_not_create_is_left_alone() {
    let Some(mut pg) = Pg::new() else { return };
    pg.c.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".\"P\" (mine text); \
             INSERT INTO \"{0}\".\"P\" VALUES ('keep me')",
        pg.schema
    ))
    .unwrap();
    let mut s = open_store(&pg.spec()).unwrap();
    let err = s.prepare(&schema("P(id) {\n id: Number\n}\n")).unwrap_err();
    assert!(err.to_string().contains("kye did not create"), "{err}");
    assert_eq!(
        pg.strings("SELECT mine FROM S.\"P\""),
        vec!["keep me".to_string()]
    );
    // Nothing of kye's was created either.
    let kye_tables = pg.count(&format!(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = '{}' \
         AND table_name LIKE '\\_kye%'",
        pg.schema
    ));
    assert_eq!(kye_tables, 0);
}

pub(crate) const ITEMS: &str =
    "Item(id)(code) {\n id: Number\n code: String\n v: Number\n tags: Number*\n}\n";

#[test]
fn writers_in_several_threads_on_overlapping_keys_lose_nothing() {
    let Some(mut pg) = Pg::new() else { return };
    let spec = pg.spec();
    open_store(&spec).unwrap().prepare(&schema(ITEMS)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                let mut s = open_store(&spec).unwrap();
                s.prepare(&schema(ITEMS)).unwrap();
                let run = s.begin_run(&NewRun::new(format!("writer {t}"))).unwrap();
                for round in 0..20u64 {
                    // Every writer writes ids 0..40, in a different order, tags by round.
                    let batch: Vec<WriteItem> = (0..40u64)
                        .map(|i| (i * (t + 3) + round) % 40)
                        .map(|id| {
                            let v = round * 10 + t;
                            record(
                                run,
                                "Item",
                                json!({"id": id, "code": format!("c{id}"), "v": v,
                                       "tags": vec![v; (v % 4) as usize]}),
                            )
                        })
                        .collect();
                    let res = s.write_batch(&batch).expect("no error reaches the writer");
                    assert!(res.iter().all(Result::is_ok), "{res:?}");
                }
                s.finish_run(
                    run,
                    &RunEnd::new(RunStatus::Completed, RunCounts::default()),
                )
                .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Item\""), 40);
    // Each record whole: its child rows are those of the version its row holds.
    let mismatched = pg.count(
        "SELECT count(*) FROM S.\"Item\" i WHERE (SELECT count(*) FROM S.\"Item__tags\" t \
         WHERE t.id = i.id AND t.value = i.v) <> (i.v % 4) \
         OR EXISTS (SELECT 1 FROM S.\"Item__tags\" t WHERE t.id = i.id AND t.value <> i.v)",
    );
    assert_eq!(mismatched, 0);
    assert_eq!(
        pg.count("SELECT count(*) FROM S._kye_runs WHERE status = 'completed'"),
        4
    );
}

#[test]
fn a_connection_ended_by_the_server_fails_one_batch_at_most_and_the_writer_goes_on() {
    let Some(mut pg) = Pg::new() else { return };
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let item = |id: u64| {
        record(
            run,
            "Item",
            json!({"id": id, "code": format!("c{id}"), "v": 1, "tags": [1]}),
        )
    };
    write_ok(s.as_mut(), &[item(1)]);
    let app = format!("kye {}", pg.schema);
    let ended: i64 =
        pg.c.query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1) x",
            &[&app],
        )
        .unwrap()
        .get(0);
    assert_eq!(ended, 1, "the writer's connection");
    std::thread::sleep(std::time::Duration::from_millis(100));
    // The batch on the ended connection fails whole, or the writer had already reconnected.
    let first = s.write_batch(&[item(2)]);
    if let Err(e) = &first {
        assert!(!e.is_item_error(), "{e}");
    }
    write_ok(s.as_mut(), &[item(3)]);
    let stored = pg.count("SELECT count(*) FROM S.\"Item\"");
    assert_eq!(stored, if first.is_ok() { 3 } else { 2 });
    assert_eq!(
        pg.count("SELECT count(*) FROM S.\"Item__tags\""),
        stored,
        "child rows with their records only"
    );
    // The run is still alive (its lock taken again on the new connection).
    let reader = open_store_read_only(&pg.spec()).unwrap();
    assert_eq!(reader.run(run).unwrap().unwrap().status, RunStatus::Running);
    s.finish_run(
        run,
        &RunEnd::new(RunStatus::Completed, RunCounts::default()),
    )
    .unwrap();
}

#[test]
fn composite_keys_whose_parts_share_a_separator_are_two_records() {
    let Some(mut pg) = Pg::new() else { return };
    let text = "Pair(a, b) {\n a: String\n b: String\n tags: String*\n}\n\
                Code(id)(c, d) {\n id: Number\n c: String\n d: String\n}\n";
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(text)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let pair =
        |a: &str, b: &str, t: &str| record(run, "Pair", json!({"a": a, "b": b, "tags": [t]}));
    let code = |id: u64, c: &str, d: &str| record(run, "Code", json!({"id": id, "c": c, "d": d}));
    // Two keys and two secondary-index values whose parts, joined, would read the same;
    // Code 1 twice in the batch makes the writer look its index values up.
    write_ok(
        s.as_mut(),
        &[
            pair("x\u{1}y", "z", "first"),
            pair("x", "y\u{1}z", "second"),
            code(1, "x\u{1}y", "z"),
            code(2, "x", "y\u{1}z"),
            code(1, "x\u{1}y", "z"),
        ],
    );
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Pair\""), 2);
    assert_eq!(
        pg.strings("SELECT a || '|' || value FROM S.\"Pair__tags\" ORDER BY value"),
        vec!["x\u{1}y|first".to_string(), "x|second".to_string()]
    );
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Code\""), 2);
}

#[test]
fn writers_sharing_nested_records_and_drift_take_locks_in_one_order() {
    let Some(mut pg) = Pg::new() else { return };
    // A database of its own, so its deadlock counter counts this test's writers only.
    let db = format!("kye_dl_{}", pg.schema);
    pg.c.batch_execute(&format!("CREATE DATABASE \"{db}\""))
        .unwrap();
    let base = PgSpec::parse(&url()).unwrap();
    let spec: StoreSpec = format!("postgres://{}@{}:{}/{db}", base.user, base.host, base.port)
        .parse()
        .unwrap();
    let text = "Mon(id) {\n id: Number\n v: Number\n kinds: Kind*\n}\n\
                Kind(name) {\n name: String\n v: Number\n}\n\
                Alt(id) {\n id: Number\n v: Number\n}\n";
    open_store(&spec).unwrap().prepare(&schema(text)).unwrap();
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                let mut s = open_store(&spec).unwrap();
                s.prepare(&schema(text)).unwrap();
                let run = s.begin_run(&NewRun::new(format!("writer {t}"))).unwrap();
                for round in 0..30u64 {
                    // Writer 0 meets records, nested records and drift paths in ascending
                    // order, writer 1 in descending: without one lock order they deadlock.
                    let order = |n: u64| if t == 0 { n } else { 29 - n };
                    let mut batch: Vec<WriteItem> = (0..30u64)
                        .map(|i| {
                            let kinds: Vec<_> = (0..3)
                                .map(|k| json!({"name": format!("k{}", order((i + k) % 30)), "v": t}))
                                .collect();
                            record(run, "Mon", json!({"id": order(i), "v": round, "kinds": kinds}))
                        })
                        .collect();
                    // Models in another order too: writer 1 meets Alt first.
                    let alt = (0..30u64).map(|i| record(run, "Alt", json!({"id": order(i), "v": round})));
                    if t == 0 {
                        batch.extend(alt);
                    } else {
                        batch.splice(0..0, alt);
                    }
                    batch.extend((0..30u64).map(|i| {
                        WriteItem::Drift(DriftWrite {
                            run,
                            model: "Mon".to_string(),
                            path: format!("extra{}", order(i)),
                            example: json!(1),
                            seen_at: Timestamp::now(),
                        })
                    }));
                    let res = s.write_batch(&batch).expect("no error reaches the writer");
                    assert!(res.iter().all(Result::is_ok), "{res:?}");
                }
                s.finish_run(run, &RunEnd::new(RunStatus::Completed, RunCounts::default()))
                    .unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The writers' connections are closed: their statistics reach the counter shortly.
    let mut deadlocks = 0;
    for _ in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        pg.c.batch_execute("SELECT pg_stat_clear_snapshot()")
            .unwrap();
        deadlocks = pg.count(&format!(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = '{db}'"
        ));
        if deadlocks > 0 {
            break;
        }
    }
    let _ =
        pg.c.batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"));
    assert_eq!(deadlocks, 0, "deadlocks among two writers");
}

#[test]
fn a_reconnect_whose_run_lock_is_still_held_fails_at_once() {
    let Some(mut pg) = Pg::new() else { return };
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let item = move |id: u64| {
        record(
            run,
            "Item",
            json!({"id": id, "code": format!("c{id}"), "v": 1, "tags": [1]}),
        )
    };
    write_ok(s.as_mut(), &[item(1)]);
    let app = format!("kye {}", pg.schema);
    // The run's lock, as the writer's backend holds it.
    let lock =
        pg.c.query_one(
            "SELECT l.classid::bigint, l.objid::bigint FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND a.application_name = $1",
            &[&app],
        )
        .unwrap();
    let (class, obj): (i64, i64) = (lock.get(0), lock.get(1));
    pg.c.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Another session holds it now, as a half-open backend would.
    pg.c.execute(
        "SELECT pg_advisory_lock($1::bigint::int, $2::bigint::int)",
        &[&class, &obj],
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let mut results = Vec::new();
        // The first may fail on the ended connection; the second reconnects.
        for id in [2, 3] {
            results.push(s.write_batch(&[item(id)]).map(|_| ()));
        }
        let _ = tx.send(results);
        s
    });
    let results = rx.recv_timeout(std::time::Duration::from_secs(10));
    pg.c.execute(
        "SELECT pg_advisory_unlock($1::bigint::int, $2::bigint::int)",
        &[&class, &obj],
    )
    .unwrap();
    let results = results.expect("the reconnect waited for the run's lock");
    let err = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .find(|e| matches!(e, StoreError::Connect { .. }))
        .unwrap_or_else(|| panic!("a reconnect without the run's lock fails: {results:?}"));
    assert!(err.to_string().contains(&format!("run {}", run.0)), "{err}");
    drop(writer.join().unwrap());
}

#[test]
fn writers_preparing_a_new_schema_at_once_create_each_table_once() {
    // Ten fresh schemas, four writers preparing each at the same moment: each table is
    // created by one of them, the others see it (no "relation already exists").
    for _ in 0..10 {
        let Some(pg) = Pg::new() else { return };
        let spec = pg.spec();
        let start = std::sync::Arc::new(std::sync::Barrier::new(4));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (spec, start) = (spec.clone(), start.clone());
                std::thread::spawn(move || {
                    let mut s = open_store(&spec).unwrap();
                    start.wait();
                    s.prepare(&schema(ITEMS)).map_err(|e| e.to_string())
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().expect("every writer prepares");
        }
    }
}

#[test]
fn a_writer_whose_schema_another_writer_migrated_writes_nothing_of_the_old_shape() {
    let Some(mut pg) = Pg::new() else { return };
    let spec = pg.spec();
    let mut old = open_store(&spec).unwrap();
    old.prepare(&schema(ITEMS)).unwrap();
    let run = old.begin_run(&NewRun::new("old shape")).unwrap();
    write_ok(
        old.as_mut(),
        &[record(run, "Item", json!({"id": 1, "code": "a", "v": 1}))],
    );
    // Another kye, whose `Item` has one more edge, migrates the table while `old` runs.
    let newer = "Item(id)(code) {\n id: Number\n code: String\n v: Number\n tags: Number*\n note?: String\n}\n";
    let mut new = open_store(&spec).unwrap();
    new.prepare(&schema(newer)).unwrap();
    let run2 = new.begin_run(&NewRun::new("new shape")).unwrap();
    write_ok(
        new.as_mut(),
        &[record(
            run2,
            "Item",
            json!({"id": 2, "code": "b", "v": 2, "note": "kept"}),
        )],
    );
    // The old writer's next batch is refused whole, naming the model.
    let err = old
        .write_batch(&[record(run, "Item", json!({"id": 2, "code": "b", "v": 3}))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Item") && err.contains("another kye"), "{err}");
    // Record 2 keeps what the newer writer stored.
    let notes =
        pg.strings("SELECT coalesce(note, '') || '/' || v::text FROM S.\"Item\" WHERE id = 2");
    assert_eq!(notes, ["kept/2"]);
}

#[test]
fn tables_take_no_name_postgresql_derives_and_text_sorts_by_bytes() {
    let Some(mut pg) = Pg::new() else { return };
    let spec = pg.spec();
    // PostgreSQL would name `Foo`'s primary key `Foo_pkey`: a model may be called that.
    let text = "Foo(id)(code) {\n id: Number\n code: String\n}\nFoo_pkey(id) {\n id: Number\n}\nFoo_code_key(id) {\n id: Number\n}\n";
    let mut s = open_store(&spec).unwrap();
    s.prepare(&schema(text))
        .expect("no name clash with derived constraint names");
    let run = s.begin_run(&NewRun::new("names")).unwrap();
    write_ok(
        s.as_mut(),
        &[
            record(run, "Foo", json!({"id": 1, "code": "b"})),
            record(run, "Foo_pkey", json!({"id": 1})),
            record(run, "Foo_code_key", json!({"id": 1})),
        ],
    );
    // Text columns compare by bytes, as SQLite does.
    let sql = format!(
        "SELECT collation_name FROM information_schema.columns \
         WHERE table_schema = '{}' AND table_name = 'Foo' AND column_name = 'code'",
        pg.schema
    );
    let collations = pg.strings(&sql);
    assert_eq!(collations, ["C"]);
}

/// A unique index kye does not know of (a DBA added one on `v`): the batch is written again
/// record by record, the record that violates it is refused alone, naming its model and key
/// and the database's reason, and the rest of its batch is written (before, every attempt
/// failed whole and the run stopped).
/// A batch of new records writes each model's rows and their child rows in one statement,
/// joined to what the upsert inserted; records that were there get theirs replaced by a
/// delete and an insert after it. A batch mixing both (composite keys, two child tables, one
/// record without child rows) leaves exactly the rows of the last write of each key.
#[test]
fn a_batch_of_stored_and_new_records_replaces_only_the_stored_ones_child_rows() {
    let Some(mut pg) = Pg::new() else { return };
    let text = "Pair(a, b) {\n a: String\n b: String\n tags: String*\n ns: Number*\n}\n";
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(text)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let pair = |a: &str, b: &str, tags: &[&str], ns: &[i64]| {
        record(run, "Pair", json!({"a": a, "b": b, "tags": tags, "ns": ns}))
    };
    write_ok(
        s.as_mut(),
        &[
            pair("x", "y", &["t1", "t2", "t3"], &[1, 2]),
            pair("x", "z", &["kept"], &[7]),
        ],
    );
    write_ok(
        s.as_mut(),
        &[
            pair("x", "y", &["t4"], &[]),
            pair("p", "q", &["u1", "u2"], &[5]),
            pair("r", "s", &[], &[]),
            pair("p", "w", &["v"], &[6, 8]),
            // Written in the same statement as the last model's rows.
            WriteItem::KeyOutcome(KeyOutcomeWrite {
                run,
                model: "Pair".into(),
                key: IndexKey::single("a", "p"),
                status: KeyStatus::Stored,
                reason: None,
                at: Timestamp::now(),
            }),
        ],
    );
    let rows = |pg: &mut Pg, table: &str, value: &str| {
        pg.strings(&format!(
            "SELECT a || b || ':' || _kye_position || ':' || {value} FROM S.\"{table}\" \
             ORDER BY a, b, _kye_position"
        ))
    };
    assert_eq!(
        rows(&mut pg, "Pair__tags", "value"),
        ["pq:0:u1", "pq:1:u2", "pw:0:v", "xy:0:t4", "xz:0:kept"]
    );
    assert_eq!(
        rows(&mut pg, "Pair__ns", "value::text"),
        ["pq:0:5", "pw:0:6", "pw:1:8", "xz:0:7"]
    );
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Pair\""), 5);
    assert_eq!(
        pg.strings("SELECT model || ' ' || key || ' ' || status FROM S._kye_keys"),
        [r#"Pair {"a":"p"} stored"#]
    );
}

#[test]
fn a_constraint_kye_did_not_foresee_refuses_one_record_not_its_batch() {
    let Some(mut pg) = Pg::new() else { return };
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    let run = s.begin_run(&NewRun::new("Item")).unwrap();
    pg.c.batch_execute(&format!(
        "CREATE UNIQUE INDEX dba_unique_v ON \"{}\".\"Item\" (v)",
        pg.schema
    ))
    .unwrap();
    let item = |id: i64, code: &str, v: i64| {
        record(
            run,
            "Item",
            json!({"id": id, "code": code, "v": v, "tags": [id]}),
        )
    };
    let results = s
        .write_batch(&[item(1, "a", 10), item(2, "b", 10), item(3, "c", 30)])
        .expect("the batch is written");
    assert!(results[0].is_ok(), "{results:?}");
    assert!(results[2].is_ok(), "{results:?}");
    let err = results[1].as_ref().unwrap_err();
    assert!(err.is_item_error(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("Item id = 2: the database refused the record"),
        "{text}"
    );
    assert!(text.contains("dba_unique_v"), "{text}");
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Item\""), 2);
    // Nothing of the refused record is left: neither its row nor its child rows.
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Item\" WHERE id = 2"), 0);
    assert_eq!(
        pg.count("SELECT count(*) FROM S.\"Item__tags\" WHERE id = 2"),
        0
    );
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Item__tags\""), 2);
}

/// `password_secret=NAME` is looked up in the runtime's own secrets: the secrets file kye.toml
/// names (`secrets.file`), not only the process environment and `KYE_SECRETS_FILE` (before,
/// a runtime built with this file failed: "no secret ... in the environment"). The server
/// here trusts loopback, so the test shows that the secret was found, not that it was checked.
#[test]
fn a_password_secret_comes_from_the_secrets_file_kye_toml_names() {
    let Some(pg) = Pg::new() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("secrets.env"),
        "KYE_TEST_PG_PW=only-in-the-file\n",
    )
    .unwrap();
    let sep = if url().contains('?') { '&' } else { '?' };
    let store = format!(
        "{}{sep}schema={}&password_secret=KYE_TEST_PG_PW",
        url(),
        pg.schema
    );
    let toml = format!("store = \"{store}\"\n[secrets]\nfile = \"secrets.env\"\n");
    std::fs::write(dir.path().join("kye.toml"), &toml).unwrap();
    let config = kye_runtime::Config::from_file(&dir.path().join("kye.toml")).unwrap();
    let rt = kye_runtime::Runtime::builder()
        .config(config)
        .env(Vec::new())
        .handle_ctrl_c(false)
        .build();
    let rt = rt.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(rt.with_store(|s| s.kind()), "postgres");
    // Where the store is shown, the password is not.
    let shown = rt.with_store(|s| s.location().display().to_string());
    assert!(shown.contains("password_secret=KYE_TEST_PG_PW"), "{shown}");
    assert!(!shown.contains("only-in-the-file"), "{shown}");
    // Without the file the secret is found nowhere, and the error names it (not its value).
    let config =
        kye_runtime::Config::from_toml_str(&format!("store = \"{store}\"\n"), None).unwrap();
    let err = kye_runtime::Runtime::builder()
        .config(config)
        .env(Vec::new())
        .handle_ctrl_c(false)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("password_secret=KYE_TEST_PG_PW"), "{err}");
    assert!(!err.contains("only-in-the-file"), "{err}");
}

/// `sslrootcert=FILE` with `verify-full` and `verify-ca`, against the server's own certificate
/// (Debian's self-signed `localhost` certificate, which the file trusts): by name `localhost`
/// the connection is verified; by address, `verify-full` refuses the name and `verify-ca`
/// accepts the chain; a file that did not sign it is refused; a missing file is named.
#[test]
fn sslrootcert_verifies_the_server_by_chain_and_by_name() {
    let Some(mut pg) = Pg::new() else { return };
    let ssl: String = pg.c.query_one("SHOW ssl", &[]).unwrap().get(0);
    let cert: String = pg.c.query_one("SHOW ssl_cert_file", &[]).unwrap().get(0);
    if ssl != "on" || !std::path::Path::new(&cert).is_file() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI=true: the server at {} has no TLS (ssl = {ssl}, {cert})",
            url()
        );
        eprintln!(
            "skipping: the server at {} has no TLS certificate to verify",
            url()
        );
        return;
    }
    let base = PgSpec::parse(&url()).unwrap();
    let spec = |host: &str, mode: &str, root: &str| -> StoreSpec {
        format!(
            "postgres://{}@{host}:{}/{}?schema={}&sslmode={mode}&sslrootcert={root}",
            base.user, base.port, base.database, pg.schema
        )
        .parse()
        .unwrap()
    };
    // By name: chain and name verified, and the session is encrypted.
    let mut s = open_store(&spec("localhost", "verify-full", &cert)).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    let encrypted: bool =
        pg.c.query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1",
            &[&format!("kye {}", pg.schema)],
        )
        .unwrap()
        .get::<_, Option<bool>>(0)
        .expect("kye's sessions are listed");
    assert!(encrypted);
    drop(s);
    // By address: the certificate names `localhost` only.
    let err = open_store(&spec("127.0.0.1", "verify-full", &cert))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    assert!(err.contains("127.0.0.1:"), "{err}");
    open_store(&spec("127.0.0.1", "verify-ca", &cert)).expect("the chain is trusted");
    // Roots that did not sign it.
    let other = "/etc/ssl/certs/ca-certificates.crt";
    if std::path::Path::new(other).is_file() {
        let err = open_store(&spec("localhost", "verify-ca", other))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
    }
    let err = open_store(&spec("localhost", "verify-full", "/nonexistent/root.pem"))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("/nonexistent/root.pem"), "{err}");
}

/// Several writers share a PostgreSQL store: a writer sees another writer's run as running
/// only while that writer holds its lock. Before, a writer took every running run for alive,
/// so a run whose process died after this writer started stayed `running` to it (and a
/// request it should have resumed started afresh).
#[test]
fn a_writer_sees_another_writers_dead_run_as_interrupted() {
    let Some(pg) = Pg::new() else { return };
    let mut a = open_store(&pg.spec()).unwrap();
    a.prepare(&schema(ITEMS)).unwrap();
    let mut b = open_store(&pg.spec()).unwrap();
    b.prepare(&schema(ITEMS)).unwrap();
    let dead = a.begin_run(&NewRun::new("Item.id in 1..=9")).unwrap();
    let mine = b.begin_run(&NewRun::new("Item.id = 1")).unwrap();
    let status = |s: &dyn StoreWrite, run: RunId| s.run(run).unwrap().map(|r| r.status);
    assert_eq!(status(b.as_ref(), dead), Some(RunStatus::Running));
    drop(a);
    assert_eq!(status(b.as_ref(), dead), Some(RunStatus::Interrupted));
    assert_eq!(status(b.as_ref(), mine), Some(RunStatus::Running));
    assert_eq!(
        b.latest_run_of("Item.id in 1..=9")
            .unwrap()
            .map(|r| r.status),
        Some(RunStatus::Interrupted)
    );
}

#[test]
fn the_servers_tables_are_shared_by_every_server_of_the_warehouse() {
    let Some(mut pg) = Pg::new() else { return };
    let token = crate::server::exercise(&pg.spec());
    assert_eq!(pg.count("SELECT count(*) FROM S._kye_tokens"), 2);
    assert_eq!(pg.count("SELECT count(*) FROM S._kye_audit"), 3);
    // Neither the token nor a secret's value is in any row of the server's tables.
    for table in ["_kye_tokens", "_kye_secrets", "_kye_audit"] {
        let rows = pg.strings(&format!("SELECT t::text FROM S.{table} t"));
        for row in rows {
            assert!(
                !row.contains(&token) && !row.contains(crate::server::VALUE),
                "{table}: {row}"
            );
            assert!(!row.contains(&hex(crate::server::VALUE)), "{table}: {row}");
        }
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// A store made before sources were recorded (no `_kye_source`, no runs' `source`) is read
/// as it is, and the first writer to prepare it adds both, also to unchanged tables.
#[test]
fn a_store_from_before_sources_is_read_and_then_upgraded() {
    let Some(mut pg) = Pg::new() else { return };
    let text = "Cat(id) {\n id: Number\n name: String\n}\n";
    {
        let mut s = open_store(&pg.spec()).unwrap();
        s.prepare(&schema(text)).unwrap();
        let run = s.begin_run(&NewRun::new("Cat.id = 1")).unwrap();
        write_ok(
            s.as_mut(),
            &[record(run, "Cat", json!({"id": 1, "name": "tom"}))],
        );
    }
    pg.exec("ALTER TABLE S.\"Cat\" DROP COLUMN _kye_source");
    pg.exec("ALTER TABLE S._kye_runs DROP COLUMN source");

    let r = open_store_read_only(&pg.spec()).unwrap();
    let found = r.record("Cat", &IndexKey::single("id", 1)).unwrap();
    assert_eq!(found, Some(json!({"id": 1, "name": "tom"})));
    let runs = r.runs(None).unwrap();
    assert_eq!((runs.len(), runs[0].source.clone()), (1, None));
    drop(r);

    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(text)).unwrap();
    let mut new = NewRun::new("Cat.id = 2");
    new.source = Some("cats@0.1.0".into());
    let run = s.begin_run(&new).unwrap();
    let mut item = RecordWrite::new(
        "Cat",
        json!({"id": 2, "name": "felix"}),
        Provenance::new(run, "test::fetch"),
    );
    item.provenance.source = Some("cats@0.1.0".into());
    write_ok(s.as_mut(), &[WriteItem::Record(item)]);
    assert_eq!(
        pg.strings("SELECT coalesce(_kye_source, '-') FROM S.\"Cat\" ORDER BY id"),
        vec!["-".to_string(), "cats@0.1.0".to_string()]
    );
    let runs = s.reader().unwrap().runs(None).unwrap();
    assert_eq!(runs[0].source.as_deref(), Some("cats@0.1.0"));
}

/// Freshness asks the model's table alone: with its child table gone (so that reading a
/// record fails), the fetch-time counts and the stale keys still come from its own columns.
#[test]
fn fetched_ages_and_stale_keys_read_only_the_model_table() {
    let Some(mut pg) = Pg::new() else { return };
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(ITEMS)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(
        s.as_mut(),
        &[record(
            run,
            "Item",
            json!({"id": 1, "code": "a", "v": 1, "tags": [1, 2]}),
        )],
    );
    pg.exec("DROP TABLE S.\"Item__tags\"");
    assert!(s.records(&RecordQuery::new("Item")).is_err());
    let later = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 60_000);
    let ages = s.fetched_ages("Item", later).unwrap();
    assert_eq!((ages.since, ages.before), (0, 1));
    assert!(ages.oldest.is_some());
    let stale = s.fetched_before("Item", &["code"], later, 10).unwrap();
    assert_eq!(
        stale,
        [(ages.oldest.unwrap(), IndexKey::single("code", "a"))]
    );
}

/// A writer inserts the keys of a model whose last batch found none stored (no upsert), and a
/// batch that meets a stored key after all is written again as upserts, whole: the same rows
/// as an upsert would leave. Whether an upsert ran is seen by a statement-level `UPDATE`
/// trigger, which PostgreSQL fires for `INSERT ... ON CONFLICT DO UPDATE` and not for a plain
/// `INSERT`.
#[test]
fn new_keys_are_inserted_and_a_stored_key_makes_the_batch_an_upsert() {
    let Some(mut pg) = Pg::new() else { return };
    let text = "Pair(a, b) {\n a: String\n b: String\n tags: String*\n}\n";
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(text)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    pg.exec(
        "CREATE TABLE S.upserts (tab text NOT NULL); \
         CREATE FUNCTION S.note_upsert() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN EXECUTE format('INSERT INTO %I.upserts VALUES (%L)', TG_TABLE_SCHEMA, TG_TABLE_NAME); \
         RETURN NULL; END $$; \
         CREATE TRIGGER note BEFORE UPDATE ON S.\"Pair\" FOR EACH STATEMENT EXECUTE FUNCTION S.note_upsert(); \
         CREATE TRIGGER note BEFORE UPDATE ON S._kye_keys FOR EACH STATEMENT EXECUTE FUNCTION S.note_upsert();",
    );
    let pair = |a: &str, b: &str, tags: &[&str]| {
        record(run, "Pair", json!({"a": a, "b": b, "tags": tags}))
    };
    let outcome = |a: &str, status: KeyStatus| {
        WriteItem::KeyOutcome(KeyOutcomeWrite {
            run,
            model: "Pair".into(),
            key: IndexKey::single("a", a),
            status,
            reason: None,
            at: Timestamp::now(),
        })
    };
    let upserts = |pg: &mut Pg| pg.strings("SELECT tab FROM S.upserts ORDER BY tab");
    // New keys: inserted.
    write_ok(
        s.as_mut(),
        &[
            pair("x", "y", &["t1", "t2"]),
            pair("x", "z", &["kept"]),
            outcome("x", KeyStatus::Failed),
        ],
    );
    assert_eq!(upserts(&mut pg), Vec::<String>::new());
    // A stored key: the insert fails, and the whole batch is written as upserts.
    write_ok(
        s.as_mut(),
        &[pair("p", "q", &["u1"]), pair("x", "y", &["t3"])],
    );
    assert_eq!(upserts(&mut pg), ["Pair"]);
    // The model's last batch found a stored key: upserts, finding none stored this time...
    write_ok(s.as_mut(), &[pair("r", "s", &["v1", "v2"])]);
    assert_eq!(upserts(&mut pg), ["Pair", "Pair"]);
    // ...so inserts again.
    write_ok(s.as_mut(), &[pair("m", "n", &[])]);
    assert_eq!(upserts(&mut pg), ["Pair", "Pair"]);
    // The run's second outcome of a key replaces its first (after a failed plain insert).
    write_ok(s.as_mut(), &[outcome("x", KeyStatus::Stored)]);
    assert_eq!(upserts(&mut pg), ["Pair", "Pair", "_kye_keys"]);
    assert_eq!(
        pg.strings("SELECT key || ' ' || status FROM S._kye_keys ORDER BY key"),
        [r#"{"a":"x"} stored"#]
    );
    assert_eq!(
        pg.strings(
            "SELECT a || b || ':' || string_agg(value, ',' ORDER BY _kye_position) \
             FROM S.\"Pair__tags\" GROUP BY a, b ORDER BY a, b"
        ),
        ["pq:u1", "rs:v1,v2", "xy:t3", "xz:kept"]
    );
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Pair\""), 5);
    // A second writer knows nothing of the first's batches: its insert of a stored key (and
    // of a key whose other writer's row is there) goes the same way.
    let mut other = open_store(&pg.spec()).unwrap();
    other.prepare(&schema(text)).unwrap();
    let run2 = other.begin_run(&NewRun::new("y")).unwrap();
    write_ok(
        other.as_mut(),
        &[record(
            run2,
            "Pair",
            json!({"a": "m", "b": "n", "tags": ["w"]}),
        )],
    );
    assert_eq!(upserts(&mut pg), ["Pair", "Pair", "Pair", "_kye_keys"]);
    assert_eq!(
        pg.strings("SELECT string_agg(value, ',') FROM S.\"Pair__tags\" WHERE a = 'm'"),
        ["w"]
    );
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Pair\""), 5);
}

/// Nested records are shared (a kind nested in many records): their stored holders are read
/// before writing, so a batch whose nested kind is stored upserts that model at once instead
/// of trying a plain insert bound to fail. Attempts on `Kind` are counted by a statement
/// trigger calling a sequence (a sequence is not rolled back with a failed attempt; `Kind`'s
/// rows are a statement of their own).
#[test]
fn a_nested_record_known_stored_is_upserted_without_a_failed_insert() {
    let Some(mut pg) = Pg::new() else { return };
    let text =
        "Mon(id) {\n id: Number\n kinds: Kind*\n}\nKind(name) {\n name: String\n v: Number\n}\n";
    let mut s = open_store(&pg.spec()).unwrap();
    s.prepare(&schema(text)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let schema_name = pg.schema.clone();
    pg.exec(&format!(
        "CREATE SEQUENCE S.tries; \
         CREATE FUNCTION S.count_try() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN PERFORM nextval('\"{schema_name}\".tries'); RETURN NULL; END$$; \
         CREATE TRIGGER count_try BEFORE INSERT ON S.\"Kind\" \
         FOR EACH STATEMENT EXECUTE FUNCTION S.count_try()"
    ));
    let mon = |id: i64, kinds: &[(&str, i64)]| {
        let kinds: Vec<_> = kinds
            .iter()
            .map(|(name, v)| json!({"name": name, "v": v}))
            .collect();
        record(run, "Mon", json!({"id": id, "kinds": kinds}))
    };
    let tries = |pg: &mut Pg| pg.count("SELECT last_value FROM S.tries");
    write_ok(
        s.as_mut(),
        &[mon(1, &[("fire", 1)]), mon(2, &[("water", 2)])],
    );
    assert_eq!(tries(&mut pg), 1);
    // Mon 3 is new, its kind `fire` is stored: `Kind` is written once, by an upsert.
    write_ok(s.as_mut(), &[mon(3, &[("fire", 1), ("grass", 3)])]);
    assert_eq!(tries(&mut pg), 2);
    // A stored Mon nothing tells about: its plain insert fails and the batch is written again
    // as upserts, whole.
    write_ok(s.as_mut(), &[mon(2, &[("water", 2), ("ice", 4)])]);
    write_ok(s.as_mut(), &[mon(4, &[("water", 2)])]);
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Kind\""), 4);
    assert_eq!(pg.count("SELECT count(*) FROM S.\"Mon\""), 4);
    assert_eq!(
        pg.strings(
            "SELECT id || ':' || string_agg(value, ',' ORDER BY _kye_position) \
             FROM S.\"Mon__kinds\" GROUP BY id ORDER BY id"
        ),
        ["1:fire", "2:water,ice", "3:fire,grass", "4:water"]
    );
}

/// Store format 3: key outcomes (and a queued run's seen keys) are indexed by the key's own
/// text up to 512 bytes and by its MD5 beyond. A format 2 store (indexed by a generated
/// `key_md5`) is read as it is, and the first writer to open it reindexes it, keeping every
/// row; keys longer than 512 bytes that share their first 600 stay apart; a store of a newer
/// format is refused.
#[test]
fn key_outcomes_of_a_format_2_store_are_read_then_reindexed_by_the_first_writer() {
    let Some(mut pg) = Pg::new() else { return };
    let text = "Page(url) {\n url: String\n}\n";
    let head = "h".repeat(600);
    let (long_a, long_b) = (format!("{head}/a"), format!("{head}/b"));
    let outcome = |run: RunId, url: &str, status: KeyStatus, reason: Option<&str>| {
        WriteItem::KeyOutcome(KeyOutcomeWrite {
            run,
            model: "Page".into(),
            key: IndexKey::single("url", url),
            status,
            reason: reason.map(str::to_string),
            at: Timestamp::now(),
        })
    };
    let run1 = {
        let mut s = open_store(&pg.spec()).unwrap();
        s.prepare(&schema(text)).unwrap();
        let run = s.begin_run(&NewRun::new("Page")).unwrap();
        write_ok(
            s.as_mut(),
            &[
                record(run, "Page", json!({"url": "short"})),
                outcome(run, "short", KeyStatus::Stored, None),
                outcome(run, &long_a, KeyStatus::Missing, None),
                outcome(run, &long_b, KeyStatus::Failed, Some("b failed")),
            ],
        );
        run
    };
    assert_eq!(
        pg.strings("SELECT value FROM S._kye_meta WHERE key = 'format_version'"),
        ["3"]
    );
    // The store as kye wrote it before format 3.
    pg.exec(
        "DROP INDEX S._kye_keys_key; \
         ALTER TABLE S._kye_keys ALTER COLUMN model TYPE text COLLATE \"default\", \
             ALTER COLUMN key TYPE text COLLATE \"default\"; \
         ALTER TABLE S._kye_keys ADD COLUMN key_md5 uuid GENERATED ALWAYS AS (md5(key)::uuid) STORED; \
         ALTER TABLE S._kye_keys ADD UNIQUE (model, key_md5, run_id); \
         DROP INDEX S._kye_queue_seen_key; \
         ALTER TABLE S._kye_queue_seen ALTER COLUMN key TYPE text COLLATE \"default\"; \
         ALTER TABLE S._kye_queue_seen ADD COLUMN key_md5 uuid GENERATED ALWAYS AS (md5(key)::uuid) STORED; \
         ALTER TABLE S._kye_queue_seen ADD PRIMARY KEY (run_id, key_md5); \
         INSERT INTO S._kye_queue_seen (run_id, key) VALUES (1, 'seen'); \
         UPDATE S._kye_meta SET value = '2' WHERE key = 'format_version';",
    );
    let status = |r: &dyn StoreRead, url: &str| {
        r.latest_outcome("Page", &IndexKey::single("url", url))
            .unwrap()
            .map(|o| (o.run, o.status, o.reason))
    };
    {
        let r = open_store_read_only(&pg.spec()).unwrap();
        assert_eq!(
            status(r.as_ref(), &long_b),
            Some((run1, KeyStatus::Failed, Some("b failed".into())))
        );
        assert_eq!(
            status(r.as_ref(), &long_a),
            Some((run1, KeyStatus::Missing, None))
        );
    }
    assert_eq!(
        pg.strings("SELECT value FROM S._kye_meta WHERE key = 'format_version'"),
        ["2"]
    );
    // A view on the old column (what the docs used to show) keeps the writer from changing the
    // table: the open fails naming the view and what to do, and changes nothing.
    pg.exec("CREATE VIEW S.md5s AS SELECT model, key_md5 FROM S._kye_keys");
    let err = open_store(&pg.spec())
        .err()
        .expect("a view blocks format 3");
    let shown = err.to_string();
    assert!(
        shown.contains("cannot make the store format 3") && shown.contains("md5s"),
        "{shown}"
    );
    assert_eq!(
        pg.strings("SELECT value FROM S._kye_meta WHERE key = 'format_version'"),
        ["2"]
    );
    assert_eq!(pg.count("SELECT count(*) FROM S.md5s"), 3);
    pg.exec("DROP VIEW S.md5s");

    let mut s = open_store(&pg.spec()).unwrap();
    assert_eq!(
        pg.strings("SELECT value FROM S._kye_meta WHERE key = 'format_version'"),
        ["3"]
    );
    assert_eq!(
        pg.count(&format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{}' \
             AND column_name = 'key_md5' AND table_name IN ('_kye_keys', '_kye_queue_seen')",
            pg.schema
        )),
        0
    );
    assert_eq!(
        pg.strings(&format!(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = '{}' \
             AND indexname IN ('_kye_keys_key', '_kye_queue_seen_key') ORDER BY 1",
            pg.schema
        )),
        ["_kye_keys_key", "_kye_queue_seen_key"]
    );
    // A queued run's seen keys: kept, and still one row per key.
    pg.exec(
        "INSERT INTO S._kye_queue_seen (run_id, key) VALUES (1, 'seen'), (1, 'new') \
         ON CONFLICT DO NOTHING",
    );
    assert_eq!(
        pg.strings("SELECT key FROM S._kye_queue_seen ORDER BY key"),
        ["new", "seen"]
    );
    assert_eq!(pg.count("SELECT count(*) FROM S._kye_keys"), 3);
    s.prepare(&schema(text)).unwrap();
    // The same run's outcome again replaces the first (the upsert finds it by the new
    // index), for a long key as for a short one; a later run adds its own.
    write_ok(
        s.as_mut(),
        &[outcome(run1, &long_b, KeyStatus::Stored, None)],
    );
    write_ok(
        s.as_mut(),
        &[outcome(run1, "short", KeyStatus::Missing, None)],
    );
    let run2 = s.begin_run(&NewRun::new("Page again")).unwrap();
    write_ok(
        s.as_mut(),
        &[outcome(run2, &long_a, KeyStatus::Stored, None)],
    );
    assert_eq!(pg.count("SELECT count(*) FROM S._kye_keys"), 4);
    let r = s.reader().unwrap();
    assert_eq!(
        status(r.as_ref(), &long_b),
        Some((run1, KeyStatus::Stored, None))
    );
    assert_eq!(
        status(r.as_ref(), "short"),
        Some((run1, KeyStatus::Missing, None))
    );
    assert_eq!(
        status(r.as_ref(), &long_a),
        Some((run2, KeyStatus::Stored, None))
    );
    assert_eq!(status(r.as_ref(), &format!("{head}/c")), None);
    drop((r, s));

    // A kye that reads up to format 3 refuses a newer store, naming both formats.
    pg.exec("UPDATE S._kye_meta SET value = '4' WHERE key = 'format_version'");
    let err = open_store(&pg.spec())
        .err()
        .expect("a newer format is refused");
    assert!(
        err.to_string()
            .contains("store format 4, this kye reads up to 3"),
        "{err}"
    );
}
