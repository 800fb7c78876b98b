//! The writer lock and readers: one lock per database file whatever path leads to it, a lock
//! file that is empty once its writer has ended, readers that tell a dead run by the lock,
//! and readers that need no write access to the store's directory.

use std::path::{Path, PathBuf};

use kye_runtime::store::*;

fn schema() -> kye_lang::Schema {
    kye_lang::compile_str("c.kye", "Cat(id) {\n  id: Number\n  name: String\n}\n")
        .unwrap_or_else(|e| panic!("{e}"))
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
    // The directory store's lock lives inside the directory: any path reaches it.
    let out = dir.path().join("out");
    let _dir_writer = DirStore::open(&out).unwrap();
    std::os::unix::fs::symlink(&out, dir.path().join("out-link")).unwrap();
    assert!(matches!(
        DirStore::open(dir.path().join("out-link")),
        Err(StoreError::Locked { .. })
    ));
}

#[cfg(unix)]
#[test]
fn a_hard_link_to_the_database_cannot_bypass_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let mut writer = SqliteStore::open(&db).unwrap();
    writer.prepare(&schema()).unwrap();
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
    let out = dir.path().join("out");
    drop(DirStore::open(&out).unwrap());
    assert_eq!(std::fs::read_to_string(out.join("_kye/lock")).unwrap(), "");
}

#[test]
fn a_newer_store_format_is_named_as_a_number() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    {
        let mut s = SqliteStore::open(&db).unwrap();
        s.prepare(&schema()).unwrap();
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
    s.prepare(&schema()).unwrap();
    let run = s.begin_run(&NewRun::new("Cat.id in 1..=2")).unwrap();
    write_cat(s, run, 1);
    run
}

fn check_reader_sees(reader: &dyn StoreRead, run: RunId, status: RunStatus) {
    let runs = reader.runs(None).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].id, runs[0].status), (run, status), "{runs:?}");
    assert_eq!(runs[0].counts.stored, 1);
    assert_eq!(reader.run(run).unwrap().map(|r| r.status), Some(status));
}

#[test]
fn readers_show_the_run_of_a_dead_writer_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    for spec in [
        StoreSpec::Sqlite(dir.path().join("c.db")),
        StoreSpec::Dir(dir.path().join("out")),
    ] {
        let mut writer = open_store(&spec).unwrap();
        let run = dead_run(writer.as_mut());
        // While its writer lives, the run is running.
        check_reader_sees(
            open_store_read_only(&spec).unwrap().as_ref(),
            run,
            RunStatus::Running,
        );
        drop(writer);
        let reader = open_store_read_only(&spec).unwrap();
        check_reader_sees(reader.as_ref(), run, RunStatus::Interrupted);
        let error = reader.run(run).unwrap().and_then(|r| r.error).unwrap();
        assert!(error.contains("the process stopped"), "{error}");
        // Readers write nothing: the next writer records it.
        drop(reader);
        let writer = open_store(&spec).unwrap();
        check_reader_sees(writer.as_ref(), run, RunStatus::Interrupted);
    }
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
