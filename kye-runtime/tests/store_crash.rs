//! Crash safety with real processes: a child process (this test binary, re-run with an
//! environment switch) writes batches as fast as it can and is killed with SIGKILL at
//! random moments; after each kill the store must reopen consistent, with every record
//! either wholly old or wholly new and every "stored" key outcome backed by its record.
//! While the child runs, a second writer is refused (naming the child's pid) and readers work.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kye_runtime::store::*;
use serde_json::{json, Value};

const SCHEMA: &str = "Item(id) {\n id: Number\n version: Number\n tags: Number+\n}\n";
const KEYS: u64 = 50;

fn schema() -> kye_lang::Schema {
    kye_lang::compile_str("crash.kye", SCHEMA).unwrap_or_else(|e| panic!("{e}"))
}

/// The record for `id` written in round `v`: its tags are `v` repeated `v % 5 + 1` times, so a
/// record whose child rows were half replaced shows as a count or a value that does not match.
fn item(id: u64, v: u64) -> Value {
    json!({"id": id, "version": v, "tags": vec![v; (v % 5 + 1) as usize]})
}

/// Runs in the child process: write forever until killed.
#[test]
#[ignore = "helper: run as a child process by the crash tests"]
fn crash_child() {
    let Ok(spec) = std::env::var("KYE_CRASH_STORE") else {
        return;
    };
    let ready = PathBuf::from(std::env::var("KYE_CRASH_READY").expect("KYE_CRASH_READY"));
    let spec: StoreSpec = spec.parse().unwrap();
    let mut store = open_store(&spec).unwrap();
    store.prepare(&schema()).unwrap();
    let run = store.begin_run(&NewRun::new("Item.id in 0..50")).unwrap();
    let start: u64 = std::env::var("KYE_CRASH_ROUND").unwrap().parse().unwrap();
    let mut v = start * 1_000_000;
    loop {
        let mut items = Vec::new();
        for i in 0..10 {
            let id = (v * 7 + i) % KEYS;
            items.push(WriteItem::Record(RecordWrite::new(
                "Item",
                item(id, v),
                Provenance::new(run, "crash"),
            )));
            items.push(WriteItem::KeyOutcome(KeyOutcomeWrite {
                run,
                model: "Item".into(),
                key: IndexKey::single("id", id),
                status: KeyStatus::Stored,
                reason: None,
                at: Timestamp::now(),
            }));
        }
        let res = store.write_batch(&items).unwrap();
        assert!(res.iter().all(Result::is_ok));
        if v == start * 1_000_000 {
            std::fs::write(&ready, std::process::id().to_string()).unwrap();
        }
        v += 1;
    }
}

fn spawn_child(spec: &str, ready: &Path, round: u64) -> Child {
    let _ = std::fs::remove_file(ready);
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KYE_CRASH_STORE", spec)
        .env("KYE_CRASH_READY", ready)
        .env("KYE_CRASH_ROUND", round.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child test process")
}

fn wait_ready(child: &mut Child, ready: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child exited early: {status}");
        }
        assert!(Instant::now() < deadline, "child did not start writing");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pseudo-random pause so the kill lands at different points of the write loop.
fn random_pause(round: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_millis((nanos ^ (round * 7919)) % 120 + 5)
}

/// Every stored item is whole; every "stored" outcome has its record.
fn check_consistent(store: &dyn StoreRead) -> usize {
    let records = store.records(&RecordQuery::new("Item")).unwrap();
    for r in &records {
        let v = r["version"].as_u64().unwrap();
        assert_eq!(
            r["tags"],
            json!(vec![v; (v % 5 + 1) as usize]),
            "half-written record: {r}"
        );
    }
    let ids: Vec<u64> = records.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    for id in 0..KEYS {
        if let Some(o) = store
            .latest_outcome("Item", &IndexKey::single("id", id))
            .unwrap()
        {
            if o.status == KeyStatus::Stored {
                assert!(
                    ids.contains(&id),
                    "outcome says stored but Item {id} is missing"
                );
            }
        }
    }
    records.len()
}

fn crash_rounds(spec: &str, ready: &Path, check_lock: impl Fn(u32)) {
    for round in 1..=4u64 {
        let mut child = spawn_child(spec, ready, round);
        wait_ready(&mut child, ready);
        if round == 1 {
            check_lock(child.id());
        }
        std::thread::sleep(random_pause(round));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let store = open_store(&spec.parse().unwrap()).unwrap();
        assert!(check_consistent(store.as_ref()) > 0);
        let runs = store.runs(None).unwrap();
        assert_eq!(runs.len(), round as usize);
        assert!(
            runs.iter().all(|r| r.status == RunStatus::Interrupted),
            "{runs:?}"
        );
        assert!(runs[0].counts.stored > 0, "{runs:?}");
    }
}

#[test]
fn sqlite_survives_sigkill_mid_write_and_refuses_a_second_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("kye.db");
    let spec = format!("sqlite:{}", db.display());
    let ready = tmp.path().join("ready");
    crash_rounds(&spec, &ready, |pid| {
        let err = SqliteStore::open(&db).unwrap_err();
        assert!(
            matches!(&err, StoreError::Locked { holder, .. } if *holder == format!(" (pid {pid})")),
            "{err:?}"
        );
        let reader = SqliteReader::open(&db).unwrap();
        assert!(!reader
            .records(&RecordQuery::new("Item"))
            .unwrap()
            .is_empty());
        assert_eq!(reader.runs(None).unwrap()[0].status, RunStatus::Running);
    });
    let store = SqliteStore::open(&db).unwrap();
    let ok: String = store
        .connection()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // No duplicate or orphaned child rows.
    let orphans: i64 = store
        .connection()
        .query_row(
            "SELECT count(*) FROM Item__tags t WHERE NOT EXISTS (SELECT 1 FROM Item i WHERE i.id = t.id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
}

#[test]
fn dir_store_survives_sigkill_mid_write() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("out");
    let spec = format!("dir:{}", root.display());
    let ready = tmp.path().join("ready");
    crash_rounds(&spec, &ready, |_| {
        assert!(matches!(
            DirStore::open(&root),
            Err(StoreError::Locked { .. })
        ));
        assert!(DirReader::open(&root).is_ok());
    });
    // Reopening for writing removed the temporary files of interrupted writes.
    std::fs::write(root.join("Item/.7.json.tmp-99999-0"), b"{\"id\": 7, \"vers").unwrap();
    drop(DirStore::open(&root).unwrap());
    for dir in [root.join("Item"), root.join("_kye")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".tmp-"), "{name} left in {}", dir.display());
        }
    }
    for f in ["runs.jsonl", "keys.jsonl"] {
        let text = std::fs::read_to_string(root.join("_kye").join(f)).unwrap();
        for line in text.lines() {
            serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{f}: {line}: {e}"));
        }
    }
}
