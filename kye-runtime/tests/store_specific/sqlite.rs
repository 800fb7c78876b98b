//! The SQLite store beyond the contract: what plain SQL sees (typed columns, child row
//! positions, composite reference columns, value-object child rows, the format version),
//! foreign tables and files left untouched, one lock per database file whatever path or link
//! leads to it, and readers without write access to the directory.

use std::path::{Path, PathBuf};

use kye_runtime::store::*;
use serde_json::json;

use crate::{record, schema, write_ok};

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

fn pikachu() -> serde_json::Value {
    json!({"id": 25, "name": "pikachu", "weight": 60, "base_experience": 112, "legendary": false,
           "types": [{"name": "electric", "generation": "generation-i"}], "tags": ["mouse", "yellow"]})
}

const V1: &str = "User(id)(email) {\n id: Number\n email: String\n age: Number?\n}\n";

fn cat_schema() -> kye_lang::Schema {
    schema("Cat(id) {\n  id: Number\n  name: String\n}\n")
}

fn count(s: &SqliteStore, sql: &str) -> i64 {
    s.connection().query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// Plain SQL sees typed columns: integral numbers are INTEGER, others REAL, booleans 0/1;
/// child rows join on the parent's key; nested records carry provenance.
#[test]
fn plain_sql_sees_typed_columns_and_child_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(POKEMON)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(&mut s, &[record(run, "Pokemon", pikachu())]);
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
    let mut v = pikachu();
    v["weight"] = json!(61.5);
    write_ok(&mut s, &[record(run, "Pokemon", v)]);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Pokemon WHERE typeof(weight) = 'real'"
        ),
        1
    );
}

/// Child rows are numbered 0, 1, 2, … in the source's order, also after the record is
/// stored again.
#[test]
fn child_rows_are_numbered_in_source_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(POKEMON)).unwrap();
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
    write_ok(&mut s, &batch);
    write_ok(&mut s, &batch);
    for &n in &counts {
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

/// References to a composite key hold one column per key part.
#[test]
fn composite_references_are_columns_per_key_part() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(
        "Day(year, month) {\n year: Number\n month: Number\n label: String?\n}\n\
         Event(id) {\n id: Number\n day: Day?\n days: Day*\n}\n",
    ))
    .unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(
        &mut s,
        &[record(
            run,
            "Event",
            json!({"id": 1, "day": {"year": 2024, "month": 1, "label": "Jan"},
                   "days": [{"year": 2024, "month": 2}, {"year": 2024, "month": 1}]}),
        )],
    );
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
}

const CATS: &str = "Cat(id: Number) {\n name: String\n vitals: Vitals\n}\n\
                    Vitals {\n heart_rate_bpm: Number\n temperature_c: Number\n}\n";
const KEYED_CATS: &str = "Cat(id: Number) {\n name: String\n vitals: Vitals\n}\n\
                          Vitals(heart_rate_bpm) {\n heart_rate_bpm: Number\n temperature_c: Number\n}\n";

/// A stored record written again is updated where it is: its row keeps its rowid (so the
/// primary key's index is not rewritten), its child rows stay untouched when the list is the
/// same (a refresh, or a changed scalar), and are replaced when the list changed; what is
/// read back is the new record each time.
#[test]
fn a_record_written_again_is_updated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(POKEMON)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(&mut s, &[record(run, "Pokemon", pikachu())]);
    let rowid = |s: &SqliteStore| count(s, "SELECT rowid FROM Pokemon WHERE id = 25");
    let first = rowid(&s);
    // Rows changed by writing `v` (SQLite's count: inserted, updated and deleted rows).
    let changes = |s: &mut SqliteStore, v: serde_json::Value| {
        let before = s.connection().total_changes();
        write_ok(s, &[record(run, "Pokemon", v)]);
        s.connection().total_changes() - before
    };
    // A changed scalar: the Pokémon's row and its nested type's row are updated, nothing
    // else (deleting and inserting its two tags and one type reference again would be six).
    let mut heavier = pikachu();
    heavier["weight"] = json!(61);
    assert_eq!(changes(&mut s, heavier.clone()), 2);
    assert_eq!(rowid(&s), first);
    let got = s
        .record("Pokemon", &IndexKey::single("id", 25))
        .unwrap()
        .unwrap();
    assert_eq!(got["weight"], json!(61));
    assert_eq!(got["tags"], json!(["mouse", "yellow"]));
    // A changed list (reordered): its child rows are replaced, the others stay.
    heavier["tags"] = json!(["yellow", "mouse"]);
    assert_eq!(changes(&mut s, heavier.clone()), 2 + 4);
    assert_eq!(rowid(&s), first);
    let got = s
        .record("Pokemon", &IndexKey::single("id", 25))
        .unwrap()
        .unwrap();
    assert_eq!(got["tags"], json!(["yellow", "mouse"]));
    // Shorter, then longer from the same start: replaced, read back as written.
    heavier["tags"] = json!(["yellow"]);
    write_ok(&mut s, &[record(run, "Pokemon", heavier)]);
    let got = s
        .record("Pokemon", &IndexKey::single("id", 25))
        .unwrap()
        .unwrap();
    assert_eq!(got["tags"], json!(["yellow"]));
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon__tags"), 1);
    let mut more = pikachu();
    more["tags"] = json!(["yellow", "mouse", "electric"]);
    write_ok(&mut s, &[record(run, "Pokemon", more)]);
    let got = s
        .record("Pokemon", &IndexKey::single("id", 25))
        .unwrap()
        .unwrap();
    assert_eq!(got["tags"], json!(["yellow", "mouse", "electric"]));
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon__tags"), 3);
    assert_eq!(count(&s, "SELECT count(*) FROM Pokemon WHERE id = 25"), 1);
}

fn format_version(path: &Path) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT value FROM _kye_meta WHERE key = 'format_version'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

/// Value objects: one child row per parent, keyed by the parent's id and position, no table
/// of their own; a store holding one is format 2 (older kye versions refuse to write it),
/// a store without stays format 1.
#[test]
fn value_objects_are_child_rows_and_raise_the_format() {
    let dir = tempfile::tempdir().unwrap();
    let keyed = dir.path().join("keyed.db");
    let mut s = SqliteStore::open(&keyed).unwrap();
    s.prepare(&schema(KEYED_CATS)).unwrap();
    drop(s);
    assert_eq!(format_version(&keyed), "1");

    let path = dir.path().join("cats.db");
    let mut s = SqliteStore::open(&path).unwrap();
    s.prepare(&schema(CATS)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    let cats: Vec<WriteItem> = (1..=61)
        .map(|id| {
            record(
                run,
                "Cat",
                json!({"id": id, "name": format!("cat-{id}"),
                       "vitals": {"heart_rate_bpm": 100 + id % 60, "temperature_c": 37.0 + (id as f64) / 1000.0}}),
            )
        })
        .collect();
    write_ok(&mut s, &cats);
    let (rows, distinct): (i64, i64) = s
        .connection()
        .query_row(
            "SELECT count(*), count(DISTINCT id) FROM Cat__vitals WHERE _kye_position = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, distinct), (61, 61));
    let t: f64 = s
        .connection()
        .query_row(
            "SELECT temperature_c FROM Cat__vitals WHERE id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(t, 37.001);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM sqlite_master WHERE name = 'Vitals'"
        ),
        0,
        "a value object has no table of its own"
    );
    drop(s);
    assert_eq!(format_version(&path), "2");
}

fn refused(s: &mut SqliteStore, text: &str) -> (String, Option<String>, String) {
    match s.prepare(&schema(text)) {
        Err(e @ StoreError::SchemaChange { .. }) => {
            let msg = e.to_string();
            match e {
                StoreError::SchemaChange { model, edge, .. } => (model, edge, msg),
                _ => unreachable!(),
            }
        }
        other => panic!("expected a refusal for\n{text}\ngot {other:?}"),
    }
}

#[test]
fn a_table_kye_did_not_create_is_not_touched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kye.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.connection()
            .execute_batch(
                "CREATE TABLE \"User\" (mine TEXT); INSERT INTO \"User\" VALUES ('keep me');",
            )
            .unwrap();
    }
    let mut s = SqliteStore::open(&path).unwrap();
    let (model, _, msg) = refused(&mut s, V1);
    assert_eq!(model, "User");
    assert!(msg.contains("kye did not create"), "{msg}");
    let kept: String = s
        .connection()
        .query_row("SELECT mine FROM \"User\"", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kept, "keep me");
}

/// Tables and journal mode of a database file, read without kye.
fn tables_and_mode(path: &std::path::Path) -> (Vec<String>, String) {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let tables = st
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    (tables, mode)
}

#[test]
fn a_refused_foreign_database_is_left_exactly_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    for (foreign, schema_text, table) in [
        ("CREATE TABLE \"User\" (mine TEXT)", V1, "User"),
        // SQLite ignores case in names: `user__ROLES` is the table kye wants for `roles`.
        (
            "CREATE TABLE \"user__ROLES\" (mine TEXT)",
            "User(id) {\n id: Number\n roles: String*\n}\n",
            "user__ROLES",
        ),
    ] {
        let path = dir.path().join(format!("{table}.db"));
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(foreign).unwrap();
        }
        let before = tables_and_mode(&path);
        assert_eq!(before.1, "delete");
        let mut s = SqliteStore::open(&path).unwrap();
        let (model, edge, msg) = refused(&mut s, schema_text);
        assert_eq!((model.as_str(), edge), ("User", None));
        assert!(
            msg.contains(&format!(
                "already has a table named {table:?} that kye did not create"
            )),
            "{msg}"
        );
        drop(s);
        assert_eq!(
            tables_and_mode(&path),
            before,
            "{table}: the file was changed"
        );
    }
    // A foreign database whose tables do not clash is used as it is.
    let path = dir.path().join("other.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (t TEXT)")
        .unwrap();
    let mut s = SqliteStore::open(&path).unwrap();
    s.prepare(&schema(V1)).unwrap();
    drop(s);
    let (tables, mode) = tables_and_mode(&path);
    assert!(tables.contains(&"_kye_meta".to_string()) && tables.contains(&"notes".to_string()));
    assert_eq!(mode, "wal");
}

fn write_cat(s: &mut dyn StoreWrite, run: RunId, id: u64) {
    let res = s
        .write_batch(&[
            WriteItem::Record(RecordWrite::new(
                "Cat",
                serde_json::json!({"id": id, "name": format!("cat{id}")}),
                Provenance::new(run, "get_cat"),
            )),
            WriteItem::KeyOutcome(KeyOutcomeWrite {
                run,
                model: "Cat".into(),
                key: IndexKey::single("id", id),
                status: KeyStatus::Stored,
                reason: None,
                at: Timestamp::now(),
            }),
        ])
        .unwrap();
    assert!(res.iter().all(Result::is_ok), "{res:?}");
}

fn is_locked(r: Result<SqliteStore, StoreError>) -> String {
    match r {
        Err(e @ (StoreError::Locked { .. } | StoreError::HardLinked { .. })) => e.to_string(),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("a second writer was admitted"),
    }
}

#[cfg(unix)]
#[test]
fn a_symlink_to_the_database_or_its_directory_is_the_same_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let _writer = SqliteStore::open(&db).unwrap();
    std::os::unix::fs::symlink(&db, dir.path().join("link.db")).unwrap();
    let msg = is_locked(SqliteStore::open(dir.path().join("link.db")));
    assert!(
        msg.contains("being written by another kye process"),
        "{msg}"
    );
    std::os::unix::fs::symlink(dir.path(), dir.path().join("alias")).unwrap();
    is_locked(SqliteStore::open(dir.path().join("alias").join("c.db")));
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    is_locked(SqliteStore::open(dir.path().join("alias/sub/../c.db")));
}

#[cfg(unix)]
#[test]
fn a_hard_link_to_the_database_cannot_bypass_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut writer = SqliteStore::open(&db).unwrap();
    writer.prepare(&cat_schema()).unwrap();
    std::fs::hard_link(&db, dir.path().join("link.db")).unwrap();
    let msg = is_locked(SqliteStore::open(dir.path().join("link.db")));
    assert!(msg.contains("has 2 names (hard links)"), "{msg}");
    drop(writer);
    // No writer under either name while the file has two; readers are fine.
    is_locked(SqliteStore::open(&db));
    assert!(SqliteReader::open(dir.path().join("link.db")).is_ok());
    std::fs::remove_file(dir.path().join("link.db")).unwrap();
    assert!(SqliteStore::open(&db).is_ok());
}

#[test]
fn the_lock_file_names_the_writer_only_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let lock = dir.path().join("c.db.lock");
    let writer = SqliteStore::open(&db).unwrap();
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        std::process::id().to_string()
    );
    drop(writer);
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "");
}

#[test]
fn a_newer_store_format_is_named_as_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    {
        let mut s = SqliteStore::open(&db).unwrap();
        s.prepare(&cat_schema()).unwrap();
        s.connection()
            .execute(
                "UPDATE _kye_meta SET value = '99' WHERE key = 'format_version'",
                [],
            )
            .unwrap();
    }
    for e in [
        SqliteStore::open(&db).unwrap_err(),
        SqliteReader::open(&db).unwrap_err(),
    ] {
        let msg = e.to_string();
        assert!(
            msg.contains("written by a newer kye (store format 99, this kye reads up to 2)"),
            "{msg}"
        );
        assert!(!msg.contains("Ok("), "{msg}");
    }
}

/// A run left `running` with no writer holding the lock: what a kill -9 leaves (dropping a
/// store without finishing its run releases the lock the way the OS does for a dead process).
fn dead_run(s: &mut dyn StoreWrite) -> RunId {
    s.prepare(&cat_schema()).unwrap();
    let run = s.begin_run(&NewRun::new("Cat.id in 1..=2")).unwrap();
    write_cat(s, run, 1);
    run
}

/// Makes `dir` impossible to create files in for this process, also as root (mode 0555, then
/// the immutable attribute when the mode is not enough), and undoes it on drop.
struct ReadOnlyDir {
    path: PathBuf,
    immutable: bool,
}

impl ReadOnlyDir {
    #[cfg(unix)]
    fn new(path: &Path) -> ReadOnlyDir {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o555)).unwrap();
        let mut guard = ReadOnlyDir {
            path: path.to_path_buf(),
            immutable: false,
        };
        if Self::writable(path) {
            let ok = std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot make {} read-only for this user", path.display());
            guard.immutable = true;
            assert!(!Self::writable(path), "chattr +i did not make it read-only");
        }
        guard
    }

    fn writable(path: &Path) -> bool {
        let probe = path.join(".probe");
        let ok = std::fs::write(&probe, b"x").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        if self.immutable {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.path)
                .status();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o755));
        }
    }
}

#[cfg(unix)]
#[test]
fn a_wal_store_is_read_without_write_access_to_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    std::fs::create_dir(&dir).unwrap();
    let db = dir.join("c.db");
    {
        let mut s = SqliteStore::open(&db).unwrap();
        let run = dead_run(&mut s);
        write_cat(&mut s, run, 2);
        s.finish_run(
            run,
            &RunEnd::new(RunStatus::Completed, RunCounts::default()),
        )
        .unwrap();
    }
    // The writer closed cleanly: SQLite removed c.db-wal and c.db-shm.
    assert!(!dir.join("c.db-shm").exists());
    let _ro = ReadOnlyDir::new(&dir);
    let reader = SqliteReader::open(&db).unwrap_or_else(|e| panic!("{e}"));
    let cats = reader.records(&RecordQuery::new("Cat")).unwrap();
    assert_eq!(cats.len(), 2);
    assert_eq!(cats[1]["name"], "cat2");
    assert_eq!(reader.runs(None).unwrap()[0].status, RunStatus::Completed);
    assert!(!dir.join("c.db-shm").exists());
}

/// A store made before sources were recorded (no `_kye_source` in model tables, no `source`
/// in `_kye_runs`) is read as it is, and the first writer to prepare it adds both columns,
/// also to tables whose layout did not change.
#[test]
fn a_store_from_before_sources_is_read_and_then_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kye.db");
    {
        let mut s = SqliteStore::open(&path).unwrap();
        s.prepare(&schema(POKEMON)).unwrap();
        let run = s.begin_run(&NewRun::new("Pokemon.id = 25")).unwrap();
        write_ok(&mut s, &[record(run, "Pokemon", pikachu())]);
    }
    // As kye left it before issue 18.
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "ALTER TABLE Pokemon DROP COLUMN _kye_source; \
         ALTER TABLE PokemonType DROP COLUMN _kye_source; \
         ALTER TABLE _kye_runs DROP COLUMN source;",
    )
    .unwrap();
    drop(c);

    let r = open_store_read_only(&format!("sqlite:{}", path.display()).parse().unwrap()).unwrap();
    let key = IndexKey::single("id", 25);
    let found = r.record("Pokemon", &key).unwrap().expect("pikachu");
    assert_eq!(found["name"], "pikachu");
    let runs = r.runs(None).unwrap();
    assert_eq!((runs.len(), runs[0].source.clone()), (1, None));
    drop(r);

    let mut s = SqliteStore::open(&path).unwrap();
    s.prepare(&schema(POKEMON)).unwrap();
    let mut new = NewRun::new("Pokemon.id = 25");
    new.source = Some("pokeapi@1.0.0".into());
    let run = s.begin_run(&new).unwrap();
    let mut item = RecordWrite::new("Pokemon", pikachu(), Provenance::new(run, "test::fetch"));
    item.provenance.source = Some("pokeapi@1.0.0".into());
    write_ok(&mut s, &[WriteItem::Record(item)]);
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM Pokemon WHERE _kye_source = 'pokeapi@1.0.0'"
        ),
        1
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM PokemonType WHERE _kye_source = 'pokeapi@1.0.0'"
        ),
        1
    );
    let runs = s.reader().unwrap().runs(None).unwrap();
    assert_eq!(runs[0].source.as_deref(), Some("pokeapi@1.0.0"));
}

/// Freshness asks the model's table alone: with its child tables gone (so that reading a
/// record fails), the fetch-time counts and the stale keys still come from its own columns.
#[test]
fn fetched_ages_and_stale_keys_read_only_the_model_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = SqliteStore::open(dir.path().join("kye.db")).unwrap();
    s.prepare(&schema(POKEMON)).unwrap();
    let run = s.begin_run(&NewRun::new("x")).unwrap();
    write_ok(&mut s, &[record(run, "Pokemon", pikachu())]);
    s.connection()
        .execute_batch("DROP TABLE Pokemon__types; DROP TABLE Pokemon__tags;")
        .unwrap();
    assert!(s.records(&RecordQuery::new("Pokemon")).is_err());
    let later = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 60_000);
    let ages = s.fetched_ages("Pokemon", later).unwrap();
    assert_eq!((ages.since, ages.before), (0, 1));
    assert!(ages.oldest.is_some());
    let stale = s.fetched_before("Pokemon", &["name"], later, 10).unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].1, IndexKey::single("name", "pikachu"));
}
